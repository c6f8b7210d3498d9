"""The scorers of benchmarks/anomaly_real.py on hand-made cases: NAB's standard profile, point
adjustment, F1 and HitRate. No shared data needed."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "anomaly_real.py"
_spec = importlib.util.spec_from_file_location("anomaly_real", _PATH)
bench = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("anomaly_real", bench)
_spec.loader.exec_module(bench)

N = 1000  # rows per file: probation is the first 150
WINDOWS = [(300, 399), (700, 749)]


def points(windows=WINDOWS, n=N):
    return bench.nab_points(n, windows)


def detections(*rows, n=N):
    d = np.zeros(n, dtype=bool)
    d[list(rows)] = True
    return d


def corpus_score(files) -> float:
    """files: [(detections, windows, n)] -> NAB's normalised score over them."""
    raw = sum(bench.nab_file_score(d, bench.nab_points(n, w)).raw for d, w, n in files)
    return bench.nab_normalised(raw, sum(len(w) for _, w, _ in files))


def test_scaled_sigmoid_matches_nab_reference_values():
    assert bench.scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert bench.scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert bench.scaled_sigmoid(0.0) == pytest.approx(0.0, abs=1e-12)
    assert bench.scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert bench.scaled_sigmoid(3.0) == -1.0


def test_probationary_length_is_15_percent_capped_at_750_rows():
    assert bench.probationary_length(1000) == 150
    assert bench.probationary_length(20_000) == 750


def test_perfect_detector_scores_100_and_null_detector_0():
    perfect = [(detections(300, 700), WINDOWS, N), (detections(500, n=800), [(500, 520)], 800)]
    null = [(np.zeros(N, bool), WINDOWS, N), (np.zeros(800, bool), [(500, 520)], 800)]
    assert corpus_score(perfect) == pytest.approx(100.0)
    assert corpus_score(null) == pytest.approx(0.0)


def test_a_file_without_windows_only_loses_through_false_positives():
    quiet = [(detections(300, 700), WINDOWS, N), (np.zeros(N, bool), [], N)]
    noisy = [(detections(300, 700), WINDOWS, N), (detections(500, 900), [], N)]
    assert corpus_score(quiet) == pytest.approx(100.0)
    assert corpus_score(noisy) == pytest.approx(100 * (2 - 2 * 0.11 + 2) / 4)


def test_an_early_detection_in_a_window_scores_higher_than_a_late_one():
    pts = points()
    early, middle, late = (bench.nab_file_score(detections(r), pts).raw for r in (300, 350, 399))
    assert early > middle > late
    assert early == pytest.approx(1.0 - 1.0)  # window 1 caught at its start (+1), window 2 missed (-1)
    assert late == pytest.approx(bench.scaled_sigmoid(-1 / 100) / bench.scaled_sigmoid(-1.0) - 1.0)


def test_only_the_first_detection_in_a_window_counts():
    pts = points()
    once = bench.nab_file_score(detections(310), pts)
    again = bench.nab_file_score(detections(310, 320, 330, 398), pts)
    assert again.raw == pytest.approx(once.raw) and again.tp == once.tp == 1 and again.fp == 0


def test_false_positives_outside_windows_lower_the_score():
    pts = points()
    base = bench.nab_file_score(detections(300, 700), pts).raw
    far = bench.nab_file_score(detections(300, 700, 200), pts)  # before any window: the full A_FP
    assert far.raw == pytest.approx(base - 0.11) and far.fp == 1
    just_after = bench.nab_file_score(detections(300, 700, 401), pts).raw
    long_after = bench.nab_file_score(detections(300, 700, 650), pts).raw
    assert base > just_after > long_after  # NAB forgives a detection just after a window more


def test_detections_in_the_probationary_period_are_ignored():
    pts = points()
    base = bench.nab_file_score(detections(300), pts)
    with_probation = bench.nab_file_score(detections(300, 0, 10, 149), pts)
    assert with_probation == base
    assert bench.nab_file_score(detections(300, 150), pts).fp == 1  # the first row after probation counts


def test_a_window_inside_the_probationary_period_is_not_scored():
    pts = bench.nab_points(N, [(10, 20), (300, 399)])
    assert pts.n_windows == 1
    assert bench.nab_file_score(np.zeros(N, bool), pts).raw == pytest.approx(-1.0)


def test_best_threshold_sweep_finds_the_corpus_wide_optimum():
    score = np.zeros(N)
    score[300] = 0.9  # a window's first row
    score[700] = 0.8
    score[200] = 0.5  # a false positive, lower
    threshold, raw = bench.nab_best_threshold([(score, points())])
    assert threshold == pytest.approx(0.8)
    assert raw == pytest.approx(2.0)
    assert bench.nab_best_threshold([(np.zeros(N), points())])[1] == pytest.approx(-2.0)  # never fire is the best


def test_windowed_gaussian_scores_a_spike_near_one_and_the_first_point_zero():
    rng = np.random.default_rng(0)
    x = rng.normal(10, 1, 500)
    x[400] = 30
    s = bench.windowed_gaussian(x)
    assert s[0] == 0.0 and s[400] > 0.999999 and np.median(s[1:]) < 0.9
    flat = bench.windowed_gaussian(np.ones(50))
    assert np.all(np.isfinite(flat))


def test_point_adjustment_marks_a_whole_segment_once_any_point_is_detected():
    labels = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0, 0])
    pred = np.array([0, 0, 1, 0, 0, 0, 0, 0, 0, 1], dtype=bool)
    adjusted = bench.point_adjust(pred, labels)
    assert adjusted.tolist() == [False, True, True, True, False, False, False, False, False, True]
    assert bench.label_runs(labels) == [(1, 3), (6, 7)]


