"""The Kubernetes actuator: the thin adapter that turns the agent's decisions into API writes.

:class:`KubeCluster` is the agent's :class:`~aiops.agent.Cluster` on a real cluster, through the
official ``kubernetes`` client. It does four things, and only these:

* :meth:`KubeCluster.replicas`: a workload's spec and ready replicas;
* :meth:`KubeCluster.scale`: a workload's replicas, through the ``scale`` subresource
  (``mode="scale"``), or as the floor of its HorizontalPodAutoscaler (``mode="floor"``:
  ``spec.minReplicas``, so the HPA keeps reacting above the agent's floor);
* :meth:`KubeCluster.set_node_floor`: a node pool's floor, by one of three methods: placeholder
  pods (low-priority pause pods that each request a whole node's GPUs, so the node autoscaler
  adds nodes ahead of demand and real pods preempt them), the ``scale`` subresource of a Cluster
  API MachineDeployment, or ``spec.replicas`` of a static Karpenter NodePool;
* :meth:`KubeCluster.record`: a Kubernetes Event on the workload, so ``kubectl describe`` shows
  what the agent decided and why.

Every write is optimistic: it carries the ``resourceVersion`` it read, and a 409 (someone else,
such as the HPA, changed the object meanwhile) re-reads fresh state and tries again, at most
``retries_on_conflict`` more times. Every call carries a request timeout.

Errors: no Kubernetes API error reaches the caller of :meth:`~KubeCluster.scale` or
:meth:`~KubeCluster.set_node_floor`; each becomes ``ActionResult.error``, one line naming what
failed:

* 403: ``forbidden: may not patch horizontalpodautoscalers in namespace serving (403; grant it in
  the chart's RBAC)`` (or the admission plugin's own message, when it is not RBAC that refused);
* 404: ``not found: Deployment serving/llm`` (with a hint when the kind itself is unknown to the
  server: a CRD that is not installed);
* 409 after every retry: ``conflict: Deployment serving/llm changed 4 times while we tried``;
* 5xx, 429, timeouts, refused connections: ``API unavailable: ...``;
* 400/422: ``rejected: ...`` with the server's reason.

:meth:`~KubeCluster.replicas` raises :class:`KubeError` (the same one line) instead: the agent
holds its tick when it cannot read the cluster. :meth:`~KubeCluster.record` logs and never raises.

``dry_run=True`` only reads: the result says what would be written (``applied=False``,
``dry_run=True``) and nothing is written, not even with the API's server-side ``dryRun``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence

import kubernetes
import urllib3
from kubernetes.client import ApiClient, AppsV1Api, AutoscalingV2Api, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from simulations.errors import InputError

__all__ = [
    "ActionResult",
    "DECISION_ANNOTATION",
    "DESIRED_ANNOTATION",
    "KubeCluster",
    "KubeError",
    "PLACEHOLDER_LABEL",
    "PoolTarget",
    "WorkloadTarget",
]

log = logging.getLogger("aiops.kube")

DECISION_ANNOTATION = "aiops.dev/decision-id"
DESIRED_ANNOTATION = "aiops.dev/desired-replicas"
PLACEHOLDER_LABEL = "aiops.dev/placeholder"
MERGE_PATCH = "application/merge-patch+json"  # works on built-in kinds and custom resources alike
EVENT_MESSAGE_LIMIT = 1024
GPU_RESOURCE = "nvidia.com/gpu"

CAPI = ("cluster.x-k8s.io", "v1beta1", "machinedeployments")
KARPENTER = ("karpenter.sh", "v1", "nodepools")
_PLURALS = {"Deployment": "deployments", "StatefulSet": "statefulsets"}


@dataclass(frozen=True)
class WorkloadTarget:
    """One workload's object in the cluster, from its ``kubernetes:`` config."""

    name: str  # the workload's name in our config
    namespace: str
    kind: str = "Deployment"  # Deployment | StatefulSet
    object_name: str | None = None  # None: ``name``
    mode: str = "scale"  # scale: write the scale subresource; floor: the HPA's spec.minReplicas
    hpa_name: str | None = None  # mode floor; None: the object's name

    @property
    def object(self) -> str:
        return self.object_name or self.name

    @property
    def hpa(self) -> str:
        return self.hpa_name or self.object


