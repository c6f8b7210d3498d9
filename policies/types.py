"""Values a policy reads and returns: cluster state, decisions with their reasons, the decision log.

Design note (a deliberate change from ``DESIGN.md``'s per-workload records): ``ClusterState`` holds
its workloads and node pools as *columns* (one numpy array per field), because the same
``decide()`` must serve one workload in a live cluster and a thousand in a simulation at a million
workload-steps per second. A policy therefore returns one :class:`DecisionBatch` for all workloads,
whose reasons are a bitmask per workload; :meth:`DecisionBatch.decisions` turns it into the
per-target :class:`ScalingDecision` values of the design, each with its human-readable reasons and a
JSON round-trip, when someone needs to read, log or send them.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np


class ReasonCode(enum.IntFlag):
    """Why a target got the number it got. Several may apply; each is one bit."""

    REACTIVE = enum.auto()  # the HPA ratio on observed load proposed the count
    WITHIN_TOLERANCE = enum.auto()  # observed load within tolerance of the target: no change
    STABILIZED = enum.auto()  # scale-down held back by the stabilization window
    RATE_LIMITED = enum.auto()  # scale-up capped by the per-step limit
    CLAMPED_MAX = enum.auto()  # capped at max replicas / max nodes
    CLAMPED_MIN = enum.auto()  # raised to min replicas / min nodes
    STALE_METRICS = enum.auto()  # demand metric missing: hold, never scale down
    FORECAST_UP = enum.auto()  # the forecast over the lead time asked for more than reactive
    REACTIVE_FLOOR = enum.auto()  # the reactive answer was at least the forecast's: it won
    FALLBACK_FORECAST = enum.auto()  # no usable forecast: reactive alone decided
    ORACLE = enum.auto()  # sized from exactly known future demand
    NODES_AHEAD = enum.auto()  # node pool held or grown ahead of replicas that will need it
    WARM_FILL = enum.auto()  # extra replicas on idle GPUs of nodes that are billed anyway
    KEPT_WARM = enum.auto()  # scale-down held: likely needed again within its cold start (GPU economics)
    QUALITY_GATE = enum.auto()  # live forecast error too high: reactive alone decides until it recovers
    TREND = enum.auto()  # observed demand rising: its linear projection over the lead time asked for more than the forecast
    POOL_CHOSEN = enum.auto()  # another eligible node pool (cheaper, with room) is recommended for the workload


# One sentence per code, formatted with the per-workload figures in DecisionBatch.detail.
_TEMPLATES: dict[ReasonCode, str] = {
    ReasonCode.REACTIVE: "observed {demand:.1f} rps against {capacity:.1f} rps/replica at {target:.0%} target asks for {reactive:.0f}",
    ReasonCode.WITHIN_TOLERANCE: "observed load is within {tolerance:.0%} of the target, so the count stays at {current:.0f}",
    ReasonCode.STABILIZED: "scale-down stabilised: the highest recommendation in the last {window:.0f} s is {stabilized:.0f}",
    ReasonCode.RATE_LIMITED: "step limited to {rate_limit:.0f} this time",
    ReasonCode.CLAMPED_MAX: "capped at max replicas {max:.0f}",
    ReasonCode.CLAMPED_MIN: "raised to min replicas {min:.0f}",
    ReasonCode.STALE_METRICS: "the demand metric is missing, so the count holds at {current:.0f} (never scale down on missing data)",
    ReasonCode.FORECAST_UP: "forecast ({model}) q{quantile:.3f} peaks at {forecast_peak:.1f} rps within the next {lead:.0f} s (replica startup), which needs {forecast:.0f} at {per_replica:.2f} rps/replica ({plan_target:.0%} of {capacity:.2f}; the load observed now needs {floor:.0f})",
    ReasonCode.REACTIVE_FLOOR: "observed {demand:.1f} rps needs {floor:.0f} at {floor_target:.0%} of {capacity:.2f} rps/replica, at least the forecast's {forecast:.0f}, so the reactive floor won",
    ReasonCode.FALLBACK_FORECAST: "no usable forecast ({fallback}), so reactive alone decided",
    ReasonCode.ORACLE: "known demand peaks at {forecast_peak:.1f} rps within the next {lead:.0f} s, which needs exactly {forecast:.0f}",
    ReasonCode.NODES_AHEAD: "nodes requested ahead for the forecast over the next {lead:.0f} s",
    ReasonCode.WARM_FILL: "{warm:.0f} more kept warm on idle GPUs of nodes already billed (sized {sized:.0f})",
    ReasonCode.KEPT_WARM: "scale-down held at {keep:.0f}: the forecast gives them at least a {keep_chance:.1%} chance of being needed again within their {cold_start:.0f} s cold start, and that chance times ${miss_cost:.0f}/h of SLO misses outweighs ${idle_cost:.2f}/h of idle GPUs",
    ReasonCode.POOL_CHOSEN: "recommended pool: {placement} (node floors stay where the replicas run until the workload is moved)",
    ReasonCode.TREND: "observed demand is rising {trend_per_min:.1f} rps a minute, and its projection over the lead time asks for more than the forecast",
    ReasonCode.QUALITY_GATE: "the forecast quality gate is closed ({fallback}), so reactive alone decides until it recovers",
}


@dataclass(frozen=True)
class Reason:
    """One reason behind a decision: a stable code, a sentence, and the count before and after it."""

    code: str
    message: str
    before: float | None = None
    after: float | None = None


@dataclass(frozen=True)
class ScalingDecision:
    """What one policy decided for one target at one time, and why.

    ``proposed`` is the policy's raw answer, ``desired`` the count after guardrails (what would be
    applied). ``kind`` is ``"replicas"`` for a workload or ``"nodes"`` for a node pool.
    ``forecast_ref`` names the forecast the decision used, ``model@issued_at`` (e.g.
    ``auto/profile@1767571200``), so a replay or an audit can find it; None when it used none.
    """

    target: str
    kind: str
    current: int
    proposed: int
    desired: int
    reasons: tuple[Reason, ...]
    decided_at: float
    policy: str = ""
    forecast_ref: str | None = None
    node_pool: str | None = None  # where the replicas should run (kind "replicas"; a recommendation where it differs from where they run)

    @property
    def is_change(self) -> bool:
        return self.desired != self.current

    def explain(self) -> str:
        """One sentence for a human, e.g. in Slack."""
        verb = "scale up" if self.desired > self.current else "scale down" if self.desired < self.current else "hold"
        what = "replicas" if self.kind == "replicas" else "nodes"
        head = f"{self.target}: {verb} {what} {self.current} -> {self.desired}" if self.is_change else f"{self.target}: hold {what} at {self.current}"
        body = "; ".join(r.message for r in self.reasons)
        return f"{head} ({self.policy}): {body}." if body else f"{head} ({self.policy})."

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ScalingDecision":
        data = json.loads(text)
        data["reasons"] = tuple(Reason(**r) for r in data["reasons"])
        return cls(**data)


@dataclass(frozen=True)
class WorkloadTable:
    """Every workload's current state and limits, one array per field (index = workload)."""

    names: tuple[str, ...]
    pool: np.ndarray  # int: index into ClusterState.node_pools
    replicas: np.ndarray  # int: spec replicas = ready + starting + pending
    ready: np.ndarray  # int: serving
    starting: np.ndarray  # int: on a GPU, loading weights
    pending: np.ndarray  # int: waiting for a GPU
    min_replicas: np.ndarray
    max_replicas: np.ndarray
    gpus_per_replica: np.ndarray
    capacity_rps: np.ndarray  # float: load one replica sustains at its SLO
    startup_seconds: np.ndarray  # float: scheduled -> ready
    demand_rps: np.ndarray  # float: latest observed demand; NaN = missing
    # Optional columns (None = the policy config's default for every workload):
    slo_miss_cost_per_hour: np.ndarray | None = None  # float: $ per hour of a replica short of the SLO
    quantile: np.ndarray | None = None  # float: forecast quantile to size for; NaN = from the costs (newsvendor)
    forecast_error_ratio: np.ndarray | None = None  # float: live forecast error / backtest baseline; NaN = unknown
    demand_trend: np.ndarray | None = None  # float: observed demand's slope, rps per second (PromQL deriv); NaN = unknown
    eligible: np.ndarray | None = None  # bool [n, pools]: pools each workload may run on (None: its own only)

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class PoolTable:
    """Every GPU node pool's current state and limits, one array per field (index = pool)."""

    names: tuple[str, ...]
    gpus_per_node: np.ndarray
    nodes: np.ndarray  # int: ready nodes
    provisioning: np.ndarray  # int: requested, not ready yet
    min_nodes: np.ndarray
    max_nodes: np.ndarray
    provisioning_seconds: np.ndarray
    price_per_gpu_hour: np.ndarray

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class ClusterState:
    """What a policy may know about the cluster at ``observed_at`` (epoch seconds)."""

    observed_at: float
    step_seconds: float  # the decision cadence: one decide() per step
    workloads: WorkloadTable
    node_pools: PoolTable


