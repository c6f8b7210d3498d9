"""Anomalous windows in a table of metrics, each with the metrics that explain it.

A table is ``T`` timestamps by ``M`` numeric metrics (a blank is a gap, never a zero). The
detector is fitted once, on a training table of normal behaviour (or, when there is none, on the
table itself, twice: :meth:`WindowDetector.fit_self` leaves out the values far off the first fit
so that an incident cannot set its own threshold), and then scores every timestamp of a table in
four separate steps:

1. **Standardise** each metric against its baseline: ``z = (x - baseline) / scale``. The baseline
   is the metric's training median, or, when the training data has a daily-like cycle
   (``season``, found by :func:`detect_period` unless given) and following it shrinks the
   metric's spread to under ``season_gain`` of the plain one, the median at the same phase of the
   cycle (a server that is busy every afternoon is not anomalous every afternoon; one that is busy
   at 4 am may be). The phase comes from the timestamps, so test rows must carry timestamps that
   continue the training ones. The scale is robust: IQR /
   1.349, else 1.4826 x MAD, else the standard deviation, else 1 % of the median's magnitude, so a
   metric that was constant in training still gets a finite, meaningful one.
2. **Per-metric deviation**: ``|z|`` (capped at ``z_cap``), averaged over the last ``smooth``
   timestamps (causal: a one-point blip counts less than a sustained move), divided by that
   metric's own ``calibration_quantile`` of the same quantity on the training data (at least
   ``calibration_floor``), so that a metric that is spiky by nature does not drown the others.
3. **Combined score**: the root mean square of the ``top_k`` largest per-metric deviations of the
   timestamp, over the metrics observed there (a metric with no value is left out, never read as
   zero). One metric far off and several metrics moderately off both score high.
4. **Calibrate**: divide by ``quantile`` of the training scores times ``margin``, so that **1.0 is
   the threshold** (the :class:`~aiops.findings.Finding` convention).

Consecutive timestamps at or above 1.0, with at most ``gap`` normal timestamps between them, form
one :class:`AnomalyWindow`; windows shorter than ``min_window`` timestamps are dropped. A window
ranks every metric by its **contribution**: its mean share of the summed per-metric deviations
over the window's anomalous timestamps (the shares sum to 1).

Everything is deterministic (no randomness). A timestamp with no value at all scores 0 and cannot
be anomalous. :func:`to_findings` turns windows into ``MULTIVARIATE_WINDOW`` findings.

For one series without a training split (the NAB benchmark; a metric just discovered),
:func:`streaming_scores` runs the same steps causally: every point is judged against a trailing
window of its own past only, on two features, its level and its step from the previous point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from aiops.findings import Entity, Evidence, Finding

__all__ = ["AnomalyWindow", "Detection", "TableScores", "WindowDetector", "WindowSettings", "detect_period",
           "detect_windows", "robust_center_scale", "runs", "streaming_scores", "streaming_windows", "to_findings"]

DETECTOR = "windows"
CODE = "MULTIVARIATE_WINDOW"
MIN_TRAIN_ROWS = 10


@dataclass(frozen=True)
class WindowSettings:
    """How a table is scored and cut into windows. The defaults are what the benchmarks ran
    (``benchmarks/anomaly_real.py``); they were chosen on training data with injected anomalies,
    never on test labels."""

    smooth: int = 3  # causal mean of |z| over this many timestamps: a sustained move outweighs a blip
    season: str | float = "auto"  # a cycle's length in timestamp units; "auto": found in training; 0: none
    season_gain: float = 0.7  # follow the cycle only for metrics whose spread it shrinks below this share
    snap_to: tuple[float, ...] = ()  # a found cycle within 3 % of one of these is taken as it (unix seconds: 86400.0, a day)
    calibration_quantile: float = 0.99  # per metric: its deviation is divided by this training quantile ...
    calibration_floor: float = 1.0  # ... or by this when larger (a metric flat in training)
    top_k: int = 3  # the combined score is the RMS of the k largest per-metric deviations
    quantile: float = 0.995  # threshold: this quantile of the training scores ...
    margin: float = 1.0  # ... times this
    gap: int = 2  # up to this many normal timestamps inside one window
    min_window: int = 1  # drop windows shorter than this many timestamps
    z_cap: float = 100.0  # one absurd value cannot dominate for ever: |z| is capped here

    def __post_init__(self) -> None:
        if self.smooth < 1 or self.top_k < 1 or self.gap < 0 or self.min_window < 1:
            raise ValueError("smooth, top_k and min_window must be >= 1 and gap >= 0")
        if not (0.5 <= self.quantile < 1 and 0.5 <= self.calibration_quantile < 1):
            raise ValueError("quantile and calibration_quantile must lie in [0.5, 1)")
        if not (self.margin > 0 and self.calibration_floor > 0 and self.z_cap > 0 and 0 < self.season_gain <= 1):
            raise ValueError("margin, calibration_floor and z_cap must be positive, season_gain in (0, 1]")
        if self.season != "auto" and not (isinstance(self.season, (int, float)) and self.season >= 0):
            raise ValueError(f"season {self.season!r}: expected 'auto', 0 (none) or a positive length")


@dataclass(frozen=True)
class AnomalyWindow:
    """One anomalous stretch. ``start``/``end`` are timestamps (inclusive; row indices when the
    table has none), ``peak_score`` its highest score (1.0 = threshold) at ``peak_at``, ``metrics``
    every metric with its contribution, largest first (they sum to 1). ``peak_values`` holds, for
    the top metrics in the same order, ``(name, value at the peak, typical low, typical high)``,
    the typical band being what the detector expected there (baseline -/+ the metric's
    threshold-level deviation)."""

    start: float
    end: float
    peak_score: float
    metrics: tuple[tuple[str, float], ...]
    peak_at: float = math.nan
    start_index: int = 0
    end_index: int = 0
    peak_values: tuple[tuple[str, float, float, float], ...] = ()

    @property
    def top_metric(self) -> str:
        return self.metrics[0][0] if self.metrics else ""

    def to_json(self) -> dict:
        return {"start": _finite(self.start), "end": _finite(self.end), "peak_score": _finite(self.peak_score),
                "peak_at": _finite(self.peak_at), "start_index": self.start_index, "end_index": self.end_index,
                "metrics": [{"metric": name, "contribution": _finite(share)} for name, share in self.metrics],
                "peak_values": [{"metric": n, "value": _finite(v), "typical_low": _finite(lo), "typical_high": _finite(hi)}
                                for n, v, lo, hi in self.peak_values]}


@dataclass(frozen=True, eq=False)
class TableScores:
    """Per-timestamp scores of one table: ``score`` (T,), 1.0 = threshold, 0 where nothing was
    observed; ``deviation`` (T, M), each metric's calibrated deviation, NaN where it was missing."""

    score: np.ndarray
    deviation: np.ndarray
    names: tuple[str, ...]

    def contributions(self, rows) -> np.ndarray:
        """Each metric's mean share of the summed deviation over ``rows`` (an index array or a
        slice); the shares sum to 1 (all zeros when nothing deviated there)."""
        dev = np.atleast_2d(self.deviation[rows])
        filled = np.where(np.isfinite(dev), dev, 0.0)
        total = filled.sum(axis=1)
        shares = filled[total > 0] / total[total > 0, None]
        if not len(shares):
            return np.zeros(dev.shape[1])
        mean = shares.mean(axis=0)
        return mean / mean.sum()


