"""Forecast accuracy metrics over rolling-origin backtests, per lead time.

Every metric takes arrays shaped ``[n_origins, horizon]`` (row ``i`` is the forecast issued at
origin ``i``, column ``h`` the step ``h + 1`` ahead) and returns one value per lead, shape
``[horizon]``: the mean over the origins that have a truth for that lead. NaN in ``truth`` means
"no observation" (a gap in the metric series) and that cell is ignored everywhere; so is a cell
whose forecast is NaN (a failed origin). A lead with no usable cell at all is NaN, never 0, so
"no data" is not mistaken for "perfect". :func:`overall` turns a per-lead array into the scalar
the tables show (the mean over the leads that have a value).

* :func:`mae` - mean absolute error, in the series' units (requests/s: directly GPUs' worth).
* :func:`mase` - MAE scaled by the in-sample one-step naive MAE of each origin's own training
  history (:func:`naive_scale`), so 1.0 means "as good as repeating the last value one step ahead"
  and series of different sizes can be averaged.
* :func:`smape` - symmetric absolute percentage error, 0..200 %, with 0/0 (zero demand forecast
  as zero) counted as 0 %, not undefined: idle periods are common in GPU serving.
* :func:`pinball` - the quantile (pinball) loss averaged over the forecast's quantile levels;
  proper for quantiles, 0 only for a forecast that hits every truth with every quantile.
* :func:`coverage` - the fraction of truths inside ``[lower, upper]``: for the central 90 %
  interval (0.05 and 0.95 quantiles) a calibrated model covers about 0.9.

The functions are pure numpy and never warn on all-NaN columns.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np


def _valid(truth: np.ndarray, *forecasts: np.ndarray) -> np.ndarray:
    mask = np.isfinite(truth)
    for f in forecasts:
        mask &= np.isfinite(f)
    return mask


def _per_lead(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of ``values`` over the origins (axis 0) where ``mask`` holds; NaN where none does."""
    counts = mask.sum(axis=0)
    sums = np.where(mask, values, 0.0).sum(axis=0)
    out = np.full(counts.shape, np.nan)
    np.divide(sums, counts, out=out, where=counts > 0)
    return out


def _as2d(*arrays: np.ndarray) -> list[np.ndarray]:
    out = [np.atleast_2d(np.asarray(a, dtype=np.float64)) for a in arrays]
    shapes = {a.shape for a in out}
    if len(shapes) != 1:
        raise ValueError(f"metric arrays differ in shape: {sorted(shapes)}")
    return out


def mae(truth: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Mean absolute error per lead."""
    truth, point = _as2d(truth, point)
    return _per_lead(np.abs(truth - point), _valid(truth, point))


def naive_scale(history: np.ndarray) -> float:
    """In-sample one-step naive MAE of a history: the mean ``|y[t] - y[t-1]|`` over the pairs of
    consecutive observed values (a pair that touches a gap is skipped). NaN with no such pair."""
    return float(expanding_naive_scale(np.asarray(history, dtype=np.float64), np.array([len(history)]))[0])


def expanding_naive_scale(values: np.ndarray, origins: np.ndarray) -> np.ndarray:
    """:func:`naive_scale` of ``values[:o]`` for every origin ``o`` at once (cumulative sums)."""
    values = np.asarray(values, dtype=np.float64)
    diffs = np.abs(np.diff(values))
    ok = np.isfinite(diffs)
    sums = np.concatenate([[0.0], np.cumsum(np.where(ok, diffs, 0.0))])
    counts = np.concatenate([[0], np.cumsum(ok)])
    idx = np.clip(np.asarray(origins, dtype=int) - 1, 0, diffs.shape[0])  # diffs inside values[:o]
    out = np.full(idx.shape, np.nan)
    np.divide(sums[idx], counts[idx], out=out, where=counts[idx] > 0)
    return out


def mase(truth: np.ndarray, point: np.ndarray, scale: float | np.ndarray) -> np.ndarray:
    """Mean absolute scaled error per lead. ``scale`` is one :func:`naive_scale` for all origins
    or one per origin (``[n_origins]``, each origin scaled by its own training history). Origins
    whose scale is zero or NaN (a constant or too short history) are left out."""
    truth, point = _as2d(truth, point)
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64).reshape(-1, 1), (truth.shape[0], 1))
    good = np.isfinite(scale) & (scale > 0)
    scaled = np.abs(truth - point) / np.where(good, scale, 1.0)
    return _per_lead(scaled, _valid(truth, point) & good)


def smape(truth: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Symmetric MAPE per lead in percent: ``200 |t - p| / (|t| + |p|)``, 0/0 counted as 0."""
    truth, point = _as2d(truth, point)
    denominator = np.abs(truth) + np.abs(point)
    numerator = 200.0 * np.abs(truth - point)
    ratio = np.zeros_like(numerator)
    np.divide(numerator, denominator, out=ratio, where=denominator > 0)
    return _per_lead(ratio, _valid(truth, point))


def pinball(truth: np.ndarray, quantiles: Mapping[float, np.ndarray]) -> np.ndarray:
    """Pinball loss per lead, averaged over the quantile levels (each level over its origins).

    For level ``q`` and forecast ``f``: ``q (t - f)`` when the truth is above, ``(1 - q)(f - t)``
    when below. Empty ``quantiles``: NaN for every lead.
    """
    (truth,) = _as2d(truth)
    if not quantiles:
        return np.full(truth.shape[1], np.nan)
    losses = []
    for q, forecast in quantiles.items():
        t, f = _as2d(truth, forecast)
        diff = t - f
        losses.append(_per_lead(np.maximum(q * diff, (q - 1.0) * diff), _valid(t, f)))
    stacked = np.stack(losses)
    return _per_lead(np.nan_to_num(stacked), np.isfinite(stacked))


def coverage(truth: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Fraction of truths within ``[lower, upper]`` per lead (0..1)."""
    truth, lower, upper = _as2d(truth, lower, upper)
    inside = ((truth >= lower) & (truth <= upper)).astype(np.float64)
    return _per_lead(inside, _valid(truth, lower, upper))


def overall(per_lead: np.ndarray) -> float:
    """The scalar summary of a per-lead metric: its mean over the leads that have a value (NaN
    when none has)."""
    values = np.asarray(per_lead, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.shape[0] else float("nan")
