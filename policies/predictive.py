"""Predictive, first version: size for an upper forecast quantile over the lead time, never below
what the reactive policy would do now.

Per workload, the forecast's ``quantile`` over the replica lead time ``[t, t + startup]`` sets the
replicas wanted now, at ``target_utilization`` of each replica's capacity at its SLO; per node pool,
the same forecast over ``[t, t + provisioning + startup]`` sets a node floor, so nodes are ready
before the replicas that need them (live, the floor is held with placeholder pods). The reactive
(HPA) answer is a floor: a bad forecast can only add capacity early, never take it away too soon.
A workload with no usable forecast is decided by reactive alone, and its reason says so.

With ``fill_idle_gpus`` (the default), GPUs left idle on the nodes the plan pays for anyway run warm
replicas (:func:`policies.packing.fill_billed_gpus`): no extra cost, and a burst is absorbed at
once instead of after a replica startup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from forecasters.series import Forecast
from policies import reactive
from policies.leadtime import plan_from_forecasts
from policies.packing import fill_billed_gpus
from policies.types import ClusterState, DecisionBatch, DecisionLog, ReasonCode

NAME = "predictive"


@dataclass(frozen=True)
class PredictiveConfig:
    quantile: float = 0.95
    target_utilization: float = 0.9
    fill_idle_gpus: bool = True
    reactive: reactive.ReactiveConfig = field(default_factory=reactive.ReactiveConfig)


def node_leads(state: ClusterState) -> tuple[float, ...]:
    """Per pool, how far ahead its node floor looks: provisioning plus its slowest replica startup."""
    wl, pools = state.workloads, state.node_pools
    startup = np.zeros(len(pools))
    np.maximum.at(startup, wl.pool, wl.startup_seconds)
    return tuple(float(v) for v in pools.provisioning_seconds + startup)


def decide(
    now: float,
    state: ClusterState,
    forecasts: Mapping[str, Forecast] | None,
    log: DecisionLog,
    config: PredictiveConfig,
) -> tuple[DecisionBatch, DecisionLog]:
    floor, log = reactive.decide(now, state, None, log, config.reactive)
    plan = plan_from_forecasts(now, state, forecasts or {}, config.quantile, config.target_utilization)
    no_forecast = plan.replicas < 0
    forecast_wins = ~no_forecast & (plan.replicas > floor.replicas)
    sized = np.where(forecast_wins, plan.replicas, floor.replicas)
    desired = fill_billed_gpus(state, sized, plan.node_floor) if config.fill_idle_gpus else sized

    # Reasons: reactive's own (how its answer came about), except a max clamp the winner did not hit,
    # then which of the two won, then warm replicas on idle billed GPUs.
    clamp_bits = int(ReasonCode.CLAMPED_MAX | ReasonCode.CLAMPED_MIN)
    reasons = np.where(forecast_wins, floor.reasons & ~clamp_bits, floor.reasons)
    reasons = reasons | np.where(no_forecast, int(ReasonCode.FALLBACK_FORECAST),
                                 np.where(forecast_wins, int(ReasonCode.FORECAST_UP), int(ReasonCode.REACTIVE_FLOOR)))
    reasons = reasons | np.where(forecast_wins & plan.clamped, int(ReasonCode.CLAMPED_MAX), 0)
    reasons = reasons | np.where(desired > sized, int(ReasonCode.WARM_FILL), 0)
    batch = DecisionBatch(
        policy=NAME,
        decided_at=now,
        replicas=desired.astype(np.int64),
        proposed=np.maximum(plan.wanted, floor.proposed),
        reasons=reasons,
        node_floor=plan.node_floor,
        detail={**floor.detail, "floor": floor.replicas, "forecast": np.maximum(plan.wanted, 0),
                "forecast_peak": plan.peaks, "lead": plan.leads, "sized": sized, "warm": desired - sized},
        params={**floor.params, "quantile": config.quantile, "node_leads": node_leads(state)},
        fallbacks=plan.missing,
        forecasts=forecasts or {},
    )
    return batch, log
