"""The predictive policy learns from the simulated cluster the way it would from a live one.

The simulated cluster can differ from what the policies are told (``actual_capacity_rps``,
``actual_startup_seconds``, ``actual_provisioning_seconds``): the predictive policy learns the
capacity per replica from observed (load, latency) and measures lead times (rolling p90), and its
forecast-quality gate reads the live error ratio a replay records with each forecast.
"""

from __future__ import annotations

import numpy as np
import pytest

from policies.types import ReasonCode
from simulations.config import config_from_mapping
from simulations.forecast_tape import ForecastTape
from simulations.replay import prepare, record_tape, simulate, tape_key
from simulations.report import score
from simulations.traces import Trace, synthetic_llm_trace

START = 1.7e9
STEP = 60.0


def config(predictive: dict | None = None, workload: dict | None = None, pool: dict | None = None):
    return config_from_mapping({
        "node_pools": [{"name": "gpu", **(pool or {})}],
        "workloads": [{"name": "llm-chat", **(workload or {})}],
        "policies": {"predictive": {"forecaster": "seasonal-naive", **(predictive or {})}},
    })


@pytest.fixture(scope="module")
def two_days() -> Trace:
    return synthetic_llm_trace(days=2, step_seconds=STEP, seed=3, peak_rps=120.0)


@pytest.fixture(scope="module")
def tape(two_days) -> ForecastTape:
    """Forecasts depend only on observed demand, so one recording serves every test here."""
    return record_tape(two_days, config())


def run(trace, cfg, tape):
    sim = simulate(trace, cfg, ["predictive"], tape=tape)
    return sim.runs["predictive"], score(sim).totals["predictive"]


def test_capacity_learned_in_simulation_corrects_an_optimistic_prior(two_days, tape) -> None:
    """The prior says 4 rps per replica; the replicas really sustain 3: learning finds 3 and meets the SLO more often."""
    wrong = {"capacity_rps": 4.0, "actual_capacity_rps": 3.0}
    learned, learned_totals = run(two_days, config(workload=wrong), tape)
    fixed, fixed_totals = run(two_days, config({"learn_capacity": False}, workload=wrong), tape)
    assert learned.capacity_rps[0] == pytest.approx(3.0, rel=0.06)
    assert fixed.capacity_rps[0] == 4.0
    assert learned_totals["slo_violation_minutes"] < 0.5 * fixed_totals["slo_violation_minutes"]


def test_capacity_with_a_right_prior_stays_right(two_days, tape) -> None:
    learned, _ = run(two_days, config(), tape)
    assert learned.capacity_rps[0] == pytest.approx(4.0, rel=0.06)


def test_lead_times_measured_in_simulation_replace_wrong_configured_ones(two_days, tape) -> None:
    """Configured 180 s startup and 360 s provisioning; really 300 s and 600 s: the rolling p90 finds them."""
    cfg = config(workload={"actual_startup_seconds": 300.0}, pool={"actual_provisioning_seconds": 600.0})
    measured, _ = run(two_days, cfg, _tape_for(two_days, cfg))
    assert measured.startup_seconds.tolist() == [300.0]
    assert measured.provisioning_seconds.tolist() == [600.0]
    configured, _ = run(two_days, config({"measure_lead_times": False}, workload={"actual_startup_seconds": 300.0},
                                         pool={"actual_provisioning_seconds": 600.0}), _tape_for(two_days, cfg))
    assert configured.startup_seconds.tolist() == [180.0]
    assert configured.provisioning_seconds.tolist() == [360.0]


def _tape_for(trace, cfg) -> ForecastTape:
    # A longer actual lead time lengthens the horizon the policy asks for, so the recording differs.
    return record_tape(trace, cfg)


def _wave_trace(steps: int = 480) -> Trace:
    t = np.arange(steps)
    values = (60 + 40 * np.sin(2 * np.pi * t / 90.0))[:, None]
    return Trace(source="wave", start=START, step_seconds=STEP, workloads=("llm-chat",), values=values)


def _exact_tape(trace: Trace, ratio: np.ndarray, horizon: int = 10) -> ForecastTape:
    """Perfect forecasts with a chosen live error ratio per step (what the drift monitor would say)."""
    values = np.asarray(trace.values)[:, 0]
    n = len(values)
    future = np.stack([values[np.minimum(np.arange(t, t + horizon), n - 1)] for t in range(n)])  # [T, H]
    stacked = np.repeat(future[:, None, None, :], 2, axis=2).astype(np.float32)  # levels 0.5 and 0.99
    present = np.ones((n, 1), dtype=bool)
    present[0] = False
    return ForecastTape(("llm-chat",), trace.start, trace.step_seconds, np.array([0.5, 0.99]), stacked, present,
                        ratio[:, None].astype(np.float32), np.zeros((n, 1), dtype=np.int16), ("exact",),
                        np.zeros((n, 1), dtype=bool))


def test_quality_gate_falls_back_to_reactive_while_live_error_is_high_and_returns_after() -> None:
    trace = _wave_trace()
    ratio = np.ones(len(trace.values))
    ratio[150:300] = 8.0  # the live error jumps to 8x its backtest baseline, then recovers
    sim = simulate(trace, config(), ["predictive"], tape=_exact_tape(trace, ratio), record_decisions=True)
    by_step = {int(round((d.decided_at - START) / STEP)): {r.code for r in d.reasons}
               for d in sim.runs["predictive"].decisions if d.kind == "replicas"}
    gated = [t for t, codes in by_step.items() if ReasonCode.QUALITY_GATE.name in codes]
    assert gated and min(gated) >= 150 and max(gated) < 300
    assert any(150 <= t < 300 for t in gated)
    before = [t for t, codes in by_step.items() if t < 150 and ReasonCode.FORECAST_UP.name in codes]
    after = [t for t, codes in by_step.items() if t >= 300 and ReasonCode.FORECAST_UP.name in codes]
    assert before and after
    assert all(ReasonCode.QUALITY_GATE.name not in by_step[t] for t in after)


