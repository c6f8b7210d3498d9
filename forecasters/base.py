"""One protocol for every forecaster: ``fit(history).predict(horizon)``, calibrated quantiles.

A model implements two things (see :class:`Forecaster`):

* ``_estimate(y, start, step)``: learn its parameters from a history (the expensive part:
  optimisation, training). The result should be JSON-able so the registry can store it.
* ``_paths(params, y, start, step, origins, horizon)``: with those parameters fixed, the point
  forecast (and, for quantile models, native quantiles) from each origin ``o`` using ``y[:o]``
  only. This is cheap, vectorised where it can be, and used three ways: for the conformal
  backtest, for the final forecast (origin = end of history) and for cheap updates between fits.

The base class does the rest, the same way for every model:

* **Input** (:func:`prepare`): NaN is a gap and leading gaps are dropped. ``_paths`` gets the
  observations with each gap carried forward from the last value before it, so what it sees at
  any step depends on the past only; ``_estimate`` gets a cleaned copy (gaps interpolated,
  isolated spikes replaced by a Hampel filter). Residuals are only ever scored against real
  observations, never against filled values.
* **Short history**: a model that needs more history than there is hands the series to its
  ``fallback`` (ultimately :class:`~forecasters.naive.Naive`, which needs one point), and the
  forecast says why in ``fell_back``.
* **Calibration** (split conformal, per lead): the model is fitted on all but the last
  ``calibration_days`` (at most a third of the history), forecasts from up to ``max_origins``
  origins in that window, and the residuals, scaled by the recent level at each origin, give for
  every quantile ``q`` and lead ``h`` the offset that a fraction ``q`` of residuals fall below
  (or, when that fits the residuals better by pinball loss, unscaled offsets in demand units).
  Quantile models (gradient boosting, torch) are adjusted the same way from their own quantiles
  (conformalised quantile regression). Too little observed data in that window leaves the model
  uncalibrated (a wide band, and ``fell_back`` says so). Then the model is refitted on the whole
  history.
* **Output**: quantiles are clipped at zero and made monotone at every step.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from forecasters.series import Forecast, Series

DEFAULT_QUANTILES = (0.05, 0.5, 0.9, 0.95, 0.99)  # 0.05 with 0.95: the 90 % interval drift checks
DAY = 86_400.0
WEEK = 7 * DAY
_SPIKE_MADS = 8.0  # a point this many MADs from its neighbours' median is an isolated spike
_MIN_ORIGINS = 12  # fewer calibration origins than this: no conformal calibration


class ForecastInputError(ValueError):
    """A history or request no model can use (all NaN, infinite or negative values, a bad horizon).

    The message names the series key and the problem in one line.
    """


def seasons(step: float) -> dict[str, int]:
    """Seasonal periods in steps found from the step: ``daily`` and ``weekly`` when they are a
    whole number (>= 2) of steps, e.g. 1,440 and 10,080 at 1-minute steps, 144 and 1,008 at 10."""
    out = {}
    for name, seconds in (("daily", DAY), ("weekly", WEEK)):
        m = seconds / step
        if m >= 2 and abs(m - round(m)) < 1e-6:
            out[name] = int(round(m))
    return out


def steps_for(seconds: float, step: float) -> int:
    """Whole steps nearest to ``seconds`` (at least 1): how a horizon in minutes becomes steps."""
    return max(1, int(round(seconds / step)))


@dataclass(frozen=True)
class Prepared:
    """A history ready for a model.

    ``y`` is what forecasts condition on: the observations with every gap carried forward from the
    last value before it, so the value at any step depends on the past only (the conformal
    backtest forecasts from origins inside the history, and must not see past them). ``clean`` is
    what parameters are estimated from: gaps interpolated and isolated spikes replaced (estimation
    looks at the whole history anyway). ``observed`` keeps the truth (NaN at gaps) for scoring.
    """

    key: str
    start: float  # epoch seconds of y[0] (leading gaps dropped)
    step: float
    y: np.ndarray
    clean: np.ndarray
    observed: np.ndarray  # NaN where the input had a gap
    filled: int  # how many points were gaps
    despiked: int  # how many isolated spikes were replaced in ``clean``

    @property
    def end(self) -> float:
        return self.start + self.y.shape[0] * self.step

    @property
    def n_observed(self) -> int:
        return int(np.count_nonzero(~np.isnan(self.observed)))


def prepare(series: Series, despike: bool = True) -> Prepared:
    """Validate and clean a history (see the module docstring). Raises ForecastInputError.

    ``despike=False`` skips the estimation copy's filtering (``clean`` is then the interpolated
    series): updates between fits never estimate, so they skip its cost."""
    values = np.asarray(series.values, dtype=np.float64)
    if values.shape[0] == 0:
        raise ForecastInputError(f"series {series.key!r}: empty history")
    if np.isinf(values).any():
        i = int(np.flatnonzero(np.isinf(values))[0])
        raise ForecastInputError(f"series {series.key!r}: infinite value at index {i}")
    known = ~np.isnan(values)
    if not known.any():
        raise ForecastInputError(f"series {series.key!r}: all {values.shape[0]} values are gaps (NaN); nothing to forecast from")
    if (values[known] < 0).any():
        i = int(np.flatnonzero(known & (values < 0))[0])
        raise ForecastInputError(f"series {series.key!r}: negative demand {values[i]:g} at index {i}")
    first = int(np.argmax(known))
    observed = values[first:]
    known = known[first:]
    if known.all():
        y = clean = observed
    else:
        idx = np.arange(observed.shape[0])
        y = observed[np.maximum.accumulate(np.where(known, idx, 0))]  # carry the last value forward
        clean = np.interp(idx, idx[known], observed[known])  # trailing gap: last value
    despiked = 0
    # Intermittent demand (mostly zeros) is all "spikes" to a Hampel filter, and all real: skip it.
    if despike and clean.shape[0] >= 7 and np.mean(clean == 0) < 0.3:
        clean, despiked = _despike(clean)
    return Prepared(series.key, series.start + first * series.step, series.step, y, clean, observed,
                    int(np.count_nonzero(~known)), despiked)


def _despike(y: np.ndarray) -> tuple[np.ndarray, int]:
    """Replace isolated one-point spikes (Hampel filter, window 7) by their neighbours' median.

    Only single points far from *both* sides are touched, so a burst that lasts, a level shift or
    a ramp is left alone: those are demand the autoscaler must see.
    """
    pad = np.pad(y, 3, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(pad, 7)
    neighbours = np.delete(windows, 3, axis=1)
    med = np.median(neighbours, axis=1)
    mad = np.median(np.abs(neighbours - med[:, None]), axis=1)
    scale = 1.4826 * mad + 1e-9 + 0.05 * np.abs(med)
    spike = np.abs(y - med) > _SPIKE_MADS * scale
    if not spike.any():
        return y, 0
    out = y.copy()
    out[spike] = med[spike]
    return out, int(np.count_nonzero(spike))


def recent_level(y: np.ndarray, origins: np.ndarray, window: int) -> np.ndarray:
    """Mean of ``y[o - window : o]`` for each origin (fewer points near the start), floored so that
    a zero-demand stretch still gets a non-zero scale."""
    csum = np.concatenate([[0.0], np.cumsum(y)])
    lo = np.maximum(origins - window, 0)
    mean = (csum[origins] - csum[lo]) / np.maximum(origins - lo, 1)
    floor = 1e-6 + 0.01 * float(np.mean(y)) if y.shape[0] else 1e-6
    return np.maximum(mean, floor)


@dataclass(frozen=True)
class Calibration:
    """Conformal offsets per quantile and lead: in units of the recent level at the origin
    (``relative``: errors that grow with demand) or in demand units (errors that do not)."""

    offsets: dict[float, np.ndarray]  # q -> [H]
    mae: np.ndarray  # [H] backtest MAE of the point forecast per lead (demand units)
    mase_scale: float  # in-sample one-step naive MAE (MASE denominator)
    n_origins: int
    relative: bool = True

    def offset(self, q: float, horizon: int) -> np.ndarray:
        o = self.offsets[q]
        if horizon <= o.shape[0]:
            return o[:horizon]
        grow = o[-1] * np.sqrt(np.arange(o.shape[0] + 1, horizon + 1) / o.shape[0])
        return np.concatenate([o, grow])

    @property
    def score(self) -> float:
        """Mean backtest MAE over the leads, scaled by in-sample naive MAE (lower is better)."""
        return float(np.nanmean(self.mae)) / max(self.mase_scale, 1e-12)

    def to_json(self) -> dict:
        return {"offsets": {str(q): v.tolist() for q, v in self.offsets.items()}, "mae": self.mae.tolist(),
                "mase_scale": self.mase_scale, "n_origins": self.n_origins, "relative": self.relative}

    @classmethod
    def from_json(cls, data: dict) -> "Calibration":
        return cls({float(q): np.asarray(v, dtype=float) for q, v in data["offsets"].items()},
                   np.asarray(data["mae"], dtype=float), float(data["mase_scale"]), int(data["n_origins"]),
                   bool(data.get("relative", True)))


@dataclass(frozen=True)
class Fitted:
    """A model fitted on one history; :meth:`predict` is cheap and pure."""

    forecaster: "Forecaster"
    model: str  # the name the forecast carries, e.g. "ets" or "auto/ets"
    data: Prepared
    params: Any
    calibration: Calibration | None
    fell_back: str | None = None

    @property
    def key(self) -> str:
        return self.data.key

    def predict(self, horizon: int) -> Forecast:
        """Quantile forecasts for the ``horizon`` steps after the history's end."""
        horizon = _check_horizon(self.key, horizon)
        d = self.data
        origin = np.array([d.y.shape[0]])
        point, native = self.forecaster._paths(self.params, d.y, d.start, d.step, origin, horizon)
        level = recent_level(d.y, origin, self.forecaster.level_window(d.step))[0]
        out = {}
        for q in self.forecaster.quantiles:
            base = (native[q][0] if native and q in native else point[0]).astype(float)
            if self.calibration is not None:
                base = base + (level if self.calibration.relative else 1.0) * self.calibration.offset(q, horizon)
            else:  # uncalibrated (too little history to backtest): a wide band, proportional to the level
                base = base + level * _default_band(q) * np.sqrt(np.arange(1, horizon + 1))
            out[q] = np.maximum(base, 0.0)
        levels = sorted(out)
        stacked = np.maximum.accumulate(np.stack([out[q] for q in levels]), axis=0)
        stacked = np.nan_to_num(stacked, nan=level)
        return Forecast(self.key, d.end - d.step, d.step, dict(zip(levels, stacked)), self.model, self.fell_back)

    def update(self, history: Series) -> "Fitted":
        """The same parameters and calibration, conditioned on a newer history (no re-estimation)."""
        if history.step != self.data.step:
            raise ForecastInputError(f"series {history.key!r}: step {history.step:g} s differs from the fit's {self.data.step:g} s")
        tail = history.tail(self.forecaster.context_steps(history.step))
        return replace(self, data=prepare(tail, despike=False))


