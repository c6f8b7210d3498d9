"""Replay a demand trace against the simulated cluster, once per policy: the tick the agent runs.

Each step ``t`` (time ``now``):

1. the policy sees the cluster's state and the demand *observed* for the previous step (NaN where
   the trace has a gap: a live agent would see a missing metric there too);
2. policies that look ahead get forecasts: the predictive policy from its configured forecaster
   (``auto`` by default: per-workload model selection, conformally calibrated quantiles) on the
   observed history, through a :class:`~forecasters.stream.ForecastStream` that refits on schedule
   or on drift; the oracle gets the exact future;
3. ``decide()`` (the same function the live agent calls) returns the desired replicas and node
   floors;
4. the simulated cluster applies them, then serves the *true* demand of step t.

The true demand at a gap is the gap linearly interpolated (the trace says traffic went
unrecorded, not that it stopped); gap steps are served and billed but left out of the SLO score,
since nobody knows what the latency really was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from forecasters.stream import ForecastStream
from forecasters.series import Forecast
from policies import POLICIES
from policies.capacity import CapacityLearner
from policies.forecasts import ForecastBatch
from policies.leadtime import lead_steps, lookahead, plan_from_forecasts, replicas_needed
from policies.leadtimes import LeadTimeLearner
from policies.oracle import OracleConfig
from policies.packing import nodes_for
from policies.placement import place
from policies.predictive import PredictiveConfig
from policies.reactive import ReactiveConfig
from policies.types import ClusterState, DecisionLog, PoolTable, ReasonCode, ScalingDecision, WorkloadTable
from simulations.cluster import LatencyModel, SimulatedCluster
from simulations.config import SimConfig, WorkloadConfig
from simulations.errors import InputError
from simulations.forecast_tape import ForecastTape, fingerprint, record, step_forecasts, stream_for
from simulations.traces import Trace, fill_gaps

ProgressFn = Callable[[int], None]
_REACTIVE_DECIDED = int(ReasonCode.FALLBACK_FORECAST | ReasonCode.QUALITY_GATE)
_PROGRESS_EVERY = 256


@dataclass(frozen=True)
class PolicyRun:
    """What happened under one policy: per-step arrays ([step, workload] or [step, pool]) and totals."""

    policy: str
    p95: np.ndarray  # float32 [T, N] seconds
    slo_ok: np.ndarray  # bool [T, N]
    ready: np.ndarray  # int32 [T, N] ready replicas while serving
    replicas: np.ndarray  # int32 [T, N] desired (spec) replicas
    nodes: np.ndarray  # int32 [T, P] ready + provisioning nodes (billed)
    nodes_ready: np.ndarray  # int32 [T, P]
    gpu_hours_allocated: np.ndarray  # [N] GPU-hours held by each workload's replicas
    gpu_hours_billed: np.ndarray  # [P] GPU-hours billed per pool (idle GPUs included)
    arrived: np.ndarray  # [N] requests
    served: np.ndarray  # [N] requests
    backlog_end: np.ndarray  # [N] requests still queued at the end
    replica_actions: np.ndarray  # [N] steps whose desired count changed
    node_actions: np.ndarray  # [P] nodes added or removed
    forecast_fallback_steps: np.ndarray  # [N] steps decided by the reactive fallback (no forecast, gate closed) or on a fallen-back model
    decisions: tuple[ScalingDecision, ...] = ()  # every change, with reasons (when recorded)
    # What the policy had learned by the end (predictive only): capacity per replica [N], and
    # lead times it used [N] replica startup and [P] node provisioning, in seconds.
    capacity_rps: np.ndarray | None = None
    startup_seconds: np.ndarray | None = None
    provisioning_seconds: np.ndarray | None = None


@dataclass(frozen=True)
class Simulation:
    trace: Trace  # the trace as simulated (at the simulation step)
    demand: np.ndarray  # [T, N] true demand served (gaps interpolated)
    gaps: np.ndarray  # bool [T, N]
    workloads: tuple[WorkloadConfig, ...]
    config: SimConfig
    runs: dict[str, PolicyRun]
    pool_of: np.ndarray | None = None  # [N] the node pool each workload ran on

    def __post_init__(self) -> None:
        if self.pool_of is None:
            names = [p.name for p in self.config.node_pools]
            object.__setattr__(self, "pool_of", np.array([names.index(self.config.pool(w.node_pool).name) for w in self.workloads], dtype=np.int64))

    @property
    def step_seconds(self) -> float:
        return self.trace.step_seconds


@dataclass(frozen=True)
class Tables:
    """The static arrays of one simulation.

    ``believed`` is what the policies are told (configured capacity, startup and provisioning
    times); ``cluster``/``pools_true`` is what the simulated cluster really does (the ``actual_*``
    settings, equal to the configured ones unless a config says otherwise).
    """

    believed: WorkloadTable
    pools: PoolTable
    cluster: WorkloadTable
    pools_true: PoolTable
    latency: LatencyModel
    idle: np.ndarray
    workloads: tuple[WorkloadConfig, ...]


def tables(config: SimConfig, names: Sequence[str]) -> Tables:
    """The static per-workload and per-pool arrays for the workloads in a trace."""
    workloads = tuple(config.workload_for(n) for n in names)
    pools = config.node_pools
    pool_index = {p.name: i for i, p in enumerate(pools)}
    col = lambda f, dtype=np.float64: np.array([f(w) for w in workloads], dtype=dtype)  # noqa: E731
    actual = lambda value, fallback: fallback if value is None else value  # noqa: E731
    n = len(workloads)
    miss_default = config.policies.predictive.slo_miss_cost_per_hour
    wl = WorkloadTable(
        names=tuple(names),
        pool=col(lambda w: pool_index[config.pool(w.node_pool).name], np.int64),
        replicas=np.zeros(n, dtype=np.int64), ready=np.zeros(n, dtype=np.int64),
        starting=np.zeros(n, dtype=np.int64), pending=np.zeros(n, dtype=np.int64),
        min_replicas=col(lambda w: w.min_replicas, np.int64),
        max_replicas=col(lambda w: w.max_replicas, np.int64),
        gpus_per_replica=col(lambda w: w.gpus_per_replica, np.int64),
        capacity_rps=col(lambda w: w.capacity_rps),
        startup_seconds=col(lambda w: w.startup_seconds),
        demand_rps=np.full(n, np.nan),
        slo_miss_cost_per_hour=col(lambda w: actual(w.slo_miss_cost_per_hour, miss_default)),
        quantile=col(lambda w: actual(w.quantile, np.nan)),
    )
    eligible = np.zeros((n, len(pools)), dtype=bool)
    eligible[np.arange(n), wl.pool] = True
    for i, w in enumerate(workloads):
        for name in w.node_pools or ():
            eligible[i, pool_index[name]] = True
    if (eligible.sum(axis=1) > 1).any():
        wl = replace(wl, eligible=eligible)
    truth = replace(wl, capacity_rps=col(lambda w: actual(w.actual_capacity_rps, w.capacity_rps)),
                    startup_seconds=col(lambda w: actual(w.actual_startup_seconds, w.startup_seconds)))
    pcol = lambda f, dtype=np.float64: np.array([f(p) for p in pools], dtype=dtype)  # noqa: E731
    pt = PoolTable(
        names=tuple(p.name for p in pools),
        gpus_per_node=pcol(lambda p: p.gpus_per_node, np.int64),
        nodes=np.zeros(len(pools), dtype=np.int64), provisioning=np.zeros(len(pools), dtype=np.int64),
        min_nodes=pcol(lambda p: p.min_nodes, np.int64), max_nodes=pcol(lambda p: p.max_nodes, np.int64),
        provisioning_seconds=pcol(lambda p: p.provisioning_seconds),
        price_per_gpu_hour=pcol(lambda p: p.price_per_gpu_hour),
    )
    pt_true = replace(pt, provisioning_seconds=pcol(lambda p: actual(p.actual_provisioning_seconds, p.provisioning_seconds)))
    latency = LatencyModel(
        base_p95=col(lambda w: w.latency.base_p95_seconds), slo_p95=col(lambda w: w.slo.latency_p95_seconds),
        exponent=col(lambda w: w.latency.exponent), max_throughput_factor=col(lambda w: w.latency.max_throughput_factor),
        timeout=col(lambda w: w.latency.timeout_seconds),
    )
    idle = pcol(lambda p: p.idle_removal_seconds)
    return Tables(wl, pt, truth, pt_true, latency, idle, workloads)


def policy_config(name: str, config: SimConfig):
    p = config.policies
    if name == "reactive":
        return ReactiveConfig(**p.reactive.model_dump())
    if name == "predictive":
        pc = p.predictive
        return PredictiveConfig(
            quantile=pc.quantile, slo_miss_cost_per_hour=pc.slo_miss_cost_per_hour,
            target_utilization=pc.target_utilization, keep_warm=pc.keep_warm, fill_idle_gpus=pc.fill_idle_gpus,
            scale_down_stabilization_seconds=pc.scale_down_stabilization_seconds,
            max_scale_up_per_minute=pc.max_scale_up_per_minute, max_scale_down_per_minute=pc.max_scale_down_per_minute,
            quality_gate_ratio=pc.quality_gate_ratio, quality_recover_ratio=pc.quality_recover_ratio,
            floor_utilization=pc.floor_utilization, follow_trend=pc.follow_trend, pool_stickiness=pc.pool_stickiness,
            reactive=ReactiveConfig(**p.reactive.model_dump()))
    return OracleConfig()


def prepare(trace: Trace, config: SimConfig) -> tuple[Trace, np.ndarray, np.ndarray]:
    """The trace at the simulation step, its true demand (gaps interpolated) and the gap mask."""
    trace = trace.to_step(min(trace.step_seconds, config.simulation.step_seconds))  # TraceError if not a divisor
    try:
        demand, gaps = fill_gaps(np.asarray(trace.values))
    except ValueError as exc:
        raise InputError(trace.source, str(exc)) from None
    return trace, demand, gaps


def simulation_steps(trace: Trace, config: SimConfig) -> int:
    """How many steps :func:`prepare` will give ``trace`` (without resampling it)."""
    step = min(trace.step_seconds, config.simulation.step_seconds)
    return int(math.ceil(trace.n_steps * trace.step_seconds / step - 1e-9))


def simulate(trace: Trace, config: SimConfig, policies: Sequence[str] | None = None,
             progress: ProgressFn | None = None, record_decisions: bool = False,
             tape: ForecastTape | None = None) -> Simulation:
    """Replay ``trace`` under each policy (default: the config's enabled ones).

    With ``record_decisions`` every change a policy makes is kept as a :class:`ScalingDecision`
    with its reasons (``PolicyRun.decisions``). ``tape`` replays recorded forecasts for the
    predictive policy instead of running its forecaster (see :mod:`simulations.forecast_tape`).
    """
    policies = list(policies or config.policies.enabled)
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise InputError("--policies", f"unknown policy {unknown[0]!r}; choose from {', '.join(POLICIES)}")
    trace, demand, gaps = prepare(trace, config)
    tb = place_initially(tables(config, trace.workloads), demand, trace.step_seconds)
    runs = {name: run_policy(name, trace, demand, tb, config, progress, record_decisions, tape)
            for name in policies}
    return Simulation(trace, demand, gaps, tb.workloads, config, runs, tb.believed.pool.copy())


def place_initially(tb: Tables, demand: np.ndarray, step: float) -> Tables:
    """Workloads with several eligible pools start on the cheapest with room for the first
    lead time's demand (:func:`policies.placement.place`); the simulation keeps them there (a
    live move is a rollout, which the simulated cluster does not model: the policy's later
    ``POOL_CHOSEN`` decisions are recommendations)."""
    wl = tb.believed
    if wl.eligible is None:
        return tb
    horizon = horizon_steps(tb, step)
    need = replicas_needed(demand[:horizon].max(axis=0), tb.cluster.capacity_rps)
    pools = tb.pools
    chosen = place(np.clip(need, wl.min_replicas, wl.max_replicas).astype(np.int64), wl.gpus_per_replica, wl.eligible,
                   np.full(len(wl), -1), pools.gpus_per_node, pools.max_nodes, pools.price_per_gpu_hour).pool
    return replace(tb, believed=replace(wl, pool=chosen), cluster=replace(tb.cluster, pool=chosen))


def longest_lead(wl: WorkloadTable, pools: PoolTable, step: float) -> int:
    """Steps of the longest node + replica lead of any workload, over every pool it may use."""
    pod, _, node_w = lookahead(ClusterState(0.0, step, wl, pools))
    return int((pod + node_w).max(initial=0))


def horizon_steps(tb: Tables, step: float) -> int:
    """Forecast steps a policy needs: the longest node + replica lead, configured or actual, plus one."""
    return max(longest_lead(tb.believed, tb.pools, step), longest_lead(tb.cluster, tb.pools_true, step)) + 1


def initial_state(wl: WorkloadTable, pools: PoolTable, demand: np.ndarray, start: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Every policy starts from the same cluster: what the oracle would have running at step 0."""
    horizon = longest_lead(wl, pools, step) + 1
    state = ClusterState(start, step, wl, pools)
    exact = {name: Forecast.exact(name, start - step, step, demand[:horizon, i]) for i, name in enumerate(wl.names)}
    plan = plan_from_forecasts(start, state, exact, 1.0, 1.0)
    nodes = np.maximum(nodes_for(state, plan.replicas), np.maximum(plan.node_floor, pools.min_nodes))
    return plan.replicas, np.minimum(nodes, pools.max_nodes)