@dataclass(frozen=True)
class PoolTarget:
    """One node pool's actuation, from its ``kubernetes:`` config."""

    name: str  # the node pool's name in our config
    method: str  # placeholder | machinedeployment | karpenter (| none: not actuated)
    namespace: str = "aiops-system"  # where placeholder pods / the MachineDeployment live
    object_name: str | None = None  # MachineDeployment or NodePool name; None: ``name``
    gpus_per_node: int = 8
    node_selector: Mapping[str, str] = field(default_factory=dict)  # placeholder pods: the pool's node labels
    tolerations: Sequence[Mapping[str, Any]] = ()  # placeholder pods: the pool's taints
    priority_class: str = "aiops-placeholder"  # low (negative) priority: any real pod preempts a placeholder
    image: str = "registry.k8s.io/pause:3.9"

    @property
    def object(self) -> str:
        return self.object_name or self.name


@dataclass(frozen=True)
class ActionResult:
    """What one actuation did. ``applied``: the cluster now holds ``after`` (written by this call,
    or already there); ``error``: one line when it does not; ``message``: one line saying what was
    done, clamped or would be done (dry run)."""

    target: str
    kind: str
    before: int | None
    after: int | None
    applied: bool
    dry_run: bool
    error: str = ""
    message: str = ""


class KubeError(Exception):
    """A Kubernetes call that failed; ``str()`` is the one line to show. ``status`` is the HTTP
    status (None without an answer) and ``reason`` the Status reason (``Conflict``, ``AlreadyExists``...)."""

    def __init__(self, line: str, status: int | None = None, reason: str = "") -> None:
        super().__init__(line)
        self.status, self.reason = status, reason

    @property
    def conflict(self) -> bool:
        """A stale write (409 Conflict), worth retrying on fresh state; not ``AlreadyExists``."""
        return self.status == 409 and self.reason != "AlreadyExists"


@dataclass(frozen=True)
class _Op:
    """What a call does, for its error line: ``patch horizontalpodautoscalers`` on ``HorizontalPodAutoscaler serving/llm``."""

    verb: str
    resource: str  # plural, with group and subresource: "deployments/scale", "nodepools.karpenter.sh"
    namespace: str | None  # None: cluster-scoped
    kind: str
    name: str | None

    @property
    def what(self) -> str:
        if self.name is None:
            return f"{self.kind} in namespace {self.namespace}" if self.namespace else self.kind
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"

    @property
    def scope(self) -> str:
        return f"in namespace {self.namespace}" if self.namespace else "(cluster-scoped)"


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _status_of(exc: ApiException) -> dict:
    try:
        body = json.loads(exc.body or "")
        return body if isinstance(body, dict) else {}
    except (TypeError, ValueError):
        return {}


