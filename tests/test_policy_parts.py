"""The small pieces the predictive policy is built from: economics, forecast batches, the log, trends."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecasters.series import Forecast
from policies.economics import keep_quantile, newsvendor_quantile, replica_idle_cost
from policies.forecasts import ForecastBatch
from policies.types import DecisionLog
from simulations.replay import observed_trend

NOW = 1.7e9
STEP = 60.0
costs = st.floats(min_value=0.01, max_value=1e4, allow_nan=False)


@pytest.mark.parametrize(
    "miss, idle, sizing, keep",
    [
        (50.0, 2.5, 50 / 52.5, 0.95),  # the default: a $50/h miss against a $2.50/h GPU
        (2.5, 2.5, 0.5, 0.0),  # a miss costs what a GPU-hour costs: the median, nothing kept for its own sake
        (1.0, 4.0, 0.2, -3.0),  # idling costs more than missing: below the median, never keep
    ],
    ids=["miss 20x the GPU: size for q0.952, keep above a 5% chance",
         "miss equals the GPU: the median", "GPU dearer than a miss: low quantile, keep nothing extra"],
)
def test_newsvendor_and_keep_quantiles(miss, idle, sizing, keep) -> None:
    assert newsvendor_quantile(np.array([miss]), np.array([idle]))[0] == pytest.approx(sizing)
    assert keep_quantile(np.array([miss]), np.array([idle]))[0] == pytest.approx(keep)


@given(costs, costs, costs)
def test_a_dearer_miss_never_lowers_the_quantile(miss, more, idle) -> None:
    low = newsvendor_quantile(np.array([miss]), np.array([idle]))[0]
    high = newsvendor_quantile(np.array([miss + more]), np.array([idle]))[0]
    assert 0 < low <= high < 1


def test_idle_cost_is_gpus_times_the_pool_price() -> None:
    assert replica_idle_cost(np.array([1, 4]), np.array([1, 0]), np.array([2.5, 1.5])).tolist() == [1.5, 10.0]


def _forecast(name: str, lo, mid, hi, issued=NOW - STEP, levels=(0.5, 0.9, 0.99)) -> Forecast:
    return Forecast(name, issued, STEP, {levels[0]: np.asarray(lo, float), levels[1]: np.asarray(mid, float),
                                          levels[2]: np.asarray(hi, float)}, "test")


def test_batch_interpolates_between_stored_levels_and_caps_at_the_highest() -> None:
    batch = ForecastBatch.gather(("a",), {"a": _forecast("a", [10, 10], [20, 20], [40, 40])}, STEP)
    assert batch.paths(NOW, np.array([0.5]), 2)[0].tolist() == [10, 10]
    assert batch.paths(NOW, np.array([0.7]), 2)[0].tolist() == pytest.approx([15, 15])
    assert batch.paths(NOW, np.array([0.945]), 2)[0].tolist() == pytest.approx([30, 30])
    assert batch.paths(NOW, np.array([0.999]), 2)[0].tolist() == [40, 40]


def test_batch_aligns_each_forecast_to_now_and_extends_a_short_horizon() -> None:
    older = _forecast("a", [1, 2, 3], [1, 2, 3], [1, 2, 3], issued=NOW - 2 * STEP)  # index 1 is now
    batch = ForecastBatch.gather(("a", "missing"), {"a": older}, STEP)
    paths = batch.paths(NOW, np.array([0.9, 0.9]), 4)
    assert paths[0].tolist() == [2, 3, 3, 3]
    assert paths[1].tolist() == [0, 0, 0, 0] and not batch.present[1]


def test_batch_unions_different_level_sets() -> None:
    a = _forecast("a", [10], [20], [40])
    b = Forecast("b", NOW - STEP, STEP, {0.5: np.array([5.0]), 0.95: np.array([9.0])}, "test")
    batch = ForecastBatch.gather(("a", "b"), {"a": a, "b": b}, STEP)
    assert batch.levels.tolist() == [0.5, 0.9, 0.95, 0.99]
    assert batch.paths(NOW, np.array([0.95, 0.95]), 1)[:, 0].tolist() == pytest.approx([20 + 20 * 5 / 9, 9.0])
    assert batch.as_mapping()["b"].quantiles[0.95].tolist() == [9.0]


def test_gathering_a_batch_for_its_own_names_is_the_same_batch() -> None:
    batch = ForecastBatch.gather(("a",), {"a": _forecast("a", [1], [2], [3])}, STEP)
    assert ForecastBatch.gather(("a",), batch, STEP) is batch
    again = ForecastBatch.gather(("b", "a"), batch, STEP)
    assert again.present.tolist() == [False, True]


def test_decision_log_round_trips_through_json_with_its_gate_and_stabilization_memory() -> None:
    log = DecisionLog.empty(("a", "b")).appended(NOW, np.array([3, 4]), 300).with_forecast_recs(np.array([5, -1]))
    log = log.with_gate(np.array([True, False]))
    again = DecisionLog.from_json(log.to_json())
    assert again.names == log.names and again.times.tolist() == log.times.tolist()
    assert again.recommendations.tolist() == [[3, 4]] and again.forecast_recs.tolist() == [[5, -1]]
    assert again.gated.tolist() == [True, False]


def test_decision_log_follows_renamed_workloads_with_its_gate() -> None:
    log = DecisionLog.empty(("a", "b")).appended(NOW, np.array([3, 4]), 300).with_gate(np.array([True, False]))
    moved = log.aligned(("b", "c", "a"))
    assert moved.gated.tolist() == [False, False, True]
    assert moved.recommendations.tolist() == [[4, -1, 3]]


def test_observed_trend_sees_a_steady_ramp_and_ignores_noise() -> None:
    t = np.arange(60, dtype=float)
    ramp = (100 + 2.0 * t)[:, None]  # +2 rps a minute
    slope = observed_trend(ramp, STEP)
    assert np.isnan(slope[:6]).all()
    assert slope[20:, 0] * 60 == pytest.approx(np.full(40, 2.0))
    noise = (100 + np.random.default_rng(0).normal(0, 20, 600))[:, None]
    flat = observed_trend(noise, STEP)[11:, 0]
    assert (flat == 0).mean() > 0.9  # a trend only where the rise is beyond 2 standard errors


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1e4), min_size=12, max_size=80))
def test_observed_trend_uses_only_the_past(values) -> None:
    y = np.asarray(values)[:, None]
    full = observed_trend(y, STEP)
    for t in (11, len(values) - 1):
        assert np.array_equal(observed_trend(y[:t + 1], STEP)[t], full[t], equal_nan=True)


def test_a_coarser_forecast_is_read_by_time_at_the_decision_step() -> None:
    # A 5-minute forecast issued 1 minute ago: each of its values covers five 1-minute decisions.
    five = Forecast("a", NOW - STEP, 300.0, {0.5: np.array([1.0, 2.0, 3.0])}, "test")
    batch = ForecastBatch.gather(("a",), {"a": five}, STEP)
    assert batch.step == 300.0
    assert batch.paths(NOW, np.array([0.5]), 11, STEP)[0].tolist() == [1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3]
    # Read at its own step it moves one value a step.
    assert batch.paths(NOW - STEP + 300.0, np.array([0.5]), 3)[0].tolist() == [1, 2, 3]


def test_an_expired_forecast_is_missing_not_stretched() -> None:
    old = _forecast("a", [1, 2], [1, 2], [1, 2], issued=NOW - 5 * STEP)  # covered NOW-4 and NOW-3 steps
    fresh = _forecast("b", [1, 2], [1, 2], [1, 2])
    batch = ForecastBatch.gather(("a", "b"), {"a": old, "b": fresh}, STEP)
    assert batch.present.tolist() == [True, True]
    assert batch.fresh(NOW).tolist() == [False, True]
    assert batch.fresh(NOW - 3 * STEP).tolist() == [True, True]


def test_forecasts_on_different_steps_are_refused() -> None:
    a = _forecast("a", [1], [1], [1])
    b = Forecast("b", NOW - STEP, 300.0, {0.5: np.array([1.0])}, "test")
    with pytest.raises(ValueError, match=r"share a step, got \[60.0, 300.0\] s"):
        ForecastBatch.gather(("a", "b"), {"a": a, "b": b}, STEP)