def tape_key(trace: Trace, config: SimConfig) -> str:
    """A cache key for :func:`record_tape`'s result: the data and every setting that shapes it
    (forecaster, refits, history, quantile, and the horizon the lead times and pools need)."""
    trace, _, _ = prepare(trace, config)
    pc = config.policies.predictive
    horizon = horizon_steps(tables(config, trace.workloads), trace.step_seconds)
    return fingerprint(np.asarray(trace.values), trace.start, trace.step_seconds, forecaster=pc.forecaster,
                       refit=pc.refit_every_seconds, history=pc.history_days, quantile=pc.quantile,
                       horizon=horizon, names=trace.workloads)


def record_tape(trace: Trace, config: SimConfig, progress: ProgressFn | None = None) -> ForecastTape:
    """The predictive policy's forecasts for every step of ``trace`` (at the simulation step)."""
    trace, _, _ = prepare(trace, config)
    tb = tables(config, trace.workloads)
    pc = config.policies.predictive
    horizon = horizon_steps(tb, trace.step_seconds)
    stream = stream_for(pc.forecaster, tuple(q for q in (pc.quantile,) if q is not None), pc.refit_every_seconds,
                        pc.history_days, horizon, trace.step_seconds)
    return record(tuple(trace.workloads), np.asarray(trace.values), trace.start, trace.step_seconds, horizon, stream, progress)


