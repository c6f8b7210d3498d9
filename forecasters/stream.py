"""Forecasts for a control loop that asks every step: refit now and then, update in between.

:class:`ForecastStream` keeps one :class:`~forecasters.base.Fitted` per workload. Every
``refit_every`` seconds it fits the model again (for ``auto`` that means selecting the model and
re-calibrating its intervals on the latest history); in between it conditions the fitted
parameters on the newest observations (:meth:`Fitted.update`), which costs a small fraction of a
fit. The simulation and the live agent use it the same way.

With a :class:`~forecasters.drift.DriftMonitor`, the stream scores its own forecasts against what
was then observed: each fit's backtest errors become the monitor's baseline, and when the monitor
asks for a retrain (live error well above the backtest's for an hour) the stream refits at once
instead of waiting for the schedule, and counts it (:attr:`retrains`).

A workload with no observation over the last ``stale_seconds`` gets no forecast (``None``): the
policy then decides reactively and says so, and never scales down on missing data.
"""

from __future__ import annotations

import numpy as np

from forecasters.base import DAY, Fitted, Forecaster
from forecasters.drift import DriftMonitor, baseline_from_calibration
from forecasters.series import Forecast, Series


class ForecastStream:
    def __init__(self, model: Forecaster, refit_every: float = 21_600.0, history_days: float = 14.0,
                 stale_seconds: float = 600.0, drift: DriftMonitor | None = None) -> None:
        self.model = model
        self.refit_every = float(refit_every)
        self.history_days = float(history_days)
        self.stale_seconds = float(stale_seconds)
        self.drift = drift
        self.retrains: dict[str, int] = {}  # key -> refits the drift monitor asked for
        self._fits: dict[str, tuple[float, Fitted]] = {}
        self._seen: dict[str, float] = {}  # key -> timestamp of the last observation given to drift

    def history_steps(self, step: float) -> int:
        """Steps of history a caller should pass (more is ignored)."""
        return int(self.history_days * DAY / step)

    def refit_all(self) -> None:
        """Fit every key again on its next forecast (a scheduled retrain, or a new model)."""
        self._fits.clear()

    def use_model(self, model: Forecaster) -> None:
        """Forecast with ``model`` from now on (a newly promoted registry version): every key refits."""
        self.model = model
        self.refit_all()

    def fitted(self, key: str) -> Fitted | None:
        """The current fit for ``key`` (its calibration is the drift monitor's baseline)."""
        entry = self._fits.get(key)
        return entry[1] if entry else None

    def forecast(self, series: Series, horizon: int) -> Forecast | None:
        """The forecast for the ``horizon`` steps after ``series.end``; None when data is stale."""
        recent = series.values[-max(1, int(round(self.stale_seconds / series.step))):]
        if recent.shape[0] == 0 or np.isnan(recent).all():
            return None
        now = series.end
        retrain = False
        if self.drift is not None:
            self._observe(series)
            retrain = series.key in self._fits and self.drift.status(series.key, now).retrain
        history = series.tail(self.history_steps(series.step))
        entry = self._fits.get(series.key)
        if entry is None or now - entry[0] >= self.refit_every or retrain:
            fitted = self.model.fit(history)
            self._fits[series.key] = (now, fitted)
            if self.drift is not None:
                self._rebase(series.key, fitted, now, retrain)
        else:
            fitted = entry[1].update(history)
            self._fits[series.key] = (entry[0], fitted)
        forecast = fitted.predict(horizon)
        if self.drift is not None:
            self.drift.record(forecast)
        return forecast

    def _observe(self, series: Series) -> None:
        """Hand the drift monitor the observations it has not seen (at most the last day's)."""
        n_new = min(len(series), int(DAY / series.step))
        seen = self._seen.get(series.key)
        if seen is not None:
            n_new = min(n_new, int(round((series.end - series.step - seen) / series.step)))
        values = series.values[len(series) - n_new:] if n_new > 0 else ()
        first = series.end - n_new * series.step
        for i, value in enumerate(values):
            if not np.isnan(value):
                self.drift.observe(series.key, first + i * series.step, float(value))
        self._seen[series.key] = series.end - series.step

    def _rebase(self, key: str, fitted: Fitted, now: float, retrain: bool) -> None:
        if retrain:
            self.drift.acknowledge_retrain(key, now)
            self.retrains[key] = self.retrains.get(key, 0) + 1
        if fitted.calibration is not None:
            baseline = baseline_from_calibration(fitted.calibration, self.drift.leads)
            if baseline:
                self.drift.set_baseline(key, baseline)
