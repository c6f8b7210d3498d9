"""The quantile gradient boosting (``gbm``) and regression-with-ARMA-errors (``sarimax``) models.

Short synthetic series (days at 10-minute steps) and small budgets keep every fit well under a
second; nothing here measures time.
"""

from __future__ import annotations

import collections
import functools
import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecasters import build
from forecasters.base import DEFAULT_QUANTILES, ForecastInputError, prepare
from forecasters.gbm import QuantileGBM
from forecasters.sarimax import SARIMAX, _buckets
from forecasters.series import Series

DAY = 86_400
STEP = 600.0
START = 1_767_571_200.0  # a midnight (UTC)
CONFIGS = {"gbm": {"max_samples": 2_000, "max_iter": 30}, "sarimax": {}}


def seasonal(days: float, step: float = STEP, seed: int = 0, start: float = START, noise: float = 3.0) -> Series:
    n = int(days * DAY / step)
    t = np.arange(n) * step
    rng = np.random.default_rng(seed)
    values = 100 + 60 * np.sin(2 * np.pi * t / DAY) + 15 * np.sin(4 * np.pi * t / DAY + 1) + rng.normal(0, noise, n)
    return Series("w", start, step, np.maximum(values, 0.0))


def model(name: str, **overrides):
    return build(name, {**CONFIGS[name], **overrides})


def stacked(forecast) -> np.ndarray:
    return np.stack([forecast.quantiles[q] for q in sorted(forecast.quantiles)])


def assert_sane(forecast, horizon: int) -> None:
    values = stacked(forecast)
    assert forecast.horizon == horizon
    assert np.isfinite(values).all() and (values >= 0).all()
    assert (np.diff(values, axis=0) >= 0).all()  # monotone in the level at every step


@functools.lru_cache(maxsize=None)
def estimated(name: str):
    """A model and its parameters estimated on four days (shared by the hypothesis tests)."""
    m = model(name)
    data = prepare(seasonal(4))
    return m, data, m._estimate(data.y, data.start, data.step)


# -- the contract ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_contract_shapes_monotone_quantiles_and_fit_predict_equals_forecast(name):
    history = seasonal(4)
    m = model(name)
    forecast = m.forecast(history, 12)
    assert_sane(forecast, 12)
    assert forecast.model == name and forecast.fell_back is None
    assert sorted(forecast.quantiles) == list(m.quantiles)
    assert forecast.issued_at == history.end - STEP
    again = m.fit(history).predict(12)
    assert np.array_equal(stacked(again), stacked(forecast))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_two_fits_give_identical_forecasts(name):
    history = seasonal(4, seed=3)
    first, second = model(name).forecast(history, 9), model(name).forecast(history, 9)
    assert np.array_equal(stacked(first), stacked(second))


@pytest.mark.parametrize("name", sorted(CONFIGS))
@settings(max_examples=15, deadline=None)
@given(horizon=st.integers(1, 40), picks=st.lists(st.integers(288, 575), min_size=1, max_size=8))
def test_paths_answer_every_origin_and_lead(name, horizon, picks):
    """Any origins (including leads past the trained horizon): right shapes, finite, sorted."""
    m, data, params = estimated(name)
    origins = np.array(sorted(set(picks)))
    point, native = m._paths(params, data.y, data.start, data.step, origins, horizon)
    assert point.shape == (origins.shape[0], horizon) and np.isfinite(point).all()
    if native is not None:
        levels = sorted(native)
        assert all(native[q].shape == point.shape for q in levels)
        assert (np.diff(np.stack([native[q] for q in levels]), axis=0) >= 0).all()
        assert np.array_equal(native[0.5], point)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_forecast_from_an_origin_uses_only_the_past(name):
    m, data, params = estimated(name)
    origin = np.array([400])
    full, _ = m._paths(params, data.y, data.start, data.step, origin, 6)
    changed = data.y.copy()
    changed[400:] = 1e6  # the future, wildly different
    past_only, _ = m._paths(params, changed, data.start, data.step, origin, 6)
    assert np.allclose(full, past_only)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_too_short_history_falls_back_and_says_why(name):
    forecast = model(name).forecast(seasonal(1), 6)
    assert_sane(forecast, 6)
    assert forecast.model == "naive"  # one day: seasonal naive cannot either
    assert forecast.fell_back.startswith(f"{name} needs 288 observed steps, the history has 144")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_seasonal_series_is_forecast_better_than_naive_an_hour_ahead(name):
    """Fit on four days, then forecast the fifth from every hour (same parameters, newer data)."""
    series = seasonal(5, seed=1)
    train = int(4 * DAY / STEP)
    fitted = model(name).fit(Series("w", START, STEP, series.values[:train]))
    ahead = 6  # one hour
    errors, naive = [], []
    for origin in range(train, len(series) - ahead + 1, 6):
        seen = Series("w", START, STEP, series.values[:origin])
        truth = series.values[origin + ahead - 1]
        errors.append(abs(fitted.update(seen).predict(ahead).quantiles[0.5][-1] - truth))
        naive.append(abs(seen.values[-1] - truth))
    assert np.mean(errors) < 0.6 * np.mean(naive)


