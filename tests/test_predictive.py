"""Tests for the predictive policy (``policies.predictive.decide``): sentence-named scenarios, then
properties over random clusters and forecasts.

Figures used throughout unless a row says otherwise (``tests.test_policies.make_state``'s
defaults): 60 s steps, replica startup 180 s (L_pod = 3 steps), node provisioning 360 s
(L_node = 6 steps), 8-GPU nodes at $2.50/GPU-h, one GPU per replica, $50/h SLO-miss cost. So the
idle cost of a replica is $2.50/h, the newsvendor sizing quantile 50 / 52.5 = 0.952 and the keep
quantile 1 - 2.5 / 50 = 0.95. Most rows use ``capacity_rps=1`` so a forecast of ``x`` rps needs
``ceil(x)`` replicas at 100 % target utilisation (every setting is pinned in ``SIZING``). Step limits at 60 s: up by
``max(current, 4)``, down by ``max(floor(current / 2), 1)``.

The tests under "Explanations that misstate their figures" and the pool and stabilization ones
that name a defect were written against bugs a review found (each failed before its fix).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields, replace
from typing import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forecasters.series import Forecast
from policies import predictive, reactive
from policies.forecasts import ForecastBatch
from policies.leadtime import lead_steps
from policies.packing import nodes_for
from policies.predictive import PredictiveConfig
from policies.reactive import ReactiveConfig
from policies.types import ClusterState, DecisionBatch, DecisionLog, ReasonCode, ScalingDecision
from tests.test_policies import NOW, STEP, codes, empty_log, exact, make_state, with_columns, with_quantiles

# Every setting the figures below depend on, pinned (defaults are tuning choices that may move).
# The forecast sizing alone: no warm replicas on idle GPUs (tested apart, below).
SIZING = PredictiveConfig(
    quantile=None, slo_miss_cost_per_hour=50.0, target_utilization=1.0, keep_warm=True, fill_idle_gpus=False,
    scale_down_stabilization_seconds=0.0, max_scale_up_per_minute=1.0, max_scale_down_per_minute=0.5,
    pool_stickiness=0.05, quality_gate_ratio=5.0, quality_recover_ratio=2.0, floor_utilization=1.0,
    follow_trend=False, reactive=ReactiveConfig(target_utilization=0.7, tolerance=0.1, scale_down_stabilization_seconds=300.0),
)
# Sizing without GPU-economics keeps either, for rows about other rules.
BARE = replace(SIZING, keep_warm=False)
# With warm replicas on the idle GPUs of planned nodes.
FILLING = replace(SIZING, fill_idle_gpus=True)


def decide(state: ClusterState, forecasts, config: PredictiveConfig = SIZING, log: DecisionLog | None = None,
           now: float | None = None) -> tuple[DecisionBatch, DecisionLog]:
    now = state.observed_at if now is None else now
    return predictive.decide(now, state, forecasts, empty_log(state) if log is None else log, config)


def explain(batch: DecisionBatch, state: ClusterState, i: int = 0) -> str:
    (d,) = [d for d in batch.decisions(state) if d.kind == "replicas" and d.target == state.workloads.names[i]]
    return d.explain()


def levels(name: str, quantiles: dict[float, list[float] | float], horizon: int = 20, now: float = NOW,
           step: float = STEP) -> Forecast:
    """A quantile forecast issued one step before ``now``; a scalar level is flat over ``horizon``."""
    values = {q: np.full(horizon, float(v)) if np.isscalar(v) else np.asarray(v, float) for q, v in quantiles.items()}
    return Forecast(name, now - step, step, values, "test")


def spike(base: float, at: int, value: float, horizon: int = 30) -> list[float]:
    values = [base] * horizon
    values[at] = value
    return values


# --------------------------------------------------------------------------------------------
# One call: table-driven scenarios
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    state: dict
    forecast: tuple[float, ...] | Callable[[str], Forecast] | None  # exact values from now; None: no forecast
    want_replicas: int
    want_codes: ReasonCode
    absent_codes: ReasonCode = ReasonCode(0)
    config: PredictiveConfig = SIZING
    columns: dict = field(default_factory=dict)  # optional WorkloadTable columns
    want_proposed: int | None = None
    want_text: tuple[str, ...] = ()
    want_node_floor: list | None = None


FORECAST_ONLY = ReasonCode.FORECAST_UP | ReasonCode.REACTIVE_FLOOR | ReasonCode.FALLBACK_FORECAST | ReasonCode.QUALITY_GATE

CASES = [
    Case(
        # cap 4: a 20 rps peak at now + 3 steps (inside the 180 s startup) needs 5; from 2 the step
        # limit is 6; the safety net for 5 rps observed is 2.
        "forecast up: a peak within the startup lead asks for more than the safety net",
        dict(replicas=2, capacity_rps=4.0, demand_rps=5.0),
        forecast=(5.0, 5.0, 5.0, 20.0) + (5.0,) * 10,
        want_replicas=5, want_codes=ReasonCode.FORECAST_UP,
        absent_codes=ReasonCode.REACTIVE_FLOOR | ReasonCode.RATE_LIMITED | ReasonCode.CLAMPED_MAX,
        want_text=("peaks at 20.0 rps within the next 180 s", "needs 5 at 4.00 rps/replica"),
    ),
    Case(
        "a peak beyond the startup lead is not asked for yet",
        dict(replicas=2, capacity_rps=4.0, demand_rps=5.0),
        forecast=(5.0, 5.0, 5.0, 5.0, 20.0) + (5.0,) * 10,
        want_replicas=2, want_codes=ReasonCode.REACTIVE_FLOOR,
        absent_codes=ReasonCode.FORECAST_UP,
    ),
    Case(
        # 40 rps observed needs 10 at 4 rps/replica; the forecast of 8 rps needs 2.
        "reactive floor wins when observed load exceeds the forecast, and says so",
        dict(replicas=10, capacity_rps=4.0, demand_rps=40.0),
        forecast=(8.0,) * 12,
        want_replicas=10, want_codes=ReasonCode.REACTIVE_FLOOR,
        absent_codes=ReasonCode.FORECAST_UP | ReasonCode.FALLBACK_FORECAST | ReasonCode.KEPT_WARM,
        want_text=("observed 40.0 rps needs 10 at 100% of 4.00 rps/replica, at least the forecast's 2, "
                   "so the reactive floor won",),
    ),
    Case(
        # From 2 a forecast-driven step may reach 6; the safety net is not a forecast: it serves
        # observed load at once.
        "the reactive floor is not rate limited: observed load is served at once",
        dict(replicas=2, capacity_rps=4.0, demand_rps=40.0),
        forecast=(8.0,) * 12,
        want_replicas=10, want_codes=ReasonCode.REACTIVE_FLOOR,
        absent_codes=ReasonCode.RATE_LIMITED | ReasonCode.FORECAST_UP,
    ),
    Case(
        # 32 rps at 80 % of 4 rps/replica: ceil(32 / 3.2) = 10 (at 100 % it would be 8).
        "a lower floor utilisation raises the safety net",
        dict(replicas=10, capacity_rps=4.0, demand_rps=32.0),
        forecast=(8.0,) * 12,
        want_replicas=10, want_codes=ReasonCode.REACTIVE_FLOOR,
        config=replace(SIZING, floor_utilization=0.8),
        want_text=("at 80% of 4.00 rps/replica",),
    ),
    Case(
        # reactive (HPA at 70 %): 20 / 2.8 -> 8.
        "no forecast falls back to reactive and says so",
        dict(replicas=2, capacity_rps=4.0, demand_rps=20.0),
        forecast=None,
        want_replicas=8, want_codes=ReasonCode.FALLBACK_FORECAST | ReasonCode.REACTIVE,
        absent_codes=ReasonCode.FORECAST_UP | ReasonCode.REACTIVE_FLOOR | ReasonCode.QUALITY_GATE,
        want_text=("no usable forecast (no forecast for this workload), so reactive alone decided",
                   "at 70% target asks for 8"),
    ),
    Case(
        "a closed quality gate falls back to reactive and says why",
        dict(replicas=2, capacity_rps=4.0, demand_rps=20.0),
        forecast=(100.0,) * 12,
        columns=dict(forecast_error_ratio=[7.5]),
        want_replicas=8, want_codes=ReasonCode.QUALITY_GATE | ReasonCode.REACTIVE,
        absent_codes=ReasonCode.FORECAST_UP | ReasonCode.FALLBACK_FORECAST,
        want_text=("live forecast error 7.5x its backtest baseline; gate at 5.0x, reopens below 2.0x",),
    ),
    Case(
        # with_quantiles: median 7, 0.95 level 18 rps; sizing at q0.952 reads the highest level.
        "the sizing quantile reads the forecast's upper level, not the median",
        dict(replicas=1, capacity_rps=4.0, demand_rps=1.0),
        forecast=lambda name: with_quantiles(name, median=[7.0] * 10, upper=[18.0] * 10),
        want_replicas=5, want_codes=ReasonCode.FORECAST_UP,
        want_text=("q0.952 peaks at 18.0 rps",),
    ),
    Case(
        # cap 4: 100 rps needs 25 > max 6; proposed keeps the uncapped need.
        "a forecast above max replicas is capped, says CLAMPED_MAX and proposes the uncapped need",
        dict(replicas=4, max_replicas=6, capacity_rps=4.0, demand_rps=5.0),
        forecast=(100.0,) * 12,
        want_replicas=6, want_proposed=25, want_codes=ReasonCode.FORECAST_UP | ReasonCode.CLAMPED_MAX,
        want_text=("capped at max replicas 6",),
    ),
    Case(
        # startup 60 s = 1 step: [now, now + 1] needs ceil(5 / 1) = 5; the 100 rps later is beyond it.
        "a forecast above max beyond the startup lead is not a max clamp",
        dict(replicas=2, max_replicas=6, capacity_rps=1.0, demand_rps=1.0, startup_seconds=60.0),
        forecast=(5.0, 5.0) + (100.0,) * 10,
        want_replicas=5, want_codes=ReasonCode.FORECAST_UP,
        absent_codes=ReasonCode.CLAMPED_MAX,
    ),
    # min and max replicas clamp last (after the step limits, the safety net and the keep).
    Case(
        # From 20 the step limit allows down to 10; max 8 takes it lower still.
        "min and max replicas clamp last: above max falls to max past the scale-down step limit",
        dict(replicas=20, max_replicas=8, capacity_rps=1.0, demand_rps=2.0),
        forecast=(2.0,) * 12, config=BARE,
        want_replicas=8, want_codes=ReasonCode.CLAMPED_MAX,
    ),
    Case(
        # From 1 the step limit allows up to 5; min 10 takes it higher still.
        "min and max replicas clamp last: below min rises to min past the scale-up step limit",
        dict(replicas=1, min_replicas=10, capacity_rps=1.0, demand_rps=1.0),
        forecast=(2.0,) * 12, config=BARE,
        want_replicas=10, want_codes=ReasonCode.CLAMPED_MIN,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_predictive_scenario(case: Case) -> None:
    _check(case)


def _check(case: Case) -> None:
    state = with_columns(make_state(1, **case.state), **case.columns)
    name = state.workloads.names[0]
    if case.forecast is None:
        forecasts = {}
    elif callable(case.forecast):
        forecasts = {name: case.forecast(name)}
    else:
        forecasts = {name: exact(name, case.forecast)}
    batch, log = decide(state, forecasts, case.config)
    got = codes(batch)
    assert int(batch.replicas[0]) == case.want_replicas, got
    assert case.want_codes in got, f"reasons {got!r} lack {case.want_codes!r}"
    assert not (got & case.absent_codes), f"reasons {got!r} should not include {case.absent_codes!r}"
    assert len([c for c in FORECAST_ONLY if c in got]) == 1, got  # which of them decided is always one
    if case.want_proposed is not None:
        assert int(batch.proposed[0]) == case.want_proposed
    if case.want_node_floor is not None:
        assert batch.node_floor.tolist() == case.want_node_floor
    text = explain(batch, state)
    for words in case.want_text:
        assert words in text, text
    wl = state.workloads
    assert wl.min_replicas[0] <= batch.replicas[0] <= wl.max_replicas[0]
    if ReasonCode.FALLBACK_FORECAST in got or ReasonCode.QUALITY_GATE in got:
        # Exactly the reactive answer, and the node floor is only what that answer's replicas
        # take (nothing from a forecast nobody trusts).
        r, _ = reactive.decide(NOW, state, None, empty_log(state), case.config.reactive)
        assert batch.replicas.tolist() == r.replicas.tolist()
        assert batch.node_floor.tolist() == nodes_for(state, r.replicas).tolist()
        assert name in batch.fallbacks
        assert int(log.forecast_recs[-1, 0]) == -1  # the policy's own memory records no answer


def test_explain_quotes_the_forecast_and_names_it() -> None:
    state = make_state(1, names=("chat",), replicas=2, capacity_rps=4.0, demand_rps=5.0, startup_seconds=180.0)
    forecast = exact("chat", [5, 5, 5, 20.0] + [5] * 6)
    batch, _ = decide(state, {"chat": forecast})
    (d, *_nodes) = batch.decisions(state)
    text = d.explain()
    assert text.startswith("chat: scale up replicas 2 -> 5 (predictive): ")
    assert f"forecast ({forecast.model}) q0.952 peaks at 20.0 rps within the next 180 s" in text
    assert "needs 5 at 4.00 rps/replica (100% of 4.00; the load observed now needs 2)" in text
    assert d.forecast_ref == f"{forecast.model}@{forecast.issued_at:.0f}"
    assert ScalingDecision.from_json(d.to_json()) == d


def test_forecast_up_quotes_the_planned_load_per_replica_not_the_slo_capacity() -> None:
    # At an 80 % planning target a replica is sized for 3.2 rps: 20 rps needs 7, not 5.
    state = make_state(1, names=("chat",), replicas=4, capacity_rps=4.0, demand_rps=5.0, startup_seconds=180.0)
    batch, _ = decide(state, {"chat": exact("chat", [5, 5, 5, 20.0] + [5] * 6)}, replace(SIZING, target_utilization=0.8))
    assert int(batch.replicas[0]) == 7
    assert "needs 7 at 3.20 rps/replica (80% of 4.00; the load observed now needs 2)" in explain(batch, state)


def test_a_fallback_decision_quotes_reactive_s_own_step_limit() -> None:
    # No forecast: reactive decides, and a rate-limited answer quotes reactive's limit.
    state = make_state(1, names=("chat",), replicas=2, capacity_rps=1.0, demand_rps=40.0)
    batch, _ = decide(state, None)
    r, _ = reactive.decide(NOW, state, None, empty_log(state), ReactiveConfig())
    assert ReasonCode.RATE_LIMITED in codes(batch) and ReasonCode.FALLBACK_FORECAST in codes(batch)
    assert float(batch.detail["rate_limit"][0]) == float(r.detail["rate_limit"][0]) == int(batch.replicas[0])
    assert f"step limited to {int(batch.replicas[0])} this time" in explain(batch, state)


# --------------------------------------------------------------------------------------------
# Ramping ahead of a forecast peak: nodes one provisioning time early, replicas one startup early
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RampCase:
    name: str
    startup: float
    provisioning: float
    step: float = STEP


RAMP_CASES = [
    RampCase("startup 180 s, provisioning 360 s", 180.0, 360.0),
    RampCase("no startup delay", 0.0, 360.0),
    RampCase("nodes ready at once", 180.0, 0.0),
    RampCase("startup 300 s, provisioning 600 s", 300.0, 600.0),
    RampCase("30 s steps: the lead times in steps double", 180.0, 360.0, step=30.0),
    RampCase("a startup of a step and a half rounds up to two", 90.0, 360.0),
]
PEAK = 20  # the forecast peaks at step PEAK after the first call


def _ramp(case: RampCase):
    """(j, batch, state) for calls at steps j = 0..PEAK, one forecast issued before the first.

    4 GPUs per replica on 8-GPU nodes: the 1 rps base needs 1 replica (1 node), the 3 rps peak
    3 replicas (12 GPUs, 2 nodes; within the step limit from 1 at 30 s steps too). The count is
    held at 1 (nothing is applied between calls).
    """
    forecast = Forecast.exact("svc-0", NOW - case.step, case.step, np.asarray(spike(1.0, PEAK, 3.0, 40)))
    for j in range(PEAK + 1):
        now = NOW + j * case.step
        state = make_state(1, now=now, step_seconds=case.step, replicas=1, capacity_rps=1.0, demand_rps=1.0,
                           gpus_per_replica=4, startup_seconds=case.startup,
                           pool_provisioning_seconds=case.provisioning, pool_gpus_per_node=8)
        batch, _ = decide(state, {"svc-0": forecast})
        yield j, batch, state


@pytest.mark.parametrize("case", RAMP_CASES, ids=[c.name for c in RAMP_CASES])
def test_ramp_ahead_nodes_requested_one_provisioning_time_before_the_forecast_peak(case: RampCase) -> None:
    lp, ln = lead_steps(case.startup, case.step), lead_steps(case.provisioning, case.step)
    first = PEAK - ln - lp  # the peak enters [t, t + L_node + L_pod]
    assert first >= 1, "the table must leave room for a call before the ramp"
    for j, batch, state in _ramp(case):
        want = 2 if j >= first else 1
        assert batch.node_floor.tolist() == [want], f"step {j} (nodes from step {first})"
        if j == first:
            (nodes,) = [d for d in batch.decisions(state) if d.kind == "nodes"]
            assert nodes.desired == 2 and nodes.reasons[0].code == "NODES_AHEAD"
            assert f"over the next {case.provisioning + case.startup:.0f} s" in nodes.explain()
            # Nodes first: no replica is wanted yet unless the startup is all the lead there is.
            assert int(batch.replicas[0]) == (3 if ln == 0 else 1)


@pytest.mark.parametrize("case", RAMP_CASES, ids=[c.name for c in RAMP_CASES])
def test_ramp_ahead_replicas_requested_one_startup_time_before_the_forecast_peak(case: RampCase) -> None:
    lp = lead_steps(case.startup, case.step)
    first = PEAK - lp  # the peak enters [t, t + L_pod]
    for j, batch, state in _ramp(case):
        if j < first:
            assert int(batch.replicas[0]) == 1, f"step {j} (replicas from step {first})"
            assert codes(batch) == ReasonCode.REACTIVE_FLOOR
        else:
            assert int(batch.replicas[0]) == 3, f"step {j}"
            assert codes(batch) == ReasonCode.FORECAST_UP
            assert f"peaks at 3.0 rps within the next {lp * case.step:.0f} s" in explain(batch, state)


# --------------------------------------------------------------------------------------------
# Over a sequence of calls
# --------------------------------------------------------------------------------------------


def _run(calls, config: PredictiveConfig, start: int, forecast_for, demand_for, **state_kw):
    """Apply each answer before the next call; returns the counts decided, the batches and states."""
    log = DecisionLog.empty(("svc-0",))
    current, counts, seen = start, [], []
    for k in range(calls):
        now = NOW + k * STEP
        state = make_state(1, now=now, replicas=current, demand_rps=demand_for(k), **state_kw)
        batch, log = predictive.decide(now, state, {"svc-0": forecast_for(k, now)}, log, config)
        current = int(batch.replicas[0])
        counts.append(current)
        seen.append((batch, state))
    return counts, seen


def test_flat_forecast_inside_the_tolerance_does_not_flap() -> None:
    """A forecast re-issued every step around 30 rps +- 0.4 (cap 4 rps: 7.4 to 7.6 replicas) and
    observed load the same: every call asks for 8, with the default config (warm fill included)."""
    rng = np.random.default_rng(7)
    noise = lambda n: rng.uniform(-0.4, 0.4, n)  # noqa: E731
    forecast = lambda k, now: with_quantiles("svc-0", 26.0 + noise(12), 30.0 + noise(12), now=now)  # noqa: E731
    counts, seen = _run(30, FILLING, 8, forecast, lambda k: 30.0 + float(noise(1)[0]), capacity_rps=4.0)
    assert counts == [8] * 30
    for batch, _ in seen:
        assert not codes(batch) & (ReasonCode.RATE_LIMITED | ReasonCode.STABILIZED | ReasonCode.KEPT_WARM | ReasonCode.WARM_FILL)


def _boundary_forecast(k: int, now: float) -> Forecast:
    # Absolute step a = k + h: 28.3 rps (8 replicas at cap 4) every 6th step, 27.7 (7) otherwise.
    # The 4-step sizing window [t, t + 3] misses the 8s at some calls; the 10-step cold-start
    # window [t, t + 9] never does.
    upper = np.array([28.3 if (k + h) % 6 == 0 else 27.7 for h in range(16)])
    return with_quantiles("svc-0", np.full(16, 20.0), upper, now=now)


def test_noise_across_a_replica_boundary_is_held_by_gpu_economics_not_flapped() -> None:
    kw = dict(capacity_rps=4.0)
    flapping, _ = _run(18, BARE, 8, _boundary_forecast, lambda k: 20.0, **kw)
    assert 7 in flapping and flapping.count(8) > 1, flapping  # without the keep it flaps 8 -> 7 -> 8
    changes = sum(a != b for a, b in zip(flapping, flapping[1:]))
    assert changes >= 4, flapping
    held, seen = _run(18, SIZING, 8, _boundary_forecast, lambda k: 20.0, **kw)
    assert held == [8] * 18
    assert any(ReasonCode.KEPT_WARM in codes(b) for b, _ in seen)


@dataclass(frozen=True)
class GateCall:
    ratio: float  # forecast_error_ratio (NaN: unknown this call)
    closed: bool  # expected gate state after the call


GATE_CALLS = [
    GateCall(1.0, False),
    GateCall(5.0, False),  # at the threshold, not above it: still open
    GateCall(6.0, True),  # above 5.0: closes
    GateCall(4.0, True),  # below 5 but above the recover ratio 2.0: stays closed
    GateCall(math.nan, True),  # unknown: keeps its state
    GateCall(2.5, True),
    GateCall(1.9, False),  # below 2.0: reopens
    GateCall(4.0, False),  # open again: 4 is below the close threshold
    GateCall(math.nan, False),
    GateCall(5.1, True),
]


def test_quality_gate_closes_above_the_threshold_stays_closed_until_the_error_recovers_below_the_recover_ratio_then_reopens() -> None:
    """cap 1, 4 replicas, 4 rps observed: the forecast of 8 rps asks for 8; reactive (70 %) for 6.
    The log is threaded through JSON between calls: the gate's memory replays."""
    config = SIZING
    assert (config.quality_gate_ratio, config.quality_recover_ratio) == (5.0, 2.0)
    log = DecisionLog.empty(("svc-0",))
    for k, call in enumerate(GATE_CALLS):
        now = NOW + k * STEP
        state = with_columns(make_state(1, now=now, replicas=4, capacity_rps=1.0, demand_rps=4.0),
                             forecast_error_ratio=[call.ratio])
        batch, log = predictive.decide(now, state, {"svc-0": exact("svc-0", [8.0] * 12, now=now)}, log, config)
        log = DecisionLog.from_json(log.to_json())
        where = f"call {k} (ratio {call.ratio})"
        assert log.gated.tolist() == [call.closed], where
        if call.closed:
            assert int(batch.replicas[0]) == 6, where
            assert codes(batch) == ReasonCode.QUALITY_GATE | ReasonCode.REACTIVE, where
            assert batch.fallbacks["svc-0"].startswith("live forecast error " if math.isfinite(call.ratio) else "no live error")
            if math.isfinite(call.ratio):
                assert f"live forecast error {call.ratio:.1f}x its backtest baseline; gate at 5.0x" in explain(batch, state)
        else:
            assert int(batch.replicas[0]) == 8, where
            assert codes(batch) == ReasonCode.FORECAST_UP, where
            assert batch.fallbacks == {}


