"""Placement across node pools: how many nodes replicas need, and which pool each workload goes to.

GPU node pools differ in GPU type, GPUs per node, price per GPU-hour and their ``max_nodes``
limit, and a workload may run on several of them (an A100 or an H100 pool, say). A replica needs
``gpus_per_replica`` GPUs on *one* node, so a pool's node count is a bin-packing problem rather
than ``ceil(GPUs / GPUs per node)`` (what :func:`policies.packing.nodes_for` assumes): three
3-GPU replicas need two 8-GPU nodes, not 9/8 -> 2 by luck, and five of them need three.

:func:`pack_nodes` packs by first-fit-decreasing (FFD), computed on counts rather than replica by
replica: the open nodes are kept as runs of ``(GPUs left, how many nodes)`` in the order they were
opened, and a whole group of equal replicas is poured into them at once (a node with ``r`` GPUs
left takes ``r // size`` of them before the next node is tried, exactly what replica-by-replica FFD
does). The runs stay O(distinct sizes), so 10,000 replicas of three sizes cost microseconds. When
the sizes form a divisibility chain (each divides the next larger one and the largest divides the
node: 1, 2, 4 and 8 on 8-GPU nodes) every node but the last is filled exactly and the answer is
``ceil(total GPUs / GPUs per node)``, which is also optimal; that is the fast path. Sizes that each
divide the node but not each other are *not* enough: 15, 10, 10, 10, 6, 6 on 30-GPU nodes fit in
two nodes (15+6+6, 10+10+10) but FFD opens three, so such pools take the general path.

:func:`place` chooses a pool per workload, greedily:

1. Workloads with a single eligible pool go there without search, largest first; they have no
   alternative, so they claim their room before the flexible ones choose.
2. The others follow in descending order of GPUs needed (ties by index). Each takes the cheapest
   eligible pool (price per GPU-hour) whose FFD node count, with this workload added, stays within
   ``max_nodes``. The current pool's price is discounted by ``sticky`` (0.05: stay unless another
   pool is more than 5% cheaper), so workloads are not moved for pennies; equal prices go to the
   current pool, then the lowest pool index.
3. A workload no eligible pool has room for is marked ``fits=False`` and placed on the eligible pool
   where the most of its replicas would still fit (ties: current pool, cheaper, lower index). It
   does not consume room in the greedy's bookkeeping, so every workload marked as fitting fits
   *together* with the others within ``max_nodes``; the pool's reported nodes are capped.

Pool state is kept per pool as GPUs used plus replica counts by size, so a fit check is O(1) on a
divisibility-chain pool and one :func:`pack_nodes` call (O(distinct sizes squared)) otherwise; there
is no per-replica loop. 1,000 workloads on 10 pools place in a few milliseconds.

Known limits against an optimal placement (an integer program): the greedy never revisits a
choice, so a large flexible workload may take the cheap pool's last room that two smaller ones
would have used more cheaply together; the largest-first order is what usually keeps that rare.
FFD itself uses at most 11/9 OPT + 6/9 nodes, and is exact on divisibility-chain sizes (the usual
1/2/4/8-GPU replicas). The greedy minimises price per GPU-hour of the GPUs *requested*, not of the
nodes billed, so the idle GPUs of a partly filled node do not enter the choice. Replicas are placed
all-or-nothing per workload: a workload is never split across pools.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

__all__ = ["Placement", "pack_nodes", "place", "pool_nodes"]


# --------------------------------------------------------------------------------------------
# Checking inputs
# --------------------------------------------------------------------------------------------


def _ints(name: str, values: object, ndim: int | tuple[int, ...] = 1, minimum: int | None = 0) -> np.ndarray:
    """``values`` as an int64 array of the given rank, or a one-line ValueError."""
    array = np.asarray(values)
    ranks = (ndim,) if isinstance(ndim, int) else ndim
    if array.ndim not in ranks:
        raise ValueError(f"{name} must be {' or '.join(f'{r}-D' for r in ranks)}, got shape {array.shape}")
    if array.dtype.kind not in "iub":
        if array.dtype.kind != "f" or not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise ValueError(f"{name} must hold whole numbers, got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    if minimum is not None and array.size and array.min() < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {array.min()}")
    return array


def _shape(name: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
    if array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape}, expected {shape}")


# --------------------------------------------------------------------------------------------
# Packing one pool
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _is_chain(sizes: tuple[int, ...], gpus_per_node: int) -> bool:
    """True when the sorted distinct ``sizes`` each divide the next and the largest divides the node.

    Then FFD fills every node but the last exactly: while a size is poured, every node's free GPUs
    are a multiple of it (all earlier replicas were multiples of it), so nothing is stranded.
    """
    for smaller, larger in zip(sizes, sizes[1:]):
        if larger % smaller:
            return False
    return not sizes or gpus_per_node % sizes[-1] == 0


def _ffd(sizes_desc: Sequence[int], counts: Sequence[int], gpus_per_node: int) -> int:
    """Nodes FFD opens for ``counts[k]`` replicas of ``sizes_desc[k]`` (distinct, descending)."""
    runs: list[tuple[int, int]] = []  # (GPUs left per node, nodes), in the order the nodes opened
    opened = 0
    for size, k in zip(sizes_desc, counts):
        if k <= 0:
            continue
        poured: list[tuple[int, int]] = []
        for left, nodes in runs:
            if k == 0 or left < size:
                poured.append((left, nodes))
                continue
            per = left // size  # each node of this run takes this many before FFD moves on
            full = min(nodes, k // per)
            if full:
                poured.append((left - per * size, full))
                k -= full * per
            rest = nodes - full
            if rest and k:  # k < per here: one node takes the remainder
                poured.append((left - k * size, 1))
                k, rest = 0, rest - 1
            if rest:
                poured.append((left, rest))
        if k:
            per = gpus_per_node // size
            whole, remainder = divmod(k, per)
            if whole:
                poured.append((gpus_per_node - per * size, whole))
            if remainder:
                poured.append((gpus_per_node - remainder * size, 1))
            opened += whole + (remainder > 0)
        runs = []
        for left, nodes in poured:  # drop full nodes, merge neighbours with equal room
            if left == 0:
                continue
            if runs and runs[-1][0] == left:
                runs[-1] = (left, runs[-1][1] + nodes)
            else:
                runs.append((left, nodes))
    return opened


def _pack(sizes: Sequence[int], counts: Sequence[int], gpus_per_node: int) -> int:
    """:func:`pack_nodes` on plain ints, sizes distinct and all <= ``gpus_per_node``."""
    present = sorted((s, c) for s, c in zip(sizes, counts) if c > 0)
    if not present:
        return 0
    if _is_chain(tuple(s for s, _ in present), gpus_per_node):
        total = sum(s * c for s, c in present)
        return -(-total // gpus_per_node)
    present.reverse()
    return _ffd([s for s, _ in present], [c for _, c in present], gpus_per_node)


def pack_nodes(sizes: np.ndarray, counts: np.ndarray, gpus_per_node: int) -> int:
    """Nodes needed to hold ``counts[k]`` replicas of ``sizes[k]`` GPUs each, by first-fit-decreasing.

    Computed on counts, not replica by replica. A replica never spans nodes, so a size larger than
    the node is an error. When the sizes form a divisibility chain (1, 2, 4, 8 on 8-GPU nodes) the
    answer is exactly ``ceil(total GPUs / gpus_per_node)``; otherwise it may be more.
    """
    sizes_a = _ints("sizes", sizes, minimum=1)
    counts_a = _ints("counts", counts)
    _shape("counts", counts_a, sizes_a.shape)
    node = int(gpus_per_node)
    if node != gpus_per_node or node < 1:
        raise ValueError(f"gpus_per_node must be a whole number >= 1, got {gpus_per_node}")
    if sizes_a.size and sizes_a.max() > node:
        raise ValueError(f"a replica of {sizes_a.max()} GPUs cannot fit on a {node}-GPU node")
    distinct, where = np.unique(sizes_a, return_inverse=True)
    merged = np.bincount(where, weights=counts_a, minlength=len(distinct)).astype(np.int64)
    return _pack(distinct.tolist(), merged.tolist(), node)


def pool_nodes(replicas: np.ndarray, gpus_per_replica: np.ndarray, pool: np.ndarray, gpus_per_node: np.ndarray) -> np.ndarray:
    """Per pool, nodes needed for these replicas (workload ``i``'s replicas in ``pool[i]``).

    ``replicas`` is ``[n]`` or ``[n, L]`` (a count per future step); the answer is ``[p]`` or
    ``[p, L]``. Pools whose sizes form a divisibility chain take the vectorised ``ceil`` path, the
    others :func:`pack_nodes` per pool (and per step).
    """
    counts = _ints("replicas", replicas, ndim=(1, 2))
    sizes = _ints("gpus_per_replica", gpus_per_replica, minimum=1)
    where = _ints("pool", pool)
    node = _ints("gpus_per_node", gpus_per_node, minimum=1)
    n, p = len(sizes), len(node)
    if counts.shape[0] != n:
        raise ValueError(f"replicas has {counts.shape[0]} rows, expected {n} (one per workload)")
    _shape("pool", where, (n,))
    if n and where.max() >= p:
        raise ValueError(f"pool index {where.max()} is out of range for {p} pools")
    too_big = sizes > node[where] if n else np.zeros(0, bool)
    if too_big.any():
        i = int(np.argmax(too_big))
        raise ValueError(f"workload {i}: a replica of {sizes[i]} GPUs cannot fit on a {node[where[i]]}-GPU node of pool {where[i]}")
    steps = counts if counts.ndim == 2 else counts[:, None]
    gpus = np.zeros((p, steps.shape[1]), dtype=np.int64)
    np.add.at(gpus, where, steps * sizes[:, None])
    out = -(-gpus // node[:, None])
    for j in np.unique(where).tolist():
        members = where == j
        distinct, local = np.unique(sizes[members], return_inverse=True)
        if _is_chain(tuple(distinct.tolist()), int(node[j])):
            continue
        by_size = np.zeros((len(distinct), steps.shape[1]), dtype=np.int64)
        np.add.at(by_size, local, steps[members])
        sizes_l = distinct.tolist()
        for t in range(steps.shape[1]):
            out[j, t] = _pack(sizes_l, by_size[:, t].tolist(), int(node[j]))
    return out if counts.ndim == 2 else out[:, 0]


# --------------------------------------------------------------------------------------------
# Choosing pools
# --------------------------------------------------------------------------------------------


def _money(price: float) -> str:
    return f"${price:.2f}/GPU-h"


@dataclass(frozen=True)
class Placement:
    """Where each workload goes and what each pool then needs.

    ``fits[i]`` is False where no eligible pool had room: the workload is then on the eligible pool
    where the most of its replicas still fit, and that pool's ``nodes`` are capped at
    ``max_nodes``. Every workload with ``fits`` True fits together with the others. The fields after
    ``moved`` are what :meth:`explain` reads.
    """

    pool: np.ndarray  # [n] int: chosen pool per workload
    nodes: np.ndarray  # [p] int: nodes each pool needs for the placed replicas, capped at max_nodes
    fits: np.ndarray  # [n] bool: False where no eligible pool had room
    moved: np.ndarray  # [n] bool: chosen pool differs from current_pool
    gpus: np.ndarray | None = None  # [n] int: GPUs each workload asked for
    eligible: np.ndarray | None = None  # [n, p] bool: eligible pools (and nodes large enough)
    full: np.ndarray | None = None  # [n, p] bool: pools tried before the chosen one, without room
    current_pool: np.ndarray | None = None  # [n] int: where each workload was (-1: nowhere)
    max_nodes: np.ndarray | None = None  # [p] int
    sticky: float = 0.0

    def explain(self, i: int, names_of_pools: Sequence[str], price: np.ndarray) -> str:
        """One sentence: why workload ``i`` is where it is, with the prices that decided it."""
        j = int(self.pool[i])
        here = names_of_pools[j]
        current = -1 if self.current_pool is None else int(self.current_pool[i])
        if self.gpus is None or self.eligible is None or self.full is None or self.max_nodes is None:
            return f"placed on {here} at {_money(float(price[j]))}"
        gpus = int(self.gpus[i])
        others = [k for k in np.flatnonzero(self.eligible[i]).tolist() if k != j]
        others.sort(key=lambda k: (float(price[k]), k))
        moved_from = f", moved from {names_of_pools[current]}" if self.moved[i] and current >= 0 else ""
        if not self.fits[i]:
            verb = "moved to" if self.moved[i] else "kept on"
            most = " (the most room left)" if others else ""
            return f"no eligible pool has room for {gpus} GPUs: {verb} {here}{most}, capped at max_nodes {int(self.max_nodes[j])}"
        if gpus == 0:
            if self.moved[i]:
                why = f"its current pool {names_of_pools[current]} is not eligible" if current >= 0 else "it had no pool"
                return f"no replicas to place: assigned to {here}, the cheapest eligible pool ({why})"
            return f"no replicas to place: kept on {here}"
        if not others:
            return f"placed on {here} at {_money(float(price[j]))}, its only eligible pool{moved_from}"
        cheaper = [k for k in others if float(price[k]) < float(price[j]) and not self.full[i, k]]
        if cheaper:  # only the stickiness keeps a workload off a cheaper pool with room
            k = cheaper[0]
            saving = (float(price[j]) - float(price[k])) / float(price[j])
            return (
                f"kept on {here} at {_money(float(price[j]))}: {names_of_pools[k]} at {_money(float(price[k]))} "
                f"is only {saving:.1%} cheaper, within the {self.sticky:.0%} stickiness"
            )
        listed = "; ".join(f"{names_of_pools[k]} ${float(price[k]):.2f}{' full' if self.full[i, k] else ''}" for k in others)
        return f"placed on {here} at {_money(float(price[j]))}, the cheapest eligible pool with room ({listed}){moved_from}"


class _Pools:
    """The greedy's bookkeeping: per pool, GPUs used and replica counts by size."""

    def __init__(self, gpus_per_node: list[int], max_nodes: list[int]) -> None:
        self.node = gpus_per_node
        self.limit = max_nodes
        self.room_gpus = [c * m for c, m in zip(gpus_per_node, max_nodes)]
        self.used = [0] * len(gpus_per_node)
        self.counts: list[dict[int, int]] = [{} for _ in gpus_per_node]
        self.chain = [True] * len(gpus_per_node)
        self.memo: list[dict[tuple[int, int], int]] = [{} for _ in gpus_per_node]  # cleared on add

    def _chain_with(self, j: int, size: int) -> bool:
        counts = self.counts[j]
        if size in counts:
            return self.chain[j]
        return _is_chain(tuple(sorted((*counts, size))), self.node[j])

    def nodes_with(self, j: int, size: int, k: int) -> int:
        """Nodes pool ``j`` needs with ``k`` more replicas of ``size`` GPUs."""
        if self._chain_with(j, size):
            return -(-(self.used[j] + k * size) // self.node[j])
        memo = self.memo[j]
        nodes = memo.get((size, k))
        if nodes is None:  # the same check recurs while the pool is full and nothing is added
            counts = dict(self.counts[j])
            counts[size] = counts.get(size, 0) + k
            nodes = memo[(size, k)] = _pack(list(counts), list(counts.values()), self.node[j])
        return nodes

    def fits(self, j: int, size: int, k: int) -> bool:
        total = self.used[j] + k * size
        if total > self.room_gpus[j]:  # FFD never beats ceil(GPUs / node)
            return False
        # On a chain FFD is exactly ceil(GPUs / node). Otherwise at most one FFD node is half empty
        # or less (a later one's replicas would have fitted in it), so FFD <= ceil(2 GPUs / node).
        if 2 * total <= self.room_gpus[j] or self._chain_with(j, size):
            return True
        return self.nodes_with(j, size, k) <= self.limit[j]

    def room(self, j: int, size: int) -> int:
        """How many replicas of ``size`` GPUs pool ``j`` still has room for."""
        high = max(self.room_gpus[j] - self.used[j], 0) // size
        if self._chain_with(j, size):
            return high
        low = 0  # FFD is not monotone in general, so this is the largest count found by bisection
        while low < high:
            mid = (low + high + 1) // 2
            if self.fits(j, size, mid):
                low = mid
            else:
                high = mid - 1
        return low

    def add(self, j: int, size: int, k: int) -> None:
        counts = self.counts[j]
        if size not in counts:
            self.chain[j] = _is_chain(tuple(sorted((*counts, size))), self.node[j])
            counts[size] = 0
        counts[size] += k
        self.used[j] += k * size
        self.memo[j].clear()


def place(
    replicas: np.ndarray,
    gpus_per_replica: np.ndarray,
    eligible: np.ndarray,
    current_pool: np.ndarray,
    gpus_per_node: np.ndarray,
    max_nodes: np.ndarray,
    price_per_gpu_hour: np.ndarray,
    sticky: float = 0.0,
) -> Placement:
    """Per workload, the cheapest eligible pool with room (see the module docstring for the greedy).

    ``eligible`` is bool ``[n, p]``; a pool whose nodes are smaller than a replica counts as not
    eligible. ``current_pool`` may be -1 for a workload not placed yet. ``sticky`` is the relative
    price advantage of the current pool: 0.05 keeps a workload unless another pool is more than 5%
    cheaper. Deterministic.
    """
    counts = _ints("replicas", replicas)
    sizes = _ints("gpus_per_replica", gpus_per_replica, minimum=1)
    current = _ints("current_pool", current_pool, minimum=-1)
    node = _ints("gpus_per_node", gpus_per_node, minimum=1)
    limit = _ints("max_nodes", max_nodes)
    price = np.asarray(price_per_gpu_hour, dtype=np.float64)
    ok = np.asarray(eligible)
    n, p = len(counts), len(node)
    _shape("gpus_per_replica", sizes, (n,))
    _shape("current_pool", current, (n,))
    _shape("eligible", ok, (n, p))
    _shape("max_nodes", limit, (p,))
    _shape("price_per_gpu_hour", price, (p,))
    if ok.dtype != np.bool_:
        raise ValueError(f"eligible must be a bool array, got dtype {ok.dtype}")
    if p and (not np.all(np.isfinite(price)) or price.min() < 0):
        raise ValueError("price_per_gpu_hour must be finite and >= 0")
    if not 0.0 <= float(sticky) < 1.0:
        raise ValueError(f"sticky must be in [0, 1), got {sticky}")
    if n and current.max() >= p:
        raise ValueError(f"current_pool {current.max()} is out of range for {p} pools")
    ok = ok & (sizes[:, None] <= node[None, :])
    none = ~ok.any(axis=1)
    if none.any():
        i = int(np.argmax(none))
        if np.asarray(eligible)[i].any():
            raise ValueError(f"workload {i} has no eligible pool with nodes of at least {sizes[i]} GPUs")
        raise ValueError(f"workload {i} has no eligible pool")

    need = counts * sizes
    pools = np.arange(p)
    is_current = pools[None, :] == current[:, None]
    cost = np.round(price[None, :] * np.where(is_current, 1.0 - float(sticky), 1.0), 9)
    cost = np.where(ok, cost, np.inf)
    order = np.lexsort((np.broadcast_to(pools, (n, p)), ~is_current, cost), axis=-1)
    n_ok = ok.sum(axis=1)

    chosen = np.full(n, -1, dtype=np.int64)
    fits = np.ones(n, dtype=bool)
    full = np.zeros((n, p), dtype=bool)

    # Nothing to place: the current pool if eligible, else the cheapest eligible one.
    idle = need == 0
    stays = idle & (current >= 0) & ok[np.arange(n), np.maximum(current, 0)]
    chosen[stays] = current[stays]
    cheapest = np.argmin(np.where(ok, price[None, :], np.inf), axis=1)
    chosen[idle & ~stays] = cheapest[idle & ~stays]

    # Single-pool workloads first, then the rest; each group largest first, ties by index.
    sequence = np.lexsort((np.arange(n), -need, n_ok > 1))
    sequence = sequence[~idle[sequence]].tolist()
    state = _Pools(node.tolist(), limit.tolist())
    order_l, n_ok_l = order.tolist(), n_ok.tolist()
    counts_l, sizes_l, current_l, price_l = counts.tolist(), sizes.tolist(), current.tolist(), price.tolist()
    chosen_l, no_room, tried_i, tried_j = chosen.tolist(), [], [], []
    for i in sequence:
        k, size = counts_l[i], sizes_l[i]
        candidates = order_l[i][: n_ok_l[i]]
        for j in candidates:
            if state.fits(j, size, k):
                chosen_l[i] = j
                state.add(j, size, k)
                break
            tried_i.append(i)
            tried_j.append(j)
        else:
            no_room.append(i)
            chosen_l[i] = max(candidates, key=lambda j: (state.room(j, size), j == current_l[i], -price_l[j], -j))
    chosen = np.asarray(chosen_l, dtype=np.int64)
    fits[no_room] = False
    full[tried_i, tried_j] = True

    nodes = np.minimum(pool_nodes(counts, sizes, chosen, node), limit) if n else np.zeros(p, dtype=np.int64)
    return Placement(
        pool=chosen,
        nodes=nodes,
        fits=fits,
        moved=chosen != current,
        gpus=need,
        eligible=ok,
        full=full,
        current_pool=current,
        max_nodes=limit,
        sticky=float(sticky),
    )
