"""The oracle's guarantees, through simulations.replay.simulate.

With the exact future demand the oracle meets the SLO at every step (when max_nodes and
max_replicas do not bind), and no policy that also meets the SLO at every step is billed fewer
GPU-hours: it is the cost floor the other policies are compared against.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from simulations.config import config_from_mapping
from simulations.replay import Simulation, initial_state, simulate, tables
from simulations.traces import Trace

START = 1.7e9
STEP = 60.0
POLICY_NAMES = ["reactive", "predictive", "oracle"]


def make_trace(values: np.ndarray, names: tuple[str, ...]) -> Trace:
    return Trace(source="hyp", start=START, step_seconds=STEP, workloads=names, values=values)


def make_config(workloads: list[dict], pools: list[dict], enabled=POLICY_NAMES):
    return config_from_mapping({
        "simulation": {"step_seconds": STEP},
        "node_pools": pools,
        "workloads": workloads,
        "policies": {"enabled": list(enabled)},
    }, "<test>")


# Demand is 0 or at least 0.01 rps: a positive demand below 1e-9 * capacity is a known bug (see
# test_a_tiny_positive_demand_gets_a_replica), kept out of the properties so they test the rest.
_RPS = st.floats(0.0, 40.0).map(lambda x: 0.0 if x < 0.01 else x)
_SPIKE = st.floats(0.0, 60.0).map(lambda x: 0.0 if x < 0.01 else x)


@st.composite
def piecewise_column(draw, n_steps: int) -> np.ndarray:
    """Non-negative demand made of flat segments, ramps and spikes (rps)."""
    out = np.empty(n_steps)
    t = 0
    level = draw(_RPS)
    while t < n_steps:
        length = draw(st.integers(1, 60))
        kind = draw(st.sampled_from(["flat", "flat", "ramp", "spike", "zero"]))
        end = min(n_steps, t + length)
        if kind == "flat":
            level = draw(_RPS)
            out[t:end] = level
        elif kind == "ramp":
            target = draw(_RPS)
            out[t:end] = np.linspace(level, target, end - t)
            level = target
        elif kind == "spike":
            out[t:end] = level
            out[t] = draw(_SPIKE)
        else:
            out[t:end] = 0.0
            level = 0.0
        t = end
    return out


@st.composite
def scenarios(draw, min_steps: int = 120, max_steps: int = 240):
    """(trace, config) for 1-2 workloads on 1-2 small pools whose limits never bind."""
    n_pools = draw(st.integers(1, 2))
    pools = []
    for j in range(n_pools):
        pools.append({
            "name": f"pool-{j}",
            "gpus_per_node": draw(st.sampled_from([2, 4, 8])),
            "provisioning_seconds": float(draw(st.sampled_from([0, 60, 120, 180, 360]))),
            "idle_removal_seconds": float(draw(st.sampled_from([0, 120, 600]))),
            "min_nodes": draw(st.integers(0, 1)),
            "max_nodes": 10_000,
            "price_per_gpu_hour": 2.5,
        })
    n = draw(st.integers(1, 2))
    workloads = []
    for i in range(n):
        pool = pools[draw(st.integers(0, n_pools - 1))]
        gpn = pool["gpus_per_node"]
        workloads.append({
            "name": f"svc-{i}",
            "node_pool": pool["name"],
            "gpus_per_replica": draw(st.sampled_from([g for g in (1, 2, 4, 8) if g <= gpn and gpn % g == 0])),
            "startup_seconds": float(draw(st.sampled_from([0, 60, 120, 180]))),
            "capacity_rps": draw(st.floats(2.0, 10.0)),
            "min_replicas": draw(st.integers(0, 2)),
            "max_replicas": 100_000,
        })
    n_steps = draw(st.integers(min_steps, max_steps))
    values = np.stack([draw(piecewise_column(n_steps)) for _ in range(n)], axis=1)
    names = tuple(w["name"] for w in workloads)
    return make_trace(values, names), make_config(workloads, pools)


def assert_limits_do_not_bind(sim: Simulation) -> None:
    """The generated configs keep max_nodes / max_replicas far above anything used."""
    for run in sim.runs.values():
        assert (run.nodes < 10_000).all()
        assert (run.replicas < 100_000).all()


def assert_oracle_is_the_floor(sim: Simulation) -> list[str]:
    """The guarantees; returns the policies the oracle was compared with."""
    oracle = sim.runs["oracle"]
    assert oracle.slo_ok.all(), f"oracle misses the SLO at steps {np.argwhere(~oracle.slo_ok)[:5].tolist()}"
    # Meeting the SLO at every step means every request served with nothing left waiting.
    np.testing.assert_allclose(oracle.served, oracle.arrived, rtol=1e-9)
    assert (oracle.backlog_end == 0).all()
    compared = []
    for name, run in sim.runs.items():
        if name == "oracle" or not run.slo_ok.all():
            continue
        compared.append(name)
        assert oracle.gpu_hours_billed.sum() <= run.gpu_hours_billed.sum() + 1e-9, (
            f"{name} met the SLO for {run.gpu_hours_billed.sum()} GPU-hours, the oracle paid {oracle.gpu_hours_billed.sum()}")
        # Pool by pool and workload by workload too: a replica ready at s was bound since s - startup, and a
        # node ready at u was requested (and billed) since u - provisioning, so whatever meets the SLO holds
        # at least the oracle's just-in-time capacity at every step.
        assert (oracle.gpu_hours_billed <= run.gpu_hours_billed + 1e-9).all(), name
        assert (oracle.gpu_hours_allocated <= run.gpu_hours_allocated + 1e-9).all(), name
    return compared


# --------------------------------------------------------------------------------------------
# Properties over random traces
# --------------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios())
def test_oracle_meets_the_slo_and_is_the_cheapest_policy_that_does(scenario) -> None:
    trace, config = scenario
    sim = simulate(trace, config, POLICY_NAMES)
    assert set(sim.runs) == set(POLICY_NAMES)
    assert_limits_do_not_bind(sim)
    compared = assert_oracle_is_the_floor(sim)
    event(f"compared with {', '.join(compared) or 'no policy'}")


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios(min_steps=120, max_steps=200), st.floats(0.0, 1.0))
def test_oracle_is_cheaper_than_reactive_when_reactive_meets_the_slo(scenario, level) -> None:
    """Smoother traces, on which the reactive policy usually meets the SLO too: the comparison bites."""
    trace, config = scenario
    # Blend towards the column mean: flatter demand that an HPA can keep up with.
    values = np.asarray(trace.values)
    smooth = level * values + (1.0 - level) * values.mean(axis=0, keepdims=True)
    trace = make_trace(smooth, trace.workloads)
    sim = simulate(trace, config, ["reactive", "oracle"])
    assert_limits_do_not_bind(sim)
    compared = assert_oracle_is_the_floor(sim)
    event(f"compared with {', '.join(compared) or 'no policy'}")


@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios(min_steps=120, max_steps=150))
def test_the_same_inputs_give_identical_results(scenario) -> None:
    trace, config = scenario
    first = simulate(trace, config, POLICY_NAMES)
    second = simulate(trace, config, POLICY_NAMES)
    assert np.array_equal(first.demand, second.demand)
    for name in POLICY_NAMES:
        a, b = first.runs[name], second.runs[name]
        for field in ("p95", "slo_ok", "ready", "replicas", "nodes", "nodes_ready", "gpu_hours_allocated",
                      "gpu_hours_billed", "arrived", "served", "backlog_end", "replica_actions", "node_actions",
                      "forecast_fallback_steps"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), (name, field)


# --------------------------------------------------------------------------------------------
# Scenarios that make the comparison non-vacuous
# --------------------------------------------------------------------------------------------


def _flat_scenario(levels=(10.0, 25.0), steps=180):
    pools = [{"name": "gpu", "gpus_per_node": 4, "provisioning_seconds": 360.0, "idle_removal_seconds": 600.0,
              "max_nodes": 10_000}]
    workloads = [
        {"name": "chat", "capacity_rps": 4.0, "startup_seconds": 180.0, "min_replicas": 1, "max_replicas": 100_000},
        {"name": "code", "capacity_rps": 5.0, "startup_seconds": 120.0, "gpus_per_replica": 2, "min_replicas": 1,
         "max_replicas": 100_000},
    ]
    values = np.tile(np.asarray(levels, float), (steps, 1))
    return make_trace(values, ("chat", "code")), make_config(workloads, pools)


def test_on_flat_demand_every_policy_meets_the_slo_and_the_oracle_pays_least() -> None:
    trace, config = _flat_scenario()
    sim = simulate(trace, config, POLICY_NAMES)
    for name, run in sim.runs.items():
        assert run.slo_ok.all(), name
    compared = assert_oracle_is_the_floor(sim)
    assert compared == ["reactive", "predictive"]
    # The oracle holds exactly ceil(d / c) replicas: 10 / 4 -> 3 and 25 / 5 -> 5, i.e. 3 + 10 = 13 GPUs
    # on ceil(13 / 4) = 4 nodes, for 180 steps = 3 h: 48 GPU-hours.
    oracle = sim.runs["oracle"]
    assert (oracle.ready == np.array([3, 5])).all()
    assert oracle.gpu_hours_billed.sum() == pytest.approx(4 * 4 * 3.0)
    # Reactive at 70% target wants ceil(10 / 2.8) = 4 and ceil(25 / 3.5) = 8: 4 + 16 = 20 GPUs, 5 nodes.
    reactive = sim.runs["reactive"]
    assert reactive.gpu_hours_billed.sum() > oracle.gpu_hours_billed.sum()


def test_on_a_step_up_the_oracle_is_ready_in_time_and_reactive_is_not() -> None:
    values = np.concatenate([np.full((60, 2), 4.0), np.full((120, 2), 40.0)])
    trace, config = _flat_scenario()
    trace = make_trace(values, trace.workloads)
    sim = simulate(trace, config, ["reactive", "oracle"])
    assert sim.runs["oracle"].slo_ok.all()
    assert not sim.runs["reactive"].slo_ok[60:].all()  # it only reacts once the load is seen
    assert assert_oracle_is_the_floor(sim) == []


def test_initial_state_is_what_the_oracle_would_run_at_step_zero() -> None:
    trace, config = _flat_scenario(levels=(10.0, 25.0), steps=30)
    tb = tables(config, trace.workloads)
    wl, pools = tb.believed, tb.pools
    replicas, nodes = initial_state(wl, pools, np.asarray(trace.values), trace.start, trace.step_seconds)
    assert replicas.tolist() == [3, 5]
    assert nodes.tolist() == [math.ceil((3 * 1 + 5 * 2) / 4)]
    sim = simulate(trace, config, ["oracle"])
    assert sim.runs["oracle"].ready[0].tolist() == [3, 5]


def test_a_tiny_positive_demand_gets_a_replica() -> None:
    pools = [{"name": "gpu", "gpus_per_node": 2, "provisioning_seconds": 0.0, "idle_removal_seconds": 0.0}]
    workloads = [{"name": "chat", "capacity_rps": 2.0, "startup_seconds": 0.0, "min_replicas": 0}]
    values = np.zeros((10, 1))
    values[3:6, 0] = 1e-10  # rps: positive, far below one replica's capacity
    sim = simulate(make_trace(values, ("chat",)), make_config(workloads, pools, ["oracle"]), ["oracle"])
    oracle = sim.runs["oracle"]
    assert oracle.slo_ok[:3].all()  # no demand, no replica: fine
    assert (oracle.ready[3:6] >= 1).all()
    assert oracle.slo_ok.all()