def _default_band(q: float) -> float:
    """Offset (in units of the level, per sqrt(step)) of the uncalibrated band: z(q) * 0.1."""
    from scipy.stats import norm

    return 0.1 * float(norm.ppf(min(max(q, 1e-4), 1 - 1e-4)))


def _check_horizon(key: str, horizon: Any) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ForecastInputError(f"series {key!r}: horizon must be a whole number of steps >= 1, got {horizon!r}")
    return int(horizon)


class Forecaster(ABC):
    """Base class of every model (see the module docstring for the contract)."""

    name: ClassVar[str]
    description: ClassVar[str] = ""

    def __init__(self, quantiles: tuple[float, ...] = DEFAULT_QUANTILES, calibration_horizon_s: float = 3600.0,
                 calibration_days: float = 2.0, max_origins: int = 200) -> None:
        qs = tuple(sorted({float(q) for q in quantiles}))
        if not qs or not all(0.0 < q < 1.0 for q in qs):
            raise ForecastInputError(f"{self.name}: quantiles must lie strictly between 0 and 1, got {quantiles!r}")
        self.quantiles = qs
        self.calibration_horizon_s = float(calibration_horizon_s)
        self.calibration_days = float(calibration_days)
        self.max_origins = int(max_origins)
        self.learned: dict[str, Any] = {}  # key -> parameters learned by train(), reused by fit()

    # -- what a model implements -----------------------------------------------------------------
    @abstractmethod
    def _estimate(self, y: np.ndarray, start: float, step: float) -> Any:
        """Learn parameters from a history's cleaned copy (gaps interpolated, spikes replaced)."""

    @abstractmethod
    def _paths(self, params: Any, y: np.ndarray, start: float, step: float, origins: np.ndarray,
               horizon: int) -> tuple[np.ndarray, dict[float, np.ndarray] | None]:
        """Point forecasts ``[len(origins), horizon]`` from each origin ``o`` using ``y[:o]`` only,
        and optionally native quantiles ``{q: [len(origins), horizon]}``."""

    def min_history(self, step: float) -> int:
        """Observed steps this model needs; with fewer, :meth:`fit` uses :meth:`fallback`."""
        return 1

    def fallback(self) -> "Forecaster | None":
        """The simpler model used when this one cannot be (too little history, a failed fit)."""
        from forecasters.naive import SeasonalNaive

        return SeasonalNaive(**self._base_config())

    def context_steps(self, step: float) -> int:
        """Steps of recent history :meth:`_paths` reads (older history only matters for fitting)."""
        return int(15 * DAY / step)

    def level_window(self, step: float) -> int:
        """Steps averaged for the recent level that scales residuals (one hour, at least 3 steps)."""
        return max(3, int(round(3600 / step)))

    # -- configuration and learned state (the registry stores these) -------------------------------
    def _base_config(self) -> dict:
        return {"quantiles": list(self.quantiles), "calibration_horizon_s": self.calibration_horizon_s,
                "calibration_days": self.calibration_days, "max_origins": self.max_origins}

    def config(self) -> dict:
        """Constructor arguments as JSON: ``build(name, config)`` makes the same model."""
        return self._base_config()

    def export(self) -> tuple[dict, dict[str, bytes]]:
        """Learned state: JSON parameters, and binary blobs (``.pt`` state_dicts, ``.skops``)."""
        return {"learned": self.learned}, {}

    def restore(self, state: dict, blobs: dict[str, bytes]) -> None:
        self.learned = dict(state.get("learned", {}))

    def learned_for(self, key: str) -> Any:
        """Parameters learned earlier for ``key`` (None: estimate from the history). A global model
        trained across many series returns its one set of parameters for every key."""
        return self.learned.get(key)

    def train(self, histories: list[Series]) -> dict:
        """Learn parameters for each history's key, reused by later fits (no re-estimation)."""
        for history in histories:
            data = prepare(history)
            if data.n_observed >= self.min_history(history.step):
                self.learned[history.key] = self._estimate(data.clean, data.start, data.step)
        return {"series": len(histories), "learned": len(self.learned)}

    # -- the protocol ----------------------------------------------------------------------------
    def forecast(self, history: Series, horizon: int) -> Forecast:
        """One shot: ``fit(history).predict(horizon)``."""
        _check_horizon(history.key, horizon)
        return self.fit(history).predict(horizon)

    def fit(self, history: Series) -> Fitted:
        """Fit on ``history`` (NaN = gap), calibrate, and return a :class:`Fitted` to predict from."""
        return self.fit_prepared(prepare(history))

    def fit_prepared(self, data: Prepared) -> Fitted:
        """:meth:`fit` on a history already prepared: the selector and the fallback chain prepare
        a history once and hand the same value to every model they try."""
        need = self.min_history(data.step)
        if data.n_observed < need:
            return self._fall_back(data, f"{self.name} needs {need} observed steps, the history has {data.n_observed}")
        try:
            return self._fit_prepared(data)
        except ForecastInputError:
            raise
        except Exception as exc:  # noqa: BLE001 - a model that breaks on this history hands it on
            return self._fall_back(data, f"{self.name} failed: {type(exc).__name__}: {str(exc)[:120]}")

    def _fall_back(self, data: Prepared, why: str) -> Fitted:
        simpler = self.fallback()
        if simpler is None:
            raise ForecastInputError(f"series {data.key!r}: {why}, and {self.name} has no simpler fallback")
        fitted = simpler.fit_prepared(data)
        reason = why if fitted.fell_back is None else f"{why}; {fitted.fell_back}"
        return replace(fitted, fell_back=reason)

    def _fit_prepared(self, data: Prepared) -> Fitted:
        calibration, params, fell_back = self.calibrate(data)
        if params is None:  # nothing learned for this key: estimate on the whole history
            params = self._estimate(data.clean, data.start, data.step)
        return Fitted(self, self.name, data, params, calibration, fell_back)

    def calibrate(self, data: Prepared) -> tuple[Calibration | None, Any, str | None]:
        """Split-conformal offsets from a rolling-origin backtest on the history's last stretch.

        Returns the calibration (None when it cannot be trusted, with the reason), and, when the
        parameters used for it were learned earlier (``train``), those parameters.
        """
        n, step = data.y.shape[0], data.step
        wanted = steps_for(self.calibration_horizon_s, step)
        # Two days of origins, but never fewer than a few dozen steps (coarse steps), nor more
        # than a third of the history.
        window = min(max(int(self.calibration_days * DAY / step), 3 * _MIN_ORIGINS + wanted), n // 3)
        # A short history calibrates a shorter horizon (offsets further out grow like sqrt(lead)).
        horizon = min(wanted, window - _MIN_ORIGINS)
        cut = n - window
        learned = self.learned_for(data.key)
        if horizon < 1 or (learned is None and cut < self.min_history(step)):
            return None, learned, f"uncalibrated: {n} steps of history are too few for a conformal backtest"
        params = learned if learned is not None else self._estimate(data.clean[:cut], data.start, step)
        last = n - 1  # an origin needs at least one step of truth after it
        origins = np.unique(np.linspace(cut, last, min(self.max_origins, last - cut + 1)).round().astype(int))
        point, native = self._paths(params, data.y, data.start, step, origins, horizon)
        target = origins[:, None] + np.arange(horizon)[None, :]
        truth = np.full(target.shape, np.nan)
        inside = target < n
        truth[inside] = data.observed[target[inside]]
        scored = np.count_nonzero(~np.isnan(truth), axis=0)
        if scored[0] < _MIN_ORIGINS:  # e.g. a long trailing gap: nothing observed to score against
            return None, learned, (f"uncalibrated: only {int(scored[0])} observed values in the last "
                                   f"{window} steps to backtest against")
        thin = scored < _MIN_ORIGINS  # leads too thinly observed: extrapolated from the last good one
        truth[:, thin] = np.nan
        level = recent_level(data.y, origins, self.level_window(step))[:, None]
        good = int(np.flatnonzero(~thin)[-1])
        bases = {q: native[q] if native and q in native else point for q in self.quantiles}
        # Offsets relative to the recent level, or in demand units: whichever band scores the lower
        # pinball loss on these residuals (errors that do not grow with demand suit absolute ones).
        best = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN (thin) leads
            for relative, scale in ((True, level), (False, np.ones_like(level))):
                offsets = {q: _extrapolate(_conformal((truth - bases[q]) / scale, q), good) for q in self.quantiles}
                loss = sum(_pinball(truth, bases[q] + scale * offsets[q], q) for q in self.quantiles)
                if best is None or loss < best[0]:
                    best = (loss, relative, offsets)
            mae = np.nanmean(np.abs(truth - point), axis=0)
        _, relative, offsets = best
        mae[thin] = mae[good] * np.sqrt((np.arange(horizon)[thin] + 1) / (good + 1))
        naive_scale = float(np.nanmean(np.abs(np.diff(data.observed[:cut])))) if cut > 1 else float("nan")
        if not math.isfinite(naive_scale) or naive_scale <= 0:
            naive_scale = float(np.mean(np.abs(data.y))) + 1e-9
        return Calibration(offsets, mae, naive_scale, int(origins.shape[0]), relative), learned, None


def _pinball(truth: np.ndarray, forecast: np.ndarray, q: float) -> float:
    """Mean pinball loss of a q-quantile forecast over the observed entries."""
    diff = truth - forecast
    return float(np.nanmean(np.maximum(q * diff, (q - 1) * diff)))


def _extrapolate(offsets: np.ndarray, good: int) -> np.ndarray:
    """Offsets past the last well-observed lead ``good`` grow like sqrt(lead), as a random walk's do."""
    out = offsets.copy()
    lead = np.arange(out.shape[0])
    out[good + 1:] = out[good] * np.sqrt((lead[good + 1:] + 1) / (good + 1))
    return out


def _conformal(residuals: np.ndarray, q: float) -> np.ndarray:
    """Per lead, the finite-sample conformal q-quantile of the residuals, made monotone in the lead
    (upper quantiles never shrink with the lead, lower ones never grow).

    With ``m`` residuals at a lead, the upper offset is the ``ceil((m + 1) q)``-th smallest (the
    largest when that exceeds ``m``), the lower one the ``floor((m + 1) q)``-th: the standard
    split-conformal ranks, which guarantee at least the nominal coverage on exchangeable data.
    """
    ordered = np.sort(residuals, axis=0)  # NaN sort last
    m = np.count_nonzero(~np.isnan(residuals), axis=0)
    if q >= 0.5:
        rank = np.ceil((m + 1) * q - 1e-9).astype(int)
    else:
        rank = np.floor((m + 1) * q + 1e-9).astype(int)
    rank = np.clip(rank, 1, np.maximum(m, 1)) - 1
    out = ordered[rank, np.arange(residuals.shape[1])]
    out = np.where(m > 0, out, np.nan)
    if np.isnan(out).any():  # leads with no residual at all take the previous lead's offset
        out = _ffill(out)
    if q > 0.5:
        out = np.maximum.accumulate(out)
    elif q < 0.5:
        out = np.minimum.accumulate(out)
    return out


def _ffill(values: np.ndarray) -> np.ndarray:
    idx = np.where(~np.isnan(values), np.arange(values.shape[0]), 0)
    np.maximum.accumulate(idx, out=idx)
    out = values[idx]
    return np.nan_to_num(out, nan=0.0)


def resample(key: str, timestamps: np.ndarray, values: np.ndarray, step: float) -> Series:
    """Irregularly timed samples onto a regular ``step`` grid: the mean of the samples in each
    clock-aligned bin; a bin with no sample is a gap (NaN), never zero."""
    t = np.asarray(timestamps, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.shape != v.shape or t.ndim != 1 or t.shape[0] == 0:
        raise ForecastInputError(f"series {key!r}: need equally many timestamps and values (got {t.shape} and {v.shape})")
    if not step > 0 or not np.isfinite(t).all():
        raise ForecastInputError(f"series {key!r}: step must be > 0 and timestamps finite")
    start = math.floor(t.min() / step) * step
    index = np.floor((t - start) / step).astype(np.int64)
    n = int(index.max()) + 1
    ok = ~np.isnan(v)
    sums = np.bincount(index[ok], weights=v[ok], minlength=n)
    counts = np.bincount(index[ok], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return Series(key, start, step, out)