def test_a_gate_held_closed_by_an_unknown_error_ratio_says_so_without_nan() -> None:
    state = with_columns(make_state(1, replicas=4, capacity_rps=1.0, demand_rps=4.0), forecast_error_ratio=[math.nan])
    closed = DecisionLog(("svc-0",), np.zeros(0), np.zeros((0, 1), dtype=np.int64), np.array([True]), None)
    batch, log = decide(state, {"svc-0": exact("svc-0", [8.0] * 12)}, SIZING, closed)
    assert log.gated.tolist() == [True] and ReasonCode.QUALITY_GATE in codes(batch)
    assert "nan" not in batch.fallbacks["svc-0"] and "nan" not in explain(batch, state)


def test_quality_gate_is_per_workload() -> None:
    state = with_columns(make_state(2, replicas=4, capacity_rps=1.0, demand_rps=4.0), forecast_error_ratio=[9.0, 1.0])
    forecasts = {name: exact(name, [8.0] * 12) for name in state.workloads.names}
    batch, log = decide(state, forecasts)
    assert batch.replicas.tolist() == [6, 8]
    assert log.gated.tolist() == [True, False]
    assert list(batch.fallbacks) == ["svc-0"]


def test_stabilization_window_holds_a_scale_down_for_its_duration() -> None:
    """Window 300 s, no keep, no step limit in the way: the 10 answered at t = 0 holds the count
    at 10 while the forecast asks for 3, at every call up to and including t + 300."""
    config = replace(BARE, scale_down_stabilization_seconds=300.0, max_scale_down_per_minute=1.0)
    needs = [10.0] + [3.0] * 5  # t = 0, 60, ..., 300
    counts, seen = _run(len(needs), config, 10, lambda k, now: exact("svc-0", [needs[k]] * 12, now=now),
                        lambda k: 1.0, capacity_rps=1.0)
    assert counts == [10] * 6
    for k, (batch, _) in enumerate(seen):
        assert (ReasonCode.STABILIZED in codes(batch)) == (k > 0), k
    # Without the window the same scale-down is immediate.
    counts, _ = _run(len(needs), replace(config, scale_down_stabilization_seconds=0.0), 10,
                     lambda k, now: exact("svc-0", [needs[k]] * 12, now=now), lambda k: 1.0, capacity_rps=1.0)
    assert counts == [10, 3, 3, 3, 3, 3]