@dataclass(frozen=True)
class DecisionLog:
    """The memory a policy carries between calls, as a value: recent raw recommendations.

    The HPA's scale-down stabilization needs the recommendations of the last few minutes; keeping
    them here rather than in a hidden map is what makes a decision replayable from its inputs.
    """

    names: tuple[str, ...]
    times: np.ndarray  # [k] epoch seconds, oldest first
    recommendations: np.ndarray  # [k, n_workloads] int
    # The predictive policy's forecast-quality gate (hysteresis needs memory): True = closed,
    # reactive alone decides. None = every gate open.
    gated: np.ndarray | None = None
    # [k, n_workloads] the predictive policy's own sized counts at ``times`` (-1: none), for its
    # scale-down stabilization window. None until it first decides.
    forecast_recs: np.ndarray | None = None

    @classmethod
    def empty(cls, names: tuple[str, ...]) -> "DecisionLog":
        return cls(names, np.zeros(0), np.zeros((0, len(names)), dtype=np.int64))

    def aligned(self, names: tuple[str, ...]) -> "DecisionLog":
        """The same log for another set of workloads (added ones start with no history)."""
        if names is self.names or names == self.names:
            return self
        index = {n: i for i, n in enumerate(self.names)}
        recs = np.full((len(self.times), len(names)), -1, dtype=np.int64)
        gated = None if self.gated is None else np.zeros(len(names), dtype=bool)
        frecs = None if self.forecast_recs is None else np.full((len(self.times), len(names)), -1, dtype=np.int64)
        for j, name in enumerate(names):
            if name in index:
                recs[:, j] = self.recommendations[:, index[name]]
                if gated is not None:
                    gated[j] = self.gated[index[name]]
                if frecs is not None:
                    frecs[:, j] = self.forecast_recs[:, index[name]]
        return DecisionLog(names, self.times, recs, gated, frecs)

    def appended(self, now: float, recommendation: np.ndarray, keep_seconds: float) -> "DecisionLog":
        keep = self.times >= now - keep_seconds  # inclusive: a window of 300 s still holds now - 300
        times = np.append(self.times[keep], now)
        recs = np.concatenate([self.recommendations[keep], recommendation[None, :].astype(np.int64)])
        frecs = None
        if self.forecast_recs is not None:  # a row for now, filled by with_forecast_recs
            frecs = np.concatenate([self.forecast_recs[keep], np.full((1, len(self.names)), -1, dtype=np.int64)])
        return DecisionLog(self.names, times, recs, self.gated, frecs)

    def with_gate(self, gated: np.ndarray) -> "DecisionLog":
        return DecisionLog(self.names, self.times, self.recommendations, gated.astype(bool), self.forecast_recs)

    def with_forecast_recs(self, sized: np.ndarray) -> "DecisionLog":
        """The log with ``sized`` as the predictive policy's answer at the newest time."""
        frecs = self.forecast_recs
        if frecs is None or frecs.shape[0] != len(self.times):
            frecs = np.full((len(self.times), len(self.names)), -1, dtype=np.int64)
        else:
            frecs = frecs.copy()
        frecs[-1] = sized
        return DecisionLog(self.names, self.times, self.recommendations, self.gated, frecs)

    def to_json(self) -> str:
        """The log as JSON (a live agent persists it, so a restart keeps its stabilization memory)."""
        return json.dumps({"names": list(self.names), "times": self.times.tolist(),
                           "recommendations": self.recommendations.tolist(),
                           "gated": None if self.gated is None else self.gated.tolist(),
                           "forecast_recs": None if self.forecast_recs is None else self.forecast_recs.tolist()})

    @classmethod
    def from_json(cls, text: str) -> "DecisionLog":
        data = json.loads(text)
        names = tuple(data["names"])
        recs = np.asarray(data["recommendations"], dtype=np.int64).reshape(len(data["times"]), len(names))
        gated = None if data.get("gated") is None else np.asarray(data["gated"], dtype=bool)
        frecs = None if data.get("forecast_recs") is None else np.asarray(data["forecast_recs"], dtype=np.int64).reshape(recs.shape)
        return cls(names, np.asarray(data["times"], dtype=float), recs, gated, frecs)