class _Learners:
    """What the predictive policy learns from the cluster it runs: capacity and lead times."""

    def __init__(self, tb: Tables, config: SimConfig, step: float) -> None:
        pc = config.policies.predictive
        wl, pools = tb.believed, tb.pools
        self.capacity = CapacityLearner(wl.capacity_rps, tb.latency.slo_p95) if pc.learn_capacity else None
        self.leads = LeadTimeLearner(wl.startup_seconds, pools.provisioning_seconds) if pc.measure_lead_times else None
        # What a replica's scheduled->Ready and a node's created->Ready take in this cluster.
        self.pod_seconds = np.array([lead_steps(s, step) * step for s in tb.cluster.startup_seconds])
        self.node_seconds = np.array([lead_steps(s, step) * step for s in tb.pools_true.provisioning_seconds])
        self._capacity = wl.capacity_rps
        self._refresh_every = max(1, int(round(900.0 / step)))  # re-estimate capacity every 15 min

    def view(self, state: ClusterState, t: int) -> ClusterState:
        """``state`` as the policy believes it: learned capacity, measured lead times."""
        wl, pools = state.workloads, state.node_pools
        if self.capacity is not None and t % self._refresh_every == 0:
            self._capacity = self.capacity.estimate().rps
        startup = self.leads.pod_seconds() if self.leads is not None else wl.startup_seconds
        provisioning = self.leads.node_seconds() if self.leads is not None else pools.provisioning_seconds
        return replace(state, workloads=replace(wl, capacity_rps=self._capacity, startup_seconds=startup),
                       node_pools=replace(pools, provisioning_seconds=provisioning))

    def observe(self, now: float, out, ready: np.ndarray, observed_ok: np.ndarray, step: float) -> None:
        if self.capacity is not None:
            has = (ready > 0) & observed_ok & (out.served > 0)
            load = np.where(has, out.served / step / np.maximum(ready, 1), np.nan)
            self.capacity.observe(now, load, np.where(has, out.p95, np.nan))
        if self.leads is not None:
            if np.count_nonzero(out.became_ready):
                counts = np.minimum(out.became_ready, self.leads.window)
                idx = np.repeat(np.arange(len(counts)), counts)
                self.leads.observe_pods(idx, self.pod_seconds[idx])
            if np.count_nonzero(out.nodes_became_ready):
                counts = np.minimum(out.nodes_became_ready, self.leads.window)
                idx = np.repeat(np.arange(len(counts)), counts)
                self.leads.observe_nodes(idx, self.node_seconds[idx])


