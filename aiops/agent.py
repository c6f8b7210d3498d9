"""The in-cluster agent's control loop: collect -> forecast -> decide -> act, and say what it did.

One :class:`Agent` holds what a tick needs between runs: each workload's demand history on one
step grid, the forecast stream (the same :class:`~forecasters.stream.ForecastStream` the replay
uses, through the same :func:`~simulations.forecast_tape.step_forecasts`), the policy's decision
log, and the approvals waiting for a human. Jobs (:mod:`aiops.runner` schedules them):

* :meth:`Agent.collect`: pulls demand since the last pull (the whole ``agent.history_days`` the
  first time). Prometheus unavailable: the agent keeps its history, marks itself not ready, and
  the next :meth:`decide_and_act` holds (no action at all, so nothing is scaled down on missing
  data), saying so in its log and metrics.
* :meth:`Agent.decide_and_act`: builds the :class:`~policies.types.ClusterState` from the
  configuration and the replicas the cluster reports, calls the configured policy's ``decide()``
  (the same function the simulation runs), and then, per workload mode: ``dry-run`` posts the
  decision as a Kubernetes Event and logs it; ``recommend`` keeps it for approval (see
  :meth:`approve`) and posts it; ``auto`` applies it through the :class:`Cluster`.

Every decision gets a deterministic id (policy, target, kind and time), is written to
``decisions.jsonl`` before it is applied and again with the outcome, and is annotated on the
target, so a restart can tell what was applied.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import numpy as np

from aiops.history import demand_queries
from aiops.kube import ActionResult, PoolTarget, WorkloadTarget
from aiops.prometheus import PrometheusError
from forecasters.series import Series
from policies import POLICIES
from policies.types import ClusterState, DecisionLog, ScalingDecision
from simulations.config import SimConfig
from simulations.forecast_tape import step_forecasts, stream_for
from simulations.replay import horizon_steps, policy_config, tables

log = logging.getLogger("aiops.agent")

DAY = 86_400.0


class Cluster(Protocol):
    """What the agent needs from Kubernetes (:class:`aiops.kube.KubeCluster`, or a fake in tests)."""

    def replicas(self, t: WorkloadTarget) -> tuple[int, int]: ...

    def scale(self, t: WorkloadTarget, replicas: int, decision_id: str, dry_run: bool = False) -> ActionResult: ...

    def set_node_floor(self, p: PoolTarget, nodes: int, decision_id: str, dry_run: bool = False) -> ActionResult: ...

    def record(self, t: WorkloadTarget, decision_id: str, reason: str, message: str, event_type: str = "Normal") -> None: ...


class Metrics(Protocol):
    """What the agent needs from Prometheus (:class:`aiops.prometheus.PrometheusSource`)."""

    def range_many(self, queries: Mapping[str, str], start: float, end: float, step: float,
                   progress: Callable[[int], None] | None = None) -> dict[str, Series]: ...


def workload_target(config: SimConfig, name: str) -> WorkloadTarget:
    w = config.workload_for(name)
    k = w.kubernetes
    return WorkloadTarget(name=name, namespace=k.namespace or w.metrics.namespace, kind=k.kind,
                          object_name=k.name or w.metrics.deployment or name, mode=k.actuation, hpa_name=k.hpa_name)


def pool_target(config: SimConfig, name: str) -> PoolTarget:
    p = config.pool(name)
    k = p.kubernetes
    return PoolTarget(name=p.name, method=k.method, namespace=k.namespace, object_name=k.name or p.name,
                      gpus_per_node=p.gpus_per_node, node_selector=dict(k.node_selector), tolerations=tuple(k.tolerations),
                      priority_class=os.environ.get("AIOPS_PLACEHOLDER_PRIORITY_CLASS", "aiops-placeholder"))  # set by the chart


def decision_id(d: ScalingDecision) -> str:
    """Deterministic: the same decision replayed has the same id."""
    text = f"{d.policy}|{d.kind}|{d.target}|{d.decided_at:.0f}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class TickReport:
    """What one decide-and-act did: the decisions, the outcome of each, and whether it held."""

    decided_at: float
    held: str = ""  # why nothing was done at all ("" when it acted)
    decisions: list[ScalingDecision] = field(default_factory=list)
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)  # decision id -> outcome


class Agent:
    def __init__(self, config: SimConfig, metrics: Metrics, cluster: Cluster, *, state_dir: str | os.PathLike | None = None,
                 clock: Callable[[], float] = time.time, observer: Any = None, is_leader: Callable[[], bool] = lambda: True) -> None:
        self.config = config
        self.metrics = metrics
        self.cluster = cluster
        self.clock = clock
        self.observer = observer  # aiops.observability.AgentMetrics, or None
        self.is_leader = is_leader
        self.names = tuple(w.name for w in config.workloads)
        if not self.names:
            raise ValueError("the agent needs at least one workload in the config")
        # The config is frozen: each target is derived once, not on every tick.
        self.targets = {name: workload_target(config, name) for name in self.names}
        self.step = config.prometheus.step_seconds
        self.tables = tables(config, self.names)
        self.horizon = horizon_steps(self.tables, self.step)
        pc = config.policies.predictive
        self.stream = stream_for(pc.forecaster, tuple(q for q in (pc.quantile,) if q is not None), pc.refit_every_seconds,
                                 pc.history_days, self.horizon, self.step)
        self.policy = config.agent.policy
        self.policy_config = policy_config(self.policy, config)
        self.log = DecisionLog.empty(self.names)
        self.state_dir = Path(state_dir if state_dir is not None else config.agent.state_dir)
        self.start: float | None = None  # the history grid
        self.observed = np.zeros((0, len(self.names)))
        self.metrics_ok = False
        self.metrics_error = "no metrics collected yet"
        self.pending: dict[str, ScalingDecision] = {}  # recommend mode: decision id -> decision awaiting approval
        self.lock = threading.Lock()  # collect and decide run in scheduler threads

    # -- collect -----------------------------------------------------------------------------------

    def collect(self) -> None:
        """Pull demand since the last pull; on failure keep the history and mark metrics unavailable."""
        now = math.floor(self.clock() / self.step) * self.step
        with self.lock:
            first = now - self.config.agent.history_days * DAY + self.step if self.start is None else \
                self.start + len(self.observed) * self.step
        if first > now:
            return
        try:
            pulled = self.metrics.range_many(demand_queries(self.config, self.names), first, now, self.step)
        except PrometheusError as exc:
            with self.lock:
                self.metrics_ok, self.metrics_error = False, exc.message
            log.warning("metrics unavailable, holding: %s", exc)
            return
        new = np.column_stack([pulled[name].values for name in self.names])
        with self.lock:
            if self.start is None:
                self.start = first
            self.observed = np.concatenate([self.observed, new]) if len(self.observed) else new
            keep = int(self.config.agent.history_days * DAY / self.step)
            if len(self.observed) > keep:  # slide the window
                drop = len(self.observed) - keep
                self.observed = self.observed[drop:]
                self.start += drop * self.step
            self.metrics_ok, self.metrics_error = True, ""

    # -- decide and act ----------------------------------------------------------------------------

    def state(self, now: float) -> ClusterState:
        """The cluster as the policy sees it: the config's tables, replicas from the cluster,
        the newest observed demand (NaN where the last step is missing)."""
        wl = self.tables.believed
        replicas = np.zeros(len(self.names), dtype=np.int64)
        ready = np.zeros(len(self.names), dtype=np.int64)
        for i, name in enumerate(self.names):
            spec, ready_i = self.cluster.replicas(self.targets[name])
            replicas[i], ready[i] = spec, ready_i
        demand = self.observed[-1] if len(self.observed) else np.full(len(self.names), np.nan)
        starting = np.maximum(replicas - ready, 0)
        workloads = replace(wl, replicas=replicas, ready=ready, starting=starting, pending=np.zeros_like(replicas),
                            demand_rps=np.asarray(demand, dtype=float))
        return ClusterState(now, self.step, workloads, self.tables.pools)

    def decide_and_act(self) -> TickReport:
        now = self.clock()
        report = TickReport(now)
        with self.lock:
            if not self.metrics_ok:
                report.held = f"metrics unavailable ({self.metrics_error}): holding, no action"
            elif not self.is_leader():
                report.held = "not the leader: another replica acts"
            observed = self.observed.copy()
            start = self.start
        if report.held:
            log.warning(report.held)
            self._observe_hold(report)
            return report
        try:
            state = self.state(now)
        except Exception as exc:  # the API is down: hold
            report.held = f"cannot read replicas from the Kubernetes API ({exc}): holding, no action"
            log.warning(report.held)
            self._observe_hold(report)
            return report
        forecasts, ratio = None, None
        if self.policy == "predictive" and start is not None:
            t = len(observed)
            found, ratio = step_forecasts(self.stream, self.names, observed, t, start, self.step,
                                          self.stream.history_steps(self.step), self.horizon)
            forecasts = found
            state = replace(state, workloads=replace(state.workloads, forecast_error_ratio=ratio))
        batch, self.log = POLICIES[self.policy].decide(now, state, forecasts, self.log, self.policy_config)
        report.decisions = batch.decisions(state)
        for d in report.decisions:
            report.outcomes[decision_id(d)] = self._act(d)
        if self.observer is not None:
            self.observer.tick(report, ratio, self.names)
        return report

    def mode_of(self, d: ScalingDecision) -> str:
        if d.kind == "replicas":
            return self.config.workload_for(d.target).kubernetes.mode or self.config.agent.mode
        return self.config.agent.mode

    def _act(self, d: ScalingDecision) -> dict[str, Any]:
        ident = decision_id(d)
        mode = self.mode_of(d)
        entry = {"id": ident, "decided_at": d.decided_at, "policy": d.policy, "target": d.target, "kind": d.kind,
                 "current": d.current, "desired": d.desired, "mode": mode, "reasons": [r.code for r in d.reasons],
                 "explain": d.explain(), "forecast": d.forecast_ref}
        if not d.is_change:
            return {**entry, "applied": False, "outcome": "hold"}
        self._journal({**entry, "event": "decided"})
        outcome = "logged"
        result: ActionResult | None = None
        if d.kind == "replicas":
            target = self.targets[d.target]
            if mode == "auto":
                result = self.cluster.scale(target, d.desired, ident)
                outcome = "applied" if result.applied else f"failed: {result.error}"
                self.cluster.record(target, ident, "ScaledAhead" if result.applied else "ScaleFailed", d.explain(),
                                    "Normal" if result.applied else "Warning")
            elif mode == "recommend":
                self.pending[ident] = d
                outcome = "awaiting approval"
                self.cluster.record(target, ident, "Recommended", d.explain())
            else:
                self.cluster.record(target, ident, "DryRun", d.explain())
        else:
            pool = pool_target(self.config, d.target)
            if mode == "auto" and pool.method != "none":
                result = self.cluster.set_node_floor(pool, d.desired, ident)
                outcome = "applied" if result.applied else f"failed: {result.error}"
        done = {**entry, "applied": bool(result and result.applied), "outcome": outcome}
        if result is not None and result.error:
            done["error"] = result.error
        self._journal({**done, "event": "outcome"})
        return done

    def approve(self, ident: str) -> dict[str, Any]:
        """Apply a recommended decision a human approved (the approval endpoint checks who)."""
        d = self.pending.pop(ident, None)
        if d is None:
            raise KeyError(f"no pending decision {ident!r} (already applied, superseded or unknown)")
        target = self.targets[d.target]
        result = self.cluster.scale(target, d.desired, ident)
        self.cluster.record(target, ident, "Approved" if result.applied else "ScaleFailed", d.explain())
        done = {"id": ident, "target": d.target, "desired": d.desired, "applied": result.applied,
                "outcome": "applied after approval" if result.applied else f"failed: {result.error}", "event": "approved"}
        self._journal(done)
        return done

    def _observe_hold(self, report: TickReport) -> None:
        if self.observer is not None:
            self.observer.tick(report, None, self.names)

    def _journal(self, entry: Mapping[str, Any]) -> None:
        """Append one line to decisions.jsonl (flushed and fsynced: a kill loses nothing written)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps(entry, sort_keys=True, default=str)
        with open(self.state_dir / "decisions.jsonl", "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    @property
    def ready(self) -> bool:
        return self.metrics_ok
