"""Reactive baseline: the Kubernetes HPA algorithm on observed load (what users run today).

Per workload, with ``d`` the observed demand, ``c`` the capacity of one replica at its SLO and
``T`` the target utilisation:

* the HPA ratio is ``d / (c * T * current)``; within ``tolerance`` of 1 nothing changes;
  otherwise the recommendation is ``ceil(d / (c * T))`` (= ``ceil(current * ratio)``);
* scale-down is stabilised: the count never falls below the highest recommendation of the last
  ``scale_down_stabilization_seconds`` (HPA default 300 s);
* scale-up is limited as the HPA's default behaviour does: per 15 s, the larger of doubling and
  adding 4 pods;
* min and max replicas clamp last;
* a missing demand metric holds the current count (the HPA skips a sync it has no metrics for).

Nodes are left to the cluster autoscaler (``node_floor`` is 0): pending pods trigger nodes, and
empty nodes go after the pool's idle delay. The simulator plays that part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from forecasters.series import Forecast
from policies.leadtime import replicas_needed
from policies.types import ClusterState, DecisionBatch, DecisionLog, ReasonCode

NAME = "reactive"
HPA_SYNC_SECONDS = 15.0  # the HPA's default sync period; its scale-up limits are per this period


@dataclass(frozen=True)
class ReactiveConfig:
    target_utilization: float = 0.7
    tolerance: float = 0.1
    scale_down_stabilization_seconds: float = 300.0


_LIMIT_CAP = float(2**40)  # far above any replica count, far below int64 overflow
_GUARDRAIL_BITS = np.array([int(ReasonCode.STABILIZED), int(ReasonCode.RATE_LIMITED),
                            int(ReasonCode.CLAMPED_MAX), int(ReasonCode.CLAMPED_MIN)], dtype=np.int64)


def scale_up_limit(current: np.ndarray, step_seconds: float) -> np.ndarray:
    """The HPA default scale-up policy (max of +100% and +4 pods per 15 s) over one step.

    Never below ``current`` (a limit on growth must not shrink anything) and capped at 2**40 so a
    long step (2**(3600/15) overflows int64) cannot wrap around to a negative limit.
    """
    periods = max(step_seconds / HPA_SYNC_SECONDS, 1.0)
    doubled = np.maximum(current, 1) * 2.0 ** min(periods, 40.0)  # 2**40 = _LIMIT_CAP
    grown = np.minimum(np.maximum(np.ceil(doubled), current + math.ceil(4 * periods)), _LIMIT_CAP)
    return np.maximum(grown.astype(np.int64), current)


def decide(
    now: float,
    state: ClusterState,
    forecasts: Mapping[str, Forecast] | None,
    log: DecisionLog,
    config: ReactiveConfig,
    keep_seconds: float | None = None,
) -> tuple[DecisionBatch, DecisionLog]:
    """The HPA's answer. ``keep_seconds`` keeps a longer log than this policy's own window needs
    (the predictive policy, which calls this for its floor, has a window of its own)."""
    wl = state.workloads
    log = log.aligned(wl.names)
    current = np.asarray(wl.replicas, dtype=np.int64)
    demand = wl.demand_rps
    missing = np.isnan(demand)
    per_replica_target = wl.capacity_rps * config.target_utilization
    safe_demand = np.where(missing, 0.0, demand)

    # The HPA's arithmetic: a proposal from the ratio, unless the ratio is within tolerance.
    raw = replicas_needed(safe_demand, per_replica_target).astype(np.int64)
    ratio = safe_demand / (per_replica_target * np.maximum(current, 1))
    within = (current > 0) & (np.abs(ratio - 1.0) <= config.tolerance)
    recommendation = np.where(within | missing, current, raw)

    # Stabilize scale-down: never go below the largest recommendation in the window.
    window = config.scale_down_stabilization_seconds
    new_log = log.appended(now, recommendation, keep_seconds=max(window, keep_seconds or 0.0))
    in_window = new_log.recommendations if keep_seconds is None else new_log.recommendations[new_log.times >= now - window]
    stabilized_floor = in_window.max(axis=0)  # without keep_seconds the log holds exactly the window
    desired = np.where(recommendation < current, np.minimum(current, stabilized_floor), recommendation)
    stabilized = desired > recommendation

    limit = scale_up_limit(current, state.step_seconds)
    rate_limited = desired > limit
    desired = np.minimum(desired, limit)

    clamped_max = desired > wl.max_replicas
    clamped_min = desired < wl.min_replicas
    desired = np.minimum(np.maximum(desired, wl.min_replicas), wl.max_replicas)

    base = np.where(missing, int(ReasonCode.STALE_METRICS),
                    np.where(within, int(ReasonCode.WITHIN_TOLERANCE), int(ReasonCode.REACTIVE)))
    flags = np.stack([stabilized, rate_limited, clamped_max, clamped_min])
    reasons = base | (_GUARDRAIL_BITS @ flags)

    batch = DecisionBatch(
        policy=NAME,
        decided_at=now,
        replicas=desired,
        proposed=recommendation,
        reasons=reasons,
        node_floor=np.zeros(len(state.node_pools), dtype=np.int64),
        detail={"reactive": recommendation, "stabilized": stabilized_floor, "rate_limit": limit},
        params={"target": config.target_utilization, "tolerance": config.tolerance, "window": window},
    )
    return batch, new_log
