"""Predictive: replicas and GPU nodes sized ahead of forecast demand, with GPU economics and guardrails.

One call decides every workload and node pool at once (vectorised; see ``benchmarks/decide_bench.py``):

1. **Safety net.** The replicas observed load needs right now at ``floor_utilization`` of their SLO
   capacity (the HPA's arithmetic at that target, without its delays) are a floor: a bad
   forecast can only add capacity early, never remove it.
2. **Fallback and forecast quality gate.** A workload with no forecast, or whose live forecast
   error (``forecast_error_ratio``: live error over its backtest baseline, from
   :class:`~forecasters.drift.DriftMonitor`) exceeds ``quality_gate_ratio``, is decided by the
   reactive policy alone (``reactive``: the HPA users run today) until the ratio falls below
   ``quality_recover_ratio`` (hysteresis, kept in the :class:`DecisionLog`, so it replays).
3. **Sizing up (lead times).** Replicas wanted now cover the forecast over ``[t, t + L_pod]`` and
   each pool's node floor covers its replicas' forecast over ``[t, t + L_node + L_pod]``
   (:func:`policies.leadtime.plan`), so nodes are ready before the replicas that need them. The
   quantile is per workload: the newsvendor ratio of SLO-miss cost to GPU cost
   (:mod:`policies.economics`), or a configured one. With ``follow_trend``, where observed demand
   is rising (``demand_trend``, PromQL ``deriv``), the plan covers the larger of the forecast and
   the trend's linear projection (``predict_linear``), so a forecaster that lags a ramp does not
   make nodes late.
4. **Scaling down (GPU economics).** Replicas are kept while the forecast gives them a chance of
   being needed again within their cold start that, times the cost of a miss, exceeds their idle
   cost; then the scale-down stabilization window and the per-minute step limits apply.
5. **Never on missing data.** A workload whose demand metric is missing never scales down.
6. **Limits.** min/max replicas last; GPUs left idle on nodes the plan pays for anyway are filled
   with warm replicas (``fill_idle_gpus``), which costs nothing and absorbs bursts at once.
7. **Node pools.** A workload that may run on several pools is recommended the cheapest eligible
   one with room for its planned peak (``DecisionBatch.pool``, reason ``POOL_CHOSEN``). Moving a
   running workload is a rollout, so it stays a recommendation: node floors and warm fill stay
   on the pool its replicas run on until someone moves it.

Every step of that leaves a :class:`~policies.types.ReasonCode` bit, so ``explain()`` says which
rule won and why, with the figures it used (forecast model and quantile, lead time, capacity per
replica, costs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from forecasters.series import Forecast
from policies import reactive
from policies.economics import keep_quantile, newsvendor_quantile, replica_idle_cost
from policies.forecasts import ForecastBatch
from policies.leadtime import plan, replicas_needed
from policies.packing import fill_billed_gpus
from policies.placement import place
from policies.types import ClusterState, DecisionBatch, DecisionLog, ReasonCode

NAME = "predictive"


@dataclass(frozen=True)
class PredictiveConfig:
    """Settings of the predictive policy (each one documented in ``simulations/config.py``)."""

    quantile: float | None = None  # None: per workload from the costs (newsvendor)
    slo_miss_cost_per_hour: float = 50.0
    target_utilization: float = 0.9
    keep_warm: bool = True
    fill_idle_gpus: bool = True
    scale_down_stabilization_seconds: float = 0.0
    max_scale_up_per_minute: float = 1.0  # fraction of current (at least 4 replicas a minute)
    max_scale_down_per_minute: float = 0.5  # fraction of current (at least 1 replica a minute)
    follow_trend: bool = False  # size for the observed trend's linear projection when it exceeds the forecast
    pool_stickiness: float = 0.05  # move a workload to another eligible pool only if it is this much cheaper
    quality_gate_ratio: float = 5.0
    quality_recover_ratio: float = 2.0
    floor_utilization: float = 1.0  # the safety net: never fewer replicas than observed load needs at this utilisation
    reactive: reactive.ReactiveConfig = field(default_factory=reactive.ReactiveConfig)  # the fallback without a usable forecast


def node_leads(state: ClusterState) -> tuple[float, ...]:
    """Per pool, how far ahead its node floor looks: provisioning plus its slowest replica startup."""
    wl, pools = state.workloads, state.node_pools
    startup = np.zeros(len(pools))
    np.maximum.at(startup, wl.pool, wl.startup_seconds)
    return tuple(float(v) for v in pools.provisioning_seconds + startup)


def quantiles_for(state: ClusterState, config: PredictiveConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per workload: (sizing quantile, keep quantile, miss cost $/h, idle cost $/h of one replica)."""
    wl, pools = state.workloads, state.node_pools
    n = len(wl)
    miss = np.full(n, config.slo_miss_cost_per_hour) if wl.slo_miss_cost_per_hour is None else np.asarray(wl.slo_miss_cost_per_hour, dtype=float)
    idle = replica_idle_cost(wl.gpus_per_replica, wl.pool, pools.price_per_gpu_hour)
    q = newsvendor_quantile(miss, idle) if config.quantile is None else np.full(n, float(config.quantile))
    if wl.quantile is not None:
        q = np.where(np.isfinite(wl.quantile), wl.quantile, q)
    keep = keep_quantile(miss, idle)
    return q, keep, miss, idle


