"""DriftMonitor: live forecast error versus its baseline, hysteresis, the retrain trigger, export."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecasters.base import Calibration
from forecasters.drift import DriftMonitor, baseline_from_calibration
from forecasters.series import Forecast

STEP = 60.0
T0 = 1_767_571_200.0


def at(i: int) -> float:
    return T0 + i * STEP


def forecast(key: str, issued: float, medians, spread: float | None = None, level: float = 0.5) -> Forecast:
    medians = np.asarray(medians, dtype=float)
    quantiles = {level: medians}
    if spread is not None:
        quantiles.update({0.05: np.maximum(medians - spread, 0.0), 0.95: medians + spread})
    return Forecast(key, issued, STEP, quantiles, "test")


def score(monitor: DriftMonitor, key: str, i: int, truth: float, predicted: float, spread: float | None = None):
    """One step: a one-step forecast issued at step i-1 for step i, then the observation at step i."""
    monitor.record(forecast(key, at(i - 1), [predicted], spread))
    monitor.observe(key, at(i), truth)
    return monitor.status(key, at(i))


def run(monitor: DriftMonitor, key: str, truths, predictions, spread=None, start: int = 0):
    return [score(monitor, key, start + i, t, p, spread) for i, (t, p) in enumerate(zip(truths, predictions))]


def noisy(n: int, level: float = 100.0, sd: float = 5.0, seed: int = 0) -> np.ndarray:
    return level + np.random.default_rng(seed).normal(0.0, sd, n)


def stored_items(monitor: DriftMonitor) -> int:
    state = monitor.to_json()["keys"]
    return sum(len(k["observations"]) + sum(len(t["pending"]) + len(t["scored"]) for t in k["leads"].values())
               for k in state.values())


def test_no_drift_when_live_error_matches_the_backtest():
    monitor = DriftMonitor(baseline={"chat": 4.0}, unit="rps")
    statuses = run(monitor, "chat", noisy(400), np.full(400, 100.0))
    last = statuses[-1]
    assert not any(s.drifting for s in statuses)
    assert last.n_points == 180  # 3 h of 60 s steps
    assert 0.7 < last.ratio < 1.3
    assert last.baseline_source == "backtest" and last.baseline_mae == 4.0
    assert last.reason.startswith("ok: live MAE") and "rps" in last.reason
    assert monitor.quality_gate("chat", at(399)) and not last.retrain


def test_level_shift_the_forecasts_miss_is_drift_with_the_numbers_in_the_reason():
    truth = np.concatenate([noisy(200), noisy(100, level=160.0, seed=1)])
    monitor = DriftMonitor(baseline={"chat": 4.0}, unit="rps")
    statuses = run(monitor, "chat", truth, np.full(300, 100.0))
    assert not any(s.drifting for s in statuses[:200])
    first = next(i for i, s in enumerate(statuses) if s.drifting)
    assert 200 < first < 230  # noticed within half an hour of the shift
    last = statuses[-1]
    assert last.ratio > 5 and not monitor.quality_gate("chat", at(299))
    assert last.reason.startswith("drifting: live MAE")
    assert f"{last.live_mae:.1f} rps" in last.reason
    assert f"{last.ratio:.2f}x the backtest's 4.0" in last.reason
    assert "last 3 h" in last.reason and "threshold 1.5x" in last.reason


def test_without_a_baseline_drift_is_judged_against_a_naive_forecast():
    truth = np.concatenate([noisy(200), noisy(100, level=160.0, seed=1)])
    monitor = DriftMonitor()
    statuses = run(monitor, "chat", truth, np.full(300, 100.0))
    before = statuses[199]
    assert before.baseline_source == "naive" and not before.drifting
    assert before.ratio < 1.0  # the mean beats "the last value" on white noise
    assert statuses[-1].drifting
    assert "naive forecast" in statuses[-1].reason and "no backtest baseline" in statuses[-1].reason


def test_hysteresis_keeps_drift_on_between_recover_and_threshold():
    monitor = DriftMonitor(baseline={"w": 10.0}, window_s=20 * STEP, min_points=10)
    errors = [20.0] * 25 + [13.0] * 40 + [11.0] * 40 + [14.0] * 40  # ratios 2.0, 1.3, 1.1, 1.4
    statuses = run(monitor, "w", np.full(len(errors), 100.0), 100.0 + np.array(errors))
    drifting = [s.drifting for s in statuses]
    assert drifting[24] and all(drifting[25:65])  # 1.3x is below the threshold but above recover
    assert "still drifting" in statuses[64].reason and "clears below 1.2x" in statuses[64].reason
    assert not any(drifting[85:])  # cleared below 1.2x, and 1.4x does not turn it back on
    assert sum(a != b for a, b in zip(drifting, drifting[1:])) == 2


def test_hysteresis_stops_the_flapping_a_single_threshold_shows():
    rng = np.random.default_rng(3)
    errors = 10.0 * np.clip(1.5 + rng.normal(0, 0.25, 600), 1.25, None)  # ratio wandering around 1.5
    flips = {}
    for name, recover in (("hysteresis", 1.2), ("single threshold", 1.5)):
        monitor = DriftMonitor(baseline={"w": 10.0}, window_s=10 * STEP, min_points=5, recover=recover)
        drifting = [s.drifting for s in run(monitor, "w", np.full(600, 100.0), 100.0 + errors)]
        flips[name] = sum(a != b for a, b in zip(drifting, drifting[1:]))
    assert flips["hysteresis"] == 1
    assert flips["single threshold"] > 10


def test_retrain_fires_once_per_episode_and_resets_after_acknowledgement():
    monitor = DriftMonitor(baseline={"w": 10.0}, window_s=30 * STEP, min_points=10, retrain_after_s=3600)
    statuses = run(monitor, "w", np.full(100, 100.0), np.full(100, 130.0))
    first_drift = next(i for i, s in enumerate(statuses) if s.drifting)
    fired = [i for i, s in enumerate(statuses) if s.retrain]
    assert (fired[0] - first_drift) * STEP == 3600
    assert fired == list(range(fired[0], 100))  # latched: pending until acknowledged
    assert "retrain requested: forecasts at lead 1 have drifted for at least 1 h" in statuses[-1].reason
    assert monitor.metrics()[-1] == ("aiops_forecast_retrain_pending", {"workload": "w"}, 1.0)

    monitor.acknowledge_retrain("w", at(99))
    after = monitor.status("w", at(99))
    assert not after.retrain and after.n_points == 0
    assert after.drifting and not monitor.quality_gate("w", at(99))  # the new model must earn trust
    statuses = run(monitor, "w", np.full(100, 100.0), np.full(100, 130.0), start=100)
    fired = [i for i, s in enumerate(statuses) if s.retrain]
    # still drifting: it fires again only after min_points new points plus another hour
    assert fired[0] == (10 - 1) + 60


def test_retrain_after_acknowledgement_clears_once_the_new_model_is_good():
    monitor = DriftMonitor(baseline={"w": 10.0}, window_s=30 * STEP, min_points=10, retrain_after_s=600)
    run(monitor, "w", np.full(40, 100.0), np.full(40, 130.0))
    assert monitor.status("w", at(39)).retrain
    monitor.acknowledge_retrain("w", at(39))
    statuses = run(monitor, "w", np.full(40, 100.0), np.full(40, 108.0), start=40)
    assert statuses[8].drifting and not statuses[9].drifting  # cleared on the 10th good point
    assert not any(s.retrain for s in statuses)
    assert monitor.quality_gate("w", at(79))


def test_low_interval_coverage_persisting_requests_a_retrain():
    monitor = DriftMonitor(baseline={"w": 100.0}, window_s=30 * STEP, min_points=10, retrain_after_s=600)
    statuses = run(monitor, "w", np.full(40, 100.0), np.full(40, 105.0), spread=2.0)  # truth always outside
    assert not any(s.drifting for s in statuses)  # the median is fine against the baseline...
    assert statuses[-1].coverage_90 == 0.0
    assert statuses[-1].retrain  # ...but the interval is not
    assert "90% interval has covered under 75%" in statuses[-1].reason


def test_coverage_is_tracked_only_with_a_90_percent_interval():
    monitor = DriftMonitor(baseline={"a": 1.0, "b": 1.0}, min_points=1)
    run(monitor, "a", [100.0] * 5, [101.0] * 5, spread=3.0)
    run(monitor, "b", [100.0] * 5, [101.0] * 5)
    assert monitor.status("a", at(4)).coverage_90 == 1.0
    assert monitor.status("b", at(4)).coverage_90 is None


def test_nan_observations_are_gaps_not_zeros():
    monitor = DriftMonitor(baseline={"w": 1.0}, min_points=1)
    monitor.record(forecast("w", at(0), [100.0, 100.0, 100.0]))
    assert monitor.observe("w", at(1), math.nan) == 0
    assert monitor.status("w", at(1)).n_points == 0 and monitor.status("w", at(1)).live_mae is None
    assert monitor.observe("w", at(1) + 10, 103.0) == 1  # the pending forecast is scored by a later real value
    monitor.observe("w", at(2), float("nan"))
    status = monitor.status("w", at(3))
    assert status.n_points == 1 and status.live_mae == pytest.approx(3.0)


def test_each_tracked_lead_is_scored_against_its_own_target():
    monitor = DriftMonitor(baseline={"w": {1: 1.0, 5: 4.0}}, lead=5, leads=(1,), min_points=1)
    assert monitor.leads == (1, 5)
    monitor.record(Forecast("w", at(0), STEP, {0.6: np.arange(1.0, 11.0)}, "test"))  # median: lowest level >= 0.5
    for i in range(1, 11):
        monitor.observe("w", at(i), float(i) + 2.0)
    lead5, lead1 = monitor.status("w", at(10)), monitor.status("w", at(10), lead=1)
    assert lead5.lead == 5 and lead5.n_points == 1 and lead5.baseline_mae == 4.0 and lead5.ratio == pytest.approx(0.5)
    assert lead1.n_points == 1 and lead1.ratio == pytest.approx(2.0)
    with pytest.raises(ValueError, match="not tracked"):
        monitor.status("w", at(10), lead=3)


def test_memory_stays_bounded_however_long_it_runs():
    monitor = DriftMonitor(leads=(1, 10), window_s=3600)
    truth = noisy(3000)
    sizes = []
    for i in range(3000):
        monitor.record(forecast("w", at(i), np.full(30, 100.0)))
        if i % 7:  # some gaps, so some forecasts are never scored
            monitor.observe("w", at(i), truth[i])
        if i in (1000, 2999):
            sizes.append(stored_items(monitor))
    window_steps = 60
    # per lead: at most a window of pending plus a window of scored points; a few observations
    assert max(sizes) <= 2 * (2 * window_steps + 10) + 11
    assert abs(sizes[1] - sizes[0]) <= 2  # flat, not growing with the run's length
    capped = DriftMonitor(window_s=10**9, capacity=50)
    for i in range(500):
        capped.record(forecast("w", at(i), [100.0]))
    assert stored_items(capped) == 50


def test_json_round_trip_continues_identically():
    truth = np.concatenate([noisy(120), noisy(120, level=150.0, seed=2)])
    original = DriftMonitor(baseline={"a": 4.0}, leads=(1, 3), window_s=3600, min_points=10, unit="rps")
    run(original, "a", truth[:150], np.full(150, 100.0), spread=8.0)
    run(original, "b", truth[:150], truth[:150] + 1.0)
    text = json.dumps(original.to_json(), allow_nan=False)  # strict JSON
    restored = DriftMonitor.from_json(json.loads(text))
    assert restored.to_json() == original.to_json()
    for monitor in (original, restored):
        run(monitor, "a", truth[150:], np.full(90, 100.0), spread=8.0, start=150)
    assert restored.status("a", at(239)) == original.status("a", at(239))
    assert restored.prometheus_text() == original.prometheus_text()
    with pytest.raises(ValueError, match="drift state"):
        DriftMonitor.from_json({"version": 99})


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\} '
                    r'(NaN|[+-]Inf|[-+]?[0-9.]+(?:e[-+]?[0-9]+)?)$')


def test_prometheus_text_is_well_formed_and_escapes_label_values():
    odd = 'we"ird\\name\nwith newline'
    monitor = DriftMonitor(baseline={"plain": 4.0}, min_points=2)
    run(monitor, "plain", [100.0, 120.0, 130.0], [100.0] * 3, spread=5.0)
    run(monitor, odd, [100.0, 120.0, 130.0], [100.0] * 3)
    text = monitor.prometheus_text()
    assert text.endswith("\n")
    typed, names = set(), []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:]
            assert kind == "gauge"
            typed.add(name)
            continue
        match = SAMPLE.match(line)
        assert match, line
        assert match.group(1) in typed  # TYPE comes before the samples
        names.append(match.group(1))
        float(match.group(3))
    assert 'workload="we\\"ird\\\\name\\nwith newline"' in text
    assert {"aiops_forecast_live_mae", "aiops_forecast_baseline_mae", "aiops_forecast_error_ratio",
            "aiops_forecast_drifting", "aiops_forecast_retrain_pending",
            "aiops_forecast_interval_coverage"} <= set(names)
    drifting = [m for m in monitor.metrics() if m[0] == "aiops_forecast_drifting" and m[1]["workload"] == "plain"]
    assert drifting == [("aiops_forecast_drifting", {"workload": "plain", "lead": "1"}, 1.0)]
    assert DriftMonitor().prometheus_text() == ""


def test_baseline_from_calibration_takes_the_backtest_mae_per_lead():
    calibration = Calibration({0.5: np.zeros(3)}, np.array([2.0, 3.0, 5.0]), 1.0, 20)
    assert baseline_from_calibration(calibration, (1, 3, 10)) == {1: 2.0, 3: 5.0}


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="recover"):
        DriftMonitor(threshold=1.2, recover=1.5)
    with pytest.raises(ValueError, match="lead"):
        DriftMonitor(lead=0)
    with pytest.raises(ValueError, match="baseline"):
        DriftMonitor(baseline={"w": -1.0})


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.tuples(st.one_of(st.floats(0, 1e4), st.just(math.nan)), st.floats(0, 1e4)), max_size=60),
    min_points=st.integers(1, 40),
    with_baseline=st.booleans(),
)
def test_ratio_is_non_negative_and_drift_needs_min_points(steps, min_points, with_baseline):
    monitor = DriftMonitor(baseline={"w": 5.0} if with_baseline else None, window_s=15 * STEP,
                           min_points=min_points, threshold=1.5, recover=1.2)
    was_drifting = False
    for i, (truth, predicted) in enumerate(steps):
        status = score(monitor, "w", i, truth, predicted)
        assert status.ratio is None or status.ratio >= 0
        assert status.n_points <= i + 1
        if status.drifting and not was_drifting:
            assert status.n_points >= min_points
        was_drifting = status.drifting
