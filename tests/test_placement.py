"""Tests for placement across node pools: FFD node counts and the cheapest-pool-that-fits greedy.

Table-driven scenarios whose names say what should happen, checked against a naive
replica-by-replica first-fit-decreasing reference, plus properties on random inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.placement import Placement, pack_nodes, place, pool_nodes


def ffd_reference(sizes, counts, gpus_per_node: int) -> int:
    """Replica-by-replica first-fit-decreasing: each replica to the first node with room."""
    items = sorted((s for s, c in zip(sizes, counts) for _ in range(c)), reverse=True)
    free: list[int] = []
    for item in items:
        for b, left in enumerate(free):
            if left >= item:
                free[b] -= item
                break
        else:
            free.append(gpus_per_node - item)
    return len(free)


# --------------------------------------------------------------------------------------------
# pack_nodes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackCase:
    name: str
    sizes: list[int]
    counts: list[int]
    gpus_per_node: int
    nodes: int


PACK_CASES = [
    PackCase("one-GPU replicas on 8-GPU nodes: 17 replicas need 3 nodes", [1], [17], 8, 3),
    PackCase("3-GPU replicas never span nodes: 5 replicas need 3 nodes on 8-GPU nodes", [3], [5], 8, 3),
    PackCase("mixed sizes pack first-fit-decreasing: one 4, six 3s and two 1s need 4 nodes, not 3", [4, 3, 1], [1, 6, 2], 8, 4),
    PackCase("mixed sizes pack first-fit-decreasing: three each of 4, 3 and 1 fill 3 nodes", [4, 3, 1], [3, 3, 3], 8, 3),
    PackCase("powers of two fill every node but the last: 1, 2, 4 and 8-GPU replicas", [1, 2, 4, 8], [5, 3, 3, 1], 8, 4),
    PackCase("sizes need not be sorted or distinct", [1, 4, 1], [2, 1, 3], 8, 2),
    PackCase("sizes that each divide the node but not each other can strand GPUs", [15, 10, 6], [1, 3, 2], 30, 3),
    PackCase("zero replicas need no nodes", [4, 2], [0, 0], 8, 0),
    PackCase("no sizes at all need no nodes", [], [], 8, 0),
    PackCase("whole-node replicas take a node each", [8], [7], 8, 7),
    PackCase("10,000 3-GPU replicas go two to an 8-GPU node", [3], [10_000], 8, 5_000),
    PackCase("10,000 each of 5 and 3-GPU replicas pair up exactly", [5, 3], [10_000, 10_000], 8, 10_000),
    PackCase("10,000 replicas of 4, 2 and 1 GPUs pack perfectly", [4, 2, 1], [3_000, 3_000, 4_000], 8, 2_750),
]


@pytest.mark.parametrize("case", PACK_CASES, ids=[c.name for c in PACK_CASES])
def test_pack_nodes_scenarios(case: PackCase) -> None:
    assert pack_nodes(np.array(case.sizes, dtype=np.int64), np.array(case.counts), case.gpus_per_node) == case.nodes
    if sum(case.counts) <= 200:
        assert case.nodes == ffd_reference(case.sizes, case.counts, case.gpus_per_node)


def test_pack_nodes_sizes_dividing_the_node_are_not_enough_for_the_ceil_answer() -> None:
    # 15+6+6 and 10+10+10 would fit two 30-GPU nodes; FFD opens three, and pack_nodes is FFD.
    assert pack_nodes(np.array([15, 10, 6]), np.array([1, 3, 2]), 30) > math.ceil(57 / 30)


@pytest.mark.parametrize(
    "sizes, counts, gpus_per_node, phrase",
    [
        ([16], [1], 8, "16 GPUs cannot fit on a 8-GPU node"),
        ([0], [1], 8, "sizes must be >= 1"),
        ([1, 2], [1], 8, "counts has shape (1,), expected (2,)"),
        ([1], [-1], 8, "counts must be >= 0"),
        ([1], [1.5], 8, "whole numbers"),
        ([[1]], [[1]], 8, "sizes must be 1-D"),
        ([1], [1], 0, "gpus_per_node"),
    ],
)
def test_pack_nodes_rejects_bad_input_in_one_line(sizes, counts, gpus_per_node, phrase) -> None:
    with pytest.raises(ValueError) as error:
        pack_nodes(np.array(sizes), np.array(counts), gpus_per_node)
    assert phrase in str(error.value) and "\n" not in str(error.value)


size_lists = st.lists(st.integers(1, 8), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_pack_nodes_matches_replica_by_replica_ffd(data) -> None:
    gpus_per_node = data.draw(st.sampled_from([4, 6, 8, 10, 16]))
    sizes = data.draw(st.lists(st.integers(1, gpus_per_node), min_size=1, max_size=4))
    counts = data.draw(st.lists(st.integers(0, 25), min_size=len(sizes), max_size=len(sizes)))
    nodes = pack_nodes(np.array(sizes), np.array(counts), gpus_per_node)
    assert nodes == ffd_reference(sizes, counts, gpus_per_node)
    assert nodes >= math.ceil(sum(s * c for s, c in zip(sizes, counts)) / gpus_per_node)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([1, 2, 4, 8]), min_size=1, max_size=4), st.data())
def test_pack_nodes_on_powers_of_two_is_exactly_the_gpu_ceiling(sizes, data) -> None:
    counts = data.draw(st.lists(st.integers(0, 1000), min_size=len(sizes), max_size=len(sizes)))
    total = sum(s * c for s, c in zip(sizes, counts))
    assert pack_nodes(np.array(sizes), np.array(counts), 8) == -(-total // 8)


# --------------------------------------------------------------------------------------------
# pool_nodes
# --------------------------------------------------------------------------------------------


def test_pool_nodes_packs_each_pool_on_its_own() -> None:
    replicas = np.array([17, 5, 2, 0])
    gpus = np.array([1, 3, 4, 2])
    pool = np.array([0, 1, 1, 2])
    nodes = pool_nodes(replicas, gpus, pool, np.array([8, 8, 8]))
    # pool 1: 4,4,3,3,3,3,3 -> [4,4] [3,3] [3,3] [3] on 8-GPU nodes
    assert nodes.tolist() == [3, 4, 0]
    assert nodes[1] == ffd_reference([3, 4], [5, 2], 8)


def test_pool_nodes_takes_a_count_per_future_step() -> None:
    replicas = np.array([[17, 8, 0], [5, 1, 3], [2, 0, 1]])
    gpus, pool, node = np.array([1, 3, 4]), np.array([0, 1, 1]), np.array([8, 8])
    nodes = pool_nodes(replicas, gpus, pool, node)
    assert nodes.shape == (2, 3)
    for t in range(3):
        assert nodes[:, t].tolist() == pool_nodes(replicas[:, t], gpus, pool, node).tolist()


@pytest.mark.parametrize(
    "args, phrase",
    [
        (([1], [16], [0], [8]), "replica of 16 GPUs cannot fit on a 8-GPU node of pool 0"),
        (([1, 2], [1], [0], [8]), "replicas has 2 rows, expected 1"),
        (([1], [1], [3], [8]), "pool index 3 is out of range for 1 pools"),
        (([[[1]]], [1], [0], [8]), "replicas must be 1-D or 2-D"),
    ],
)
def test_pool_nodes_rejects_bad_input_in_one_line(args, phrase) -> None:
    with pytest.raises(ValueError) as error:
        pool_nodes(*(np.array(a) for a in args))
    assert phrase in str(error.value) and "\n" not in str(error.value)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_pool_nodes_equals_pack_nodes_per_pool(data) -> None:
    n = data.draw(st.integers(0, 12))
    p = data.draw(st.integers(1, 4))
    node = np.array(data.draw(st.lists(st.sampled_from([4, 8, 10]), min_size=p, max_size=p)))
    pool = np.array(data.draw(st.lists(st.integers(0, p - 1), min_size=n, max_size=n)), dtype=np.int64)
    gpus = np.array([data.draw(st.integers(1, int(node[j]))) for j in pool], dtype=np.int64)
    replicas = np.array(data.draw(st.lists(st.integers(0, 20), min_size=n * 2, max_size=n * 2)), dtype=np.int64).reshape(n, 2)
    nodes = pool_nodes(replicas, gpus, pool, node)
    assert nodes.shape == (p, 2)
    for j in range(p):
        for t in range(2):
            members = pool == j
            assert nodes[j, t] == pack_nodes(gpus[members], replicas[members, t], int(node[j]))


# --------------------------------------------------------------------------------------------
# place
# --------------------------------------------------------------------------------------------

NAMES = ("a100", "h100", "l4")


@dataclass(frozen=True)
class PlaceCase:
    """Workloads as columns, pools as columns; ``eligible`` rows are per workload."""

    name: str
    replicas: list[int]
    gpus_per_replica: list[int]
    eligible: list[list[bool]]
    current: list[int]
    price: list[float]
    max_nodes: list[int]
    pool: list[int]
    fits: list[bool] = field(default_factory=list)
    gpus_per_node: list[int] = field(default_factory=list)
    sticky: float = 0.0

    def run(self) -> Placement:
        p = len(self.price)
        return place(
            np.array(self.replicas),
            np.array(self.gpus_per_replica),
            np.array(self.eligible, dtype=bool),
            np.array(self.current),
            np.array(self.gpus_per_node or [8] * p),
            np.array(self.max_nodes),
            np.array(self.price),
            self.sticky,
        )


T, F = True, False
PLACE_CASES = [
    PlaceCase("cheapest eligible pool wins", [4], [1], [[T, T]], [1], [1.80, 2.50], [8, 8], [0]),
    PlaceCase("a full pool spills to the next cheapest", [8, 8, 8], [2, 2, 2], [[T, T, T]] * 3, [0, 0, 0],
              [1.80, 2.50, 2.00], [2, 8, 8], [0, 2, 2]),
    PlaceCase("the largest workload chooses first, so the small one spills", [2, 12], [4, 4], [[T, T]] * 2, [0, 0],
              [1.80, 2.50], [6, 8], [1, 0]),
    PlaceCase("ineligible pools are never used, however cheap", [4, 4], [1, 1], [[F, T, T], [F, F, T]], [0, 0],
              [1.00, 2.50, 3.00], [8, 8, 8], [1, 2]),
    PlaceCase("a pool whose nodes are smaller than a replica is not eligible", [1], [8], [[T, T]], [0], [1.00, 2.00], [8, 8], [1],
              gpus_per_node=[4, 8]),
    PlaceCase("a workload with a single eligible pool goes there at any price", [2], [1], [[F, T]], [0], [1.00, 9.00], [8, 8], [1]),
    PlaceCase("single-pool workloads claim their room before flexible ones choose", [8, 4], [4, 4], [[T, T], [T, F]], [0, 0],
              [1.00, 2.00], [4, 8], [1, 0]),
    PlaceCase("sticky keeps a workload where it is unless the other pool is more than 5% cheaper: 4% stays", [4], [1], [[T, T]], [1],
              [2.40, 2.50], [8, 8], [1], sticky=0.05),
    PlaceCase("sticky keeps a workload where it is unless the other pool is more than 5% cheaper: 6% moves", [4], [1], [[T, T]], [1],
              [2.35, 2.50], [8, 8], [0], sticky=0.05),
    PlaceCase("sticky keeps a workload where it is unless the other pool is more than 5% cheaper: exactly 5% stays", [4], [1],
              [[T, T]], [1], [2.375, 2.50], [8, 8], [1], sticky=0.05),
    PlaceCase("without stickiness a cent cheaper is enough to move", [4], [1], [[T, T]], [1], [2.49, 2.50], [8, 8], [0]),
    PlaceCase("equal prices keep the current pool", [4], [1], [[T, T, T]], [2], [2.0, 2.0, 2.0], [8, 8, 8], [2]),
    PlaceCase("equal prices and no current pool go to the lowest index", [4], [1], [[F, T, T]], [-1], [2.0, 2.0, 2.0], [8, 8, 8], [1]),
    PlaceCase("nothing fits -> fits False and placed where most room was left", [2, 10], [8, 8], [[T, T]] * 2, [0, 0],
              [1.00, 2.00], [4, 6], [0, 1], fits=[T, F]),
    PlaceCase("nothing fits and equal room -> kept on the current pool", [20], [8], [[T, T]], [1], [1.00, 2.00], [4, 4], [1],
              fits=[F]),
    PlaceCase("a workload that does not fit takes no room from the ones after it", [10, 3], [8, 8], [[T, T]] * 2, [0, 0],
              [1.00, 2.00], [4, 4], [0, 0], fits=[F, T]),
    PlaceCase("zero replicas stay on their current pool when it is eligible", [0], [1], [[T, T]], [1], [1.00, 2.00], [8, 8], [1]),
    PlaceCase("zero replicas on an ineligible pool go to the cheapest eligible one", [0], [1], [[F, T, T]], [0], [1.0, 3.0, 2.0],
              [8, 8, 8], [2]),
    PlaceCase("packing, not GPU totals, decides room: five 3-GPU replicas need 3 nodes", [5], [3], [[T, T]], [0], [1.00, 2.00],
              [2, 8], [1]),
]


@pytest.mark.parametrize("case", PLACE_CASES, ids=[c.name for c in PLACE_CASES])
def test_place_scenarios(case: PlaceCase) -> None:
    placement = case.run()
    assert placement.pool.tolist() == case.pool
    assert placement.fits.tolist() == (case.fits or [True] * len(case.replicas))
    assert placement.moved.tolist() == [c != p for c, p in zip(case.current, case.pool)]
    assert (placement.nodes <= np.array(case.max_nodes)).all()


def test_place_reports_nodes_per_pool_capped_at_max_nodes() -> None:
    placement = place(np.array([2, 10]), np.array([8, 8]), np.ones((2, 2), bool), np.array([0, 0]), np.array([8, 8]),
                      np.array([4, 6]), np.array([1.0, 2.0]))
    assert placement.nodes.tolist() == [2, 6]  # pool 1 would need 10, capped at 6


def test_place_handles_no_workloads() -> None:
    placement = place(np.zeros(0, int), np.zeros(0, int), np.zeros((0, 2), bool), np.zeros(0, int), np.array([8, 8]),
                      np.array([4, 4]), np.array([1.0, 2.0]))
    assert placement.pool.shape == (0,) and placement.nodes.tolist() == [0, 0]


@pytest.mark.parametrize(
    "change, phrase",
    [
        (dict(eligible=np.array([[True, True], [False, False]])), "workload 1 has no eligible pool"),
        (dict(gpus_per_replica=np.array([1, 16])), "workload 1 has no eligible pool with nodes of at least 16 GPUs"),
        (dict(eligible=np.ones((2, 3), bool)), "eligible has shape (2, 3), expected (2, 2)"),
        (dict(eligible=np.ones((2, 2), int)), "eligible must be a bool array"),
        (dict(current_pool=np.array([0, 2])), "current_pool 2 is out of range for 2 pools"),
        (dict(price_per_gpu_hour=np.array([1.0])), "price_per_gpu_hour has shape (1,), expected (2,)"),
        (dict(max_nodes=np.array([4, -1])), "max_nodes must be >= 0"),
        (dict(replicas=np.array([1, -1])), "replicas must be >= 0"),
        (dict(sticky=1.5), "sticky must be in [0, 1)"),
    ],
)
def test_place_rejects_bad_input_in_one_line(change, phrase) -> None:
    args = dict(replicas=np.array([1, 1]), gpus_per_replica=np.array([1, 1]), eligible=np.ones((2, 2), bool),
                current_pool=np.array([0, 0]), gpus_per_node=np.array([8, 8]), max_nodes=np.array([4, 4]),
                price_per_gpu_hour=np.array([1.0, 2.0]))
    args.update(change)
    with pytest.raises(ValueError) as error:
        place(**args)
    assert phrase in str(error.value) and "\n" not in str(error.value)


@st.composite
def clusters(draw, max_n: int = 25, max_p: int = 4):
    n = draw(st.integers(1, max_n))
    p = draw(st.integers(1, max_p))
    node = np.array(draw(st.lists(st.sampled_from([4, 8]), min_size=p, max_size=p)))
    gpus = np.array(draw(st.lists(st.sampled_from([1, 2, 3, 4]), min_size=n, max_size=n)))
    eligible = np.array(draw(st.lists(st.lists(st.booleans(), min_size=p, max_size=p), min_size=n, max_size=n)), dtype=bool)
    eligible[np.arange(n), draw(st.lists(st.integers(0, p - 1), min_size=n, max_size=n))] = True
    eligible[:, np.argmax(node)] = True  # every workload has a pool with nodes large enough
    return dict(
        replicas=np.array(draw(st.lists(st.integers(0, 12), min_size=n, max_size=n))),
        gpus_per_replica=gpus,
        eligible=eligible,
        current_pool=np.array(draw(st.lists(st.integers(-1, p - 1), min_size=n, max_size=n))),
        gpus_per_node=node,
        max_nodes=np.array(draw(st.lists(st.integers(0, 12), min_size=p, max_size=p))),
        price_per_gpu_hour=np.array(draw(st.lists(st.sampled_from([1.0, 1.5, 2.0, 2.5]), min_size=p, max_size=p))),
        sticky=draw(st.sampled_from([0.0, 0.05, 0.3])),
    )


@settings(max_examples=200, deadline=None)
@given(clusters())
def test_pool_limits_respected_no_pool_exceeds_max_nodes_when_everything_fits(cluster) -> None:
    placement = place(**cluster)
    usable = cluster["eligible"] & (cluster["gpus_per_replica"][:, None] <= cluster["gpus_per_node"][None, :])
    assert usable[np.arange(len(placement.pool)), placement.pool].all(), "placed on an ineligible pool"
    # Workloads marked as fitting fit together, whether or not the others do.
    fitting = np.where(placement.fits, cluster["replicas"], 0)
    nodes = pool_nodes(fitting, cluster["gpus_per_replica"], placement.pool, cluster["gpus_per_node"])
    assert (nodes <= cluster["max_nodes"]).all()
    if placement.fits.all():
        assert placement.nodes.tolist() == nodes.tolist()
    assert (placement.nodes <= cluster["max_nodes"]).all()
    assert placement.moved.tolist() == (placement.pool != cluster["current_pool"]).tolist()


@settings(max_examples=100, deadline=None)
@given(clusters())
def test_a_workload_that_fits_had_no_cheaper_pool_with_room_unless_sticky(cluster) -> None:
    placement = place(**cluster)
    price, full = cluster["price_per_gpu_hour"], placement.full
    for i in np.flatnonzero(placement.fits & (cluster["replicas"] > 0)):
        j = placement.pool[i]
        cheaper = placement.eligible[i] & ~full[i] & (price < price[j])
        if cheaper.any():  # only the stickiness may keep a workload off a cheaper pool with room
            assert j == cluster["current_pool"][i]
            assert price[cheaper].min() >= price[j] * (1 - cluster["sticky"]) - 1e-9


@settings(max_examples=50, deadline=None)
@given(clusters())
def test_deterministic_output_for_the_same_input(cluster) -> None:
    first, second = place(**cluster), place(**{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in cluster.items()})
    for name in ("pool", "nodes", "fits", "moved", "full"):
        assert np.array_equal(getattr(first, name), getattr(second, name)), name


def test_a_thousand_workloads_on_ten_pools_place_consistently() -> None:
    rng = np.random.default_rng(7)
    n, p = 1000, 10
    eligible = rng.random((n, p)) < 0.4
    eligible[np.arange(n), rng.integers(0, p, n)] = True
    args = dict(replicas=rng.integers(0, 20, n), gpus_per_replica=rng.choice([1, 2, 3, 4, 8], n), eligible=eligible,
                current_pool=rng.integers(0, p, n), gpus_per_node=np.full(p, 8), max_nodes=np.full(p, 400),
                price_per_gpu_hour=rng.uniform(1.0, 4.0, p), sticky=0.05)
    placement = place(**args)
    fitting = np.where(placement.fits, args["replicas"], 0)
    assert (pool_nodes(fitting, args["gpus_per_replica"], placement.pool, args["gpus_per_node"]) <= 400).all()
    assert eligible[np.arange(n), placement.pool].all()


# --------------------------------------------------------------------------------------------
# explain
# --------------------------------------------------------------------------------------------


def explain(case: PlaceCase, i: int = 0, names=NAMES) -> str:
    return case.run().explain(i, names, np.array(case.price))


def test_explain_names_the_cheapest_pool_with_room_and_the_alternatives() -> None:
    case = PlaceCase("", [4], [1], [[T, T]], [1], [1.80, 2.50], [8, 8], [0])
    assert explain(case) == "placed on a100 at $1.80/GPU-h, the cheapest eligible pool with room (h100 $2.50), moved from h100"


def test_explain_says_which_cheaper_pools_were_full() -> None:
    case = PlaceCase("", [8, 8], [2, 2], [[T, T, T]] * 2, [1, 1], [1.80, 2.50, 2.00], [2, 8, 8], [0, 2])
    assert explain(case, 1) == "placed on l4 at $2.00/GPU-h, the cheapest eligible pool with room (a100 $1.80 full; h100 $2.50), moved from h100"


def test_explain_says_when_stickiness_kept_a_workload() -> None:
    case = PlaceCase("", [4], [1], [[T, T]], [1], [2.40, 2.50], [8, 8], [1], sticky=0.05)
    assert explain(case) == "kept on h100 at $2.50/GPU-h: a100 at $2.40/GPU-h is only 4.0% cheaper, within the 5% stickiness"


def test_explain_says_when_nothing_fits() -> None:
    case = PlaceCase("", [3], [4], [[F, T]], [1], [1.80, 2.50], [8, 1], [1])
    assert explain(case) == "no eligible pool has room for 12 GPUs: kept on h100, capped at max_nodes 1"
    case = PlaceCase("", [2, 10], [8, 8], [[T, T]] * 2, [0, 0], [1.00, 2.00], [4, 6], [0, 1])
    assert explain(case, 1) == "no eligible pool has room for 80 GPUs: moved to h100 (the most room left), capped at max_nodes 6"


def test_explain_covers_single_pools_and_idle_workloads() -> None:
    case = PlaceCase("", [2], [1], [[F, T]], [1], [1.00, 9.00], [8, 8], [1])
    assert explain(case) == "placed on h100 at $9.00/GPU-h, its only eligible pool"
    case = PlaceCase("", [0], [1], [[T, T]], [1], [1.00, 2.00], [8, 8], [1])
    assert explain(case) == "no replicas to place: kept on h100"
    case = PlaceCase("", [0], [1], [[F, T, T]], [0], [1.0, 3.0, 2.0], [8, 8, 8], [2])
    assert explain(case) == "no replicas to place: assigned to l4, the cheapest eligible pool (its current pool a100 is not eligible)"
