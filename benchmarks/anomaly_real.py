"""Anomaly detection on real labelled data: NAB (one series at a time) and ASD (19 metrics, with explanations).

    python benchmarks/anomaly_real.py        # prints the tables, writes benchmarks/results/anomaly_real.json

The data is read from ``$AIOPS_DATA_DIR/anomaly/{nab,asd}`` (default ``../shared/data`` beside the
repo); without it the benchmark prints ``skipped: no data at ...`` and exits 0. The library
functions (``run_nab``, ``run_asd`` and the scorers) are tested on hand-made cases in
``tests/test_anomaly_scoring.py``.

**NAB** (58 series, 116 label windows). The scorer follows NAB's ``Sweeper`` (``nab/sweeper.py``)
with the *standard* profile (A_TP = 1, A_FP = -0.11, A_FN = -1): a detection in a window earns
``A_TP * scaled_sigmoid(-(right - i + 1) / width) / scaled_sigmoid(-1)`` (about 1 at the window's
start, 0 at its end) and only the window's earliest detection counts; a missed window costs
``A_FN``; a detection outside every window costs ``A_FP * scaled_sigmoid(distance past the previous
window / (its width - 1))`` (the full 0.11 far from, or before, any window; less just after one);
detections in the probationary period (the first 15 % of a file, at most 750 rows) are ignored, and
so is a window that lies wholly inside it. The corpus's raw score is normalised as NAB's runner does:
``100 * (raw - null) / (perfect - null)`` with null = -A_FN x windows (the null detector never
fires) and perfect = A_TP x windows. Simplifications: detections are booleans given to the scorer
(NAB's own threshold sweep is implemented too, ``nab_best_threshold``, and used for the baseline's
NAB-convention figure); NAB's windowedGaussian computes the Q-function with ``erfc(z / 1.4142)``,
ours with ``erfc(z / sqrt(2))``. With NAB's convention the windowedGaussian here scores 40.1 against
its published 39.6.

Detectors, side by side in the same harness:

* ``ours``: :func:`aiops.windows.streaming_windows`: each point against the trailing 1,000 points
  before it (robust level and step z, calibrated by their own trailing 99.5 % quantiles), runs at
  or above 1.0 merged across 50 normal points into one window, **one detection per window** (its
  first point: one alert per incident). The threshold is the detector's own 1.0 for every file,
  fixed before scoring. NAB has no training split: the streaming settings were picked among about
  a dozen variants on NAB itself, so like every published NAB figure (windowedGaussian's window size
  was tuned on NAB too) it is optimistic. ``ours, corpus-best threshold`` also sweeps the
  threshold (one value for the whole corpus, chosen on the labels: an upper bound).
* ``windowedGaussian``: NAB's detector (a window growing to 6,400 points, sliding by 100; score
  1 - Q(|z|)), every point at or above the threshold a detection, the one threshold chosen on
  the whole labelled corpus (NAB's convention).
* ``windowedGaussian, grouped``: the same scores through our alerting (runs merged across 50
  points, one detection per run), its threshold also chosen on the corpus: this separates what the
  scores do from what one-alert-per-incident does.

**ASD** (omi-1 .. omi-6; 19 metrics at 5 minutes; 30 days of training, 15 of test). Each detector is
fitted on the server's training split only, and its threshold comes from training scores only (the
99.5 % quantile of the training scores: ours calibrates it to 1.0); test labels are only read to
score. The test split follows the training split in time, so test row ``t`` is given timestamp
``8640 + t`` (training rows 0..8639: it keeps the daily phase that the detector learns).
Predictions are the detectors' windows: points at or above threshold, merged across gaps of up
to 2 points (the same for both detectors). Reported: point-wise precision, recall and F1, and the
same after point adjustment (a labelled segment with any detected point counts as wholly
detected; F1-PA flatters every detector, and is reported because the literature does); the best
F1 over all thresholds is reported separately and labelled **oracle** (it reads the test labels).
HitRate@100 % / @150 %: for each of the 38 ``interpretation_segments``, the share of its labelled
metrics among the top ceil(P x |labelled|) metrics ranked over the segment's rows (whether or not
the detector fired there), averaged over segments; P = 150 % with 13 of 19 metrics labelled is
nearly free, which is why the literature reports both.

* ``ours``: :class:`aiops.windows.WindowDetector` with default settings (daily cycle found in the
  training data by autocorrelation); metrics ranked by contribution over the segment.
* ``IsolationForest``: scikit-learn, 100 trees, ``random_state=0``, on the raw 19 metrics;
  anomaly score ``-score_samples``; metrics ranked by their mean robust |z| over the segment
  (median and IQR from training), the explanation a plain detector would come with.
* ``ours, no season``: ours with ``season=0``, to show what the daily baseline is worth (JSON only
  and in the mean row).

Runtime on the 2-core dev machine: about 15 s for both parts (NAB 4 s, ASD 8 s, mostly the oracle
sweeps and IsolationForest).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUT = ROOT / "benchmarks" / "results" / "anomaly_real.json"
ALERT_GAP_NAB = 50  # points: runs closer than this are one incident, one alert
ALERT_GAP_ASD = 2


# -- NAB scoring --------------------------------------------------------------------------------
@dataclass(frozen=True)
class NabProfile:
    """NAB's cost matrix: a true positive earns up to ``tp``, a false positive costs up to ``fp``
    and a missed window costs ``fn`` (the ``standard`` profile: A_TP = 1, A_FP = -0.11, A_FN = -1)."""

    name: str = "standard"
    tp: float = 1.0
    fp: float = 0.11
    fn: float = 1.0


STANDARD = NabProfile()
PROBATION = 0.15


def scaled_sigmoid(x):
    """NAB's weight of a detection at relative position ``x``: -1 at the window's left edge gives
    2*sigmoid(5) - 1 = 0.9866, 0 (its right edge) gives 0, >= 3 (far after a window) gives -1."""
    x = np.asarray(x, dtype=float)
    with np.errstate(over="ignore"):
        value = 2.0 / (1.0 + np.exp(5.0 * x)) - 1.0
    return np.where(x >= 3.0, -1.0, value)


def probationary_length(n: int, percent: float = PROBATION) -> float:
    """Leading rows whose detections NAB ignores: 15 % of the file, at most 750 rows."""
    return min(math.floor(percent * n), percent * 5000)


@dataclass(frozen=True)
class NabPoints:
    """Per row of one file: NAB's weight of a detection there, the window it falls in (-1: none)
    and whether it is scored at all (False in the probationary period)."""

    weight: np.ndarray
    window: np.ndarray
    scored: np.ndarray
    n_windows: int  # windows with at least one scored row (the others never count)


def nab_points(n: int, windows: Sequence[tuple[int, int]], profile: NabProfile = STANDARD,
               probation: float = PROBATION) -> NabPoints:
    """NAB's sweep weights (``Sweeper.calcSweepScore``) for a file of ``n`` rows whose label
    windows are the inclusive row ranges ``windows`` (sorted, disjoint).

    In a window: ``tp * scaled_sigmoid(-(right - i + 1) / width) / scaled_sigmoid(-1)``, so the
    first row earns ``tp`` and the last about 0. Outside: ``fp * scaled_sigmoid(distance past the
    previous window's right edge / (its width - 1))``, i.e. ``-fp`` far from (or before) any window
    and little just after one."""
    i = np.arange(n)
    weight = np.full(n, -profile.fp)  # before the first window: scaled_sigmoid(3) = -1
    window = np.full(n, -1)
    max_tp = float(scaled_sigmoid(-1.0))
    prev_right, prev_width = None, None
    for w, (left, right) in enumerate(list(windows)):
        if prev_right is not None:  # the stretch between the previous window and this one
            gap = slice(prev_right + 1, left)
            weight[gap] = profile.fp * scaled_sigmoid(np.abs(prev_right - i[gap]) / max(prev_width - 1.0, 1e-12))
        width = float(right - left + 1)
        inside = slice(left, right + 1)
        weight[inside] = profile.tp * scaled_sigmoid(-(right - i[inside] + 1) / width) / max_tp
        window[inside] = w
        prev_right, prev_width = right, width
    if prev_right is not None:
        tail = slice(prev_right + 1, n)
        weight[tail] = profile.fp * scaled_sigmoid(np.abs(prev_right - i[tail]) / max(prev_width - 1.0, 1e-12))
    scored = i >= probationary_length(n, probation)
    counted = len({int(w) for w in window[scored & (window >= 0)]})
    return NabPoints(weight=weight, window=window, scored=scored, n_windows=counted)


@dataclass(frozen=True)
class NabFileScore:
    raw: float
    tp: int  # windows detected
    fn: int  # windows missed
    fp: int  # detections outside every window (after the probationary period)


def nab_file_score(detected, points: NabPoints, profile: NabProfile = STANDARD) -> NabFileScore:
    """NAB's raw score of boolean detections on one file: per window its earliest detection's weight
    (later ones in the same window are ignored) or ``-fn`` when missed, plus the (negative) weight
    of every detection outside windows; detections in the probationary period are ignored."""
    detected = np.asarray(detected, dtype=bool) & points.scored
    raw, tp = 0.0, 0
    counted = np.unique(points.window[points.scored & (points.window >= 0)])
    for w in counted:
        hits = detected & (points.window == w)
        if hits.any():
            raw += float(points.weight[hits].max())
            tp += 1
        else:
            raw -= profile.fn
    false = detected & (points.window < 0)
    raw += float(points.weight[false].sum())
    return NabFileScore(raw=raw, tp=tp, fn=len(counted) - tp, fp=int(false.sum()))


def nab_normalised(raw_total: float, n_windows: int, profile: NabProfile = STANDARD) -> float:
    """NAB's final score over a corpus: 100 * (raw - null) / (perfect - null), where the null
    detector (never fires) scores ``-fn`` per window and the perfect one ``tp`` per window."""
    null, perfect = -profile.fn * n_windows, profile.tp * n_windows
    return 100.0 * (raw_total - null) / (perfect - null) if perfect != null else math.nan


def nab_best_threshold(files: Sequence[tuple[np.ndarray, NabPoints]], profile: NabProfile = STANDARD) -> tuple[float, float]:
    """NAB's threshold optimisation (``Sweeper.calcScoreByThreshold`` over the whole corpus): the one
    threshold on the anomaly scores (detect where score >= threshold) that maximises the corpus's
    raw score, and that raw score. One threshold for every file."""
    scores, weights, wins = [], [], []
    offset = 0
    for score, pts in files:
        keep = pts.scored
        scores.append(np.asarray(score, dtype=float)[keep])
        weights.append(pts.weight[keep])
        win = pts.window[keep]
        wins.append(np.where(win >= 0, win + offset, -1))
        offset += int(pts.window.max(initial=-1)) + 1
    score, weight, win = np.concatenate(scores), np.concatenate(weights), np.concatenate(wins)
    score = np.where(np.isfinite(score), score, -np.inf)
    order = np.argsort(-score, kind="stable")
    score, weight, win = score[order], weight[order], win[order]
    best_w = {int(w): -profile.fn for w in np.unique(win[win >= 0])}
    total = sum(best_w.values())
    best_total, best_threshold = total, math.inf
    n = len(score)
    k = 0
    while k < n:
        current = score[k]
        while k < n and score[k] == current:
            w = int(win[k])
            if w < 0:
                total += float(weight[k])
            elif weight[k] > best_w[w]:
                total += float(weight[k]) - best_w[w]
                best_w[w] = float(weight[k])
            k += 1
        if total > best_total and math.isfinite(current):
            best_total, best_threshold = total, float(current)
    return best_threshold, best_total


# -- ASD scoring --------------------------------------------------------------------------------
def label_runs(labels) -> list[tuple[int, int]]:
    """Inclusive (first, last) row ranges of consecutive 1s."""
    idx = np.flatnonzero(np.asarray(labels) > 0)
    if not len(idx):
        return []
    breaks = np.flatnonzero(np.diff(idx) > 1)
    return list(zip(np.r_[idx[0], idx[breaks + 1]].tolist(), np.r_[idx[breaks], idx[-1]].tolist()))


def point_adjust(predicted, labels) -> np.ndarray:
    """Point adjustment: a labelled segment with at least one detected point counts as wholly detected."""
    adjusted = np.asarray(predicted, dtype=bool).copy()
    for lo, hi in label_runs(labels):
        if adjusted[lo:hi + 1].any():
            adjusted[lo:hi + 1] = True
    return adjusted


@dataclass(frozen=True)
class PRF:
    precision: float
    recall: float
    f1: float

    def to_json(self) -> dict:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1}


def prf(predicted, labels) -> PRF:
    """Point-wise precision, recall and F1 (0 where undefined)."""
    p, y = np.asarray(predicted, dtype=bool), np.asarray(labels) > 0
    tp = int((p & y).sum())
    precision = tp / int(p.sum()) if p.any() else 0.0
    recall = tp / int(y.sum()) if y.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return PRF(precision, recall, f1)


def hit_rate(ranking: Sequence[int], labelled: Sequence[int], percent: float) -> float:
    """Share of the ``labelled`` metrics among the first ceil(percent/100 * |labelled|) of ``ranking``."""
    labelled = set(labelled)
    if not labelled:
        return math.nan
    top = set(list(ranking)[: math.ceil(percent / 100.0 * len(labelled) - 1e-9)])
    return len(top & labelled) / len(labelled)


# -- NAB data and detectors ---------------------------------------------------------------------
@dataclass(frozen=True)
class NabFile:
    name: str
    timestamps: np.ndarray  # unix seconds
    values: np.ndarray
    windows: tuple[tuple[int, int], ...]  # inclusive row ranges


def load_nab(folder) -> list[NabFile]:
    """The 58 NAB series and their label windows (timestamps matched to rows to the second)."""
    import pandas as pd

    folder = Path(folder)
    frame = pd.read_csv(folder / "nab_all_series.csv.gz")
    labels = json.loads((folder / "combined_windows.json").read_text(encoding="utf-8"))
    files = []
    for name, part in frame.groupby("series", sort=True):
        stamps = pd.to_datetime(part["timestamp"]).to_numpy(dtype="datetime64[s]")
        windows = []
        for lo, hi in labels.get(name, []):
            a, b = np.datetime64(lo[:19].replace(" ", "T"), "s"), np.datetime64(hi[:19].replace(" ", "T"), "s")
            i, j = int(np.searchsorted(stamps, a)), int(np.searchsorted(stamps, b, side="right")) - 1
            if i <= j:
                windows.append((i, j))
        files.append(NabFile(name=name, timestamps=stamps.astype("int64").astype(float),
                             values=part["value"].to_numpy(dtype=float), windows=tuple(windows)))
    return files


def windowed_gaussian(values, window: int = 6400, step: int = 100) -> np.ndarray:
    """NAB's ``windowedGaussian`` detector, vectorised: each point's score is 1 - Q(|z|), z against
    the mean and (population) standard deviation of the window before it; the window grows to
    ``window`` points, then slides forward ``step`` points at a time. The first point scores 0."""
    from scipy.special import erfc

    x = np.asarray(values, dtype=float)
    n = len(x)
    shifted = x - x[0] if n else x
    c1 = np.concatenate([[0.0], np.cumsum(shifted)])
    c2 = np.concatenate([[0.0], np.cumsum(shifted ** 2)])
    i = np.arange(1, n)
    last = i - 1  # the last point processed before point i
    end = np.where(last < window, last + 1, window + step * ((last + 1 - window) // step))  # exclusive
    start = np.where(last < window, 0, end - window)
    count = (end - start).astype(float)
    mean = (c1[end] - c1[start]) / count
    var = np.maximum((c2[end] - c2[start]) / count - mean ** 2, 0.0)
    std = np.sqrt(var)
    std = np.where(std == 0.0, 1e-6, std)
    z = np.abs(shifted[1:] - mean) / std
    out = np.zeros(n)
    out[1:] = 1.0 - 0.5 * erfc(z / math.sqrt(2.0))
    return out


def _groups(detected, gap: int) -> np.ndarray:
    """One detection per run of detections (its first point), runs closer than ``gap`` merged."""
    from aiops.windows import runs

    out = np.zeros(len(detected), dtype=bool)
    for lo, _ in runs(detected, gap):
        out[lo] = True
    return out


def _nab_total(files: Sequence[NabFile], points: Sequence[NabPoints], detections: Sequence[np.ndarray],
               profile: NabProfile = STANDARD) -> dict:
    """Corpus figures for one set of boolean detections: normalised score, raw, TP/FN/FP, per category."""
    scores = [nab_file_score(d, p, profile) for d, p in zip(detections, points)]
    categories: dict[str, list[int]] = {}
    for i, f in enumerate(files):
        categories.setdefault(f.name.split("/")[0], []).append(i)
    n_windows = sum(len(f.windows) for f in files)
    raw = sum(s.raw for s in scores)
    per_category = {}
    for cat, idx in sorted(categories.items()):
        w = sum(len(files[i].windows) for i in idx)
        r = sum(scores[i].raw for i in idx)
        per_category[cat] = {"files": len(idx), "windows": w, "raw": r, "fp": sum(scores[i].fp for i in idx),
                             "score": nab_normalised(r, w, profile) if w else None}
    return {"score": nab_normalised(raw, n_windows, profile), "raw": raw, "tp": sum(s.tp for s in scores),
            "fn": sum(s.fn for s in scores), "fp": sum(s.fp for s in scores), "per_category": per_category,
            "per_file": {f.name: {"raw": s.raw, "tp": s.tp, "fn": s.fn, "fp": s.fp} for f, s in zip(files, scores)}}


def _nab_folder(data_dir) -> Path:
    data_dir = Path(data_dir)
    return data_dir if (data_dir / "nab_all_series.csv.gz").exists() else data_dir / "anomaly" / "nab"


def run_nab(data_dir, progress=None) -> dict:
    """NAB standard-profile scores of ours and the windowedGaussian baseline (see the module's
    docstring). ``data_dir`` is the shared data folder (or its ``anomaly/nab``); ``progress(done,
    total)`` is called after each file."""
    from aiops.windows import streaming_scores

    started = time.perf_counter()
    files = load_nab(_nab_folder(data_dir))
    points = [nab_points(len(f.values), f.windows) for f in files]
    ours, gauss = [], []
    for done, f in enumerate(files, 1):
        ours.append(streaming_scores(f.values))
        gauss.append(windowed_gaussian(f.values))
        if progress:
            progress(done, len(files))
    n_windows = sum(len(f.windows) for f in files)

    fixed = _nab_total(files, points, [_groups(s >= 1.0, ALERT_GAP_NAB) for s in ours])
    fixed.update(threshold=1.0, threshold_rule="the detector's own 1.0 for every file, fixed before scoring")
    grid = np.round(np.arange(0.5, 2.0001, 0.05), 2)
    best_ours = max(grid, key=lambda t: _nab_total(files, points, [_groups(s >= t, ALERT_GAP_NAB) for s in ours])["raw"])
    ours_best = _nab_total(files, points, [_groups(s >= best_ours, ALERT_GAP_NAB) for s in ours])
    ours_best.update(threshold=float(best_ours), threshold_rule="one threshold for the corpus, chosen on its labels "
                     "(0.50..2.00 in steps of 0.05): an upper bound")

    threshold, _ = nab_best_threshold(list(zip(gauss, points)))
    wg = _nab_total(files, points, [s >= threshold for s in gauss])
    wg.update(threshold=threshold, threshold_rule="NAB's convention: one threshold for the corpus, swept over every "
              "score on the labels")
    tail = sorted({threshold, *(1.0 - 10.0 ** -k for k in np.arange(1.0, 13.01, 0.25))})
    best_wg = max(tail, key=lambda t: _nab_total(files, points, [_groups(s >= t, ALERT_GAP_NAB) for s in gauss])["raw"])
    wg_grouped = _nab_total(files, points, [_groups(s >= best_wg, ALERT_GAP_NAB) for s in gauss])
    wg_grouped.update(threshold=float(best_wg), threshold_rule="one threshold for the corpus, chosen on its labels "
                      "(1 - 10^-k, k = 1..13 by 0.25, and NAB's best)")
    return {"files": len(files), "points": int(sum(len(f.values) for f in files)), "windows": n_windows,
            "profile": {"name": STANDARD.name, "A_TP": STANDARD.tp, "A_FP": -STANDARD.fp, "A_FN": -STANDARD.fn},
            "probationary_percent": PROBATION, "alert_gap_points": ALERT_GAP_NAB,
            "detectors": {"ours": fixed, "ours, corpus-best threshold": ours_best, "windowedGaussian": wg,
                          "windowedGaussian, grouped": wg_grouped},
            "seconds": time.perf_counter() - started}


# -- ASD ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AsdServer:
    name: str
    train: np.ndarray  # T x 19
    test: np.ndarray
    labels: np.ndarray  # (test rows,) 0/1
    segments: tuple[tuple[int, int, tuple[int, ...]], ...]  # inclusive rows, 0-based metric indices
    metrics: tuple[str, ...]


def _asd_folder(data_dir) -> Path:
    data_dir = Path(data_dir)
    return data_dir if (data_dir / "labels.json").exists() else data_dir / "anomaly" / "asd"


def load_asd(folder) -> list[AsdServer]:
    import pandas as pd

    folder = Path(folder)
    labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
    servers = []
    for name in sorted(labels, key=lambda n: int(n.rsplit("-", 1)[1])):
        if not (folder / f"{name}_train.csv.gz").exists():
            continue
        train = pd.read_csv(folder / f"{name}_train.csv.gz")
        test = pd.read_csv(folder / f"{name}_test.csv.gz")
        metrics = tuple(c for c in train.columns if c.startswith("m"))
        segs = tuple((int(s["start"]), int(s["end"]), tuple(int(k) - 1 for k in s["metrics_1based"]))
                     for s in labels[name]["interpretation_segments"])
        servers.append(AsdServer(name=name, train=train[list(metrics)].to_numpy(float), test=test[list(metrics)].to_numpy(float),
                                 labels=test["label"].to_numpy(int), segments=segs, metrics=metrics))
    return servers


def _windows_mask(score: np.ndarray, threshold: float, gap: int) -> np.ndarray:
    from aiops.windows import runs

    out = np.zeros(len(score), dtype=bool)
    for lo, hi in runs(score >= threshold, gap):
        out[lo:hi + 1] = True
    return out


def _oracle_f1(score: np.ndarray, labels: np.ndarray, adjust: bool) -> float:
    """The best F1 over thresholds at every distinct score quantile (reads the test labels)."""
    best = 0.0
    for t in np.unique(np.quantile(score, np.linspace(0.5, 1.0, 201))):
        pred = score >= t
        best = max(best, prf(point_adjust(pred, labels) if adjust else pred, labels).f1)
    return best


def _asd_figures(score: np.ndarray, threshold: float, server: AsdServer, ranking) -> dict:
    pred = _windows_mask(score, threshold, ALERT_GAP_ASD)
    point, adjusted = prf(pred, server.labels), prf(point_adjust(pred, server.labels), server.labels)
    hits = {p: [] for p in (100, 150)}
    for lo, hi, labelled in server.segments:
        order = ranking(lo, hi)
        for p in hits:
            hits[p].append(hit_rate(order, labelled, p))
    return {"f1": point.f1, "precision": point.precision, "recall": point.recall, "f1_pa": adjusted.f1,
            "precision_pa": adjusted.precision, "recall_pa": adjusted.recall,
            "hitrate100": float(np.mean(hits[100])), "hitrate150": float(np.mean(hits[150])),
            "oracle_f1": _oracle_f1(score, server.labels, False), "oracle_f1_pa": _oracle_f1(score, server.labels, True),
            "detected_points": int(pred.sum()), "segments": len(server.segments)}


def run_asd(data_dir, progress=None) -> dict:
    """ASD figures of ours, ours without the daily baseline, and IsolationForest (see the module's
    docstring). ``data_dir`` is the shared data folder (or its ``anomaly/asd``); ``progress(done,
    total)`` is called after each server."""
    from sklearn.ensemble import IsolationForest

    from aiops.windows import WindowDetector, WindowSettings, robust_center_scale

    started = time.perf_counter()
    servers = load_asd(_asd_folder(data_dir))
    results: dict[str, dict[str, dict]] = {"ours": {}, "IsolationForest": {}, "ours, no season": {}}
    seasons = {}
    for done, server in enumerate(servers, 1):
        n_train = len(server.train)
        train_ts, test_ts = np.arange(n_train, dtype=float), n_train + np.arange(len(server.test), dtype=float)
        for label, settings in (("ours", WindowSettings()), ("ours, no season", WindowSettings(season=0))):
            detector = WindowDetector(settings).fit(server.train, server.metrics, train_ts)
            scores = detector.score(server.test, test_ts)
            if label == "ours":
                seasons[server.name] = detector.bins

            def rank(lo, hi, scores=scores):
                return list(np.argsort(-scores.contributions(slice(lo, hi + 1)), kind="stable"))

            results[label][server.name] = _asd_figures(scores.score, 1.0, server, rank)

        forest = IsolationForest(n_estimators=100, random_state=0).fit(server.train)
        train_score, test_score = -forest.score_samples(server.train), -forest.score_samples(server.test)
        center, scale = robust_center_scale(server.train)
        z = np.abs(server.test - center) / scale

        def rank_z(lo, hi, z=z):
            return list(np.argsort(-np.nanmean(z[lo:hi + 1], axis=0), kind="stable"))

        results["IsolationForest"][server.name] = _asd_figures(test_score, float(np.quantile(train_score, 0.995)),
                                                               server, rank_z)
        if progress:
            progress(done, len(servers))
    for by_server in results.values():
        keys = next(iter(by_server.values())).keys() if by_server else ()
        by_server["mean"] = {k: float(np.mean([v[k] for v in by_server.values()])) for k in keys}
    return {"servers": [s.name for s in servers], "season_rows": seasons, "threshold_rule":
            "99.5 % quantile of the training scores (test labels never read to set it)",
            "detectors": results, "seconds": time.perf_counter() - started}


# -- the report ---------------------------------------------------------------------------------
def _nab_table(nab: dict):
    from rich.table import Table

    table = Table(title=f"NAB, standard profile: {nab['files']} files, {nab['windows']} windows "
                        f"(100 = perfect, 0 = never fires)", title_justify="left")
    for header in ("detector", "threshold", "score", "TP", "FN", "FP"):
        table.add_column(header, justify="left" if header == "detector" else "right")
    for name, d in nab["detectors"].items():
        threshold = f"{d['threshold']:.4g}" if d["threshold"] < 0.999 or d["threshold"] >= 1 else f"1-{1 - d['threshold']:.1e}"
        table.add_row(name, threshold, f"{d['score']:.1f}", str(d["tp"]), str(d["fn"]), str(d["fp"]))
    return table


def _asd_table(asd: dict):
    from rich.table import Table

    table = Table(title="ASD: threshold from training scores only; oracle = best threshold on the test labels",
                  title_justify="left")
    for header in ("server", "detector", "F1", "P", "R", "F1-PA", "HitRate@100%", "HitRate@150%", "oracle F1",
                   "oracle F1-PA"):
        table.add_column(header, justify="left" if header in ("server", "detector") else "right")
    for server in [*asd["servers"], "mean"]:
        for name in ("ours", "IsolationForest") + (("ours, no season",) if server == "mean" else ()):
            d = asd["detectors"][name][server]
            table.add_row(server, name, f"{d['f1']:.3f}", f"{d['precision']:.3f}", f"{d['recall']:.3f}",
                          f"{d['f1_pa']:.3f}", f"{d['hitrate100']:.3f}", f"{d['hitrate150']:.3f}",
                          f"{d['oracle_f1']:.3f}", f"{d['oracle_f1_pa']:.3f}", end_section=name == "IsolationForest")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("nab", "asd"), help="run one part only")
    parser.add_argument("--out", default=str(OUT), help="JSON output (default: %(default)s)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from machine import data_dir, describe, save
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    folder = data_dir()
    nab_ok, asd_ok = (_nab_folder(folder) / "nab_all_series.csv.gz").exists(), (_asd_folder(folder) / "labels.json").exists()
    if not (nab_ok or asd_ok):
        print(f"skipped: no data at {folder / 'anomaly'} (set AIOPS_DATA_DIR)")
        return 0
    console = Console(width=max(Console().width, 120))
    machine = describe()
    console.print(f"machine: {machine['cpu_model']}, {machine['cpus']} CPUs, {machine['memory_gib']} GiB, "
                  f"Python {machine['python']}", highlight=False)
    doc: dict = {"benchmark": "anomaly_real", "data": str(folder / "anomaly")}
    started = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        if nab_ok and args.only in (None, "nab"):
            task = bar.add_task("NAB files", total=None)
            doc["nab"] = run_nab(folder, progress=lambda done, total: bar.update(task, completed=done, total=total))
        elif args.only in (None, "nab"):
            console.print(f"NAB skipped: no data at {_nab_folder(folder)}", highlight=False)
        if asd_ok and args.only in (None, "asd"):
            task = bar.add_task("ASD servers", total=None)
            doc["asd"] = run_asd(folder, progress=lambda done, total: bar.update(task, completed=done, total=total))
        elif args.only in (None, "asd"):
            console.print(f"ASD skipped: no data at {_asd_folder(folder)}", highlight=False)
    doc["seconds"] = time.perf_counter() - started
    doc["machine"] = machine
    if "nab" in doc:
        console.print(_nab_table(doc["nab"]))
    if "asd" in doc:
        console.print(_asd_table(doc["asd"]))
    console.print(f"ran in {doc['seconds']:.0f} s", highlight=False)
    save(doc, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
