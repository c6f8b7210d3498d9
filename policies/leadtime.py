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
from policies.forecasts import ForecastBatch
from policies.placement import pool_nodes
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


def running_max_rows(values: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """A running max over the next ``widths[i]`` steps, per row: ``out[i, u] = max(values[i, u : u + widths[i] + 1])``."""
    out = values.copy()
    for k in range(1, int(widths.max(initial=0)) + 1):
        grow = (widths >= k)[:, None]
        out[:, :-k] = np.where(grow, np.maximum(out[:, :-k], values[:, k:]), out[:, :-k])
    return out


@dataclass(frozen=True)
class LeadPlan:
    """Capacity sized for a forecast over the lead times.

    Per workload: ``replicas`` wanted now within min/max (-1 where there is no usable forecast),
    what the forecast asked for before min/max (``wanted``), the scale-down floor ``keep`` (the
    replicas the keep quantile needs over the cold start; -1 without a forecast or keep quantile),
    the forecast ``peaks`` over the replica lead time, that lead time in seconds (``leads``) and
    whether max_replicas cut the plan (``clamped``); per pool the ``node_floor``; and the workloads
    with no forecast, with why.
    """

    replicas: np.ndarray
    wanted: np.ndarray
    keep: np.ndarray
    peaks: np.ndarray
    leads: np.ndarray
    clamped: np.ndarray
    node_floor: np.ndarray
    missing: dict[str, str]
    bound: np.ndarray | None = None  # [n, Ln_max + 1] replicas that must be bound at each step
    trend_won: np.ndarray | None = None  # bool [n]: the observed trend's projection asked for more than the forecast
    node_steps: np.ndarray | None = None  # [p] node provisioning lead in steps
    cold: np.ndarray | None = None  # [n] seconds: the cold start a replica let go costs (slowest eligible node + startup)


def lookahead(state: ClusterState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(replica startup steps per workload, provisioning steps per pool, node steps per workload).

    A workload's node steps are those of the slowest pool it may be placed on (its eligible
    pools, else its own): the horizon a plan, a forecast and a keep window must cover.
    """
    wl, pools, step = state.workloads, state.node_pools, state.step_seconds
    pod = np.ceil(np.asarray(wl.startup_seconds, dtype=float) / step - 1e-9).clip(min=0).astype(np.int64)
    node = np.ceil(np.asarray(pools.provisioning_seconds, dtype=float) / step - 1e-9).clip(min=0).astype(np.int64)
    node_w = node[wl.pool] if len(wl) else np.zeros(0, dtype=np.int64)
    if wl.eligible is not None and len(wl):
        node_w = np.maximum(node_w, np.where(wl.eligible, node[None, :], 0).max(axis=1))
    return pod, node, node_w


def node_floor_for(bound: np.ndarray, pool: np.ndarray, node_steps: np.ndarray, state: ClusterState) -> np.ndarray:
    """Per pool, nodes for the replicas bound at each step it can still serve, packed (replicas
    never span nodes; see :func:`policies.placement.pool_nodes`), within max_nodes."""
    pools = state.node_pools
    nodes = pool_nodes(bound.astype(np.int64), state.workloads.gpus_per_replica, pool, pools.gpus_per_node)
    nodes = np.where(np.arange(bound.shape[1])[None, :] <= node_steps[:, None], nodes, 0)
    return np.minimum(nodes.max(axis=1, initial=0), pools.max_nodes).astype(np.int64)


def plan(
    now: float,
    state: ClusterState,
    forecasts: "Mapping[str, Forecast] | ForecastBatch | None",
    quantile: np.ndarray | float,
    target_utilization: float,
    keep_quantile: np.ndarray | None = None,
    usable: np.ndarray | None = None,
    trend: np.ndarray | None = None,
    held: np.ndarray | None = None,
) -> LeadPlan:
    """Replicas, scale-down floors and node floors sized for the forecast over each lead time.

    Vectorised over workloads (see the module doc for the arithmetic). ``quantile`` and
    ``keep_quantile`` may differ per workload; ``usable`` (default: every forecast that still
    covers ``now``) masks forecasts a policy decided not to trust. ``trend`` (requests/s per second, per workload;
    NaN unknown) projects the observed demand linearly over the lead times, like PromQL's
    ``predict_linear``: where a rise is under way the plan covers the larger of the projection and
    the forecast (``trend_won`` says where the projection asked for more). ``held`` is what the
    workloads without a usable forecast will run (the caller's fallback answer; default their
    current count): their replicas take GPUs too, so node floors are packed for them as well.
    """
    wl = state.workloads
    step = state.step_seconds
    n = len(wl)
    batch = ForecastBatch.gather(wl.names, forecasts, step)
    fresh = batch.fresh(now)
    ok = fresh if usable is None else fresh & usable
    missing = {name: "no forecast for this workload" for i, name in enumerate(wl.names) if not batch.present[i]}
    for i in np.flatnonzero(batch.present & ~fresh):
        missing[wl.names[i]] = f"its forecast expired at {batch.expires_at()[i]:.0f} (issued {batch.issued_at[i]:.0f})"
    pod, node, node_w = lookahead(state)
    length = int((pod + node_w).max(initial=0)) + 1
    per_replica = wl.capacity_rps * target_utilization
    q = np.broadcast_to(np.asarray(quantile, dtype=float), (n,))
    demand = batch.paths(now, q, length, step)
    within_pod = np.arange(length)[None, :] <= pod[:, None]
    trend_won = np.zeros(n, dtype=bool)
    if trend is not None:
        slope = np.where(np.isfinite(trend), np.maximum(trend, 0.0), 0.0)
        seen = np.where(np.isfinite(wl.demand_rps), wl.demand_rps, 0.0)
        projected = seen[:, None] + slope[:, None] * step * np.arange(1, length + 1)[None, :]
        rising = ok & (slope > 0)
        trend_won = rising & (np.where(within_pod, projected - demand, -np.inf).max(axis=1, initial=-np.inf) > 0)
        demand = np.where(rising[:, None], np.maximum(demand, projected), demand)
    need = np.where(ok[:, None], replicas_needed(demand, per_replica[:, None]), 0.0)
    wanted = np.where(within_pod, need, 0.0).max(axis=1, initial=0.0).astype(np.int64)
    peaks = np.where(ok, np.where(within_pod, demand, 0.0).max(axis=1, initial=0.0), np.nan)
    clamped = ok & (wanted > wl.max_replicas)
    need = np.where(ok[:, None], np.clip(need, wl.min_replicas[:, None], wl.max_replicas[:, None]), 0.0)
    bound = running_max_rows(need, pod)  # replicas that must exist (bound to a GPU) at each step
    # Without a usable forecast a workload runs what the caller's fallback decided (else what it
    # has): its replicas still take GPUs, so node floors are packed for them too.
    other = np.asarray(wl.replicas if held is None else held, dtype=float)
    other = np.clip(other, wl.min_replicas, wl.max_replicas)
    bound = np.where(ok[:, None], bound, other[:, None])
    replicas = np.where(ok, bound[:, 0], -1).astype(np.int64)
    keep = np.full(n, -1, dtype=np.int64)
    if keep_quantile is not None:
        kq = np.broadcast_to(np.asarray(keep_quantile, dtype=float), (n,))
        keeps = ok & (kq > 0)
        if keeps.any():
            kdemand = batch.paths(now, np.clip(kq, 1e-6, 1.0), length, step)
            # A replica let go may take its node with it: getting it back is a node provisioning
            # plus a startup, so the keep window is the whole cold start [t, t + L_node + L_pod].
            within_cold = np.arange(length)[None, :] <= (pod + node_w)[:, None]
            kneed = np.where(within_cold, replicas_needed(kdemand, per_replica[:, None]), 0.0).max(axis=1, initial=0.0)
            keep = np.where(keeps, np.clip(kneed, wl.min_replicas, wl.max_replicas), -1).astype(np.int64)
    width = int(node.max(initial=0)) + 1
    bound = bound[:, :width]
    node_floor = node_floor_for(bound, wl.pool, node, state)
    leads = np.where(ok, pod * step, 0.0)
    return LeadPlan(replicas, wanted, keep, peaks, leads, clamped, node_floor, missing,
                    bound=bound, trend_won=trend_won, node_steps=node, cold=(pod + node_w) * step)


def plan_from_forecasts(
    now: float,
    state: ClusterState,
    forecasts: "Mapping[str, Forecast] | ForecastBatch | None",
    quantile: float,
    target_utilization: float,
) -> LeadPlan:
    """:func:`plan` at one quantile for every workload, no scale-down floor (the oracle's view)."""
    return plan(now, state, forecasts, quantile, target_utilization)