def run_policy(name: str, trace: Trace, demand: np.ndarray, tb: Tables, config: SimConfig,
               progress: ProgressFn | None = None, record_decisions: bool = False,
               tape: ForecastTape | None = None) -> PolicyRun:
    step, start = trace.step_seconds, trace.start
    observed = np.asarray(trace.values)
    n_steps, n = demand.shape
    decide = POLICIES[name].decide
    cfg = policy_config(name, config)
    horizon = horizon_steps(tb, step)
    pools = tb.pools
    # Everyone starts from what the oracle would run at step 0 in the real cluster.
    replicas0, nodes0 = initial_state(tb.cluster, tb.pools_true, demand, start, step)
    cluster = SimulatedCluster(tb.cluster, tb.pools_true, tb.latency, step, tb.idle, replicas0, nodes0)
    log = DecisionLog.empty(tb.believed.names)
    stream = None
    learners = None
    if name == "predictive":
        learners = _Learners(tb, config, step)
        if tape is None:
            pc = config.policies.predictive
            stream = stream_for(pc.forecaster, tuple(q for q in (pc.quantile,) if q is not None), pc.refit_every_seconds,
                                pc.history_days, horizon, step)
        elif tape.values.shape[0] != n_steps or tape.names != tuple(tb.believed.names):
            raise InputError("forecast tape", f"recorded for {tape.values.shape[0]} steps of {list(tape.names)}, "
                             f"not {n_steps} steps of {list(tb.believed.names)}")
        elif tape.values.shape[3] < horizon:
            raise InputError("forecast tape", f"recorded with a {tape.values.shape[3]}-step horizon; these lead times "
                             f"and pools need {horizon} steps: record it again with this config")

    p95 = np.empty((n_steps, n), dtype=np.float32)
    slo_ok = np.empty((n_steps, n), dtype=bool)
    ready = np.empty((n_steps, n), dtype=np.int32)
    spec = np.empty((n_steps, n), dtype=np.int32)
    nodes = np.empty((n_steps, len(pools)), dtype=np.int32)
    nodes_ready = np.empty((n_steps, len(pools)), dtype=np.int32)
    allocated = np.zeros(n)
    served_total = np.zeros(n)
    replica_actions = np.zeros(n, dtype=np.int64)
    node_actions = np.zeros(len(pools), dtype=np.int64)
    fallback_steps = np.zeros(n, dtype=np.int64)
    nan_row = np.full(n, np.nan)
    hours = step / 3600.0
    decisions: list[ScalingDecision] = []
    history_steps = stream.history_steps(step) if stream else 0
    trends = observed_trend(observed, step) if learners is not None else None

    for t in range(n_steps):
        now = start + t * step
        seen = observed[t - 1] if t > 0 else nan_row
        truth = cluster.state(now, seen)
        if name == "oracle":  # perfect foresight: the exact future and the cluster as it really is
            state = truth
            forecasts = ForecastBatch.gather(tb.believed.names, {key: Forecast.exact(key, now - step, step, demand[t : t + horizon, i])
                                                                   for i, key in enumerate(tb.believed.names)}, step)
        else:
            state = replace(truth, workloads=replace(truth.workloads, capacity_rps=tb.believed.capacity_rps,
                                                     startup_seconds=tb.believed.startup_seconds,
                                                     slo_miss_cost_per_hour=tb.believed.slo_miss_cost_per_hour,
                                                     quantile=tb.believed.quantile, eligible=tb.believed.eligible),
                            node_pools=replace(truth.node_pools, provisioning_seconds=pools.provisioning_seconds))
            forecasts = None
        if learners is not None:
            state = learners.view(state, t)
            if tape is not None:
                forecasts = tape.batch(t)
                ratio = tape.error_ratio[t].astype(np.float64)
            else:
                forecasts, ratio = _live_forecasts(stream, tb.believed.names, observed, t, start, step, history_steps, horizon)
            state = replace(state, workloads=replace(state.workloads, forecast_error_ratio=ratio, demand_trend=trends[t]))
        batch, log = decide(now, state, forecasts, log, cfg)
        if learners is not None:  # reactive decided (no forecast, or the quality gate), or the model fell back
            fallback_steps += ((batch.reasons & _REACTIVE_DECIDED) != 0) | np.array([f is not None for f in forecasts.fell_back])
        if record_decisions:
            decisions.extend(batch.decisions(state, only_changes=True))
        out = cluster.step(batch.replicas, batch.node_floor, demand[t])
        if learners is not None:
            learners.observe(now + step, out, cluster.ready, ~np.isnan(observed[t]), step)

        p95[t] = out.p95
        slo_ok[t] = out.slo_ok
        ready[t] = cluster.ready
        spec[t] = batch.replicas
        nodes[t] = cluster.billed_nodes()
        nodes_ready[t] = cluster.nodes_ready
        allocated += cluster.allocated_gpus()
        served_total += out.served
        replica_actions += out.replica_actions
        node_actions += out.node_actions
        if progress is not None and (t + 1) % _PROGRESS_EVERY == 0:
            progress(_PROGRESS_EVERY)
    if progress is not None:
        progress(n_steps % _PROGRESS_EVERY)

    # Every node is billed for all its GPUs for every step it exists (ready or provisioning).
    billed = nodes.sum(axis=0, dtype=np.float64) * pools.gpus_per_node * hours
    learned = learners.view(state, 0) if learners is not None and n_steps else None
    return PolicyRun(name, p95, slo_ok, ready, spec, nodes, nodes_ready, allocated * hours, billed,
                     demand.sum(axis=0) * step, served_total, cluster.backlog.copy(), replica_actions, node_actions,
                     fallback_steps, tuple(decisions),
                     capacity_rps=None if learned is None else learned.workloads.capacity_rps.copy(),
                     startup_seconds=None if learned is None else learned.workloads.startup_seconds.copy(),
                     provisioning_seconds=None if learned is None else learned.node_pools.provisioning_seconds.copy())


