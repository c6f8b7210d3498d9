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
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from forecasters import DEFAULT_QUANTILES, build
from forecasters.drift import DriftMonitor
from forecasters.stream import ForecastStream
from forecasters.series import Forecast, Series
from policies import POLICIES
from policies.leadtime import lead_steps, plan_from_forecasts
from policies.oracle import OracleConfig
from policies.packing import nodes_for
from policies.predictive import PredictiveConfig
from policies.reactive import ReactiveConfig
from policies.types import ClusterState, DecisionLog, PoolTable, ScalingDecision, WorkloadTable
from simulations.cluster import LatencyModel, SimulatedCluster
from simulations.config import SimConfig, WorkloadConfig
from simulations.errors import InputError
from simulations.traces import Trace, fill_gaps

ProgressFn = Callable[[int], None]
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
    forecast_fallback_steps: np.ndarray  # [N] steps decided without the policy's own forecast model
    decisions: tuple[ScalingDecision, ...] = ()  # every change, with reasons (when recorded)


@dataclass(frozen=True)
class Simulation:
    trace: Trace  # the trace as simulated (at the simulation step)
    demand: np.ndarray  # [T, N] true demand served (gaps interpolated)
    gaps: np.ndarray  # bool [T, N]
    workloads: tuple[WorkloadConfig, ...]
    config: SimConfig
    runs: dict[str, PolicyRun]

    @property
    def step_seconds(self) -> float:
        return self.trace.step_seconds


def tables(config: SimConfig, names: Sequence[str]) -> tuple[WorkloadTable, PoolTable, LatencyModel, np.ndarray, tuple[WorkloadConfig, ...]]:
    """The static per-workload and per-pool arrays for the workloads in a trace."""
    workloads = tuple(config.workload_for(n) for n in names)
    pools = config.node_pools
    pool_index = {p.name: i for i, p in enumerate(pools)}
    col = lambda f, dtype=np.float64: np.array([f(w) for w in workloads], dtype=dtype)  # noqa: E731
    n = len(workloads)
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
    )
    pcol = lambda f, dtype=np.float64: np.array([f(p) for p in pools], dtype=dtype)  # noqa: E731
    pt = PoolTable(
        names=tuple(p.name for p in pools),
        gpus_per_node=pcol(lambda p: p.gpus_per_node, np.int64),
        nodes=np.zeros(len(pools), dtype=np.int64), provisioning=np.zeros(len(pools), dtype=np.int64),
        min_nodes=pcol(lambda p: p.min_nodes, np.int64), max_nodes=pcol(lambda p: p.max_nodes, np.int64),
        provisioning_seconds=pcol(lambda p: p.provisioning_seconds),
        price_per_gpu_hour=pcol(lambda p: p.price_per_gpu_hour),
    )
    latency = LatencyModel(
        base_p95=col(lambda w: w.latency.base_p95_seconds), slo_p95=col(lambda w: w.slo.latency_p95_seconds),
        exponent=col(lambda w: w.latency.exponent), max_throughput_factor=col(lambda w: w.latency.max_throughput_factor),
        timeout=col(lambda w: w.latency.timeout_seconds),
    )
    idle = pcol(lambda p: p.idle_removal_seconds)
    return wl, pt, latency, idle, workloads


def policy_config(name: str, config: SimConfig):
    p = config.policies
    reactive = ReactiveConfig(**p.reactive.model_dump())
    if name == "reactive":
        return reactive
    if name == "predictive":
        return PredictiveConfig(quantile=p.predictive.quantile, target_utilization=p.predictive.target_utilization,
                                fill_idle_gpus=p.predictive.fill_idle_gpus, reactive=reactive)
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
             progress: ProgressFn | None = None, record_decisions: bool = False) -> Simulation:
    """Replay ``trace`` under each policy (default: the config's enabled ones).

    With ``record_decisions`` every change a policy makes is kept as a :class:`ScalingDecision`
    with its reasons (``PolicyRun.decisions``).
    """
    policies = list(policies or config.policies.enabled)
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise InputError("--policies", f"unknown policy {unknown[0]!r}; choose from {', '.join(POLICIES)}")
    trace, demand, gaps = prepare(trace, config)
    wl, pools, latency, idle, workloads = tables(config, trace.workloads)
    runs = {name: run_policy(name, trace, demand, wl, pools, latency, idle, config, progress, record_decisions)
            for name in policies}
    return Simulation(trace, demand, gaps, workloads, config, runs)


