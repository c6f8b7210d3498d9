"""ETS / Holt-Winters (statsmodels ``ExponentialSmoothing``) on clock-aligned coarse buckets.

How it works, and why:

* **Coarse seasonal model.** A daily season at 1-minute steps would need 1,440 seasonal states:
  slow to fit and noisy. The history is averaged into ``model_step`` buckets (10 minutes, 144 a
  day) aligned to the clock, and statsmodels optimises an additive damped-trend Holt-Winters model
  with a daily season on up to ``fit_days`` of them (a damped Holt trend without season when
  there are fewer than ``season_days`` days). Series already at ``model_step`` or coarser are
  modelled at their own step.
* **Parameters only.** What is estimated (and stored in the registry) is the four smoothing
  parameters. Forecasting re-runs the recursion with those parameters over the recent
  ``context_days`` (states initialised heuristically at the window's start), so a fit and a later
  update, or a registry load, give the same answer for the same data.
* **Every origin at once.** One pass of the recursion keeps the states after every bucket; the
  forecast from any origin is read off the states of the last complete bucket before it. That is
  what makes the conformal backtest (hundreds of origins) cheap.
* **Fine-grained level.** The coarse path is interpolated to the series' step and shifted by the
  mean residual of the last ``level_points`` observations, so a burst the season did not expect
  moves the forecast within a few steps.
"""

from __future__ import annotations

import warnings

import numpy as np

from forecasters.base import DAY, Forecaster


def buckets(y: np.ndarray, start: float, step: float, model_step: float) -> tuple[int, int, float, np.ndarray]:
    """Mean of each complete clock-aligned bucket of ``k`` steps: ``(k, offset, first_start, means)``.

    ``offset`` is the index of the first sample of the first complete bucket.
    """
    k = max(1, int(round(model_step / step)))
    width = k * step
    offset = int(round(((-start) % width) / step)) % k
    n = (y.shape[0] - offset) // k
    means = y[offset: offset + n * k].reshape(n, k).mean(axis=1) if n > 0 else np.zeros(0)
    return k, offset, start + offset * step, means


class ETS(Forecaster):
    """Additive damped Holt-Winters with a daily season, on 10-minute buckets."""

    name = "ets"
    description = "Holt-Winters (statsmodels), damped trend, daily season, on 10-minute buckets"

    def __init__(self, model_step: float = 600.0, fit_days: float = 14.0, season_days: float = 2.0,
                 context_days: float = 7.0, level_points: int = 5, **base) -> None:
        super().__init__(**base)
        self.model_step = float(model_step)
        self.fit_days = float(fit_days)
        self.season_days = float(season_days)
        self.context_days = float(context_days)
        self.level_points = int(level_points)

    def config(self) -> dict:
        return {**self._base_config(), "model_step": self.model_step, "fit_days": self.fit_days,
                "season_days": self.season_days, "context_days": self.context_days, "level_points": self.level_points}

    def _coarse(self, step: float) -> float:
        return max(self.model_step, step)

    def _season(self, step: float) -> int:
        m = DAY / self._coarse(step)
        return int(round(m)) if m >= 2 and abs(m - round(m)) < 1e-6 else 0

    def min_history(self, step: float) -> int:
        return 12 * max(1, int(round(self._coarse(step) / step)))  # a damped trend needs a dozen buckets

    def context_steps(self, step: float) -> int:
        return int(self.context_days * DAY / step) + 2 * max(1, int(round(self._coarse(step) / step)))

    # -- estimation ------------------------------------------------------------------------------
    def _estimate(self, y, start, step):
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        _, _, _, b = buckets(y, start, step, self._coarse(step))
        b = b[-int(self.fit_days * DAY / self._coarse(step)):]
        m = self._season(step)
        seasonal = m > 0 and b.shape[0] >= max(2 * m, self.season_days * m)
        model = ExponentialSmoothing(b, trend="add", damped_trend=True, seasonal="add" if seasonal else None,
                                     seasonal_periods=m if seasonal else None,
                                     initialization_method="heuristic" if seasonal else "estimated")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter: the fit is judged by the backtest
            p = model.fit().params
        return {"seasonal": bool(seasonal), "alpha": float(p["smoothing_level"]), "beta": float(p["smoothing_trend"]),
                "gamma": float(p["smoothing_seasonal"]) if seasonal else 0.0, "phi": float(p["damping_trend"])}

    # -- forecasting -----------------------------------------------------------------------------
    def _paths(self, params, y, start, step, origins, horizon):
        ms = self._coarse(step)
        # The recursion runs from the start of the history passed in, for every origin alike, so a
        # forecast from an origin does not depend on which other origins are asked for at once.
        k, offset, _, b = buckets(y, start, step, ms)
        fitted, level, trend, season, m = _recursion(b, params, self._season(step) if params["seasonal"] else 0)
        # last complete bucket before each origin (its states are the forecast's starting point)
        last = (origins - offset) // k - 1
        last = np.clip(last, 0, b.shape[0] - 1)
        targets = origins[:, None] + np.arange(horizon)[None, :]  # sample indices forecast
        pos = ((targets - offset) - (k - 1) / 2) / k  # fractional bucket position of each target
        j0 = np.floor(pos).astype(int)
        frac = pos - j0
        v0 = _value(j0, last[:, None], fitted, level, trend, season, params["phi"], m)
        v1 = _value(j0 + 1, last[:, None], fitted, level, trend, season, params["phi"], m)
        path = v0 + frac * (v1 - v0)
        # level correction: mean residual of the last observations against the in-sample path
        recent = origins[:, None] - 1 - np.arange(self.level_points)[None, :]
        rpos = ((recent - offset) - (k - 1) / 2) / k
        r0 = np.floor(rpos).astype(int)
        rf = rpos - r0
        f0 = _value(r0, last[:, None], fitted, level, trend, season, params["phi"], m)
        f1 = _value(r0 + 1, last[:, None], fitted, level, trend, season, params["phi"], m)
        shift = (y[np.maximum(recent, 0)] - (f0 + rf * (f1 - f0))).mean(axis=1)
        if k == 1:  # modelled at the series' own step: the recursion already holds the latest level
            shift = np.zeros_like(shift)
        return np.maximum(path + shift[:, None], 0.0), None


