"""A small local stand-in for the Kubernetes API server, for tests of :mod:`aiops.kube` and :mod:`aiops.leader`.

It speaks real HTTP on 127.0.0.1 (a ``ThreadingHTTPServer`` in a daemon thread), so the real
``kubernetes`` client talks to it exactly as to an API server: ``Configuration(host=api.url)``.
It follows the API's shapes and errors for just what the actuator and the leader election use:

* objects stored in a dict keyed by ``(apiVersion, plural, namespace, name)`` (namespace ``""``
  for cluster-scoped kinds); one global ``resourceVersion`` counter bumped on every write, as
  etcd's revision is;
* GET (one object, or a list filtered by ``labelSelector``), POST (create: 409 ``AlreadyExists``),
  PUT (replace: 409 ``Conflict`` on a stale ``metadata.resourceVersion``; a Lease must carry one),
  PATCH (``application/merge-patch+json``, and ``application/strategic-merge-patch+json``
  treated as a merge patch for these objects but refused with 415 on custom resources as the
  real server does; a ``metadata.resourceVersion`` in the patch is a precondition), DELETE;
* the ``scale`` subresource (``autoscaling/v1`` Scale) of Deployments, StatefulSets and Cluster API
  MachineDeployments; a write to the main resource of a kind with a status subresource keeps
  the stored status, as the real server does;
* the validation the real server would do on what we send: HPA ``minReplicas`` within
  ``[1, maxReplicas]``, Lease times in MicroTime format (exactly six fractional digits), Event
  namespaces, pod GPU requests equal to limits, and pod ``priorityClassName`` admission (a
  missing PriorityClass is a 403, as the Priority admission plugin answers);
* every error is a real ``Status`` object (``kind: Status, status: Failure, reason, code,
  details``).

Fault injection: :meth:`KubeAPI.inject` queues a rule ``(method, path regex) -> status and/or
delay and/or hook``, used ``times`` times (``None``: for ever). A hook runs before the request
is served, so a test can play "another writer changed the object" and let the stand-in's own
conflict semantics answer. Every request received is logged in :attr:`KubeAPI.requests`
(method, path, query, parsed body, content type), faulted ones included.

The stand-in runs no controllers: nothing turns spec into status unless a test writes it.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

__all__ = ["Fault", "KubeAPI", "Request", "KINDS"]


@dataclass(frozen=True)
class Kind:
    kind: str
    api_version: str
    plural: str
    namespaced: bool = True
    scale: bool = False  # has the scale subresource
    status: bool = False  # has the status subresource: writes to the main resource keep the stored status
    custom: bool = False  # a CustomResourceDefinition's kind: no strategic merge patch
    unconditional_update: bool = True  # a PUT without metadata.resourceVersion is allowed

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def qualified(self) -> str:  # "deployments.apps", "pods"
        return f"{self.plural}.{self.group}" if self.group else self.plural


KINDS: tuple[Kind, ...] = (
    Kind("Pod", "v1", "pods", status=True),
    Kind("Event", "v1", "events"),
    Kind("Event", "events.k8s.io/v1", "events"),
    Kind("Deployment", "apps/v1", "deployments", scale=True, status=True),
    Kind("StatefulSet", "apps/v1", "statefulsets", scale=True, status=True),
    Kind("HorizontalPodAutoscaler", "autoscaling/v2", "horizontalpodautoscalers", status=True),
    Kind("Lease", "coordination.k8s.io/v1", "leases", unconditional_update=False),
    Kind("MachineDeployment", "cluster.x-k8s.io/v1beta1", "machinedeployments", scale=True, status=True, custom=True),
    Kind("NodePool", "karpenter.sh/v1", "nodepools", namespaced=False, status=True, custom=True),
)
_BY_PATH = {(k.api_version, k.plural): k for k in KINDS}
_BY_KIND = {(k.api_version, k.kind): k for k in KINDS}

REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
           409: "Conflict", 415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
           503: "ServiceUnavailable", 504: "Timeout"}
VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"

_PATH = re.compile(r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
                   r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$")
_MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$")  # metav1.MicroTime (RFC3339Micro)
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")  # metav1.Time (RFC3339)
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class ApiError(Exception):
    """A request the stand-in answers with a ``Status`` failure."""

    def __init__(self, code: int, message: str, details: dict | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details or {}
        self.reason = reason or REASONS.get(code, "Unknown")

    def status(self) -> dict:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.message,
                "reason": self.reason, "details": self.details, "code": self.code}


@dataclass(frozen=True)
class Request:
    """One request as received: ``body`` is the parsed JSON (None when there was none)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    content_type: str

    @property
    def is_write(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH", "DELETE")


@dataclass
class Fault:
    """An injected answer: for requests whose method matches and whose path matches ``path``
    (a regex, searched), run ``hook(api)``, wait ``delay`` seconds, then answer ``status`` as a
    Status failure (or, with ``status`` None, serve the request normally). Used ``times`` times."""

    method: str
    path: re.Pattern
    status: int | None = None
    delay: float = 0.0
    times: int | None = 1
    message: str | None = None
    reason: str | None = None
    hook: Callable[["KubeAPI"], None] | None = None
    details: dict | None = None  # the Status details; None: as the real server fills them
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        live = self.times is None or self.hits < self.times
        return live and self.method in ("*", method) and self.path.search(path) is not None


@dataclass
class _Route:
    kind: Kind
    namespace: str  # "" when cluster-scoped (or a list across namespaces)
    name: str | None
    sub: str | None

    def key(self, name: str | None = None) -> tuple[str, str, str, str]:
        return (self.kind.api_version, self.kind.plural, self.namespace, name or self.name or "")

    def details(self, name: str | None = None) -> dict:
        d = {"name": name or self.name or "", "kind": self.kind.plural}
        if self.kind.group:
            d["group"] = self.kind.group
        return d


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality- and set-based label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``, ``a in (x,y)``, ``a notin (x)``."""
    terms = re.findall(r"[^,(]+(?:\([^)]*\))?", selector)
    for term in (t.strip() for t in terms):
        if not term:
            continue
        m = re.fullmatch(r"(\S+)\s+(in|notin)\s+\(([^)]*)\)", term)
        if m:
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if (labels.get(key) in values) != (op == "in"):  # notin: an absent key matches
                return False
            continue
        m = re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*(\S*)", term)
        if m:
            key, op, value = m.groups()
            if (op == "!=") == (labels.get(key) == value):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class KubeAPI:
    """The stand-in server. Use as a context manager, or :meth:`start` / :meth:`stop`."""

    def __init__(self, clock: Callable[[], float] = time.time,
                 priority_classes: tuple[str, ...] = ("system-cluster-critical", "system-node-critical")) -> None:
        self.clock = clock
        self.priority_classes = set(priority_classes)
        self.objects: dict[tuple[str, str, str, str], dict] = {}
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.revision = 0
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "KubeAPI":
        api = self

        class Handler(_Handler):
            stand_in = api

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="kube-api-stand-in", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # delayed answers stop waiting
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "KubeAPI":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what tests use ----------------------------------------------------------------------------

    def add(self, obj: dict) -> dict:
        """Store an object as a create would (uid, resourceVersion, creationTimestamp); returns a copy."""
        kind = _BY_KIND[(obj["apiVersion"], obj["kind"])]
        ns = obj.get("metadata", {}).get("namespace", "") if kind.namespaced else ""
        route = _Route(kind, ns, None, None)
        with self._lock:
            return copy.deepcopy(self._create(route, copy.deepcopy(obj), check=False))

    def get(self, api_version: str, plural: str, namespace: str, name: str) -> dict | None:
        with self._lock:
            obj = self.objects.get((api_version, plural, namespace, name))
            return copy.deepcopy(obj)

    def list(self, api_version: str, plural: str, namespace: str | None = None) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(o) for (v, p, ns, _), o in sorted(self.objects.items())
                    if (v, p) == (api_version, plural) and (namespace is None or ns == namespace)]

    def modify(self, api_version: str, plural: str, namespace: str, name: str, change: Callable[[dict], None]) -> dict:
        """Another writer: apply ``change`` to the stored object in place and bump its resourceVersion."""
        with self._lock:
            obj = self.objects[(api_version, plural, namespace, name)]
            change(obj)
            self._bump(obj)
            return copy.deepcopy(obj)

    def inject(self, method: str, path: str, status: int | None = None, *, delay: float = 0.0, times: int | None = 1,
               message: str | None = None, reason: str | None = None,
               hook: Callable[["KubeAPI"], None] | None = None, details: dict | None = None) -> Fault:
        """Queue a fault for requests matching ``method`` ("*" for any) and the ``path`` regex."""
        fault = Fault(method.upper(), re.compile(path), status, delay, times, message, reason, hook, details)
        with self._lock:
            self.faults.append(fault)
        return fault

    def writes(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.is_write]

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- serving -----------------------------------------------------------------------------------

    def serve(self, method: str, target: str, content_type: str, raw: bytes) -> tuple[int, dict]:
        """One request: log it, apply the first matching fault, then serve it. Returns (code, JSON body)."""
        parts = urlsplit(target)
        path, query = parts.path, dict(parse_qsl(parts.query))
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        with self._lock:
            self.requests.append(Request(method, path, query, body, content_type.split(";")[0].strip()))
            fault = next((f for f in self.faults if f.matches(method, path)), None)
            if fault is not None:
                fault.hits += 1
        if fault is not None:
            if fault.hook is not None:
                fault.hook(self)
            if fault.delay:
                self._stopping.wait(fault.delay)
            if fault.status is not None:
                return fault.status, self._injected(fault, method, path).status()
        try:
            with self._lock:
                return self._dispatch(method, path, query, content_type.split(";")[0].strip(), body)
        except ApiError as exc:
            return exc.code, exc.status()

    def _injected(self, fault: Fault, method: str, path: str) -> ApiError:
        """The error a real server would give for ``fault.status`` on this request."""
        code = fault.status
        assert code is not None
        try:
            route = self._route(path)
        except ApiError:
            return ApiError(code, fault.message or "injected fault", reason=fault.reason)
        resource = route.kind.plural + (f"/{route.sub}" if route.sub else "")
        thing = f'{route.kind.qualified} "{route.name}"' if route.name else route.kind.qualified
        verb = VERBS.get(method, method.lower()) if route.name or method != "GET" else "list"
        default = {
            403: f'{thing} is forbidden: User "system:serviceaccount:aiops-system:aiops" cannot {verb} resource '
                 f'"{resource}" in API group "{route.kind.group}"'
                 + (f' in the namespace "{route.namespace}"' if route.namespace else " at the cluster scope"),
            404: f"{thing} not found",
            409: f"Operation cannot be fulfilled on {thing}: the object has been modified; "
                 "please apply your changes to the latest version and try again",
            500: "Internal error occurred: injected fault",
            503: "the server is currently unable to handle the request",
        }.get(code, f"injected fault {code}")
        details = fault.details if fault.details is not None else route.details() if route.name else {}
        return ApiError(code, fault.message or default, details, fault.reason)

    def _route(self, path: str) -> _Route:
        m = _PATH.match(path)
        if not m:
            raise ApiError(404, "the server could not find the requested resource")
        api_version = m["core"] or f"{m['group']}/{m['version']}"
        kind = _BY_PATH.get((api_version, m["plural"]))
        if kind is None or (m["ns"] is not None and not kind.namespaced):
            raise ApiError(404, "the server could not find the requested resource")
        if m["sub"] not in (None, "scale") or (m["sub"] == "scale" and not kind.scale):  # no /status: we never write it
            raise ApiError(404, "the server could not find the requested resource")
        return _Route(kind, m["ns"] or "", m["name"], m["sub"])

    def _dispatch(self, method: str, path: str, query: dict[str, str], content_type: str, body: Any) -> tuple[int, dict]:
        route = self._route(path)
        if route.kind.namespaced and not route.namespace and not (method == "GET" and route.name is None):
            raise ApiError(404, "the server could not find the requested resource")
        if method == "GET" and route.name is None:
            return 200, self._list(route, query.get("labelSelector", ""))
        if method == "POST" and route.name is None:
            if not isinstance(body, dict):
                raise ApiError(400, "the request body is not a JSON object")
            return 201, self._public(self._create(route, body))
        if route.name is None:
            raise ApiError(405, f"the server does not allow this method on the requested resource ({method})")
        obj = self.objects.get(route.key())
        if obj is None:
            raise ApiError(404, f'{route.kind.qualified} "{route.name}" not found', route.details())
        if method == "GET":
            return 200, self._scale_of(route, obj) if route.sub == "scale" else self._public(obj)
        if method == "DELETE":
            del self.objects[route.key()]
            self.revision += 1
            return 200, self._public(obj)
        if method == "PUT":
            if not isinstance(body, dict):
                raise ApiError(400, "the request body is not a JSON object")
            return 200, self._replace(route, obj, body)
        if method == "PATCH":
            return 200, self._patch(route, obj, content_type, body)
        raise ApiError(405, f"the server does not allow this method on the requested resource ({method})")

    # -- the verbs ---------------------------------------------------------------------------------

    def _create(self, route: _Route, body: dict, check: bool = True) -> dict:
        meta = body.setdefault("metadata", {})
        if check:
            api_version, kind = body.get("apiVersion", route.kind.api_version), body.get("kind", route.kind.kind)
            if (api_version, kind) != (route.kind.api_version, route.kind.kind):
                raise ApiError(400, f"the API version in the data ({api_version}) does not match the expected API version "
                                    f"({route.kind.api_version})" if api_version != route.kind.api_version else
                               f"{kind} is not the kind of {route.kind.qualified}")
            if route.namespace and meta.get("namespace", route.namespace) != route.namespace:
                raise ApiError(400, "the namespace of the provided object does not match the namespace sent on the request")
        body["apiVersion"], body["kind"] = route.kind.api_version, route.kind.kind
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name", "")
        if not name or not _DNS_SUBDOMAIN.match(name) or len(name) > 253:
            raise ApiError(422, f'{route.kind.kind} "{name}" is invalid: metadata.name: Invalid value: "{name}": '
                                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'",
                           route.details(name))
        if route.kind.namespaced:
            meta["namespace"] = route.namespace
        if route.key(name) in self.objects:
            raise ApiError(409, f'{route.kind.qualified} "{name}" already exists', route.details(name), "AlreadyExists")
        self._validate(route, body, name)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _iso(self.clock())
        meta.setdefault("generation", 1)
        if route.kind.kind == "Pod":
            body.setdefault("status", {"phase": "Pending"})
        self.objects[route.key(name)] = body
        self._bump(body)
        return body

    def _replace(self, route: _Route, obj: dict, body: dict) -> dict:
        meta = body.get("metadata") or {}
        if meta.get("name", route.name) != route.name:
            raise ApiError(400, f'the name of the object ({meta.get("name")}) does not match the name on the URL ({route.name})')
        self._precondition(route, obj, meta.get("resourceVersion"), required=not route.kind.unconditional_update)
        if route.sub == "scale":
            return self._set_scale(route, obj, body)
        new = copy.deepcopy(body)
        new["apiVersion"], new["kind"] = route.kind.api_version, route.kind.kind
        new_meta = new.setdefault("metadata", {})
        for keep in ("uid", "creationTimestamp", "namespace", "name", "generation"):
            if keep in obj["metadata"]:
                new_meta[keep] = obj["metadata"][keep]
        if route.kind.status and "status" in obj:
            new["status"] = obj["status"]
        elif route.kind.status:
            new.pop("status", None)
        self._validate(route, new, route.name or "")
        return self._public(self._store(route, obj, new))

    def _patch(self, route: _Route, obj: dict, content_type: str, body: Any) -> dict:
        if content_type == STRATEGIC and route.kind.custom:
            raise ApiError(415, f'the body of the request was in an unknown format - accepted media types include: '
                                f'application/json-patch+json, {MERGE}, application/apply-patch+yaml')
        if content_type not in (MERGE, STRATEGIC):
            raise ApiError(415, f"the stand-in does not implement {content_type or 'an empty content type'}; "
                                f"it accepts {MERGE} and {STRATEGIC}")
        if not isinstance(body, dict):
            raise ApiError(400, "the patch is not a JSON object")
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv is not None:
            self._precondition(route, obj, rv, required=False)
        if route.sub == "scale":
            patched = merge_patch(self._scale_of(route, obj), body)
            return self._set_scale(route, obj, patched)
        new = merge_patch(obj, body)
        for keep in ("uid", "creationTimestamp", "namespace", "name", "generation"):
            if keep in obj["metadata"]:
                new["metadata"][keep] = obj["metadata"][keep]
        if route.kind.status:
            new["status"] = obj.get("status")
            if new["status"] is None:
                new.pop("status")
        self._validate(route, new, route.name or "")
        return self._public(self._store(route, obj, new))

    def _list(self, route: _Route, selector: str) -> dict:
        items = [self._public(o, item=True) for (v, p, ns, _), o in sorted(self.objects.items())
                 if (v, p) == (route.kind.api_version, route.kind.plural) and (not route.namespace or ns == route.namespace)
                 and _selector_matches(selector, (o.get("metadata") or {}).get("labels") or {})]
        return {"kind": f"{route.kind.kind}List", "apiVersion": route.kind.api_version,
                "metadata": {"resourceVersion": str(self.revision)}, "items": items}

    # -- helpers -----------------------------------------------------------------------------------

    def _precondition(self, route: _Route, obj: dict, rv: str | None, required: bool) -> None:
        if rv is None:
            if required:
                raise ApiError(422, f'{route.kind.kind}.{route.kind.group} "{route.name}" is invalid: metadata.resourceVersion: '
                                    "Invalid value: 0x0: must be specified for an update", route.details())
            return
        if str(rv) != obj["metadata"]["resourceVersion"]:
            raise ApiError(409, f'Operation cannot be fulfilled on {route.kind.qualified} "{route.name}": the object has been '
                                "modified; please apply your changes to the latest version and try again", route.details())

    def _store(self, route: _Route, old: dict, new: dict) -> dict:
        if new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        self.objects[route.key()] = new
        self._bump(new)
        return new

    def _bump(self, obj: dict) -> None:
        self.revision += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.revision)

    def _scale_of(self, route: _Route, obj: dict) -> dict:
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        labels = ((spec.get("selector") or {}).get("matchLabels") or {}) if isinstance(spec.get("selector"), dict) else {}
        meta = obj["metadata"]
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                             if k in meta},
                "spec": {"replicas": spec.get("replicas", 1)},
                "status": {"replicas": status.get("replicas", 0), "selector": ",".join(f"{k}={v}" for k, v in labels.items())}}

    def _set_scale(self, route: _Route, obj: dict, scale: dict) -> dict:
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise ApiError(422, f'Scale.autoscaling "{route.name}" is invalid: spec.replicas: Invalid value: {replicas!r}: '
                                "must be greater than or equal to 0", route.details())
        new = copy.deepcopy(obj)
        new.setdefault("spec", {})["replicas"] = replicas
        self._store(route, obj, new)
        return self._scale_of(route, new)

    def _public(self, obj: dict, item: bool = False) -> dict:
        out = copy.deepcopy(obj)
        if item:  # list items carry no apiVersion/kind, as the real server encodes them
            out.pop("apiVersion", None)
            out.pop("kind", None)
        return out

    def _validate(self, route: _Route, obj: dict, name: str) -> None:
        kind = route.kind.kind

        def invalid(field_path: str, value: Any, why: str) -> ApiError:
            return ApiError(422, f'{kind}{"." + route.kind.group if route.kind.group else ""} "{name}" is invalid: '
                                 f"{field_path}: Invalid value: {json.dumps(value)}: {why}", route.details(name))

        spec = obj.get("spec") or {}
        if kind in ("Deployment", "StatefulSet"):
            for required in ("selector", "template"):
                if not spec.get(required):
                    raise invalid(f"spec.{required}", spec.get(required), "Required value")
        if kind == "HorizontalPodAutoscaler":
            lo, hi = spec.get("minReplicas", 1), spec.get("maxReplicas")
            if not isinstance(lo, int) or lo < 1:
                raise invalid("spec.minReplicas", lo, "must be greater than or equal to 1")
            if isinstance(hi, int) and lo > hi:
                raise invalid("spec.minReplicas", lo, "must be less than or equal to maxReplicas")
        elif kind == "Lease":
            for key in ("acquireTime", "renewTime"):
                value = spec.get(key)
                if value is not None and not (isinstance(value, str) and _MICRO_TIME.match(value)):
                    raise ApiError(400, f'Lease in version "v1" cannot be handled as a Lease: parsing time {json.dumps(value)} '
                                        f'as "2006-01-02T15:04:05.000000Z07:00": cannot parse (spec.{key} must be a MicroTime)')
        elif kind == "Event":
            involved = obj.get("involvedObject") or obj.get("regarding") or {}
            if involved.get("namespace", route.namespace) != route.namespace:
                raise invalid("involvedObject.namespace", involved.get("namespace"), "does not match event.namespace")
            for key in ("firstTimestamp", "lastTimestamp"):
                if obj.get(key) is not None and not _TIME.match(str(obj[key])):
                    raise ApiError(400, f"Event cannot be handled: {key} {obj[key]!r} is not RFC3339")
            if obj.get("eventTime") is not None and not _MICRO_TIME.match(str(obj["eventTime"])):
                raise ApiError(400, f"Event cannot be handled: eventTime {obj['eventTime']!r} is not a MicroTime")
        elif kind == "Pod" and route.sub is None:
            containers = spec.get("containers") or []
            if not containers:
                raise invalid("spec.containers", [], "Required value")
            for i, c in enumerate(containers):
                if not c.get("image"):
                    raise invalid(f"spec.containers[{i}].image", "", "Required value")
                res = c.get("resources") or {}
                for rname, amount in (res.get("requests") or {}).items():
                    if "/" in rname and not rname.startswith("kubernetes.io/") and (res.get("limits") or {}).get(rname) != amount:
                        raise invalid(f"spec.containers[{i}].resources.requests[{rname}]", amount,
                                      f"must be equal to {rname} limit of {(res.get('limits') or {}).get(rname)}")
            pc = spec.get("priorityClassName")
            if pc and pc not in self.priority_classes:
                raise ApiError(403, f'pods "{name}" is forbidden: no PriorityClass with name {pc} was found', route.details(name))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall per request
    stand_in: KubeAPI

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        code, body = self.stand_in.serve(self.command, self.path, self.headers.get("Content-Type") or "", raw)
        data = json.dumps(body).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (its timeout) before we answered
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass
