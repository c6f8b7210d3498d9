"""Quantile gradient boosting over lag and calendar features (scikit-learn), one model per level.

How it works, and why:

* **Direct multi-horizon.** One :class:`~sklearn.ensemble.HistGradientBoostingRegressor` per
  quantile level (``loss="quantile"``), the median always among them; the lead is a feature, so
  one model answers every lead up to ``max_horizon_s`` from one origin in one vectorised call.
  The median model gives the point forecast. No recursion: errors do not feed on themselves.
* **A baseline the trees correct.** The models do not learn demand from scratch but the error of
  a seasonal guess: the mean of the last 15 minutes (3 steps at least) plus the median, over up to 7 past days, of
  how demand changed from the origin's time of day to the target's. A short history (a day or
  two of training origins) then still gives a good forecast, and the trees add what the guess
  misses (ramps, lead-dependent spread). Medians keep one odd day (a shift, an outage) from
  moving the guess.
* **Features relative to the origin** ``o`` (the model sees ``y[:o]`` only) for the target index
  ``t = o + h``: the last ``n_lags`` values; the means of the last 5 and 15 minutes and of the
  last day; for the 7-day profile, the day before and (when the history holds more than a week
  and a day) the week before: the value around the target's time, the value at the origin's
  time, and the guess from them; the time of day and of week of the target as sin/cos; the lead
  in hours. A missing value (not enough history) is NaN, which the boosting handles natively.
* **Scale-free.** Demand features and the target are divided by the recent level at the origin
  (the mean of the last hour, floored at 5% of the last day's mean and at 1e-6 so zero demand
  never divides by zero). The trees learn shapes, not units: a level shift or a bigger workload
  does not leave the range they were trained on.
* **Bounded training.** Samples are ``(origin, lead)`` pairs drawn (seeded) from the history,
  at most ``max_samples`` of them, every pair when there are fewer. A target value recurs in up
  to ``horizon`` pairs, so on a short history the trees could memorise each one's noise by time
  of day: boosting stops at one round per 10 distinct targets (at most ``max_iter``). Fitting runs
  on one OpenMP thread (see :func:`_one_thread`); with the defaults, estimating on 14 days at
  1-minute steps took 0.85 s for the four default levels (a whole ``fit``, which estimates twice
  and backtests 200 origins, 1.8 s) on 2 shared cores.
* **Beyond ``max_horizon_s``.** The lead feature is clamped at the largest trained lead (trees do
  not extrapolate, so that is what they would answer anyway), while the target-time features
  (time of day, the same time on the past days or week) keep moving with the target: far leads
  follow the daily profile from the current level.
* **Quantiles** are sorted across levels at every step (independently fitted quantile models can
  cross); the base class then conformalises them on a backtest.
* **Registry.** Parameters are the fitted estimators. :meth:`QuantileGBM.export` writes them with
  ``skops`` (never pickle); :meth:`QuantileGBM.restore` loads them trusting only the
  HistGradientBoosting tree type, and refuses a blob that needs anything else.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from forecasters.base import DAY, DEFAULT_QUANTILES, WEEK, Forecaster, ForecastInputError, steps_for

# The only type a HistGradientBoostingRegressor blob needs beyond the ones skops trusts by default
# (``skops.io.get_untrusted_types`` on a fitted model lists exactly this).
TRUSTED_TYPES = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
_LEVEL_FLOOR_SHARE = 0.05  # the level is at least this share of the last day's mean
_LEVEL_FLOOR = 1e-6  # and at least this (all-zero demand)
_PROFILE_DAYS = 7  # days averaged into the daily profile


@dataclass(frozen=True)
class GBMParams:
    """What one fit learned: the estimator per quantile level and the feature layout."""

    horizon: int  # leads trained (steps); longer leads reuse the last
    use_week: bool  # whether week-ago features are in the feature set
    models: dict  # level -> fitted HistGradientBoostingRegressor

    @property
    def levels(self) -> list[float]:
        return sorted(self.models)

    def to_json(self) -> dict:
        return {"horizon": self.horizon, "use_week": self.use_week, "levels": self.levels}


def _one_thread():
    """Run scikit-learn's OpenMP loops on one thread. The data are small, and with more threads
    than free cores (other fits, a simulator) OpenMP's spinning workers made fits 10-20x slower."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="openmp")


