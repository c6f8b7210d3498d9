"""Predictive, first version: size for an upper forecast quantile over the lead time, never below
what the reactive policy would do now.

Per workload, the forecast's ``quantile`` over the replica lead time ``[t, t + startup]`` sets the
replicas wanted now, at ``target_utilization`` of each replica's capacity at its SLO; per node pool,
the same forecast over ``[t, t + provisioning + startup]`` sets a node floor, so nodes are ready
before the replicas that need them (live, the floor is held with placeholder pods). The reactive
(HPA) answer is a floor: a bad forecast can only add capacity early, never take it away too soon.
A workload with no usable forecast is decided by reactive alone, and its reason says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from forecasters.series import Forecast
from policies import reactive
from policies.leadtime import plan_from_forecasts
from policies.types import ClusterState, DecisionBatch, DecisionLog, ReasonCode

NAME = "predictive"


@dataclass(frozen=True)
class PredictiveConfig:
    quantile: float = 0.95
    target_utilization: float = 0.9
    reactive: reactive.ReactiveConfig = field(default_factory=reactive.ReactiveConfig)


def decide(
    now: float,
    state: ClusterState,
    forecasts: Mapping[str, Forecast] | None,
    log: DecisionLog,
    config: PredictiveConfig,
) -> tuple[DecisionBatch, DecisionLog]:
    wl = state.workloads
    floor, log = reactive.decide(now, state, None, log, config.reactive)
    planned, peaks, leads, node_floor, missing = plan_from_forecasts(
        now, state, forecasts or {}, config.quantile, config.target_utilization
    )
    no_forecast = planned < 0
    forecast_wins = ~no_forecast & (planned > floor.replicas)
    desired = np.minimum(np.where(forecast_wins, planned, floor.replicas), wl.max_replicas)

    reasons = floor.reasons & ~np.int64(ReasonCode.CLAMPED_MAX)
    reasons = reasons | np.where(no_forecast, int(ReasonCode.FALLBACK_FORECAST),
                                 np.where(forecast_wins, int(ReasonCode.FORECAST_UP), int(ReasonCode.REACTIVE_FLOOR)))
    reasons = reasons | np.where(np.maximum(planned, floor.proposed) > wl.max_replicas, int(ReasonCode.CLAMPED_MAX), 0)
    batch = DecisionBatch(
        policy=NAME,
        decided_at=now,
        replicas=desired.astype(np.int64),
        proposed=np.maximum(planned, floor.proposed),
        reasons=reasons,
        node_floor=node_floor,
        detail={**floor.detail, "forecast": np.maximum(planned, 0), "forecast_peak": peaks, "lead": leads},
        params={**floor.params, "quantile": config.quantile,
                "node_lead": float((state.node_pools.provisioning_seconds.max(initial=0)) + wl.startup_seconds.max(initial=0))},
        fallbacks=missing,
    )
    return batch, log
