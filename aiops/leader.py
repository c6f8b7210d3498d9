"""Leader election on a ``coordination.k8s.io/v1`` Lease: with several agent replicas, one acts.

:class:`LeaderElector` follows client-go's ``leaderelection`` package, one round per call of
:meth:`~LeaderElector.try_acquire_or_renew` (the agent's scheduler calls it every third of the
lease):

* no Lease: create it, holding it (``leaseTransitions`` 0);
* we hold it: renew it (``renewTime`` now);
* another replica holds it: take it over only once it has expired, and then
  ``leaseTransitions`` + 1. Expired means that the record (holder, times, transitions) has not
  changed for ``leaseDurationSeconds`` *by our own clock*, counted from when we first saw it so,
  as client-go counts. Comparing the holder's ``renewTime`` with our clock instead would let a
  replica whose clock runs ahead take the lease from a live leader; the price is that a replica
  that has just started waits one lease duration before it takes over a dead leader's lease;
* a Lease released on shutdown (no ``holderIdentity``): take it at once.

Every write is a PUT (or a create) carrying the ``resourceVersion`` just read, so of two replicas
racing for the same Lease, the API server accepts one and answers the other 409. Any API error
(that 409 included) makes the round return False: not the leader, never act.
:attr:`~LeaderElector.is_leader` also turns False by itself once ``lease_seconds`` have passed
since our last successful round, before any other replica can take the lease.

Times are written in the Lease's MicroTime format (``2026-11-23T12:00:00.000000Z``: the API
server accepts nothing else). The ``kubernetes`` client serializes datetimes with
``isoformat()``, which drops the fraction when it is zero, so the writes go through
:meth:`ApiClient.call_api` with the body as JSON we build; reads use ``CoordinationV1Api``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from datetime import datetime, timezone
from typing import Any, Callable

import urllib3
from kubernetes.client import ApiClient, CoordinationV1Api, V1Lease
from kubernetes.client.exceptions import ApiException

__all__ = ["LeaderElector", "micro_time"]

log = logging.getLogger("aiops.leader")


def micro_time(t: float) -> str:
    """``t`` (epoch seconds) as a Kubernetes MicroTime: ``2026-11-23T12:00:00.000000Z``."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """One replica's side of the election for the Lease ``namespace/name``."""

    def __init__(self, api_client: ApiClient, *, name: str = "aiops-agent", namespace: str = "aiops-system", identity: str,
                 lease_seconds: int = 15, clock: Callable[[], float] = time.time, timeout_seconds: float = 5.0) -> None:
        if not identity:
            raise ValueError("identity must be a non-empty string (the pod's name)")
        if lease_seconds < 1:
            raise ValueError("lease_seconds must be >= 1")
        self.api_client = api_client
        self.api = CoordinationV1Api(api_client)
        self.name, self.namespace, self.identity = name, namespace, identity
        self.lease_seconds = int(lease_seconds)
        self.clock = clock
        self.timeout_seconds = timeout_seconds
        self.api_error = ""  # why the last round could not talk to the API ("" when it could; a 409 race counts as answered)
        self._leader_since_renew: float | None = None  # clock time of our last successful round as leader
        self._observed: tuple | None = None  # the other holder's record as we last saw it
        self._observed_at = -math.inf  # when (our clock) we first saw that record

    @property
    def is_leader(self) -> bool:
        """True while our last round won and less than ``lease_seconds`` have passed since."""
        return self._leader_since_renew is not None and self.clock() < self._leader_since_renew + self.lease_seconds

    def try_acquire_or_renew(self) -> bool:
        """One round of the election (see the module's docstring). Never raises on an API error."""
        now = self.clock()
        self.api_error = ""
        try:
            lease = self._read()
            if lease is None:
                self._write("POST", None, self._spec(now, acquired=now, transitions=0))
                return self._won(now, "created the lease")
            spec = lease.spec
            holder = (spec.holder_identity if spec is not None else None) or ""
            transitions = (spec.lease_transitions if spec is not None else None) or 0
            if holder == self.identity:
                acquired = spec.acquire_time.timestamp() if spec.acquire_time is not None else now
                self._write("PUT", lease, self._spec(now, acquired=acquired, transitions=transitions, keep=spec))
                return self._won(now, None)
            if holder:
                duration = (spec.lease_duration_seconds if spec is not None else None) or self.lease_seconds
                record = (holder, spec.renew_time, spec.acquire_time, transitions, duration)
                if record != self._observed:
                    self._observed, self._observed_at = record, now
                if self._observed_at + duration > now:
                    return self._lost(f"held by {holder}")
            self._write("PUT", lease, self._spec(now, acquired=now, transitions=transitions + 1, keep=spec))
            return self._won(now, f"took the lease over from {holder}" if holder else "took the released lease")
        except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            if not (isinstance(exc, ApiException) and exc.status == 409):
                self.api_error = _short(exc)
            return self._lost(_short(exc))

    def release(self) -> None:
        """On shutdown: give the Lease up if we hold it, so another replica takes it at once."""
        was_leader = self._leader_since_renew is not None
        self._leader_since_renew = None
        try:
            lease = self._read()
            if lease is None or lease.spec is None or lease.spec.holder_identity != self.identity:
                return
            now = self.clock()
            spec = {"leaseDurationSeconds": 1, "acquireTime": micro_time(now), "renewTime": micro_time(now),
                    "leaseTransitions": lease.spec.lease_transitions or 0}
            self._write("PUT", lease, spec)
            log.info("released lease %s/%s", self.namespace, self.name)
        except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            log.warning("could not release lease %s/%s (it expires by itself): %s", self.namespace, self.name, _short(exc))
        finally:
            if was_leader:
                log.info("%s is no longer the leader", self.identity)

    # -- plumbing ----------------------------------------------------------------------------------

    def _won(self, now: float, what: str | None) -> bool:
        if what or self._leader_since_renew is None:
            log.info("%s is the leader (%s/%s): %s", self.identity, self.namespace, self.name, what or "renewed")
        self._leader_since_renew = now
        return True

    def _lost(self, why: str) -> bool:
        if self._leader_since_renew is not None:
            log.warning("%s lost the leadership of %s/%s: %s", self.identity, self.namespace, self.name, why)
        else:
            log.debug("not the leader: %s", why)
        self._leader_since_renew = None
        return False

    def _spec(self, now: float, *, acquired: float, transitions: int, keep: Any = None) -> dict:
        spec: dict[str, Any] = {
            "holderIdentity": self.identity, "leaseDurationSeconds": self.lease_seconds,
            "acquireTime": micro_time(acquired), "renewTime": micro_time(now), "leaseTransitions": transitions,
        }
        if keep is not None:  # fields of coordinated leader election we do not use, but must not erase
            for attr, key in (("strategy", "strategy"), ("preferred_holder", "preferredHolder")):
                if getattr(keep, attr, None) is not None:
                    spec[key] = getattr(keep, attr)
        return spec

    def _read(self) -> V1Lease | None:
        try:
            return self.api.read_namespaced_lease(self.name, self.namespace, _request_timeout=self.timeout_seconds)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _write(self, method: str, lease: V1Lease | None, spec: dict) -> None:
        """Create (POST) or replace (PUT, with the read resourceVersion) the Lease with ``spec`` as given."""
        if lease is None:
            metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        else:
            metadata = self.api_client.sanitize_for_serialization(lease.metadata) or {}
            metadata.pop("managedFields", None)  # omitted: the server keeps its own
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}
        path = f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases" + ("" if lease is None else f"/{self.name}")
        params = self.api_client.param_serialize(method=method, resource_path=path,
                                                 header_params={"Content-Type": "application/json", "Accept": "application/json"},
                                                 body=body, auth_settings=["BearerToken"])
        response = self.api_client.call_api(*params, _request_timeout=self.timeout_seconds)
        response.read()
        self.api_client.response_deserialize(response, {"200": "V1Lease", "201": "V1Lease"})  # raises on 4xx/5xx


def _short(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        try:
            message = json.loads(exc.body or "").get("message", "")
        except (TypeError, ValueError, AttributeError):
            message = ""
        return f"{exc.status} {exc.reason}: {message}".strip().rstrip(":")
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
