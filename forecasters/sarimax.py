"""Regression with ARMA errors (statsmodels ``SARIMAX``) on a coarse clock-aligned step.

How it works, and why:

* **Coarse step.** A daily season at 1-minute steps is 1,440 steps, far too long for a seasonal
  ARIMA. The history is averaged into clock-aligned buckets of ``model_step`` seconds (10 minutes:
  144 a day); a series whose step is already that coarse or coarser is used as it is.
* **Daily season as regressors.** The bucket means are regressed on a constant and ``harmonics``
  daily Fourier pairs (sin/cos of the time of day; 6 by default: on the shared ServeGen traces 6
  beat 3 and matched 10); what is left is an ARMA ``order`` process (``(1, 0, 1)`` by default),
  which carries drifts and level shifts as far as the fitted AR part is persistent (the real
  traces give AR coefficients of 0.9-0.97 per 10 minutes; white noise around a clean cycle
  gives ~0, and then the forecast reverts to the fitted daily mean within a few buckets). The
  two are estimated in two stages: the regression by least squares, then the ARMA parameters by
  statsmodels' maximum likelihood on the regression residuals. One joint likelihood fit with the
  Fourier coefficients in it needed ~1 s and often did not converge in 50 iterations on 14 days;
  the two-stage fit converges in a few iterations and takes tens of milliseconds.
* **Forecasts from many origins, cheaply.** With the parameters fixed, the Kalman filter runs once
  over all buckets of the history; the forecast from origin ``o`` starts from the filtered state
  of the last complete bucket before ``o`` and iterates the ARMA transition forward, for all
  origins at once.
* **Back to the series' step.** The coarse path (the last observed bucket means, then the
  forecast buckets) is interpolated linearly between bucket centres at the fine targets, and
  shifted by the mean difference between the last ``level_points`` fine observations and that
  path (what happened since the last complete bucket). The shift decays with the lead at the
  rate the AR part forgets a shock (per bucket: the sum of the AR coefficients, clipped to [0, 1]).
* **Params** are JSON: orders, harmonics, the bucket length, the regression coefficients and the
  statsmodels ARMA parameter vector with its names.
* Needs two days of history for the daily terms; with less, the base falls back (seasonal naive,
  then naive). statsmodels' convergence and start-parameter warnings are silenced locally.
* A residual with no spread (constant or zero demand: the regression explains everything) has no
  ARMA part to fit; its ARMA parameters are zeros.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from typing import Iterator

import numpy as np

from forecasters.base import DAY, DEFAULT_QUANTILES, Forecaster, ForecastInputError

_DEGENERATE = 1e-9  # residual spread (relative to the level) below which there is no ARMA part to fit


def _buckets(y: np.ndarray, start: float, step: float, model_step: float) -> tuple[int, int, np.ndarray]:
    """Clock-aligned buckets of ``k`` steps: ``(k, offset, means)`` where bucket ``b`` averages
    ``y[offset + b*k : offset + (b+1)*k]``; ``k = 1`` when the step is as coarse as the model's."""
    k = max(1, int(round(model_step / step)))
    width = k * step
    offset = int(round(((-start) % width) / step)) % k
    n_full = max(0, (y.shape[0] - offset) // k)
    return k, offset, y[offset : offset + n_full * k].reshape(n_full, k).mean(axis=1)


def _fourier(times: np.ndarray, harmonics: int) -> np.ndarray:
    """A constant and ``harmonics`` daily sin/cos pairs at ``times`` (epoch seconds): ``[len, 1 + 2K]``."""
    phase = 2 * np.pi * (np.asarray(times, dtype=float) % DAY) / DAY
    terms = [f(j * phase) for j in range(1, harmonics + 1) for f in (np.sin, np.cos)]
    return np.column_stack([np.ones(phase.shape[0]), *terms])


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence statsmodels' convergence and start-parameter warnings (and only those), and run
    BLAS on one thread: the matrices are tiny, and with more BLAS threads than free cores (other
    fits, a simulator) each stationary initialisation took ~50 ms instead of ~0.1 ms."""
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, EstimationWarning
    from threadpoolctl import threadpool_limits

    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", EstimationWarning)
        yield


class SARIMAX(Forecaster):
    """Daily Fourier regression with ARMA errors on coarse buckets (see the module docstring)."""

    name = "sarimax"
    description = "regression on daily Fourier terms with ARMA errors (statsmodels SARIMAX)"

    def __init__(self, quantiles: tuple[float, ...] = DEFAULT_QUANTILES, calibration_horizon_s: float = 3600.0,
                 calibration_days: float = 2.0, max_origins: int = 200, model_step: float = 600.0,
                 order: tuple[int, int, int] | list[int] = (1, 0, 1), harmonics: int = 6, fit_days: float = 14.0,
                 level_points: int = 5) -> None:
        super().__init__(quantiles, calibration_horizon_s, calibration_days, max_origins)
        order = tuple(int(v) for v in order)
        if len(order) != 3 or order[1] != 0 or order[0] < 0 or order[2] < 0 or order[0] + order[2] == 0:
            raise ForecastInputError(f"{self.name}: order must be (p, 0, q) with p + q >= 1, got {order!r}")
        if not model_step > 0 or harmonics < 1 or not fit_days >= 2 or level_points < 1:
            raise ForecastInputError(f"{self.name}: model_step must be > 0, harmonics and level_points >= 1, fit_days >= 2")
        self.model_step = float(model_step)
        self.order = order
        self.harmonics = int(harmonics)
        self.fit_days = float(fit_days)
        self.level_points = int(level_points)

    def config(self) -> dict:
        return {**self._base_config(), "model_step": self.model_step, "order": list(self.order),
                "harmonics": self.harmonics, "fit_days": self.fit_days, "level_points": self.level_points}

    def min_history(self, step: float) -> int:
        """Two days, so the daily terms are fitted on more than one cycle."""
        return int(math.ceil(2 * DAY / step))

    def context_steps(self, step: float) -> int:
        """Two days: enough for the filter to forget its start (fixed ARMA parameters)."""
        return int(math.ceil(2 * DAY / step))

    # -- the protocol ------------------------------------------------------------------------------
    def _estimate(self, y: np.ndarray, start: float, step: float) -> dict:
        drop = max(0, y.shape[0] - int(self.fit_days * DAY / step))  # fit on the last fit_days only
        k, offset, means = _buckets(y[drop:], start + drop * step, step, self.model_step)
        X = _fourier(_centres(start + drop * step, step, k, offset, np.arange(means.shape[0])), self.harmonics)
        beta = np.linalg.lstsq(X, means, rcond=None)[0]
        residual = means - X @ beta
        model = _arma(residual, self.order)
        if np.std(residual) <= _DEGENERATE * (1.0 + float(np.mean(np.abs(means)))):
            arma = np.zeros(len(model.param_names))  # the regression explains it all (e.g. zero demand)
        else:
            with _quiet():
                arma = model.fit(disp=False, maxiter=50, cov_type="none").params  # no standard errors needed
        return {"order": list(self.order), "harmonics": self.harmonics, "model_step": self.model_step,
                "beta": [float(v) for v in beta], "arma": [float(v) for v in arma], "arma_names": list(model.param_names)}

    def _paths(self, params, y, start, step, origins, horizon):
        k, offset, means = _buckets(y, start, step, float(params["model_step"]))
        origins = np.asarray(origins, dtype=np.int64)
        last = (origins - offset) // k - 1  # the last complete bucket before each origin
        usable = last >= 0
        point = np.repeat(y[np.maximum(origins, 1) - 1][:, None], horizon, axis=1)  # no bucket yet: naive
        if usable.any():
            point[usable] = self._from_buckets(params, y, start, step, origins[usable], horizon, k, offset, means)
        return np.maximum(point, 0.0), None

    def _from_buckets(self, params: dict, y: np.ndarray, start: float, step: float, origins: np.ndarray, horizon: int,
                      k: int, offset: int, means: np.ndarray) -> np.ndarray:
        """Point forecasts ``[len(origins), horizon]`` for origins after at least one complete bucket."""
        beta = np.asarray(params["beta"])
        harmonics = int(params["harmonics"])
        residual = means - _fourier(_centres(start, step, k, offset, np.arange(means.shape[0])), harmonics) @ beta
        model = _arma(residual, tuple(params["order"]))
        with _quiet(), np.errstate(all="ignore"):
            filtered = model.filter(np.asarray(params["arma"])).filtered_state  # [states, buckets]
        transition, design = model.ssm["transition"], model.ssm["design"]  # time-invariant for an ARMA
        last = (origins - offset) // k - 1
        centre = offset + last * k + (k - 1) / 2  # fine index of the last complete bucket's centre
        anchors = max(2, 1 + math.ceil(self.level_points / k))  # observed buckets that start the path
        ahead = int(math.ceil((origins - centre).max() / k + horizon / k)) + 1
        state, forecast = filtered[:, last], []
        for j in range(1, ahead + 1):
            state = transition @ state
            times = _centres(start, step, k, offset, last + j)
            forecast.append(_fourier(times, harmonics) @ beta + (design @ state)[0])
        observed = means[np.maximum(last[:, None] + np.arange(1 - anchors, 1)[None, :], 0)]
        path = np.concatenate([observed, np.column_stack(forecast)], axis=1)  # [origins, anchors + ahead]

        def along(fine: np.ndarray) -> np.ndarray:  # the path, interpolated at fine indices [origins, m]
            pos = (fine - centre[:, None]) / k + (anchors - 1)
            i0 = np.clip(np.floor(pos).astype(np.int64), 0, path.shape[1] - 2)
            frac = pos - i0
            rows = np.arange(path.shape[0])[:, None]
            return path[rows, i0] * (1 - frac) + path[rows, i0 + 1] * frac

        recent = origins[:, None] - np.arange(self.level_points, 0, -1)[None, :]
        seen = recent >= 0
        gap = np.where(seen, y[np.maximum(recent, 0)] - along(recent), 0.0).sum(axis=1) / np.maximum(seen.sum(axis=1), 1)
        lead = np.arange(1, horizon + 1) / k  # in buckets
        shift = gap[:, None] * _persistence(params) ** lead[None, :]
        return along(origins[:, None] + np.arange(horizon)[None, :]) + shift


def _centres(start: float, step: float, k: int, offset: int, buckets: np.ndarray) -> np.ndarray:
    """Epoch seconds of the centres of the given buckets."""
    return start + (offset + np.asarray(buckets) * k + (k - 1) / 2) * step


def _arma(residual: np.ndarray, order: tuple[int, ...]):
    """The statsmodels state-space model of the ARMA part (no trend: the regression has the constant)."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX as StatsmodelsSARIMAX

    return StatsmodelsSARIMAX(residual, order=tuple(int(v) for v in order), trend="n", concentrate_scale=True)


def _persistence(params: dict) -> float:
    """How much of a shock survives one bucket: the AR coefficients' sum, clipped to [0, 1]."""
    ar = sum(v for name, v in zip(params["arma_names"], params["arma"]) if name.startswith("ar."))
    return float(min(max(ar, 0.0), 1.0))
