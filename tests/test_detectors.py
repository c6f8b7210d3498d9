"""Anomaly detectors: each finds an injected anomaly at the right window, entity and code, stays quiet
on clean seasonal data and on gaps, and never raises, whatever the input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiops import xid
from aiops.detectors import (DEFAULT_CONFIG, BurnWindow, DetectorConfig, forecast_band, forecast_drift, gpu_faults,
                             latency_regression, multivariate_outliers, peer_outliers, slo_burn, stale_metrics,
                             stl_residuals)
from aiops.findings import SEVERITIES, Entity, Finding
from forecasters.drift import DriftStatus
from forecasters.series import Forecast, Series

T0 = 1_767_571_200.0  # 2026-01-05 00:00 UTC
HOUR = 3600.0
SIGMA = 2.0
GPU = Entity(node="gpu-a", gpu="3", workload="llm")


def seasonal(n: int, seed: int = 0, period: int = 24, step: float = HOUR) -> Series:
    """Daily sine around 100 with Gaussian noise (sd 2), hourly."""
    k = np.arange(n)
    values = 100 + 30 * np.sin(2 * np.pi * k / period) + np.random.default_rng(seed).normal(0, SIGMA, n)
    return Series("demand", T0, step, values)


def with_values(series: Series, values) -> Series:
    return Series(series.key, series.start, series.step, np.asarray(values, dtype=float))


def at(i: int, step: float = HOUR) -> float:
    return T0 + i * step


def truth_forecasts(n: int, period: int = 24, every: int = 6, horizon: int = 12, spread: float = 2.33 * SIGMA):
    """Forecasts issued every ``every`` steps whose median is the true seasonal shape (q0.01..q0.99)."""
    out = []
    for issue in range(-1, n, every):
        k = np.arange(issue + 1, issue + 1 + horizon)
        median = 100 + 30 * np.sin(2 * np.pi * k / period)
        out.append(Forecast("demand", at(issue), HOUR, {0.01: median - spread, 0.5: median, 0.99: median + spread}, "truth"))
    return out


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


# -- forecast_band -------------------------------------------------------------------------------
def test_forecast_band_quiet_on_clean_seasonal_data():
    series = seasonal(240)
    assert forecast_band(series, truth_forecasts(240)) == []


def test_forecast_band_flags_a_sustained_excursion_with_its_window():
    series = seasonal(240)
    values = series.values.copy()
    values[100:106] += 10 * SIGMA  # 6 steps well above
    values[150:152] -= 10 * SIGMA  # 2 steps below: under min_steps
    found = forecast_band(with_values(series, values), truth_forecasts(240), entity=Entity(workload="llm"))
    assert codes(found) == ["ABOVE_FORECAST"]
    f = found[0]
    assert f.window == (at(100), at(105)) and f.entity == Entity(workload="llm") and f.metric == "demand"
    assert f.score > 1.0 and f.expected_band[0] < f.expected_band[1] < f.observed
    assert f.evidence[0].at == at(100) and "workload llm" in f.summary
    below = forecast_band(with_values(series, values), truth_forecasts(240), min_steps=2)
    assert codes(below) == ["ABOVE_FORECAST", "BELOW_FORECAST"] and below[1].window == (at(150), at(151))


def test_forecast_band_uses_the_latest_forecast_issued_before_each_time():
    series = with_values(seasonal(12), np.full(12, 50.0))
    low = Forecast("demand", at(-1), HOUR, {0.05: np.full(12, 0.0), 0.95: np.full(12, 10.0)}, "old")
    right = Forecast("demand", at(2), HOUR, {0.05: np.full(12, 40.0), 0.95: np.full(12, 60.0)}, "new")
    # Steps 0-2 only have the old forecast (the new one is issued at step 2, so it covers 3 onwards).
    found = forecast_band(series, [right, low])
    assert codes(found) == ["ABOVE_FORECAST"] and found[0].window == (at(0), at(2))
    assert "old issued" in found[0].evidence[0].message


def test_forecast_band_levels_the_caller_asks_for():
    series = with_values(seasonal(6), np.full(6, 15.0))
    f = Forecast("demand", at(-1), HOUR, {0.05: np.zeros(6), 0.25: np.full(6, 5.0), 0.75: np.full(6, 10.0),
                                          0.95: np.full(6, 20.0)}, "m")
    assert forecast_band(series, [f]) == []  # default: widest band, 0-20
    narrow = forecast_band(series, [f], lower_q=0.25, upper_q=0.75)
    assert codes(narrow) == ["ABOVE_FORECAST"] and narrow[0].expected_band == (5.0, 10.0)
    assert narrow[0].score == pytest.approx(1.0 + 5.0 / 5.0)


def test_forecast_band_gaps_are_never_findings():
    series = seasonal(240)
    values = series.values.copy()
    values[50:80] = np.nan
    assert forecast_band(with_values(series, values), truth_forecasts(240)) == []
    assert forecast_band(series, []) == []  # nothing to compare with


# -- stl_residuals -------------------------------------------------------------------------------
def test_stl_quiet_on_clean_seasonal_data_and_finds_a_spike():
    series = seasonal(240, seed=1)
    assert stl_residuals(series, 24) == []
    values = series.values.copy()
    values[150] += 15 * SIGMA
    found = stl_residuals(with_values(series, values), 24, entity=Entity(workload="llm"))
    assert codes(found) == ["SEASONAL_RESIDUAL"]
    assert found[0].window == (at(150), at(150)) and found[0].score > 1.0
    low, high = found[0].expected_band
    assert low < series.values[150] < high < found[0].observed


def test_stl_gaps_are_filled_for_the_fit_and_never_reported():
    series = seasonal(240, seed=2)
    values = series.values.copy()
    values[60:75] = np.nan
    values[200] = np.nan
    assert stl_residuals(with_values(series, values), 24) == []
    values[120:123] += 15 * SIGMA
    found = stl_residuals(with_values(series, values), 24)
    assert [f.window for f in found] == [(at(120), at(122))]


def test_stl_needs_two_periods():
    assert stl_residuals(seasonal(47), 24) == []
    assert stl_residuals(seasonal(100), 1) == []
    assert stl_residuals(with_values(seasonal(100), np.full(100, 7.0)), 24) == []  # constant


# -- multivariate_outliers -----------------------------------------------------------------------
def fleet(n: int, seed: int = 0) -> dict[Entity, dict[str, float]]:
    rng = np.random.default_rng(seed)
    return {Entity(node=f"n{i // 8}", gpu=str(i % 8)): {"util": 80 + rng.normal(0, 2), "power": 500 + rng.normal(0, 10),
                                                        "temp": 65 + rng.normal(0, 1.5)} for i in range(n)}


def test_multivariate_flags_the_perturbed_gpu_and_ranks_its_metric_first():
    samples = fleet(12)
    assert multivariate_outliers(samples, T0) == []
    odd = Entity(node="n0", gpu="5")
    samples[odd] = {**samples[odd], "temp": 85.0}
    found = multivariate_outliers(samples, T0)
    assert [f.entity for f in found] == [odd] and codes(found) == ["MULTIVARIATE_OUTLIER"]
    assert found[0].metric == "temp" and found[0].evidence[0].metric == "temp" and found[0].score > 1.0
    assert {e.metric for e in found[0].evidence} == {"util", "power", "temp"}


def test_multivariate_catches_a_combination_no_single_metric_shows():
    rng = np.random.default_rng(3)
    samples = {}
    for i in range(40):
        util = rng.uniform(30, 90)
        samples[Entity(node="n", gpu=str(i))] = {"util": util, "power": 100 + 3 * util + rng.normal(0, 4),
                                                 "temp": 40 + 0.3 * util + rng.normal(0, 0.8)}
    odd = Entity(node="n", gpu="7")
    samples[odd] = {"util": 85.0, "power": 100 + 3 * 45.0, "temp": 40 + 0.3 * 85}  # power of a GPU at 45%
    assert peer_outliers({e: v["power"] for e, v in samples.items()}, "power", T0) == []  # no single metric is odd
    found = multivariate_outliers(samples, T0)
    assert [f.entity for f in found] == [odd]


def test_multivariate_says_nothing_below_the_minimum_and_on_gaps():
    samples = fleet(7)
    samples[Entity(node="n0", gpu="1")] = {"util": 0.0, "power": 50.0, "temp": 30.0}
    assert multivariate_outliers(samples, T0) == []
    gaps = {e: {m: math.nan for m in row} for e, row in fleet(12).items()}
    assert multivariate_outliers(gaps, T0) == []


def test_multivariate_summarises_series_over_the_trailing_window():
    rng = np.random.default_rng(4)
    samples = {Entity(node="n", gpu=str(i)): {"util": Series("util", T0, 60.0, 80 + rng.normal(0, 1, 10)),
                                              "power": Series("power", T0, 60.0, 500 + rng.normal(0, 5, 10))}
               for i in range(10)}
    odd = Entity(node="n", gpu="2")
    spiked = samples[odd]["power"].values.copy()
    spiked[-3:] = 700.0  # the last 3 minutes: the median of the last 5 is 700
    samples[odd]["power"] = Series("power", T0, 60.0, spiked)
    found = multivariate_outliers(samples, T0 + 9 * 60.0)
    assert [f.entity for f in found] == [odd] and found[0].metric == "power" and found[0].observed == 700.0
    assert found[0].window == (T0 + 5 * 60.0, T0 + 9 * 60.0)


# -- peer_outliers -------------------------------------------------------------------------------
def test_peer_outlier_picks_the_one_slow_gpu_of_eight():
    rng = np.random.default_rng(5)
    tput = {Entity(node="gpu-a", gpu=str(i)): 100 + rng.normal(0, 1) for i in range(8)}
    slow = Entity(node="gpu-a", gpu="6")
    tput[slow] = 70.0
    found = peer_outliers(tput, "tokens_per_s", T0)
    assert [f.entity for f in found] == [slow] and codes(found) == ["PEER_OUTLIER"]
    assert found[0].observed == 70.0 and found[0].score > 1.0 and "below" in found[0].summary
    assert peer_outliers(tput, "tokens_per_s", T0, direction="high") == []


def test_peer_outlier_ignores_tiny_differences_between_identical_peers():
    tput = {Entity(gpu=str(i)): 100.0 + i * 1e-4 for i in range(7)}
    tput[Entity(gpu="7")] = 100.5  # 200 MADs away, but half a percent
    assert peer_outliers(tput, "tokens_per_s", T0) == []


def test_peer_outlier_needs_three_peers_and_skips_gaps():
    assert peer_outliers({Entity(gpu="0"): 1.0, Entity(gpu="1"): 1.0, Entity(gpu="2"): 50.0}, "x", T0) == []
    values = {Entity(gpu=str(i)): 100.0 for i in range(3)}
    values[Entity(gpu="3")] = math.nan
    values[Entity(gpu="4")] = Series("x", T0 - 3000, 60.0, np.full(5, 10.0))  # stale: outside the window
    assert peer_outliers(values, "x", T0) == []


def test_peer_outlier_with_series():
    values = {Entity(pod=f"llm-{i}", workload="llm"): Series("p95", T0, 60.0, np.full(10, 0.2)) for i in range(5)}
    slow = Entity(pod="llm-3", workload="llm")
    values[slow] = Series("p95", T0, 60.0, np.r_[np.full(5, 0.2), np.full(5, 0.9)])
    found = peer_outliers(values, "latency_p95", T0 + 9 * 60.0)
    assert [f.entity for f in found] == [slow] and found[0].window == (T0 + 5 * 60.0, T0 + 9 * 60.0)  # the last 5 min


# -- gpu_faults and the XID catalogue ------------------------------------------------------------
def gpu_series(name: str, values, step: float = 60.0) -> Series:
    return Series(name, T0, step, np.asarray(values, dtype=float))


def test_xid_catalogue_covers_the_documented_codes():
    for code in (13, 31, 32, 43, 45, 48, 61, 62, 63, 64, 68, 69, 74, 79, 92, 94, 95, 119, 120):
        info = xid.lookup(code)
        assert info.code == code and info.severity in ("critical", "warning") and info.action in xid.ACTION_KINDS
        assert "not in our catalogue" not in info.meaning
    assert xid.lookup(79).severity == "critical" and xid.lookup(79).action == "cordon_drain"
    assert "fallen off the bus" in xid.lookup(79).meaning
    assert xid.lookup(48).severity == "critical" and xid.lookup(13).severity == "warning"
    assert xid.lookup(12345).action == "investigate"


def test_xid_79_fires_when_the_last_xid_changes():
    series = gpu_series("gpu_xid_last", [0, 0, np.nan, 79, 79, np.nan, 79, 79, 79, 13, 13])
    found = gpu_faults({GPU: {"gpu_xid_last": series}})
    assert codes(found) == ["XID_79", "XID_13"]
    f79 = found[0]
    assert f79.severity == "critical" and f79.window == (T0 + 3 * 60, T0 + 8 * 60) and f79.entity == GPU
    assert "fallen off the bus" in f79.summary and "cordon" in f79.summary
    assert f79.evidence[0].value == 79 and f79.evidence[0].baseline == 0 and "cordon_drain" in f79.evidence[0].message
    assert found[1].severity == "warning" and found[1].evidence[0].baseline == 79


def test_xid_already_set_at_the_first_sample_and_nothing_on_zeros_or_gaps():
    assert codes(gpu_faults({GPU: {"DCGM_FI_DEV_XID_ERRORS": gpu_series("x", [np.nan, 48, 48])}})) == ["XID_48"]
    quiet = {GPU: {"gpu_xid_last": gpu_series("x", [0, np.nan, 0, 0, np.nan]),
                   "gpu_throttle_reasons": gpu_series("t", [np.nan] * 5), "gpu_temperature_c": gpu_series("c", [np.nan] * 5)}}
    assert gpu_faults(quiet) == []


def test_throttle_bits_match_nvml():
    pynvml = pytest.importorskip("pynvml")
    from aiops.gpu_exporter import THROTTLE_REASONS as EXPORTER

    assert xid.SW_POWER_CAP == pynvml.nvmlClocksThrottleReasonSwPowerCap
    assert xid.HW_SLOWDOWN == pynvml.nvmlClocksThrottleReasonHwSlowdown
    assert xid.SW_THERMAL == pynvml.nvmlClocksThrottleReasonSwThermalSlowdown
    assert xid.HW_THERMAL == pynvml.nvmlClocksThrottleReasonHwThermalSlowdown
    assert xid.HW_POWER_BRAKE == pynvml.nvmlClocksThrottleReasonHwPowerBrakeSlowdown
    assert set(EXPORTER) <= set(xid.THROTTLE_REASONS)


def test_throttle_bitmask_decoding():
    assert xid.decode_throttle_reasons(0) == ()
    assert xid.decode_throttle_reasons(0x44) == ("sw_power_cap", "hw_thermal_slowdown")
    assert xid.decode_throttle_reasons(0x1 | 0x1000) == ("gpu_idle", "bit_0x1000")
    assert xid.throttle_kind(0x40) == (True, False) and xid.throttle_kind(0x20) == (True, False)
    assert xid.throttle_kind(0x8) == (True, False)  # HW slowdown alone: thermal
    assert xid.throttle_kind(0x88) == (False, True)  # with the power brake: power
    assert xid.throttle_kind(0x4) == (False, True) and xid.throttle_kind(0x1) == (False, False)
    assert xid.throttle_mask(72.0) == 72 and xid.throttle_mask(math.nan) is None and xid.throttle_mask(-1.0) is None


@pytest.mark.parametrize("mask, code, severity", [
    (0x40, "THERMAL_THROTTLE", "warning"), (0x20 | 0x8, "THERMAL_THROTTLE", "warning"),
    (0x4, "POWER_THROTTLE", "info"), (0x88, "POWER_THROTTLE", "warning"), (0x1, None, None), (0x2, None, None),
])
def test_throttle_findings(mask, code, severity):
    values = [0, mask, mask, np.nan, mask, mask, 0, mask, 0]  # one gap bridged: 4 samples from step 1
    found = gpu_faults({GPU: {"DCGM_FI_DEV_CLOCK_THROTTLE_REASONS": gpu_series("t", values)}})
    if code is None:
        assert found == []
    else:
        assert codes(found) == [code] and found[0].severity == severity
        assert found[0].window == (T0 + 60, T0 + 5 * 60) and found[0].score == pytest.approx(4 / 3)


def test_short_throttling_and_temperature_rules():
    brief = {GPU: {"gpu_throttle_reasons": gpu_series("t", [0, 0x40, 0x40, 0, 0x40])}}
    assert gpu_faults(brief) == []
    hot = {GPU: {"gpu_temperature_c": gpu_series("c", [70, 86, 88, 90, 80])}}
    found = gpu_faults(hot)
    assert codes(found) == ["THERMAL_THROTTLE"] and found[0].observed == 90 and found[0].score == pytest.approx(2.0)
    assert gpu_faults(hot, config=DetectorConfig(slowdown_temp_c=92.0)) == []


def test_memory_full_row_remap_and_ecc():
    used = gpu_series("u", [70_000, 78_000, 78_500, 79_000, 60_000])
    free = gpu_series("f", [10_000, 2_000, 1_500, 1_000, 20_000])
    found = gpu_faults({GPU: {"gpu_memory_used_mib": used, "gpu_memory_free_mib": free}})
    assert codes(found) == ["GPU_MEMORY_FULL"] and found[0].window == (T0 + 60, T0 + 180)
    assert found[0].observed == pytest.approx(79_000 / 80_000)
    remap = gpu_faults({GPU: {"DCGM_FI_DEV_ROW_REMAP_FAILURE": gpu_series("r", [0, 0, 1, np.nan, np.nan, 1])}})
    assert codes(remap) == ["ROW_REMAP_FAILURE"] and remap[0].severity == "critical"
    assert remap[0].window == (T0 + 120, T0 + 300)
    ecc = gpu_faults({GPU: {"DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": gpu_series("e", [2, 2, 3, 5, 5, 0, 0, np.nan, 1])}})
    assert codes(ecc) == ["ECC_UNCORRECTABLE", "ECC_UNCORRECTABLE"]  # 2->3->5, then 0 (driver reload) -> 1
    assert ecc[0].window == (T0 + 120, T0 + 180) and ecc[0].evidence[0].baseline == 2 and ecc[0].observed == 5


# -- slo_burn and latency_regression -------------------------------------------------------------
MINUTE = 60.0


def bad_ratio(n: int, burst_ratio: float, burst_steps: int, seed: int = 0) -> Series:
    """A 99.9% SLO meeting itself (bad ratio ~0.0001), then ``burst_ratio`` for the last ``burst_steps`` minutes."""
    values = np.abs(np.random.default_rng(seed).normal(1e-4, 3e-5, n))
    values[n - burst_steps:] = burst_ratio
    return Series("error_ratio", T0, MINUTE, values)


def test_slo_burn_fast_pair_fires_critical():
    found = slo_burn(bad_ratio(480, 0.02, 90), 0.999, entity=Entity(workload="llm"))  # 20x burn for 90 min
    assert codes(found) == ["SLO_BURN"] and found[0].severity == "critical"
    start, end = found[0].window
    # The 1 h window's average passes 14.4x after 0.72 h of the burst; the 5 min one after 5 min.
    assert start == pytest.approx(at(480 - 90 + 43, MINUTE)) and end == at(479, MINUTE)
    assert found[0].score == pytest.approx(20 / 14.4, rel=0.01) and "workload llm" in found[0].summary


def test_slo_burn_just_under_the_threshold_is_quiet():
    assert slo_burn(bad_ratio(480, 0.0140, 120), 0.999) == []  # 14.0x for 2 h: under 14.4x and, over 6 h, under 6x
    assert codes(slo_burn(bad_ratio(480, 0.0150, 120), 0.999)) == ["SLO_BURN"]


def test_slo_burn_slow_pair_warns():
    found = slo_burn(bad_ratio(480, 0.008, 400), 0.999)  # 8x for 6.7 h: slow pair only
    assert codes(found) == ["SLO_BURN"] and found[0].severity == "warning"


def test_slo_burn_from_counts_and_configurable_windows():
    total = Series("requests", T0, MINUTE, np.full(480, 1000.0))
    bad = Series("errors", T0, MINUTE, np.r_[np.zeros(420), np.full(60, 50.0)])  # 5% bad = 50x, last hour
    found = slo_burn((bad, total), 0.999)
    assert codes(found) == ["SLO_BURN", "SLO_BURN"] and {f.severity for f in found} == {"critical", "warning"}
    tight = slo_burn((bad, total), 0.999, windows=[BurnWindow(600.0, 120.0, 100.0, "critical")])
    assert tight == []
    with pytest.raises(ValueError):
        slo_burn(bad, 1.0)


def test_slo_burn_quiet_on_gaps_and_too_little_data():
    values = bad_ratio(480, 0.02, 90).values.copy()
    values[400:] = np.nan  # the burst is not observed
    assert slo_burn(Series("e", T0, MINUTE, values), 0.999) == []
    assert slo_burn(bad_ratio(20, 0.5, 20), 0.999) == []  # 20 min of data: the 1 h window is under half covered


def latency(n: int = 120, step_at: int | None = None, level: float = 0.35, seed: int = 0) -> Series:
    values = 0.2 + np.random.default_rng(seed).normal(0, 0.01, n)
    if step_at is not None:
        values[step_at:] = level + np.random.default_rng(seed + 1).normal(0, 0.01, n - step_at)
    return Series("latency_p95", T0, MINUTE, values)


def test_latency_regression_finds_the_step_and_is_quiet_otherwise():
    assert latency_regression(latency()) == []
    found = latency_regression(latency(step_at=100), entity=Entity(workload="llm"))
    assert codes(found) == ["LATENCY_REGRESSION"]
    start, end = found[0].window
    assert at(96, MINUTE) <= start <= at(100, MINUTE) and end == at(119, MINUTE)
    assert found[0].evidence[0].baseline == pytest.approx(0.2, abs=0.01) and found[0].observed > 0.3
    one_blip = latency().values.copy()
    one_blip[110] = 5.0
    assert latency_regression(Series("l", T0, MINUTE, one_blip)) == []


def test_latency_over_an_absolute_threshold():
    found = latency_regression(latency(step_at=100), threshold_seconds=0.3)
    assert codes(found) == ["LATENCY_REGRESSION"] and found[0].score == pytest.approx(0.35 / 0.3, rel=0.05)
    assert latency_regression(latency(), threshold_seconds=0.3) == []


# -- stale_metrics and forecast_drift ------------------------------------------------------------
def test_stale_and_missing_metrics():
    now = T0 + 20 * MINUTE
    fresh = Series("demand", T0, MINUTE, np.arange(21.0))
    stale = Series("latency_p95", T0, MINUTE, np.r_[np.ones(10), np.full(11, np.nan)])
    empty = Series("queue_depth", T0, MINUTE, np.full(21, np.nan))
    found = stale_metrics({"demand": fresh, "latency_p95": stale, "queue_depth": empty, "kv": None}, now, 300.0,
                          entity=Entity(workload="llm"))
    assert [(f.code, f.metric) for f in found] == [("METRICS_MISSING", "kv"), ("STALE_METRICS", "latency_p95"),
                                                   ("METRICS_MISSING", "queue_depth")]
    assert all(f.severity == "warning" and f.entity == Entity(workload="llm") for f in found)
    assert found[1].window == (T0 + 9 * MINUTE, now) and found[1].score == pytest.approx(11 * 60 / 300)
    nested = stale_metrics({GPU: {"gpu_temperature_c": stale}}, now, 300.0)
    assert [(f.entity, f.code) for f in nested] == [(GPU, "STALE_METRICS")]


def status(drifting: bool, retrain: bool = False, ratio: float | None = 2.4) -> DriftStatus:
    return DriftStatus("llm", 5, T0, 24.0, 10.0, "backtest", ratio, 60, 0.8, drifting, retrain,
                       "drifting: live MAE 24 rps is 2.40x the backtest's 10.0 (threshold 1.5x)")


def test_forecast_drift_quotes_the_monitor():
    found = forecast_drift({"llm": status(True), "chat": status(False)}, T0 + 60)
    assert codes(found) == ["FORECAST_DRIFT"] and found[0].entity == Entity(workload="llm")
    assert "2.40x" in found[0].summary and found[0].score == pytest.approx(2.4 / 1.5)
    assert found[0].evidence[0].value == 24.0 and found[0].evidence[0].baseline == 10.0
    retrain_only = forecast_drift({"llm": status(False, retrain=True, ratio=None)}, T0)
    assert codes(retrain_only) == ["FORECAST_DRIFT"] and retrain_only[0].score == 1.0


# -- properties ----------------------------------------------------------------------------------
FLOATS = st.one_of(st.floats(-1e6, 1e6), st.just(math.nan), st.just(math.inf))
ARRAYS = st.lists(FLOATS, min_size=0, max_size=60).map(lambda v: np.array(v, dtype=float))
PROPERTY = settings(derandomize=True, deadline=None, max_examples=150)


def check(findings: list[Finding], lo: float, hi: float) -> None:
    for f in findings:
        assert math.isfinite(f.score) and f.score >= 0 and f.severity in SEVERITIES
        assert lo <= f.window[0] <= f.window[1] <= hi
        json.dumps(f.to_json(), allow_nan=False)
        assert f.summary.endswith(".")


def run_all(values: np.ndarray) -> list[Finding]:
    s = Series("m", T0, MINUTE, values)
    n = len(values)
    forecast = Forecast("m", T0 - MINUTE, MINUTE, {0.1: np.zeros(max(n, 1)), 0.9: np.ones(max(n, 1))}, "f")
    peers = {Entity(gpu=str(i)): float(v) for i, v in enumerate(values[:12])}
    table = {Entity(gpu=str(i)): {"a": float(v), "b": float(values[-1 - i])} for i, v in enumerate(values[:12])}
    clipped = Series("m", T0, MINUTE, np.clip(values, 0, 1) if n else values)
    return [*forecast_band(s, [forecast]), *stl_residuals(s, 4), *latency_regression(s),
            *latency_regression(s, threshold_seconds=0.5),
            *slo_burn(clipped, 0.99, windows=[BurnWindow(600, 120, 2, "critical")]),
            *gpu_faults({GPU: {"gpu_xid_last": s, "gpu_throttle_reasons": s, "gpu_temperature_c": s,
                               "gpu_memory_used_mib": s, "gpu_memory_free_mib": clipped,
                               "DCGM_FI_DEV_ROW_REMAP_FAILURE": s, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": s}}),
            *peer_outliers(peers, "m", T0), *multivariate_outliers(table, T0, min_entities=4)]


@PROPERTY
@given(ARRAYS)
def test_detectors_never_raise_and_stay_in_bounds(values):
    found = run_all(values)
    span_end = T0 + max(len(values) - 1, 0) * MINUTE
    check([f for f in found if f.detector not in ("peer_outliers", "multivariate_outliers")], T0, span_end)
    check([f for f in found if f.detector in ("peer_outliers", "multivariate_outliers")], T0, T0)
    assert [f.to_json() for f in run_all(values)] == [f.to_json() for f in found]  # deterministic


@PROPERTY
@given(st.lists(st.just(math.nan), max_size=60).map(lambda v: np.array(v, dtype=float)))
def test_all_gaps_give_nothing_but_missing(values):
    assert run_all(values) == []
    found = stale_metrics({"m": Series("m", T0, MINUTE, values)}, T0 + 3600, 300.0)
    assert codes(found) == ["METRICS_MISSING"]


@PROPERTY
@given(ARRAYS, st.floats(0, 1e4))
def test_stale_metrics_bounds(values, age):
    now = T0 + age
    found = stale_metrics({"m": Series("m", T0, MINUTE, values)}, now, 120.0)
    assert len(found) <= 1
    check(found, min(T0, now), now)


@settings(derandomize=True, deadline=None, max_examples=25)
@given(st.integers(0, 2**31 - 1))
def test_clean_seasonal_data_is_quiet_whatever_the_noise_seed(seed):
    series = seasonal(240, seed=seed)
    values = series.values.copy()
    values[np.random.default_rng(seed).integers(0, 240, 20)] = np.nan  # scattered gaps
    noisy = with_values(series, values)
    assert forecast_band(noisy, truth_forecasts(240)) == []
    assert stl_residuals(noisy, 24) == []
    assert latency_regression(noisy) == []


def test_default_config_is_frozen():
    with pytest.raises(AttributeError):
        DEFAULT_CONFIG.min_steps = 1  # type: ignore[misc]
