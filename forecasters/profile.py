"""A fast seasonal model for fleets: a seasonal profile plus a damped, exponentially smoothed level.

``y(t) = S(t) + L(t)`` (additive) or ``y(t) = S(t) * L(t)`` (multiplicative), where

* ``S`` is the typical value at that time of day (or of the week), the median over past seasons
  of clock-aligned ``phase_step`` buckets, so one odd day does not bend it; or one flat level
  (then the model is simple exponential smoothing with a damped departure);
* ``L`` is an exponentially weighted mean of the deseasonalised recent observations, and its
  departure from normal decays toward the long-run mean with a half-life: a burst is expected to
  persist for a while, not forever.

The season (none; daily with two days of history; weekly with two weeks), the form, the smoothing
weight, the half-life and a shift guard are chosen by a grid search scored on a holdout (the last
two days, or a third of a shorter history) with profiles computed before it, so a season that
does not repeat out of sample loses to a flat level. Each candidate runs the smoothing over a day
and the holdout with ``scipy.signal.lfilter`` (C), so a fit costs tens of milliseconds. That is why it is
the default candidate for fleets of thousands of workloads; ETS and the learned models are
there for the series where they do better, and the selector decides.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from forecasters.base import DAY, WEEK, Forecaster, steps_for

_ALPHAS = (0.02, 0.05, 0.1, 0.25, 0.5, 0.9)
_HALF_LIVES_S = (600.0, 1800.0, 3 * 3600.0, 12 * 3600.0, float("inf"))
_GRID_ORIGINS = 400
_MIN_STEPS = 24  # fewest observed steps: a flat smoothed level needs a few dozen
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
        self._phase_cache: tuple | None = None

    def config(self) -> dict:
        return {**self._base_config(), "phase_step": self.phase_step, "profile_days": self.profile_days}

    def min_history(self, step: float) -> int:
        return _MIN_STEPS  # with under two days of history the profile is flat (smoothing only)

    def context_steps(self, step: float) -> int:
        return int(2 * DAY / step)  # the smoothed level forgets older data long before this

    def _phases(self, start: float, step: float, n: int, period: float) -> np.ndarray:
        """Phase bucket of samples ``0..n-1`` within the period (time of day or of week, UTC).

        The grid search asks for the same window hundreds of times: the last answer is kept."""
        key = (start, step, n, period)
        if self._phase_cache is not None and self._phase_cache[0] == key:
            return self._phase_cache[1]
        width = max(self.phase_step, step)
        t = start + step * np.arange(n)
        phases = (np.floor((t % period) / width)).astype(int)
        self._phase_cache = (key, phases)
        return phases

    def _profile(self, y, start, step, period: float | None) -> np.ndarray:
        """Median by phase over the last ``profile_days`` of ``y``; ``period=None``: one flat level."""
        keep = min(y.shape[0], int(self.profile_days * DAY / step))
        if period is None:
            return np.array([float(np.median(y[-keep:]))])
        width = max(self.phase_step, step)
        phase = self._phases(start + (y.shape[0] - keep) * step, step, keep, period)
        return _phase_median(y[-keep:], phase, int(round(period / width)))

    def _estimate(self, y, start, step):
        """Grid search on a holdout: profiles from all but the last ``holdout`` steps, each candidate
        (season: none, daily, weekly; additive or multiplicative; smoothing weight; half-life;
        shift guard) scored on the holdout, the winner's profile then recomputed on everything."""
        n = y.shape[0]
        horizon = steps_for(self.calibration_horizon_s, step)
        holdout = min(int(2 * DAY / step), n // 3)
        train_end = n - holdout
        periods: list[float | None] = [None]
        for period in (DAY, WEEK):  # a season needs two of its periods before the holdout
            if period / step >= 2 and train_end * step >= 2 * period:
                periods.append(period)
        warm = min(train_end, int(DAY / step))  # history the smoothed level warms up on
        seg_start = start + (train_end - warm) * step
        seg = y[train_end - warm:]
        best: list | None = None  # per anchor lead: (error, params)
        anchors = None

        def score(p):
            nonlocal best, anchors
            anchors, errs = self._grid_error(p, seg, seg_start, step, horizon, warm)
            if best is None:
                best = [(e, p) for e in errs]
            else:
                best = [(e, p) if e < b[0] else b for e, b in zip(errs, best)]
            return float(np.mean(errs))

        for period in periods:
            profile = self._profile(y[:train_end], start, step, period)
            width = max(self.phase_step, step)
            for mode in ("add",) if period is None else ("add", "mul"):
                params = {"period": period, "width": width, "mode": mode, "profile": profile.tolist(), "sigma": None}
                mode_best = None
                for alpha in _ALPHAS:
                    for half in _HALF_LIVES_S:
                        p = {**params, "alpha": alpha, "half_life_s": half}
                        err = score(p)
                        if mode_best is None or err < mode_best[0]:
                            mode_best = (err, p)
                # the shift guard, its yardstick from the best unguarded fit: tried along both axes
                # through that fit (the full grid again would double the cost of a fit)
                sigma = self._noise(mode_best[1], seg, seg_start, step)
                a0, h0 = mode_best[1]["alpha"], mode_best[1]["half_life_s"]
                for alpha, half in sorted({(a, h0) for a in _ALPHAS} | {(a0, h) for h in _HALF_LIVES_S}):
                    score({**params, "alpha": alpha, "half_life_s": half, "sigma": sigma})
        # One parameter set per anchor lead (the best there), each profile recomputed on everything.
        sets = [{**p, "profile": self._profile(y, start, step, p["period"]).tolist()} for _, p in best]
        return {"anchors": [int(a) for a in anchors], "sets": sets}

    def _noise(self, p, y, start, step) -> float:
        """Spread of one-step errors (deseasonalised units): the shift guard's yardstick. Robust
        (MAD), so the bursts the guard should catch do not inflate it."""
        n = y.shape[0]
        origins = np.arange(max(1, n // 2), n)
        point = self._point(p, y, start, step, origins, np.array([0]))
        profile = np.asarray(p["profile"], dtype=float)
        scale = profile[self._phases(start + origins[0] * step, step, origins.shape[0], _period(p))]
        floor = 1e-6 + 0.01 * float(np.mean(profile))
        err = (y[origins] - point[:, 0]) / (np.maximum(scale, floor) if p["mode"] == "mul" else 1.0)
        return float(1.4826 * np.median(np.abs(err - np.median(err)))) + 1e-9

    def _grid_error(self, p, y, start, step, horizon, lo) -> tuple[np.ndarray, np.ndarray]:
        """The anchor leads (1, H/2, H) and the MAE at each, from origins after ``lo`` (the holdout)."""
        n = y.shape[0]
        horizon = max(1, min(horizon, (n - 1) // 2))  # a short history scores a shorter horizon
        lo = max(1, min(lo, n - horizon))
        origins = np.unique(np.linspace(lo, n - horizon, min(_GRID_ORIGINS, max(1, n - horizon - lo))).astype(int))
        leads = np.unique(np.array([1, max(1, horizon // 2), horizon]))
        point = self._point(p, y, start, step, origins, leads - 1)
        truth = y[origins[:, None] + leads[None, :] - 1]
        return leads, np.mean(np.abs(truth - point), axis=0)

    def _paths(self, params, y, start, step, origins, horizon):
        """Each lead from the parameter set whose anchor lead is nearest (in the lead's log)."""
        sets, anchors = params["sets"], np.asarray(params["anchors"], dtype=float)
        h = np.arange(1, horizon + 1)
        which = np.argmin(np.abs(np.log(h)[:, None] - np.log(anchors)[None, :]), axis=1)
        out = np.empty((origins.shape[0], horizon))
        for j in np.unique(which):
            mask = which == j
            out[:, mask] = self._point(sets[j], y, start, step, origins, np.flatnonzero(mask))
        return out, None

    def _point(self, params, y, start, step, origins, leads):
        """Point forecasts of one parameter set at the 0-based ``leads`` from each origin."""
        period, width = _period(params), params["width"]
        profile = np.asarray(params["profile"], dtype=float)
        mul = params["mode"] == "mul"
        # From the start of the history for every origin alike, so a forecast from an origin does not
        # depend on which other origins are asked for at once.
        seg = y[:int(origins.max())]
        seg_start = start
        s_hist = profile[self._phases(seg_start, step, seg.shape[0], period)]
        floor = 1e-6 + 0.01 * float(np.mean(profile))
        deseason = seg / np.maximum(s_hist, floor) if mul else seg - s_hist
        alpha = params["alpha"]
        # EWMA of the deseasonalised series, warm-started on the first value
        level, _ = lfilter([alpha], [1.0, alpha - 1.0], deseason, zi=[(1 - alpha) * deseason[0]])
        long_run = 1.0 if mul else 0.0
        h = np.asarray(leads)
        decay = 0.5 ** ((h + 1) * step / params["half_life_s"])
        last = level[origins - 1]
        # Shift guard: when the last few deseasonalised points all sit far from the smoothed level
        # (a level shift the slow level has not caught up with), trust them and do not decay.
        k = _SHIFT_POINTS
        csum = np.concatenate([[0.0], np.cumsum(deseason)])
        end = origins
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
        return np.maximum(point, 0.0)


def _period(params: dict) -> float:
    """The profile's period; a flat profile (no season) is one phase as wide as a bucket."""
    return params["period"] or params["width"]


def _phase_median(values: np.ndarray, phase: np.ndarray, n_phase: int) -> np.ndarray:
    """Median of ``values`` per phase bucket (vectorised); empty buckets take the overall median."""
    order = np.lexsort((values, phase))
    v = values[order]
    counts = np.bincount(phase, minlength=n_phase)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    lo = first + np.maximum(counts - 1, 0) // 2
    hi = first + counts // 2
    n = v.shape[0]
    med = 0.5 * (v[np.minimum(lo, n - 1)] + v[np.minimum(hi, n - 1)])
    return np.where(counts > 0, med, float(np.median(values)))