def _recursion(b: np.ndarray, p: dict, m: int):
    """Additive damped Holt-Winters over buckets ``b`` with fixed parameters (statsmodels' form).

    Returns one-step fitted values per bucket, the level, trend and seasonal state after each
    bucket (``season[m + i]`` is the seasonal state updated at bucket i, ``season[:m]`` the
    initial), and the season length ``m`` used: 0 when fewer than two seasons of buckets are given.
    """
    n = b.shape[0]
    alpha, beta, gamma, phi = p["alpha"], p["beta"], p["gamma"], p["phi"]
    if m and n >= 2 * m:
        first, second = b[:m], b[m:2 * m]
        lvl = float(first.mean())
        trd = float((second.mean() - first.mean()) / m)
        init = first - lvl
    else:
        m = 0
        lvl = float(b[0]) if n else 0.0
        trd = float(b[1] - b[0]) if n > 1 else 0.0
        init = np.zeros(0)
    season = np.concatenate([init, np.zeros(n)])
    fitted = np.zeros(n)
    level = np.zeros(n)
    trend = np.zeros(n)
    for i in range(n):
        s_old = season[i] if m else 0.0
        base = lvl + phi * trd
        fitted[i] = base + s_old
        new_level = alpha * (b[i] - s_old) + (1 - alpha) * base
        trd = beta * (new_level - lvl) + (1 - beta) * phi * trd
        if m:
            season[m + i] = gamma * (b[i] - base) + (1 - gamma) * s_old
        lvl = new_level
        level[i], trend[i] = lvl, trd
    return fitted, level, trend, season, m


def _value(j, b, fitted, level, trend, season, phi, m):
    """Model value at bucket ``j`` as seen after bucket ``b``: fitted in-sample, forecast beyond."""
    n = fitted.shape[0]
    j = np.broadcast_to(j, np.broadcast_shapes(j.shape, b.shape))
    b = np.broadcast_to(b, j.shape)
    ahead = j - b
    inside = (ahead <= 0) & (j >= 0)
    out = np.where(inside, fitted[np.clip(j, 0, n - 1)], 0.0)
    k = np.maximum(ahead, 1)
    damp = phi * (1 - phi ** k) / (1 - phi) if phi < 1 else k.astype(float)
    value = level[b] + damp * trend[b]
    if m:
        idx = j - m * ((k + m - 1) // m)  # the latest seasonal update for j's phase, at or before b
        value = value + season[m + idx]
    return np.where(inside, out, np.where(j < 0, fitted[0], value))