def test_stabilization_holds_at_the_highest_recent_answer_not_the_current_count() -> None:
    config = replace(BARE, scale_down_stabilization_seconds=300.0, max_scale_down_per_minute=1.0)
    state = make_state(1, replicas=10, capacity_rps=1.0, demand_rps=1.0)
    _, log = decide(state, {"svc-0": exact("svc-0", [10.0] * 12)}, config)
    state = make_state(1, now=NOW + STEP, replicas=12, capacity_rps=1.0, demand_rps=1.0)  # someone scaled to 12
    batch, _ = decide(state, {"svc-0": exact("svc-0", [3.0] * 12, now=NOW + STEP)}, config, log)
    assert int(batch.replicas[0]) == 10
    assert ReasonCode.STABILIZED in codes(batch)


def test_stabilization_window_releases_a_scale_down_once_the_window_has_passed() -> None:
    config = replace(BARE, scale_down_stabilization_seconds=300.0, max_scale_down_per_minute=1.0)
    needs = [10.0] + [3.0] * 7  # t = 0 .. 420
    counts, _ = _run(len(needs), config, 10, lambda k, now: exact("svc-0", [needs[k]] * 12, now=now),
                     lambda k: 1.0, capacity_rps=1.0)
    # Like the HPA: the highest *recommendation* in [t - 300, t]; t = 0's 10 leaves it at t = 360.
    assert counts == [10, 10, 10, 10, 10, 10, 3, 3]


def test_stabilized_sentence_quotes_the_predictive_window_and_the_count_it_held() -> None:
    config = replace(BARE, scale_down_stabilization_seconds=600.0, max_scale_down_per_minute=1.0)
    state = make_state(1, replicas=10, capacity_rps=1.0, demand_rps=1.0)
    _, log = decide(state, {"svc-0": exact("svc-0", [10.0] * 12)}, config)
    state = make_state(1, now=NOW + STEP, replicas=10, capacity_rps=1.0, demand_rps=1.0)
    batch, _ = decide(state, {"svc-0": exact("svc-0", [3.0] * 12, now=NOW + STEP)}, config, log)
    assert int(batch.replicas[0]) == 10 and ReasonCode.STABILIZED in codes(batch)
    assert "the highest recommendation in the last 600 s is 10" in explain(batch, state)


# --------------------------------------------------------------------------------------------
# Missing metrics
# --------------------------------------------------------------------------------------------

MISSING_CASES = [
    Case(
        # The forecast asks for 2; with no observed demand the count holds at 6.
        "missing metrics never scale down: a low forecast holds the count",
        dict(replicas=6, capacity_rps=1.0, demand_rps=math.nan),
        forecast=(2.0,) * 12,
        want_replicas=6, want_codes=ReasonCode.STALE_METRICS,
        want_text=("the demand metric is missing, so the count holds at 6",),
    ),
    Case(
        "missing metrics never scale down, but a forecast may still scale up",
        dict(replicas=2, capacity_rps=1.0, demand_rps=math.nan),
        forecast=(5.0,) * 12,
        want_replicas=5, want_codes=ReasonCode.FORECAST_UP, absent_codes=ReasonCode.STALE_METRICS,
    ),
    Case(
        "missing metrics without a forecast hold the count (reactive)",
        dict(replicas=6, capacity_rps=1.0, demand_rps=math.nan),
        forecast=None,
        want_replicas=6, want_codes=ReasonCode.STALE_METRICS | ReasonCode.FALLBACK_FORECAST,
    ),
    Case(
        "missing metrics behind a closed quality gate hold the count",
        dict(replicas=6, capacity_rps=1.0, demand_rps=math.nan),
        forecast=(2.0,) * 12, columns=dict(forecast_error_ratio=[9.0]),
        want_replicas=6, want_codes=ReasonCode.STALE_METRICS | ReasonCode.QUALITY_GATE,
    ),
    Case(
        "missing metrics with GPU economics off still never scale down",
        dict(replicas=6, capacity_rps=1.0, demand_rps=math.nan),
        forecast=(0.0,) * 12, config=replace(BARE, max_scale_down_per_minute=1.0),
        want_replicas=6, want_codes=ReasonCode.STALE_METRICS,
    ),
]


