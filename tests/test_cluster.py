"""Tests for simulations.cluster: SimulatedCluster's step semantics, its invariants, and LatencyModel."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.leadtime import lead_steps
from policies.types import PoolTable, WorkloadTable
from simulations.cluster import LatencyModel, SimulatedCluster, StepOutcome
from simulations.config import config_from_mapping
from simulations.replay import tables

STEP = 60.0

# --------------------------------------------------------------------------------------------
# Building clusters
# --------------------------------------------------------------------------------------------


def make_cluster(workloads: list[dict], pools: list[dict] | None = None, *, step: float = STEP,
                 replicas=None, nodes=None) -> SimulatedCluster:
    """A cluster from per-workload and per-pool dicts of the fields that matter.

    Workload keys: pool, gpus_per_replica, capacity_rps, startup_seconds, min_replicas,
    max_replicas, base_p95, slo_p95, exponent, factor, timeout. Pool keys: gpus_per_node,
    provisioning_seconds, min_nodes, max_nodes, idle_removal_seconds.
    """
    pools = pools or [{}]
    w = lambda key, default, dtype=np.float64: np.array([x.get(key, default) for x in workloads], dtype=dtype)  # noqa: E731
    p = lambda key, default, dtype=np.float64: np.array([x.get(key, default) for x in pools], dtype=dtype)  # noqa: E731
    n, k = len(workloads), len(pools)
    wl = WorkloadTable(
        names=tuple(f"w{i}" for i in range(n)),
        pool=w("pool", 0, np.int64),
        replicas=np.zeros(n, np.int64), ready=np.zeros(n, np.int64), starting=np.zeros(n, np.int64),
        pending=np.zeros(n, np.int64),
        min_replicas=w("min_replicas", 0, np.int64), max_replicas=w("max_replicas", 1000, np.int64),
        gpus_per_replica=w("gpus_per_replica", 1, np.int64),
        capacity_rps=w("capacity_rps", 4.0), startup_seconds=w("startup_seconds", 180.0),
        demand_rps=np.full(n, np.nan),
    )
    pt = PoolTable(
        names=tuple(f"p{j}" for j in range(k)),
        gpus_per_node=p("gpus_per_node", 8, np.int64),
        nodes=np.zeros(k, np.int64), provisioning=np.zeros(k, np.int64),
        min_nodes=p("min_nodes", 0, np.int64), max_nodes=p("max_nodes", 64, np.int64),
        provisioning_seconds=p("provisioning_seconds", 360.0), price_per_gpu_hour=p("price", 2.5),
    )
    latency = LatencyModel(
        base_p95=w("base_p95", 0.8), slo_p95=w("slo_p95", 2.0), exponent=w("exponent", 3.0),
        max_throughput_factor=w("factor", 1.25), timeout=w("timeout", 60.0),
    )
    idle = p("idle_removal_seconds", 600.0)
    replicas = np.zeros(n, np.int64) if replicas is None else np.asarray(replicas, np.int64)
    nodes = np.zeros(k, np.int64) if nodes is None else np.asarray(nodes, np.int64)
    return SimulatedCluster(wl, pt, latency, step, idle, replicas, nodes)


def step(cluster: SimulatedCluster, desired, floor=None, demand=None) -> StepOutcome:
    n, k = len(cluster.wl.names), len(cluster.pools.names)
    desired = np.asarray(desired if np.ndim(desired) else [desired] * n, dtype=np.int64)
    floor = np.zeros(k, np.int64) if floor is None else np.asarray(floor if np.ndim(floor) else [floor] * k, np.int64)
    demand = np.zeros(n) if demand is None else np.asarray(demand if np.ndim(demand) else [demand] * n, float)
    return cluster.step(desired, floor, demand)


def existing_nodes(cluster: SimulatedCluster) -> np.ndarray:
    return cluster.nodes_ready + cluster.provisioning


def bound_gpus_per_pool(cluster: SimulatedCluster) -> np.ndarray:
    bound = (cluster.ready + cluster.starting) * cluster.gpr
    return np.bincount(cluster.pool_of, weights=bound, minlength=len(cluster.gpn)).astype(np.int64)


def test_make_cluster_helper_matches_the_tables_replay_builds() -> None:
    """The hand-built tables agree with what simulations.replay.tables makes from a config."""
    config = config_from_mapping({
        "node_pools": [{"name": "gpu", "gpus_per_node": 4, "provisioning_seconds": 120, "idle_removal_seconds": 300}],
        "workloads": [{"name": "w0", "gpus_per_replica": 2, "capacity_rps": 3.0, "startup_seconds": 60}],
    })
    tb = tables(config, ["w0"])
    wl, pools, latency, idle = tb.cluster, tb.pools_true, tb.latency, tb.idle
    ours = make_cluster([dict(gpus_per_replica=2, capacity_rps=3.0, startup_seconds=60, min_replicas=1, max_replicas=512)],
                        [dict(gpus_per_node=4, provisioning_seconds=120, idle_removal_seconds=300)])
    theirs = SimulatedCluster(wl, pools, latency, STEP, idle, np.zeros(1), np.zeros(1))
    for attr in ("startup_steps", "provision_steps", "idle_steps", "gpr", "gpn"):
        assert np.array_equal(getattr(ours, attr), getattr(theirs, attr)), attr
    assert (ours.startup_steps.tolist(), ours.provision_steps.tolist(), ours.idle_steps.tolist()) == ([1], [2], [5])


# --------------------------------------------------------------------------------------------
# Scenarios: lead times
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("startup_seconds, steps", [(180.0, 3), (150.0, 3), (60.0, 1), (0.0, 0)])
def test_a_replica_with_free_gpus_is_ready_exactly_startup_later(startup_seconds, steps) -> None:
    assert lead_steps(startup_seconds, STEP) == steps
    cluster = make_cluster([dict(startup_seconds=startup_seconds)], [dict(gpus_per_node=8)], replicas=[1], nodes=[1])
    ready_after = []
    for t in range(6):
        out = step(cluster, 2)
        ready_after.append(int(cluster.ready[0]))
        assert int(out.node_actions[0]) == 0  # the node had room: no new node
        assert int(cluster.ready[0] + cluster.starting[0] + cluster.pending[0]) == 2
        assert int(cluster.pending[0]) == 0  # bound at once
    # Created in step 0 (time 0), serving from step `steps` (time steps * 60 >= startup_seconds).
    assert ready_after == [1] * steps + [2] * (6 - steps) if steps else ready_after == [2] * 6


def test_a_replica_that_needs_a_new_node_is_ready_after_provisioning_plus_startup() -> None:
    # One GPU per node: the second replica needs a second node.
    # Provisioning 360 s = 6 steps, startup 180 s = 3 steps: serving from step 9 (540 s).
    cluster = make_cluster([dict(startup_seconds=180.0)], [dict(gpus_per_node=1, provisioning_seconds=360.0)],
                           replicas=[1], nodes=[1])
    rows = []
    for t in range(12):
        out = step(cluster, 2)
        rows.append((int(cluster.nodes_ready[0]), int(cluster.provisioning[0]), int(cluster.pending[0]),
                     int(cluster.starting[0]), int(cluster.ready[0])))
        if t == 0:
            assert out.node_actions.tolist() == [1]
        else:
            assert out.node_actions.tolist() == [0]
    assert rows[:6] == [(1, 1, 1, 0, 1)] * 6  # node provisioning, replica pending
    assert rows[6:9] == [(2, 0, 0, 1, 1)] * 3  # node ready at step 6, replica binds and starts
    assert rows[9:] == [(2, 0, 0, 0, 2)] * 3  # ready at step 9 = (360 + 180) / 60


def test_a_node_floor_ahead_of_time_makes_a_later_replica_start_at_once() -> None:
    cluster = make_cluster([dict(startup_seconds=180.0)], [dict(gpus_per_node=1, provisioning_seconds=360.0)],
                           replicas=[1], nodes=[1])
    for t in range(6):
        step(cluster, 1, floor=2)
        assert (int(cluster.nodes_ready[0]), int(cluster.provisioning[0])) == (1, 1)
    step(cluster, 2, floor=2)  # step 6: the node requested at step 0 is ready; the replica binds on it
    assert (int(cluster.nodes_ready[0]), int(cluster.provisioning[0])) == (2, 0)
    assert (int(cluster.starting[0]), int(cluster.pending[0])) == (1, 0)
    for _ in range(2):
        step(cluster, 2, floor=2)
        assert int(cluster.ready[0]) == 1
    step(cluster, 2, floor=2)  # step 9
    assert int(cluster.ready[0]) == 2


def test_provisioning_zero_gives_a_node_in_the_same_step() -> None:
    cluster = make_cluster([dict(startup_seconds=0.0)], [dict(gpus_per_node=2, provisioning_seconds=0.0)], replicas=[0], nodes=[0])
    out = step(cluster, 3, demand=1.0)
    assert cluster.nodes_ready.tolist() == [2] and cluster.provisioning.tolist() == [0]
    assert cluster.ready.tolist() == [3]
    assert out.served.tolist() == [60.0]


# --------------------------------------------------------------------------------------------
# Scenarios: removing replicas and nodes
# --------------------------------------------------------------------------------------------


def test_scale_down_removes_pending_then_newest_starting_then_ready() -> None:
    # 2 GPUs on the one node; startup 3 steps; provisioning long so pending stays pending.
    cluster = make_cluster([dict(startup_seconds=180.0)], [dict(gpus_per_node=1, max_nodes=3, provisioning_seconds=6000.0)],
                           replicas=[1], nodes=[3])
    step(cluster, 2)  # t=0: one starts (ready at 3)
    step(cluster, 3)  # t=1: another starts (ready at 4)
    step(cluster, 4)  # t=2: no GPU left: pending (a node is requested, far away)
    assert (int(cluster.ready[0]), int(cluster.starting[0]), int(cluster.pending[0])) == (1, 2, 1)
    step(cluster, 3)  # t=3: the pending one goes; the first starter matures
    assert (int(cluster.ready[0]), int(cluster.starting[0]), int(cluster.pending[0])) == (2, 1, 0)
    step(cluster, 2)  # t=4: the newest starter (due at 4) matures first, then one ready goes
    assert (int(cluster.ready[0]), int(cluster.starting[0]), int(cluster.pending[0])) == (2, 0, 0)
    step(cluster, 1)
    assert (int(cluster.ready[0]), int(cluster.starting[0]), int(cluster.pending[0])) == (1, 0, 0)


def test_scale_down_takes_the_newest_starting_replica_first() -> None:
    cluster = make_cluster([dict(startup_seconds=300.0)], [dict(gpus_per_node=8)], replicas=[0], nodes=[1])
    step(cluster, 1)  # t=0: A, ready at 5
    step(cluster, 1)
    step(cluster, 2)  # t=2: B, ready at 7
    step(cluster, 1)  # t=3: B (newest) goes, A stays
    readiness = []
    for _ in range(5):
        step(cluster, 1)
        readiness.append(int(cluster.ready[0]))
    assert readiness == [0, 1, 1, 1, 1]  # A is ready at step 5, not B at 7


def test_an_unneeded_node_is_removed_only_after_idle_removal_seconds() -> None:
    # 1 GPU per node; idle 600 s = 10 steps. The second node is unneeded from step 5.
    cluster = make_cluster([dict(startup_seconds=0.0)],
                           [dict(gpus_per_node=1, provisioning_seconds=0.0, idle_removal_seconds=600.0)],
                           replicas=[2], nodes=[2])
    nodes, billed, actions = [], [], []
    for t in range(20):
        out = step(cluster, 2 if t < 5 else 1)
        nodes.append(int(existing_nodes(cluster)[0]))
        billed.append(int(cluster.billed_gpus()[0]))
        actions.append(int(out.node_actions[0]))
    # Unneeded at step 5 (300 s); removed at step 15 (900 s), 600 s later.
    assert nodes == [2] * 15 + [1] * 5
    assert billed == nodes
    assert actions == [0] * 15 + [1] + [0] * 4


def test_a_node_needed_again_within_the_idle_window_is_reused_not_reprovisioned() -> None:
    cluster = make_cluster([dict(startup_seconds=0.0)],
                           [dict(gpus_per_node=1, provisioning_seconds=360.0, idle_removal_seconds=600.0)],
                           replicas=[2], nodes=[2])
    for t in range(8):
        step(cluster, 1)
    out = step(cluster, 2)  # within 10 steps of the drop: the node is still there
    assert out.node_actions.tolist() == [0]
    assert cluster.ready.tolist() == [2] and cluster.provisioning.tolist() == [0]


def test_idle_removal_zero_removes_the_node_in_the_same_step() -> None:
    cluster = make_cluster([dict(startup_seconds=0.0)],
                           [dict(gpus_per_node=1, provisioning_seconds=0.0, idle_removal_seconds=0.0)],
                           replicas=[3], nodes=[3])
    out = step(cluster, 1)
    assert existing_nodes(cluster).tolist() == [1]
    assert out.node_actions.tolist() == [2]


def test_provisioning_nodes_are_removed_before_ready_ones() -> None:
    cluster = make_cluster([dict(startup_seconds=0.0)],
                           [dict(gpus_per_node=1, provisioning_seconds=600.0, idle_removal_seconds=0.0)],
                           replicas=[1], nodes=[1])
    step(cluster, 3)
    assert cluster.nodes_ready.tolist() == [1] and cluster.provisioning.tolist() == [2]
    step(cluster, 2)
    assert cluster.nodes_ready.tolist() == [1] and cluster.provisioning.tolist() == [1]
    step(cluster, 1)
    assert cluster.nodes_ready.tolist() == [1] and cluster.provisioning.tolist() == [0]
    assert cluster.ready.tolist() == [1]


def test_min_and_max_nodes_bound_the_pool() -> None:
    cluster = make_cluster([dict(startup_seconds=0.0)],
                           [dict(gpus_per_node=1, provisioning_seconds=0.0, idle_removal_seconds=0.0, min_nodes=2, max_nodes=4)],
                           replicas=[0], nodes=[0])
    step(cluster, 0)
    assert existing_nodes(cluster).tolist() == [2]  # raised to min_nodes with nothing to run
    step(cluster, 9, floor=7)
    assert existing_nodes(cluster).tolist() == [4]  # capped at max_nodes
    assert cluster.ready.tolist() == [4] and cluster.pending.tolist() == [5]


# --------------------------------------------------------------------------------------------
# Binding GPUs
# --------------------------------------------------------------------------------------------


def test_binding_serves_workloads_of_a_pool_in_config_order() -> None:
    cluster = make_cluster([dict(startup_seconds=0.0), dict(startup_seconds=0.0)],
                           [dict(gpus_per_node=4, provisioning_seconds=6000.0)], replicas=[0, 0], nodes=[1])
    step(cluster, [3, 3])
    assert cluster.ready.tolist() == [3, 1]
    assert cluster.pending.tolist() == [0, 2]


def test_binding_is_per_pool() -> None:
    cluster = make_cluster([dict(pool=0, startup_seconds=0.0), dict(pool=1, startup_seconds=0.0), dict(pool=0, startup_seconds=0.0)],
                           [dict(gpus_per_node=2, provisioning_seconds=6000.0), dict(gpus_per_node=8, provisioning_seconds=6000.0)],
                           replicas=[0, 0, 0], nodes=[1, 1])
    step(cluster, [1, 5, 3])
    assert cluster.ready.tolist() == [1, 5, 1]
    assert cluster.pending.tolist() == [0, 0, 2]
    assert bound_gpus_per_pool(cluster).tolist() == [2, 5]


def test_an_unfitting_replica_does_not_keep_later_workloads_from_free_gpus() -> None:
    # One 4-GPU node with 1 GPU used by w1. w0 wants 1 replica of 4 GPUs (does not fit);
    # w1 wants one more 1-GPU replica, which fits in the 3 free GPUs.
    cluster = make_cluster([dict(gpus_per_replica=4, startup_seconds=0.0), dict(gpus_per_replica=1, startup_seconds=0.0)],
                           [dict(gpus_per_node=4, provisioning_seconds=6000.0)], replicas=[0, 1], nodes=[1])
    step(cluster, [1, 2])
    assert cluster.pending.tolist()[0] == 1  # w0 waits for a node: right
    assert cluster.ready.tolist() == [0, 2]


# --------------------------------------------------------------------------------------------
# Latency model
# --------------------------------------------------------------------------------------------


def latency_model(base=0.8, slo=2.0, exponent=3.0, factor=1.25, timeout=60.0) -> LatencyModel:
    a = lambda v: np.array([v], dtype=float)  # noqa: E731
    return LatencyModel(a(base), a(slo), a(exponent), a(factor), a(timeout))


def serve(model: LatencyModel, arrivals, backlog, ready, capacity=4.0, dt=STEP):
    a = lambda v: np.array([v], dtype=float)  # noqa: E731
    served, after, p95 = model.serve(a(arrivals), a(backlog), np.array([ready]), a(capacity), dt)
    return float(served[0]), float(after[0]), float(p95[0])


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    base=st.floats(0.05, 1.5), extra=st.floats(0.1, 5.0), exponent=st.floats(0.5, 6.0), factor=st.floats(1.0, 2.0),
    ready=st.integers(1, 50), capacity=st.floats(0.5, 50.0), under=st.floats(0.0, 0.999), over=st.floats(1.001, 3.0),
)
def test_latency_is_the_slo_at_utilisation_one_below_under_and_above_over(base, extra, exponent, factor, ready, capacity, under, over) -> None:
    slo = base + extra
    model = latency_model(base=base, slo=slo, exponent=exponent, factor=factor, timeout=1e6)
    full = ready * capacity * STEP
    served, after, p95 = serve(model, full, 0.0, ready, capacity)
    assert served == full and after == 0.0
    assert p95 == pytest.approx(slo, rel=1e-12, abs=0.0)
    served, after, p95_under = serve(model, full * under, 0.0, ready, capacity)
    assert after == 0.0
    assert p95_under < slo
    assert p95_under >= base
    served, after, p95_over = serve(model, full * over, 0.0, ready, capacity)
    assert p95_over > slo
    assert served <= factor * full * (1 + 1e-12)
    assert served + after == pytest.approx(full * over, rel=1e-12)
    # A backlog carried in counts like arrivals.
    _, _, p95_backlog = serve(model, full * 0.5, full * 0.5, ready, capacity)
    assert p95_backlog == pytest.approx(slo, rel=1e-12)


def test_latency_figures_at_known_points() -> None:
    model = latency_model(base=0.8, slo=2.0, exponent=3.0, factor=1.25, timeout=60.0)
    # 2 replicas * 4 rps * 60 s = 480 requests at the SLO.
    assert serve(model, 480.0, 0.0, 2) == (480.0, 0.0, pytest.approx(2.0, rel=1e-15))
    assert serve(model, 240.0, 0.0, 2)[2] == pytest.approx(0.8 + 1.2 * 0.125)
    assert serve(model, 0.0, 0.0, 2) == (0.0, 0.0, 0.8)
    # Beyond saturation (600 = 1.25 * 480): served 600, 100 queued, each waiting 100 / (1.25 * 8) s.
    served, after, p95 = serve(model, 700.0, 0.0, 2)
    assert (served, after) == (600.0, 100.0)
    assert p95 == pytest.approx(0.8 + 1.2 * 1.25**3 + 100.0 / 10.0)


@pytest.mark.parametrize("arrivals, backlog", [(1.0, 0.0), (0.0, 5.0), (1e6, 1e6)])
def test_latency_is_the_timeout_with_no_ready_replica_and_work_waiting(arrivals, backlog) -> None:
    model = latency_model(timeout=45.0)
    served, after, p95 = serve(model, arrivals, backlog, 0)
    assert served == 0.0 and after == arrivals + backlog
    assert p95 == 45.0


def test_latency_is_base_with_nothing_to_serve_and_capped_at_timeout() -> None:
    model = latency_model(base=0.3, timeout=45.0)
    assert serve(model, 0.0, 0.0, 0)[2] == 0.3
    assert serve(model, 1e9, 0.0, 1)[2] == 45.0


def test_slo_ok_is_p95_within_the_slo_in_the_cluster() -> None:
    cluster = make_cluster([dict(startup_seconds=0.0, capacity_rps=4.0)], [dict(gpus_per_node=8)], replicas=[2], nodes=[1])
    assert step(cluster, 2, demand=8.0).slo_ok.tolist() == [True]  # exactly at capacity
    assert step(cluster, 2, demand=8.5).slo_ok.tolist() == [False]  # over: served at a latency cost
    out = step(cluster, 2, demand=0.0)
    assert out.slo_ok.tolist() == [True] and out.backlog.tolist() == [0.0]


# --------------------------------------------------------------------------------------------
# Invariants over random runs
# --------------------------------------------------------------------------------------------


@st.composite
def random_runs(draw):
    """(workloads, pools, initial replicas, initial nodes, [(desired, floor, demand)] per step)."""
    n_pools = draw(st.integers(1, 2))
    pools = []
    for _ in range(n_pools):
        min_nodes = draw(st.integers(0, 2))
        pools.append(dict(
            gpus_per_node=draw(st.sampled_from([1, 2, 4, 8])),
            provisioning_seconds=draw(st.sampled_from([0.0, 60.0, 150.0, 360.0])),
            idle_removal_seconds=draw(st.sampled_from([0.0, 60.0, 300.0, 600.0])),
            min_nodes=min_nodes,
            max_nodes=min_nodes + draw(st.integers(1, 6)),
        ))
    n = draw(st.integers(1, 3))
    workloads = []
    for _ in range(n):
        pool = draw(st.integers(0, n_pools - 1))
        gpn = pools[pool]["gpus_per_node"]
        workloads.append(dict(
            pool=pool,
            gpus_per_replica=draw(st.sampled_from([g for g in (1, 2, 4, 8) if g <= gpn])),
            startup_seconds=draw(st.sampled_from([0.0, 60.0, 120.0, 180.0, 90.0])),
            capacity_rps=draw(st.floats(0.5, 10.0)),
            factor=draw(st.sampled_from([1.0, 1.25, 2.0])),
        ))
    nodes = [draw(st.integers(0, p["max_nodes"])) for p in pools]
    free = [nodes[j] * pools[j]["gpus_per_node"] for j in range(n_pools)]
    replicas = []
    for w in workloads:
        fits = free[w["pool"]] // w["gpus_per_replica"]
        r = draw(st.integers(0, min(fits, 5)))
        free[w["pool"]] -= r * w["gpus_per_replica"]
        replicas.append(r)
    steps = draw(st.integers(5, 40))
    sequence = []
    for _ in range(steps):
        desired = draw(st.lists(st.integers(-1, 12), min_size=n, max_size=n))
        floor = draw(st.lists(st.integers(0, 9), min_size=n_pools, max_size=n_pools))
        demand = draw(st.lists(st.floats(0.0, 60.0) | st.just(0.0), min_size=n, max_size=n))
        sequence.append((desired, floor, demand))
    return workloads, pools, replicas, nodes, sequence


def build(run) -> tuple[SimulatedCluster, list]:
    workloads, pools, replicas, nodes, sequence = run
    return make_cluster(workloads, pools, replicas=replicas, nodes=nodes), sequence


@settings(max_examples=40, deadline=None, derandomize=True)
@given(random_runs())
def test_cluster_invariants_hold_on_random_runs(run) -> None:
    cluster, sequence = build(run)
    workloads, pools, _, initial_nodes, _ = run
    gpn = cluster.gpn
    min_nodes = cluster.pools.min_nodes
    max_nodes = cluster.pools.max_nodes
    idle = cluster.idle_steps
    arrived = np.zeros(len(workloads))
    served = np.zeros(len(workloads))
    needs = []  # per step, the pool need the module docstring defines
    for t, (desired, floor, demand) in enumerate(sequence):
        out = step(cluster, desired, floor, demand)
        desired_c = np.clip(np.asarray(desired), 0, None)
        arrived += np.asarray(demand) * STEP
        served += out.served

        # Counts are never negative, and the spec is what was asked (ready + starting + pending).
        for arr in (cluster.ready, cluster.starting, cluster.pending, cluster.nodes_ready, cluster.provisioning):
            assert (arr >= 0).all()
        assert np.array_equal(cluster.ready + cluster.starting + cluster.pending, desired_c)

        # Pools stay within [min_nodes, max_nodes] (ready + provisioning) and are billed in full.
        existing = existing_nodes(cluster)
        assert (existing <= max_nodes).all(), (t, existing, max_nodes)
        assert (existing >= min_nodes).all(), (t, existing, min_nodes)
        assert np.array_equal(cluster.billed_gpus(), existing * gpn)

        # Bound replicas never exceed the GPUs of ready nodes.
        assert (bound_gpus_per_pool(cluster) <= cluster.nodes_ready * gpn).all(), t
        assert np.array_equal(cluster.allocated_gpus(), (cluster.ready + cluster.starting) * cluster.gpr)

        # Requests are conserved.
        assert np.allclose(served + out.backlog, arrived, rtol=1e-9, atol=1e-9)
        assert (out.backlog >= 0).all() and (out.served >= 0).all()

        # The pool holds exactly the largest need of the idle window (step 5 of the docstring).
        wanted = np.bincount(cluster.pool_of, weights=desired_c * cluster.gpr, minlength=len(gpn))
        need = np.clip(np.maximum(np.maximum(-(-wanted.astype(np.int64) // gpn), floor), min_nodes), 0, max_nodes)
        needs.append(need)
        for j in range(len(gpn)):
            window = [needs[s][j] for s in range(max(0, t - int(idle[j])), t + 1)]
            if t - int(idle[j]) < 0:
                window.append(initial_nodes[j])
            assert existing[j] == max(window), (t, j, existing[j], window)

        # SLO: met exactly when everything waiting was served within the ready SLO capacity.
        capacity = cluster.ready * cluster.wl.capacity_rps * STEP
        assert np.array_equal(out.slo_ok, out.p95 <= cluster.latency.slo_p95 * (1 + 1e-9))
        fits = (out.backlog == 0) & (out.served <= capacity)
        assert out.slo_ok[fits].all(), (t, out)
        misses = (out.backlog > 0) | (out.served > capacity * (1 + 1e-6))
        assert not out.slo_ok[misses].any(), (t, out)
        assert (out.p95 <= cluster.latency.timeout).all()
        assert cluster.t == t + 1


@settings(max_examples=30, deadline=None, derandomize=True)
@given(random_runs())
def test_replicas_become_ready_exactly_startup_after_binding(run) -> None:
    """Every replica bound in step t is ready from step t + startup steps (replayed with no shrink,
    so no replica is removed and the bookkeeping is exact)."""
    workloads, pools, replicas, nodes, sequence = run
    cluster = make_cluster(workloads, pools, replicas=replicas, nodes=nodes)
    lp = cluster.startup_steps
    desired = np.asarray(replicas, np.int64)
    history = []
    for t, (d, floor, demand) in enumerate(sequence):
        desired = np.maximum(desired, np.clip(np.asarray(d), 0, None))  # only grow
        bound_before = cluster.ready + cluster.starting
        step(cluster, desired, floor, demand)
        newly_bound = cluster.ready + cluster.starting - bound_before
        assert (newly_bound >= 0).all()
        history.append(newly_bound)
        expected_ready = np.asarray(replicas, np.int64).copy()
        for s, bound_then in enumerate(history):
            expected_ready += np.where(s + lp <= t, bound_then, 0)
        assert np.array_equal(cluster.ready, expected_ready), (t, cluster.ready, expected_ready)
    assert cluster.t == len(sequence)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(random_runs())
def test_two_clusters_fed_the_same_sequence_agree_exactly(run) -> None:
    a, sequence = build(run)
    b, _ = build(run)
    for desired, floor, demand in sequence:
        out_a = step(a, desired, floor, demand)
        out_b = step(b, desired, floor, demand)
        for field in ("served", "backlog", "p95", "slo_ok", "replica_actions", "node_actions"):
            assert np.array_equal(getattr(out_a, field), getattr(out_b, field)), field
        for attr in ("ready", "starting", "pending", "nodes_ready", "provisioning", "backlog"):
            assert np.array_equal(getattr(a, attr), getattr(b, attr)), attr
        assert np.array_equal(a.billed_gpus(), b.billed_gpus())
    state_a = a.state(0.0, np.zeros(len(sequence[0][0])))
    state_b = b.state(0.0, np.zeros(len(sequence[0][0])))
    assert np.array_equal(state_a.workloads.replicas, state_b.workloads.replicas)


def test_state_reports_what_a_policy_may_see() -> None:
    cluster = make_cluster([dict(startup_seconds=120.0), dict(startup_seconds=0.0, gpus_per_replica=2)],
                           [dict(gpus_per_node=4, provisioning_seconds=120.0)], replicas=[1, 0], nodes=[1])
    step(cluster, [2, 2])
    state = cluster.state(123.0, np.array([1.0, math.nan]))
    wl = state.workloads
    assert state.observed_at == 123.0 and state.step_seconds == STEP
    assert wl.ready.tolist() == [1, 1]
    assert wl.starting.tolist() == [1, 0]
    assert wl.pending.tolist() == [0, 1]
    assert wl.replicas.tolist() == [2, 2]
    assert np.isnan(wl.demand_rps[1]) and wl.demand_rps[0] == 1.0
    assert state.node_pools.nodes.tolist() == [1] and state.node_pools.provisioning.tolist() == [1]


def test_initial_replicas_beyond_the_initial_nodes_start_pending_not_ready() -> None:
    """25 replicas on one 8-GPU node used to start all ready: more ready GPUs than billed ones."""
    cluster = make_cluster([dict(startup_seconds=180.0)], [dict(gpus_per_node=8, max_nodes=1)], replicas=[25], nodes=[1])
    assert cluster.ready.tolist() == [8] and cluster.pending.tolist() == [17]
    step(cluster, [25])
    assert int(cluster.allocated_gpus().sum()) <= int(cluster.billed_gpus().sum())