@dataclass(frozen=True)
class DecisionBatch:
    """One policy's answer for every workload and node pool at one time.

    ``replicas[i]`` is the desired count for workload i, ``proposed[i]`` the raw answer before
    guardrails, ``reasons[i]`` a :class:`ReasonCode` bitmask. ``node_floor[p]`` is how many nodes the
    policy wants pool p to have (ready or provisioning) ahead of demand; 0 leaves the pool to the
    cluster autoscaler. ``detail`` holds the named per-workload figures the reasons quote, and
    ``params`` the policy's settings they quote.
    """

    policy: str
    decided_at: float
    replicas: np.ndarray
    proposed: np.ndarray
    reasons: np.ndarray
    node_floor: np.ndarray
    detail: Mapping[str, np.ndarray] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    fallbacks: Mapping[str, str] = field(default_factory=dict)  # workload -> why its forecast fell back
    # workload -> the Forecast it used, or the ForecastBatch; kept as given (no per-step copy or
    # formatting: the refs quoted in decisions are only built when decisions() is asked for)
    forecasts: Any = field(default_factory=dict)
    # Per workload the node pool its replicas should run on (None: where they are), and for those
    # that should move, the sentence that says why.
    pool: np.ndarray | None = None
    placements: Mapping[str, str] = field(default_factory=dict)

    def _forecast(self, name: str) -> tuple[str, float] | None:
        """(model, issued_at) of the forecast workload ``name`` was given, if any."""
        f = self.forecasts
        if hasattr(f, "present"):  # a policies.forecasts.ForecastBatch
            i = f.index.get(name, -1)
            return (f.models[i], float(f.issued_at[i])) if i >= 0 and f.present[i] else None
        one = f.get(name)
        return None if one is None else (one.model, one.issued_at)

    def forecast_ref(self, name: str) -> str | None:
        """``model@issued_at`` of the forecast the decision for workload ``name`` used."""
        found = self._forecast(name)
        return None if found is None else f"{found[0]}@{found[1]:.0f}"

    def reasons_for(self, i: int, state: ClusterState) -> tuple[Reason, ...]:
        wl = state.workloads
        values: dict[str, Any] = {
            "current": int(wl.replicas[i]),
            "demand": float(wl.demand_rps[i]),
            "capacity": float(wl.capacity_rps[i]),
            "min": int(wl.min_replicas[i]),
            "max": int(wl.max_replicas[i]),
            "fallback": self.fallbacks.get(wl.names[i], "none"),
            "model": (self._forecast(wl.names[i]) or ("none",))[0],
            "placement": self.placements.get(wl.names[i], ""),
        }
        values.update(self.params)
        values.update({k: float(v[i]) for k, v in self.detail.items()})
        out = []
        mask = ReasonCode(int(self.reasons[i]))
        for code in ReasonCode:
            if code in mask:
                try:
                    message = _TEMPLATES[code].format(**values)
                except (KeyError, ValueError):
                    message = code.name.lower().replace("_", " ")
                out.append(Reason(code.name, message, float(wl.replicas[i]), float(self.replicas[i])))
        return tuple(out)

    def decisions(self, state: ClusterState, only_changes: bool = False) -> list[ScalingDecision]:
        """The per-target values with reasons (replicas per workload, then node floors per pool)."""
        wl = state.workloads
        out = []
        for i, name in enumerate(wl.names):
            if only_changes and int(self.replicas[i]) == int(wl.replicas[i]):
                continue
            out.append(
                ScalingDecision(
                    target=name,
                    kind="replicas",
                    current=int(wl.replicas[i]),
                    proposed=int(self.proposed[i]),
                    desired=int(self.replicas[i]),
                    reasons=self.reasons_for(i, state),
                    decided_at=float(self.decided_at),
                    policy=self.policy,
                    forecast_ref=self.forecast_ref(name),
                    node_pool=state.node_pools.names[int(self.pool[i] if self.pool is not None else wl.pool[i])],
                )
            )
        pools = state.node_pools
        for p, name in enumerate(pools.names):
            floor = int(self.node_floor[p])
            current = int(pools.nodes[p] + pools.provisioning[p])
            if floor <= 0 or (only_changes and floor <= current):
                continue
            leads = self.params.get("node_leads", ())
            lead = float(leads[p]) if p < len(leads) else float("nan")
            message = _TEMPLATES[ReasonCode.NODES_AHEAD].format(lead=lead) if math.isfinite(lead) else "nodes requested ahead"
            out.append(
                ScalingDecision(name, "nodes", current, floor, max(floor, current),
                                (Reason(ReasonCode.NODES_AHEAD.name, message, current, floor),), float(self.decided_at), self.policy)
            )
        return out
