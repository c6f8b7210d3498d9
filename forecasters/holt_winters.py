"""Holt-Winters demand forecasts for the predictive policy (statsmodels ``ExponentialSmoothing``).

How it works, and why:

* **Coarse seasonal model.** A daily season at 1-minute steps would need 1,440 seasonal states,
  which is slow to fit and noisy. The history is averaged into ``model_step`` buckets (10 minutes:
  144 per day) aligned to the clock, gaps filled by interpolation, and an additive damped-trend
  Holt-Winters model with a daily season is fitted on up to ``history_days``.
* **Cheap updates.** The smoothing parameters are optimised every ``refit_every`` seconds; when a
  bucket completes in between, the model is re-run with those parameters fixed (about 10 ms)
  rather than re-optimised (about 200 ms).
* **Fine-grained level.** The coarse forecast is interpolated to the series' step, and shifted by
  the mean residual of the last five observations, so a burst the season did not expect moves the
  forecast within a minute.
* **Uncertainty.** For each lead h the forecast's quantiles add the empirical quantiles of the
  level-corrected error at that lead over the last day of residuals (recomputed per bucket), so
  intervals widen with the lead time. Issue 3 replaces this with conformal calibration.
* **Fallbacks**, named in ``Forecast.fell_back``: with fewer than ``min_history_days`` of buckets a
  damped Holt trend without season; with fewer than 6 buckets the last observed level; with
  no observation in the last ``model_step`` no forecast at all (``None``): the policy then
  decides reactively and says so.

The instance caches fitted parameters per key; the forecasts it returns are plain values.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from forecasters.series import Forecast, Series

DEFAULT_QUANTILES = (0.5, 0.9, 0.95, 0.99)
_LEVEL_WINDOW = 5  # observations averaged for the level correction
_MAX_GAP_SHARE = 0.2  # more than this share of missing buckets in the fit window -> fall back


@dataclass
class _Fit:
    """A fitted model's parameters and current states, advanced one bucket at a time."""

    kind: str  # "holt-winters" or "holt"
    start: float  # epoch seconds of the first bucket fitted
    fitted_at: float
    alpha: float
    beta: float
    gamma: float
    phi: float
    level: float
    trend: float
    season: np.ndarray  # the last `m` seasonal states, oldest first (zeros for "holt")
    fitted: list  # one-step-ahead prediction for every bucket since `start`
    data_end: float  # end of the last bucket the states include
    model_step: float
    centers: np.ndarray | None = None  # bucket-centre times of `path`
    path: np.ndarray | None = None  # fitted values, then the forecast, per bucket
    spread: dict | None = None  # quantile -> per-lead error quantiles
    spread_horizon: int = 0
    path_ahead: int = 0  # buckets of forecast at the end of `path`

    def advance(self, y: float) -> None:
        """One step of the additive damped Holt-Winters recursion (statsmodels' own form).

        A missing bucket (NaN) is taken as the model's own prediction, which leaves the level on
        its damped trend and the season unchanged: no information, no update.
        """
        s_old = self.season[0]
        base = self.level + self.phi * self.trend  # previous level on its damped trend
        predicted = base + s_old
        self.fitted.append(predicted)
        if np.isnan(y):
            y = predicted
        level = self.alpha * (y - s_old) + (1 - self.alpha) * base
        self.trend = self.beta * (level - self.level) + (1 - self.beta) * self.phi * self.trend
        new_season = self.gamma * (y - base) + (1 - self.gamma) * s_old
        self.level = level
        self.season = np.append(self.season[1:], new_season)
        self.data_end += self.model_step

    def forecast(self, ahead: int) -> np.ndarray:
        damped = np.cumsum(self.phi ** np.arange(1, ahead + 1))
        seasonal = self.season[np.arange(ahead) % self.season.shape[0]]
        return self.level + damped * self.trend + seasonal

    def refresh_path(self, ahead: int) -> None:
        self.path = np.concatenate([np.asarray(self.fitted), self.forecast(ahead)])
        self.path_ahead = ahead
        self.centers = self.start + self.model_step * (np.arange(self.path.shape[0]) + 0.5)
        self.spread = None


