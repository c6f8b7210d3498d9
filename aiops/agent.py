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

* :meth:`Agent.scan`: the anomaly scan (forecast drift, stale demand); asks for a retrain when
  the drift monitor made the stream refit.
* :meth:`Agent.retrain`: backtests the forecaster on a held-out day of the history it holds and
  retrains it (a new registry version, promoted only when it wins, with ``agent.model_name``);
  :meth:`Agent.reload_model` picks up a version promoted elsewhere (the training CronJob).

Every decision gets a deterministic id (policy, target, kind and time), is written to
``decisions.jsonl`` before it is applied and again with the outcome, and is annotated on the
target. After a restart, :meth:`Agent.recover` settles every decision the kill cut off between
those two lines from the cluster as it is now (applied or not: nothing is lost, nothing applied
twice) and restores recommendations still awaiting approval. Ready (``/readyz``) means
Prometheus and the Kubernetes API answered last time and the configured model is loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import numpy as np

from aiops.history import demand_queries
from aiops.kube import ActionResult, PoolTarget, WorkloadTarget
from aiops.prometheus import PrometheusError
from forecasters.registry import ENV_ROOT, ModelRegistry, RegistryError
from forecasters.series import Series
from policies import POLICIES
from policies.types import ClusterState, DecisionLog, ScalingDecision
from simulations.config import SimConfig
from simulations.forecast_tape import step_forecasts, stream_for
from simulations.replay import TREND_SECONDS, horizon_steps, observed_trend, policy_config, tables

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