@dataclass(frozen=True, eq=False)
class Detection:
    """What :meth:`WindowDetector.detect` found: the windows, the threshold in raw-score units (what
    a score of 1.0 stands for), the cycle followed (0: none) and the scores behind it all."""

    windows: tuple[AnomalyWindow, ...]
    threshold: float
    season: float
    scores: TableScores


class WindowDetector:
    """Fit on a training table, then score or detect on tables with the same metrics, in order."""

    def __init__(self, settings: WindowSettings | None = None) -> None:
        self.settings = settings or WindowSettings()
        self.names: tuple[str, ...] = ()
        self.threshold = math.nan
        self.season, self.step, self.bins = 0.0, 1.0, 0

    @property
    def fitted(self) -> bool:
        return math.isfinite(self.threshold)

    def fit(self, train, names: Sequence[str] | None = None, timestamps=None) -> "WindowDetector":
        """Learn baselines, scales, calibrations and the threshold from ``train`` (T x M, NaN =
        missing; ``timestamps`` (T,) default to 0..T-1). A metric with no training value is never
        scored. Raises ValueError for fewer than ``MIN_TRAIN_ROWS`` rows."""
        s = self.settings
        values, self.names = _table(train, names)
        n, m = values.shape
        if n < MIN_TRAIN_ROWS:
            raise ValueError(f"need at least {MIN_TRAIN_ROWS} rows to fit, got {n}")
        ts = _timestamps(timestamps, n)
        self.center, self.scale = robust_center_scale(values)
        self.seasonal = np.zeros(m, dtype=bool)
        self.profile = np.zeros((0, m))
        self._fit_season(values, ts)
        self.calibration = np.ones(m)  # first the raw deviation, to learn its calibration
        raw = self._deviation(values, ts)
        q = _column_quantile(raw, s.calibration_quantile)
        self.calibration = np.maximum(np.nan_to_num(q, nan=s.calibration_floor), s.calibration_floor)
        combined = _combine(self._deviation(values, ts), s.top_k)
        seen = combined[np.isfinite(combined)]
        level = float(np.quantile(seen, s.quantile)) if len(seen) else 0.0
        self.threshold = max(level, 1e-9) * s.margin
        return self

    def fit_self(self, table, names: Sequence[str] | None = None, timestamps=None, trim: float = 6.0) -> "WindowDetector":
        """Fit on the table that will be searched, when there is no separate normal history.

        A plain fit would let an anomaly that covers more than 1 % of the rows set its metric's
        calibration and the threshold, and hide. So: fit, blank out (as gaps) every value more than
        ``trim`` robust standard deviations from its baseline (medians and IQRs hardly move for a
        few % of outliers), and fit again on the rest, keeping the cycle found the first time."""
        values, names = _table(table, names)
        ts = _timestamps(timestamps, values.shape[0])
        self.fit(values, names, ts)
        with np.errstate(invalid="ignore"):
            outlying = np.abs(values - self._baseline(ts, len(values))) / self.scale > trim
        if outlying.any():
            settings = self.settings
            self.settings = replace(settings, season=self.season)
            try:
                self.fit(np.where(outlying, np.nan, values), names, ts)
            finally:
                self.settings = settings
        return self

    def score(self, table, timestamps=None, names: Sequence[str] | None = None) -> TableScores:
        """Score every timestamp of ``table`` (the training table's metrics, in the same order)."""
        if not self.fitted:
            raise RuntimeError("fit the detector first")
        values, _ = _table(table, names or self.names)
        if values.shape[1] != len(self.names):
            raise ValueError(f"table has {values.shape[1]} metrics, the detector was fitted on {len(self.names)}")
        deviation = self._deviation(values, _timestamps(timestamps, values.shape[0]))
        combined = _combine(deviation, self.settings.top_k)
        score = np.where(np.isfinite(combined), combined / self.threshold, 0.0)
        return TableScores(score=score, deviation=deviation, names=self.names)

    def detect(self, table, timestamps=None, names: Sequence[str] | None = None) -> Detection:
        """Score ``table`` and cut it into windows; ``timestamps`` (T,) label the rows (default 0..T-1)."""
        values, _ = _table(table, names or self.names)
        ts = _timestamps(timestamps, values.shape[0])
        scores = self.score(values, ts)
        band = self._band(ts)
        windows = []
        for lo, hi in runs(scores.score >= 1.0, self.settings.gap):
            if hi - lo + 1 < self.settings.min_window:
                continue
            share = scores.contributions(lo + np.flatnonzero(scores.score[lo:hi + 1] >= 1.0))
            order = np.argsort(-share, kind="stable")
            peak = lo + int(np.argmax(scores.score[lo:hi + 1]))
            windows.append(AnomalyWindow(
                start=float(ts[lo]), end=float(ts[hi]), peak_score=float(scores.score[peak]),
                metrics=tuple((self.names[j], float(share[j])) for j in order), peak_at=float(ts[peak]),
                start_index=int(lo), end_index=int(hi),
                peak_values=tuple((self.names[j], float(values[peak, j]), float(band[0][peak, j]), float(band[1][peak, j]))
                                  for j in order[:5])))
        return Detection(windows=tuple(windows), threshold=self.threshold, season=self.season, scores=scores)

    # -- the steps ------------------------------------------------------------------------------
    def _fit_season(self, values: np.ndarray, ts: np.ndarray) -> None:
        """Find the cycle (or take the configured one) and keep, per metric that it helps, the
        median at each phase and the robust scale of what is left."""
        s = self.settings
        diffs = np.diff(ts)
        step = float(np.median(diffs[diffs > 0])) if (diffs > 0).any() else math.nan
        if not math.isfinite(step):
            return
        if s.season == "auto":
            lag = detect_period(values)
            season = lag * step if lag else 0.0
            season = next((float(c) for c in s.snap_to if season and abs(season - c) <= 0.03 * c), season)
        else:
            season = float(s.season)
        bins = int(round(season / step)) if season else 0
        if bins < 2 or (ts[-1] - ts[0]) < 2 * season:  # at least two cycles to learn one
            return
        self.season, self.step, self.bins = season, step, bins
        phase = self._phase(ts)
        profile = _phase_profile(values, phase, bins)
        resid_center, resid_scale = robust_center_scale(values - profile[phase])
        gain = resid_scale < s.season_gain * self.scale
        self.seasonal = gain & np.isfinite(resid_scale)
        self.profile = profile + np.where(np.isfinite(resid_center), resid_center, 0.0)
        self.scale = np.where(self.seasonal, resid_scale, self.scale)

    def _phase(self, ts: np.ndarray) -> np.ndarray:
        return (np.floor(np.mod(ts, self.season) / self.step + 0.5).astype(np.int64)) % self.bins

    def _baseline(self, ts: np.ndarray, n: int) -> np.ndarray:
        if not self.seasonal.any():
            return np.broadcast_to(self.center, (n, len(self.center)))
        return np.where(self.seasonal, self.profile[self._phase(ts)], self.center)

    def _deviation(self, values: np.ndarray, ts: np.ndarray) -> np.ndarray:
        s = self.settings
        with np.errstate(invalid="ignore"):
            z = np.minimum(np.abs(values - self._baseline(ts, values.shape[0])) / self.scale, s.z_cap)
        return causal_mean(z, s.smooth) / self.calibration

    def _band(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row and metric, the values it could take at the threshold (a single-metric move)."""
        base = self._baseline(ts, len(ts))
        half = self.scale * self.calibration * self.threshold
        return base - half, base + half


def detect_windows(table, train=None, timestamps=None, train_timestamps=None, names: Sequence[str] | None = None,
                   settings: WindowSettings | None = None) -> Detection:
    """One call: fit on ``train`` (or, when there is none, on ``table`` itself with
    :meth:`WindowDetector.fit_self`) and detect on ``table``."""
    if train is None:
        detector = WindowDetector(settings).fit_self(table, names, timestamps)
    else:
        detector = WindowDetector(settings).fit(train, names, train_timestamps)
    return detector.detect(table, timestamps, names)


def to_findings(windows: Sequence[AnomalyWindow], entity: Entity | None = None, top: int = 3) -> list[Finding]:
    """One ``MULTIVARIATE_WINDOW`` finding per window, about its top metric, with evidence for the
    ``top`` metrics. Timestamps are read as unix seconds (row indices when the table had none)."""
    findings = []
    for w in windows:
        named = ", ".join(f"{name} ({100 * share:.0f}%)" for name, share in w.metrics[:top]) or "no metric"
        evidence = tuple(
            Evidence(metric=name, message=f"{name} was {value:.4g}, expected {lo:.4g} to {hi:.4g}",
                     value=value, baseline=(lo + hi) / 2, at=w.peak_at if math.isfinite(w.peak_at) else None)
            for name, value, lo, hi in w.peak_values[:top])
        if w.peak_values:
            metric, observed, band = w.peak_values[0][0], w.peak_values[0][1], w.peak_values[0][2:]
        else:
            metric, observed, band = w.top_metric, math.nan, None
        findings.append(Finding(
            detector=DETECTOR, code=CODE, entity=entity or Entity(), window=(w.start, w.end), metric=metric,
            observed=observed, expected_band=band, score=w.peak_score,
            severity="critical" if w.peak_score >= 3.0 else "warning",
            summary=f"{named} left their usual range together, peaking at {w.peak_score:.1f}x the threshold",
            evidence=evidence))
    return findings


# -- one series, causally ---------------------------------------------------------------------------
def streaming_scores(values, window: int = 1000, calibration_window: int = 2000, smooth: int = 3,
                     quantile: float = 0.995, floor: float = 3.0, margin: float = 1.0, min_history: int = 20) -> np.ndarray:
    """Causal scores (1.0 = threshold) of one series, each point judged only by what came before.

    The same steps as :class:`WindowDetector`, fitted on a trailing window instead of a training
    table, for two features: the level and the step from the previous point. Each is standardised
    by the median and robust scale of the ``window`` points before it, ``|z|`` is averaged over
    ``smooth`` points and divided by its own ``quantile`` over the ``calibration_window`` scores
    before it (at least ``floor``); the two are combined by RMS and divided by ``margin``. The
    first ``min_history`` points and missing ones score 0. O(n log window), no randomness."""
    import pandas as pd

    x = np.asarray(values, dtype=float)
    x = np.where(np.isfinite(x), x, np.nan)
    features = []
    for series in (x, np.diff(x, prepend=np.nan)):
        z = np.minimum(_trailing_z(pd.Series(series), window, min_history), 100.0)
        dev = pd.Series(z).rolling(smooth, min_periods=1).mean().to_numpy()
        dev = np.where(np.isnan(z), np.nan, dev)
        q = pd.Series(dev).shift(1).rolling(calibration_window, min_periods=min_history).quantile(quantile).to_numpy()
        features.append(dev / np.maximum(np.where(np.isnan(q), np.inf, q), floor))
    combined = _combine(np.stack(features, axis=1), 2) / margin
    return np.where(np.isfinite(combined), combined, 0.0)


def streaming_windows(values, timestamps=None, gap: int = 50, **options) -> tuple[AnomalyWindow, ...]:
    """:func:`streaming_scores` cut into windows (runs at or above 1.0, merged across ``gap``
    normal points: one alert per incident), each with the two features ranked (``level``,
    ``step``). ``options`` go to :func:`streaming_scores`."""
    x = np.asarray(values, dtype=float)
    score = streaming_scores(x, **options)
    ts = _timestamps(timestamps, len(x))
    out = []
    for lo, hi in runs(score >= 1.0, gap):
        peak = lo + int(np.argmax(score[lo:hi + 1]))
        out.append(AnomalyWindow(start=float(ts[lo]), end=float(ts[hi]), peak_score=float(score[peak]),
                                 metrics=(("value", 1.0),), peak_at=float(ts[peak]), start_index=lo, end_index=hi))
    return tuple(out)


# -- building blocks ----------------------------------------------------------------------------
def robust_center_scale(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column: the median and a robust scale, finite and > 0 for any column with a value:
    IQR / 1.349, else 1.4826 x MAD, else the standard deviation, else 1 % of |median| (at least
    1e-6). A column without a finite value gets NaN for both (it is never scored)."""
    values = np.where(np.isfinite(values), values, np.nan)
    m = values.shape[1]
    center, scale = np.full(m, np.nan), np.full(m, np.nan)
    for j in range(m):
        col = values[:, j][~np.isnan(values[:, j])]
        if not len(col):
            continue
        med = float(np.median(col))
        q25, q75 = np.quantile(col, [0.25, 0.75])
        tiny = 1e-9 * max(1.0, abs(med))
        candidates = ((q75 - q25) / 1.349, 1.4826 * float(np.median(np.abs(col - med))), float(np.std(col)))
        center[j] = med
        scale[j] = next((c for c in candidates if c > tiny), max(0.01 * abs(med), 1e-6))
    return center, scale


def detect_period(values: np.ndarray, min_lag: int = 4, min_cycles: int = 3, min_acf: float = 0.3) -> int:
    """The length in rows of the table's dominant cycle, 0 when there is none.

    A metric is *cyclic* when its autocorrelation, after first dropping below zero, peaks again at
    ``min_acf`` or more within a third (``1 / min_cycles``) of the table. The cycle is the highest
    peak of the cyclic metrics' mean autocorrelation. Local maxima within 10 % of each other in lag
    count as one peak (their highest: noise makes several around a true one), among peaks within
    0.05 of the highest the shortest lag wins (a day rather than a week), and the lag is then
    refined within 5 % to the one whose first ten multiples correlate best (so 290 or 282 does
    not stand in for 288)."""
    values = np.asarray(values, dtype=float)
    n = values.shape[0]
    max_lag = n // min_cycles
    if max_lag <= min_lag + 2:
        return 0
    size = 1 << int(math.ceil(math.log2(2 * n)))
    cyclic = []
    for col in values.T:
        ok = np.isfinite(col)
        if ok.sum() < n // 2 or np.nanstd(col) == 0:
            continue
        x = np.where(ok, col - np.nanmean(col), 0.0)
        spectrum = np.fft.rfft(x, size)
        acf = np.fft.irfft(spectrum * np.conj(spectrum), size)[:max_lag + 1]
        if acf[0] <= 0:
            continue
        acf = acf / acf[0]
        if _cycle_peaks(acf, min_lag)[1] >= min_acf:
            cyclic.append(acf)
    if not cyclic:
        return 0
    acf = np.mean(cyclic, axis=0)
    lag, best = _cycle_peaks(acf, min_lag)
    if best < min_acf:
        return 0
    # Refine: a true cycle also repeats at its multiples, a near miss drifts away from them
    # (290 x 3 = 870 is off a daily cycle by 6 rows; 288 x 3 is not).
    candidates = range(max(min_lag, int(lag * 0.95)), min(max_lag, int(math.ceil(lag * 1.05))) + 1)
    k = max(1, min(10, max_lag // candidates[-1]))  # the same number of multiples for every candidate
    return max(candidates, key=lambda c: (float(np.mean(acf[c * np.arange(1, k + 1)])), -c))


def _cycle_peaks(acf: np.ndarray, min_lag: int) -> tuple[int, float]:
    """(the chosen peak's lag, the highest peak's value) of one autocorrelation; (0, -1) if none."""
    below = np.flatnonzero(acf[min_lag:] < 0)
    if not len(below):
        return 0, -1.0
    first = min_lag + int(below[0])
    tail = acf[first:]
    if len(tail) < 3:
        return 0, -1.0
    inner = np.flatnonzero((tail[1:-1] >= tail[:-2]) & (tail[1:-1] >= tail[2:])) + 1
    peaks: list[int] = []
    cluster_start = -1
    for lag in inner:
        if peaks and lag <= cluster_start * 1.1:
            if tail[lag] > tail[peaks[-1]]:
                peaks[-1] = int(lag)
        else:
            peaks.append(int(lag))
            cluster_start = int(lag)
    if not peaks:
        return 0, -1.0
    best = max(float(tail[p]) for p in peaks)
    return first + next(p for p in peaks if tail[p] >= best - 0.05), best


def causal_mean(values: np.ndarray, k: int) -> np.ndarray:
    """Mean of each column over the last ``k`` rows (inclusive), skipping NaN; NaN where the current
    value is missing (a gap stays a gap)."""
    ok = np.isfinite(values)
    if k <= 1:
        return np.where(ok, values, np.nan)
    filled = np.where(ok, values, 0.0)
    pad = np.zeros((1, values.shape[1]))
    csum = np.cumsum(np.vstack([pad, filled]), axis=0)
    ccnt = np.cumsum(np.vstack([pad, ok.astype(float)]), axis=0)
    hi = np.arange(1, values.shape[0] + 1)
    lo = np.maximum(hi - k, 0)
    total, count = csum[hi] - csum[lo], ccnt[hi] - ccnt[lo]
    return np.where(ok, total / np.maximum(count, 1.0), np.nan)


def runs(mask, gap: int = 0) -> list[tuple[int, int]]:
    """Inclusive ``(first, last)`` index pairs of True runs, merging runs separated by <= ``gap`` False."""
    idx = np.flatnonzero(np.asarray(mask, dtype=bool))
    if not len(idx):
        return []
    breaks = np.flatnonzero(np.diff(idx) > gap + 1)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks], [idx[-1]]])
    return [(int(a), int(b)) for a, b in zip(starts, ends)]


