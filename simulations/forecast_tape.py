"""What the predictive policy's forecaster said at every step of a replay, recorded once.

Forecasts depend only on the observed demand, never on what a policy did with them, so a sweep of
policy settings (quantile, costs, guardrails) over one trace can replay one recording instead of
refitting every model per setting. And since every forecaster here is scale-equivariant (a trace
multiplied by k gives forecasts multiplied by k, to float rounding), one recording serves a trace
rescaled to any fleet size: :meth:`ForecastTape.scaled`.

:func:`record` runs the same :class:`~forecasters.stream.ForecastStream` (refit on schedule or on
drift) and :class:`~forecasters.drift.DriftMonitor` that a live agent runs; the tape also keeps
the monitor's live error ratio per step, which the policy's forecast-quality gate reads.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from forecasters import DEFAULT_QUANTILES, build
from forecasters.drift import DriftMonitor
from forecasters.series import Forecast, Series
from forecasters.stream import ForecastStream
from policies.forecasts import ForecastBatch

ProgressFn = Callable[[int], None]


@dataclass(frozen=True)
class ForecastTape:
    """Per step t: the forecast issued at ``start + (t - 1) * step`` from observations before t."""

    names: tuple[str, ...]
    start: float
    step: float
    levels: np.ndarray  # [Q]
    values: np.ndarray  # float32 [T, n, Q, H]
    present: np.ndarray  # bool [T, n]
    error_ratio: np.ndarray  # float32 [T, n]: live error / backtest baseline (NaN unknown)
    model_index: np.ndarray  # int16 [T, n] into models
    models: tuple[str, ...]
    fell_back: np.ndarray  # bool [T, n]
    scale: float = 1.0

    def scaled(self, factor: float) -> "ForecastTape":
        """The tape for the trace multiplied by ``factor`` (forecasts scale with the demand)."""
        return ForecastTape(self.names, self.start, self.step, self.levels, self.values, self.present, self.error_ratio,
                            self.model_index, self.models, self.fell_back, self.scale * factor)

    def batch(self, t: int) -> ForecastBatch:
        n = len(self.names)
        values = self.values[t].astype(np.float64)
        if self.scale != 1.0:
            values *= self.scale
        issued = np.full(n, self.start + (t - 1) * self.step)
        models = tuple(self.models[k] for k in self.model_index[t])
        fell = tuple("fell back" if f else None for f in self.fell_back[t])
        return ForecastBatch(self.names, self.step, self.levels, values, issued, self.present[t].copy(), models, fell)

    def save(self, path: Path) -> None:
        np.savez_compressed(path, values=self.values, present=self.present, error_ratio=self.error_ratio,
                            model_index=self.model_index, fell_back=self.fell_back, levels=self.levels,
                            meta=json.dumps({"names": self.names, "start": self.start, "step": self.step, "models": self.models}))

    @classmethod
    def load(cls, path: Path) -> "ForecastTape":
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            return cls(tuple(meta["names"]), meta["start"], meta["step"], data["levels"], data["values"], data["present"],
                       data["error_ratio"], data["model_index"], tuple(meta["models"]), data["fell_back"])


def drift_monitor(horizon: int, step: float) -> DriftMonitor:
    """The monitor the replay's forecast stream reports to (see :func:`record`)."""
    # The window holds at least 40 steps, so the monitor's 30-point minimum can be met at coarse steps too.
    return DriftMonitor(lead=max(1, horizon // 2), leads=(1,), window_s=max(3 * 3600.0, 40 * step))


def stream_for(forecaster: str, quantiles: tuple[float, ...], refit_every: float, history_days: float,
               horizon: int, step: float) -> ForecastStream:
    model = build(forecaster, {"quantiles": sorted(set(DEFAULT_QUANTILES) | set(quantiles))})
    return ForecastStream(model, refit_every=refit_every, history_days=history_days, drift=drift_monitor(horizon, step))


def step_forecasts(stream: ForecastStream, names: tuple[str, ...], observed: np.ndarray, t: int, start: float,
                   step: float, history_steps: int, horizon: int) -> tuple[dict[str, Forecast], np.ndarray]:
    """Step t's forecasts from ``stream`` (observations before t only), and the drift monitor's
    live error ratio per workload (NaN where unknown): what the replay hands the policy."""
    found: dict[str, Forecast] = {}
    ratio = np.full(len(names), np.nan)
    if t > 0:
        lo = max(0, t - history_steps)
        now = start + t * step
        for i, key in enumerate(names):
            f = stream.forecast(Series(key, start + lo * step, step, observed[lo:t, i]), horizon)
            if f is not None:
                found[key] = f
                r = stream.drift.status(key, now).ratio if stream.drift is not None else None
                ratio[i] = np.nan if r is None else r
    return found, ratio


def record(names: tuple[str, ...], observed: np.ndarray, start: float, step: float, horizon: int, stream: ForecastStream,
           progress: ProgressFn | None = None, every: int = 256) -> ForecastTape:
    """Run ``stream`` over ``observed`` ([T, n], NaN = gap) as the replay would, keeping every forecast."""
    n_steps, n = observed.shape
    levels = np.array([0.5])  # replaced by the forecasts' levels at the first forecast
    values = np.zeros((n_steps, n, 1, horizon), dtype=np.float32)
    present = np.zeros((n_steps, n), dtype=bool)
    ratio = np.full((n_steps, n), np.nan, dtype=np.float32)
    model_index = np.zeros((n_steps, n), dtype=np.int16)
    fell_back = np.zeros((n_steps, n), dtype=bool)
    models: dict[str, int] = {}
    history = stream.history_steps(step)
    for t in range(n_steps):
        found, ratio[t] = step_forecasts(stream, names, observed, t, start, step, history, horizon)
        for i, key in enumerate(names):
            f = found.get(key)
            if f is None:
                continue
            if not models:  # the first forecast fixes the level grid
                levels = np.asarray(sorted(f.quantiles), dtype=float)
                values = np.zeros((n_steps, n, len(levels), horizon), dtype=np.float32)
            values[t, i] = np.stack([f.quantiles[q][:horizon] for q in levels])
            present[t, i] = True
            model_index[t, i] = models.setdefault(f.model, len(models))
            fell_back[t, i] = f.fell_back is not None
        if progress is not None and (t + 1) % every == 0:
            progress(every)
    if progress is not None:
        progress(n_steps % every)
    return ForecastTape(tuple(names), start, step, levels, values, present, ratio, model_index, tuple(models), fell_back)


def fingerprint(observed: np.ndarray, start: float, step: float, **settings) -> str:
    """A cache key for a recording: the observed data and every setting that shapes the forecasts."""
    digest = hashlib.sha256(np.ascontiguousarray(observed, dtype=np.float64).tobytes())
    digest.update(json.dumps({"start": start, "step": step, **settings}, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]
