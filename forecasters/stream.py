"""Forecasts for a control loop that asks every step: refit now and then, update in between.

:class:`ForecastStream` keeps one :class:`~forecasters.base.Fitted` per workload. Every
``refit_every`` seconds it fits the model again (for ``auto`` that means selecting the model and
re-calibrating its intervals on the latest history); in between it conditions the fitted
parameters on the newest observations (:meth:`Fitted.update`), which costs a small fraction of a
fit. The simulation and the live agent use it the same way.

A workload with no observation over the last ``stale_seconds`` gets no forecast (``None``): the
policy then decides reactively and says so, and never scales down on missing data.
"""

from __future__ import annotations

import numpy as np

from forecasters.base import DAY, Fitted, Forecaster
from forecasters.series import Forecast, Series


class ForecastStream:
    def __init__(self, model: Forecaster, refit_every: float = 21_600.0, history_days: float = 14.0,
                 stale_seconds: float = 600.0) -> None:
        self.model = model
        self.refit_every = float(refit_every)
        self.history_days = float(history_days)
        self.stale_seconds = float(stale_seconds)
        self._fits: dict[str, tuple[float, Fitted]] = {}

    def history_steps(self, step: float) -> int:
        """Steps of history a caller should pass (more is ignored)."""
        return int(self.history_days * DAY / step)

    def fitted(self, key: str) -> Fitted | None:
        """The current fit for ``key`` (its calibration is the drift monitor's baseline)."""
        entry = self._fits.get(key)
        return entry[1] if entry else None

    def forecast(self, series: Series, horizon: int) -> Forecast | None:
        """The forecast for the ``horizon`` steps after ``series.end``; None when data is stale."""
        recent = series.values[-max(1, int(round(self.stale_seconds / series.step))):]
        if recent.shape[0] == 0 or np.isnan(recent).all():
            return None
        history = series.tail(self.history_steps(series.step))
        entry = self._fits.get(series.key)
        if entry is None or series.end - entry[0] >= self.refit_every:
            fitted = self.model.fit(history)
            self._fits[series.key] = (series.end, fitted)
        else:
            fitted = entry[1].update(history)
            self._fits[series.key] = (entry[0], fitted)
        return fitted.predict(horizon)
