"""Lead-time arithmetic shared by every policy that looks ahead (predictive, oracle).

A replica created at step t serves from step ``t + Lp`` (``Lp`` = startup steps); a node requested
at t is ready at ``t + Ln`` and a replica bound to it serves from ``t + Ln + Lp``. So, with
``need_w(s)`` the replicas workload w needs at step s:

* replicas wanted now: ``max(need_w(s) for s in [t, t + Lp])``: anything needed before ``t + Lp``
  must already exist, and what is needed at ``t + Lp`` must start now;
* nodes wanted now in pool p: ``ceil(max(inner(u) for u in [t, t + Ln]) / gpus_per_node)`` with
  ``inner(u) = sum over w in p of gpus_per_replica_w * max(need_w(s) for s in [u, u + Lp_w])``:
  the GPUs bound at u, for every u a node requested now could still serve.

With exact demand this is the least capacity that meets the SLO at every step (the oracle); with
an upper forecast quantile it is the predictive policy's plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from forecasters.series import Forecast
from policies.types import ClusterState


def lead_steps(seconds: float, step_seconds: float) -> int:
    """Whole steps a delay occupies (a 3-minute startup at 60 s steps is 3 steps)."""
    return max(0, math.ceil(seconds / step_seconds - 1e-9))


def replicas_needed(demand_rps: np.ndarray, per_replica_rps: np.ndarray) -> np.ndarray:
    """Whole replicas for a load: ``ceil(demand / per_replica)``.

    The relative 1e-9 keeps float noise (12.000000000001 replicas) from asking for a whole extra
    replica, while any positive demand, however small, still needs one.
    """
    return np.ceil(demand_rps / per_replica_rps * (1 - 1e-9))


def running_max(values: np.ndarray, width: int) -> np.ndarray:
    """``out[u] = max(values[u : u + width + 1])`` (the window clipped at the end)."""
    out = values.copy()
    for k in range(1, width + 1):
        out[:-k] = np.maximum(out[:-k], values[k:])
    return out


def forecast_path(forecast: Forecast, now: float, quantile: float, length: int) -> np.ndarray:
    """The forecast quantile for steps ``now, now + step, ...`` (``length`` values).

    A forecast shorter than asked is extended with its last value, documented rather than
    guessed: a policy that needs a longer horizon should ask for one.
    """
    values = forecast.at_least(quantile)
    first = int(round((now - forecast.issued_at) / forecast.step)) - 1
    path = values[max(first, 0) : max(first, 0) + length]
    if path.shape[0] == 0:
        path = values[-1:]
    if path.shape[0] < length:
        path = np.concatenate([path, np.full(length - path.shape[0], path[-1])])
    return np.maximum(path, 0.0)


@dataclass(frozen=True)
class LeadPlan:
    """Capacity sized for a forecast over the lead times.

    Per workload: ``replicas`` wanted now (-1 where there is no forecast), what the forecast asked
    for before min/max replicas (``wanted``), the forecast ``peaks`` over the replica lead time,
    that lead time in seconds (``leads``) and whether max_replicas cut the plan (``clamped``); per pool the ``node_floor``; and the workloads with no forecast, with why.
    """

    replicas: np.ndarray
    wanted: np.ndarray
    peaks: np.ndarray
    leads: np.ndarray
    clamped: np.ndarray
    node_floor: np.ndarray
    missing: dict[str, str]


def plan_from_forecasts(
    now: float,
    state: ClusterState,
    forecasts: Mapping[str, Forecast],
    quantile: float,
    target_utilization: float,
) -> LeadPlan:
    """Replicas and node floors sized for the forecast over each lead time (see the module doc)."""
    wl, pools = state.workloads, state.node_pools
    step = state.step_seconds
    n = len(wl)
    replicas = np.full(n, -1, dtype=np.int64)
    peaks = np.full(n, np.nan)
    leads = np.zeros(n)
    clamped = np.zeros(n, dtype=bool)
    wanted = np.full(n, -1, dtype=np.int64)
    missing: dict[str, str] = {}
    pod_steps = [lead_steps(s, step) for s in wl.startup_seconds]
    node_steps = [lead_steps(s, step) for s in pools.provisioning_seconds]
    inner = [np.zeros(node_steps[p] + 1) for p in range(len(pools))]
    for i, name in enumerate(wl.names):
        forecast = forecasts.get(name)
        if forecast is None:
            missing[name] = "no forecast for this workload"
            continue
        p = int(wl.pool[i])
        lp, ln = pod_steps[i], node_steps[p]
        demand = forecast_path(forecast, now, quantile, lp + ln + 1)
        need = replicas_needed(demand, wl.capacity_rps[i] * target_utilization)
        wanted[i] = int(need[: lp + 1].max())
        clamped[i] = wanted[i] > wl.max_replicas[i]
        need = np.clip(need, wl.min_replicas[i], wl.max_replicas[i])
        bound = running_max(need, lp)  # replicas that must exist (bound to a GPU) at each step
        replicas[i] = int(bound[0])
        peaks[i] = float(demand[: lp + 1].max())
        leads[i] = lp * step
        inner[p] += wl.gpus_per_replica[i] * bound[: ln + 1]
    node_floor = np.array(
        [min(math.ceil(inner[p].max() / pools.gpus_per_node[p] - 1e-9), int(pools.max_nodes[p])) for p in range(len(pools))],
        dtype=np.int64,
    )
    return LeadPlan(replicas, wanted, peaks, leads, clamped, node_floor, missing)