def _combine(deviation: np.ndarray, top_k: int) -> np.ndarray:
    """RMS of the ``top_k`` largest observed deviations per row; NaN where none was observed."""
    k = min(top_k, deviation.shape[1])
    filled = np.where(np.isfinite(deviation), deviation, -np.inf)
    top = -np.sort(-filled, axis=1)[:, :k] if k < deviation.shape[1] else filled
    seen = np.isfinite(top)
    count = seen.sum(axis=1)
    total = np.where(seen, top, 0.0) ** 2
    return np.where(count > 0, np.sqrt(total.sum(axis=1) / np.maximum(count, 1)), np.nan)


def _column_quantile(values: np.ndarray, q: float) -> np.ndarray:
    out = np.full(values.shape[1], np.nan)
    for j, col in enumerate(values.T):
        col = col[np.isfinite(col)]
        if len(col):
            out[j] = np.quantile(col, q)
    return out


def _phase_profile(values: np.ndarray, phase: np.ndarray, bins: int, spread: int = 2) -> np.ndarray:
    """Per phase and column, the median of the training values at that phase and the ``spread``
    phases either side (circular): about (2 * spread + 1) x cycles samples each."""
    m = values.shape[1]
    profile = np.full((bins, m), np.nan)
    order = np.argsort(phase, kind="stable")
    bounds = np.searchsorted(phase[order], np.arange(bins + 1))
    for p in range(bins):
        near = [(p + d) % bins for d in range(-spread, spread + 1)]
        rows = np.concatenate([order[bounds[b]:bounds[b + 1]] for b in near])
        if len(rows):
            with np.errstate(all="ignore"):
                block = values[rows]
                ok = np.isfinite(block).any(axis=0)
                profile[p, ok] = np.nanmedian(block[:, ok], axis=0)
    center, _ = robust_center_scale(values)
    return np.where(np.isfinite(profile), profile, np.nan_to_num(center))