def test_steps_behind_a_closed_quality_gate_count_as_forecast_fallback_minutes() -> None:
    trace = _wave_trace()
    ratio = np.ones(len(trace.values))
    ratio[150:300] = 8.0
    gated = simulate(trace, config(), ["predictive"], tape=_exact_tape(trace, ratio))
    open_ = simulate(trace, config(), ["predictive"], tape=_exact_tape(trace, np.ones(len(trace.values))))
    assert int(open_.runs["predictive"].forecast_fallback_steps[0]) == 1  # step 0 has no forecast
    # 150 gated steps, less the few it takes the ratio to be seen, plus step 0
    assert 140 <= int(gated.runs["predictive"].forecast_fallback_steps[0]) <= 151
    assert score(gated).workloads["predictive"]["llm-chat"]["forecast_fallback_minutes"] >= 140


def test_a_tape_shorter_than_the_lead_times_need_is_refused_with_a_clear_error() -> None:
    trace = _wave_trace()
    # 360 s nodes + 180 s replicas at 60 s steps need 10 forecast steps; this tape has 5.
    with pytest.raises(Exception, match="forecast tape: recorded with a 5-step horizon; these lead times and pools need 10 steps"):
        simulate(trace, config(), ["predictive"], tape=_exact_tape(trace, np.ones(len(trace.values)), horizon=5))


def test_the_tape_cache_key_changes_with_every_setting_that_shapes_the_recording() -> None:
    trace = _wave_trace()
    base = tape_key(trace, config())
    assert tape_key(trace, config()) == base
    assert tape_key(trace, config(pool={"provisioning_seconds": 600.0})) != base  # a longer horizon
    assert tape_key(trace, config({"quantile": 0.9})) != base
    assert tape_key(trace, config({"forecaster": "ets"})) != base
    assert tape_key(trace.scaled(2.0), config()) != base
    assert tape_key(trace, config({"target_utilization": 0.7})) == base  # does not shape forecasts


def test_a_workload_with_several_eligible_pools_reaches_the_policy_with_them(monkeypatch) -> None:
    """The replay hands decide() the eligible pools, so pool recommendations run in simulation."""
    from policies import POLICIES, predictive

    seen = []
    real = predictive.decide

    def spy(now, state, forecasts, log, cfg):
        seen.append(state.workloads.eligible)
        return real(now, state, forecasts, log, cfg)

    monkeypatch.setattr(POLICIES["predictive"], "decide", spy)
    trace = _wave_trace(60)
    cfg = config_from_mapping({
        "node_pools": [{"name": "dear", "price_per_gpu_hour": 4.0}, {"name": "cheap", "price_per_gpu_hour": 2.0, "max_nodes": 3}],
        "workloads": [{"name": "llm-chat", "node_pools": ["dear", "cheap"]}],
    })
    sim = simulate(trace, cfg, ["predictive"], tape=_exact_tape(trace, np.ones(60)), record_decisions=True)
    assert seen and all(e is not None and e.tolist() == [[True, True]] for e in seen)
    # Started on the cheap pool while it had room; when the 3-node cheap pool is outgrown the
    # policy recommends the dear one, and the node floors stay where the replicas run.
    moves = [d for d in sim.runs["predictive"].decisions if d.kind == "replicas" and d.node_pool == "dear"]
    assert moves and all(ReasonCode.POOL_CHOSEN.name in {r.code for r in d.reasons} for d in moves)
    assert sim.runs["predictive"].nodes[:, 0].max() == 0  # nothing ever ran on the dear pool


def test_a_tape_for_other_steps_is_refused_with_a_clear_error() -> None:
    trace = _wave_trace()
    tape = _exact_tape(_wave_trace(100), np.ones(100))
    with pytest.raises(Exception, match="forecast tape: recorded for 100 steps"):
        simulate(trace, config(), ["predictive"], tape=tape)


def test_a_tape_replays_what_the_live_forecaster_does(two_days, tape) -> None:
    """Recording then replaying gives the same run as forecasting live, step for step."""
    cfg = config()
    live = simulate(two_days, cfg, ["predictive"]).runs["predictive"]
    replayed = simulate(two_days, cfg, ["predictive"], tape=tape).runs["predictive"]
    assert np.array_equal(live.replicas, replayed.replicas)
    assert np.array_equal(live.nodes, replayed.nodes)


def test_a_rescaled_tape_matches_forecasting_the_rescaled_trace(two_days, tape) -> None:
    """Forecasters are scale-equivariant, so a recording serves a trace rescaled to any fleet."""
    cfg = config()
    scaled = two_days.scaled(3.0)
    direct = record_tape(scaled, cfg)
    reused = tape.scaled(3.0)
    prepared, _, _ = prepare(scaled, cfg)
    for t in (10, 700, 2000):
        a, b = direct.batch(t), reused.batch(t)
        assert np.allclose(a.values, b.values, rtol=1e-4, atol=1e-3)
    assert len(prepared.values) == direct.values.shape[0]