def _gate(state: ClusterState, log: DecisionLog, config: PredictiveConfig) -> tuple[np.ndarray, np.ndarray]:
    """(closed gates, error ratios): closes above ``quality_gate_ratio``, reopens below ``quality_recover_ratio``."""
    n = len(state.workloads)
    ratio = state.workloads.forecast_error_ratio
    before = np.zeros(n, dtype=bool) if log.gated is None else log.gated
    if ratio is None:
        return before, np.full(n, np.nan)
    ratio = np.asarray(ratio, dtype=float)
    known = np.isfinite(ratio)
    closed = np.where(known, np.where(before, ratio > config.quality_recover_ratio, ratio > config.quality_gate_ratio), before)
    return closed, ratio


def step_limits(current: np.ndarray, step_seconds: float, config: PredictiveConfig) -> tuple[np.ndarray, np.ndarray]:
    """The lowest and highest counts one step may reach from ``current``."""
    minutes = step_seconds / 60.0
    up = np.maximum(np.ceil(current * config.max_scale_up_per_minute * minutes), math.ceil(4 * minutes))
    down = np.maximum(np.floor(current * config.max_scale_down_per_minute * minutes), max(1, math.floor(minutes)))
    return np.maximum(current - down, 0).astype(np.int64), (current + up).astype(np.int64)


def safety_floor(state: ClusterState, utilization: float) -> np.ndarray:
    """Replicas the observed load needs right now at ``utilization`` (0 where the metric is missing),
    before max_replicas (the caller clamps, and says so)."""
    wl = state.workloads
    demand = np.where(np.isnan(wl.demand_rps), 0.0, wl.demand_rps)
    return replicas_needed(demand, wl.capacity_rps * utilization).astype(np.int64)


