"""Tests for the lead-time learner: sentence-named scenarios, plus properties against a reference.

The reference keeps one plain Python list per target, appends every good sample in order and keeps
the last ``window``; the learner's vectorised ring buffers must agree with it on any sequence of
calls, including many samples for one target in one call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.leadtimes import LeadTimeLearner, effective

POD = 180.0
NODE = 360.0


def learner(workloads: int = 1, pools: int = 1, **kwargs) -> LeadTimeLearner:
    return LeadTimeLearner(np.full(workloads, POD), np.full(pools, NODE), **kwargs)


def starts(lt: LeadTimeLearner, seconds, workload: int = 0) -> None:
    seconds = np.asarray(seconds, dtype=np.float64)
    lt.observe_pods(np.full(seconds.shape, workload, dtype=np.int64), seconds)


# --------------------------------------------------------------------------------------------
# Scenarios: one workload's startup samples, and the lead time it plans with
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodCase:
    name: str
    batches: list  # calls to observe_pods, each a list of seconds for workload 0
    want_seconds: float
    want_samples: int
    want_text: str
    kwargs: dict = field(default_factory=dict)


POD_CASES = [
    PodCase(
        "no starts yet: the configured 180 s stands",
        [],
        POD,
        0,
        "configured 180 s (0 of 5 samples needed)",
    ),
    PodCase(
        "configured until enough samples: 4 starts keep the configured 180 s",
        [[400.0, 410.0, 420.0, 430.0]],
        POD,
        4,
        "configured 180 s (4 of 5 samples needed)",
    ),
    PodCase(
        "the fifth start switches to the measured value",
        [[400.0, 410.0, 420.0, 430.0], [440.0]],
        440.0,
        5,
        "measured p90 440 s over 5 starts (configured 180 s)",
    ),
    PodCase(
        "measured p90 replaces configured: starts of 200..300 s give about 290 s",
        [list(np.arange(200.0, 301.0, 10.0))],
        290.0,
        11,
        "measured p90 290 s over 11 starts (configured 180 s)",
    ),
    PodCase(
        "a faster measured startup replaces the configured one too (it is not a floor)",
        [[60.0] * 6],
        60.0,
        6,
        "measured p90 60 s over 6 starts (configured 180 s)",
    ),
    PodCase(
        "the p90 is conservative: it takes the next observed sample above, never interpolates below",
        [[100.0] * 9 + [1000.0]],
        1000.0,
        10,
        "measured p90 1000 s over 10 starts (configured 180 s)",
    ),
    PodCase(
        "a pod startup that got faster is followed once the window has only fast starts",
        [[300.0] * 8, [120.0] * 8],
        120.0,
        8,
        "measured p90 120 s over 8 starts (configured 180 s)",
        dict(window=8),
    ),
    PodCase(
        "one slow start left in the window still counts at p90",
        [[300.0] * 8, [120.0] * 7],
        300.0,
        8,
        "measured p90 300 s over 8 starts (configured 180 s)",
        dict(window=8),
    ),
    PodCase(
        "bad samples (NaN, inf, negative) are ignored and do not count towards min_samples",
        [[200.0, np.nan, np.inf, -np.inf, -5.0, 210.0, 220.0, 230.0]],
        POD,
        4,
        "configured 180 s (4 of 5 samples needed)",
    ),
    PodCase(
        "bad samples among good ones leave the estimate as the good ones give it",
        [[np.nan, 200.0, 210.0, -1.0, 220.0, 230.0, np.inf, 240.0]],
        240.0,
        5,
        "measured p90 240 s over 5 starts (configured 180 s)",
    ),
    PodCase(
        "a zero-second start is a good sample",
        [[0.0] * 5],
        0.0,
        5,
        "measured p90 0 s over 5 starts (configured 180 s)",
    ),
    PodCase(
        "the quantile is configurable and named in the reason",
        [list(np.arange(200.0, 301.0, 10.0))],
        250.0,
        11,
        "measured p50 250 s over 11 starts (configured 180 s)",
        dict(quantile=0.5),
    ),
    PodCase(
        "with min_samples 1 a single start is measured, in the singular",
        [[190.0]],
        190.0,
        1,
        "measured p90 190 s over 1 start (configured 180 s)",
        dict(min_samples=1),
    ),
]


@pytest.mark.parametrize("case", POD_CASES, ids=[c.name for c in POD_CASES])
def test_pod_scenario(case: PodCase) -> None:
    lt = learner(**case.kwargs)
    for batch in case.batches:
        starts(lt, batch)
    assert lt.pod_seconds()[0] == pytest.approx(case.want_seconds)
    assert lt.pod_samples()[0] == case.want_samples
    assert lt.describe_pod(0) == case.want_text
    assert lt.node_seconds()[0] == NODE  # pods never move the pool's provisioning time


def test_old_samples_fall_out_after_window_newer_ones() -> None:
    lt = learner(window=5)
    starts(lt, [600.0] * 5)
    assert lt.pod_seconds()[0] == 600.0
    for k in range(4):
        starts(lt, [100.0])
        assert lt.pod_seconds()[0] == 600.0, f"{k + 1} fast starts cannot outvote the slow ones at p90"
    starts(lt, [100.0])
    assert lt.pod_seconds()[0] == 100.0
    assert lt.pod_samples()[0] == 5


def test_more_than_a_window_in_one_call_keeps_the_last_window() -> None:
    lt = learner(window=5)
    starts(lt, [900.0] * 7 + [100.0, 110.0, 120.0, 130.0, 140.0])
    assert lt.pod_samples()[0] == 5
    assert lt.pod_seconds()[0] == 140.0
    starts(lt, [500.0] * 4)  # pushes out 100..130, keeps 140
    assert lt.pod_seconds()[0] == 500.0
    assert lt.pod_samples()[0] == 5


def test_node_provisioning_is_measured_the_same_way() -> None:
    lt = learner(pools=2)
    lt.observe_nodes(np.array([1, 1, 1, 1, 1]), np.array([500.0, 520.0, 540.0, 560.0, 580.0]))
    assert lt.node_seconds().tolist() == [NODE, 580.0]
    assert lt.node_samples().tolist() == [0, 5]
    assert lt.describe_node(0) == "configured 360 s (0 of 5 samples needed)"
    assert lt.describe_node(1) == "measured p90 580 s over 5 nodes (configured 360 s)"


def test_pools_and_workloads_are_independent() -> None:
    lt = learner(workloads=3, pools=2)
    lt.observe_pods(np.array([2] * 6), np.full(6, 250.0))
    lt.observe_nodes(np.array([0] * 6), np.full(6, 700.0))
    assert lt.pod_seconds().tolist() == [POD, POD, 250.0]
    assert lt.pod_samples().tolist() == [0, 0, 6]
    assert lt.node_seconds().tolist() == [700.0, NODE]
    assert lt.node_samples().tolist() == [6, 0]


def test_samples_for_several_workloads_interleaved_in_one_call_each_land_in_their_row() -> None:
    lt = learner(workloads=3)
    lt.observe_pods(np.array([0, 1, 0, 2, 1, 0, 0, 0]), np.array([10.0, 20.0, 11.0, 30.0, 21.0, 12.0, 13.0, 14.0]))
    assert lt.pod_samples().tolist() == [5, 2, 1]
    assert lt.pod_seconds().tolist() == [14.0, POD, POD]


def test_effective_values_are_never_nan() -> None:
    lt = learner(workloads=4, pools=3)
    lt.observe_pods(np.array([0, 1, 1]), np.array([np.nan, 5.0, np.inf]))
    lt.observe_nodes(np.array([2] * 5), np.array([np.nan] * 5))
    assert np.isfinite(lt.pod_seconds()).all() and np.isfinite(lt.node_seconds()).all()


def test_empty_observations_change_nothing() -> None:
    lt = learner()
    lt.observe_pods(np.array([], dtype=np.int64), np.array([]))
    lt.observe_nodes(np.array([]), np.array([]))
    assert lt.pod_samples().tolist() == [0] and lt.node_samples().tolist() == [0]


def test_no_workloads_and_no_pools_is_fine() -> None:
    lt = LeadTimeLearner(np.zeros(0), np.zeros(0))
    assert lt.pod_seconds().shape == (0,) and lt.node_seconds().shape == (0,)
    assert LeadTimeLearner.from_json(json.loads(json.dumps(lt.to_json()))).to_json() == lt.to_json()


def test_effective_helper_picks_measured_only_with_enough_samples() -> None:
    got = effective(np.array([1.0, 2.0, 3.0, 4.0]), np.array([10.0, 20.0, np.nan, 40.0]), np.array([5, 4, 9, 6]), 5)
    assert got.tolist() == [10.0, 2.0, 3.0, 40.0]


def test_returned_arrays_are_copies() -> None:
    lt = learner()
    lt.pod_seconds()[0] = -1.0
    lt.pod_samples()[0] = 99
    assert lt.pod_seconds()[0] == POD and lt.pod_samples()[0] == 0


# --------------------------------------------------------------------------------------------
# Bad input: one-line ValueErrors
# --------------------------------------------------------------------------------------------


def one_line(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize(
    "index",
    [np.array([0, 3]), np.array([-1]), np.array([7, 0, 0])],
    ids=["one past the end", "negative (no wrap-around)", "first of several"],
)
def test_a_workload_index_out_of_range_raises_naming_it(index: np.ndarray) -> None:
    lt = learner(workloads=3)
    bad = int(index[(index < 0) | (index >= 3)][0])
    with pytest.raises(ValueError) as excinfo:
        lt.observe_pods(index, np.full(index.shape, 100.0))
    assert f"workload index {bad} out of range" in one_line(excinfo)
    assert lt.pod_samples().tolist() == [0, 0, 0], "a rejected call records nothing"


def test_a_pool_index_out_of_range_raises_naming_it() -> None:
    lt = learner(pools=2)
    with pytest.raises(ValueError) as excinfo:
        lt.observe_nodes(np.array([2]), np.array([np.nan]))  # even with a sample that would be dropped
    assert "pool index 2 out of range [0, 2)" in one_line(excinfo)


@pytest.mark.parametrize(
    "call",
    [
        lambda lt: lt.observe_pods(np.array([0, 0]), np.array([1.0])),
        lambda lt: lt.observe_pods(np.array([0.0]), np.array([1.0])),
        lambda lt: lt.describe_pod(1),
        lambda lt: lt.describe_node(-1),
    ],
    ids=[
        "indices and seconds of different lengths",
        "float indices",
        "describe a workload out of range",
        "describe a pool out of range",
    ],
)
def test_malformed_calls_raise_one_line_errors(call) -> None:
    with pytest.raises(ValueError) as excinfo:
        call(learner())
    one_line(excinfo)


@pytest.mark.parametrize(
    "pods, nodes, kwargs, fragment",
    [
        ([180.0, -1.0], [360.0], {}, "pod startup seconds must be finite and >= 0"),
        ([180.0], [np.nan], {}, "node provisioning seconds must be finite and >= 0"),
        ([[180.0]], [360.0], {}, "must be a 1-D array"),
        ([180.0], [360.0], dict(quantile=1.5), "quantile must be a number in [0, 1]"),
        ([180.0], [360.0], dict(quantile=float("nan")), "quantile must be a number in [0, 1]"),
        ([180.0], [360.0], dict(window=4, min_samples=5), "window (4) must be at least min_samples (5)"),
        ([180.0], [360.0], dict(window=0, min_samples=1), "window must be an integer >= 1"),
        ([180.0], [360.0], dict(min_samples=0), "min_samples must be an integer >= 1"),
    ],
    ids=[
        "negative configured startup",
        "NaN configured provisioning",
        "configured seconds not one-dimensional",
        "quantile above one",
        "NaN quantile",
        "window smaller than min_samples",
        "empty window",
        "zero min_samples",
    ],
)
def test_constructor_validation(pods, nodes, kwargs, fragment) -> None:
    with pytest.raises(ValueError) as excinfo:
        LeadTimeLearner(np.array(pods), np.array(nodes), **kwargs)
    assert fragment in one_line(excinfo)


def test_configured_arrays_are_copied() -> None:
    pods = np.array([180.0])
    lt = LeadTimeLearner(pods, np.array([360.0]))
    pods[0] = 1.0
    assert lt.pod_seconds()[0] == 180.0


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------


def test_json_round_trip_is_exact() -> None:
    lt = learner(workloads=3, pools=2, window=6, min_samples=3, quantile=0.75)
    lt.observe_pods(np.array([0, 0, 0, 0, 0, 0, 0, 0, 1]), np.array([0.1, 0.2, 1 / 3, 2 / 3, 1e-12, 123.456789, 7.0, 8.0, 9.0]))
    lt.observe_nodes(np.array([1, 1, 1]), np.array([400.5, np.pi, 999.0]))
    text = json.dumps(lt.to_json(), allow_nan=False)  # strict JSON: empty slots are null, not NaN
    back = LeadTimeLearner.from_json(json.loads(text))
    assert back.to_json() == lt.to_json()
    np.testing.assert_array_equal(back.pod_seconds(), lt.pod_seconds())
    np.testing.assert_array_equal(back.node_seconds(), lt.node_seconds())
    assert (back.window, back.min_samples, back.quantile) == (6, 3, 0.75)
    # ...and it keeps learning from where it stopped, exactly as the original does.
    for x in (lt, back):
        x.observe_pods(np.array([0, 1, 1]), np.array([50.0, 60.0, 70.0]))
    assert back.to_json() == lt.to_json()
    assert [back.describe_pod(i) for i in range(3)] == [lt.describe_pod(i) for i in range(3)]


def test_from_json_rejects_a_mismatched_ring() -> None:
    data = learner(window=4, min_samples=2).to_json()
    data["pods"]["samples"] = [[None] * 3]
    with pytest.raises(ValueError) as excinfo:
        LeadTimeLearner.from_json(data)
    one_line(excinfo)


# --------------------------------------------------------------------------------------------
# Property: the vectorised rings agree with per-row Python lists
# --------------------------------------------------------------------------------------------


class Reference:
    """One list per target: append each good sample, keep the last ``window``."""

    def __init__(self, n: int, window: int, min_samples: int, quantile: float, configured: float) -> None:
        self.rows: list[list[float]] = [[] for _ in range(n)]
        self.window, self.min_samples, self.quantile, self.configured = window, min_samples, quantile, configured

    def observe(self, index: list[int], seconds: list[float]) -> None:
        for i, s in zip(index, seconds):
            if np.isfinite(s) and s >= 0:
                self.rows[i] = (self.rows[i] + [s])[-self.window :]

    def seconds(self) -> list[float]:
        return [
            float(np.quantile(row, self.quantile, method="higher")) if len(row) >= self.min_samples else self.configured
            for row in self.rows
        ]


_sample = st.one_of(
    st.floats(min_value=0.0, max_value=3600.0),
    st.sampled_from([np.nan, np.inf, -np.inf, -1.0]),
)


@st.composite
def _history(draw):
    n = draw(st.integers(1, 4))
    window = draw(st.integers(1, 9))
    min_samples = draw(st.integers(1, window))
    quantile = draw(st.sampled_from([0.0, 0.5, 0.9, 0.95, 1.0]))
    calls = draw(
        st.lists(
            st.lists(st.tuples(st.integers(0, n - 1), _sample), max_size=30),
            max_size=6,
        )
    )
    return n, window, min_samples, quantile, calls


@settings(max_examples=150, deadline=None, derandomize=True)
@given(_history())
def test_vectorised_observe_matches_a_per_row_reference(history) -> None:
    n, window, min_samples, quantile, calls = history
    lt = LeadTimeLearner(np.full(n, POD), np.full(n, NODE), window=window, min_samples=min_samples, quantile=quantile)
    ref = Reference(n, window, min_samples, quantile, POD)
    for call in calls:
        index = [i for i, _ in call]
        seconds = [s for _, s in call]
        lt.observe_pods(np.array(index, dtype=np.int64), np.array(seconds, dtype=np.float64))
        lt.observe_nodes(np.array(index, dtype=np.int64), np.array(seconds, dtype=np.float64))
        ref.observe(index, seconds)
        assert lt.pod_samples().tolist() == [len(r) for r in ref.rows]
        assert lt.pod_seconds().tolist() == ref.seconds()
        # The rings hold exactly the reference's samples (as a multiset: the ring is rotated).
        for i, row in enumerate(ref.rows):
            kept = lt._pods.values[i]
            assert sorted(kept[~np.isnan(kept)].tolist()) == sorted(row)
    assert lt.node_samples().tolist() == lt.pod_samples().tolist()
    assert np.isfinite(lt.pod_seconds()).all()
    restored = LeadTimeLearner.from_json(json.loads(json.dumps(lt.to_json(), allow_nan=False)))
    assert restored.pod_seconds().tolist() == lt.pod_seconds().tolist()


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    st.integers(1, 6),
    st.lists(st.floats(min_value=0.0, max_value=1000.0), min_size=1, max_size=40),
)
def test_one_call_equals_the_same_samples_one_at_a_time(window, seconds) -> None:
    together = learner(window=window, min_samples=1)
    apart = learner(window=window, min_samples=1)
    starts(together, seconds)
    for s in seconds:
        starts(apart, [s])
    assert together.to_json() == apart.to_json()