# -- awkward inputs --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_gaps_zero_demand_and_level_shifts_do_not_break_it(name):
    gappy = seasonal(4).values.copy()
    gappy[:4] = np.nan
    gappy[200:240] = np.nan
    gappy[-3:] = np.nan
    assert_sane(model(name).forecast(Series("w", START, STEP, gappy), 12), 12)

    zero = model(name).forecast(Series("w", START, STEP, np.zeros(576)), 12)
    assert_sane(zero, 12)
    assert stacked(zero).max() < 1e-6

    recent = seasonal(4).values.copy()
    recent[-int(DAY / STEP) :] += 400  # a shift inside the calibration window
    assert_sane(model(name).forecast(Series("w", START, STEP, recent), 6), 6)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_level_shift_the_fit_has_seen_is_followed(name):
    shifted = seasonal(6).values.copy()
    shifted[-int(3 * DAY / STEP) :] += 400  # the last three days run 400 higher
    forecast = model(name).forecast(Series("w", START, STEP, shifted), 6)
    truth = seasonal(7, noise=0.0).values[len(shifted) : len(shifted) + 6] + 400
    assert np.abs(forecast.quantiles[0.5] - truth).max() < 30


def test_gbm_follows_a_level_shift_one_day_old():
    """The seasonal guess takes a median over past days, so a shift a day ago does not double."""
    shifted = seasonal(4).values.copy()
    shifted[-int(DAY / STEP) :] += 400
    forecast = model("gbm").forecast(Series("w", START, STEP, shifted), 6)
    truth = seasonal(5, noise=0.0).values[len(shifted) : len(shifted) + 6] + 400
    assert np.abs(forecast.quantiles[0.5] - truth).max() < 50


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fitting_warns_nothing(name):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model(name).forecast(seasonal(4, seed=7), 6)
        model(name).forecast(Series("w", START, STEP, np.full(576, 5.0)), 6)
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_round_trips_through_json(name):
    m = model(name)
    config = json.loads(json.dumps(m.config()))
    assert build(name, config).config() == m.config()


# -- gbm -------------------------------------------------------------------------------------------
def test_gbm_past_the_trained_horizon_keeps_the_daily_shape():
    history = seasonal(4, noise=1.0)
    forecast = model("gbm", max_horizon_s=3600).forecast(history, int(DAY / STEP))  # a day; trained: an hour
    assert_sane(forecast, int(DAY / STEP))
    truth = seasonal(5, noise=0.0).values[len(history) :]
    assert np.corrcoef(forecast.quantiles[0.5], truth)[0, 1] > 0.95


def test_gbm_export_restore_round_trip_gives_identical_forecasts():
    history = seasonal(4, seed=2)
    trained = model("gbm")
    trained.train([history])
    state, blobs = trained.export()
    state = json.loads(json.dumps(state))
    assert state["learned_keys"] == ["w"]
    assert sorted(blobs) == sorted(f"0-q{q}.skops" for q in DEFAULT_QUANTILES)
    restored = model("gbm")
    restored.restore(state, blobs)
    assert np.array_equal(stacked(restored.forecast(history, 8)), stacked(trained.forecast(history, 8)))


def test_gbm_restore_refuses_untrusted_types():
    import skops.io
    from sklearn.linear_model import LinearRegression

    trained = model("gbm")
    trained.train([seasonal(4)])
    state, blobs = trained.export()
    estimator = trained.learned["w"].models[0.5]
    estimator.smuggled = collections.Counter(a=1)  # a type the allow-list does not name
    tampered = {**blobs, "0-q0.5.skops": skops.io.dumps(estimator)}
    with pytest.raises(ForecastInputError, match="untrusted types collections.Counter"):
        model("gbm").restore(state, tampered)
    other = {**blobs, "0-q0.5.skops": skops.io.dumps(LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]))}
    with pytest.raises(ForecastInputError, match="not a HistGradientBoostingRegressor"):
        model("gbm").restore(state, other)


def test_gbm_rejects_a_nonsense_budget():
    with pytest.raises(ForecastInputError, match="gbm"):
        QuantileGBM(max_samples=0)


# -- sarimax ---------------------------------------------------------------------------------------
def test_sarimax_buckets_are_clock_aligned():
    y = np.arange(20, dtype=float)
    k, offset, means = _buckets(y, start=180.0, step=60.0, model_step=600.0)  # starts 3 minutes past
    assert (k, offset) == (10, 7)  # the first bucket starts at 600 s = index 7
    assert np.array_equal(means, [np.mean(y[7:17])])
    assert _buckets(y, 0.0, 3600.0, 600.0)[:2] == (1, 0)  # coarser steps are used as they are


def test_sarimax_at_a_fine_unaligned_step_tracks_the_cycle():
    history = seasonal(3, step=120.0, start=START + 180)  # 2-minute steps, buckets of five
    forecast = model("sarimax").forecast(history, 30)
    assert_sane(forecast, 30)
    t = history.end + 120 * np.arange(30) - START - 180
    truth = 100 + 60 * np.sin(2 * np.pi * t / DAY) + 15 * np.sin(4 * np.pi * t / DAY + 1)
    assert np.abs(forecast.quantiles[0.5] - truth).max() < 15


def test_sarimax_params_are_json_and_restore_gives_identical_forecasts():
    history = seasonal(4, seed=5)
    trained = model("sarimax")
    trained.train([history])
    params = trained.learned["w"]
    assert params["order"] == [1, 0, 1] and params["arma_names"] == ["ar.L1", "ma.L1"]
    state, blobs = trained.export()
    assert blobs == {}
    restored = model("sarimax")
    restored.restore(json.loads(json.dumps(state)), blobs)
    assert np.array_equal(stacked(restored.forecast(history, 8)), stacked(trained.forecast(history, 8)))


def test_sarimax_rejects_a_differenced_order():
    with pytest.raises(ForecastInputError, match="order"):
        SARIMAX(order=(1, 1, 1))
