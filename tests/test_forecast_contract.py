"""The contract every registered forecaster keeps (forecasters.MODELS), whatever its insides."""

from __future__ import annotations

import numpy as np
import pytest

from forecasters import MODELS, build
from forecasters.base import ForecastInputError
from forecasters.series import Series

START = 1_767_571_200.0
STEP = 600.0
# Small budgets so the learned models train in a second or two; the behaviour checked is the same.
FAST: dict[str, dict] = {
    "gbm": {"max_iter": 20, "max_samples": 2000},
    "torch-mlp": {"epochs": 2, "samples": 2000, "fit_samples": 1000},
}


def model(name: str, **extra):
    return build(name, {**FAST.get(name, {}), **extra})


def history(days: float = 5.0, seed: int = 0, gaps: bool = True) -> Series:
    n = int(days * 86_400 / STEP)
    t = np.arange(n) * STEP
    rng = np.random.default_rng(seed)
    values = 50 + 30 * np.sin(2 * np.pi * t / 86_400) + rng.normal(0, 2, n)
    if gaps:
        values[100:104] = np.nan
        values[-2:] = np.nan  # a trailing gap: the latest scrapes are missing
    return Series("w", START, STEP, np.maximum(values, 0))


ALL = list(MODELS)


def _quantiles(f):
    return np.stack([f.quantiles[q] for q in sorted(f.quantiles)])


@pytest.mark.parametrize("name", ALL)
def test_shapes_levels_and_monotone_quantiles(name):
    f = model(name).forecast(history(), 6)
    q = _quantiles(f)
    assert sorted(f.quantiles) == [0.05, 0.5, 0.9, 0.95, 0.99]
    assert q.shape == (5, 6) and np.isfinite(q).all() and (q >= 0).all()
    assert (np.diff(q, axis=0) >= 0).all()
    assert f.issued_at == history().end - STEP and f.step == STEP
    assert f.model == name or f.model.startswith(f"{name}/")


@pytest.mark.parametrize("name", ALL)
def test_one_shot_forecast_equals_fit_then_predict(name):
    s = history()
    a = model(name).forecast(s, 6)
    b = model(name).fit(s).predict(6)
    np.testing.assert_array_equal(_quantiles(a), _quantiles(b))
    assert (a.model, a.fell_back) == (b.model, b.fell_back)


@pytest.mark.parametrize("name", ALL)
def test_deterministic(name):
    s = history(seed=4)
    np.testing.assert_array_equal(_quantiles(model(name).forecast(s, 6)), _quantiles(model(name).forecast(s, 6)))


@pytest.mark.parametrize("name", ALL)
def test_configured_quantile_levels(name):
    f = model(name, quantiles=[0.1, 0.5, 0.8, 0.975]).forecast(history(), 3)
    assert sorted(f.quantiles) == [0.1, 0.5, 0.8, 0.975]
    assert (np.diff(_quantiles(f), axis=0) >= 0).all()


@pytest.mark.parametrize("name", ALL)
def test_gaps_are_not_zeros(name):
    """A long outage in the middle must not drag the forecast toward zero."""
    s = history(gaps=False)
    values = np.array(s.values)
    values[300:400] = np.nan
    f = model(name).forecast(Series("w", START, STEP, values), 6)
    assert f.quantiles[0.5].min() > 10


@pytest.mark.parametrize("name", ALL)
def test_too_short_history_falls_back_and_says_why(name):
    f = model(name).forecast(Series("w", START, STEP, np.full(20, 7.0)), 4)
    if name == "naive":
        assert f.model == "naive"  # needs one point: it is the last fallback
    else:
        assert f.fell_back, f"{name} answered from 20 points without saying it fell back"
    assert np.allclose(f.quantiles[0.5], 7.0)


@pytest.mark.parametrize("name", ALL)
def test_one_point_is_the_documented_naive_fallback(name):
    f = model(name).forecast(Series("w", START, STEP, [3.0]), 2)
    assert f.model.endswith("naive") and np.allclose(f.quantiles[0.5], 3.0)


@pytest.mark.parametrize("name", ALL)
def test_all_nan_and_bad_horizons_are_clear_errors(name):
    with pytest.raises(ForecastInputError, match="all 30 values are gaps"):
        model(name).forecast(Series("w", START, STEP, np.full(30, np.nan)), 3)
    with pytest.raises(ForecastInputError, match="horizon must be a whole number of steps >= 1, got -1"):
        model(name).forecast(history(), -1)


@pytest.mark.parametrize("name", ALL)
def test_trained_state_survives_export_and_restore(name):
    s = history(seed=7)
    trained = model(name)
    trained.train([s])
    state, blobs = trained.export()
    assert all(k.endswith((".pt", ".skops")) for k in blobs)
    twin = build(name, trained.config())
    twin.restore(state, blobs)
    np.testing.assert_array_equal(_quantiles(twin.forecast(s, 6)), _quantiles(trained.forecast(s, 6)))
