"""Node-pool packing: how replicas' GPU requests turn into nodes, and what is left over.

Nodes come in whole units (8 GPUs, say), so a pool sized for its replicas usually has a few GPUs
that nobody uses, billed all the same. :func:`fill_billed_gpus` puts warm replicas on them: a
ready replica on a GPU that is paid for anyway costs nothing more and absorbs a burst at once,
where a new one would take a startup (and perhaps a node) to arrive. It never adds a node: the
filled count is computed from the nodes the plan already needs, so when demand falls the extra
replicas go with their node.
"""

from __future__ import annotations

import numpy as np

from policies.types import ClusterState


def nodes_for(state: ClusterState, replicas: np.ndarray, pool: np.ndarray | None = None) -> np.ndarray:
    """Per pool, whole nodes needed for these replicas (GPUs fungible within a pool); ``pool``
    overrides where each workload's replicas run (default: where they are)."""
    wl, pools = state.workloads, state.node_pools
    pool = wl.pool if pool is None else pool
    gpus = np.bincount(pool, weights=replicas * wl.gpus_per_replica, minlength=len(pools))
    return np.ceil(gpus / pools.gpus_per_node - 1e-9).astype(np.int64)


def fill_billed_gpus(state: ClusterState, replicas: np.ndarray, node_floor: np.ndarray, pool: np.ndarray | None = None) -> np.ndarray:
    """``replicas`` plus warm replicas on the idle GPUs of the nodes the plan pays for.

    A pool's planned nodes are ``max(nodes for the replicas, node_floor)`` within ``max_nodes``;
    its spare GPUs are shared among its workloads in proportion to the GPUs they already use
    (rounded down to whole replicas, within ``max_replicas``).
    """
    wl, pools = state.workloads, state.node_pools
    pool = wl.pool if pool is None else pool
    gpus = replicas * wl.gpus_per_replica
    pool_gpus = np.bincount(pool, weights=gpus, minlength=len(pools))
    planned = np.minimum(np.maximum(nodes_for(state, replicas, pool), node_floor), pools.max_nodes)
    spare = np.maximum(planned * pools.gpus_per_node - pool_gpus, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(pool_gpus[pool] > 0, gpus / pool_gpus[pool], 0.0)
    extra = np.floor(spare[pool] * share + 1e-9).astype(np.int64) // wl.gpus_per_replica
    return np.minimum(replicas + extra, np.maximum(wl.max_replicas, replicas))