def _describe(op: _Op, exc: BaseException, timeout: float) -> KubeError:
    """The one line for a failed call (see the module's docstring)."""
    if isinstance(exc, ApiException):
        status = _status_of(exc)
        code = exc.status or status.get("code") or 0
        message = _one_line(status.get("message") or exc.reason or "")
        reason = status.get("reason") or ""
        if code == 403:
            if not message or " cannot " in message:  # RBAC's own wording: "User ... cannot patch resource ..."
                line = f"forbidden: may not {op.verb} {op.resource} {op.scope} (403; grant it in the chart's RBAC)"
            else:  # an admission plugin refused, e.g. a missing PriorityClass
                line = f"forbidden: {op.verb} {op.what}: {message} (403)"
        elif code == 404:
            line = f"not found: {op.what}"
            if not (status.get("details") or {}).get("name"):  # the resource type itself is unknown to the server
                line += f" (the API server does not serve {op.resource.split('/')[0]}: is its CRD installed?)"
        elif code == 409:
            line = f"conflict: {op.what} already exists" if reason == "AlreadyExists" else f"conflict: {op.what}: {message}"
        elif code == 401:
            line = "unauthorized: the API server did not accept our credentials (401)"
        elif code in (400, 415, 422):
            line = f"rejected: {op.verb} {op.what}: {message} ({code})"
        elif code == 429 or code >= 500 or code == 0:
            line = f"API unavailable: {op.verb} {op.resource} {op.scope}: {message or 'no usable answer'}"
            line += f" ({code})" if code else ""
        else:
            line = f"{op.verb} {op.what} failed: {message} ({code})"
        return KubeError(line, code or None, reason)
    if isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):
        cause = getattr(exc, "reason", None) or exc
        # NewConnectionError subclasses urllib3's ConnectTimeoutError: test it first.
        if isinstance(cause, (urllib3.exceptions.NewConnectionError, ConnectionError)) or "refused" in str(cause).lower():
            why = f"cannot connect ({_one_line(str(cause), 120)})"
        elif isinstance(cause, (urllib3.exceptions.TimeoutError, TimeoutError)) or "timed out" in str(cause).lower():
            why = f"no answer within {timeout:g} s"
        else:
            why = _one_line(f"{type(cause).__name__}: {cause}", 160)
        return KubeError(f"API unavailable: {op.verb} {op.resource} {op.scope}: {why}")
    # pydantic's ValidationError (a ValueError): a body the client would not send, or an answer it could not read.
    return KubeError(f"{op.verb} {op.what} failed: the client could not encode the request or decode the answer "
                     f"({_one_line(str(exc), 160)})")


def _label_value(name: str) -> str:
    """A valid label value / DNS label from a pool name: lowercase alphanumerics and '-', at most 40 characters."""
    value = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:40].strip("-")
    return value or "pool"


def _placeholder_index(name: str, prefix: str) -> int:
    tail = name[len(prefix):] if name.startswith(prefix) else ""
    return int(tail) if tail.isdigit() else -1


def _get(obj: Any, *path: str, default: Any = None) -> Any:
    """A field of a dict answer (custom objects come back as dicts)."""
    for key in path:
        if not isinstance(obj, Mapping) or key not in obj:
            return default
        obj = obj[key]
    return obj


