"""aiops.windows on small synthetic tables: what it finds, what it ranks first, gaps, determinism,
the daily cycle, findings, the streaming scorer, and a property over arbitrary tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aiops.findings import Entity, Finding
from aiops.windows import (CODE, DETECTOR, AnomalyWindow, WindowDetector, WindowSettings, detect_period, detect_windows,
                           runs, streaming_scores, streaming_windows, to_findings)

NAMES = ("gpu_util", "mem_used", "temp", "power", "rps")
PERIOD = 48  # rows per "day"


def table(rows: int, seed: int, start: int = 0) -> np.ndarray:
    """Five metrics: two follow a daily cycle, three are noise around a level."""
    rng = np.random.default_rng(seed)
    t = np.arange(start, start + rows)
    day = np.sin(2 * np.pi * t / PERIOD)
    return np.column_stack([
        60 + 20 * day + rng.normal(0, 2, rows),
        30 + rng.normal(0, 1, rows),
        65 + 5 * day + rng.normal(0, 0.5, rows),
        250 + rng.normal(0, 10, rows),
        100 + rng.normal(0, 5, rows),
    ])


TRAIN = table(20 * PERIOD, seed=1)
TRAIN_T = np.arange(len(TRAIN), dtype=float)
TEST_T = len(TRAIN) + np.arange(4 * PERIOD, dtype=float)


def fitted(**options) -> WindowDetector:
    return WindowDetector(WindowSettings(**options)).fit(TRAIN, NAMES, TRAIN_T)


def test_an_injected_shift_in_one_metric_is_found_and_that_metric_ranked_first():
    test = table(len(TEST_T), seed=2, start=len(TRAIN))
    test[100:110, 1] += 8  # mem_used: +8 sigma for 10 rows
    result = fitted().detect(test, TEST_T)
    hit = [w for w in result.windows if w.start_index <= 109 and w.end_index >= 100]
    assert len(hit) == 1
    window = hit[0]
    assert window.top_metric == "mem_used" and window.metrics[0][1] > 0.5
    assert window.peak_score > 3
    assert sum(share for _, share in window.metrics) == pytest.approx(1.0)
    assert window.start == TEST_T[window.start_index] and window.end == TEST_T[window.end_index]


def test_several_metrics_moving_together_rank_above_the_rest():
    test = table(len(TEST_T), seed=3, start=len(TRAIN))
    test[50:60, 3] += 60  # power
    test[50:60, 4] += 30  # rps
    window = next(w for w in fitted().detect(test, TEST_T).windows if w.start_index <= 59 and w.end_index >= 50)
    assert {window.metrics[0][0], window.metrics[1][0]} == {"power", "rps"}


def test_clean_data_gives_few_or_no_windows():
    result = fitted().detect(table(len(TEST_T), seed=4, start=len(TRAIN)), TEST_T)
    assert len(result.windows) <= 3
    assert all(w.peak_score < 2 for w in result.windows)
    assert (result.scores.score >= 1).mean() < 0.03


def test_the_daily_cycle_is_learnt_and_a_value_wrong_for_the_time_of_day_is_found():
    detector = fitted()
    assert detector.bins == PERIOD
    assert detector.seasonal[0] and detector.seasonal[2] and not detector.seasonal[1]
    test = table(len(TEST_T), seed=5, start=len(TRAIN))
    trough = int(np.argmin(np.sin(2 * np.pi * TEST_T / PERIOD)))  # gpu_util's lowest hour ...
    test[trough - 2:trough + 3, 0] = 75  # ... shows an afternoon value: inside the training range
    assert TRAIN[:, 0].min() < 75 < TRAIN[:, 0].max()
    seasonal = detector.detect(test, TEST_T).windows
    assert any(w.start_index <= trough + 2 and w.end_index >= trough - 2 and w.top_metric == "gpu_util"
               for w in seasonal)
    flat = fitted(season=0).detect(test, TEST_T).windows
    assert not any(w.start_index <= trough + 2 and w.end_index >= trough - 2 and w.peak_score > 1.5 for w in flat)


def test_detect_period_finds_the_cycle_and_none_in_noise():
    assert detect_period(TRAIN) == PERIOD
    assert detect_period(np.random.default_rng(0).normal(size=(500, 3))) == 0
    assert detect_period(np.ones((100, 2))) == 0


def test_a_gap_is_never_read_as_zero():
    test = table(len(TEST_T), seed=6, start=len(TRAIN))
    test[20:60, 3] = np.nan  # power missing for 40 rows: 0 would be 25 sigma off
    test[70, :] = np.nan  # one row with nothing at all
    result = fitted().detect(test, TEST_T)
    assert np.all(np.isfinite(result.scores.score)) and np.all(result.scores.score >= 0)
    assert np.all(np.isnan(result.scores.deviation[20:60, 3]))
    assert result.scores.score[70] == 0.0
    assert not any(w.start_index <= 59 and w.end_index >= 20 and w.top_metric == "power" for w in result.windows)


def test_missing_training_values_are_skipped_and_an_empty_metric_is_never_scored():
    train = TRAIN.copy()
    train[::7, 0] = np.nan
    train[:, 4] = np.nan
    detector = WindowDetector().fit(train, NAMES, TRAIN_T)
    scores = detector.score(table(len(TEST_T), seed=7, start=len(TRAIN)), TEST_T)
    assert np.all(np.isnan(scores.deviation[:, 4]))
    assert np.all(np.isfinite(scores.score))


def test_detection_is_deterministic():
    test = table(len(TEST_T), seed=8, start=len(TRAIN))
    test[30:35, 2] += 10
    first = fitted().detect(test, TEST_T)
    second = fitted().detect(test.copy(), TEST_T.copy())
    assert first.windows == second.windows
    assert np.array_equal(first.scores.score, second.scores.score)


def test_fitting_on_the_table_itself_still_finds_a_long_incident():
    test = table(6 * PERIOD, seed=9)
    test[100:115, 1] += 10  # 15 of 288 rows (5 %): a plain 99.5 % quantile fit would absorb it
    result = detect_windows(test, names=NAMES)
    window = max(result.windows, key=lambda w: w.peak_score)
    assert window.top_metric == "mem_used" and window.peak_score > 2
    assert window.start_index <= 104 and window.end_index >= 110


def test_runs_merge_across_small_gaps():
    mask = np.array([0, 1, 1, 0, 0, 1, 0, 0, 0, 1], dtype=bool)
    assert runs(mask) == [(1, 2), (5, 5), (9, 9)]
    assert runs(mask, gap=2) == [(1, 5), (9, 9)]
    assert runs(np.zeros(4, bool)) == []


def test_min_window_drops_short_windows():
    test = table(len(TEST_T), seed=10, start=len(TRAIN))
    test[40, 4] += 80  # one row
    test[100:110, 1] += 8
    windows = fitted(min_window=4).detect(test, TEST_T).windows
    assert all(w.end_index - w.start_index + 1 >= 4 for w in windows)
    assert any(w.top_metric == "mem_used" for w in windows)


def test_windows_become_findings():
    test = table(len(TEST_T), seed=11, start=len(TRAIN))
    test[100:110, 1] += 8
    windows = [w for w in fitted().detect(test, TEST_T).windows if w.top_metric == "mem_used"]
    findings = to_findings(windows, Entity(node="gpu-a"))
    f = findings[0]
    assert (f.detector, f.code, f.metric, f.entity) == (DETECTOR, CODE, "mem_used", Entity(node="gpu-a"))
    assert f.score == windows[0].peak_score >= 1 and f.window == (windows[0].start, windows[0].end)
    assert f.expected_band[0] < 30 < f.expected_band[1] and f.observed > f.expected_band[1]
    assert f.evidence and f.evidence[0].metric == "mem_used"
    assert Finding.from_json(f.to_json()) == f


def test_bad_shapes_and_too_little_training_data_are_errors():
    with pytest.raises(ValueError, match="at least"):
        WindowDetector().fit(TRAIN[:5], NAMES)
    with pytest.raises(ValueError, match="metrics"):
        fitted().score(TRAIN[:, :3])
    with pytest.raises(ValueError):
        WindowSettings(quantile=1.5)
    with pytest.raises(RuntimeError):
        WindowDetector().score(TRAIN)


def test_anomaly_window_json_has_no_nan():
    w = AnomalyWindow(start=0.0, end=1.0, peak_score=2.0, metrics=(("a", 1.0),))
    assert w.to_json()["peak_at"] is None and w.to_json()["metrics"] == [{"metric": "a", "contribution": 1.0}]


def test_streaming_scores_flag_a_spike_and_leave_noise_alone():
    rng = np.random.default_rng(12)
    x = 50 + rng.normal(0, 1, 3000)
    x[2000] += 20
    x[2500:2510] = np.nan
    s = streaming_scores(x)
    assert s.shape == x.shape and np.all(np.isfinite(s)) and np.all(s >= 0)
    assert s[:20].max() == 0.0 and np.all(s[2500:2510] == 0)
    assert s[2000] >= 1.0
    assert (s >= 1.0).mean() < 0.01
    windows = streaming_windows(x)
    assert any(w.start_index <= 2000 <= w.end_index for w in windows)


finite_or_nan = st.one_of(st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), st.just(math.nan),
                          st.just(math.inf))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays(np.float64, st.tuples(st.integers(10, 60), st.integers(1, 4)), elements=finite_or_nan),
       st.booleans())
def test_scores_are_finite_and_non_negative_for_any_table(values, self_fit):
    detector = WindowDetector()
    if self_fit:
        detector.fit_self(values)
    else:
        detector.fit(values)
    result = detector.detect(values[::-1].copy())
    assert np.all(np.isfinite(result.scores.score)) and np.all(result.scores.score >= 0)
    assert math.isfinite(result.threshold) and result.threshold > 0
    for w in result.windows:
        assert w.peak_score >= 1.0 and 0 <= w.start_index <= w.end_index < len(values)
        assert sum(s for _, s in w.metrics) == pytest.approx(1.0) or sum(s for _, s in w.metrics) == 0