@dataclass(frozen=True)
class Pending:
    """A recommended decision waiting for a human (enough to apply it, and to say what it was)."""

    id: str
    target: str
    desired: int
    decided_at: float
    explain: str


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
        self.pending: dict[str, Pending] = {}  # recommend mode: decision id -> decision awaiting approval
        self.lock = threading.RLock()  # collect, decide, scan and /metrics run in their own threads
        self.api_ok, self.api_error = False, "the Kubernetes API has not answered yet"
        self.recovered = False  # the journal is reconciled on the first tick that reads the cluster
        self.registry = ModelRegistry(os.environ.get(ENV_ROOT) or self.state_dir / "models")
        self.model_version: str | None = None  # the registry version forecasting, when agent.model_name is set
        self.model_error = f"model {config.agent.model_name!r} not loaded yet" if config.agent.model_name else ""
        self.retrain_requested = ""  # why the scan asked for a retrain now ("" when it did not)
        self._drift_refits = 0  # the stream's drift refits already answered with a retrain
        self._journalled: set[str] | None = None  # ids in decisions.jsonl, read on first use
        self.recent_actions: deque[dict[str, Any]] = deque(maxlen=200)  # applied scalings: evidence for incidents
        self.last_retrain: dict[str, Any] = {}
        if observer is not None:
            from forecasters.drift import _HELP as DRIFT_HELP

            observer.watch(self._drift_gauges, DRIFT_HELP)
            observer.set_modes({name: self.config.workload_for(name).kubernetes.mode or config.agent.mode for name in self.names})

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
            self.note_api(False, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            report.held = f"cannot read replicas from the Kubernetes API ({self.api_error}): holding, no action"
            log.warning(report.held)
            self._observe_hold(report)
            return report
        self.note_api(True)
        if not self.recovered:
            self.recover(state)
        self._expire_pending(now)
        forecasts, ratio = None, None
        if self.policy == "predictive" and start is not None:
            t = len(observed)
            with self.lock:  # the stream and its drift monitor are read by /metrics and the scan
                found, ratio = step_forecasts(self.stream, self.names, observed, t, start, self.step,
                                              self.stream.history_steps(self.step), self.horizon)
            forecasts = found
            trend = None
            if getattr(self.policy_config, "follow_trend", False):  # as the replay computes it, from the same window
                tail = observed[-(int(TREND_SECONDS / self.step) + 4):]
                trend = observed_trend(np.vstack([tail, np.full((1, tail.shape[1]), np.nan)]), self.step)[-1]
            state = replace(state, workloads=replace(state.workloads, forecast_error_ratio=ratio, demand_trend=trend))
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
                for old in [p for p in self.pending.values() if p.target == d.target and p.id != ident]:  # never apply a stale one
                    del self.pending[old.id]
                    self._journal({"id": old.id, "target": old.target, "event": "superseded", "by": ident})
                self.pending[ident] = Pending(ident, d.target, d.desired, d.decided_at, d.explain())
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
        if not self.recovered:  # approved right after a restart, before the first tick
            self.recover(self.state(self.clock()))
        self._expire_pending(self.clock())
        d = self.pending.pop(ident, None)
        if d is None:
            raise KeyError(f"no pending decision {ident!r} (already applied, superseded, expired or unknown)")
        target = self.targets[d.target]
        result = self.cluster.scale(target, d.desired, ident)
        self.cluster.record(target, ident, "Approved" if result.applied else "ScaleFailed", d.explain)
        done = {"id": ident, "target": d.target, "desired": d.desired, "applied": result.applied,
                "outcome": "applied after approval" if result.applied else f"failed: {result.error}", "event": "approved"}
        self._journal(done)
        return done

    def _drift_gauges(self) -> list[tuple[str, dict[str, str], float]]:
        with self.lock:  # the decide job updates the monitor in another thread
            return self.stream.drift.metrics() if self.stream.drift is not None else []

    def offer(self, p: Pending, mode: str = "recommend") -> dict[str, Any]:
        """A scaling action from elsewhere (an incident's ``scale_up``), journalled like a decision:
        applied now in ``auto``, else it waits for approval like a recommended decision."""
        target = self.targets[p.target]
        entry = {"id": p.id, "decided_at": p.decided_at, "policy": "incident", "target": p.target, "kind": "replicas",
                 "desired": p.desired, "mode": mode, "reasons": ["INCIDENT"], "explain": p.explain}
        self._journal({**entry, "event": "decided"})
        if mode == "auto":
            result = self.cluster.scale(target, p.desired, p.id)
            self.cluster.record(target, p.id, "ScaledForIncident" if result.applied else "ScaleFailed", p.explain,
                                "Normal" if result.applied else "Warning")
            done = {**entry, "applied": result.applied, "outcome": "applied" if result.applied else f"failed: {result.error}"}
        else:
            self.pending[p.id] = p
            self.cluster.record(target, p.id, "Recommended", p.explain)
            done = {**entry, "applied": False, "outcome": "awaiting approval"}
        self._journal({**done, "event": "outcome"})
        return done

    def was_journalled(self, ident: str) -> bool:
        """Whether a decision with this id was ever journalled (so an incident's action is offered once)."""
        if self._journalled is None:
            self._journalled = {e["id"] for e in self._read_journal()}
        return ident in self._journalled

    def _expire_pending(self, now: float) -> None:
        ttl = self.config.agent.approval_ttl_seconds
        for p in [p for p in self.pending.values() if now - p.decided_at > ttl]:
            del self.pending[p.id]
            self._journal({"id": p.id, "target": p.target, "event": "expired",
                           "outcome": f"not approved within {ttl:g} s: expired, never applied"})

    # -- anomaly scan ------------------------------------------------------------------------------

    def scan(self) -> list[dict[str, Any]]:
        """The anomaly-scan job: what is wrong with the data the agent holds and its own forecasts.

        Today: workloads whose forecasts drift from what is observed (the drift monitor's verdict),
        and a retrain request when the monitor made the stream refit on drift since the last scan
        (the runner then runs the retrain job at once). Each finding is logged and counted.
        """
        now = self.clock()
        found: list[dict[str, Any]] = []
        with self.lock:
            drift = self.stream.drift
            statuses = [drift.status(name, now) for name in self.names] if drift is not None else []
            for name, status in zip(self.names, statuses):
                if status.drifting:
                    found.append({"code": "FORECAST_DRIFT", "workload": name, "ratio": status.ratio, "summary": status.reason})
            refits = sum(self.stream.retrains.values())
            last = self.observed[-1] if len(self.observed) else np.full(len(self.names), np.nan)
        if refits > self._drift_refits:
            drifted = sorted(k for k, v in self.stream.retrains.items() if v)
            self.retrain_requested = f"drift: live forecast error well above its backtest for {', '.join(drifted)}"
            self._drift_refits = refits
        for name, value in zip(self.names, last):
            if np.isnan(value):
                found.append({"code": "STALE_METRICS", "workload": name, "summary": f"no demand observed for {name} at the last step"})
        for f in found:
            log.warning("finding %s for %s: %s", f["code"], f["workload"], f["summary"])
            if self.observer is not None:
                self.observer.findings.labels(f["code"]).inc()
        return found

    # -- restart -----------------------------------------------------------------------------------

    def recover(self, state: ClusterState) -> list[dict[str, Any]]:
        """Reconcile the journal after a restart, so no decision is lost or applied twice.

        A decision journalled as decided but with no outcome was cut off by a kill between the two
        lines. Its outcome is settled from the cluster as it is now: in auto mode, applied when the
        target already has the desired replicas, else not applied (the tick that follows decides
        again from fresh state, with a new id: the old one is never replayed blindly). Recommended
        decisions still awaiting approval, and not expired, wait for approval again.
        """
        self.recovered = True
        entries = self._read_journal()
        settled = {e["id"] for e in entries if e.get("event") in ("outcome", "approved", "superseded", "expired")}
        waiting: dict[str, Mapping[str, Any]] = {}
        out = []
        for e in entries:
            if e.get("event") == "decided" and e["id"] not in settled:
                out.append(self._settle(e, state))
                settled.add(e["id"])
            if e.get("event") == "outcome" and e.get("outcome", "").startswith("awaiting approval"):
                waiting[e["id"]] = e
            elif e.get("event") in ("approved", "superseded", "expired"):
                waiting.pop(e["id"], None)
        for e in waiting.values():
            if e.get("target") in self.targets and e.get("kind", "replicas") == "replicas":
                self.pending[e["id"]] = Pending(e["id"], e["target"], int(e["desired"]), float(e["decided_at"]), e.get("explain", ""))
        if out or self.pending:
            log.info("recovered after restart: %d decisions settled, %d awaiting approval", len(out), len(self.pending))
        return out

    def _settle(self, e: Mapping[str, Any], state: ClusterState) -> dict[str, Any]:
        done = {k: v for k, v in e.items() if k != "event"}
        if e.get("kind") == "replicas" and e.get("target") in self.targets:
            now_replicas = int(state.workloads.replicas[self.names.index(e["target"])])
            if e.get("mode") == "auto":
                applied = now_replicas == int(e["desired"])
                outcome = ("applied (found on the target after a restart)" if applied else
                           f"not applied: the agent stopped before applying it (target at {now_replicas}); decided again from fresh state")
            elif e.get("mode") == "recommend":
                applied, outcome = False, "awaiting approval (restored after a restart)"
            else:
                applied, outcome = False, "logged"
        else:
            applied, outcome = False, "unknown after a restart: decided again from fresh state"
        done.update(applied=applied, outcome=outcome, recovered=True)
        self._journal({**done, "event": "outcome"})
        return done

    def _read_journal(self) -> list[dict[str, Any]]:
        path = self.state_dir / "decisions.jsonl"
        if not path.exists():
            return []
        entries = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # a line torn by a kill mid-write: skip it, say so
                log.warning("%s:%d: unreadable journal line skipped", path, n)
                continue
            if isinstance(entry, dict) and "id" in entry:
                entries.append(entry)
        return entries

    # -- models ------------------------------------------------------------------------------------

    def reload_model(self) -> str | None:
        """Forecast with the registry's promoted version of ``agent.model_name`` when it changed:
        the version now in use, or None when nothing changed (or no registry model is configured)."""
        name = self.config.agent.model_name
        if not name:
            return None
        try:
            current = self.registry.current(name)
            if current is None:
                raise RegistryError(f"{self.registry.root}/{name}", "no promoted version (run aiops train, or the training CronJob)")
            if current.version == self.model_version:
                return None
            model = self.registry.load(name, current.version)
        except RegistryError as exc:
            if self.model_version is None:
                self.model_error = str(exc)
            log.warning("model %s not reloaded: %s%s", name, exc,
                        f" (still forecasting with {self.model_version})" if self.model_version else "")
            return None
        with self.lock:
            self.stream.use_model(model)
        self.model_version, self.model_error = current.version, ""
        log.info("forecasting with %s %s (%s)", name, current.version, current.model)
        return current.version

    def retrain(self, reason: str = "scheduled") -> dict[str, Any]:
        """Backtest the forecaster on the history held, and retrain it.

        With ``agent.model_name``: train a new version of the registered model on the history,
        register it, promote it only when it beats the current version on the same holdout, and
        reload. Without: score the in-process forecaster on the holdout and refit every workload.
        """
        from aiops.models_cmd import build_model, console_for, holdout_evaluation, promote_if_better, score

        with self.lock:
            observed, start = self.observed.copy(), self.start
        self.retrain_requested = ""
        series = [Series(name, start, self.step, observed[:, i]) for i, name in enumerate(self.names)] if start is not None else []
        evaluation = holdout_evaluation(series, self.horizon, n_origins=6) if series else None
        if evaluation is None:
            self.last_retrain = {"reason": reason, "skipped": f"not enough history yet ({len(observed)} steps)"}
            log.info("retrain (%s) skipped: %s", reason, self.last_retrain["skipped"])
            return self.last_retrain
        name = self.config.agent.model_name
        if not name:
            scores = score(self.stream.model, evaluation)
            with self.lock:
                self.stream.refit_all()
            self.last_retrain = {"reason": reason, "model": self.stream.model.name, "mase": scores["mase"],
                                 "per_workload_mase": scores["per_series_mase"], "verdict": "refitted every workload"}
        else:
            current = self.registry.current(name)
            kind = current.model if current is not None else self.config.policies.predictive.forecaster
            model, device = build_model(kind, "auto")
            model.train(evaluation.training())
            scores = score(model, evaluation)
            entry = self.registry.register(name, model, evaluation.training(), scores, device=device,
                                           notes=f"retrained by the agent: {reason}")
            verdict = promote_if_better(self.registry, name, entry.version, evaluation, "auto", False, console_for(stderr=True))
            self.reload_model()
            self.last_retrain = {"reason": reason, "model": kind, "version": entry.version, "mase": scores["mase"],
                                 "per_workload_mase": scores["per_series_mase"], "verdict": verdict}
        log.info("retrain (%s): %s", reason, json.dumps(self.last_retrain, default=str))
        if self.observer is not None:
            self.observer.retrained(self.last_retrain)
        return self.last_retrain

    # -- readiness ---------------------------------------------------------------------------------

    def note_api(self, ok: bool, error: str = "") -> None:
        """The Kubernetes API answered (or not): from a tick, or from leader election."""
        self.api_ok, self.api_error = ok, ("" if ok else error)

    def readiness(self) -> tuple[bool, str]:
        """Ready when Prometheus and the Kubernetes API answered last time and the model is loaded."""
        problems = []
        if not self.metrics_ok:
            problems.append(f"Prometheus: {self.metrics_error}")
        if not self.api_ok:
            problems.append(f"Kubernetes API: {self.api_error}")
        if self.model_error:
            problems.append(f"model: {self.model_error}")
        return not problems, "; ".join(problems) or "ok"

    def _observe_hold(self, report: TickReport) -> None:
        if self.observer is not None:
            self.observer.tick(report, None, self.names)

    def _journal(self, entry: Mapping[str, Any]) -> None:
        """Append one line to decisions.jsonl (flushed and fsynced: a kill loses nothing written)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps(entry, sort_keys=True, default=str)
        if self._journalled is not None:
            self._journalled.add(str(entry.get("id")))
        if entry.get("applied") and entry.get("kind", "replicas") == "replicas":
            action = {k: entry.get(k) for k in ("target", "decided_at", "current", "desired", "outcome", "policy")}
            action["decided_at"] = action["decided_at"] or self.clock()  # an approval: when it was applied
            self.recent_actions.append(action)
        with open(self.state_dir / "decisions.jsonl", "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    @property
    def ready(self) -> bool:
        return self.readiness()[0]