def _horizon(wl: WorkloadTable, pools: PoolTable, step: float) -> int:
    pod = np.array([lead_steps(s, step) for s in wl.startup_seconds])
    node = np.array([lead_steps(s, step) for s in pools.provisioning_seconds])
    return int((pod + node[wl.pool]).max(initial=0)) + 1


def initial_state(wl: WorkloadTable, pools: PoolTable, demand: np.ndarray, start: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Every policy starts from the same cluster: what the oracle would have running at step 0."""
    horizon = _horizon(wl, pools, step)
    state = ClusterState(start, step, wl, pools)
    exact = {name: Forecast.exact(name, start - step, step, demand[:horizon, i]) for i, name in enumerate(wl.names)}
    plan = plan_from_forecasts(start, state, exact, 1.0, 1.0)
    nodes = np.maximum(nodes_for(state, plan.replicas), np.maximum(plan.node_floor, pools.min_nodes))
    return plan.replicas, np.minimum(nodes, pools.max_nodes)


def run_policy(name: str, trace: Trace, demand: np.ndarray, wl: WorkloadTable, pools: PoolTable, latency: LatencyModel,
               idle: np.ndarray, config: SimConfig, progress: ProgressFn | None = None,
               record_decisions: bool = False) -> PolicyRun:
    step, start = trace.step_seconds, trace.start
    observed = np.asarray(trace.values)
    n_steps, n = demand.shape
    decide = POLICIES[name].decide
    cfg = policy_config(name, config)
    horizon = _horizon(wl, pools, step)
    replicas0, nodes0 = initial_state(wl, pools, demand, start, step)
    cluster = SimulatedCluster(wl, pools, latency, step, idle, replicas0, nodes0)
    log = DecisionLog.empty(wl.names)
    forecaster = None
    if name == "predictive":
        pc = config.policies.predictive
        model = build(pc.forecaster, {"quantiles": sorted(set(DEFAULT_QUANTILES) | {pc.quantile})})
        # The stream checks its own forecasts: a forecast that drifts from its backtest error for an
        # hour is refitted at once, not at the next scheduled refit.
        # The window holds at least 40 steps, so the monitor's 30-point minimum can be met at
        # coarse steps too.
        drift = DriftMonitor(lead=max(1, horizon // 2), leads=(1,), window_s=max(3 * 3600.0, 40 * step))
        forecaster = ForecastStream(model, refit_every=pc.refit_every_seconds, history_days=pc.history_days, drift=drift)

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
    history_steps = forecaster.history_steps(step) if forecaster else 0

    for t in range(n_steps):
        now = start + t * step
        state = cluster.state(now, observed[t - 1] if t > 0 else nan_row)
        forecasts: dict[str, Forecast] = {}
        if forecaster is not None:
            lo = max(0, t - history_steps)
            for i, key in enumerate(wl.names):
                if t > 0:
                    f = forecaster.forecast(Series(key, start + lo * step, step, observed[lo:t, i]), horizon)
                    if f is not None:
                        forecasts[key] = f
                        if f.fell_back:
                            fallback_steps[i] += 1
                        continue
                fallback_steps[i] += 1
        elif name == "oracle":
            forecasts = {key: Forecast.exact(key, now - step, step, demand[t : t + horizon, i]) for i, key in enumerate(wl.names)}
        batch, log = decide(now, state, forecasts, log, cfg)
        if record_decisions:
            decisions.extend(batch.decisions(state, only_changes=True))
        out = cluster.step(batch.replicas, batch.node_floor, demand[t])

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
    return PolicyRun(name, p95, slo_ok, ready, spec, nodes, nodes_ready, allocated * hours, billed,
                     demand.sum(axis=0) * step, served_total, cluster.backlog.copy(), replica_actions, node_actions,
                     fallback_steps, tuple(decisions))
