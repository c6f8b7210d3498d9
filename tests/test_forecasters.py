"""Series/Forecast values, the shared fit/predict machinery (cleaning, fallbacks, conformal
calibration), the ETS and profile models, the selector and the streaming wrapper."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecasters import build
from forecasters.base import ForecastInputError, prepare, resample, seasons, steps_for
from forecasters.ets import ETS, _recursion, buckets
from forecasters.naive import Naive, SeasonalNaive
from forecasters.profile import Profile
from forecasters.selector import Selector
from forecasters.series import Forecast, Series
from forecasters.stream import ForecastStream

DAY = 86_400
START = 1_767_571_200.0  # a midnight UTC


def daily(days: float, step: float = 60.0, seed: int = 0, noise: float = 3.0, start: float = START) -> Series:
    n = int(days * DAY / step)
    t = np.arange(n) * step
    rng = np.random.default_rng(seed)
    values = 100 + 60 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, noise, n)
    return Series("w", start, step, values)


# -- values -------------------------------------------------------------------------------------
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


# -- input handling -----------------------------------------------------------------------------
def test_seasons_and_horizons_come_from_the_step():
    assert seasons(60) == {"daily": 1440, "weekly": 10080}
    assert seasons(600) == {"daily": 144, "weekly": 1008}
    assert seasons(7 * 3600) == {"weekly": 24}  # 86400 / 25200 is not whole: no daily season
    assert steps_for(1800, 60) == 30 and steps_for(1800, 600) == 3 and steps_for(60, 600) == 1


def test_prepare_fills_gaps_keeps_truth_and_removes_isolated_spikes():
    values = np.full(50, 10.0)
    values[:3] = np.nan  # leading gap: dropped
    values[20:23] = np.nan  # interior gap
    values[19] = 16.0
    values[30] = 1000.0  # one-point spike
    values[40:] = 30.0  # a level shift is demand, not a spike
    values[-1] = np.nan  # trailing gap: last value carried
    p = prepare(Series("w", 0.0, 60.0, values))
    assert p.start == 180.0 and p.y.shape[0] == p.clean.shape[0] == 47
    assert np.isnan(p.observed[17:20]).all()
    assert (p.y[17:20] == 16.0).all()  # forecasts condition on the past only: carried forward
    np.testing.assert_allclose(p.clean[17:20], [14.5, 13.0, 11.5])  # estimation: interpolated
    assert p.y[27] == 1000.0 and p.clean[27] == 10.0 and p.despiked == 1  # spikes only leave `clean`
    assert (p.clean[37:] == 30.0).all() and (p.y[37:] == 30.0).all() and p.filled == 4


def test_forecasts_from_an_origin_never_depend_on_later_values():
    """The conformal backtest forecasts from origins inside the history: changing anything after
    an origin (gaps included) must not change the forecast from it."""
    s = daily(4, step=600.0, seed=3)
    values = np.array(s.values)
    values[400:410] = np.nan  # a gap that straddles the origin below
    origin = 405
    other = values.copy()
    other[origin:] = np.where(np.isnan(other[origin:]), np.nan, other[origin:] * 3 + 50)
    for model in (Naive(), SeasonalNaive(), Profile(), ETS()):
        params = model._estimate(prepare(Series("w", s.start, 600.0, values[:300])).clean, s.start, 600.0)
        a, _ = model._paths(params, prepare(Series("w", s.start, 600.0, values)).y, s.start, 600.0, np.array([origin]), 6)
        b, _ = model._paths(params, prepare(Series("w", s.start, 600.0, other)).y, s.start, 600.0, np.array([origin]), 6)
        np.testing.assert_array_equal(a, b, err_msg=model.name)


def test_a_long_trailing_gap_leaves_the_forecast_uncalibrated_not_overconfident():
    s = daily(15, step=600.0, noise=2.0)
    values = np.array(s.values)
    values[-int(2.5 * 144):] = np.nan
    f = Profile().fit(Series("w", s.start, 600.0, values))
    assert f.calibration is None and "uncalibrated: only 0 observed values" in f.fell_back
    q = f.predict(3).quantiles
    assert (q[0.99] > q[0.5]).all()


def test_coarse_steps_are_calibrated_too():
    days = 60
    t = np.arange(days)
    values = 100 + 10 * np.sin(2 * np.pi * t / 7) + np.random.default_rng(1).normal(0, 2, days)
    f = build("auto").fit(Series("w", START, DAY, values))
    assert f.calibration is not None


@pytest.mark.parametrize("values, match", [
    ([np.nan, np.nan], "all 2 values are gaps"),
    ([], "empty history"),
    ([1.0, np.inf], "infinite value at index 1"),
    ([1.0, -2.0], "negative demand -2 at index 1"),
])
def test_unusable_histories_are_one_line_errors(values, match):
    with pytest.raises(ForecastInputError, match=match):
        Naive().fit(Series("w", 0.0, 60.0, np.array(values, dtype=float)))


@pytest.mark.parametrize("horizon", [0, -5, 2.5, True])
def test_bad_horizons_are_refused(horizon):
    with pytest.raises(ForecastInputError, match="horizon must be a whole number"):
        Naive().forecast(Series("w", 0.0, 60.0, [1.0, 2.0]), horizon)


def test_bad_quantile_levels_are_refused():
    with pytest.raises(ForecastInputError, match="strictly between 0 and 1"):
        Naive(quantiles=(0.5, 1.0))


def test_resample_bins_irregular_samples_and_leaves_empty_bins_as_gaps():
    s = resample("w", np.array([0.0, 20.0, 70.0, 250.0]), np.array([1.0, 3.0, 5.0, 7.0]), 60.0)
    assert s.start == 0.0 and s.step == 60.0
    np.testing.assert_array_equal(s.values, [2.0, 5.0, np.nan, np.nan, 7.0])


def test_short_history_falls_back_to_naive_and_says_why():
    f = build("auto").forecast(Series("w", START, 60.0, [4.0]), 3)
    assert f.model == "auto/naive" and "uncalibrated" in f.fell_back
    g = Profile().forecast(Series("w", START, 60.0, np.arange(20.0)), 10)
    assert g.model == "naive" and "profile needs 24 observed steps, the history has 20" in g.fell_back
    flat = Profile().fit(daily(1.5))  # under two days: no daily season to learn yet
    assert flat.model == "profile" and all(p["period"] is None for p in flat.params["sets"])


def test_zero_and_intermittent_demand_give_finite_non_negative_forecasts():
    zeros = Series("w", START, 600.0, np.zeros(6 * 144))
    rng = np.random.default_rng(1)
    sparse = Series("w", START, 600.0, np.where(rng.random(6 * 144) < 0.05, rng.integers(1, 5, 6 * 144), 0.0))
    for series in (zeros, sparse):
        for name in ("naive", "seasonal-naive", "profile", "ets", "auto"):
            f = build(name).forecast(series, 6)
            stacked = np.stack(list(f.quantiles.values()))
            assert np.isfinite(stacked).all() and (stacked >= 0).all()
    assert np.all(build("auto").forecast(zeros, 6).quantiles[0.99] == 0)


def test_level_shift_is_followed_within_minutes():
    s = daily(4, noise=1.0)
    values = np.array(s.values)
    values[-30:] += 200.0  # demand jumps for the last half hour
    shifted = Series("w", s.start, s.step, values)
    expected = 100 + 60 * np.sin(2 * np.pi * (np.arange(10) * 60 + s.end - s.start) / DAY) + 200
    for model in (build("ets"), build("naive"), Selector(candidates=("naive", "profile", "ets"))):
        f = model.forecast(shifted, 10)
        assert np.abs(f.quantiles[0.5] - expected).mean() < 10, model.name


def test_profile_learns_a_shift_guard_from_a_history_with_shifts():
    """The profile model's level is slow when the history is calm (that is what minimises its
    error there); when the history holds sudden shifts, its grid search turns the guard on."""
    s = daily(4, noise=1.0)
    values = np.array(s.values)
    for day in range(4):  # a two-hour +200 step every afternoon, and one now
        values[day * 1440 + 900: day * 1440 + 1020] += 200.0
    values[-30:] += 200.0
    f = Profile().fit(Series("w", s.start, s.step, values))
    assert any(p["sigma"] is not None for p in f.params["sets"])
    expected = 100 + 60 * np.sin(2 * np.pi * (np.arange(10) * 60 + s.end - s.start) / DAY) + 200
    # the next minutes follow the shift (the set tuned for the shortest leads has the guard on)
    assert np.abs(f.predict(10).quantiles[0.5][:5] - expected[:5]).mean() < 10


# -- calibration --------------------------------------------------------------------------------
def test_conformal_90_percent_interval_covers_about_90_percent():
    full = daily(12, step=600.0, seed=5, noise=8.0)
    model = Profile(quantiles=(0.05, 0.5, 0.95))
    hits = []
    for cut in range(8 * 144, 12 * 144 - 6, 7):
        history = Series("w", full.start, full.step, full.values[:cut])
        f = model.forecast(history, 6)
        truth = full.values[cut: cut + 6]
        hits.append((truth >= f.quantiles[0.05]) & (truth <= f.quantiles[0.95]))
    coverage = float(np.mean(hits))
    assert 0.8 <= coverage <= 0.98, coverage


def test_intervals_widen_with_the_lead():
    f = Naive().forecast(daily(3, noise=10.0), 60)
    width = f.quantiles[0.99] - f.quantiles[0.5]
    assert width[-10:].mean() > 1.2 * width[:10].mean()


# -- models -------------------------------------------------------------------------------------
def test_ets_recursion_equals_statsmodels_with_the_same_parameters():
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    s = daily(4, seed=3)
    _, _, _, b = buckets(np.asarray(s.values), s.start, s.step, 600.0)
    params = {"alpha": 0.3, "beta": 0.05, "gamma": 0.2, "phi": 0.95}
    fitted, level, trend, season, m = _recursion(b, params, 144)
    assert m == 144
    first, second = b[:144], b[144:288]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ExponentialSmoothing(b, trend="add", damped_trend=True, seasonal="add", seasonal_periods=144,
                                   initialization_method="known", initial_level=first.mean(),
                                   initial_trend=(second.mean() - first.mean()) / 144,
                                   initial_seasonal=first - first.mean()).fit(
            smoothing_level=0.3, smoothing_trend=0.05, smoothing_seasonal=0.2, damping_trend=0.95, optimized=False)
    np.testing.assert_allclose(fitted, ref.fittedvalues, rtol=1e-9)
    np.testing.assert_allclose(level[-1], ref.level[-1], rtol=1e-9)


@pytest.mark.parametrize("model", [ETS(), Profile(), SeasonalNaive()])
def test_seasonal_models_beat_naive_an_hour_ahead(model):
    full = daily(6, seed=2)
    cut = int(5 * DAY / 60)  # demand rising fastest: the last value is an hour out of date
    history = Series("w", full.start, 60.0, full.values[:cut])
    truth = full.values[cut: cut + 60]
    mae = np.abs(model.forecast(history, 60).quantiles[0.5] - truth).mean()
    naive = np.abs(Naive().forecast(history, 60).quantiles[0.5] - truth).mean()
    assert mae < 0.6 * naive


def test_profile_is_learned_once_and_reused():
    m = Profile()
    s = daily(3)
    m.train([s])
    assert set(m.learned) == {"w"}
    fitted = m.fit(s)
    assert fitted.params is m.learned["w"]
    state, blobs = m.export()
    twin = Profile()
    twin.restore(state, blobs)
    np.testing.assert_array_equal(twin.forecast(s, 5).quantiles[0.9], m.forecast(s, 5).quantiles[0.9])


# -- selector -----------------------------------------------------------------------------------
def test_selector_picks_the_model_with_the_best_backtest():
    periodic = Series("w", START, 600.0, np.tile(np.r_[np.zeros(72), np.full(72, 50.0)], 5))
    fitted = Selector().fit(periodic)
    assert fitted.model == "auto/seasonal-naive"
    assert fitted.scores["seasonal-naive"] <= min(fitted.scores.values())
    walk = Series("w", START, 600.0, 1000 + np.cumsum(np.random.default_rng(0).normal(0, 5, 5 * 144)))
    chosen = Selector().fit(walk)
    assert set(chosen.model.removeprefix("auto/").split("+")) <= {"naive", "profile"}  # no season in a walk


def test_selector_answers_each_lead_with_the_candidate_best_there():
    from forecasters.base import Calibration
    from forecasters.selector import _lead_winners

    def fake(mae):
        cal = Calibration({0.5: np.zeros(3)}, np.array(mae, dtype=float), 1.0, 20)
        return type("F", (), {"calibration": cal})()

    assert _lead_winners([fake([1, 2, 3]), fake([2, 1, 4])]) == (0, 1, 0)
    assert _lead_winners([fake([1, 1, 1]), fake([2, 1, 4])]) == ()  # ties go to the overall winner
    s = Series("w", START, 600.0, np.tile(np.r_[np.zeros(72), np.full(72, 50.0)], 5))
    fitted = Selector().fit(s)
    forced = replace_leads(fitted, (0, 1, 1))
    f, alt = forced.predict(5), fitted.alternatives[0].predict(5)
    np.testing.assert_array_equal(f.quantiles[0.9][1:], alt.quantiles[0.9][1:])  # leads 2.. from the runner-up
    assert f.quantiles[0.9][0] == fitted.predict(5).quantiles[0.9][0]


def replace_leads(fitted, leads):
    from dataclasses import replace

    return replace(fitted, lead_models=leads)


def test_selector_leaves_out_a_failing_candidate_and_says_so(monkeypatch):
    def broken(self, *args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(Profile, "_estimate", broken)
    f = Selector(candidates=("profile", "naive")).forecast(daily(3), 5)
    assert f.model == "auto/naive" or f.model == "auto/seasonal-naive"
    assert "profile failed: RuntimeError: boom" in f.fell_back


def test_selector_falls_back_when_the_winner_fails_to_predict(monkeypatch):
    s = Series("w", START, 600.0, np.tile(np.r_[np.zeros(72), np.full(72, 50.0)], 5))
    fitted = Selector().fit(s)
    assert fitted.model == "auto/seasonal-naive"

    def broken(self, *args, **kwargs):
        raise FloatingPointError("overflow")

    monkeypatch.setattr(SeasonalNaive, "_paths", broken)
    f = fitted.predict(3)
    assert f.model.startswith("auto/") and "seasonal-naive failed to predict (FloatingPointError)" in f.fell_back


def test_unknown_candidate_is_refused():
    with pytest.raises(ForecastInputError, match="unknown candidate 'prophet'"):
        Selector(candidates=("prophet",))


# -- streaming ----------------------------------------------------------------------------------
def test_stream_refits_on_schedule_and_updates_in_between():
    full = daily(4)
    stream = ForecastStream(build("profile"), refit_every=3600.0)
    n = int(3 * DAY / 60)
    first = stream.forecast(Series("w", full.start, 60, full.values[:n]), 10)
    params = stream.fitted("w").params
    stream.forecast(Series("w", full.start, 60, full.values[: n + 30]), 10)
    assert stream.fitted("w").params is params  # updated, not refitted
    later = stream.forecast(Series("w", full.start, 60, full.values[: n + 60]), 10)
    assert stream.fitted("w").params is not params  # an hour later: refitted
    assert first.horizon == later.horizon == 10


def test_stream_gives_no_forecast_on_stale_data():
    s = daily(3)
    values = np.array(s.values)
    values[-10:] = np.nan
    assert ForecastStream(build("auto")).forecast(Series("w", s.start, 60, values), 5) is None


@settings(max_examples=25, deadline=None)
@given(st.lists(st.one_of(st.floats(0, 1e4), st.just(float("nan"))), min_size=1, max_size=300),
       st.integers(1, 40))
def test_any_history_with_one_observation_gives_a_monotone_forecast(values, horizon):
    if np.isnan(values).all():
        values[0] = 1.0
    f = build("auto").forecast(Series("w", START, 600.0, np.array(values)), horizon)
    stacked = np.stack([f.quantiles[q] for q in sorted(f.quantiles)])
    assert stacked.shape == (5, horizon) and np.isfinite(stacked).all() and (np.diff(stacked, axis=0) >= 0).all()


def test_stream_refits_early_when_its_forecasts_drift():
    """A demand pattern that changes for good: the drift monitor sees live error far above the
    backtest's and the stream refits long before its daily schedule."""
    from forecasters.drift import DriftMonitor

    full = daily(5, step=600.0, noise=1.0)
    values = np.array(full.values)
    change = int(3.5 * 144)
    values[change:] = 300 + 60 * np.sin(2 * np.pi * np.arange(values.shape[0] - change) * 600 / DAY + np.pi)
    stream = ForecastStream(build("seasonal-naive"), refit_every=10 * DAY,
                            drift=DriftMonitor(lead=1, min_points=6, retrain_after_s=1800))
    for t in range(3 * 144, values.shape[0]):
        stream.forecast(Series("w", full.start, 600.0, values[:t]), 6)
    assert stream.retrains.get("w", 0) >= 1
    assert stream.drift.status("w", full.start + values.shape[0] * 600.0).baseline_mae is not None