@pytest.mark.parametrize("case", MISSING_CASES, ids=[c.name for c in MISSING_CASES])
def test_missing_metrics_scenario(case: Case) -> None:
    _check(case)


# --------------------------------------------------------------------------------------------
# Observed trend (follow_trend): a forecaster lagging a ramp does not make capacity late
# --------------------------------------------------------------------------------------------

RISING = 0.5 / 60.0  # rps per second: 0.5 rps a minute
TRENDING = replace(SIZING, follow_trend=True)  # set either way: the default is a tuning choice
TREND_CASES = [
    Case(
        # 4 rps now rising 0.5 rps/min: about 6 rps by the end of the 3-step startup (6 replicas)
        # and about 9 by the end of the 9-step cold start (9 one-GPU replicas: 2 nodes); the flat
        # forecast of 4 rps alone asks for 4 and 1 node.
        "a rising observed trend asks for more than a lagging forecast, and says so",
        dict(replicas=4, capacity_rps=1.0, demand_rps=4.0), forecast=(4.0,) * 12,
        columns=dict(demand_trend=[RISING]), config=TRENDING,
        want_replicas=6, want_codes=ReasonCode.FORECAST_UP | ReasonCode.TREND, want_node_floor=[2],
        want_text=("observed demand is rising 0.5 rps a minute",),
    ),
    Case(
        "with follow_trend off the forecast alone decides",
        dict(replicas=4, capacity_rps=1.0, demand_rps=4.0), forecast=(4.0,) * 12,
        columns=dict(demand_trend=[RISING]), config=replace(SIZING, follow_trend=False),
        want_replicas=4, want_codes=ReasonCode.REACTIVE_FLOOR, absent_codes=ReasonCode.TREND, want_node_floor=[1],
    ),
    Case(
        "a falling trend is not projected",
        dict(replicas=4, capacity_rps=1.0, demand_rps=4.0), forecast=(4.0,) * 12,
        columns=dict(demand_trend=[-RISING]), config=TRENDING,
        want_replicas=4, want_codes=ReasonCode.REACTIVE_FLOOR, absent_codes=ReasonCode.TREND, want_node_floor=[1],
    ),
    Case(
        "a forecast above the trend's projection wins without TREND",
        dict(replicas=4, capacity_rps=1.0, demand_rps=4.0), forecast=(7.0,) * 12,
        columns=dict(demand_trend=[RISING]), config=TRENDING,
        want_replicas=7, want_codes=ReasonCode.FORECAST_UP, absent_codes=ReasonCode.TREND,
    ),
    Case(
        "a trend without a usable forecast changes nothing: reactive decides",
        dict(replicas=4, capacity_rps=1.0, demand_rps=4.0), forecast=None,
        columns=dict(demand_trend=[RISING]), config=TRENDING,
        want_replicas=6, want_codes=ReasonCode.FALLBACK_FORECAST, absent_codes=ReasonCode.TREND,
    ),
]


@pytest.mark.parametrize("case", TREND_CASES, ids=[c.name for c in TREND_CASES])
def test_trend_scenario(case: Case) -> None:
    _check(case)


# --------------------------------------------------------------------------------------------
# Sizing quantile: newsvendor from the costs, or configured
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantileCase:
    name: str
    want_quantile: float
    want_replicas: int
    miss: float | None = None  # the WorkloadTable column (None: config's slo_miss_cost_per_hour)
    price: float = 2.5
    gpus_per_replica: int = 1
    quantile: float | None = None  # the WorkloadTable column (NaN: from the costs)
    config: PredictiveConfig = BARE


# Levels 0.5 / 0.9 / 0.99 at 3 / 6 / 9 rps (cap 1): between levels the quantile is interpolated.
# 5 replicas now: the step limits allow 3 to 10, so they never bind.
QUANTILE_CASES = [
    QuantileCase("a miss that costs what idling does sizes for the median", 0.5, 3, miss=2.5),
    QuantileCase("a miss 9x the idle cost sizes for q0.9", 0.9, 6, miss=22.5),
    QuantileCase("a higher miss cost sizes for a higher quantile: 99x sizes for q0.99", 0.99, 9, miss=247.5),
    QuantileCase("the default $50/h miss on a $2.50 GPU sizes for q0.952 (interpolated)", 50 / 52.5, 8),
    QuantileCase("a pricier GPU sizes for a lower quantile", 0.5, 3, miss=22.5, price=22.5),
    QuantileCase("a replica of more GPUs costs more idle: a lower quantile", 0.9, 6, miss=90.0, gpus_per_replica=4),
    QuantileCase("a configured quantile overrides the costs", 0.5, 3, miss=247.5, config=replace(BARE, quantile=0.5)),
    QuantileCase("a per-workload quantile overrides the costs", 0.9, 6, miss=247.5, quantile=0.9),
    QuantileCase("a per-workload quantile overrides the configured one", 0.99, 9, quantile=0.99,
                 config=replace(BARE, quantile=0.5)),
    QuantileCase("a NaN per-workload quantile falls back to the costs", 0.9, 6, miss=22.5, quantile=math.nan),
]


def _quantile_forecast(name: str) -> Forecast:
    return levels(name, {0.5: 3.0, 0.9: 6.0, 0.99: 9.0})


@pytest.mark.parametrize("case", QUANTILE_CASES, ids=[c.name for c in QUANTILE_CASES])
def test_sizing_quantile_scenario(case: QuantileCase) -> None:
    state = make_state(1, replicas=5, capacity_rps=1.0, demand_rps=1.0, gpus_per_replica=case.gpus_per_replica,
                       pool_price_per_gpu_hour=case.price)
    columns = {}
    if case.miss is not None:
        columns["slo_miss_cost_per_hour"] = [case.miss]
    if case.quantile is not None:
        columns["quantile"] = [case.quantile]
    state = with_columns(state, **columns)
    batch, _ = decide(state, {"svc-0": _quantile_forecast("svc-0")}, case.config)
    assert float(batch.detail["quantile"][0]) == pytest.approx(case.want_quantile)
    assert int(batch.replicas[0]) == case.want_replicas
    assert f"q{case.want_quantile:.3f}" in explain(batch, state)


def test_a_higher_miss_cost_sizes_for_a_higher_quantile() -> None:
    """Same forecast, same GPU, one call: the count never falls as the cost of a miss rises."""
    misses = [0.0, 1.0, 2.5, 5.0, 10.0, 22.5, 50.0, 100.0, 247.5, 1000.0]
    n = len(misses)
    state = with_columns(make_state(n, replicas=5, capacity_rps=1.0, demand_rps=1.0), slo_miss_cost_per_hour=misses)
    forecasts = {name: _quantile_forecast(name) for name in state.workloads.names}
    batch, _ = decide(state, forecasts, BARE)
    q = np.asarray(batch.detail["quantile"])
    assert np.allclose(q, np.array(misses) / (np.array(misses) + 2.5))
    got = batch.replicas.tolist()
    assert got == sorted(got) and got[0] == 3 and got[-1] == 9, got


def test_a_per_workload_quantile_overrides_the_costs() -> None:
    state = with_columns(make_state(3, replicas=5, capacity_rps=1.0, demand_rps=1.0),
                         slo_miss_cost_per_hour=[247.5] * 3, quantile=[0.5, math.nan, 0.9])
    forecasts = {name: _quantile_forecast(name) for name in state.workloads.names}
    batch, _ = decide(state, forecasts, BARE)
    assert batch.replicas.tolist() == [3, 9, 6]


# --------------------------------------------------------------------------------------------
# GPU economics: keep an idle replica while a return within its cold start is likely enough
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeepCase:
    name: str
    forecast: Callable[[str], Forecast]
    want_replicas: int
    kept: bool
    miss: float = 50.0
    replicas: int = 6
    provisioning: float = 360.0
    config: PredictiveConfig = replace(SIZING, max_scale_down_per_minute=1.0)  # no step limit in the way


def _exact_spike(at: int) -> Callable[[str], Forecast]:
    return lambda name: exact(name, spike(2.0, at, 6.0))


def _tail_spike(name: str) -> Forecast:
    # 2 rps at every level except 0.99, which returns to 6 rps at step 7 (beyond the 3-step
    # startup, within the 9-step cold start).
    return levels(name, {0.5: 2.0, 0.9: 2.0, 0.99: spike(2.0, 7, 6.0, 20)})


# cap 1, 6 replicas now, 2 rps observed and forecast now: sizing asks for 2.
KEEP_CASES = [
    KeepCase("GPU economics keeps an idle replica when a return within its cold start is likely",
             _exact_spike(7), 6, True),
    KeepCase("GPU economics lets it go when the return is beyond its cold start", _exact_spike(10), 2, False),
    KeepCase("the cold start includes node provisioning: without it a return at step 7 is too late",
             _exact_spike(7), 2, False, provisioning=0.0),
    KeepCase("the keep never raises the count above the current one", _exact_spike(7), 3, True, replicas=3),
    KeepCase("GPU economics off lets it go", _exact_spike(7), 2, False, config=replace(BARE, max_scale_down_per_minute=1.0)),
    # The 0.99 level returns: keep at q = 1 - 2.5 / miss.
    KeepCase("a $500/h miss keeps for a 0.5% chance of return (q0.995 reads the 0.99 level)", _tail_spike, 6, True,
             miss=500.0),
    KeepCase("a $50/h miss keeps what q0.95 needs (interpolated: 2 + 4 x 5/9 -> 5)", _tail_spike, 5, True),
    KeepCase("a $5/h miss lets it go: the return is unlikely at that price (q0.5)", _tail_spike, 2, False, miss=5.0),
    KeepCase("a miss cheaper than the idle GPU never keeps", _tail_spike, 2, False, miss=2.0),
]