def decide(
    now: float,
    state: ClusterState,
    forecasts: Mapping[str, Forecast] | ForecastBatch | None,
    log: DecisionLog,
    config: PredictiveConfig,
) -> tuple[DecisionBatch, DecisionLog]:
    wl = state.workloads
    n = len(wl)
    current = np.asarray(wl.replicas, dtype=np.int64)
    fallback, log = reactive.decide(now, state, None, log, config.reactive, keep_seconds=config.scale_down_stabilization_seconds)
    floor_need = safety_floor(state, config.floor_utilization)
    floor = np.minimum(floor_need, wl.max_replicas)
    q, kq, miss, idle = quantiles_for(state, config)
    gated, ratio = _gate(state, log, config)
    batch_in = ForecastBatch.gather(wl.names, forecasts, state.step_seconds)
    p = plan(now, state, batch_in, q, config.target_utilization, kq if config.keep_warm else None, usable=~gated,
             trend=wl.demand_trend if config.follow_trend else None, held=fallback.replicas)
    use = p.replicas >= 0
    stale = np.isnan(wl.demand_rps)

    # Sizing up, then the scale-down floor from GPU economics (never above the current count).
    keep = np.where(p.keep >= 0, np.minimum(current, p.keep), 0)
    kept = use & (keep > p.replicas)
    sized = np.where(use, np.maximum(p.replicas, keep), -1)
    log = log.with_forecast_recs(sized)  # the raw answer: a held value must not hold itself

    # Scale-down stabilization over this policy's own recent answers.
    window = config.scale_down_stabilization_seconds
    stabilized = np.zeros(n, dtype=bool)
    held_at = np.full(n, -1)
    if window > 0 and log.forecast_recs is not None and len(log.times) > 1:
        recent = log.forecast_recs[:-1][log.times[:-1] >= now - window]
        held_at = recent.max(axis=0, initial=-1)
        stabilized = use & (sized < current) & (held_at > sized)
        sized = np.where(stabilized, np.minimum(current, held_at), sized)

    # Step limits (a forecast-driven answer moves at most so far per minute), then the safety net.
    low, high = step_limits(current, state.step_seconds, config)
    limited = use & ((sized > high) | (sized < low))
    proposal = np.clip(sized, low, high)
    above_floor = use & (proposal > floor)
    desired = np.where(use, np.maximum(proposal, floor), fallback.replicas)
    held_stale = stale & (desired < current)
    desired = np.where(stale, np.maximum(desired, current), desired)
    clamped_max = (desired > wl.max_replicas) | (use & ~above_floor & (floor_need > wl.max_replicas))
    clamped_min = (desired < wl.min_replicas) | (use & above_floor & (p.wanted < wl.min_replicas) & (proposal <= wl.min_replicas))
    desired = np.clip(desired, wl.min_replicas, wl.max_replicas)
    sized_final = desired

    # Node pools: the cheapest eligible pool with room for each workload's planned peak. That is a
    # recommendation: moving a running workload to another pool is a rollout (a new node
    # selector), left to whoever applies it, so node floors and warm replicas stay on the pool
    # the replicas run on now.
    node_floor, pool, placements = p.node_floor, None, {}
    moved = np.zeros(n, dtype=bool)
    if wl.eligible is not None:
        multi = np.count_nonzero(wl.eligible, axis=1) > 1
        misplaced = ~wl.eligible[np.arange(n), wl.pool]
        if (multi | misplaced).any():
            pool, placements = _placed(state, p, desired, config)
            moved = pool != wl.pool
    if config.fill_idle_gpus:
        desired = fill_billed_gpus(state, desired, node_floor)

    # Reasons: without a usable forecast, reactive's own and why; with one, which of forecast and
    # safety net won, and every rule that changed the number.
    bit = lambda flag, code: np.where(flag, int(code), 0)  # noqa: E731
    gate_closed = gated & batch_in.present
    without = fallback.reasons | np.where(gate_closed, int(ReasonCode.QUALITY_GATE), int(ReasonCode.FALLBACK_FORECAST))
    forecast_up = use & (p.wanted > floor)  # else the safety net is the basis (guardrails may still hold more)
    trend = above_floor & (p.trend_won if p.trend_won is not None else False)
    with_forecast = (np.where(forecast_up, int(ReasonCode.FORECAST_UP), int(ReasonCode.REACTIVE_FLOOR))
                     | bit(above_floor & kept, ReasonCode.KEPT_WARM) | bit(above_floor & stabilized, ReasonCode.STABILIZED)
                     | bit(above_floor & limited, ReasonCode.RATE_LIMITED) | bit(trend, ReasonCode.TREND))
    reasons = (np.where(use, with_forecast, without) | bit(held_stale, ReasonCode.STALE_METRICS)
               | bit(use & (clamped_max | (forecast_up & p.clamped)), ReasonCode.CLAMPED_MAX)
               | bit(use & clamped_min, ReasonCode.CLAMPED_MIN) | bit(desired > sized_final, ReasonCode.WARM_FILL)
               | bit(moved, ReasonCode.POOL_CHOSEN))
    fallbacks = dict(p.missing)
    for i in np.flatnonzero(gate_closed):
        fallbacks[wl.names[i]] = (f"live forecast error {ratio[i]:.1f}x its backtest baseline; gate at {config.quality_gate_ratio:.1f}x, "
                                  f"reopens below {config.quality_recover_ratio:.1f}x" if np.isfinite(ratio[i]) else
                                  "no live error measured since it closed")
    fb = fallback.detail
    batch = DecisionBatch(
        policy=NAME,
        decided_at=now,
        replicas=desired.astype(np.int64),
        proposed=np.where(use, np.maximum(p.wanted, floor), fallback.proposed),
        reasons=reasons,
        node_floor=node_floor,
        detail={**fb, "floor": floor_need, "forecast": np.maximum(p.wanted, 0),
                "stabilized": np.where(use, held_at, fb["stabilized"]),
                "window": np.where(use, window, config.reactive.scale_down_stabilization_seconds),
                "cold_start": p.cold, "per_replica": wl.capacity_rps * config.target_utilization,
                "forecast_peak": p.peaks, "lead": p.leads, "sized": sized_final, "warm": desired - sized_final,
                "keep": keep, "keep_chance": np.where(miss > 0, idle / np.where(miss > 0, miss, 1.0), 1.0),
                "miss_cost": miss, "idle_cost": idle, "quantile": q, "error_ratio": ratio,
                "trend_per_min": (np.full(n, np.nan) if wl.demand_trend is None else wl.demand_trend * 60.0),
                "rate_limit": np.where(use, np.where(sized > high, high, low), fb["rate_limit"])},
        params={**fallback.params, "floor_target": config.floor_utilization, "plan_target": config.target_utilization,
                "node_leads": node_leads(state),
                "gate": config.quality_gate_ratio},
        fallbacks=fallbacks,
        forecasts=forecasts if forecasts is not None else {},
        pool=pool,
        placements=placements,
    )
    return batch, log.with_gate(gated)


def _placed(state: ClusterState, p, desired: np.ndarray, config: PredictiveConfig) -> tuple[np.ndarray, dict[str, str]]:
    """(recommended pool per workload, sentences for those it would move), for workloads with
    several eligible pools, each placed for the most replicas it will have bound over the node
    lead time (or now, if more)."""
    wl, pools = state.workloads, state.node_pools
    bound = p.bound if p.bound is not None else desired[:, None]
    peak = np.maximum(bound.max(axis=1, initial=0), desired).astype(np.int64)
    placement = place(peak, wl.gpus_per_replica, wl.eligible, wl.pool, pools.gpus_per_node, pools.max_nodes,
                      pools.price_per_gpu_hour, sticky=config.pool_stickiness)
    sentences = {wl.names[i]: placement.explain(i, pools.names, pools.price_per_gpu_hour) for i in np.flatnonzero(placement.moved)}
    return placement.pool, sentences
