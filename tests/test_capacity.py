"""Tests for the learned per-replica capacity model (policies/capacity.py).

Latency comes from the simulator's curve in units of the SLO: ``y = b + (1 - b) * u ** e`` with
``u`` the load per replica in units of the *true* capacity (so ``y = 1`` exactly at the truth),
plus a queueing blow-up beyond the saturation throughput (``max_throughput_factor`` = 1.25 in the
simulator) and optional multiplicative noise with mean 1.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.isotonic import IsotonicRegression

from policies.capacity import CapacityEstimate, CapacityLearner, isotonic_fit

NOW = 1.7e9
STEP = 60.0
HOUR = 3600.0


def latency_in_slos(u: np.ndarray, base: float = 0.4, exponent: float = 3.0,
                    saturation: float = 1.25, queueing: float = 5.0) -> np.ndarray:
    """p95 / SLO at load ``u`` (in units of the true capacity): the SLO is met exactly at u = 1."""
    return base + (1 - base) * u**exponent + queueing * np.maximum(u - saturation, 0.0)


def feed(learner: CapacityLearner, truth_rps: np.ndarray, slo: np.ndarray, steps: int, rng: np.random.Generator, *,
         start: float = NOW, span: tuple[float, float] = (0.3, 1.3), noise: float = 0.05) -> float:
    """Observe ``steps`` minutes of load drawn uniformly over ``span`` x the true capacity and the
    latency the truth gives at it; returns the time of the next minute."""
    for s in range(steps):
        load = rng.uniform(*span, size=truth_rps.shape) * truth_rps
        y = latency_in_slos(load / truth_rps)
        if noise:
            y = y * rng.lognormal(-noise**2 / 2, noise, size=y.shape)
        learner.observe(start + s * STEP, load, y * slo)
    return start + steps * STEP


def relative(estimate: CapacityEstimate, truth_rps: np.ndarray) -> np.ndarray:
    return estimate.rps / truth_rps


PRIOR = np.array([12.0, 30.0, 75.0])
SLO = np.array([0.5, 2.0, 8.0])


# --------------------------------------------------------------------------------------------
# The prior


def test_with_no_data_the_estimate_is_the_prior_and_nothing_is_learned():
    estimate = CapacityLearner(PRIOR, SLO).estimate()
    np.testing.assert_array_equal(estimate.rps, PRIOR)
    assert not estimate.learned.any()
    np.testing.assert_array_equal(estimate.observations, 0.0)
    assert estimate.source(0) == "configured prior"


def test_the_prior_alone_crosses_the_slo_exactly_at_the_configured_capacity():
    # min_observations=0 forces the fit to run on the prior's pseudo-observations alone.
    for bins, low, high in [(48, 0.05, 4.0), (10, 0.5, 2.0), (7, 0.2, 1.5)]:
        estimate = CapacityLearner(PRIOR, SLO, min_observations=0, bins=bins, low=low, high=high).estimate()
        assert estimate.learned.all()
        np.testing.assert_allclose(estimate.rps, PRIOR, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Learning the truth


@pytest.mark.parametrize(
    "truth_over_prior",
    [
        pytest.param(0.6, id="a replica that sustains 60% of its configured capacity is learned"),
        pytest.param(0.8, id="a replica that sustains 80% of its configured capacity is learned"),
        pytest.param(1.25, id="a replica that sustains 125% of its configured capacity is learned"),
        pytest.param(1.6, id="a replica that sustains 160% of its configured capacity is learned"),
    ],
)
def test_data_around_the_true_capacity_find_it_within_five_percent(truth_over_prior):
    rng = np.random.default_rng(int(truth_over_prior * 100))
    truth = PRIOR * truth_over_prior
    learner = CapacityLearner(PRIOR, SLO)
    feed(learner, truth, SLO, 1500, rng)
    estimate = learner.estimate()
    assert estimate.learned.all()
    np.testing.assert_allclose(relative(estimate, truth), 1.0, atol=0.05)
    assert 1300 < estimate.observations[1] < 1500  # 25 hours of minutes, fading with a 3-day half-life
    assert estimate.source(1) == f"learned from {estimate.observations[1]:.0f} observations"


def test_violations_at_loads_the_prior_thought_safe_pull_the_estimate_below_the_lowest_violating_load():
    rng = np.random.default_rng(7)
    truth = 0.7 * PRIOR
    learner = CapacityLearner(PRIOR, SLO)
    loads, p95s = [], []
    for s in range(600):  # loads only below the prior's capacity, none of which it expected to violate
        load = rng.uniform(0.3, 0.95, size=PRIOR.shape) * PRIOR
        p95 = latency_in_slos(load / truth) * SLO
        learner.observe(NOW + s * STEP, load, p95)
        loads.append(load)
        p95s.append(p95)
    loads_, violated = np.array(loads), np.array(p95s) > SLO
    lowest_violating = np.where(violated, loads_, np.inf).min(axis=0)
    estimate = learner.estimate()
    assert estimate.learned.all()
    assert (estimate.rps <= lowest_violating).all(), (estimate.rps / PRIOR, lowest_violating / PRIOR)
    assert (estimate.rps >= 0.95 * truth).all()


@pytest.mark.parametrize(
    "loads_over_prior, p95_over_slo, expected_low, expected_high",
    [
        pytest.param((0.5, 2.0), 0.5, 1.9, 2.0,
                     id="safe all the way to twice the prior: capacity is the highest load seen"),
        pytest.param((0.2, 0.6), 0.5, 1.0, 1.0,
                     id="safe only below the prior: no evidence either way, the prior stands"),
        pytest.param((0.1, 0.1), 2.0, 0.1 / 1.1, 0.1,
                     id="violating even at the lowest load seen: the lower edge of that load's bin"),
    ],
)
def test_the_estimate_follows_the_documented_rule_at_the_edges_of_the_evidence(
        loads_over_prior, p95_over_slo, expected_low, expected_high):
    rng = np.random.default_rng(3)
    learner = CapacityLearner(PRIOR, SLO)
    for s in range(300):
        learner.observe(NOW + s * STEP, rng.uniform(*loads_over_prior, size=3) * PRIOR, p95_over_slo * SLO)
    ratio = learner.estimate().rps / PRIOR
    assert learner.estimate().learned.all()
    assert ((ratio >= expected_low - 1e-12) & (ratio <= expected_high + 1e-12)).all(), ratio


# --------------------------------------------------------------------------------------------
# Missing metrics


@pytest.mark.parametrize(
    "load, p95",
    [
        pytest.param(np.nan, 1.0, id="a NaN load teaches nothing"),
        pytest.param(np.inf, 1.0, id="an infinite load teaches nothing"),
        pytest.param(0.0, 1.0, id="a zero load teaches nothing"),
        pytest.param(-5.0, 1.0, id="a negative load teaches nothing"),
        pytest.param(10.0, np.nan, id="a NaN latency teaches nothing"),
        pytest.param(10.0, -1.0, id="a negative latency teaches nothing"),
    ],
)
def test_missing_metrics_leave_the_estimate_unchanged(load, p95):
    clean, noisy = CapacityLearner(PRIOR, SLO), CapacityLearner(PRIOR, SLO)
    rng_clean, rng_noisy = np.random.default_rng(11), np.random.default_rng(11)
    truth = 0.8 * PRIOR
    for s in range(200):
        now = NOW + s * STEP
        for learner, rng in ((clean, rng_clean), (noisy, rng_noisy)):
            u = rng.uniform(0.3, 1.3, size=3)
            learner.observe(now, u * truth, latency_in_slos(u) * SLO)
        noisy.observe(now, np.full(3, load), np.full(3, p95))  # same minute, nothing usable in it
    a, b = clean.estimate(), noisy.estimate()
    np.testing.assert_array_equal(a.rps, b.rps)
    np.testing.assert_array_equal(a.observations, b.observations)
    assert b.learned.all()


def test_an_infinite_latency_is_a_violation_not_a_missing_metric():
    learner = CapacityLearner(PRIOR, SLO, half_life_seconds=1e15)  # no noticeable fading
    for s in range(50):
        learner.observe(NOW + s * STEP, 0.5 * PRIOR, np.inf)
    estimate = learner.estimate()
    np.testing.assert_allclose(estimate.observations, 50.0, rtol=1e-9)
    assert (estimate.rps <= 0.5 * PRIOR).all()


def test_one_workloads_missing_metric_does_not_hold_back_the_others():
    learner = CapacityLearner(PRIOR, SLO, half_life_seconds=1e15)  # no noticeable fading
    for s in range(40):
        learner.observe(NOW + s * STEP, np.array([np.nan, 5.0, 20.0]), np.array([1.0, np.nan, 4.0]))
    np.testing.assert_allclose(learner.estimate().observations, [0.0, 0.0, 40.0], rtol=1e-9)
    np.testing.assert_array_equal(learner.estimate().learned, [False, False, True])


# --------------------------------------------------------------------------------------------
# Forgetting


def test_after_the_true_capacity_drops_the_estimate_follows_within_a_few_half_lives():
    rng = np.random.default_rng(5)
    half_life = 2 * HOUR
    forgetful = CapacityLearner(PRIOR, SLO, half_life_seconds=half_life)
    stubborn = CapacityLearner(PRIOR, SLO, half_life_seconds=1000 * 86400.0)
    for learner in (forgetful, stubborn):
        rng = np.random.default_rng(5)
        later = feed(learner, PRIOR, SLO, int(12 * HOUR / STEP), rng)
        np.testing.assert_allclose(relative(learner.estimate(), PRIOR), 1.0, atol=0.05)
        feed(learner, 0.7 * PRIOR, SLO, int(5 * half_life / STEP), rng, start=later)
    np.testing.assert_allclose(relative(forgetful.estimate(), 0.7 * PRIOR), 1.0, atol=0.05)
    # Without forgetting, the old regime still holds the estimate well above the new truth.
    assert (relative(stubborn.estimate(), 0.7 * PRIOR) > 1.05).all()


def test_a_workload_that_stops_reporting_falls_back_to_its_prior():
    rng = np.random.default_rng(9)
    learner = CapacityLearner(PRIOR, SLO, half_life_seconds=HOUR)
    later = feed(learner, 0.6 * PRIOR, SLO, 600, rng)
    assert learner.estimate().learned.all()
    for s in range(int(10 * HOUR / STEP)):  # ten half-lives of missing metrics
        learner.observe(later + s * STEP, np.full(3, np.nan), np.full(3, np.nan))
    estimate = learner.estimate()
    assert not estimate.learned.any()
    np.testing.assert_array_equal(estimate.rps, PRIOR)


def test_rescaling_the_decay_factor_over_many_half_lives_changes_nothing_but_the_magnitudes():
    # 200 half-lives of data force several rescalings; the result must match a learner that only
    # ever saw the last 40 half-lives (older data weigh less than 2 ** -40 of it).
    half_life = 5 * STEP
    rng = np.random.default_rng(13)
    load = rng.uniform(0.3, 1.3, size=(1000, 3)) * 0.8 * PRIOR
    p95 = latency_in_slos(load / (0.8 * PRIOR)) * SLO * rng.lognormal(0, 0.05, size=load.shape)
    full, recent = (CapacityLearner(PRIOR, SLO, half_life_seconds=half_life) for _ in range(2))
    for s in range(1000):
        full.observe(NOW + s * STEP, load[s], p95[s])
        if s >= 800:
            recent.observe(NOW + s * STEP, load[s], p95[s])
    np.testing.assert_allclose(full.estimate().rps, recent.estimate().rps, rtol=1e-9)
    np.testing.assert_allclose(full.estimate().observations, recent.estimate().observations, rtol=1e-9)


# --------------------------------------------------------------------------------------------
# The isotonic fit


def _sklearn_fit(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    out = np.full(values.shape, np.nan)
    for r in range(values.shape[0]):
        keep = weights[r] > 0
        if keep.any():
            x = np.flatnonzero(keep).astype(float)
            out[r, keep] = IsotonicRegression().fit(x, values[r, keep], sample_weight=weights[r, keep]).predict(x)
    return out


@st.composite
def weighted_rows(draw):
    rows, bins = draw(st.integers(1, 4)), draw(st.integers(1, 14))
    values = draw(st.lists(st.floats(-50, 50), min_size=rows * bins, max_size=rows * bins))
    weights = draw(st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 1e3)), min_size=rows * bins, max_size=rows * bins))
    return np.array(values).reshape(rows, bins), np.array(weights).reshape(rows, bins)


@settings(max_examples=300, deadline=None)
@given(weighted_rows())
def test_the_isotonic_fit_equals_sklearns_on_random_weighted_data(data):
    values, weights = data
    fitted = isotonic_fit(values, weights)
    expected = _sklearn_fit(values, weights)
    np.testing.assert_array_equal(np.isnan(fitted), weights <= 0)
    np.testing.assert_allclose(fitted, expected, rtol=1e-9, atol=1e-9)


def test_the_isotonic_fit_keeps_tiny_weights_apart_from_huge_ones():
    # Differences of cumulative sums would turn the second bin's mean into rounding noise.
    fitted = isotonic_fit(np.array([[0.5, 2.0, 3.0]]), np.array([[1e12, 1e-6, 1e-6]]))
    np.testing.assert_allclose(fitted, [[0.5, 2.0, 3.0]], rtol=1e-12)


def test_the_isotonic_fit_takes_a_single_row_and_an_all_empty_table():
    np.testing.assert_allclose(isotonic_fit(np.array([3.0, 1.0, 2.0]), np.ones(3)), [2.0, 2.0, 2.0])
    assert np.isnan(isotonic_fit(np.ones((2, 5)), np.zeros((2, 5)))).all()


# --------------------------------------------------------------------------------------------
# A thousand workloads at once


def test_a_thousand_workloads_with_different_truths_are_all_learned_in_one_learner():
    rng = np.random.default_rng(21)
    n = 1000
    prior = rng.uniform(1.0, 100.0, n)
    slo = rng.uniform(0.2, 10.0, n)
    truth = prior * rng.uniform(0.6, 1.6, n)
    learner = CapacityLearner(prior, slo)
    feed(learner, truth, slo, 400, rng)
    estimate = learner.estimate()
    assert estimate.learned.all()
    np.testing.assert_allclose(relative(estimate, truth), 1.0, atol=0.05)

    # A few workloads learned alone, from the same data, come out the same.
    few = np.array([0, 17, 999])
    alone = CapacityLearner(prior[few], slo[few])
    rng = np.random.default_rng(21)
    rng.uniform(size=3 * n)  # the draws that made prior, slo and truth
    for s in range(400):
        load = rng.uniform(0.3, 1.3, size=n) * truth
        y = latency_in_slos(load / truth) * rng.lognormal(-0.05**2 / 2, 0.05, size=n)
        alone.observe(NOW + s * STEP, load[few], (y * slo)[few])
    np.testing.assert_allclose(alone.estimate().rps, estimate.rps[few], rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Persistence, input checking, the estimate's record


def test_a_json_round_trip_gives_identical_estimates_now_and_after_more_data():
    rng = np.random.default_rng(2)
    learner = CapacityLearner(PRIOR, SLO, half_life_seconds=HOUR, bins=24)
    assert CapacityLearner.from_json(json.loads(json.dumps(learner.to_json()))).to_json() == learner.to_json()
    later = feed(learner, 0.9 * PRIOR, SLO, 300, rng)
    restored = CapacityLearner.from_json(json.loads(json.dumps(learner.to_json(), allow_nan=False)))
    np.testing.assert_array_equal(learner.estimate().rps, restored.estimate().rps)
    np.testing.assert_array_equal(learner.estimate().learned, restored.estimate().learned)
    np.testing.assert_array_equal(learner.estimate().observations, restored.estimate().observations)
    for learner_ in (learner, restored):
        feed(learner_, 0.7 * PRIOR, SLO, 100, np.random.default_rng(4), start=later)
    np.testing.assert_array_equal(learner.estimate().rps, restored.estimate().rps)
    assert CapacityLearner.from_json(json.dumps(learner.to_json())).to_json() == learner.to_json()


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        pytest.param({"prior_rps": [10.0, -1.0]}, "prior_rps", id="a negative prior is refused"),
        pytest.param({"prior_rps": [10.0, 0.0]}, "prior_rps", id="a zero prior is refused"),
        pytest.param({"prior_rps": [np.nan, 1.0]}, "prior_rps", id="a NaN prior is refused"),
        pytest.param({"prior_rps": [[1.0, 2.0]]}, "prior_rps", id="a two-dimensional prior is refused"),
        pytest.param({"prior_rps": ["fast", 2.0]}, "prior_rps", id="a prior that is not a number is refused"),
        pytest.param({"slo_seconds": [1.0, 1.0, 1.0]}, "slo_seconds", id="an SLO per workload, no more"),
        pytest.param({"slo_seconds": [1.0, np.inf]}, "slo_seconds", id="an infinite SLO is refused"),
        pytest.param({"slo_seconds": [1.0, np.nan]}, "slo_seconds", id="a NaN SLO is refused"),
        pytest.param({"prior_weight": -1.0}, "prior_weight", id="a negative prior weight is refused"),
        pytest.param({"half_life_seconds": 0.0}, "half_life_seconds", id="a zero half-life is refused"),
        pytest.param({"half_life_seconds": np.inf}, "half_life_seconds", id="an infinite half-life is refused"),
        pytest.param({"min_observations": -3}, "min_observations", id="negative min observations are refused"),
        pytest.param({"bins": 1}, "bins", id="a single bin is refused"),
        pytest.param({"bins": 2.5}, "bins", id="a fractional bin count is refused"),
        pytest.param({"low": 1.0}, "low", id="a low end at the prior is refused"),
        pytest.param({"low": 0.0}, "low", id="a zero low end is refused"),
        pytest.param({"high": 0.9}, "high", id="a high end below the prior is refused"),
    ],
)
def test_bad_constructor_input_raises_a_one_line_error_naming_the_argument(kwargs, argument):
    args = {"prior_rps": [10.0, 20.0], "slo_seconds": [1.0, 2.0], **kwargs}
    prior, slo = args.pop("prior_rps"), args.pop("slo_seconds")
    with pytest.raises(ValueError) as error:
        CapacityLearner(prior, slo, **args)
    message = str(error.value)
    assert "\n" not in message and message.startswith(argument), message


@pytest.mark.parametrize(
    "now, load, p95, argument",
    [
        pytest.param(NOW, [1.0, 2.0, 3.0], [1.0, 1.0], "p95_seconds", id="latency for the wrong number of workloads"),
        pytest.param(NOW, [[1.0, 2.0, 3.0]], [1.0, 1.0, 1.0], "load_per_replica", id="a load table of the wrong shape"),
        pytest.param(np.nan, [1.0, 2.0, 3.0], [1.0, 1.0, 1.0], "now", id="a NaN clock"),
    ],
)
def test_bad_observations_raise_a_one_line_error_naming_the_argument(now, load, p95, argument):
    with pytest.raises(ValueError) as error:
        CapacityLearner(PRIOR, SLO).observe(now, np.array(load), np.array(p95))
    assert "\n" not in str(error.value) and str(error.value).startswith(argument)


def test_the_estimate_is_cached_read_only_and_renewed_by_the_next_observation():
    learner = CapacityLearner(PRIOR, SLO, min_observations=1)
    first = learner.estimate()
    assert learner.estimate() is first
    with pytest.raises(ValueError):
        first.rps[0] = 1.0
    learner.observe(NOW, 0.5 * PRIOR, 2.0 * SLO)
    second = learner.estimate()
    assert second is not first and second.learned.all()
    assert second.source(2) == "learned from 1 observations"