@pytest.mark.parametrize("case", KEEP_CASES, ids=[c.name for c in KEEP_CASES])
def test_gpu_economics_scenario(case: KeepCase) -> None:
    state = with_columns(make_state(1, replicas=case.replicas, capacity_rps=1.0, demand_rps=2.0,
                                    pool_provisioning_seconds=case.provisioning),
                         slo_miss_cost_per_hour=[case.miss])
    batch, _ = decide(state, {"svc-0": case.forecast("svc-0")}, case.config)
    assert int(batch.replicas[0]) == case.want_replicas
    assert (ReasonCode.KEPT_WARM in codes(batch)) == case.kept, codes(batch)
    if case.kept:
        text = explain(batch, state)
        assert f"scale-down held at {case.want_replicas}" in text
        assert f"${case.miss:.0f}/h of SLO misses outweighs $2.50/h of idle GPUs" in text
        assert f"at least a {2.5 / case.miss:.1%} chance" in text
    else:
        assert codes(batch) & (ReasonCode.REACTIVE_FLOOR | ReasonCode.FORECAST_UP)


def test_gpu_economics_keeps_an_idle_replica_when_a_return_within_its_cold_start_is_likely_and_lets_it_go_when_not() -> None:
    """The same 6 idle replicas, as the return moves out of the 9-step cold start."""
    config = replace(SIZING, max_scale_down_per_minute=1.0)
    state = make_state(1, replicas=6, capacity_rps=1.0, demand_rps=2.0)
    got = [int(decide(state, {"svc-0": _exact_spike(at)("svc-0")}, config)[0].replicas[0]) for at in range(4, 13)]
    assert got == [6] * 6 + [2] * 3  # kept for a return at steps 4..9, let go for 10..12


def test_kept_warm_sentence_quotes_the_cold_start_the_keep_used() -> None:
    state = make_state(1, replicas=6, capacity_rps=1.0, demand_rps=2.0)
    batch, _ = decide(state, {"svc-0": _exact_spike(7)("svc-0")}, replace(SIZING, max_scale_down_per_minute=1.0))
    assert ReasonCode.KEPT_WARM in codes(batch)
    assert "within their 540 s cold start" in explain(batch, state)


# --------------------------------------------------------------------------------------------
# Step limits per minute
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateCase:
    name: str
    current: int
    need: float  # flat forecast (cap 1) and observed demand when scaling down
    want: int
    step: float = STEP
    config: PredictiveConfig = BARE


RATE_CASES = [
    RateCase("scale-down is rate limited per minute: at most half the count a minute", 10, 1.0, 5),
    RateCase("scale-down is rate limited per minute: at least one replica a minute", 5, 1.0, 4,
             config=replace(BARE, max_scale_down_per_minute=0.1)),
    RateCase("scale-down is rate limited per minute: a 30 s step moves half as far", 10, 1.0, 8, step=30.0),
    RateCase("scale-down within the limit is not limited", 10, 6.0, 6),
    RateCase("scale-up is rate limited per minute: at most double a minute", 10, 50.0, 20),
    RateCase("scale-up is rate limited per minute: at least four replicas a minute", 1, 50.0, 5),
    RateCase("scale-up is rate limited per minute: a 30 s step moves half as far", 10, 50.0, 15, step=30.0),
    RateCase("scale-up is rate limited per minute: at a 15 s step at least one a step", 1, 50.0, 2, step=15.0),
    RateCase("scale-up is rate limited per minute: a larger fraction allows more", 10, 50.0, 40,
             config=replace(BARE, max_scale_up_per_minute=3.0)),
    RateCase("scale-up within the limit is not limited", 10, 20.0, 20),
]


@pytest.mark.parametrize("case", RATE_CASES, ids=[c.name for c in RATE_CASES])
def test_step_limit_scenario(case: RateCase) -> None:
    up = case.need > case.current
    state = make_state(1, step_seconds=case.step, replicas=case.current, capacity_rps=1.0,
                       demand_rps=1.0 if up else case.need)
    batch, _ = decide(state, {"svc-0": exact("svc-0", [case.need] * 40, step=case.step)}, case.config)
    assert int(batch.replicas[0]) == case.want
    limited = case.want != math.ceil(case.need)
    assert (ReasonCode.RATE_LIMITED in codes(batch)) == limited, codes(batch)
    if limited:
        # Up: the forecast asked for more than the safety net. Down: the safety net (observed load)
        # is the target the step limit slows the descent towards.
        assert (ReasonCode.FORECAST_UP if up else ReasonCode.REACTIVE_FLOOR) in codes(batch)
        assert f"step limited to {case.want} this time" in explain(batch, state)


def test_scale_up_is_rate_limited_per_minute_over_a_ramp() -> None:
    counts, seen = _run(6, BARE, 2, lambda k, now: exact("svc-0", [40.0] * 12, now=now), lambda k: 2.0, capacity_rps=1.0)
    assert counts == [6, 12, 24, 40, 40, 40]
    assert [ReasonCode.RATE_LIMITED in codes(b) for b, _ in seen] == [True, True, True, False, False, False]


def test_scale_down_is_rate_limited_per_minute_over_a_ramp() -> None:
    counts, _ = _run(7, BARE, 40, lambda k, now: exact("svc-0", [2.0] * 12, now=now), lambda k: 2.0, capacity_rps=1.0)
    assert counts == [20, 10, 5, 3, 2, 2, 2]