def test_stream_without_drift_never_refits_early():
    full = daily(4, step=600.0, noise=1.0)
    stream = ForecastStream(build("profile"), refit_every=10 * DAY)
    for t in range(3 * 144, 4 * 144, 6):
        stream.forecast(Series("w", full.start, 600.0, np.asarray(full.values)[:t]), 6)
    assert stream.retrains == {}


def test_intermittent_demand_is_not_despiked():
    values = np.zeros(200)
    values[::17] = 3.0  # the only demand there is: isolated requests
    p = prepare(Series("w", 0.0, 60.0, values))
    assert p.despiked == 0 and np.array_equal(p.y, values)


def test_update_conditions_on_what_a_fresh_prepare_gives():
    """Fitted.update keeps the parameters and calibration and conditions on the newest history,
    spikes and gaps handled exactly as a fresh fit's forecasting input."""
    s = daily(3, noise=2.0, seed=9)
    values = np.array(s.values)
    values[1000] = 5000.0  # a spike in the old part
    values[-2] = 4000.0  # and one among the new points
    values[-40:-35] = np.nan
    fitted = Profile().fit(Series("w", s.start, 60.0, values[:-20]))
    for end in (-15, -10, -1, None):
        history = Series("w", s.start, 60.0, values[:end])
        updated = fitted.update(history)
        fresh = prepare(history.tail(Profile().context_steps(60.0)))
        np.testing.assert_array_equal(updated.data.y, fresh.y)
        assert updated.data.start == fresh.start and updated.params is fitted.params
        fitted = updated


