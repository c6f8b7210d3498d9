"""Tests for the scaling policies: table-driven scenarios with sentence names, plus properties.

The scenario tables follow the Kubernetes HPA tests: each row is a sentence saying what should
happen, the inputs that make it happen and the count and reasons expected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

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
# The predictive policy's forecast sizing alone, without warm replicas on idle GPUs (tested apart).
SIZING = PredictiveConfig(fill_idle_gpus=False)

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
# Predictive
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PredictiveCase:
    name: str
    state: dict
    forecast: tuple[float, ...] | None  # exact values from now; None: no forecast
    want_replicas: int
    want_codes: ReasonCode
    absent_codes: ReasonCode = ReasonCode(0)


PREDICTIVE_CASES = [
    PredictiveCase(
        # Startup 180 s = 3 steps: the peak of [now, now+3] is 36 rps -> ceil(36 / (4 * 0.9)) = 10.
        "forecast up: a peak within the startup lead time asks for more than reactive",
        dict(replicas=2, capacity_rps=4.0, demand_rps=5.0, startup_seconds=180.0),
        forecast=(5.0, 5.0, 5.0, 36.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0),
        want_replicas=10, want_codes=ReasonCode.FORECAST_UP,
        absent_codes=ReasonCode.REACTIVE_FLOOR | ReasonCode.FALLBACK_FORECAST,
    ),
    PredictiveCase(
        "reactive floor: a peak beyond the startup lead time is not asked for yet",
        # 5 rps -> reactive ceil(5 / 2.8) = 2; the forecast inside [now, now+3] needs ceil(5/3.6) = 2.
        dict(replicas=2, capacity_rps=4.0, demand_rps=5.0, startup_seconds=180.0),
        forecast=(5.0, 5.0, 5.0, 5.0, 36.0, 36.0, 36.0, 36.0, 36.0, 36.0),
        want_replicas=2, want_codes=ReasonCode.REACTIVE_FLOOR,
        absent_codes=ReasonCode.FORECAST_UP,
    ),
    PredictiveCase(
        "reactive floor: a forecast below what reactive sees never takes capacity away",
        # reactive: 28 rps -> 10; the forecast of 1 rps would need 1.
        dict(replicas=10, capacity_rps=4.0, demand_rps=28.0),
        forecast=(1.0,) * 10,
        want_replicas=10, want_codes=ReasonCode.REACTIVE_FLOOR | ReasonCode.WITHIN_TOLERANCE,
        absent_codes=ReasonCode.FORECAST_UP,
    ),
    PredictiveCase(
        "fallback: a workload with no forecast is decided by reactive alone",
        dict(replicas=2, capacity_rps=4.0, demand_rps=20.0),
        forecast=None,
        want_replicas=8, want_codes=ReasonCode.FALLBACK_FORECAST | ReasonCode.REACTIVE,
        absent_codes=ReasonCode.FORECAST_UP | ReasonCode.REACTIVE_FLOOR,
    ),
    PredictiveCase(
        "forecast up is capped at max replicas",
        dict(replicas=2, max_replicas=6, capacity_rps=4.0, demand_rps=5.0),
        forecast=(100.0,) * 10,
        want_replicas=6, want_codes=ReasonCode.FORECAST_UP,
    ),
    PredictiveCase(
        "reactive above max is clamped with CLAMPED_MAX even when the forecast wins",
        # reactive proposes ceil(100 / 2.8) = 36 > max 6.
        dict(replicas=2, max_replicas=6, capacity_rps=4.0, demand_rps=100.0),
        forecast=(100.0,) * 10,
        want_replicas=6, want_codes=ReasonCode.CLAMPED_MAX,
    ),
    PredictiveCase(
        "forecast up is not rate limited: the forecast is the point of scaling early",
        # reactive would add at most +16 from 2 in a 60 s step; the forecast asks for 100 / 3.6 -> 28.
        dict(replicas=2, capacity_rps=4.0, demand_rps=2.0),
        forecast=(100.0,) * 10,
        want_replicas=28, want_codes=ReasonCode.FORECAST_UP,
    ),
]


@pytest.mark.parametrize("case", PREDICTIVE_CASES, ids=[c.name for c in PREDICTIVE_CASES])
def test_predictive_scenario(case: PredictiveCase) -> None:
    state = make_state(1, **case.state)
    forecasts = {} if case.forecast is None else {"svc-0": exact("svc-0", case.forecast)}
    config = SIZING
    batch, _ = predictive.decide(NOW, state, forecasts, empty_log(state), config)
    reactive_batch, _ = reactive.decide(NOW, state, None, empty_log(state), config.reactive)
    assert int(batch.replicas[0]) == case.want_replicas
    got = codes(batch)
    assert case.want_codes in got, f"reasons {got!r} lack {case.want_codes!r}"
    assert not (got & case.absent_codes), f"reasons {got!r} should not include {case.absent_codes!r}"
    assert int(batch.replicas[0]) >= int(reactive_batch.replicas[0])
    if case.forecast is None:
        assert batch.replicas.tolist() == reactive_batch.replicas.tolist()
        assert "svc-0" in batch.fallbacks
        assert batch.node_floor.tolist() == [0]


def test_predictive_forecast_capped_at_max_says_clamped_max() -> None:
    # reactive: 5 rps -> ceil(5 / 2.8) = 2 (not clamped); forecast: 100 rps -> ceil(100 / 3.6) = 28 > max 6.
    state = make_state(1, replicas=2, max_replicas=6, capacity_rps=4.0, demand_rps=5.0)
    batch, _ = predictive.decide(NOW, state, {"svc-0": exact("svc-0", [100.0] * 10)}, empty_log(state), SIZING)
    assert int(batch.replicas[0]) == 6
    assert ReasonCode.FORECAST_UP | ReasonCode.CLAMPED_MAX in codes(batch)


def test_predictive_forecast_beyond_the_startup_lead_is_not_a_max_clamp() -> None:
    # The forecast exceeds max only after [now, now + startup]: nothing wanted now was cut.
    state = make_state(1, replicas=2, max_replicas=6, capacity_rps=4.0, demand_rps=5.0, startup_seconds=60.0)
    batch, _ = predictive.decide(NOW, state, {"svc-0": exact("svc-0", [18.0, 18.0, 100.0] + [100.0] * 7)},
                                 empty_log(state), SIZING)
    assert int(batch.replicas[0]) == 5  # ceil(18 / 3.6)
    assert ReasonCode.CLAMPED_MAX not in codes(batch)


def test_predictive_forecast_capped_at_max_proposes_the_uncapped_need() -> None:
    state = make_state(1, replicas=2, max_replicas=6, capacity_rps=4.0, demand_rps=5.0)
    batch, _ = predictive.decide(NOW, state, {"svc-0": exact("svc-0", [100.0] * 10)}, empty_log(state), SIZING)
    assert int(batch.replicas[0]) == 6 and ReasonCode.CLAMPED_MAX in codes(batch)  # right
    (d,) = [d for d in batch.decisions(state) if d.kind == "replicas"]
    assert d.desired == 6
    assert d.proposed == 28


def _reason(batch: DecisionBatch, state: ClusterState, code: ReasonCode, i: int = 0) -> Reason:
    (reason,) = [r for r in batch.reasons_for(i, state) if r.code == code.name]
    return reason


def _rate_limited_situation():
    # reactive: 1000 rps -> 358 proposed, rate-limited to 32 (its answer); the forecast of 144 rps
    # needs ceil(144 / 3.6) = 40, so the forecast wins with 40, well below max_replicas 100.
    state = make_state(1, names=("chat",), replicas=2, capacity_rps=4.0, demand_rps=1000.0)
    batch, _ = predictive.decide(NOW, state, {"chat": exact("chat", [144.0] * 10)}, empty_log(state), SIZING)
    reactive_batch, _ = reactive.decide(NOW, state, None, empty_log(state), ReactiveConfig())
    assert int(reactive_batch.replicas[0]) == 32
    assert int(batch.replicas[0]) == 40 and ReasonCode.FORECAST_UP in codes(batch)
    return state, batch


def test_predictive_forecast_up_sentence_quotes_reactive_answer_it_beat() -> None:
    state, batch = _rate_limited_situation()
    assert "needs 40 (above reactive's 32)" in _reason(batch, state, ReasonCode.FORECAST_UP).message


def test_predictive_does_not_claim_a_max_clamp_it_did_not_apply() -> None:
    state, batch = _rate_limited_situation()
    assert int(state.workloads.max_replicas[0]) == 100
    assert ReasonCode.CLAMPED_MAX not in codes(batch)


def test_predictive_reactive_floor_sentence_quotes_the_stabilised_answer() -> None:
    log = DecisionLog.empty(("chat",))
    state = make_state(1, names=("chat",), replicas=10, capacity_rps=4.0, demand_rps=28.0)
    _, log = reactive.decide(NOW, state, None, log, ReactiveConfig())
    state = make_state(1, names=("chat",), now=NOW + 60, replicas=10, capacity_rps=4.0, demand_rps=2.8)
    forecasts = {"chat": exact("chat", [18.0] * 10, now=NOW + 60)}  # needs ceil(18 / 3.6) = 5
    batch, _ = predictive.decide(NOW + 60, state, forecasts, log, SIZING)
    assert int(batch.replicas[0]) == 10  # held by the stabilization window: right
    assert ReasonCode.REACTIVE_FLOOR in codes(batch)
    assert "reactive's 10 is at least the forecast's 5" in _reason(batch, state, ReasonCode.REACTIVE_FLOOR).message


def test_predictive_uses_the_configured_upper_quantile_not_the_median() -> None:
    state = make_state(1, replicas=1, capacity_rps=4.0, demand_rps=1.0)
    f = with_quantiles("svc-0", median=[7.0] * 10, upper=[18.0] * 10)
    batch, _ = predictive.decide(NOW, state, {"svc-0": f}, empty_log(state), PredictiveConfig(fill_idle_gpus=False, quantile=0.95))
    assert int(batch.replicas[0]) == 5  # ceil(18 / 3.6)
    assert ReasonCode.FORECAST_UP in codes(batch)
    # A quantile between stored levels takes the next level up (conservative).
    batch, _ = predictive.decide(NOW, state, {"svc-0": f}, empty_log(state), PredictiveConfig(fill_idle_gpus=False, quantile=0.6))
    assert int(batch.replicas[0]) == 5
    # At the median: ceil(7 / 3.6) = 2, still above reactive's ceil(1 / 2.8) = 1.
    batch, _ = predictive.decide(NOW, state, {"svc-0": f}, empty_log(state), PredictiveConfig(fill_idle_gpus=False, quantile=0.5))
    assert int(batch.replicas[0]) == 2


def test_predictive_node_floor_covers_the_forecast_over_provisioning_plus_startup() -> None:
    # Provisioning 360 s (6 steps) + startup 180 s (3 steps): a replica for demand at now + 9 steps
    # must be bound by now + 6, on a node requested now.
    lp = lead_steps(180.0, STEP)
    ln = lead_steps(360.0, STEP)
    assert (lp, ln) == (3, 6)
    base = dict(replicas=1, capacity_rps=4.0, demand_rps=1.0, gpus_per_replica=2, startup_seconds=180.0,
                pool_gpus_per_node=4, pool_provisioning_seconds=360.0)
    state = make_state(1, **base)
    spike_at_lead = [1.0] * 12
    spike_at_lead[ln + lp] = 36.0  # ceil(36 / 3.6) = 10 replicas = 20 GPUs = 5 nodes
    batch, _ = predictive.decide(NOW, state, {"svc-0": exact("svc-0", spike_at_lead)}, empty_log(state), SIZING)
    assert batch.node_floor.tolist() == [5]
    assert int(batch.replicas[0]) == 1  # no replica is wanted yet: the spike is beyond startup
    decisions = batch.decisions(state)
    node_decisions = [d for d in decisions if d.kind == "nodes"]
    assert len(node_decisions) == 1 and node_decisions[0].desired == 5
    assert node_decisions[0].reasons[0].code == "NODES_AHEAD"
    assert "540" in node_decisions[0].explain()  # the lead: 360 + 180 s

    spike_later = [1.0] * 12
    spike_later[ln + lp + 1] = 36.0  # one step beyond the node lead: not asked for yet
    batch, _ = predictive.decide(NOW, state, {"svc-0": exact("svc-0", spike_later)}, empty_log(state), SIZING)
    assert batch.node_floor.tolist() == [1]  # ceil(1 replica * 2 GPUs / 4)

    spike_at_startup = [1.0] * 12
    spike_at_startup[lp] = 36.0
    batch, _ = predictive.decide(NOW, state, {"svc-0": exact("svc-0", spike_at_startup)}, empty_log(state), SIZING)
    assert int(batch.replicas[0]) == 10
    assert batch.node_floor.tolist() == [5]


def test_predictive_node_floor_sums_workloads_of_a_pool_and_separates_pools() -> None:
    state = make_state(
        3, pools=2, pool=[0, 0, 1], replicas=1, capacity_rps=1.0, demand_rps=1.0, gpus_per_replica=[1, 2, 1],
        startup_seconds=0.0, pool_gpus_per_node=[4, 8], pool_provisioning_seconds=0.0,
    )
    # target 0.9: 2.7 rps -> 3 replicas each.
    forecasts = {name: exact(name, [2.7] * 4) for name in state.workloads.names}
    batch, _ = predictive.decide(NOW, state, forecasts, empty_log(state), SIZING)
    assert batch.replicas.tolist() == [3, 3, 3]
    # pool 0: 3 * 1 + 3 * 2 = 9 GPUs -> 3 nodes of 4; pool 1: 3 GPUs -> 1 node of 8.
    assert batch.node_floor.tolist() == [3, 1]


# --------------------------------------------------------------------------------------------
# Predictive: warm replicas on idle GPUs of nodes billed anyway (fill_idle_gpus, the default)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WarmCase:
    name: str
    state: dict
    forecasts: dict  # workload index -> exact forecast values
    n: int
    want_sized: list
    want_replicas: list
    want_node_floor: list


WARM_CASES = [
    WarmCase(
        # The forecast needs 10 one-GPU replicas within the node lead: 2 nodes of 8 = 16 GPUs; 6 idle.
        "warm fill: the idle GPUs of the planned nodes run warm replicas",
        dict(replicas=2, capacity_rps=4.0, demand_rps=5.0, pool_gpus_per_node=8),
        {0: (5.0, 5.0, 5.0, 36.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0)}, 1,
        want_sized=[10], want_replicas=[16], want_node_floor=[2],
    ),
    WarmCase(
        "warm fill: a plan that fills its nodes exactly adds nothing",
        dict(replicas=2, capacity_rps=4.0, demand_rps=5.0, pool_gpus_per_node=8),
        {0: (28.8,) * 10}, 1,  # ceil(28.8 / 3.6) = 8: one full node
        want_sized=[8], want_replicas=[8], want_node_floor=[1],
    ),
    WarmCase(
        "warm fill: never above max replicas",
        dict(replicas=2, max_replicas=12, capacity_rps=4.0, demand_rps=5.0, pool_gpus_per_node=8),
        {0: (36.0,) * 10}, 1,
        want_sized=[10], want_replicas=[12], want_node_floor=[2],
    ),
    WarmCase(
        "warm fill: spare GPUs are shared in proportion to the GPUs each workload uses",
        # sized 3 (1 GPU each) + 3 (2 GPUs each) = 9 GPUs on 2 nodes of 8: 7 spare, shared 3:6 ->
        # floor(7 / 3) = 2 GPUs -> 2 more of w0, floor(14 / 3) = 4 GPUs -> 2 more of w1.
        dict(replicas=1, capacity_rps=1.0, demand_rps=1.0, gpus_per_replica=[1, 2], startup_seconds=0.0,
             pool_gpus_per_node=8, pool_provisioning_seconds=0.0),
        {0: (2.7,) * 4, 1: (2.7,) * 4}, 2,
        want_sized=[3, 3], want_replicas=[5, 5], want_node_floor=[2],
    ),
    WarmCase(
        "warm fill: a workload with no replicas gets no share",
        dict(replicas=[1, 0], min_replicas=0, capacity_rps=1.0, demand_rps=[1.0, 0.0], startup_seconds=0.0,
             pool_gpus_per_node=8, pool_provisioning_seconds=0.0),
        {0: (2.7,) * 4, 1: (0.0,) * 4}, 2,
        want_sized=[3, 0], want_replicas=[8, 0], want_node_floor=[1],
    ),
]


@pytest.mark.parametrize("case", WARM_CASES, ids=[c.name for c in WARM_CASES])
def test_predictive_warm_fill_scenario(case: WarmCase) -> None:
    state = make_state(case.n, **case.state)
    names = state.workloads.names
    forecasts = {names[i]: exact(names[i], v) for i, v in case.forecasts.items()}
    config = PredictiveConfig()
    assert config.fill_idle_gpus is True  # the default
    batch, _ = predictive.decide(NOW, state, forecasts, empty_log(state), config)
    sized, _ = predictive.decide(NOW, state, forecasts, empty_log(state), SIZING)
    assert sized.replicas.tolist() == case.want_sized
    assert batch.replicas.tolist() == case.want_replicas
    assert batch.node_floor.tolist() == sized.node_floor.tolist() == case.want_node_floor
    # Never a node more than the plan needs anyway.
    gpus = np.bincount(state.workloads.pool, weights=batch.replicas * state.workloads.gpus_per_replica,
                       minlength=len(state.node_pools))
    sized_gpus = np.bincount(state.workloads.pool, weights=sized.replicas * state.workloads.gpus_per_replica,
                             minlength=len(state.node_pools))
    planned_nodes = np.maximum(np.ceil(sized_gpus / state.node_pools.gpus_per_node), batch.node_floor)
    assert (np.ceil(gpus / state.node_pools.gpus_per_node) <= planned_nodes).all()
    for i in range(case.n):
        warm = case.want_replicas[i] - case.want_sized[i]
        assert (ReasonCode.WARM_FILL in codes(batch, i)) == (warm > 0)
        assert ReasonCode.WARM_FILL not in codes(sized, i)
        if warm > 0:
            (d,) = [d for d in batch.decisions(state) if d.target == names[i]]
            assert f"{warm} more kept warm on idle GPUs" in d.explain()
            assert f"(sized {case.want_sized[i]})" in d.explain()


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


def test_explain_quotes_the_forecast() -> None:
    state = make_state(1, names=("chat",), replicas=2, capacity_rps=4.0, demand_rps=5.0, startup_seconds=180.0)
    batch, _ = predictive.decide(NOW, state, {"chat": exact("chat", [5, 5, 5, 36.0, 5, 5, 5, 5, 5, 5])},
                                 empty_log(state), SIZING)
    (d, *_nodes) = batch.decisions(state)
    text = d.explain()
    assert "chat: scale up replicas 2 -> 10 (predictive)" in text
    assert "36.0 rps" in text and "180 s" in text and "needs 10" in text and "q0.95" in text


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


def _nodes_for(state: ClusterState, replicas: np.ndarray) -> np.ndarray:
    wl, pools = state.workloads, state.node_pools
    gpus = np.bincount(wl.pool, weights=replicas * wl.gpus_per_replica, minlength=len(pools))
    return np.ceil(gpus / pools.gpus_per_node - 1e-9).astype(np.int64)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(random_situations(), st.booleans())
def test_predictive_is_never_below_reactive(situation, fill) -> None:
    state, forecasts, log = situation
    config = PredictiveConfig(fill_idle_gpus=fill)
    p, p_log = predictive.decide(NOW, state, forecasts, log, config)
    r, r_log = reactive.decide(NOW, state, None, log, config.reactive)
    assert (p.replicas >= r.replicas).all(), (p.replicas, r.replicas)
    # The same log either way: the forecast adds no hidden memory.
    assert np.array_equal(p_log.recommendations, r_log.recommendations)
    sized = np.asarray(p.detail["sized"]) if fill else p.replicas
    assert (p.replicas >= sized).all()
    if not fill:
        assert ReasonCode.WARM_FILL not in ReasonCode(int(np.bitwise_or.reduce(p.reasons)))
    for i, name in enumerate(state.workloads.names):
        got = codes(p, i)
        exclusive = [c for c in (ReasonCode.FORECAST_UP, ReasonCode.REACTIVE_FLOOR, ReasonCode.FALLBACK_FORECAST) if c in got]
        assert len(exclusive) == 1, got
        assert (ReasonCode.WARM_FILL in got) == (p.replicas[i] > sized[i])
        if name not in forecasts:
            assert exclusive == [ReasonCode.FALLBACK_FORECAST]
            assert sized[i] == r.replicas[i]
        elif sized[i] > r.replicas[i]:
            assert exclusive == [ReasonCode.FORECAST_UP]
        else:
            assert exclusive == [ReasonCode.REACTIVE_FLOOR]
            assert sized[i] == r.replicas[i]
    # Warm replicas never need a node the plan would not have anyway.
    planned = np.minimum(np.maximum(_nodes_for(state, sized), p.node_floor), state.node_pools.max_nodes)
    assert (_nodes_for(state, p.replicas) <= np.maximum(planned, _nodes_for(state, sized))).all()


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


def test_predictive_decision_names_the_forecast_it_used() -> None:
    state, batch = _rate_limited_situation()
    (decision,) = [d for d in batch.decisions(state) if d.kind == "replicas"]
    model = exact("chat", [1.0]).model
    assert decision.forecast_ref.startswith(f"{model}@")
    assert f"forecast ({model}) q" in decision.explain()
    assert ScalingDecision.from_json(decision.to_json()) == decision