# --------------------------------------------------------------------------------------------
# Warm replicas on idle GPUs of nodes billed anyway (fill_idle_gpus, the default)
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
        # cap 4: the 36 rps peak at step 3 needs 9 one-GPU replicas: 2 nodes of 8, 7 GPUs idle.
        "warm fill: the idle GPUs of the planned nodes run warm replicas",
        dict(replicas=6, capacity_rps=4.0, demand_rps=5.0, pool_gpus_per_node=8),
        {0: (5.0, 5.0, 5.0, 36.0) + (5.0,) * 8}, 1,
        want_sized=[9], want_replicas=[16], want_node_floor=[2],
    ),
    WarmCase(
        "warm fill: a plan that fills its nodes exactly adds nothing",
        dict(replicas=6, capacity_rps=4.0, demand_rps=5.0, pool_gpus_per_node=8),
        {0: (32.0,) * 12}, 1,
        want_sized=[8], want_replicas=[8], want_node_floor=[1],
    ),
    WarmCase(
        "warm fill: never above max replicas",
        dict(replicas=6, max_replicas=12, capacity_rps=4.0, demand_rps=5.0, pool_gpus_per_node=8),
        {0: (36.0,) * 12}, 1,
        want_sized=[9], want_replicas=[12], want_node_floor=[2],
    ),
    WarmCase(
        # sized 3 (1 GPU each) + 3 (2 GPUs each) = 9 GPUs on 2 nodes of 8: 7 spare, shared 3:6 ->
        # floor(7 / 3) = 2 GPUs -> 2 more of w0, floor(14 / 3) = 4 GPUs -> 2 more of w1.
        "warm fill: spare GPUs are shared in proportion to the GPUs each workload uses",
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
def test_warm_fill_scenario(case: WarmCase) -> None:
    state = make_state(case.n, **case.state)
    names = state.workloads.names
    forecasts = {names[i]: exact(names[i], v) for i, v in case.forecasts.items()}
    batch, _ = decide(state, forecasts, FILLING)
    sized, _ = decide(state, forecasts, SIZING)
    assert sized.replicas.tolist() == case.want_sized
    assert np.asarray(batch.detail["sized"]).tolist() == case.want_sized
    assert batch.replicas.tolist() == case.want_replicas
    assert batch.node_floor.tolist() == sized.node_floor.tolist() == case.want_node_floor
    # Never a node more than the plan needs anyway.
    wl, pools = state.workloads, state.node_pools
    gpus = np.bincount(wl.pool, weights=batch.replicas * wl.gpus_per_replica, minlength=len(pools))
    sized_gpus = np.bincount(wl.pool, weights=sized.replicas * wl.gpus_per_replica, minlength=len(pools))
    planned_nodes = np.maximum(np.ceil(sized_gpus / pools.gpus_per_node), batch.node_floor)
    assert (np.ceil(gpus / pools.gpus_per_node) <= planned_nodes).all()
    for i in range(case.n):
        warm = case.want_replicas[i] - case.want_sized[i]
        assert (ReasonCode.WARM_FILL in codes(batch, i)) == (warm > 0)
        assert ReasonCode.WARM_FILL not in codes(sized, i)
        if warm > 0:
            text = explain(batch, state, i)
            assert f"{warm} more kept warm on idle GPUs" in text and f"(sized {case.want_sized[i]})" in text


# --------------------------------------------------------------------------------------------
# Node pools: the cheapest eligible pool with room
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolCase:
    name: str
    n: int
    eligible: list
    forecasts: dict  # workload index -> exact forecast values (cap 1, one GPU per replica)
    want_pool: list
    want_node_floor: list
    want_moved: list
    prices: tuple = (4.0, 2.0)
    max_nodes: tuple = (64, 64)
    current_pool: object = 0
    want_replicas: list | None = None
    want_text: dict = field(default_factory=dict)  # workload index -> words its sentence has


POOL_CASES = [
    PoolCase("cheapest eligible pool wins", 1, [[True, True]], {0: [5.0] * 12},
             want_pool=[1], want_node_floor=[1, 0], want_moved=[True],
             want_text={0: "recommended pool: placed on pool-1 at $2.00/GPU-h, the cheapest eligible pool with room (pool-0 $4.00), "
                           "moved from pool-0 (node floors stay where the replicas run"}),
    PoolCase("a pool cheaper only within the stickiness keeps the workload where it is", 1, [[True, True]], {0: [5.0] * 12},
             prices=(4.0, 3.9), want_pool=[0], want_node_floor=[1, 0], want_moved=[False]),
    PoolCase(
        # pool-1 (cheap) holds one 8-GPU node: the larger workload (6) claims it first, the other spills.
        "a full pool spills to the next", 2, [[True, True], [True, True]], {0: [6.0] * 12, 1: [4.0] * 12},
        # Both run on pool-1 until moved, so its floor (capped at max_nodes) is what they need.
        max_nodes=(64, 1), current_pool=1, want_pool=[1, 0], want_node_floor=[0, 1], want_moved=[False, True],
        want_text={1: "placed on pool-0 at $4.00/GPU-h, the cheapest eligible pool with room (pool-1 $2.00 full), moved from pool-1"},
    ),
    PoolCase("a cheaper pool that is not eligible is never chosen", 1, [[True, False, True]], {0: [5.0] * 12},
             prices=(4.0, 1.0, 2.0), max_nodes=(64, 64, 64), want_pool=[2], want_node_floor=[1, 0, 0], want_moved=[True]),
    PoolCase(
        # 1 rps now, 16 rps at step L_node + L_pod = 9: no replica yet, 2 nodes ahead of the peak,
        # on the pool the replicas run on: the move is only recommended.
        "node floors stay on the current pool while a move is recommended", 1, [[True, True]], {0: spike(1.0, 9, 16.0)},
        want_pool=[1], want_node_floor=[2, 0], want_moved=[True], want_replicas=[1],
    ),
    PoolCase(
        # Placed for its planned peak (16 replicas, 2 nodes), which the one-node cheap pool cannot hold.
        "a workload is placed for its planned peak, not its count now", 1, [[True, True]], {0: spike(1.0, 9, 16.0)},
        max_nodes=(64, 1), want_pool=[0], want_node_floor=[2, 0], want_moved=[False], want_replicas=[1],
    ),
]


@pytest.mark.parametrize("case", POOL_CASES, ids=[c.name for c in POOL_CASES])
def test_pool_scenario(case: PoolCase) -> None:
    pools = len(case.prices)
    state = make_state(case.n, pools=pools, pool=case.current_pool, replicas=1, capacity_rps=1.0, demand_rps=1.0,
                       pool_price_per_gpu_hour=list(case.prices), pool_max_nodes=list(case.max_nodes), pool_nodes=0)
    state = with_columns(state, eligible=np.array(case.eligible, dtype=bool))
    names = state.workloads.names
    forecasts = {names[i]: exact(names[i], v) for i, v in case.forecasts.items()}
    batch, _ = decide(state, forecasts)
    assert batch.pool is not None and batch.pool.tolist() == case.want_pool
    assert batch.node_floor.tolist() == case.want_node_floor
    if case.want_replicas is not None:
        assert batch.replicas.tolist() == case.want_replicas
    decisions = batch.decisions(state)
    for i, name in enumerate(names):
        assert (ReasonCode.POOL_CHOSEN in codes(batch, i)) == case.want_moved[i]
        (d,) = [d for d in decisions if d.target == name]
        assert d.node_pool == f"pool-{case.want_pool[i]}"
        assert ScalingDecision.from_json(d.to_json()) == d
        if i in case.want_text:
            assert case.want_text[i] in d.explain(), d.explain()
    nodes = {d.target: d.desired for d in decisions if d.kind == "nodes"}
    assert nodes == {f"pool-{p}": f for p, f in enumerate(case.want_node_floor) if f > 0}


def test_a_workload_that_may_run_on_a_slower_pool_is_planned_over_that_pools_lead_time() -> None:
    # pool-0 (current) provisions at once; pool-1 (cheaper, recommended) takes 360 s. The keep
    # window and the quoted cold start cover the slower pool: 360 s + the 180 s startup.
    state = make_state(1, pools=2, pool=0, replicas=16, capacity_rps=1.0, demand_rps=1.0, pool_gpus_per_node=4,
                       startup_seconds=180.0, pool_provisioning_seconds=[0.0, 360.0], pool_price_per_gpu_hour=[4.0, 2.0])
    state = with_columns(state, eligible=np.array([[True, True]]))
    batch, _ = decide(state, {"svc-0": exact("svc-0", spike(1.0, 9, 16.0))}, replace(SIZING, max_scale_down_per_minute=1.0))
    assert batch.pool.tolist() == [1]
    assert float(batch.detail["cold_start"][0]) == 540.0
    assert int(batch.replicas[0]) == 16 and ReasonCode.KEPT_WARM in codes(batch)  # the step-9 peak is within 540 s
    assert "within their 540 s cold start" in explain(batch, state)
    # Alone on pool-0, the same workload lets go: its peak is past pool-0's 180 s cold start.
    alone, _ = decide(replace(state, workloads=replace(state.workloads, eligible=None)), {"svc-0": exact("svc-0", spike(1.0, 9, 16.0))},
                      replace(SIZING, max_scale_down_per_minute=1.0))
    assert int(alone.replicas[0]) < 16 and float(alone.detail["cold_start"][0]) == 180.0


def test_a_workload_whose_only_eligible_pool_is_another_is_recommended_there() -> None:
    state = make_state(1, pools=2, pool=0, replicas=2, capacity_rps=1.0, demand_rps=1.0)
    state = with_columns(state, eligible=np.array([[False, True]]))
    batch, _ = decide(state, {"svc-0": exact("svc-0", [4.0] * 12)})
    assert batch.pool is not None and batch.pool.tolist() == [1]
    assert ReasonCode.POOL_CHOSEN in codes(batch)
    assert batch.node_floor.tolist() == [1, 0]  # its replicas still run on pool-0


def test_warm_fill_stays_on_the_pool_the_replicas_run_on_while_a_move_is_recommended() -> None:
    # Recommended to move from pool-0 (8-GPU nodes) to pool-1 (2-GPU nodes): the warm replicas
    # fill pool-0's one node, not nodes of pool-1 that nobody runs on.
    state = make_state(1, pools=2, pool=0, replicas=3, capacity_rps=1.0, demand_rps=3.0, startup_seconds=0.0,
                       pool_provisioning_seconds=0.0, pool_price_per_gpu_hour=[4.0, 2.0], pool_gpus_per_node=[8, 2])
    state = with_columns(state, eligible=np.array([[True, True]]))
    batch, _ = decide(state, {"svc-0": exact("svc-0", [3.0] * 12)}, FILLING)
    assert batch.pool.tolist() == [1] and batch.node_floor.tolist() == [1, 0]
    assert int(batch.replicas[0]) == 8 and ReasonCode.WARM_FILL in codes(batch)


# --------------------------------------------------------------------------------------------
# Explanations that misstate their figures
# --------------------------------------------------------------------------------------------


def test_a_safety_net_above_max_replicas_says_clamped_max_and_quotes_its_arithmetic() -> None:
    state = make_state(1, replicas=4, max_replicas=6, capacity_rps=4.0, demand_rps=100.0)
    batch, _ = decide(state, {"svc-0": exact("svc-0", [1.0] * 12)})
    assert int(batch.replicas[0]) == 6
    assert ReasonCode.CLAMPED_MAX in codes(batch)
    assert "observed 100.0 rps needs 25" in explain(batch, state)


def test_forecast_up_is_not_claimed_when_the_forecast_asked_for_no_more_than_the_safety_net() -> None:
    state = make_state(1, replicas=6, capacity_rps=1.0, demand_rps=2.0)
    batch, _ = decide(state, {"svc-0": _exact_spike(7)("svc-0")}, replace(SIZING, max_scale_down_per_minute=1.0))
    assert int(batch.replicas[0]) == 6 and ReasonCode.KEPT_WARM in codes(batch)
    assert "(the load observed now needs 2)" not in explain(batch, state)


def test_min_replicas_holding_a_forecast_of_nothing_says_clamped_min() -> None:
    state = make_state(1, replicas=3, min_replicas=3, capacity_rps=1.0, demand_rps=0.0)
    batch, _ = decide(state, {"svc-0": exact("svc-0", [0.0] * 12)}, BARE)
    assert int(batch.replicas[0]) == 3
    assert ReasonCode.CLAMPED_MIN in codes(batch) and ReasonCode.FORECAST_UP not in codes(batch)


# --------------------------------------------------------------------------------------------
# Forecasts as a mapping or as a ForecastBatch
# --------------------------------------------------------------------------------------------


def _same_batches(a: DecisionBatch, b: DecisionBatch, *, forecasts_too: bool = True) -> None:
    for f in fields(DecisionBatch):
        if f.name == "forecasts" and not forecasts_too:
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name == "detail":
            assert set(x) == set(y)
            for k in x:
                np.testing.assert_array_equal(np.asarray(x[k]), np.asarray(y[k]), err_msg=k)
        elif isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=f.name)
        else:
            assert x == y, f.name


def _same_logs(a: DecisionLog, b: DecisionLog) -> None:
    assert a.to_json() == b.to_json()


def _same_decisions(a: DecisionBatch, b: DecisionBatch, state: ClusterState) -> None:
    """The same decisions, sentences and forecast references included."""
    assert [d.to_json() for d in a.decisions(state)] == [d.to_json() for d in b.decisions(state)]


def test_decide_accepts_a_mapping_or_a_forecast_batch_and_gives_the_same_answer() -> None:
    state = make_state(3, names=("chat", "embed", "rerank"), replicas=[2, 6, 4], capacity_rps=1.0,
                       demand_rps=[1.0, 2.0, math.nan], gpus_per_replica=[1, 2, 4])
    forecasts = {
        "chat": exact("chat", spike(1.0, 3, 9.0)),
        "embed": levels("embed", {0.5: 2.0, 0.9: 3.0, 0.99: spike(3.0, 6, 9.0, 20)}),
    }
    config = FILLING
    by_map, log_map = decide(state, forecasts, config)
    batch_in = ForecastBatch.gather(state.workloads.names, forecasts, STEP)
    by_batch, log_batch = decide(state, batch_in, config)
    _same_batches(by_map, by_batch, forecasts_too=False)
    _same_logs(log_map, log_batch)
    _same_decisions(by_map, by_batch, state)
    # A batch gathered for other names (another order, one more) is read by name.
    other = ForecastBatch.gather(("zzz", "embed", "chat"), {**forecasts, "zzz": exact("zzz", [1.0] * 5)}, STEP)
    by_other, _ = decide(state, other, config)
    _same_batches(by_map, by_other, forecasts_too=False)
    _same_decisions(by_map, by_other, state)
    # Not a trivial answer: chat's 9 rps peak is step-limited to 6; embed (2 GPUs: idle $5/h, keep
    # q0.9) lets 3 of 6 go; rerank (missing demand, no forecast) holds. The node floor covers the
    # peak at step 3 (9 + 4 x 2 + 4 x 4 = 33 GPUs: 5 nodes), rerank's held replicas included, and
    # the warm fill shares that floor's idle GPUs.
    assert np.asarray(by_map.detail["sized"]).tolist() == [6, 3, 4]
    assert by_map.node_floor.tolist() == [5]
    assert by_map.replicas.tolist() == [8, 4, 5]
    warm = ReasonCode.WARM_FILL
    assert [codes(by_map, i) for i in range(3)] == [ReasonCode.FORECAST_UP | ReasonCode.RATE_LIMITED | warm,
                                                     ReasonCode.FORECAST_UP | warm,
                                                     ReasonCode.FALLBACK_FORECAST | ReasonCode.STALE_METRICS | warm]