def test_a_forecast_does_not_depend_on_the_other_origins_asked_for():
    s = daily(5, step=600.0, seed=4)
    y = prepare(s).y
    for model in (ETS(), Profile()):
        params = model._estimate(y[:400], s.start, 600.0)
        batch, _ = model._paths(params, y, s.start, 600.0, np.array([450, 600, 700]), 6)
        alone, _ = model._paths(params, y, s.start, 600.0, np.array([700]), 6)
        np.testing.assert_allclose(batch[2], alone[0], rtol=1e-12, err_msg=model.name)


def test_selector_candidates_share_its_quantiles():
    sel = Selector(candidate_config={"naive": {"quantiles": [0.5, 0.9]}})
    assert all(c.quantiles == sel.quantiles for c in sel.candidates)
    assert sorted(sel.forecast(daily(3), 4).quantiles) == list(sel.quantiles)


def test_calibration_scales_offsets_the_way_the_errors_grow():
    """Errors proportional to demand get offsets relative to the recent level; errors of constant
    size get offsets in demand units (so a quiet hour does not shrink the band to nothing)."""
    t = np.arange(6 * 144)
    level = 100 + 90 * np.sin(2 * np.pi * t / 144)
    rng = np.random.default_rng(2)
    proportional = Series("w", START, 600.0, level * (1 + rng.normal(0, 0.1, t.size)))
    constant = Series("w", START, 600.0, np.maximum(level + rng.normal(0, 10, t.size), 0))
    assert SeasonalNaive().fit(proportional).calibration.relative is True
    assert SeasonalNaive().fit(constant).calibration.relative is False
