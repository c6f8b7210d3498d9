"""Forecast metrics (properties) and the rolling-origin backtest harness on synthetic series."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from forecasters.backtest import (
    BACKTEST_QUANTILES,
    METRICS,
    backtest,
    backtest_trace,
    build_models,
    compare,
    plan_origins,
)
from forecasters.base import ForecastInputError
from forecasters.metrics import coverage, expanding_naive_scale, mae, mase, naive_scale, overall, pinball, smape
from forecasters.naive import Naive
from forecasters.series import Forecast, Series

FAST = settings(max_examples=60, deadline=None)
values = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


def grids(shape=st.tuples(st.integers(1, 6), st.integers(1, 5)), elements=values):
    return shape.flatmap(lambda s: arrays(np.float64, s, elements=elements))


def with_gaps(array):
    """``array`` with some cells turned into NaN (no truth)."""
    return arrays(bool, array.shape).map(lambda gap: np.where(gap, np.nan, array))


# -- metrics ---------------------------------------------------------------------------------------

@FAST
@given(grids().flatmap(lambda t: st.tuples(with_gaps(t), st.lists(grids(st.just(t.shape)), min_size=1, max_size=4))))
def test_pinball_is_nonnegative_and_zero_at_a_perfect_forecast(case):
    truth, forecasts = case
    levels = [0.05, 0.3, 0.5, 0.9][: len(forecasts)]
    loss = pinball(truth, dict(zip(levels, forecasts)))
    assert loss.shape == (truth.shape[1],)
    assert (loss[np.isfinite(loss)] >= 0).all()
    assert np.nan_to_num(pinball(truth, {q: truth for q in levels})).max() == 0.0
    # leads with no truth at all are NaN, the others are not
    assert np.array_equal(np.isnan(loss), np.isnan(truth).all(axis=0))


@FAST
@given(grids().flatmap(lambda t: st.tuples(with_gaps(t), grids(st.just(t.shape)), grids(st.just(t.shape)))))
def test_coverage_is_a_fraction_and_one_for_an_interval_around_the_truth(case):
    truth, a, b = case
    cov = coverage(truth, np.minimum(a, b), np.maximum(a, b))
    finite = cov[np.isfinite(cov)]
    assert ((finite >= 0) & (finite <= 1)).all()
    around = coverage(truth, truth - 1.0, truth + 1.0)
    assert np.all((around == 1.0) | np.isnan(truth).all(axis=0))


@FAST
@given(st.lists(st.one_of(values, st.just(float("nan"))), min_size=2, max_size=60))
def test_mase_of_the_in_sample_naive_forecast_is_one(history):
    y = np.array(history)
    pairs = np.isfinite(y[1:]) & np.isfinite(y[:-1])
    scale = naive_scale(y)
    if not pairs.any():
        assert math.isnan(scale)
        return
    # one-step naive forecasts over the history: origin t predicts y[t] from y[t-1]
    truth, point = y[1:, None], y[:-1, None]
    if scale == 0:  # a constant history: MASE is undefined, and says so
        assert math.isnan(mase(truth, point, scale)[0])
    else:
        assert mase(truth, point, scale)[0] == pytest.approx(1.0)
        assert mae(truth, point)[0] == pytest.approx(scale)


@FAST
@given(st.lists(st.one_of(values, st.just(float("nan"))), min_size=1, max_size=40))
def test_expanding_scale_matches_the_scale_of_each_prefix(history):
    y = np.array(history)
    origins = np.arange(len(y) + 1)
    np.testing.assert_allclose(expanding_naive_scale(y, origins), [naive_scale(y[:o]) for o in origins])


@FAST
@given(grids().flatmap(lambda t: st.tuples(with_gaps(t), grids(st.just(t.shape)))))
def test_smape_is_between_0_and_200_and_0_at_a_perfect_forecast(case):
    truth, point = case
    s = smape(truth, point)
    finite = s[np.isfinite(s)]
    assert ((finite >= 0) & (finite <= 200 + 1e-9)).all()
    assert np.nan_to_num(smape(truth, truth)).max() == 0.0


def test_smape_counts_zero_forecast_of_zero_demand_as_zero():
    assert smape(np.zeros((2, 3)), np.zeros((2, 3))).tolist() == [0.0, 0.0, 0.0]
    assert smape(np.array([[0.0]]), np.array([[5.0]]))[0] == 200.0


def test_gaps_in_truth_are_ignored_not_scored_as_zero():
    truth = np.array([[10.0, np.nan], [12.0, np.nan]])
    point = np.array([[11.0, 0.0], [11.0, 50.0]])
    np.testing.assert_array_equal(mae(truth, point), [1.0, np.nan])
    assert overall(mae(truth, point)) == 1.0
    assert math.isnan(overall(np.array([np.nan, np.nan])))


def test_mase_uses_each_origins_own_scale_and_skips_a_zero_scale():
    truth = np.array([[4.0], [4.0], [4.0]])
    point = np.array([[2.0], [3.0], [0.0]])
    assert mase(truth, point, np.array([2.0, 0.5, 0.0]))[0] == pytest.approx((1.0 + 2.0) / 2)


# -- origins ----------------------------------------------------------------------------------------

@FAST
@given(st.integers(2, 5000), st.sampled_from([10.0, 60.0, 600.0, 3600.0]), st.integers(1, 300), st.integers(1, 60),
       st.one_of(st.none(), st.integers(1, 2000)))
def test_origins_have_full_truth_after_them_and_enough_history_before(n, step, horizon, n_origins, min_train):
    try:
        origins = plan_origins(n, step, horizon, n_origins, min_train)
    except ForecastInputError as exc:
        assert "too short" in str(exc)
        assert n - horizon < max(1, n // 3 if min_train is None else min_train)
        return
    assert 1 <= len(origins) <= n_origins
    assert (np.diff(origins) > 0).all()
    assert origins[-1] == n - horizon  # the latest origin with a full horizon of truth
    assert origins[0] >= (max(1, n // 3) if min_train is None else min_train)
    assert origins[0] >= n - horizon - min(round(7 * 86400 / step), n // 3)


def test_one_origin_is_the_latest():
    assert plan_origins(1000, 60.0, 10, n_origins=1).tolist() == [990]


# -- the harness -------------------------------------------------------------------------------------

def seasonal_series(days: float = 5, step: float = 300.0, seed: int = 0, key: str = "s") -> Series:
    rng = np.random.default_rng(seed)
    t = np.arange(int(days * 86400 / step)) * step
    y = 100 + 60 * np.sin(2 * np.pi * t / 86400) + rng.normal(0, 3, t.shape[0])
    return Series(key, 1_700_000_000.0, step, y)


class Recorder:
    """A model that remembers what it saw and answers with the last value (no quantiles but the median)."""

    name = "recorder"

    def __init__(self, fail_every: int = 0):
        self.seen: list[Series] = []
        self.fail_every = fail_every

    def fit(self, history: Series):
        self.seen.append(history)
        if self.fail_every and len(self.seen) % self.fail_every == 0:
            raise ForecastInputError(f"series {history.key!r}: refused on purpose")
        return self

    def predict(self, horizon: int) -> Forecast:
        h = self.seen[-1]
        last = float(h.values[-1])
        return Forecast(h.key, h.end - h.step, h.step, {0.5: np.full(horizon, last)}, self.name)


def test_seasonal_naive_beats_naive_far_ahead_on_a_daily_cycle():
    series = seasonal_series()
    naive, seasonal = build_models(["naive", "seasonal-naive"])
    results = [backtest(m, series, horizon=60, n_origins=12) for m in (naive, seasonal)]
    lead60 = [r.per_lead["mae"][59] for r in results]
    assert lead60[1] < 0.5 * lead60[0]
    assert compare(results)[0].best == "seasonal-naive"
    assert results[1].answered_by == {"seasonal-naive": 12} and results[1].n_failed == 0


def test_origins_never_see_the_future_and_the_window_expands():
    series = seasonal_series(days=3)
    model = Recorder()
    result = backtest(model, series, horizon=24, n_origins=10)
    assert len(model.seen) == result.n_origins == 10
    for history, origin in zip(model.seen, result.origins):
        assert history.end == pytest.approx(origin)  # the history stops right before the first forecast step
        assert history.start == series.start  # all the data before the origin
        np.testing.assert_array_equal(history.values, series.values[: len(history)])
    assert result.origins[-1] + 24 * series.step == pytest.approx(series.end)


def test_failures_are_counted_not_raised_and_coverage_needs_the_levels():
    result = backtest(Recorder(fail_every=3), seasonal_series(days=3), horizon=6, n_origins=12)
    assert result.n_failed == 4
    assert result.failures == {"series 's': refused on purpose": 4}
    assert np.isfinite(result.per_lead["mae"]).all()
    assert np.isnan(result.per_lead["cov90"]).all()  # only a median: no interval to score
    assert result.levels == (0.5,)


def test_every_origin_failing_leaves_nan_not_a_crash():
    result = backtest(Recorder(fail_every=1), seasonal_series(days=3), horizon=6, n_origins=5)
    assert result.n_failed == 5 and math.isnan(result.fit_s) and math.isnan(result.summary["mae"])
    assert compare([result])[0].best is None
    json.dumps(result.to_json(), allow_nan=False)


def test_gaps_in_the_truth_are_excluded():
    y = np.full(600, 50.0)
    y[-40:-20] = np.nan  # an outage inside the evaluation window
    result = backtest(Naive(quantiles=BACKTEST_QUANTILES), Series("flat", 0.0, 60.0, y), horizon=10, n_origins=30)
    assert result.summary["mae"] == 0.0  # a flat series: the naive forecast is exact wherever there is truth
    assert result.summary["cov90"] == 1.0


def test_backtest_trace_reports_progress_per_fit_and_keeps_order():
    series = [seasonal_series(days=3, key="a", seed=1), seasonal_series(days=3, key="b", seed=2)]
    calls = []
    results = backtest_trace(build_models(["naive", "seasonal-naive"]), series, horizon=12, n_origins=6,
                             progress=lambda done, total: calls.append((done, total)))
    assert [(r.key, r.model) for r in results] == [("a", "naive"), ("a", "seasonal-naive"), ("b", "naive"),
                                                  ("b", "seasonal-naive")]
    assert calls == [(k, 24) for k in range(1, 25)]
    r = results[0]
    assert set(r.per_lead) == set(METRICS) and all(v.shape == (12,) for v in r.per_lead.values())
    assert r.levels == BACKTEST_QUANTILES and 0 <= r.summary["cov90"] <= 1


def test_a_series_too_short_fails_before_any_fit():
    model = Recorder()
    with pytest.raises(ForecastInputError, match="too short"):
        backtest_trace([model], [seasonal_series(days=3, key="ok"), Series("tiny", 0.0, 60.0, np.ones(5))], horizon=12)
    assert model.seen == []


def test_json_is_plain_and_truncation_scores_the_first_leads():
    result = backtest(build_models(["naive"])[0], seasonal_series(days=3), horizon=12, n_origins=8, keep=2)
    doc = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert doc["n_origins"] == 8 and len(doc["per_lead"]["mae"]) == 12 and len(doc["forecasts"]) == 2
    assert set(doc["forecasts"][0]) == {"origin", "truth", "median", "q05", "q95"}
    short = result.truncated(4)
    assert short.horizon == 4 and short.summary["mae"] == pytest.approx(np.mean(result.per_lead["mae"][:4]))
    assert len(short.forecasts[-1]["median"]) == 4


def test_compare_ranks_and_measures_improvement():
    series = seasonal_series()
    results = backtest_trace(build_models(["naive", "seasonal-naive"]), series, horizon=36, n_origins=6)
    (c,) = compare(results)
    assert c.ranking == ["seasonal-naive", "naive"]
    gain = c.improvement("seasonal-naive", ["naive"])
    assert gain == pytest.approx(100 * (1 - c.scores["seasonal-naive"] / c.scores["naive"]))
    assert gain > 0 and math.isnan(c.improvement("missing", ["naive"]))
    with pytest.raises(ValueError):
        compare(results, metric="cov90")


def test_unknown_model_is_an_input_error():
    with pytest.raises(ForecastInputError, match="unknown model"):
        build_models(["nope"])