class KubeCluster:
    """The agent's cluster on Kubernetes. ``api_client`` carries the connection (host, TLS, auth);
    ``timeout_seconds`` bounds every call; ``field_manager`` names us in ``managedFields``."""

    def __init__(self, api_client: ApiClient, *, field_manager: str = "aiops", retries_on_conflict: int = 3,
                 timeout_seconds: float = 10.0, clock: Callable[[], float] = time.time,
                 instance: str | None = None) -> None:
        if retries_on_conflict < 0:
            raise ValueError("retries_on_conflict must be >= 0")
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be > 0")
        self.api_client = api_client
        self.field_manager = field_manager
        self.retries_on_conflict = retries_on_conflict
        self.timeout_seconds = timeout_seconds
        self.clock = clock
        self.instance = instance or os.environ.get("POD_NAME") or socket.gethostname()  # Event.reportingInstance
        self.apps = AppsV1Api(api_client)
        self.autoscaling = AutoscalingV2Api(api_client)
        self.core = CoreV1Api(api_client)
        self.custom = CustomObjectsApi(api_client)
        self._events = 0

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None, context: str | None = None, **kwargs: Any) -> "KubeCluster":
        """In a pod (``KUBERNETES_SERVICE_HOST`` set, no kubeconfig asked for): the service account;
        otherwise ``kubeconfig`` (default ``$KUBECONFIG``, else ``~/.kube/config``) and ``context``.
        Neither usable: :class:`~simulations.errors.InputError`, one line.

        A refused connection is retried (3 times, at once); a slow answer is not: urllib3's default
        would retry a read timeout 3 times, so one call could wait four timeouts."""
        from kubernetes import config as kube_config
        from kubernetes.config.config_exception import ConfigException

        configuration = kubernetes.client.Configuration()
        configuration.retries = urllib3.util.Retry(total=3, connect=3, read=0, status=0, redirect=0)
        in_cluster = ""
        if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            try:
                kube_config.load_incluster_config(client_configuration=configuration)
                return cls(ApiClient(configuration), **kwargs)
            except ConfigException as exc:
                in_cluster = f"in-cluster config failed ({_one_line(str(exc), 120)}); "
        else:
            in_cluster = "not in a cluster (KUBERNETES_SERVICE_HOST is unset); " if kubeconfig is None else ""
        path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        paths = [p for p in path.split(os.pathsep) if p]
        if not any(os.path.isfile(os.path.expanduser(p)) for p in paths):
            raise InputError(f"kubeconfig {path}", f"{in_cluster}no such file: pass --kubeconfig FILE, set KUBECONFIG, "
                                                   "or run the agent in a pod with a service account")
        try:
            kube_config.load_kube_config(config_file=path, context=context, client_configuration=configuration,
                                         persist_config=False)
        except ConfigException as exc:
            raise InputError(f"kubeconfig {path}", _one_line(str(exc), 200)) from None
        except Exception as exc:  # YAML syntax, a missing auth plugin, an unreadable certificate...
            raise InputError(f"kubeconfig {path}", _one_line(f"cannot load it: {type(exc).__name__}: {exc}", 200)) from None
        return cls(ApiClient(configuration), **kwargs)

    # -- reads -------------------------------------------------------------------------------------

    def replicas(self, t: WorkloadTarget) -> tuple[int, int]:
        """``(spec.replicas, status.readyReplicas)`` of the Deployment or StatefulSet, from one read of
        the object (one consistent snapshot). Raises :class:`KubeError` when it cannot be read."""
        plural = self._plural(t)
        op = _Op("get", plural, t.namespace, t.kind, t.object)
        read = self.apps.read_namespaced_deployment if t.kind == "Deployment" else self.apps.read_namespaced_stateful_set
        obj = self._call(op, read, t.object, t.namespace)
        spec = obj.spec.replicas if obj.spec is not None and obj.spec.replicas is not None else 1  # the API's default
        ready = (obj.status.ready_replicas if obj.status is not None else None) or 0
        return int(spec), int(ready)

    # -- workloads ---------------------------------------------------------------------------------

    def scale(self, t: WorkloadTarget, replicas: int, decision_id: str, dry_run: bool = False) -> ActionResult:
        """Set the workload's replicas (``mode="scale"``) or its HPA's floor (``mode="floor"``), then
        annotate the object with the decision. Never raises on an API error (see ``error``)."""
        if replicas < 0:
            raise ValueError(f"replicas must be >= 0, not {replicas}")
        if t.mode not in ("scale", "floor"):
            raise ValueError(f"mode must be scale or floor, not {t.mode!r}")
        plural = self._plural(t)
        if t.mode == "floor":
            return self._hpa_floor(t, replicas, decision_id, dry_run)
        deployment = t.kind == "Deployment"
        read = self.apps.read_namespaced_deployment_scale if deployment else self.apps.read_namespaced_stateful_set_scale
        write = self.apps.replace_namespaced_deployment_scale if deployment else self.apps.replace_namespaced_stateful_set_scale
        get = _Op("get", f"{plural}/scale", t.namespace, t.kind, t.object)
        put = _Op("update", f"{plural}/scale", t.namespace, t.kind, t.object)

        def current():
            s = self._call(get, read, t.object, t.namespace)
            replicas = s.spec.replicas if s.spec is not None and s.spec.replicas is not None else 0
            return replicas, s.metadata.resource_version, None

        def apply(value: int, rv: str) -> None:
            body = {"apiVersion": "autoscaling/v1", "kind": "Scale",
                    "metadata": {"name": t.object, "namespace": t.namespace, "resourceVersion": rv}, "spec": {"replicas": value}}
            self._call(put, write, t.object, t.namespace, body, field_manager=self.field_manager)

        return self._workload_action(t, t.kind, replicas, decision_id, dry_run, current, lambda before, _: (replicas, ""), apply)

    def _hpa_floor(self, t: WorkloadTarget, replicas: int, decision_id: str, dry_run: bool) -> ActionResult:
        kind = "HorizontalPodAutoscaler"
        get = _Op("get", "horizontalpodautoscalers", t.namespace, kind, t.hpa)
        patch = _Op("patch", "horizontalpodautoscalers", t.namespace, kind, t.hpa)

        def current():
            h = self._call(get, self.autoscaling.read_namespaced_horizontal_pod_autoscaler, t.hpa, t.namespace)
            low = h.spec.min_replicas if h.spec.min_replicas is not None else 1  # the API's default
            return low, h.metadata.resource_version, h.spec.max_replicas

        def target(before: int, max_replicas: int | None) -> tuple[int, str]:
            # minReplicas above maxReplicas is invalid; below 1 needs the HPAScaleToZero feature gate.
            if max_replicas is not None and replicas > max_replicas:
                return max_replicas, f"clamped to the HPA's maxReplicas {max_replicas} (asked {replicas})"
            if replicas < 1:
                return 1, f"clamped to 1, the lowest minReplicas an HPA takes (asked {replicas})"
            return replicas, ""

        def apply(value: int, rv: str) -> None:
            body = {"metadata": {"resourceVersion": rv}, "spec": {"minReplicas": value}}
            self._call(patch, self.autoscaling.patch_namespaced_horizontal_pod_autoscaler, t.hpa, t.namespace, body,
                       field_manager=self.field_manager, _content_type=MERGE_PATCH)

        return self._workload_action(t, kind, replicas, decision_id, dry_run, current, target, apply)

    def _workload_action(self, t: WorkloadTarget, kind: str, replicas: int, decision_id: str, dry_run: bool,
                         current, target, apply) -> ActionResult:
        what = f"{kind} {t.namespace}/{t.hpa if kind == 'HorizontalPodAutoscaler' else t.object}"
        noun = "minReplicas" if kind == "HorizontalPodAutoscaler" else "replicas"
        try:
            before, after, note, wrote = self._optimistic(what, current, target, apply, dry_run)
        except KubeError as exc:
            return ActionResult(t.name, kind, None, None, False, dry_run, error=str(exc))
        if dry_run:
            msg = (f"dry run: would set {what} {noun} {before} -> {after}" if before != after
                   else f"dry run: {what} {noun} already {after}")
            return ActionResult(t.name, kind, before, after, False, True, message="; ".join(m for m in (msg, note) if m))
        message = f"set {what} {noun} {before} -> {after}" if wrote else f"{what} {noun} already {after}"
        if wrote:
            annotated = self._annotate_workload(t, decision_id, after)
            if annotated:
                message += f"; {annotated}"
        return ActionResult(t.name, kind, before, after, True, False, message="; ".join(m for m in (message, note) if m))

    def _annotate_workload(self, t: WorkloadTarget, decision_id: str, desired: int) -> str:
        """Annotate the object with the decision; returns "" or why it could not (the scale itself stands)."""
        op = _Op("patch", self._plural(t), t.namespace, t.kind, t.object)
        patch = self.apps.patch_namespaced_deployment if t.kind == "Deployment" else self.apps.patch_namespaced_stateful_set
        body = {"metadata": {"annotations": {DECISION_ANNOTATION: decision_id, DESIRED_ANNOTATION: str(desired)}}}
        try:
            self._call(op, patch, t.object, t.namespace, body, field_manager=self.field_manager, _content_type=MERGE_PATCH)
        except KubeError as exc:
            log.warning("scaled %s, but could not annotate it with decision %s: %s", op.what, decision_id, exc)
            return f"annotation not written: {exc}"
        return ""

    # -- node pools --------------------------------------------------------------------------------

    def set_node_floor(self, p: PoolTarget, nodes: int, decision_id: str, dry_run: bool = False) -> ActionResult:
        """Ask for at least ``nodes`` nodes in the pool, by its method. Never raises on an API error."""
        if nodes < 0:
            raise ValueError(f"nodes must be >= 0, not {nodes}")
        if p.method == "placeholder":
            return self._placeholders(p, nodes, decision_id, dry_run)
        if p.method == "machinedeployment":
            return self._machine_deployment(p, nodes, decision_id, dry_run)
        if p.method == "karpenter":
            return self._node_pool(p, nodes, decision_id, dry_run)
        if p.method == "none":
            return ActionResult(p.name, "none", None, None, False, dry_run,
                                error=f"not actuated: node pool {p.name} has kubernetes.method none")
        raise ValueError(f"node pool {p.name}: unknown method {p.method!r} (placeholder, machinedeployment, karpenter or none)")

    def _placeholders(self, p: PoolTarget, nodes: int, decision_id: str, dry_run: bool) -> ActionResult:
        """Exactly ``nodes`` placeholder pods: create the missing ones, delete the extra ones (newest first)."""
        label = _label_value(p.name)
        prefix = f"aiops-placeholder-{label}-"
        try:
            listed = self._call(_Op("list", "pods", p.namespace, "Pod", None), self.core.list_namespaced_pod, p.namespace,
                                label_selector=f"{PLACEHOLDER_LABEL}={label}").items
        except KubeError as exc:
            return ActionResult(p.name, "Pod", None, None, False, dry_run, error=str(exc))
        live = [pod for pod in listed if pod.metadata.deletion_timestamp is None]  # terminating pods no longer hold a node
        before = len(live)
        if dry_run:
            msg = f"dry run: would keep {nodes} placeholder pod(s) in {p.namespace} (now {before})"
            return ActionResult(p.name, "Pod", before, nodes, False, True, message=msg)
        count = before
        try:
            if nodes > before:
                taken = {pod.metadata.name for pod in listed}
                k = 0
                while count < nodes:
                    while f"{prefix}{k}" in taken:
                        k += 1
                    name = f"{prefix}{k}"
                    self._call(_Op("create", "pods", p.namespace, "Pod", name), self.core.create_namespaced_pod, p.namespace,
                               self._placeholder_pod(p, name, label, decision_id), field_manager=self.field_manager)
                    taken.add(name)
                    count += 1
            elif nodes < before:
                def age(pod: Any) -> tuple:  # newest first; pods created in the same second by their index
                    created = pod.metadata.creation_timestamp
                    index = _placeholder_index(pod.metadata.name, prefix)
                    return created is not None, created.timestamp() if created else 0.0, index

                newest = sorted(live, key=age, reverse=True)
                for pod in newest[: before - nodes]:
                    op = _Op("delete", "pods", p.namespace, "Pod", pod.metadata.name)
                    try:
                        self._call(op, self.core.delete_namespaced_pod, pod.metadata.name, p.namespace, grace_period_seconds=0)
                    except KubeError as exc:
                        if exc.status != 404:  # already gone: what we wanted
                            raise
                    count -= 1
        except KubeError as exc:
            return ActionResult(p.name, "Pod", before, count, False, False, error=str(exc))
        message = (f"placeholder pods in {p.namespace}: {before} -> {count}" if count != before
                   else f"placeholder pods in {p.namespace}: already {count}")
        return ActionResult(p.name, "Pod", before, count, True, False, message=message)

    def _placeholder_pod(self, p: PoolTarget, name: str, label: str, decision_id: str) -> dict:
        """A pause pod that needs a whole node of the pool and gives it up to any real pod."""
        gpus = {GPU_RESOURCE: str(p.gpus_per_node)}  # extended resources: requests must equal limits
        return {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": p.namespace,
                         "labels": {PLACEHOLDER_LABEL: label, "app.kubernetes.io/managed-by": "aiops",
                                    "app.kubernetes.io/component": "placeholder"},
                         "annotations": {DECISION_ANNOTATION: decision_id}},
            "spec": {
                "priorityClassName": p.priority_class,
                "terminationGracePeriodSeconds": 0,
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "nodeSelector": dict(p.node_selector),
                "tolerations": [dict(t) for t in p.tolerations],
                "securityContext": {"runAsNonRoot": True, "runAsUser": 65535, "runAsGroup": 65535,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "pause", "image": p.image,
                    "resources": {"requests": {**gpus, "cpu": "1m", "memory": "8Mi"}, "limits": {**gpus, "memory": "16Mi"}},
                    "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "capabilities": {"drop": ["ALL"]}},
                }],
            },
        }

    def _machine_deployment(self, p: PoolTarget, nodes: int, decision_id: str, dry_run: bool) -> ActionResult:
        group, version, plural = CAPI
        resource = f"{plural}.{group}"
        kind, name, ns = "MachineDeployment", p.object, p.namespace
        get, put = _Op("get", f"{resource}/scale", ns, kind, name), _Op("update", f"{resource}/scale", ns, kind, name)

        def current():
            s = self._call(get, self.custom.get_namespaced_custom_object_scale, group, version, ns, plural, name)
            return int(_get(s, "spec", "replicas", default=0) or 0), _get(s, "metadata", "resourceVersion"), None

        def apply(value: int, rv: str) -> None:
            body = {"apiVersion": "autoscaling/v1", "kind": "Scale",
                    "metadata": {"name": name, "namespace": ns, "resourceVersion": rv}, "spec": {"replicas": value}}
            self._call(put, self.custom.replace_namespaced_custom_object_scale, group, version, ns, plural, name, body,
                       field_manager=self.field_manager)

        def annotate(body: dict) -> None:
            self._call(_Op("patch", resource, ns, kind, name), self.custom.patch_namespaced_custom_object, group, version, ns,
                       plural, name, body, field_manager=self.field_manager, _content_type=MERGE_PATCH)

        return self._pool_action(p, kind, f"{kind} {ns}/{name}", nodes, decision_id, dry_run, current, apply, annotate)

    def _node_pool(self, p: PoolTarget, nodes: int, decision_id: str, dry_run: bool) -> ActionResult:
        group, version, plural = KARPENTER
        resource = f"{plural}.{group}"
        kind, name = "NodePool", p.object
        get, patch = _Op("get", resource, None, kind, name), _Op("patch", resource, None, kind, name)

        def current():
            obj = self._call(get, self.custom.get_cluster_custom_object, group, version, plural, name)
            replicas = _get(obj, "spec", "replicas")
            if replicas is None:  # a dynamic NodePool: Karpenter refuses to turn it static
                raise KubeError(f"not static: NodePool {name} has no spec.replicas; only a static NodePool takes a node count "
                                "(use method placeholder for a dynamic one)")
            return int(replicas), _get(obj, "metadata", "resourceVersion"), None

        def apply(value: int, rv: str) -> None:
            body = {"metadata": {"resourceVersion": rv}, "spec": {"replicas": value}}
            self._call(patch, self.custom.patch_cluster_custom_object, group, version, plural, name, body,
                       field_manager=self.field_manager, _content_type=MERGE_PATCH)

        def annotate(body: dict) -> None:
            self._call(patch, self.custom.patch_cluster_custom_object, group, version, plural, name, body,
                       field_manager=self.field_manager, _content_type=MERGE_PATCH)

        return self._pool_action(p, kind, f"{kind} {name}", nodes, decision_id, dry_run, current, apply, annotate)

    def _pool_action(self, p: PoolTarget, kind: str, what: str, nodes: int, decision_id: str, dry_run: bool,
                     current, apply, annotate) -> ActionResult:
        try:
            before, after, _, wrote = self._optimistic(what, current, lambda before, _: (nodes, ""), apply, dry_run)
        except KubeError as exc:
            return ActionResult(p.name, kind, None, None, False, dry_run, error=str(exc))
        if dry_run:
            message = f"dry run: would set {what} replicas {before} -> {after}"
            return ActionResult(p.name, kind, before, after, False, True, message=message)
        message = f"set {what} replicas {before} -> {after}" if wrote else f"{what} replicas already {after}"
        if wrote:
            try:
                annotate({"metadata": {"annotations": {DECISION_ANNOTATION: decision_id, DESIRED_ANNOTATION: str(after)}}})
            except KubeError as exc:
                log.warning("scaled %s, but could not annotate it with decision %s: %s", what, decision_id, exc)
                message += f"; annotation not written: {exc}"
        return ActionResult(p.name, kind, before, after, True, False, message=message)

    # -- events ------------------------------------------------------------------------------------

    def record(self, t: WorkloadTarget, decision_id: str, reason: str, message: str, event_type: str = "Normal") -> None:
        """A core/v1 Event on the workload's object (``kubectl describe`` lists it). Failures are
        logged, never raised: an Event is a courtesy, not part of the action."""
        plural = self._plural(t)
        ref: dict[str, Any] = {"apiVersion": "apps/v1", "kind": t.kind, "name": t.object, "namespace": t.namespace}
        read = self.apps.read_namespaced_deployment if t.kind == "Deployment" else self.apps.read_namespaced_stateful_set
        try:  # kubectl describe matches events by the object's uid too
            obj = self._call(_Op("get", plural, t.namespace, t.kind, t.object), read, t.object, t.namespace)
            ref.update(uid=obj.metadata.uid, resourceVersion=obj.metadata.resource_version)
        except KubeError as exc:
            log.debug("event on %s/%s without the object's uid: %s", t.namespace, t.object, exc)
        now = self.clock()
        self._events += 1
        stamp = datetime.fromtimestamp(int(now), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        text = message if len(message) <= EVENT_MESSAGE_LIMIT else message[: EVENT_MESSAGE_LIMIT - 3] + "..."
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{t.object}.{int(now * 1e9) + self._events:x}", "namespace": t.namespace,
                         "annotations": {DECISION_ANNOTATION: decision_id}},
            "involvedObject": {k: v for k, v in ref.items() if v is not None},
            "reason": reason, "message": text, "type": event_type,
            "source": {"component": "aiops"},
            "reportingComponent": "aiops.dev/agent", "reportingInstance": self.instance[:128],
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        }
        try:
            self._call(_Op("create", "events", t.namespace, "Event", None), self.core.create_namespaced_event, t.namespace, body,
                       field_manager=self.field_manager)
        except KubeError as exc:
            log.warning("could not record event %s for decision %s on %s/%s: %s", reason, decision_id, t.namespace, t.object, exc)
        except Exception as exc:  # never let an Event break a tick
            log.warning("could not record event %s for decision %s: %s", reason, decision_id, _one_line(str(exc)))

    # -- plumbing ----------------------------------------------------------------------------------

    def _optimistic(self, what: str, current, target, apply, dry_run: bool) -> tuple[int, int, str, bool]:
        """Read, decide, write with the read resourceVersion; on 409 re-read and try again.

        ``current() -> (value, resourceVersion, extra)``; ``target(value, extra) -> (new value, note)``;
        ``apply(new value, resourceVersion)``. Returns ``(before, after, note, wrote)``.
        """
        conflicts = 0
        while True:
            before, rv, extra = current()
            after, note = target(before, extra)
            if dry_run or after == before:
                return before, after, note, False
            try:
                apply(after, rv)
                return before, after, note, True
            except KubeError as exc:
                if not exc.conflict:
                    raise
                conflicts += 1
                if conflicts > self.retries_on_conflict:
                    raise KubeError(f"conflict: {what} changed {conflicts} times while we tried", 409, "Conflict") from None
                log.info("%s changed while we wrote it (409): re-reading, try %d", what, conflicts + 1)

    def _call(self, op: _Op, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One API call with the request timeout; every failure becomes a :class:`KubeError`."""
        try:
            return fn(*args, _request_timeout=self.timeout_seconds, **kwargs)
        except KubeError:
            raise
        except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise _describe(op, exc, self.timeout_seconds) from None

    @staticmethod
    def _plural(t: WorkloadTarget) -> str:
        try:
            return _PLURALS[t.kind]
        except KeyError:
            raise ValueError(f"workload {t.name}: kind must be Deployment or StatefulSet, not {t.kind!r}") from None
