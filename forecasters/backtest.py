"""Rolling-origin backtests: how well a model would have forecast a series it had not seen yet.

**Origins.** A backtest cuts the series at ``n_origins`` origins. At origin ``o`` the model is
fitted on *all* the data before it, ``values[:o]`` (an expanding window, exactly what a deployed
model would have had), via ``model.fit(history).predict(horizon)``, and its forecast is scored
against the observed ``values[o : o + horizon]``. By default (:func:`plan_origins`) the origins
are spread evenly over a window of ``min(7 days, a third of the series)`` ending at the last
origin that still has a full horizon of truth after it, and none has fewer than ``min_train``
steps of history (default: a third of the series). A series too short for that is a
:class:`~forecasters.base.ForecastInputError` naming it, raised before any model is fitted.

**Truth** is what was observed: a gap (NaN) is excluded from every metric, never scored as zero,
and never filled in. Each origin's MASE is scaled by its own training history's one-step naive
MAE (:mod:`forecasters.metrics`).

**Models** are anything with a ``name`` and ``fit(Series) -> obj`` whose ``predict(int)`` returns a
:class:`~forecasters.series.Forecast`: the registered forecasters (:func:`build_models` builds
them with :data:`BACKTEST_QUANTILES`, so that the 80/90/95 % central intervals can be scored) and
adapters for outside libraries (the benchmark wraps statsforecast that way). A model that raises
``ForecastInputError`` at an origin is recorded as failed there (counted, with its message);
other exceptions are bugs and propagate.

**Results** (:class:`BacktestResult`): per lead step, MAE, MASE, sMAPE, the pinball loss averaged
over the forecast's quantiles, and the coverage of the central 80/90/95 % intervals (NaN when the
forecast lacks the levels); their means over the leads; mean fit and predict seconds per origin;
the fall-back reasons seen (``Forecast.fell_back``) and which model answered (``Forecast.model``,
e.g. ``auto/ets``), counted; and the forecasts of the last few origins, for plots.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Protocol, Sequence

import numpy as np

from forecasters.base import DAY, ForecastInputError, Forecaster
from forecasters.metrics import coverage, expanding_naive_scale, mae, mase, overall, pinball, smape
from forecasters.series import Forecast, Series, json_safe

#: Quantile levels the backtest asks registered models for: the 80/90/95 % central intervals,
#: the median and the 0.99 a policy sizes for.
BACKTEST_QUANTILES = (0.025, 0.05, 0.1, 0.5, 0.9, 0.95, 0.975, 0.99)
#: Central interval (percent) -> the quantile levels that bound it.
INTERVALS = {80: (0.1, 0.9), 90: (0.05, 0.95), 95: (0.025, 0.975)}
#: Per-lead metrics, in table order. ``covNN`` is the coverage of the central NN % interval.
METRICS = ("mae", "mase", "smape", "pinball", "cov80", "cov90", "cov95")
#: Metrics where lower is better (the ones :func:`compare` ranks by).
LOWER_IS_BETTER = ("mae", "mase", "smape", "pinball")
DEFAULT_ORIGINS = 24
EVAL_WINDOW_S = 7 * DAY
KEEP_FORECASTS = 3  # the last origins whose forecasts a result keeps for plots

#: ``progress(done, total)``: called after every fit (successful or failed).
Progress = Callable[[int, int], None]


class Predictor(Protocol):
    def predict(self, horizon: int) -> Forecast: ...


class Model(Protocol):
    name: str

    def fit(self, history: Series) -> Predictor: ...


def build_models(names: Iterable[str]) -> list[Forecaster]:
    """Registered models by name, asking for :data:`BACKTEST_QUANTILES`. A name that is not
    registered, or whose module cannot be imported yet, is a ForecastInputError naming it."""
    import forecasters

    out = []
    for name in names:
        try:
            out.append(forecasters.build(name, {"quantiles": list(BACKTEST_QUANTILES)}))
        except (ImportError, AttributeError, TypeError) as exc:
            raise ForecastInputError(f"model {name!r} is not available: {type(exc).__name__}: {exc}") from None
    return out


def plan_origins(n: int, step: float, horizon: int, n_origins: int = DEFAULT_ORIGINS, min_train: int | None = None,
                 key: str = "series") -> np.ndarray:
    """Origin indices (sorted, distinct) for a series of ``n`` steps: see the module docstring.

    Raises ForecastInputError when no origin has both ``min_train`` steps before it and
    ``horizon`` steps after it.
    """
    if horizon < 1 or n_origins < 1:
        raise ForecastInputError(f"series {key!r}: horizon and origins must be >= 1, got {horizon} and {n_origins}")
    min_train = max(1, n // 3) if min_train is None else max(1, int(min_train))
    last = n - horizon
    window = min(int(round(EVAL_WINDOW_S / step)), n // 3)
    first = max(last - window, min_train)
    if last < first:
        raise ForecastInputError(
            f"series {key!r}: {n} steps are too short to backtest a {horizon}-step horizon with at least "
            f"{min_train} steps of training history (needs {min_train + horizon} steps)")
    return np.unique(np.linspace(last, first, min(n_origins, last - first + 1)).round().astype(int))


def as_series(data) -> list[Series]:
    """One Series per workload of a trace (anything with ``workloads``, ``values [steps,
    workloads]``, ``start`` and ``step_seconds``), or a Series, or an iterable of them."""
    if isinstance(data, Series):
        return [data]
    if hasattr(data, "workloads"):
        values = np.asarray(data.values, dtype=np.float64)
        return [Series(name, data.start, data.step_seconds, values[:, j]) for j, name in enumerate(data.workloads)]
    return list(data)


@dataclass(frozen=True)
class BacktestResult:
    """One model's backtest on one series (see the module docstring)."""

    model: str
    key: str
    step: float
    horizon: int
    origins: np.ndarray  # epoch seconds of each origin's first forecast step
    per_lead: dict[str, np.ndarray]  # metric (METRICS) -> [horizon]
    fit_s: float  # mean seconds per origin (NaN when every origin failed)
    predict_s: float
    levels: tuple[float, ...]  # quantile levels scored by the pinball loss
    failures: dict[str, int] = field(default_factory=dict)  # message -> origins
    fallbacks: dict[str, int] = field(default_factory=dict)  # Forecast.fell_back -> origins
    answered_by: dict[str, int] = field(default_factory=dict)  # Forecast.model -> origins
    forecasts: tuple[dict, ...] = ()  # the last origins: origin, truth, median, q05, q95 (lists)

    @property
    def n_origins(self) -> int:
        return int(self.origins.shape[0])

    @property
    def n_failed(self) -> int:
        return sum(self.failures.values())

    @property
    def n_fallbacks(self) -> int:
        return sum(self.fallbacks.values())

    @property
    def summary(self) -> dict[str, float]:
        """Each metric's mean over the leads."""
        return {name: overall(values) for name, values in self.per_lead.items()}

    def truncated(self, horizon: int) -> "BacktestResult":
        """The same backtest scored on the first ``horizon`` leads only."""
        if not 1 <= horizon <= self.horizon:
            raise ValueError(f"horizon {horizon} is not within 1..{self.horizon}")
        kept = tuple({k: (v[:horizon] if isinstance(v, list) else v) for k, v in f.items()} for f in self.forecasts)
        return replace(self, horizon=horizon, per_lead={k: v[:horizon] for k, v in self.per_lead.items()}, forecasts=kept)

    def to_json(self) -> dict:
        """Every figure as plain JSON types (NaN becomes null)."""
        return {
            "model": self.model, "key": self.key, "step_seconds": self.step, "horizon_steps": self.horizon,
            "n_origins": self.n_origins, "n_failed": self.n_failed, "origins": json_safe(self.origins.tolist()),
            "quantile_levels": list(self.levels), "summary": json_safe(self.summary),
            "per_lead": {k: json_safe(v.tolist()) for k, v in self.per_lead.items()},
            "fit_s": json_safe(self.fit_s), "predict_s": json_safe(self.predict_s),
            "failures": dict(self.failures), "fallbacks": dict(self.fallbacks), "answered_by": dict(self.answered_by),
            "forecasts": [json_safe(f) for f in self.forecasts],
        }