def _bucket(series: Series, model_step: float) -> tuple[float, np.ndarray]:
    """Mean of each complete clock-aligned bucket (NaN where a bucket has no observation)."""
    k = max(1, int(round(model_step / series.step)))
    offset = int(round(((-series.start) % model_step) / series.step)) % k
    n_full = (len(series) - offset) // k
    if n_full <= 0:
        return series.start + offset * series.step, np.zeros(0)
    block = series.values[offset : offset + n_full * k].reshape(n_full, k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(block, axis=1)
    return series.start + offset * series.step, means


def _last_bucket_end(series: Series, model_step: float) -> float:
    """End time of the last complete clock-aligned bucket of ``series`` (cheap: no data read)."""
    return math.floor(series.end / model_step + 1e-9) * model_step


def _fill(values: np.ndarray) -> np.ndarray:
    known = ~np.isnan(values)
    if known.all():
        return values
    idx = np.arange(values.shape[0])
    return np.interp(idx, idx[known], values[known])


class HoltWintersForecaster:
    """Streaming Holt-Winters forecasts with per-lead empirical quantiles (see module docstring)."""

    name = "holt-winters"

    def __init__(
        self,
        quantiles: tuple[float, ...] = DEFAULT_QUANTILES,
        model_step: float = 600.0,
        season_seconds: float = 86_400.0,
        refit_every: float = 21_600.0,
        history_days: float = 14.0,
        min_history_days: float = 2.0,
    ) -> None:
        self.quantiles = tuple(sorted(set(quantiles)))
        self.model_step = model_step
        self.season = int(round(season_seconds / model_step))
        self.refit_every = refit_every
        self.history_days = history_days
        self.min_buckets = max(2 * self.season, int(math.ceil(min_history_days * 86_400 / model_step)))
        self._fits: dict[str, _Fit] = {}

    # -- public ---------------------------------------------------------------------------------
    def history_steps(self, step: float) -> int:
        """Steps of history :meth:`forecast` reads: the fit window plus ``refit_every``, so the
        last fit's first bucket stays in view until the next refit (more history is ignored)."""
        return int((self.history_days * 86_400 + self.refit_every) / step)

    def forecast(self, series: Series, horizon: int) -> Forecast | None:
        """Quantile forecasts for the ``horizon`` steps after ``series.end`` (None: no basis)."""
        last_bucket = series.values[-max(1, int(round(self.model_step / series.step))) :]
        if np.isnan(last_bucket).all():
            return None
        step = series.step
        history = series.tail(self.history_steps(step))
        fit = self._fits.get(series.key)
        if fit is None or _last_bucket_end(history, self.model_step) != fit.data_end or series.end - fit.fitted_at >= self.refit_every:
            bucket_start, buckets = _bucket(history, self.model_step)
            fit = self._update(series.key, series.end, bucket_start, buckets)
            if fit is None:  # naive: the latest level; the whole last bucket when those are all gaps
                latest = series.values[-_LEVEL_WINDOW:]
                level = float(np.nanmean(latest if not np.isnan(latest).all() else last_bucket))
                return self._quantiles(series.key, series.end - step, step, np.full(horizon, level), None, "naive",
                                       f"only {buckets.shape[0]} usable {self.model_step:.0f}s buckets of history")
        issued_at = series.end - step
        ahead = int(math.ceil(horizon * step / self.model_step)) + 2  # buckets past the data the path must cover
        if fit.path_ahead < ahead:
            fit.refresh_path(ahead)
        # Residuals against the interpolated coarse model, only where they are used: the last few
        # steps for the level correction, the last day for the error quantiles (once per bucket).
        need = _LEVEL_WINDOW if fit.spread is not None and fit.spread_horizon >= horizon else int(86_400 / step) + horizon + _LEVEL_WINDOW
        recent = history.tail(need)
        residual = recent.values - np.interp(recent.start + step * np.arange(len(recent)), fit.centers, fit.path)
        tail = residual[-_LEVEL_WINDOW:]
        level_shift = float(np.nanmean(tail)) if not np.isnan(tail).all() else 0.0
        point = np.interp(series.end + step * np.arange(horizon), fit.centers, fit.path) + level_shift
        if fit.spread is None or fit.spread_horizon < horizon:
            fit.spread = self._spread(residual, horizon, int(86_400 / step))
            fit.spread_horizon = horizon
        fell_back = None if fit.kind == "holt-winters" else (
            f"{fit.kind}: less than {self.min_buckets} buckets of history for a daily season")
        return self._quantiles(series.key, issued_at, step, point, fit.spread, f"{self.name}/{fit.kind}", fell_back)

    # -- internals ------------------------------------------------------------------------------
    def _quantiles(self, key, issued_at, step, point, spread, model, fell_back) -> Forecast:
        point = np.maximum(point, 0.0)
        if spread is None:  # naive: a flat band proportional to the level, wide on purpose
            spread = {q: np.full(point.shape, 0.25 * max(point.max(), 1e-9) * (q - 0.5) * 4) for q in self.quantiles}
        out = {q: np.maximum(point + spread[q][: point.shape[0]], 0.0) for q in self.quantiles}
        # Empirical quantiles of one sample are monotone in q; max.accumulate guards float ties.
        stacked = np.maximum.accumulate(np.stack([out[q] for q in self.quantiles]), axis=0)
        return Forecast(key, issued_at, step, dict(zip(self.quantiles, stacked)), model, fell_back)

    def _spread(self, residual: np.ndarray, horizon: int, day_steps: int) -> dict:
        """Per lead h, quantiles of ``residual[i + h] - mean(residual[i-4 : i+1])`` over the last day."""
        r = residual[-day_steps - horizon - _LEVEL_WINDOW :]
        kernel = np.ones(_LEVEL_WINDOW) / _LEVEL_WINDOW
        level = np.convolve(np.nan_to_num(r), kernel, mode="valid")  # level[j] = mean(r[j : j+5])
        spread = {q: np.zeros(horizon) for q in self.quantiles}
        for h in range(1, horizon + 1):
            errors = r[_LEVEL_WINDOW - 1 + h :] - level[: level.shape[0] - h]
            errors = errors[~np.isnan(errors)]
            if errors.shape[0] < 10:
                continue
            values = np.quantile(errors, self.quantiles)
            for q, v in zip(self.quantiles, values):
                spread[q][h - 1] = v
        return spread

    def _update(self, key: str, now: float, bucket_start: float, buckets: np.ndarray) -> _Fit | None:
        if buckets.shape[0] < 6 or np.isnan(buckets).mean() > _MAX_GAP_SHARE:
            return None
        kind = "holt-winters" if buckets.shape[0] >= self.min_buckets else "holt"
        data_end = bucket_start + buckets.shape[0] * self.model_step
        fit = self._fits.get(key)
        if fit is None or fit.kind != kind or now - fit.fitted_at >= self.refit_every or fit.data_end < bucket_start:
            window = int(self.history_days * 86_400 / self.model_step)
            first = max(0, buckets.shape[0] - window)
            fit = self._optimise(kind, bucket_start + first * self.model_step, now, buckets[first:])
            self._fits[key] = fit
        # Advance the states over the buckets completed since (statsmodels is not re-run).
        new = int(round((data_end - fit.data_end) / self.model_step))
        if new > 0 or fit.path is None:
            for y in buckets[buckets.shape[0] - new :] if new > 0 else ():
                fit.advance(float(y))
            fit.refresh_path(max(fit.path_ahead, int(math.ceil(3600 / self.model_step)) + 2))
        return fit

    def _optimise(self, kind: str, start: float, now: float, buckets: np.ndarray) -> _Fit:
        """Optimise the smoothing parameters with statsmodels and keep its final states."""
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        seasonal = kind == "holt-winters"
        model = ExponentialSmoothing(_fill(buckets), trend="add", damped_trend=True,
                                     seasonal="add" if seasonal else None, seasonal_periods=self.season if seasonal else None,
                                     initialization_method="heuristic" if seasonal else "estimated")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter; the fit is judged by backtests
            result = model.fit()
        p = result.params
        season = np.asarray(result.season[-self.season :], dtype=float) if seasonal else np.zeros(1)
        return _Fit(kind, start, now, float(p["smoothing_level"]), float(p["smoothing_trend"]),
                    float(p["smoothing_seasonal"]) if seasonal else 0.0, float(p["damping_trend"]),
                    float(result.level[-1]), float(result.trend[-1]), season, list(np.asarray(result.fittedvalues, dtype=float)),
                    start + buckets.shape[0] * self.model_step, self.model_step)