def test_a_forecast_batch_still_names_the_forecast_each_decision_used() -> None:
    state = make_state(1, names=("chat",), replicas=2, capacity_rps=1.0, demand_rps=1.0)
    forecasts = {"chat": exact("chat", [5.0] * 12)}
    by_batch, _ = decide(state, ForecastBatch.gather(("chat",), forecasts, STEP))
    (d, *_nodes) = by_batch.decisions(state)
    assert d.forecast_ref == f"{forecasts['chat'].model}@{forecasts['chat'].issued_at:.0f}"
    assert f"forecast ({forecasts['chat'].model})" in d.explain()


# --------------------------------------------------------------------------------------------
# Properties over random clusters, forecasts, histories and configs
# --------------------------------------------------------------------------------------------

LEVEL_GRID = (0.1, 0.5, 0.9, 0.95, 0.99)


@st.composite
def quantile_forecasts(draw, name: str, now: float, step: float) -> Forecast:
    """A forecast with 1-4 levels, monotone in the level at every step, issued 1-3 steps ago."""
    chosen = sorted(draw(st.sets(st.sampled_from(LEVEL_GRID), min_size=1, max_size=4)))
    horizon = draw(st.integers(1, 16))
    base = np.array(draw(st.lists(st.floats(0, 300), min_size=horizon, max_size=horizon)))
    values, level = {}, base
    for q in chosen:
        level = level + np.array(draw(st.lists(st.floats(0, 100), min_size=horizon, max_size=horizon)))
        values[q] = level
    age = draw(st.integers(1, 3))
    return Forecast(name, now - age * step, step, values, "hyp")


@st.composite
def situations(draw):
    """(state, forecasts, log, config): 1-4 workloads on 1-3 pools, with every optional column."""
    n = draw(st.integers(1, 4))
    pools = draw(st.integers(1, 3))
    step = draw(st.sampled_from([15.0, 30.0, 60.0]))
    now = NOW
    mins = draw(st.lists(st.integers(0, 8), min_size=n, max_size=n))
    maxs = [max(m + draw(st.integers(0, 30)), 1) for m in mins]
    # Often at or outside the limits, where the guardrails meet.
    current = [draw(st.integers(0, lo) | st.integers(lo, hi) | st.integers(hi, hi + 4)) for lo, hi in zip(mins, maxs)]
    demand = [math.nan if d is None else d for d in draw(st.lists(st.none() | st.floats(0, 400), min_size=n, max_size=n))]
    gpn = [draw(st.sampled_from([4, 8])) for _ in range(pools)]
    state = make_state(
        n, now=now, step_seconds=step, pools=pools,
        pool=[draw(st.integers(0, pools - 1)) for _ in range(n)],
        replicas=current, min_replicas=mins, max_replicas=maxs,
        gpus_per_replica=draw(st.lists(st.sampled_from([1, 2, 4]), min_size=n, max_size=n)),
        capacity_rps=draw(st.lists(st.floats(0.5, 20), min_size=n, max_size=n)),
        startup_seconds=draw(st.lists(st.sampled_from([0.0, 60.0, 90.0, 180.0, 300.0]), min_size=n, max_size=n)),
        demand_rps=demand,
        pool_provisioning_seconds=[draw(st.sampled_from([0.0, 120.0, 360.0])) for _ in range(pools)],
        pool_gpus_per_node=gpn,
        pool_max_nodes=[draw(st.integers(0, 12)) for _ in range(pools)],
        pool_price_per_gpu_hour=[draw(st.sampled_from([1.0, 2.5, 4.0])) for _ in range(pools)],
    )
    columns = {}
    if draw(st.booleans()):
        columns["slo_miss_cost_per_hour"] = draw(st.lists(st.just(0.0) | st.floats(1e-6, 500), min_size=n, max_size=n))
    if draw(st.booleans()):
        columns["quantile"] = [math.nan if q is None else q
                               for q in draw(st.lists(st.none() | st.floats(0.05, 0.99), min_size=n, max_size=n))]
    if draw(st.integers(0, 3)):
        ratios = st.sampled_from([math.nan, 0.5, 1.9, 2.0, 3.0, 4.5, 5.0, 5.5, 9.0]) | st.floats(0, 10)
        columns["forecast_error_ratio"] = draw(st.lists(ratios, min_size=n, max_size=n))
    if draw(st.booleans()):
        trends = st.sampled_from([math.nan, -0.1, 0.0]) | st.floats(-1.0, 1.0)
        columns["demand_trend"] = draw(st.lists(trends, min_size=n, max_size=n))
    if pools > 1 and draw(st.integers(0, 3)):
        rows = []
        for _ in range(n):
            row = draw(st.lists(st.booleans(), min_size=pools, max_size=pools))
            row[draw(st.integers(0, pools - 1))] = True
            rows.append(row)
        columns["eligible"] = np.array(rows, dtype=bool)
    state = with_columns(state, **columns)
    forecasts = {}
    for name in state.workloads.names:
        if draw(st.integers(0, 3)):  # mostly present
            forecasts[name] = draw(quantile_forecasts(name, now, step))
    # History: the reactive recommendations, the policy's own answers and gate states.
    k = draw(st.integers(0, 4))
    times = np.array([now - (k - j) * step for j in range(k)], dtype=float)
    recs = np.array(draw(st.lists(st.lists(st.integers(0, 40), min_size=n, max_size=n), min_size=k, max_size=k)),
                    dtype=np.int64).reshape(k, n)
    frecs = None
    if draw(st.integers(0, 3)):  # mostly a log this policy wrote
        frecs = np.array(draw(st.lists(st.lists(st.integers(-1, 40), min_size=n, max_size=n), min_size=k, max_size=k)),
                         dtype=np.int64).reshape(k, n)
    gated = None if not draw(st.integers(0, 3)) else np.array(draw(st.lists(st.sampled_from([False, False, True]),
                                                                              min_size=n, max_size=n)))
    log = DecisionLog(state.workloads.names, times, recs, gated, frecs)
    config = PredictiveConfig(
        quantile=draw(st.none() | st.sampled_from([0.5, 0.9, 0.97])),
        keep_warm=draw(st.booleans()),
        fill_idle_gpus=draw(st.booleans()),
        scale_down_stabilization_seconds=draw(st.sampled_from([0.0, 120.0, 300.0])),
        max_scale_up_per_minute=draw(st.sampled_from([0.5, 1.0, 3.0])),
        max_scale_down_per_minute=draw(st.sampled_from([0.1, 0.5, 1.0])),
        floor_utilization=draw(st.sampled_from([0.7, 1.0])),
        follow_trend=draw(st.booleans()),
        target_utilization=draw(st.sampled_from([0.8, 1.0])),
    )
    return state, forecasts, log, config


PROPERTY = settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def _step_limits(current: int, step_seconds: float, config: PredictiveConfig) -> tuple[int, int]:
    """The documented step limits: up by the fraction a minute (at least 4 a minute), down by the
    fraction a minute (at least 1 a minute, and at least 1 a step)."""
    minutes = step_seconds / 60.0
    up = max(math.ceil(current * config.max_scale_up_per_minute * minutes), math.ceil(4 * minutes))
    down = max(math.floor(current * config.max_scale_down_per_minute * minutes), max(1, math.floor(minutes)))
    return max(current - down, 0), current + up


def _expected_gate(state: ClusterState, log: DecisionLog, config: PredictiveConfig) -> np.ndarray:
    n = len(state.workloads)
    before = np.zeros(n, dtype=bool) if log.gated is None else log.gated
    ratio = state.workloads.forecast_error_ratio
    if ratio is None:
        return before
    out = []
    for b, r in zip(before, ratio):
        out.append(bool(b) if math.isnan(r) else (r > config.quality_recover_ratio if b else r > config.quality_gate_ratio))
    return np.array(out, dtype=bool)