def test_f1_arithmetic_with_and_without_adjustment():
    labels = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0, 0])
    pred = np.array([0, 0, 1, 0, 0, 0, 0, 0, 0, 1], dtype=bool)
    raw = bench.prf(pred, labels)  # tp 1, fp 1, fn 4
    assert (raw.precision, raw.recall) == (0.5, 0.2)
    assert raw.f1 == pytest.approx(2 * 0.5 * 0.2 / 0.7)
    pa = bench.prf(bench.point_adjust(pred, labels), labels)  # tp 3, fp 1, fn 2
    assert (pa.precision, pa.recall) == (0.75, 0.6)
    assert pa.f1 == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert bench.prf(np.zeros(10, bool), labels).f1 == 0.0


@pytest.mark.parametrize("ranking, labelled, percent, expected", [
    ([2, 0, 5, 1], [0, 2], 100, 1.0),  # top 2 = {2, 0}
    ([2, 1, 0, 5], [0, 2], 100, 0.5),  # top 2 = {2, 1}
    ([2, 1, 0, 5], [0, 2], 150, 1.0),  # top ceil(3) = {2, 1, 0}
    ([4, 3, 2, 1, 0], [0, 1, 2], 100, 1 / 3),  # top 3 = {4, 3, 2}
    ([4, 3, 2, 1, 0, 5, 6], [0, 1, 6], 150, 2 / 3),  # top ceil(1.5 * 3) = 5 = {4, 3, 2, 1, 0}
    ([9, 8, 7, 0], [0], 100, 0.0),
])
def test_hit_rate_arithmetic(ranking, labelled, percent, expected):
    assert bench.hit_rate(ranking, labelled, percent) == pytest.approx(expected)
    assert math.isnan(bench.hit_rate(ranking, [], percent))


# -- the harness end to end on tiny generated data (the real data is not needed) -----------------
def _write_nab(folder: Path) -> None:
    import json

    import pandas as pd

    rng = np.random.default_rng(3)
    frames, labels = [], {}
    for k, name in enumerate(("realX/spiky.csv", "artificialNoAnomaly/flat.csv")):
        stamps = pd.date_range("2015-01-01", periods=600, freq="5min")
        values = 10 + rng.normal(0, 1, 600)
        windows = []
        if k == 0:
            values[400:404] += 15
            windows = [[str(stamps[380]) + ".000000", str(stamps[430]) + ".000000"]]
        labels[name] = windows
        frames.append(pd.DataFrame({"series": name, "category": name.split("/")[0],
                                    "timestamp": stamps.strftime("%Y-%m-%d %H:%M:%S"), "value": values,
                                    "in_anomaly_window": 0, "is_anomaly_point": 0}))
    pd.concat(frames).to_csv(folder / "nab_all_series.csv.gz", index=False)
    (folder / "combined_windows.json").write_text(json.dumps(labels))


def _write_asd(folder: Path) -> None:
    import json

    import pandas as pd

    rng = np.random.default_rng(4)
    period, m = 24, 4
    t_train, t_test = np.arange(10 * period), np.arange(5 * period)

    def table(t, offset):
        day = np.sin(2 * np.pi * (t + offset) / period)
        return np.column_stack([0.5 + 0.3 * day * (j % 2) + rng.normal(0, 0.02, len(t)) for j in range(m)])

    train, test = table(t_train, 0), table(t_test, len(t_train))
    test[60:66, 2] += 0.4
    label = np.zeros(len(t_test), int)
    label[60:66] = 1
    cols = [f"m{j + 1}" for j in range(m)]
    pd.DataFrame(train, columns=cols).assign(t=t_train)[["t", *cols]].to_csv(folder / "omi-1_train.csv.gz", index=False)
    pd.DataFrame(test, columns=cols).assign(t=t_test, label=label)[["t", *cols, "label"]].to_csv(
        folder / "omi-1_test.csv.gz", index=False)
    (folder / "labels.json").write_text(json.dumps({"omi-1": {"interpretation_segments": [
        {"start": 60, "end": 65, "metrics_1based": [3], "anomaly_type": "metric"}]}}))


def test_run_nab_on_generated_files_scores_every_detector(tmp_path):
    _write_nab(tmp_path)
    result = bench.run_nab(tmp_path)
    assert result["files"] == 2 and result["windows"] == 1
    for name, figures in result["detectors"].items():
        assert -1000 < figures["score"] <= 100, name
        assert figures["tp"] + figures["fn"] == 1
    assert result["detectors"]["ours"]["tp"] == 1  # a 15-sigma jump cannot be missed


def test_run_asd_on_generated_servers_fits_on_train_and_explains_the_segment(tmp_path):
    _write_asd(tmp_path)
    result = bench.run_asd(tmp_path)
    assert result["servers"] == ["omi-1"]
    ours = result["detectors"]["ours"]["omi-1"]
    assert ours["recall_pa"] == 1.0 and ours["hitrate100"] == 1.0
    for name in ("ours", "IsolationForest", "ours, no season"):
        figures = result["detectors"][name]["mean"]
        for key in ("f1", "f1_pa", "precision", "recall", "hitrate100", "hitrate150", "oracle_f1", "oracle_f1_pa"):
            assert 0 <= figures[key] <= 1, (name, key)


def test_the_benchmark_skips_cleanly_without_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AIOPS_DATA_DIR", str(tmp_path))
    assert bench.main(["--out", str(tmp_path / "out.json")]) == 0
    assert "skipped: no data at" in capsys.readouterr().out
    assert not (tmp_path / "out.json").exists()