TREND_SECONDS = 600.0


def observed_trend(observed: np.ndarray, step: float, seconds: float = TREND_SECONDS, z: float = 2.0) -> np.ndarray:
    """``[T, n]``: per step t, the slope (rps per second) of the demand observed before t.

    The median of the last half-window against the median of the half-window before it (close
    to what PromQL's ``deriv()`` over ``seconds`` gives a live agent, but a one-minute burst does
    not read as a ramp). A change smaller than ``z``
    standard errors of that difference is noise, not a trend, and reads as 0: on a bursty
    series a trend is only followed when the rise is real. NaN until there is a full window or
    where a half-window is all gaps.
    """
    import pandas as pd

    half = max(2, int(round(seconds / step / 2)))
    rolling = pd.DataFrame(observed).rolling(half, min_periods=max(2, half // 2))
    means = rolling.median().to_numpy()  # medians: a one-minute burst is not a trend
    var = rolling.var().to_numpy() / rolling.count().to_numpy()
    out = np.full(observed.shape, np.nan)
    # decision at t sees observations up to t - 1: recent = means[t - 1], previous = means[t - 1 - half]
    if observed.shape[0] > half + 1:
        diff = means[half:-1] - means[:-half - 1]
        noise = z * np.sqrt(var[half:-1] + var[:-half - 1])
        out[half + 1:] = np.where(np.abs(diff) > noise, diff, np.where(np.isnan(diff), np.nan, 0.0)) / (half * step)
    return out


def _live_forecasts(stream: ForecastStream, names: tuple[str, ...], observed: np.ndarray, t: int, start: float, step: float,
                    history_steps: int, horizon: int) -> tuple[ForecastBatch, np.ndarray]:
    """This step's forecasts from the stream, as a batch, and the drift monitor's live error ratios."""
    found, ratio = step_forecasts(stream, names, observed, t, start, step, history_steps, horizon)
    return ForecastBatch.gather(names, found, step), ratio