def _trailing_z(series, window: int, min_history: int) -> np.ndarray:
    """|x - median| / robust scale over the ``window`` points before each one (NaN until
    ``min_history`` of them; the scale falls back to the standard deviation, then 0.1 % of |median|)."""
    past = series.shift(1).rolling(window, min_periods=min_history)
    med = past.median().to_numpy()
    iqr = (past.quantile(0.75) - past.quantile(0.25)).to_numpy() / 1.349
    std = past.std().to_numpy()
    scale = np.where(iqr > 0, iqr, std)
    scale = np.maximum(np.where(np.isnan(scale), np.inf, scale), np.maximum(1e-3 * np.abs(np.nan_to_num(med)), 1e-12))
    with np.errstate(invalid="ignore"):
        return np.abs(series.to_numpy() - med) / scale


def _table(table, names: Sequence[str] | None) -> tuple[np.ndarray, tuple[str, ...]]:
    """(T x M float array, NaN for anything missing or non-finite; the metric names)."""
    if hasattr(table, "columns") and hasattr(table, "to_numpy"):
        values = table.to_numpy(dtype=float, na_value=np.nan)
        names = tuple(names) if names else tuple(str(c) for c in table.columns)
    else:
        values = np.asarray(table, dtype=float)
        if values.ndim == 1:
            values = values[:, None]
        names = tuple(names) if names else tuple(f"m{j + 1}" for j in range(values.shape[1] if values.ndim == 2 else 0))
    if values.ndim != 2:
        raise ValueError("a table is 2-dimensional: timestamps x metrics")
    if len(names) != values.shape[1]:
        raise ValueError(f"{len(names)} names for {values.shape[1]} metrics")
    return np.where(np.isfinite(values), values, np.nan), tuple(str(n) for n in names)


def _timestamps(timestamps, n: int) -> np.ndarray:
    ts = np.arange(n, dtype=float) if timestamps is None else np.asarray(timestamps, dtype=float)
    if ts.shape != (n,):
        raise ValueError(f"{len(ts)} timestamps for {n} rows")
    return ts


def _finite(x) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None