def backtest(model: Model, series: Series, horizon: int, n_origins: int = DEFAULT_ORIGINS, min_train: int | None = None,
             progress: Progress | None = None, keep: int = KEEP_FORECASTS) -> BacktestResult:
    """Rolling-origin backtest of one model on one series (see the module docstring)."""
    origins = plan_origins(len(series), series.step, horizon, n_origins, min_train, series.key)
    return _run(model, series, horizon, origins, _counter(len(origins), progress), keep)


def backtest_trace(models: Sequence[Model], data, horizon: int, n_origins: int = DEFAULT_ORIGINS,
                   min_train: int | None = None, progress: Progress | None = None,
                   keep: int = KEEP_FORECASTS) -> list[BacktestResult]:
    """Backtest every model on every series of ``data`` (a trace, a Series or a list of them).

    Every series' origins are planned before the first fit, so a series too short fails at once.
    Results come series by series, in the models' order within a series.
    """
    plans = [(s, plan_origins(len(s), s.step, horizon, n_origins, min_train, s.key)) for s in as_series(data)]
    tick = _counter(sum(len(o) for _, o in plans) * len(models), progress)
    return [_run(m, s, horizon, origins, tick, keep) for s, origins in plans for m in models]


def _counter(total: int, progress: Progress | None) -> Callable[[], None]:
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    return tick