@PROPERTY
@given(situations())
def test_property_decisions_obey_the_guardrails(situation) -> None:
    state, forecasts, log, config = situation
    wl, pools = state.workloads, state.node_pools
    batch, new_log = predictive.decide(NOW, state, forecasts, log, config)
    n = len(wl)
    desired = batch.replicas
    assert desired.shape == (n,) and batch.node_floor.shape == (len(pools),)
    # Within min and max, always.
    assert (desired >= wl.min_replicas).all() and (desired <= wl.max_replicas).all(), desired
    # Node floors within each pool's max_nodes.
    assert (batch.node_floor >= 0).all() and (batch.node_floor <= pools.max_nodes).all(), batch.node_floor
    # The gate follows its hysteresis.
    gated = _expected_gate(state, log, config)
    assert new_log.gated.tolist() == gated.tolist()
    for i, name in enumerate(wl.names):
        got = codes(batch, i)
        demand, cap = float(wl.demand_rps[i]), float(wl.capacity_rps[i])
        f = forecasts.get(name)
        fresh = f is not None and f.issued_at + f.horizon * f.step >= NOW  # an expired forecast is no forecast
        used = fresh and not gated[i]
        which = [c for c in FORECAST_ONLY if c in got]
        if used:
            assert which in ([ReasonCode.FORECAST_UP], [ReasonCode.REACTIVE_FLOOR]), got
            # Never below the safety net.
            floor = 0 if math.isnan(demand) else math.ceil(demand / (cap * config.floor_utilization) * (1 - 1e-9))
            assert desired[i] >= min(floor, wl.max_replicas[i]), (desired[i], floor)
        elif name in forecasts and gated[i]:
            assert which == [ReasonCode.QUALITY_GATE], got
        else:
            assert which == [ReasonCode.FALLBACK_FORECAST], got
        if used and ReasonCode.FORECAST_UP in got and not got & (ReasonCode.CLAMPED_MIN | ReasonCode.CLAMPED_MAX):
            # The forecast-driven answer moved within the step limits, unless the safety net (what
            # the load observed now needs) is above them: the step limit never holds capacity below it.
            low, high = _step_limits(int(wl.replicas[i]), state.step_seconds, config)
            net = 0 if math.isnan(demand) else math.ceil(demand / (cap * config.floor_utilization) * (1 - 1e-9))
            high = max(high, min(net, int(wl.max_replicas[i])))
            assert low <= int(np.asarray(batch.detail["sized"])[i]) <= high, (low, high, batch.detail["sized"][i])
        if used and config.scale_down_stabilization_seconds > 0 and log.forecast_recs is not None:
            # Never below the policy's own answers in the window (nor above the current count for it).
            recent = log.forecast_recs[log.times >= NOW - config.scale_down_stabilization_seconds, i]
            held = min(int(recent.max(initial=-1)), int(wl.replicas[i]), int(wl.max_replicas[i]))
            assert desired[i] >= held, (desired[i], held)
        # Never down on missing data.
        if math.isnan(demand):
            assert desired[i] >= min(wl.replicas[i], wl.max_replicas[i]), (desired[i], wl.replicas[i])
        # Warm fill: only with the option, and said.
        sized = int(np.asarray(batch.detail["sized"])[i])
        assert desired[i] >= sized
        assert (ReasonCode.WARM_FILL in got) == (desired[i] > sized)
        if not config.fill_idle_gpus:
            assert desired[i] == sized
        if batch.pool is not None and wl.eligible is not None:
            assert wl.eligible[i, int(batch.pool[i])], (i, batch.pool)
    # The policy's own memory: this call's answers, -1 where no forecast was used.
    assert new_log.forecast_recs.shape == (len(new_log.times), n)
    assert new_log.times[-1] == NOW
    for i, name in enumerate(wl.names):
        f = forecasts.get(name)
        used = f is not None and f.issued_at + f.horizon * f.step >= NOW and not gated[i]
        assert (new_log.forecast_recs[-1, i] == -1) == (not used)


@PROPERTY
@given(situations(), st.sampled_from([60.0, 120.0, 300.0]), st.data())
def test_property_the_stabilization_window_holds_at_the_policys_own_recent_answers(situation, window, data) -> None:
    """With answers of its own in the last steps near the current count (gates open), the policy
    never goes below the highest of those in the window (capped by the current count and max)."""
    state, forecasts, _, config = situation
    config = replace(config, scale_down_stabilization_seconds=window)
    state = replace(state, workloads=replace(state.workloads, forecast_error_ratio=None))
    wl = state.workloads
    n, k = len(wl), data.draw(st.integers(1, 4))
    times = NOW - state.step_seconds * np.arange(k, 0, -1, dtype=float)
    offsets = np.array(data.draw(st.lists(st.lists(st.integers(-4, 6), min_size=n, max_size=n), min_size=k, max_size=k)))
    answers = np.maximum(wl.replicas[None, :] + offsets, -1).astype(np.int64)
    log = DecisionLog(wl.names, times, np.zeros((k, n), dtype=np.int64), None, answers)
    batch, _ = predictive.decide(NOW, state, forecasts, log, config)
    recent = answers[times >= NOW - window]
    for i, name in enumerate(wl.names):
        if name in forecasts:
            held = min(int(recent[:, i].max(initial=-1)), int(wl.replicas[i]), int(wl.max_replicas[i]))
            assert batch.replicas[i] >= held, (batch.replicas[i], held)


@PROPERTY
@given(situations(), st.sampled_from([1.5, 3.0, 10.0]))
def test_property_a_higher_miss_cost_never_sizes_for_fewer_replicas(situation, factor) -> None:
    state, forecasts, log, config = situation
    config = replace(config, fill_idle_gpus=False)  # warm fill shares spare GPUs: not monotone per workload
    wl = state.workloads
    misses = np.full(len(wl), config.slo_miss_cost_per_hour) if wl.slo_miss_cost_per_hour is None else wl.slo_miss_cost_per_hour
    dearer = with_columns(state, slo_miss_cost_per_hour=misses * factor)
    cheap, _ = predictive.decide(NOW, with_columns(state, slo_miss_cost_per_hour=misses), forecasts, log, config)
    dear, _ = predictive.decide(NOW, dearer, forecasts, log, config)
    assert (dear.replicas >= cheap.replicas).all(), (cheap.replicas, dear.replicas)
    assert (np.asarray(dear.detail["quantile"]) >= np.asarray(cheap.detail["quantile"]) - 1e-12).all()


@PROPERTY
@given(situations())
def test_property_decisions_round_trip_through_json_and_explain_themselves(situation) -> None:
    state, forecasts, log, config = situation
    batch, _ = predictive.decide(NOW, state, forecasts, log, config)
    decisions = batch.decisions(state)
    assert [d.target for d in decisions if d.kind == "replicas"] == list(state.workloads.names)
    for d in decisions:
        assert ScalingDecision.from_json(d.to_json()) == d
        text = d.explain()
        assert d.target in text and "\n" not in text and "{" not in text
        assert d.reasons
        for r in d.reasons:
            assert r.message in text


def _snapshot(value):
    """A deep copy of every array reachable from a state, log or forecasts (for mutation checks)."""
    return copy.deepcopy(value)


def _assert_same(a, b, path="") -> None:
    if isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), path
        for k, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{path}[{k}]")
    elif hasattr(a, "__dataclass_fields__"):
        for f in fields(a):
            if f.init:
                _assert_same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), path
    else:
        assert a == b, path


@PROPERTY
@given(situations())
def test_property_decide_is_deterministic_and_does_not_mutate_its_inputs(situation) -> None:
    state, forecasts, log, config = situation
    before = _snapshot((state, forecasts, log, config))
    first, first_log = predictive.decide(NOW, state, forecasts, log, config)
    _assert_same(before, (state, forecasts, log, config), "inputs")
    second, second_log = predictive.decide(NOW, state, forecasts, log, config)
    _same_batches(first, second)
    _same_logs(first_log, second_log)
    _same_decisions(first, second, state)
    _assert_same(before, (state, forecasts, log, config), "inputs")


@PROPERTY
@given(situations())
def test_property_a_forecast_batch_gives_the_same_answer_as_the_mapping(situation) -> None:
    state, forecasts, log, config = situation
    by_map, log_map = predictive.decide(NOW, state, forecasts, log, config)
    batch_in = ForecastBatch.gather(state.workloads.names, forecasts, state.step_seconds)
    by_batch, log_batch = predictive.decide(NOW, state, batch_in, log, config)
    _same_batches(by_map, by_batch, forecasts_too=False)
    _same_logs(log_map, log_batch)
    _same_decisions(by_map, by_batch, state)


@PROPERTY
@given(situations())
def test_property_the_decision_log_threads_through_json(situation) -> None:
    """A live agent persists the log between calls: the next call must not tell the difference."""
    state, forecasts, log, config = situation
    _, log1 = predictive.decide(NOW, state, forecasts, log, config)
    later = replace(state, observed_at=NOW + state.step_seconds)
    direct, _ = predictive.decide(NOW + state.step_seconds, later, forecasts, log1, config)
    replayed, _ = predictive.decide(NOW + state.step_seconds, later, forecasts, DecisionLog.from_json(log1.to_json()), config)
    _same_batches(direct, replayed)


# --------------------------------------------------------------------------------------------
# Workloads without a usable forecast still take GPUs; expired forecasts are not used
# --------------------------------------------------------------------------------------------


def test_node_floor_counts_the_replicas_of_workloads_without_a_usable_forecast() -> None:
    # chat (forecast) wants 6 GPUs over the node lead; rerank (no forecast) runs 4 x 4 GPUs. The
    # floor packs both: 22 GPUs, 3 nodes of 8, not the 1 node chat's forecast alone would say.
    state = make_state(2, names=("chat", "rerank"), replicas=[2, 4], capacity_rps=1.0, demand_rps=[1.0, 3.0],
                       gpus_per_replica=[1, 4], startup_seconds=0.0)
    batch, _ = decide(state, {"chat": exact("chat", [1.0, 1.0, 5.4] + [1.0] * 9)}, SIZING)
    assert ReasonCode.FALLBACK_FORECAST in codes(batch, 1)
    assert batch.node_floor.tolist() == [3]


def test_an_expired_forecast_falls_back_to_reactive_and_says_it_expired() -> None:
    state = make_state(1, names=("chat",), replicas=2, capacity_rps=1.0, demand_rps=2.0)
    stale = Forecast.exact("chat", NOW - 20 * STEP, STEP, [50.0] * 12)  # covered up to NOW - 8 steps
    batch, _ = decide(state, {"chat": stale})
    assert ReasonCode.FALLBACK_FORECAST in codes(batch)
    assert int(batch.replicas[0]) < 50
    assert "its forecast expired at" in explain(batch, state)


def test_warm_fill_never_holds_up_a_reactive_scale_down() -> None:
    # No forecast: reactive takes 30 replicas down to 20. The node floor is for those 20 (3 nodes),
    # so the warm fill tops up to 24 at most, not back to the 30 the current count would keep.
    state = make_state(1, names=("chat",), replicas=30, capacity_rps=1.0, demand_rps=18.0)
    config = replace(FILLING, reactive=ReactiveConfig(target_utilization=0.9, scale_down_stabilization_seconds=0.0))
    r, _ = reactive.decide(NOW, state, None, empty_log(state), config.reactive)
    batch, _ = decide(state, None, config)
    assert int(r.replicas[0]) == 20
    assert batch.node_floor.tolist() == [3]
    assert int(batch.replicas[0]) == 24 and ReasonCode.WARM_FILL in codes(batch)
