"""Series/Forecast values and the streaming Holt-Winters forecaster behind the predictive policy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecasters.holt_winters import HoltWintersForecaster
from forecasters.series import Forecast, Series

DAY = 86_400


def daily(days: float, step: float = 60.0, seed: int = 0, start: float = 1_767_571_200.0) -> Series:
    n = int(days * DAY / step)
    t = np.arange(n) * step
    rng = np.random.default_rng(seed)
    values = 100 + 60 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 3, n)
    return Series("w", start, step, values)


def test_series_is_read_only_and_knows_its_end():
    s = Series("w", 100.0, 60.0, [1.0, 2.0, np.nan])
    assert s.end == 100 + 3 * 60
    assert not s.values.flags.writeable
    assert s.tail(2).start == 160.0 and list(s.tail(2).values[:1]) == [2.0]


def test_forecast_rejects_crossing_quantiles_and_nan():
    with pytest.raises(ValueError, match="monotone"):
        Forecast("w", 0, 60, {0.5: [2.0, 2.0], 0.9: [1.0, 3.0]}, "m")
    with pytest.raises(ValueError, match="NaN"):
        Forecast("w", 0, 60, {0.5: [np.nan]}, "m")


@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=20), st.floats(0.51, 0.999))
def test_exact_forecast_answers_every_quantile_with_the_values(values, q):
    f = Forecast.exact("w", 0, 60, np.array(values))
    assert np.array_equal(f.at_least(q), np.array(values))


def test_seasonal_forecast_is_monotone_and_tracks_the_cycle():
    series = daily(4)
    f = HoltWintersForecaster().forecast(series, 30)
    assert f is not None and f.fell_back is None and f.model == "holt-winters/holt-winters"
    levels = sorted(f.quantiles)
    stacked = np.stack([f.quantiles[q] for q in levels])
    assert (np.diff(stacked, axis=0) >= 0).all()
    # the truth continues the sine: the median is within a few noise sigmas of it
    t = series.end + 60 * np.arange(30) - series.start
    truth = 100 + 60 * np.sin(2 * np.pi * t / DAY)
    assert np.abs(f.quantiles[0.5] - truth).max() < 12
    # and the 0.99 quantile sits above the median by a noise-sized margin, not a huge one
    gap = f.quantiles[0.99] - f.quantiles[0.5]
    assert (gap > 0).all() and gap.max() < 30


def test_short_history_falls_back_and_says_why():
    f = HoltWintersForecaster().forecast(daily(0.5), 10)
    assert f is not None and f.fell_back and "holt" in f.fell_back
    tiny = HoltWintersForecaster().forecast(daily(0.03), 10)
    assert tiny is not None and tiny.model == "naive" and "buckets" in tiny.fell_back


def test_no_recent_observation_gives_no_forecast():
    s = daily(3)
    values = s.values.copy()
    values[-20:] = np.nan
    assert HoltWintersForecaster().forecast(Series("w", s.start, s.step, values), 10) is None


def test_streaming_updates_equal_a_statsmodels_refit_with_the_same_parameters():
    """Advancing the states bucket by bucket must be exactly statsmodels' own recursion."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    fc = HoltWintersForecaster(refit_every=10 * DAY)
    full = daily(4, seed=3)
    first = int(3 * DAY / 60)
    fc.forecast(Series("w", full.start, 60, full.values[:first]), 5)  # optimises on 3 days
    fit = fc._fits["w"]
    params = (fit.alpha, fit.beta, fit.gamma, fit.phi)
    fc.forecast(Series("w", full.start, 60, full.values), 5)  # advances one more day of buckets
    assert fc._fits["w"] is fit and (fit.alpha, fit.beta, fit.gamma, fit.phi) == params  # not re-optimised
    buckets = full.values.reshape(-1, 10).mean(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ExponentialSmoothing(buckets[: first // 10], trend="add", damped_trend=True, seasonal="add",
                                   seasonal_periods=144, initialization_method="heuristic").fit()
        p = ref.params
        again = ExponentialSmoothing(buckets, trend="add", damped_trend=True, seasonal="add", seasonal_periods=144,
                                     initialization_method="known", initial_level=p["initial_level"],
                                     initial_trend=p["initial_trend"], initial_seasonal=p["initial_seasons"]).fit(
            smoothing_level=p["smoothing_level"], smoothing_trend=p["smoothing_trend"],
            smoothing_seasonal=p["smoothing_seasonal"], damping_trend=p["damping_trend"], optimized=False)
    np.testing.assert_allclose(fit.forecast(6), again.forecast(6), rtol=1e-9)
    np.testing.assert_allclose(np.asarray(fit.fitted), again.fittedvalues, rtol=1e-9)


def test_gaps_in_history_do_not_break_the_forecast():
    s = daily(3)
    values = s.values.copy()
    values[1000:1100] = np.nan
    f = HoltWintersForecaster().forecast(Series("w", s.start, s.step, values), 12)
    assert f is not None and np.isfinite(f.quantiles[0.95]).all()


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**16), st.floats(0.1, 1e4))
def test_forecasts_are_non_negative_and_monotone_for_any_scale(seed, scale):
    s = daily(2.2, seed=seed)
    rng = np.random.default_rng(seed)
    values = np.maximum(s.values * scale / 100 + rng.normal(0, scale / 20, len(s)), 0)
    f = HoltWintersForecaster().forecast(Series("w", s.start, s.step, values), 9)
    assert f is not None
    stacked = np.stack([f.quantiles[q] for q in sorted(f.quantiles)])
    assert (stacked >= 0).all() and (np.diff(stacked, axis=0) >= -1e-9).all()


@pytest.mark.parametrize("gap", [5, 6, 9])
def test_naive_fallback_survives_a_short_gap_at_the_end(gap):
    """The naive level averaged fewer points than the guard checked: a 5-9 step gap gave NaN."""
    values = np.full(30, 10.0)
    values[-gap:] = np.nan
    f = HoltWintersForecaster().forecast(Series("w", 1_700_000_000.0, 60.0, values), 5)
    assert f is not None and f.model == "naive" and np.allclose(f.quantiles[0.5], 10.0)


def test_forecast_covers_lead_times_beyond_an_hour():
    """The coarse path was 8 buckets long: leads past ~70 minutes were held flat."""
    series = daily(4)
    f = HoltWintersForecaster().forecast(series, 240)
    t = series.end + 60 * np.arange(240) - series.start
    truth = 100 + 60 * np.sin(2 * np.pi * t / DAY)
    assert np.abs(f.quantiles[0.5] - truth).max() < 15