def _run(model: Model, series: Series, horizon: int, origins: np.ndarray, tick: Callable[[], None],
         keep: int) -> BacktestResult:
    values = np.asarray(series.values, dtype=np.float64)
    truth = values[origins[:, None] + np.arange(horizon)[None, :]]
    forecasts: list[Forecast | None] = []
    fit_s, predict_s = [], []
    failures: Counter[str] = Counter()
    for o in origins:
        history = Series(series.key, series.start, series.step, values[:o])
        try:
            started = time.perf_counter()
            fitted = model.fit(history)
            fitted_at = time.perf_counter()
            forecast = fitted.predict(horizon)
            predict_s.append(time.perf_counter() - fitted_at)
            fit_s.append(fitted_at - started)
            forecasts.append(forecast)
        except ForecastInputError as exc:
            failures[str(exc)] += 1
            forecasts.append(None)
        finally:
            tick()
    made = [f for f in forecasts if f is not None]
    levels = tuple(sorted(set.intersection(*(set(f.quantiles) for f in made)))) if made else ()
    point = _stack(forecasts, horizon, lambda f: f.at_least(0.5))
    quantiles = {q: _stack(forecasts, horizon, lambda f, q=q: f.quantiles[q]) for q in levels}
    per_lead = {
        "mae": mae(truth, point),
        "mase": mase(truth, point, expanding_naive_scale(values, origins)),
        "smape": smape(truth, point),
        "pinball": pinball(truth, quantiles),
    }
    for percent, (lo, hi) in INTERVALS.items():
        lower, upper = _level(quantiles, lo), _level(quantiles, hi)
        per_lead[f"cov{percent}"] = (coverage(truth, lower, upper) if lower is not None and upper is not None
                                     else np.full(horizon, np.nan))
    times = series.start + origins * series.step
    return BacktestResult(
        model.name, series.key, series.step, horizon, times, per_lead,
        float(np.mean(fit_s)) if fit_s else float("nan"), float(np.mean(predict_s)) if predict_s else float("nan"),
        levels, dict(failures), dict(Counter(f.fell_back for f in made if f.fell_back)),
        dict(Counter(f.model for f in made)), _kept(forecasts, truth, times, keep))


def _stack(forecasts: list[Forecast | None], horizon: int, pick) -> np.ndarray:
    out = np.full((len(forecasts), horizon), np.nan)
    for i, f in enumerate(forecasts):
        if f is not None:
            out[i] = pick(f)
    return out


def _level(quantiles: dict, q: float):
    """The array stored for level ``q`` (compared with a tolerance), or None."""
    return next((v for level, v in quantiles.items() if abs(level - q) < 1e-9), None)


def _kept(forecasts: list[Forecast | None], truth: np.ndarray, times: np.ndarray, keep: int) -> tuple[dict, ...]:
    """The last ``keep`` origins' forecasts as lists: median, 5 % and 95 % (None when absent)."""
    out = []
    for i in range(max(0, len(forecasts) - keep), len(forecasts)):
        f = forecasts[i]
        if f is None:
            continue
        q05, q95 = _level(f.quantiles, 0.05), _level(f.quantiles, 0.95)
        out.append({"origin": float(times[i]), "truth": truth[i].tolist(), "median": f.at_least(0.5).tolist(),
                    "q05": None if q05 is None else q05.tolist(), "q95": None if q95 is None else q95.tolist()})
    return tuple(out)


@dataclass(frozen=True)
class Comparison:
    """Models side by side on one series and horizon, by one lower-is-better metric's summary."""

    key: str
    horizon: int
    metric: str
    scores: dict[str, float]  # model -> summary metric, in the results' order

    @property
    def ranking(self) -> list[str]:
        """Models best first; models without a score (every origin failed) are left out."""
        scored = [(v, i, m) for i, (m, v) in enumerate(self.scores.items()) if math.isfinite(v)]
        return [m for _, _, m in sorted(scored)]

    @property
    def best(self) -> str | None:
        ranking = self.ranking
        return ranking[0] if ranking else None

    def improvement(self, model: str, over: Iterable[str]) -> float:
        """Percent by which ``model`` scores lower than the best of ``over`` (negative: worse).
        NaN when either side has no score."""
        others = [self.scores[m] for m in over if m in self.scores and math.isfinite(self.scores[m])]
        mine = self.scores.get(model, float("nan"))
        if not others or not math.isfinite(mine) or min(others) <= 0:
            return float("nan")
        return 100.0 * (1.0 - mine / min(others))


def compare(results: Iterable[BacktestResult], metric: str = "mae") -> list[Comparison]:
    """One :class:`Comparison` per (series, horizon), in the order they first appear."""
    if metric not in LOWER_IS_BETTER:
        raise ValueError(f"compare ranks by one of {', '.join(LOWER_IS_BETTER)}, not {metric!r}")
    groups: dict[tuple[str, int], dict[str, float]] = {}
    for r in results:
        groups.setdefault((r.key, r.horizon), {})[r.model] = r.summary[metric]
    return [Comparison(key, horizon, metric, scores) for (key, horizon), scores in groups.items()]
