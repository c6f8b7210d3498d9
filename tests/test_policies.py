"""Tests for the scaling policies: table-driven scenarios with sentence names, plus properties.

The scenario tables follow the Kubernetes HPA tests: each row is a sentence saying what should
happen, the inputs that make it happen and the count and reasons expected. The predictive policy's
scenarios live in ``tests/test_predictive.py``, which shares the helpers below; what stays here for
it is what every policy shares (explanations, JSON, min/max).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecasters.series import Forecast
from policies import POLICIES, oracle, predictive, reactive
from policies.leadtime import lead_steps
from policies.oracle import OracleConfig
from policies.predictive import PredictiveConfig
from policies.reactive import ReactiveConfig, scale_up_limit
from policies.types import (
    ClusterState,
    DecisionBatch,
    DecisionLog,
    PoolTable,
    Reason,
    ReasonCode,
    ScalingDecision,
    WorkloadTable,
)

STEP = 60.0
NOW = 1.7e9

# --------------------------------------------------------------------------------------------
# Building states
# --------------------------------------------------------------------------------------------

_WORKLOAD_DEFAULTS = dict(
    pool=0,
    replicas=1,
    min_replicas=1,
    max_replicas=100,
    gpus_per_replica=1,
    capacity_rps=4.0,
    startup_seconds=180.0,
    demand_rps=0.0,
)
_POOL_DEFAULTS = dict(
    gpus_per_node=8,
    nodes=1,
    provisioning=0,
    min_nodes=0,
    max_nodes=64,
    provisioning_seconds=360.0,
    price_per_gpu_hour=2.5,
)


def _column(values, n: int, dtype) -> np.ndarray:
    array = np.asarray(values, dtype=dtype)
    if array.ndim == 0:
        array = np.full(n, array, dtype=dtype)
    assert array.shape == (n,), f"expected {n} values, got {array.shape}"
    return array


def make_state(n: int = 1, *, now: float = NOW, step_seconds: float = STEP, names=None, pools: int = 1, **kw) -> ClusterState:
    """A ClusterState of ``n`` workloads; each keyword is a scalar (all workloads) or a sequence.

    Workload keys: pool, replicas, ready, starting, pending, min_replicas, max_replicas,
    gpus_per_replica, capacity_rps, startup_seconds, demand_rps. Pool keys are prefixed ``pool_``:
    pool_gpus_per_node, pool_nodes, pool_provisioning, pool_min_nodes, pool_max_nodes,
    pool_provisioning_seconds. By default every replica is ready.
    """
    w = {**_WORKLOAD_DEFAULTS, **{k: v for k, v in kw.items() if not k.startswith("pool_")}}
    p = {**_POOL_DEFAULTS, **{k[5:]: v for k, v in kw.items() if k.startswith("pool_")}}
    unknown = set(w) - set(_WORKLOAD_DEFAULTS) - {"ready", "starting", "pending"}
    unknown |= set(p) - set(_POOL_DEFAULTS)
    assert not unknown, f"unknown state keys {unknown}"
    replicas = _column(w["replicas"], n, np.int64)
    starting = _column(w.get("starting", 0), n, np.int64)
    pending = _column(w.get("pending", 0), n, np.int64)
    ready = _column(w.get("ready", replicas - starting - pending), n, np.int64)
    names = tuple(names or (f"svc-{i}" for i in range(n)))
    workloads = WorkloadTable(
        names=names,
        pool=_column(w["pool"], n, np.int64),
        replicas=replicas,
        ready=ready,
        starting=starting,
        pending=pending,
        min_replicas=_column(w["min_replicas"], n, np.int64),
        max_replicas=_column(w["max_replicas"], n, np.int64),
        gpus_per_replica=_column(w["gpus_per_replica"], n, np.int64),
        capacity_rps=_column(w["capacity_rps"], n, np.float64),
        startup_seconds=_column(w["startup_seconds"], n, np.float64),
        demand_rps=_column(w["demand_rps"], n, np.float64),
    )
    node_pools = PoolTable(
        names=tuple(f"pool-{j}" for j in range(pools)),
        gpus_per_node=_column(p["gpus_per_node"], pools, np.int64),
        nodes=_column(p["nodes"], pools, np.int64),
        provisioning=_column(p["provisioning"], pools, np.int64),
        min_nodes=_column(p["min_nodes"], pools, np.int64),
        max_nodes=_column(p["max_nodes"], pools, np.int64),
        provisioning_seconds=_column(p["provisioning_seconds"], pools, np.float64),
        price_per_gpu_hour=_column(p["price_per_gpu_hour"], pools, np.float64),
    )
    return ClusterState(now, step_seconds, workloads, node_pools)


def empty_log(state: ClusterState) -> DecisionLog:
    return DecisionLog.empty(state.workloads.names)


def codes(batch: DecisionBatch, i: int = 0) -> ReasonCode:
    return ReasonCode(int(batch.reasons[i]))


def exact(name: str, values, now: float = NOW, step: float = STEP) -> Forecast:
    """An exact forecast whose first value is the demand at ``now``."""
    return Forecast.exact(name, now - step, step, np.asarray(values, dtype=np.float64))


def with_quantiles(name: str, median, upper, now: float = NOW, step: float = STEP) -> Forecast:
    return Forecast(name, now - step, step, {0.5: np.asarray(median, float), 0.95: np.asarray(upper, float)}, "test")


_OPTIONAL_COLUMNS = {"slo_miss_cost_per_hour": np.float64, "quantile": np.float64, "forecast_error_ratio": np.float64,
                     "demand_trend": np.float64, "eligible": np.bool_}


def with_columns(state: ClusterState, **columns) -> ClusterState:
    """``state`` with optional WorkloadTable columns set (slo_miss_cost_per_hour, quantile,
    forecast_error_ratio, demand_trend: one value per workload; eligible: bool [n, pools])."""
    unknown = set(columns) - set(_OPTIONAL_COLUMNS)
    assert not unknown, f"unknown optional columns {unknown}"
    arrays = {k: np.asarray(v, dtype=_OPTIONAL_COLUMNS[k]) for k, v in columns.items()}
    n, p = len(state.workloads), len(state.node_pools)
    for k, a in arrays.items():
        assert a.shape == ((n, p) if k == "eligible" else (n,)), f"{k}: shape {a.shape}"
    return replace(state, workloads=replace(state.workloads, **arrays))


def test_make_state_helper_builds_consistent_tables() -> None:
    state = make_state(2, replicas=[3, 4], starting=[1, 0], demand_rps=[1.0, 2.0], pool_nodes=2)
    assert state.workloads.names == ("svc-0", "svc-1")
    assert state.workloads.ready.tolist() == [2, 4]
    assert state.workloads.starting.tolist() == [1, 0]
    assert state.node_pools.nodes.tolist() == [2]
    assert len(state.workloads) == 2 and len(state.node_pools) == 1


# --------------------------------------------------------------------------------------------
# Reactive: one call, table-driven
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReactiveCase:
    name: str
    state: dict
    want_replicas: int
    want_codes: ReasonCode
    want_proposed: int | None = None
    absent_codes: ReasonCode = ReasonCode(0)
    step_seconds: float = STEP
    config: ReactiveConfig = field(default_factory=ReactiveConfig)


REACTIVE_CASES = [
    ReactiveCase(
        # 20 rps / (4 rps * 0.7) = 7.14 -> 8; rate limit at 60 s is max(2 * 2**4, 2 + 16) = 32.
        "scale up: demand above target asks for ceil(d / (capacity * target))",
        dict(replicas=2, capacity_rps=4.0, demand_rps=20.0),
        want_replicas=8, want_proposed=8, want_codes=ReasonCode.REACTIVE,
        absent_codes=ReasonCode.RATE_LIMITED | ReasonCode.CLAMPED_MAX | ReasonCode.STABILIZED,
    ),
    ReactiveCase(
        "scale up: an exact multiple of the per-replica target asks for no extra replica",
        # 3 * (4 * 0.7) = 8.4 rps is exactly 3 replicas' target (float noise must not add a 4th).
        dict(replicas=1, capacity_rps=4.0, demand_rps=3 * 4.0 * 0.7),
        want_replicas=3, want_proposed=3, want_codes=ReasonCode.REACTIVE,
    ),
    ReactiveCase(
        "scale up: another target utilisation changes the denominator",
        # 10 / (5 * 0.5) = 4
        dict(replicas=1, capacity_rps=5.0, demand_rps=10.0),
        want_replicas=4, want_proposed=4, want_codes=ReasonCode.REACTIVE,
        config=ReactiveConfig(target_utilization=0.5),
    ),
    ReactiveCase(
        "no change: load within 10% tolerance above the target keeps the count",
        # 5 replicas at 2.8 rps target = 14 rps; 14 * 1.09 = 15.26 -> ratio 1.09, would ask for 6.
        dict(replicas=5, capacity_rps=4.0, demand_rps=14.0 * 1.09),
        want_replicas=5, want_proposed=5, want_codes=ReasonCode.WITHIN_TOLERANCE,
        absent_codes=ReasonCode.REACTIVE,
    ),
    ReactiveCase(
        "no change: load within 10% tolerance below the target keeps the count",
        dict(replicas=5, capacity_rps=4.0, demand_rps=14.0 * 0.91),
        want_replicas=5, want_proposed=5, want_codes=ReasonCode.WITHIN_TOLERANCE,
    ),
    ReactiveCase(
        "scale up: load just beyond the 10% tolerance is acted on",
        # ratio 1.2 -> ceil(16.8 / 2.8) = 6
        dict(replicas=5, capacity_rps=4.0, demand_rps=14.0 * 1.2),
        want_replicas=6, want_proposed=6, want_codes=ReasonCode.REACTIVE,
        absent_codes=ReasonCode.WITHIN_TOLERANCE,
    ),
    ReactiveCase(
        "scale down: with no history the first low reading is followed at once",
        # An empty log holds nothing above the recommendation: 2.8 rps -> 1 replica.
        dict(replicas=6, capacity_rps=4.0, demand_rps=2.8),
        want_replicas=1, want_proposed=1, want_codes=ReasonCode.REACTIVE,
        absent_codes=ReasonCode.STABILIZED,
    ),
    ReactiveCase(
        "missing metric (NaN demand) holds the count and says STALE_METRICS",
        dict(replicas=7, capacity_rps=4.0, demand_rps=math.nan),
        want_replicas=7, want_proposed=7, want_codes=ReasonCode.STALE_METRICS,
        absent_codes=ReasonCode.REACTIVE | ReasonCode.WITHIN_TOLERANCE,
    ),
    ReactiveCase(
        "missing metric at zero replicas holds zero (no scale up on missing data)",
        dict(replicas=0, min_replicas=0, capacity_rps=4.0, demand_rps=math.nan),
        want_replicas=0, want_proposed=0, want_codes=ReasonCode.STALE_METRICS,
    ),
    ReactiveCase(
        "clamped at max replicas with CLAMPED_MAX",
        # 100 / 2.8 -> 36 proposed; limit 80; max 6.
        dict(replicas=5, max_replicas=6, capacity_rps=4.0, demand_rps=100.0),
        want_replicas=6, want_proposed=36, want_codes=ReasonCode.REACTIVE | ReasonCode.CLAMPED_MAX,
        absent_codes=ReasonCode.RATE_LIMITED,
    ),
    ReactiveCase(
        "raised to min replicas with CLAMPED_MIN when demand asks for fewer",
        dict(replicas=3, min_replicas=3, capacity_rps=4.0, demand_rps=0.0),
        want_replicas=3, want_proposed=0, want_codes=ReasonCode.REACTIVE | ReasonCode.CLAMPED_MIN,
    ),
    ReactiveCase(
        "raised to min replicas when the current count is below min",
        dict(replicas=1, min_replicas=4, capacity_rps=4.0, demand_rps=2.0),
        want_replicas=4, want_proposed=1, want_codes=ReasonCode.CLAMPED_MIN,
    ),
    ReactiveCase(
        "scale-up rate limit at a large step: 60 s is 4 HPA periods, so at most x16 or +16",
        # 1000 / 2.8 -> 358 proposed; limit max(ceil(2 * 16), 2 + 16) = 32.
        dict(replicas=2, capacity_rps=4.0, demand_rps=1000.0),
        want_replicas=32, want_proposed=358, want_codes=ReasonCode.REACTIVE | ReasonCode.RATE_LIMITED,
    ),
    ReactiveCase(
        "scale-up rate limit from zero replicas at 60 s adds 16",
        dict(replicas=0, min_replicas=0, capacity_rps=4.0, demand_rps=1000.0),
        want_replicas=16, want_proposed=358, want_codes=ReasonCode.REACTIVE | ReasonCode.RATE_LIMITED,
    ),
    ReactiveCase(
        "scale-up rate limit at a 15 s step: +4 pods beats doubling for a small count",
        dict(replicas=1, capacity_rps=4.0, demand_rps=1000.0),
        want_replicas=5, want_proposed=358, want_codes=ReasonCode.REACTIVE | ReasonCode.RATE_LIMITED,
        step_seconds=15.0,
    ),
    ReactiveCase(
        "scale-up rate limit at a 15 s step: doubling beats +4 pods for a large count",
        dict(replicas=10, capacity_rps=4.0, demand_rps=1000.0),
        want_replicas=20, want_proposed=358, want_codes=ReasonCode.REACTIVE | ReasonCode.RATE_LIMITED,
        step_seconds=15.0,
    ),
    ReactiveCase(
        "rate limit then max: the max clamp applies after the rate limit",
        dict(replicas=2, max_replicas=10, capacity_rps=4.0, demand_rps=1000.0),
        want_replicas=10, want_proposed=358,
        want_codes=ReasonCode.REACTIVE | ReasonCode.RATE_LIMITED | ReasonCode.CLAMPED_MAX,
    ),
]


@pytest.mark.parametrize("case", REACTIVE_CASES, ids=[c.name for c in REACTIVE_CASES])
def test_reactive_scenario(case: ReactiveCase) -> None:
    state = make_state(1, step_seconds=case.step_seconds, **case.state)
    batch, log = reactive.decide(NOW, state, None, empty_log(state), case.config)
    assert int(batch.replicas[0]) == case.want_replicas
    got = codes(batch)
    assert case.want_codes in got, f"reasons {got!r} lack {case.want_codes!r}"
    assert not (got & case.absent_codes), f"reasons {got!r} should not include {case.absent_codes!r}"
    if case.want_proposed is not None:
        assert int(batch.proposed[0]) == case.want_proposed
    assert batch.policy == "reactive"
    assert batch.node_floor.tolist() == [0]  # nodes are left to the cluster autoscaler
    # The log remembers this call's raw recommendation at this time.
    assert log.times.tolist() == [NOW]
    assert log.recommendations.shape == (1, 1)


def test_reactive_scale_up_limit_arithmetic() -> None:
    assert scale_up_limit(np.array([2]), 60.0).tolist() == [32]
    assert scale_up_limit(np.array([0]), 60.0).tolist() == [16]
    assert scale_up_limit(np.array([1, 10]), 15.0).tolist() == [5, 20]
    # A step shorter than the HPA period still allows one period's growth.
    assert scale_up_limit(np.array([1]), 5.0).tolist() == [5]


# --------------------------------------------------------------------------------------------
# Reactive: across calls (the stabilization window)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowCase:
    name: str
    # (seconds after the first call, observed demand, expected desired, expected STABILIZED)
    calls: tuple[tuple[float, float, int, bool], ...]
    current: int = 10


WINDOW_CASES = [
    WindowCase(
        # 10 replicas at 28 rps is exactly on target (recommendation 10); then 2.8 rps asks for 1.
        "scale down: held by the 5-minute stabilization window, then released",
        calls=(
            (0, 28.0, 10, False),
            (60, 2.8, 10, True),
            (120, 2.8, 10, True),
            (240, 2.8, 10, True),
            (300, 2.8, 10, True),  # the 10 recommended at t=0 is still inside [now - 300, now]
            (360, 2.8, 1, False),  # released: only 1s in the window
        ),
    ),
    WindowCase(
        "scale down: stabilised to the highest recent recommendation, not to the current count",
        calls=(
            (0, 28.0, 10, False),
            (60, 16.8, 10, True),  # ratio 0.6: recommendation 6, held at 10 by t=0
            (120, 2.8, 10, True),
            (360, 2.8, 6, True),  # t=0 left the window; t=60's 6 is the highest left
            (420, 2.8, 1, False),
        ),
    ),
    WindowCase(
        "scale up is never delayed by the stabilization window",
        calls=(
            (0, 2.8, 1, False),
            (60, 28.0, 10, False),
        ),
        current=1,
    ),
]


@pytest.mark.parametrize("case", WINDOW_CASES, ids=[c.name for c in WINDOW_CASES])
def test_reactive_stabilization_window(case: WindowCase) -> None:
    log = DecisionLog.empty(("svc-0",))
    config = ReactiveConfig()
    assert config.scale_down_stabilization_seconds == 300.0
    for offset, demand, want, want_stabilized in case.calls:
        state = make_state(1, now=NOW + offset, replicas=case.current, capacity_rps=4.0, demand_rps=demand)
        batch, log = reactive.decide(NOW + offset, state, None, log, config)
        assert int(batch.replicas[0]) == want, f"at +{offset:g}s"
        assert (ReasonCode.STABILIZED in codes(batch)) == want_stabilized, f"at +{offset:g}s"
        # Only the window's worth of history is kept.
        assert (log.times >= NOW + offset - 300.0 - 1e-6).all()


def test_reactive_stale_metric_does_not_use_or_pollute_scale_down_history() -> None:
    """A NaN reading holds the count; its 'recommendation' (the held count) joins the log."""
    log = DecisionLog.empty(("svc-0",))
    state = make_state(1, replicas=4, demand_rps=math.nan)
    batch, log = reactive.decide(NOW, state, None, log, ReactiveConfig())
    assert int(batch.replicas[0]) == 4
    assert log.recommendations[-1].tolist() == [4]
    # A following low reading is stabilised at the held count, not released below it.
    state = make_state(1, now=NOW + 60, replicas=4, demand_rps=0.5)
    batch, _ = reactive.decide(NOW + 60, state, None, log, ReactiveConfig())
    assert int(batch.replicas[0]) == 4
    assert ReasonCode.STABILIZED in codes(batch)


def test_reactive_log_follows_renamed_workloads() -> None:
    """A workload added after the log was made starts with no history (its column is -1)."""
    log = DecisionLog.empty(("a",))
    state = make_state(1, names=("a",), replicas=10, demand_rps=28.0)
    _, log = reactive.decide(NOW, state, None, log, ReactiveConfig())
    state = make_state(2, now=NOW + 60, names=("a", "b"), replicas=10, demand_rps=2.8)
    batch, log = reactive.decide(NOW + 60, state, None, log, ReactiveConfig())
    assert batch.replicas.tolist() == [10, 1]  # a is held by its history; b has none
    assert log.names == ("a", "b")


# --------------------------------------------------------------------------------------------
# Oracle
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, startup, want",
    [
        pytest.param([4.0, 8.0, 12.0, 4.0, 40.0], 180.0, 3, id="the max need over [now, now + 3 steps] (12 rps / 4)"),
        pytest.param([4.0, 8.0, 12.0, 16.0, 40.0], 180.0, 4, id="the need exactly startup steps ahead counts"),
        pytest.param([4.0, 40.0, 40.0], 0.0, 1, id="zero startup: only the need now"),
        pytest.param([8.0, 8.0, 8.0], 120.0, 2, id="flat demand at an exact multiple of capacity: no extra replica"),
        pytest.param([8.0000001, 0.0, 0.0], 120.0, 3, id="just over a multiple of capacity: one more"),
        pytest.param([0.0, 0.0, 0.0, 0.0], 180.0, 1, id="no demand: min replicas"),
    ],
)
def test_oracle_sizes_for_the_max_need_over_the_startup_lead(values, startup, want) -> None:
    state = make_state(1, replicas=7, capacity_rps=4.0, demand_rps=math.nan, startup_seconds=startup)
    batch, _ = oracle.decide(NOW, state, {"svc-0": exact("svc-0", values)}, empty_log(state), OracleConfig())
    assert int(batch.replicas[0]) == want
    assert codes(batch) == ReasonCode.ORACLE
    # The same answer from the definition, with a brute-force max.
    lp = lead_steps(startup, STEP)
    padded = list(values) + [values[-1]] * (lp + 1)
    brute = max(max(math.ceil(v / 4.0 - 1e-9), 1) for v in padded[: lp + 1])
    assert want == brute


def test_oracle_capped_at_max_replicas_says_clamped_max() -> None:
    state = make_state(1, replicas=2, max_replicas=5, capacity_rps=4.0, startup_seconds=60.0)
    batch, _ = oracle.decide(NOW, state, {"svc-0": exact("svc-0", [8.0, 40.0, 8.0])}, empty_log(state), OracleConfig())
    assert int(batch.replicas[0]) == 5
    assert codes(batch) == ReasonCode.ORACLE | ReasonCode.CLAMPED_MAX
    # Beyond the startup lead a peak above max is not a clamp of anything wanted now.
    batch, _ = oracle.decide(NOW, state, {"svc-0": exact("svc-0", [8.0, 8.0, 40.0])}, empty_log(state), OracleConfig())
    assert int(batch.replicas[0]) == 2
    assert codes(batch) == ReasonCode.ORACLE


def test_oracle_without_forecast_holds_and_says_fallback() -> None:
    state = make_state(2, replicas=[3, 5], demand_rps=100.0)
    batch, _ = oracle.decide(NOW, state, {"svc-0": exact("svc-0", [4.0] * 5)}, empty_log(state), OracleConfig())
    assert batch.replicas.tolist() == [1, 5]
    assert codes(batch, 0) == ReasonCode.ORACLE
    assert codes(batch, 1) == ReasonCode.FALLBACK_FORECAST
    assert batch.fallbacks == {"svc-1": "no forecast for this workload"}


def test_oracle_node_floor_is_the_least_that_serves_the_known_future() -> None:
    # gpn 4, gpr 1, startup 1 step, provisioning 2 steps: floor = ceil(max over u in [0, 2] of
    # max(need[u], need[u + 1]) / 4). need = [1, 2, 3, 9, 20] -> inner = [2, 3, 9] -> 3 nodes.
    state = make_state(1, replicas=1, capacity_rps=1.0, startup_seconds=60.0,
                       pool_gpus_per_node=4, pool_provisioning_seconds=120.0)
    batch, _ = oracle.decide(NOW, state, {"svc-0": exact("svc-0", [1.0, 2.0, 3.0, 9.0, 20.0])}, empty_log(state), OracleConfig())
    assert int(batch.replicas[0]) == 2
    assert batch.node_floor.tolist() == [3]


# --------------------------------------------------------------------------------------------
# Decisions: explanations and JSON
# --------------------------------------------------------------------------------------------


def _all_batches():
    """(label, state, batch) for a few decisions of every policy."""
    out = []
    state = make_state(1, names=("llm-chat",), replicas=2, capacity_rps=4.0, demand_rps=20.0)
    out.append(("reactive up", state, reactive.decide(NOW, state, None, empty_log(state), ReactiveConfig())[0]))
    state = make_state(1, names=("llm-chat",), replicas=5, capacity_rps=4.0, demand_rps=14.0)
    out.append(("reactive hold", state, reactive.decide(NOW, state, None, empty_log(state), ReactiveConfig())[0]))
    state = make_state(1, names=("llm-chat",), replicas=5, max_replicas=6, capacity_rps=4.0, demand_rps=100.0)
    out.append(("reactive clamp", state, reactive.decide(NOW, state, None, empty_log(state), ReactiveConfig())[0]))
    state = make_state(1, names=("llm-chat",), replicas=7, demand_rps=math.nan)
    out.append(("reactive stale", state, reactive.decide(NOW, state, None, empty_log(state), ReactiveConfig())[0]))
    state = make_state(2, names=("chat", "embed"), replicas=2, capacity_rps=4.0, demand_rps=5.0)
    forecasts = {"chat": exact("chat", [36.0] * 10)}
    out.append(("predictive", state, predictive.decide(NOW, state, forecasts, empty_log(state), PredictiveConfig())[0]))
    out.append(("oracle", state, oracle.decide(NOW, state, forecasts, empty_log(state), OracleConfig())[0]))
    state = make_state(1, names=("chat",), replicas=2, capacity_rps=4.0, demand_rps=5.0)
    forecasts = {"chat": exact("chat", [5.0, 5.0, 5.0, 36.0] + [5.0] * 6)}
    out.append(("predictive warm", state, predictive.decide(NOW, state, forecasts, empty_log(state), PredictiveConfig())[0]))
    # The predictive policy's other reasons, one situation each (numbers in tests/test_predictive.py).
    sizing = PredictiveConfig(fill_idle_gpus=False)
    state = make_state(1, names=("chat",), replicas=10, capacity_rps=4.0, demand_rps=40.0)
    forecasts = {"chat": exact("chat", [8.0] * 12)}
    out.append(("predictive reactive floor", state, predictive.decide(NOW, state, forecasts, empty_log(state), sizing)[0]))
    state = make_state(1, names=("chat",), replicas=6, capacity_rps=1.0, demand_rps=2.0)
    forecasts = {"chat": exact("chat", [2.0] * 7 + [6.0] + [2.0] * 12)}
    out.append(("predictive kept warm", state, predictive.decide(NOW, state, forecasts, empty_log(state), sizing)[0]))
    state = make_state(1, names=("chat",), replicas=10, capacity_rps=1.0, demand_rps=1.0)
    forecasts = {"chat": exact("chat", [1.0] * 12)}
    out.append(("predictive rate limited", state,
                predictive.decide(NOW, state, forecasts, empty_log(state), PredictiveConfig(fill_idle_gpus=False, keep_warm=False))[0]))
    state = make_state(1, names=("chat",), replicas=6, max_replicas=8, capacity_rps=1.0, demand_rps=math.nan)
    forecasts = {"chat": exact("chat", [20.0] * 12)}
    out.append(("predictive stale without forecast", state, predictive.decide(NOW, state, {}, empty_log(state), sizing)[0]))
    out.append(("predictive clamped max", state, predictive.decide(NOW, state, forecasts, empty_log(state), sizing)[0]))
    state = make_state(1, names=("chat",), replicas=1, min_replicas=10, capacity_rps=1.0, demand_rps=1.0)
    out.append(("predictive clamped min", state, predictive.decide(NOW, state, {"chat": exact("chat", [2.0] * 12)},
                                                                   empty_log(state), sizing)[0]))
    state = with_columns(make_state(1, names=("chat",), replicas=2, capacity_rps=4.0, demand_rps=20.0),
                         forecast_error_ratio=[7.5])
    out.append(("predictive quality gate", state, predictive.decide(NOW, state, {"chat": exact("chat", [1.0] * 12)},
                                                                    empty_log(state), sizing)[0]))
    state = with_columns(make_state(1, names=("chat",), pools=2, replicas=5, capacity_rps=1.0, demand_rps=5.0,
                                    pool_price_per_gpu_hour=[4.0, 2.0]), eligible=[[True, True]])
    out.append(("predictive pool chosen", state, predictive.decide(NOW, state, {"chat": exact("chat", [5.0] * 12)},
                                                                   empty_log(state), sizing)[0]))
    log = DecisionLog.empty(("chat",))
    window = PredictiveConfig(fill_idle_gpus=False, keep_warm=False, scale_down_stabilization_seconds=300.0)
    state = make_state(1, names=("chat",), replicas=10, capacity_rps=1.0, demand_rps=1.0)
    _, log = predictive.decide(NOW, state, {"chat": exact("chat", [10.0] * 12)}, log, window)
    state = make_state(1, names=("chat",), now=NOW + STEP, replicas=10, capacity_rps=1.0, demand_rps=1.0)
    out.append(("predictive stabilized", state, predictive.decide(NOW + STEP, state, {"chat": exact("chat", [3.0] * 12, now=NOW + STEP)},
                                                                  log, window)[0]))
    return out


@pytest.mark.parametrize("label, state, batch", _all_batches(), ids=[b[0] for b in _all_batches()])
def test_decisions_explain_in_a_sentence_with_name_and_numbers(label, state, batch) -> None:
    decisions = batch.decisions(state)
    replica_decisions = [d for d in decisions if d.kind == "replicas"]
    assert [d.target for d in replica_decisions] == list(state.workloads.names)
    for i, d in enumerate(replica_decisions):
        assert isinstance(d, ScalingDecision)
        assert d.current == int(state.workloads.replicas[i])
        assert d.desired == int(batch.replicas[i])
        assert d.proposed == int(batch.proposed[i])
        assert d.policy == batch.policy
        assert d.reasons, "every decision has at least one reason"
        assert {r.code for r in d.reasons} == {c.name for c in ReasonCode if c in codes(batch, i)}
        text = d.explain()
        assert text and text.endswith(".")
        assert d.target in text
        assert str(d.current) in text and str(d.desired) in text
        assert "\n" not in text
        for r in d.reasons:
            assert r.message and r.message in text
            assert "{" not in r.message  # every template was filled
            # ... with its figures, not the bare code name a template missing a key falls back to
            assert r.message != r.code.lower().replace("_", " "), r


def test_explain_quotes_the_reactive_arithmetic() -> None:
    state = make_state(1, names=("llm-chat",), replicas=2, capacity_rps=4.0, demand_rps=20.0)
    batch, _ = reactive.decide(NOW, state, None, empty_log(state), ReactiveConfig())
    (d,) = batch.decisions(state)
    text = d.explain()
    assert text.startswith("llm-chat: scale up replicas 2 -> 8 (reactive): ")
    assert "20.0 rps" in text and "4.0 rps/replica" in text and "70%" in text and "asks for 8" in text

    state = make_state(1, names=("llm-chat",), replicas=7, demand_rps=math.nan)
    batch, _ = reactive.decide(NOW, state, None, empty_log(state), ReactiveConfig())
    (d,) = batch.decisions(state)
    assert d.explain().startswith("llm-chat: hold replicas at 7 (reactive): ")
    assert "missing" in d.explain()
    assert batch.decisions(state, only_changes=True) == []


@pytest.mark.parametrize("label, state, batch", _all_batches(), ids=[b[0] for b in _all_batches()])
def test_decisions_round_trip_through_json(label, state, batch) -> None:
    for d in batch.decisions(state):
        assert ScalingDecision.from_json(d.to_json()) == d


_finite = st.floats(allow_nan=False, allow_infinity=False)
_reasons = st.builds(Reason, code=st.sampled_from([c.name for c in ReasonCode]), message=st.text(),
                     before=st.none() | _finite, after=st.none() | _finite)
_decisions = st.builds(
    ScalingDecision,
    target=st.text(min_size=1),
    kind=st.sampled_from(["replicas", "nodes"]),
    current=st.integers(0, 10**6),
    proposed=st.integers(-1, 10**6),
    desired=st.integers(0, 10**6),
    reasons=st.lists(_reasons, max_size=4).map(tuple),
    decided_at=_finite,
    policy=st.sampled_from(["", "reactive", "predictive", "oracle"]) | st.text(),
    forecast_ref=st.none() | st.text(),
)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(_decisions)
def test_any_decision_round_trips_through_json_and_explains_itself(d: ScalingDecision) -> None:
    back = ScalingDecision.from_json(d.to_json())
    assert back == d
    assert isinstance(back.reasons, tuple)
    text = d.explain()
    assert text.startswith(f"{d.target}: ")
    assert str(d.current) in text


# --------------------------------------------------------------------------------------------
# Properties over random inputs
# --------------------------------------------------------------------------------------------


@st.composite
def random_situations(draw):
    """(state, forecasts, log, now): 1-4 workloads in 1-2 pools with random figures."""
    n = draw(st.integers(1, 4))
    pools = draw(st.integers(1, 2))
    mins = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    maxs = [m + draw(st.integers(0, 40)) for m in mins]
    maxs = [max(m, 1) for m in maxs]
    current = [draw(st.integers(lo, hi)) for lo, hi in zip(mins, maxs)]
    demand = draw(st.lists(st.none() | st.floats(0, 500), min_size=n, max_size=n))
    demand = [math.nan if d is None else d for d in demand]
    step = draw(st.sampled_from([15.0, 30.0, 60.0]))
    state = make_state(
        n, step_seconds=step, pools=pools,
        pool=[draw(st.integers(0, pools - 1)) for _ in range(n)],
        replicas=current, min_replicas=mins, max_replicas=maxs,
        gpus_per_replica=draw(st.lists(st.sampled_from([1, 2, 4]), min_size=n, max_size=n)),
        capacity_rps=draw(st.lists(st.floats(0.5, 20), min_size=n, max_size=n)),
        startup_seconds=draw(st.lists(st.sampled_from([0.0, 60.0, 180.0, 300.0]), min_size=n, max_size=n)),
        demand_rps=demand,
        pool_provisioning_seconds=[draw(st.sampled_from([0.0, 120.0, 360.0])) for _ in range(pools)],
        pool_gpus_per_node=[draw(st.sampled_from([4, 8])) for _ in range(pools)],
    )
    forecasts = {}
    for name in state.workloads.names:
        if draw(st.booleans()):
            horizon = draw(st.integers(1, 20))
            median = np.array(draw(st.lists(st.floats(0, 500), min_size=horizon, max_size=horizon)))
            extra = np.array(draw(st.lists(st.floats(0, 200), min_size=horizon, max_size=horizon)))
            forecasts[name] = Forecast(name, NOW - step, step, {0.5: median, 0.95: median + extra}, "hyp")
    # Some history for the stabilization window.
    log = DecisionLog.empty(state.workloads.names)
    for k in range(draw(st.integers(0, 3))):
        recs = np.array(draw(st.lists(st.integers(0, 60), min_size=n, max_size=n)))
        log = log.appended(NOW - (3 - k) * step, recs, keep_seconds=300.0)
    return state, forecasts, log


@settings(max_examples=40, deadline=None, derandomize=True)
@given(random_situations(), st.sampled_from(sorted(POLICIES)), st.booleans())
def test_every_policy_stays_within_min_and_max_replicas(situation, name, fill) -> None:
    state, forecasts, log = situation
    module = POLICIES[name]
    config = {"reactive": ReactiveConfig(), "predictive": PredictiveConfig(fill_idle_gpus=fill), "oracle": OracleConfig()}[name]
    batch, _ = module.decide(NOW, state, forecasts, log, config)
    wl = state.workloads
    assert batch.replicas.shape == (len(wl),)
    assert (batch.replicas >= wl.min_replicas).all(), (batch.replicas, wl.min_replicas)
    assert (batch.replicas <= wl.max_replicas).all(), (batch.replicas, wl.max_replicas)
    assert batch.node_floor.shape == (len(state.node_pools),)
    assert (batch.node_floor >= 0).all() and (batch.node_floor <= state.node_pools.max_nodes).all()
    # Every decision explains itself, and round-trips.
    for d in batch.decisions(state):
        assert d.target in d.explain()
        assert ScalingDecision.from_json(d.to_json()) == d


@settings(max_examples=30, deadline=None, derandomize=True)
@given(random_situations())
def test_oracle_with_exact_forecasts_sizes_for_the_max_need_over_startup(situation) -> None:
    state, forecasts, log = situation
    wl = state.workloads
    step = state.step_seconds
    exact_forecasts = {name: exact(name, f.quantiles[0.5], step=step) for name, f in forecasts.items()}
    batch, _ = oracle.decide(NOW, state, exact_forecasts, log, OracleConfig())
    for i, name in enumerate(wl.names):
        if name not in exact_forecasts:
            assert batch.replicas[i] == wl.replicas[i]
            continue
        values = list(exact_forecasts[name].quantiles[1.0])
        lp = lead_steps(float(wl.startup_seconds[i]), step)
        window = (values + [values[-1]] * (lp + 1))[: lp + 1]
        need = max(math.ceil(v / wl.capacity_rps[i] - 1e-9) for v in window)
        want = min(max(need, int(wl.min_replicas[i])), int(wl.max_replicas[i]))
        assert int(batch.replicas[i]) == want


@pytest.mark.parametrize("step_seconds", [900.0, 3600.0, 86_400.0])
def test_reactive_long_steps_never_shrink_through_the_rate_limit(step_seconds: float) -> None:
    """2**(step/15) overflowed int64 and wrapped the scale-up limit negative: 40 -> min_replicas."""
    from dataclasses import replace

    for demand in (math.nan, 200.0):
        state = replace(make_state(1, replicas=40, demand_rps=demand), step_seconds=step_seconds)
        batch, _ = reactive.decide(state.observed_at, state, None, DecisionLog.empty(state.workloads.names), ReactiveConfig())
        assert int(batch.replicas[0]) >= 40