def _seasonal(csum: np.ndarray, o: np.ndarray, h: np.ndarray, period: int, k: int, anchor: int,
              half: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k``-th latest period before each origin: the mean around the target's time (``half``
    steps either side) and the mean of the ``anchor`` steps before the origin's time."""
    at_target = o + h - period * (h // period + k)  # leads past a period look further back
    target = _window_mean(csum, at_target - half, at_target + half + 1, o)
    origin = _window_mean(csum, o - period * k - anchor, o - period * k, o)
    return target, origin


def _window_mean(csum: np.ndarray, lo: np.ndarray, hi: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """Mean of ``y[lo:hi]`` with the window clipped to ``[0, limit)`` (NaN when nothing is left)."""
    lo = np.clip(lo, 0, limit)
    hi = np.clip(hi, 0, limit)
    count = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (csum[hi] - csum[lo]) / np.maximum(count, 1), np.nan)


class QuantileGBM(Forecaster):
    """Direct multi-horizon quantile gradient boosting (see the module docstring)."""

    name = "gbm"
    description = "quantile gradient boosting over lag and calendar features"

    def __init__(self, quantiles: tuple[float, ...] = DEFAULT_QUANTILES, calibration_horizon_s: float = 3600.0,
                 calibration_days: float = 2.0, max_origins: int = 200, max_horizon_s: float = 3600.0,
                 n_lags: int = 6, max_samples: int = 10_000, max_iter: int = 100, max_leaf_nodes: int = 15,
                 learning_rate: float = 0.1, seed: int = 0) -> None:
        super().__init__(quantiles, calibration_horizon_s, calibration_days, max_origins)
        if not max_horizon_s > 0 or n_lags < 1 or max_samples < 1 or max_iter < 1 or max_leaf_nodes < 2 or not learning_rate > 0:
            raise ForecastInputError(f"{self.name}: max_horizon_s and learning_rate must be > 0, n_lags, max_samples and "
                                     f"max_iter >= 1, max_leaf_nodes >= 2")
        self.max_horizon_s = float(max_horizon_s)
        self.n_lags = int(n_lags)
        self.max_samples = int(max_samples)
        self.max_iter = int(max_iter)
        self.max_leaf_nodes = int(max_leaf_nodes)
        self.learning_rate = float(learning_rate)
        self.seed = int(seed)

    def config(self) -> dict:
        return {**self._base_config(), "max_horizon_s": self.max_horizon_s, "n_lags": self.n_lags,
                "max_samples": self.max_samples, "max_iter": self.max_iter, "max_leaf_nodes": self.max_leaf_nodes,
                "learning_rate": self.learning_rate, "seed": self.seed}

    def levels(self) -> list[float]:
        """Quantile levels with a model of their own: the requested ones and the median."""
        return sorted(set(self.quantiles) | {0.5})

    def min_history(self, step: float) -> int:
        """Two days: a day of context before the first training origin (for the day-ago features),
        and a day of origins to learn from."""
        day = steps_for(DAY, step)
        return max(2 * day, day + steps_for(self.max_horizon_s, step) + 1)

    def context_steps(self, step: float) -> int:
        return int((WEEK + DAY) / step) + steps_for(self.max_horizon_s, step)

    # -- features ----------------------------------------------------------------------------------
    def _features(self, y: np.ndarray, start: float, step: float, o: np.ndarray, h: np.ndarray, horizon: int,
                  use_week: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the pairs ``(o[i], h[i])``: the feature matrix ``[len(o), F]``, the level at each
        origin and the baseline the models correct (the daily-profile guess, else the recent mean)."""
        csum = np.concatenate([[0.0], np.cumsum(y)])
        day = steps_for(DAY, step)
        hour_mean = _window_mean(csum, o - max(3, steps_for(3600, step)), o, o)
        day_mean = _window_mean(csum, o - day, o, o)
        level = np.fmax(np.fmax(hour_mean, _LEVEL_FLOOR_SHARE * day_mean), _LEVEL_FLOOR)
        lag_idx = o[:, None] - 1 - np.arange(self.n_lags)[None, :]
        lags = np.where(lag_idx >= 0, y[np.maximum(lag_idx, 0)], np.nan)
        anchor = max(3, steps_for(900, step))  # the window the seasonal guesses start from
        anchor_mean = _window_mean(csum, o - anchor, o, o)
        columns = [lags, _window_mean(csum, o - steps_for(300, step), o, o)[:, None], anchor_mean[:, None], day_mean[:, None]]
        half = int(round(150 / step))  # the target's window: 5 minutes (one step at coarse steps)
        seasonal = [(day, _PROFILE_DAYS), (day, 1)] + ([(steps_for(WEEK, step), 1)] if use_week else [])
        guesses = []
        for period, count in seasonal:
            then = [_seasonal(csum, o, h, period, k, anchor, half) for k in range(1, count + 1)]
            targets, origins = (np.stack(side) for side in zip(*then))  # [count, pairs]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # no period back yet: NaN is the answer
                # medians over the days: one odd day (a shift, an outage) does not move the guess
                target, origin, change = (np.nanmedian(a, axis=0) for a in (targets, origins, targets - origins))
            guesses.append(anchor_mean + change)
            columns.append(np.column_stack([target, origin, guesses[-1]]))
        baseline = np.where(np.isnan(guesses[0]), anchor_mean, guesses[0])  # the daily-profile guess
        X = np.column_stack(columns) / level[:, None]
        when = start + (o + h) * step
        calendar = [f(2 * np.pi * (when % p) / p) for p in (DAY, WEEK) for f in (np.sin, np.cos)]
        lead = (np.minimum(h, horizon - 1) + 1) * step / 3600.0
        return np.column_stack([X, *calendar, lead]), level, baseline

    # -- the protocol ------------------------------------------------------------------------------
    def _estimate(self, y: np.ndarray, start: float, step: float) -> GBMParams:
        from sklearn.ensemble import HistGradientBoostingRegressor

        n = y.shape[0]
        horizon = steps_for(self.max_horizon_s, step)
        day, week = steps_for(DAY, step), steps_for(WEEK, step)
        first = min(day, max(n - horizon, 1))  # first origin: a day of context when there is one
        origins, leads = np.arange(first, n - horizon + 1), np.arange(horizon)
        if origins.shape[0] * horizon <= self.max_samples:
            o, h = np.repeat(origins, horizon), np.tile(leads, origins.shape[0])
        else:
            rng = np.random.default_rng(self.seed)
            o = rng.integers(first, n - horizon + 1, size=self.max_samples)
            h = rng.integers(0, horizon, size=self.max_samples)
        use_week = n >= week + day  # at least a day of origins with a week-ago value
        X, level, baseline = self._features(y, start, step, o, h, horizon, use_week)
        target = (y[o + h] - baseline) / level
        # A target value recurs in up to `horizon` pairs; on a short history the trees would
        # memorise each one's noise by time of day. At most one round per 10 distinct targets.
        rounds = max(10, min(self.max_iter, np.unique(o + h).shape[0] // 10))
        models = {}
        with _one_thread():
            for q in self.levels():
                model = HistGradientBoostingRegressor(loss="quantile", quantile=q, max_iter=rounds,
                                                      max_leaf_nodes=self.max_leaf_nodes, learning_rate=self.learning_rate,
                                                      early_stopping=False, random_state=self.seed)
                models[q] = model.fit(X, target)
        return GBMParams(horizon, use_week, models)

    def _paths(self, params: GBMParams, y, start, step, origins, horizon):
        n_o = origins.shape[0]
        o = np.repeat(np.asarray(origins, dtype=np.int64), horizon)
        h = np.tile(np.arange(horizon), n_o)
        X, level, baseline = self._features(y, start, step, o, h, params.horizon, params.use_week)
        levels = params.levels
        with _one_thread():
            predicted = [baseline + params.models[q].predict(X) * level for q in levels]
        stacked = np.stack(predicted).reshape(len(levels), n_o, horizon)
        stacked = np.sort(np.maximum(stacked, 0.0), axis=0)  # independently fitted levels can cross
        native = dict(zip(levels, stacked))
        return native[0.5], native

    # -- registry ----------------------------------------------------------------------------------
    def export(self) -> tuple[dict, dict[str, bytes]]:
        """JSON: the keys and each key's feature layout; blobs: ``"<key index>-q<level>.skops"``."""
        import skops.io

        keys = sorted(self.learned)
        blobs = {f"{i}-q{q}.skops": skops.io.dumps(self.learned[key].models[q])
                 for i, key in enumerate(keys) for q in self.learned[key].levels}
        return {"learned_keys": keys, "learned": {key: self.learned[key].to_json() for key in keys}}, blobs

    def restore(self, state: dict, blobs: dict[str, bytes]) -> None:
        """Load what :meth:`export` wrote; a blob that needs an untrusted type raises ForecastInputError."""
        learned = {}
        for i, key in enumerate(state.get("learned_keys", [])):
            meta = state["learned"][key]
            models = {float(q): _load_estimator(blobs, f"{i}-q{float(q)}.skops") for q in meta["levels"]}
            learned[key] = GBMParams(int(meta["horizon"]), bool(meta["use_week"]), models)
        self.learned = learned


def _load_estimator(blobs: dict[str, bytes], name: str):
    """One HistGradientBoostingRegressor from a skops blob, trusting only :data:`TRUSTED_TYPES`."""
    import skops.io
    from sklearn.ensemble import HistGradientBoostingRegressor

    if name not in blobs:
        raise ForecastInputError(f"gbm registry state: blob {name!r} is missing")
    untrusted = sorted(set(skops.io.get_untrusted_types(data=blobs[name])) - set(TRUSTED_TYPES))
    if untrusted:
        raise ForecastInputError(f"gbm registry state: blob {name!r} needs untrusted types {', '.join(untrusted)}; refused")
    model = skops.io.loads(blobs[name], trusted=TRUSTED_TYPES)
    if not isinstance(model, HistGradientBoostingRegressor):
        raise ForecastInputError(f"gbm registry state: blob {name!r} holds a {type(model).__name__}, "
                                 f"not a HistGradientBoostingRegressor; refused")
    return model
