"""Oracle: perfect foresight, the limit no real policy can beat.

It is handed the exact future demand as a forecast with no uncertainty and sizes replicas and node
pools with the lead-time arithmetic of :mod:`policies.leadtime` at 100% of each replica's capacity
at its SLO: nodes and replicas are ready just in time, respecting both delays, and gone as soon as
they are no longer needed. With the simulator's cluster autoscaler it is the cheapest way to meet
the SLO at every step (a property the tests check against other policies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from forecasters.series import Forecast
from policies.leadtime import plan_from_forecasts
from policies.types import ClusterState, DecisionBatch, DecisionLog, ReasonCode

NAME = "oracle"


@dataclass(frozen=True)
class OracleConfig:
    """No settings: the oracle sizes exactly for known demand."""


def decide(
    now: float,
    state: ClusterState,
    forecasts: Mapping[str, Forecast] | None,
    log: DecisionLog,
    config: OracleConfig,
) -> tuple[DecisionBatch, DecisionLog]:
    wl = state.workloads
    plan = plan_from_forecasts(now, state, forecasts or {}, 1.0, 1.0)
    no_forecast = plan.replicas < 0
    desired = np.where(no_forecast, wl.replicas, plan.replicas).astype(np.int64)
    reasons = np.where(no_forecast, int(ReasonCode.FALLBACK_FORECAST), int(ReasonCode.ORACLE))
    reasons = reasons | np.where(plan.clamped, int(ReasonCode.CLAMPED_MAX), 0)
    batch = DecisionBatch(
        policy=NAME,
        decided_at=now,
        replicas=desired,
        proposed=np.where(no_forecast, wl.replicas, plan.wanted),
        reasons=reasons,
        node_floor=plan.node_floor,
        detail={"forecast": np.where(no_forecast, wl.replicas, plan.wanted), "forecast_peak": plan.peaks, "lead": plan.leads},
        params={"quantile": 1.0},
        fallbacks=plan.missing,
    )
    return batch, log.aligned(wl.names)
