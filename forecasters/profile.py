"""A fast seasonal model for fleets: a seasonal profile plus a damped, exponentially smoothed level.

``y(t) = S(t) + L(t)`` (additive) or ``y(t) = S(t) * L(t)`` (multiplicative), where

* ``S`` is the typical value at that time of day (or of the week, with two weeks of history),
  the median over past seasons of clock-aligned ``phase_step`` buckets, so one odd day does not
  bend it;
* ``L`` is an exponentially weighted mean of the deseasonalised recent observations, and its
  departure from normal decays toward the long-run mean with a half-life: a burst is expected to
  persist for a while, not forever.

The smoothing weight, the half-life and the form are chosen by a vectorised grid search that
minimises the MAE over the calibration horizon on the history itself (``scipy.signal.lfilter``
runs each candidate over the whole series in C), so a fit costs milliseconds. That is why it is
the default candidate for fleets of thousands of workloads; ETS and the learned models are
there for the series where they do better, and the selector decides.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from forecasters.base import DAY, WEEK, Forecaster, seasons, steps_for

_ALPHAS = (0.02, 0.05, 0.1, 0.25, 0.5, 0.9)
_HALF_LIVES_S = (600.0, 1800.0, 3 * 3600.0, 12 * 3600.0)
_GRID_ORIGINS = 400
_SHIFT_POINTS = 10  # recent points the shift guard averages
_SHIFT_SIGMAS = 5.0  # how far (in standard errors of that average) counts as a shift


class Profile(Forecaster):
    """Seasonal profile (daily, or weekly with two weeks of history) with a damped smoothed level."""

    name = "profile"
    description = "seasonal profile (median by time of day/week) with a damped exponentially smoothed level"

    def __init__(self, phase_step: float = 600.0, profile_days: float = 21.0, **base) -> None:
        super().__init__(**base)
        self.phase_step = float(phase_step)
        self.profile_days = float(profile_days)

    def config(self) -> dict:
        return {**self._base_config(), "phase_step": self.phase_step, "profile_days": self.profile_days}

    def min_history(self, step: float) -> int:
        return 2 * seasons(step).get("daily", 10**12)  # two days; a step without a daily season: never

    def context_steps(self, step: float) -> int:
        return int(2 * DAY / step)  # the smoothed level forgets older data long before this

    def _phases(self, start: float, step: float, n: int, period: float) -> np.ndarray:
        """Phase bucket of samples ``0..n-1`` within the period (time of day or of week, UTC)."""
        width = max(self.phase_step, step)
        t = start + step * np.arange(n)
        return (np.floor((t % period) / width)).astype(int)

    def _estimate(self, y, start, step):
        period = WEEK if y.shape[0] * step >= 2 * WEEK else DAY
        width = max(self.phase_step, step)
        n_phase = int(round(period / width))
        keep = min(y.shape[0], int(self.profile_days * DAY / step))
        ys = y[-keep:]
        phase = self._phases(start + (y.shape[0] - keep) * step, step, keep, period)
        profile = _phase_median(ys, phase, n_phase)
        best = None
        horizon = steps_for(self.calibration_horizon_s, step)
        for mode in ("add", "mul"):
            params = {"period": period, "width": width, "mode": mode, "profile": profile.tolist(), "sigma": None}
            mode_best = None
            for alpha in _ALPHAS:
                for half in _HALF_LIVES_S:
                    p = {**params, "alpha": alpha, "half_life_s": half}
                    err = self._grid_error(p, y, start, step, horizon)
                    if mode_best is None or err < mode_best[0]:
                        mode_best = (err, p)
            # the same grid with the shift guard, its yardstick from the best unguarded fit
            sigma = self._noise(mode_best[1], y, start, step)
            for alpha in _ALPHAS:
                for half in _HALF_LIVES_S:
                    p = {**params, "alpha": alpha, "half_life_s": half, "sigma": sigma}
                    err = self._grid_error(p, y, start, step, horizon)
                    if err < mode_best[0]:
                        mode_best = (err, p)
            if best is None or mode_best[0] < best[0]:
                best = mode_best
        return best[1]

    def _noise(self, p, y, start, step) -> float:
        """Spread of one-step errors (deseasonalised units): the shift guard's yardstick. Robust
        (MAD), so the bursts the guard should catch do not inflate it."""
        n = y.shape[0]
        origins = np.arange(max(1, n // 2), n)
        point, _ = self._paths(p, y, start, step, origins, 1)
        profile = np.asarray(p["profile"], dtype=float)
        scale = profile[self._phases(start + origins[0] * step, step, origins.shape[0], p["period"])]
        floor = 1e-6 + 0.01 * float(np.mean(profile))
        err = (y[origins] - point[:, 0]) / (np.maximum(scale, floor) if p["mode"] == "mul" else 1.0)
        return float(1.4826 * np.median(np.abs(err - np.median(err)))) + 1e-9

    def _grid_error(self, p, y, start, step, horizon) -> float:
        n = y.shape[0]
        lo = max(int(DAY / step), n // 2)  # score on the later half (the level needs a warm-up)
        if n - horizon <= lo:
            lo = max(1, n // 2)
        origins = np.unique(np.linspace(lo, n - horizon, min(_GRID_ORIGINS, max(1, n - horizon - lo))).astype(int))
        leads = np.unique(np.array([1, max(1, horizon // 2), horizon]))
        point, _ = self._paths(p, y, start, step, origins, horizon, leads=leads - 1)
        truth = y[origins[:, None] + leads[None, :] - 1]
        return float(np.mean(np.abs(truth - point)))

    def _paths(self, params, y, start, step, origins, horizon, leads=None):
        period, width = params["period"], params["width"]
        profile = np.asarray(params["profile"], dtype=float)
        mul = params["mode"] == "mul"
        lo = max(0, int(origins.min()) - self.context_steps(step))
        seg = y[lo:int(origins.max())]
        seg_start = start + lo * step
        s_hist = profile[self._phases(seg_start, step, seg.shape[0], period)]
        floor = 1e-6 + 0.01 * float(np.mean(profile))
        deseason = seg / np.maximum(s_hist, floor) if mul else seg - s_hist
        alpha = params["alpha"]
        # EWMA of the deseasonalised series, warm-started on the first value
        level, _ = lfilter([alpha], [1.0, alpha - 1.0], deseason, zi=[(1 - alpha) * deseason[0]])
        long_run = 1.0 if mul else 0.0
        h = np.arange(horizon) if leads is None else np.asarray(leads)
        decay = 0.5 ** ((h + 1) * step / params["half_life_s"])
        last = level[origins - lo - 1]
        # Shift guard: when the last few deseasonalised points all sit far from the smoothed level
        # (a level shift the slow level has not caught up with), trust them and do not decay.
        k = _SHIFT_POINTS
        csum = np.concatenate([[0.0], np.cumsum(deseason)])
        end = origins - lo
        recent = (csum[end] - csum[np.maximum(end - k, 0)]) / np.maximum(np.minimum(end, k), 1)
        sigma = params.get("sigma")
        shifted = np.abs(recent - last) > _SHIFT_SIGMAS * (np.inf if sigma is None else sigma) / np.sqrt(k)
        last = np.where(shifted, recent, last)
        decay = np.where(shifted[:, None], 1.0, decay[None, :])
        lvl = long_run + (last[:, None] - long_run) * decay
        target = origins[:, None] + h[None, :]
        t = start + step * target
        s_future = profile[(np.floor((t % period) / width)).astype(int)]
        point = s_future * lvl if mul else s_future + lvl
        return np.maximum(point, 0.0), None


def _phase_median(values: np.ndarray, phase: np.ndarray, n_phase: int) -> np.ndarray:
    """Median of ``values`` per phase bucket; empty buckets take the overall median."""
    order = np.argsort(phase, kind="stable")
    sorted_phase = phase[order]
    bounds = np.searchsorted(sorted_phase, np.arange(n_phase + 1))
    out = np.full(n_phase, float(np.median(values)))
    for i in range(n_phase):
        a, b = bounds[i], bounds[i + 1]
        if b > a:
            out[i] = float(np.median(values[order[a:b]]))
    return out
