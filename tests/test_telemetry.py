"""Tests for simulations.telemetry: a simulated GPU cluster's telemetry and the faults injected into it.

Most fault tests compare a faulted run with the clean run of the same seed: the faults draw from their
own random streams, so anything a fault does not reach must be bit-identical.
"""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiops.findings import Entity
from forecasters.series import Series
from simulations.telemetry import (
    EXPECTED_CAUSES,
    FAULT_KINDS,
    GPU_METRICS,
    POD_METRICS,
    WORKLOAD_METRICS,
    FaultSpec,
    InjectedFault,
    Rollout,
    Telemetry,
    simulate_telemetry,
)
from simulations.traces import SYNTHETIC_START

SEED = 7
HOUR = 3600.0
FB_TOTAL = 81559.0


@functools.lru_cache(maxsize=None)
def run(*faults: str, seed: int = SEED) -> Telemetry:
    return simulate_telemetry(seed=seed, faults=faults)


def clean() -> Telemetry:
    return run()


def fault_of(tel: Telemetry) -> tuple[InjectedFault, int, int]:
    """The only fault, its first affected sample and the first sample at or after its end."""
    (fault,) = tel.faults
    return fault, tel.index_of(fault.start), tel.index_of(fault.end)


def stack(tel: Telemetry, metric: str, within: Entity = Entity()) -> np.ndarray:
    return np.stack([tel.series[metric][e] for e in tel.entities(metric, within)])


def changes(a: Telemetry, b: Telemetry) -> dict[tuple[str, Entity], np.ndarray]:
    """(metric, entity) -> indices where the two runs differ (NaN equal to NaN)."""
    out = {}
    for metric, per_entity in a.series.items():
        for entity, x in per_entity.items():
            y = b.series[metric][entity]
            differ = ~((x == y) | (np.isnan(x) & np.isnan(y)))
            if differ.any():
                out[(metric, entity)] = np.flatnonzero(differ)
    return out


def pods_of(tel: Telemetry, workload: str) -> list[Entity]:
    return sorted(e for e in tel.pods.values() if e.workload == workload)


def workload_key(workload: str) -> Entity:
    return Entity(workload=workload, namespace="inference")


# -- shape, determinism, speed ----------------------------------------------------------------------
def test_same_seed_gives_identical_telemetry_and_another_seed_does_not():
    a = simulate_telemetry(seed=11, faults=FAULT_KINDS)
    b = simulate_telemetry(seed=11, faults=FAULT_KINDS)
    assert a == b and a.faults == b.faults and a.rollouts == b.rollouts
    c = simulate_telemetry(seed=12, faults=FAULT_KINDS)
    assert a != c
    assert not np.array_equal(stack(a, "demand_rps"), stack(c, "demand_rps"))


def test_one_day_has_1440_minutes_of_every_metric_for_every_entity():
    tel = clean()
    assert (tel.start, tel.step, tel.n_steps) == (SYNTHETIC_START, 60.0, 1440)
    assert set(tel.series) == {*GPU_METRICS, *WORKLOAD_METRICS, *POD_METRICS}
    assert all(len(tel.series[m]) == 32 for m in GPU_METRICS)
    assert all(set(tel.series[m]) == {workload_key(w) for w in ("chat", "code", "embed")} for m in WORKLOAD_METRICS)
    assert all(set(tel.series[m]) == set(tel.pods.values()) for m in POD_METRICS)
    for per_entity in tel.series.values():
        for values in per_entity.values():
            assert values.shape == (1440,) and values.dtype == np.float64
            assert not values.flags.writeable
    np.testing.assert_array_equal(tel.times[[0, -1]], [SYNTHETIC_START, SYNTHETIC_START + 1439 * 60])


def test_steps_and_days_set_the_grid():
    tel = simulate_telemetry(days=0.5, step=300.0, nodes=2, gpus_per_node=4, workloads=("a", "b"))
    assert tel.n_steps == 144 and tel.step == 300.0
    assert len(tel.series["DCGM_FI_DEV_GPU_UTIL"]) == 8
    assert {e.workload for e in tel.pods.values()} == {"a", "b"}


def test_topology_pods_sit_on_gpus_and_some_gpus_are_idle():
    tel = clean()
    gpus = tel.entities("DCGM_FI_DEV_GPU_UTIL")
    assert len({(e.node, e.gpu) for e in gpus}) == 32
    assert {e.node for e in gpus} == {f"gpu-node-{i}" for i in range(4)}
    busy = [e for e in gpus if e.pod]
    idle = [e for e in gpus if not e.pod]
    assert set(busy) == set(tel.pods.values()) and idle
    assert all(e == Entity(e.node, e.gpu) for e in idle)
    for name, entity in tel.pods.items():
        assert entity.pod == name and name.startswith(entity.workload + "-") and entity.namespace == "inference"
        assert entity.node and entity.gpu
    counts = {w: len(pods_of(tel, w)) for w in ("chat", "code", "embed")}
    assert counts["chat"] > counts["code"] > counts["embed"] >= 2
    assert set(tel.objectives) == {"chat", "code", "embed"}


def test_one_day_of_four_nodes_with_all_faults_simulates_in_well_under_a_second():
    simulate_telemetry(faults=FAULT_KINDS)  # warm imports and caches
    best = min(_timed(lambda: simulate_telemetry(seed=1, faults=FAULT_KINDS)) for _ in range(3))
    assert best < 0.5


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def test_everything_in_all_is_defined():
    from simulations import telemetry

    assert all(hasattr(telemetry, name) for name in telemetry.__all__)
    assert set(EXPECTED_CAUSES) == set(FAULT_KINDS)


def test_throttle_bits_are_nvmls():
    pynvml = pytest.importorskip("pynvml")
    from simulations import telemetry

    assert telemetry.SW_THERMAL_SLOWDOWN == pynvml.nvmlClocksThrottleReasonSwThermalSlowdown
    assert telemetry.HW_THERMAL_SLOWDOWN == pynvml.nvmlClocksThrottleReasonHwThermalSlowdown


# -- a clean run looks normal ------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2, SEED])
def test_clean_run_has_no_xid_no_throttling_no_full_memory_and_no_gaps(seed):
    tel = run(seed=seed)
    assert tel.faults == () and tel.rollouts == ()
    for per_entity in tel.series.values():
        assert all(np.isfinite(v).all() for v in per_entity.values())
    assert (stack(tel, "DCGM_FI_DEV_XID_ERRORS") == 0).all()
    assert (stack(tel, "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS") == 0).all()
    used, free = stack(tel, "DCGM_FI_DEV_FB_USED"), stack(tel, "DCGM_FI_DEV_FB_FREE")
    np.testing.assert_allclose(used + free, FB_TOTAL)
    assert (used / (used + free) < 0.9).all()
    assert stack(tel, "DCGM_FI_DEV_GPU_TEMP").max() < 80
    util = stack(tel, "DCGM_FI_DEV_GPU_UTIL")
    assert util.min() >= 0 and util.max() <= 85
    restarts = stack(tel, "kube_pod_container_status_restarts_total")
    assert (restarts == restarts[:, :1]).all()
    for w in ("chat", "code", "embed"):
        key = workload_key(w)
        assert (tel.series["replicas_available"][key] == len(pods_of(tel, w))).all()
        assert tel.series["slo_bad_ratio"][key].max() < 0.01
        assert tel.series["latency_p95_seconds"][key].max() < tel.objectives[w]


def test_clean_run_passes_the_gpu_fault_rules_quietly():
    from aiops.detectors import gpu_faults

    assert gpu_faults(_gpu_series(clean())) == []


def _gpu_series(tel: Telemetry) -> dict[Entity, dict[str, Series]]:
    return {e: {m: tel.series_of(m, e) for m in GPU_METRICS} for e in tel.entities("DCGM_FI_DEV_GPU_UTIL")}


# -- the model's correlations ---------------------------------------------------------------------------
def test_demand_follows_a_daily_pattern_at_a_distinct_level_per_workload():
    tel = clean()
    hour = (tel.times - SYNTHETIC_START) / HOUR
    medians = {}
    for w in ("chat", "code", "embed"):
        demand = tel.series["demand_rps"][workload_key(w)]
        night, day = np.median(demand[(hour >= 3) & (hour < 5)]), np.median(demand[(hour >= 12) & (hour < 16)])
        assert night < 0.4 * day
        medians[w] = np.median(demand)
    assert len({round(m, -1) for m in medians.values()}) == 3
    assert medians["embed"] > 5 * medians["code"]


def test_util_power_memory_and_latency_move_with_the_load_per_pod():
    tel = clean()
    for w in ("chat", "embed"):
        per_pod = tel.series["demand_rps"][workload_key(w)] / tel.series["replicas_available"][workload_key(w)]
        for pod in pods_of(tel, w)[:2]:
            util = tel.series["DCGM_FI_DEV_GPU_UTIL"][pod]
            assert np.corrcoef(per_pod, util)[0, 1] > 0.97
            assert np.corrcoef(util, tel.series["DCGM_FI_DEV_POWER_USAGE"][pod])[0, 1] > 0.97
            assert np.corrcoef(util, tel.series["DCGM_FI_DEV_FB_USED"][pod])[0, 1] > 0.9
            assert np.corrcoef(util, tel.series["pod_latency_p95_seconds"][pod])[0, 1] > 0.8


def test_temperature_follows_power_with_a_lag():
    tel = clean()
    pod = pods_of(tel, "chat")[0]
    t, p = tel.series["DCGM_FI_DEV_GPU_TEMP"][pod], tel.series["DCGM_FI_DEV_POWER_USAGE"][pod]
    assert np.corrcoef(t, p)[0, 1] > 0.9 and t[p > np.percentile(p, 90)].mean() > t[p < np.percentile(p, 10)].mean() + 10
    # A step in power (a crash-looping pod stops serving mid-afternoon): power drops at once, the GPU
    # cools over minutes.
    at = SYNTHETIC_START + 14 * HOUR
    tel = simulate_telemetry(seed=SEED, faults=[FaultSpec("crash_loop", at=at, entity=Entity(workload="chat"))])
    fault, k0, _ = fault_of(tel)
    looping = next(e for e in pods_of(tel, fault.entity.workload)
                   if tel.series["kube_pod_container_status_restarts_total"][e][k0 + 1] > tel.series["kube_pod_container_status_restarts_total"][e][0])
    t, p = tel.series["DCGM_FI_DEV_GPU_TEMP"][looping], tel.series["DCGM_FI_DEV_POWER_USAGE"][looping]
    k = k0 + int(np.argmax(p[k0:k0 + 3] < 80))  # the first idle sample
    assert p[k - 1] > 100 and p[k] < 80
    drop = t[k - 1] - t[k + 10]
    assert drop >= 8
    assert 0.1 < (t[k - 1] - t[k]) / drop < 0.7 and (t[k - 1] - t[k + 4]) / drop > 0.75


def test_idle_gpus_draw_idle_power_and_use_no_memory():
    tel = clean()
    idle = [e for e in tel.entities("DCGM_FI_DEV_GPU_UTIL") if not e.pod]
    for e in idle:
        assert (tel.series["DCGM_FI_DEV_GPU_UTIL"][e] == 0).all()
        assert (tel.series["DCGM_FI_DEV_FB_USED"][e] == 0).all()
        assert tel.series["DCGM_FI_DEV_POWER_USAGE"][e].max() < 80
        assert (tel.series["DCGM_FI_DEV_SM_CLOCK"][e] < 500).all()


# -- every fault: its signature at its entity and time, and nowhere else ---------------------------------
def test_every_fault_is_recorded_with_its_expected_cause_and_entity_level():
    tel = run(*FAULT_KINDS)
    levels = {"traffic_surge": "workload", "memory_leak": "gpu", "xid79": "gpu", "thermal_throttle": "gpu",
              "rollout_regression": "workload", "crash_loop": "workload", "metrics_missing": "node"}
    assert [f.kind for f in tel.faults] == list(FAULT_KINDS)
    for f in tel.faults:
        assert f.expected_cause == EXPECTED_CAUSES[f.kind] and f.description
        assert f.entity.level == levels[f.kind]
        assert tel.start + 2 * HOUR <= f.start < f.end <= tel.times[-1]
    assert {f.kind: f.entity for f in tel.faults}["memory_leak"] in set(tel.pods.values())
    assert all(not f.entity.pod for f in tel.faults if f.kind in ("xid79", "thermal_throttle"))


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_a_fault_changes_nothing_before_its_start_and_something_at_it(kind):
    tel = run(kind)
    fault, k0, _ = fault_of(tel)
    diffs = changes(tel, clean())
    assert diffs, f"{kind} changed nothing"
    assert min(int(d.min()) for d in diffs.values()) == k0


ALLOWED = {  # what each fault may change: (metric, entity) -> bool, given the fault and the topology
    "traffic_surge": lambda m, e, f, tel: e.workload == f.entity.workload,
    "memory_leak": lambda m, e, f, tel: e.workload == f.entity.workload,
    "xid79": lambda m, e, f, tel: f.entity.contains(e) or e.workload == _workload_on(tel, f.entity),
    "thermal_throttle": lambda m, e, f, tel: f.entity.contains(e) or (
        e == workload_key(_workload_on(tel, f.entity)) and m in ("latency_p95_seconds", "slo_bad_ratio")),
    "rollout_regression": lambda m, e, f, tel: e.workload == f.entity.workload and m in (
        "latency_p95_seconds", "slo_bad_ratio", "pod_latency_p95_seconds"),
    "crash_loop": lambda m, e, f, tel: e.workload == f.entity.workload,
    "metrics_missing": lambda m, e, f, tel: f.entity.contains(e) and m in GPU_METRICS,
}


def _workload_on(tel: Telemetry, gpu: Entity) -> str:
    (entity,) = tel.entities("DCGM_FI_DEV_GPU_UTIL", gpu)
    return entity.workload


@pytest.mark.parametrize("seed", [SEED, 3])
@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_a_fault_reaches_only_its_own_entities(kind, seed):
    tel = run(kind, seed=seed)
    (fault,) = tel.faults
    stray = [(m, e.label()) for (m, e) in changes(tel, run(seed=seed)) if not ALLOWED[kind](m, e, fault, tel)]
    assert stray == []


def test_traffic_surge_multiplies_demand_of_its_workload_only_and_loads_its_pods():
    tel, base = run("traffic_surge"), clean()
    fault, k0, k1 = fault_of(tel)
    w = fault.entity.workload
    assert fault.entity == workload_key(w) and fault.expected_cause == "TRAFFIC_SURGE"
    ratio = tel.series["demand_rps"][fault.entity] / base.series["demand_rps"][fault.entity]
    assert 1.0 < ratio[k0] < 1.5  # ramping
    hold = ratio[k0 + 5:k1 - 5]
    assert len(hold) >= 30 and np.allclose(hold, hold[0]) and 2.2 <= hold[0] <= 2.8
    assert np.allclose(ratio[:k0], 1.0) and np.allclose(ratio[k1:], 1.0)
    for other in {"chat", "code", "embed"} - {w}:
        np.testing.assert_array_equal(tel.series["demand_rps"][workload_key(other)],
                                      base.series["demand_rps"][workload_key(other)])
    hold = slice(k0 + 5, k1 - 5)
    for pod in pods_of(tel, w):  # even at night, when 2.5x the demand still fits, it shows
        assert (tel.series["DCGM_FI_DEV_GPU_UTIL"][pod][hold] > base.series["DCGM_FI_DEV_GPU_UTIL"][pod][hold]).all()
        assert tel.series["pod_latency_p95_seconds"][pod][hold].mean() > 1.05 * base.series["pod_latency_p95_seconds"][pod][hold].mean()
    assert tel.series["latency_p95_seconds"][fault.entity][hold].mean() > 1.05 * base.series["latency_p95_seconds"][fault.entity][hold].mean()
    assert tel.series["slo_bad_ratio"][fault.entity][hold].mean() > 2 * base.series["slo_bad_ratio"][fault.entity][hold].mean()


def test_memory_leak_fills_one_gpu_steadily_then_the_pod_restarts_and_memory_drops():
    tel, base = run("memory_leak"), clean()
    fault, k0, k1 = fault_of(tel)
    pod = fault.entity
    assert pod in set(tel.pods.values()) and fault.expected_cause == "GPU_MEMORY_LEAK"
    used = tel.series["DCGM_FI_DEV_FB_USED"][pod]
    ratio = used / FB_TOTAL
    assert ratio[:k0].max() < 0.9 and ratio[k1 - 1] >= 0.98
    growth = used[k0:k1]
    slope, intercept = np.polyfit(np.arange(len(growth)), growth, 1)
    assert slope > 0 and np.corrcoef(np.arange(len(growth)), growth)[0, 1] > 0.95  # steady, not a jump
    restarts = tel.series["kube_pod_container_status_restarts_total"][pod]
    assert restarts[k1] == restarts[k1 - 1] + 1 and (np.diff(restarts) >= 0).all() and restarts[-1] == restarts[0] + 1
    assert used[k1 + 5] < 0.9 * FB_TOTAL  # back to normal after the restart
    lat, lat0 = tel.series["pod_latency_p95_seconds"][pod], base.series["pod_latency_p95_seconds"][pod]
    assert lat[k1 - 10:k1].mean() > 1.3 * lat0[k1 - 10:k1].mean()
    others = [e for e in tel.entities("DCGM_FI_DEV_FB_USED") if e != pod]
    assert all(np.nanmax(tel.series["DCGM_FI_DEV_FB_USED"][e] / FB_TOTAL) < 0.9 for e in others)


def test_xid79_shows_the_code_then_only_that_gpu_goes_dark_and_its_workload_loses_a_replica():
    tel, base = run("xid79"), clean()
    fault, k0, k1 = fault_of(tel)
    assert fault.entity == Entity(fault.entity.node, fault.entity.gpu) and fault.expected_cause == "GPU_FELL_OFF_BUS"
    (gpu,) = tel.entities("DCGM_FI_DEV_XID_ERRORS", fault.entity)
    xid = tel.series["DCGM_FI_DEV_XID_ERRORS"][gpu]
    assert (xid[:k0] == 0).all() and (xid[k0:k0 + 2] == 79).all()
    for metric in GPU_METRICS:
        values = tel.series[metric][gpu]
        assert np.isfinite(values[:k0 + 2]).all() and np.isnan(values[k0 + 2:]).all()
        for other, v in tel.series[metric].items():
            if other != gpu:
                assert np.isfinite(v).all(), (metric, other)
    assert k1 == tel.n_steps - 1  # it stays off the bus
    w = workload_key(gpu.workload)
    replicas, replicas0 = tel.series["replicas_available"][w], base.series["replicas_available"][w]
    assert (replicas[:k0] == replicas0[:k0]).all() and (replicas[k0:] == replicas0[k0:] - 1).all()
    restarts = tel.series["kube_pod_container_status_restarts_total"][gpu]
    assert restarts[-1] == restarts[0] + 1
    assert np.isnan(tel.series["pod_latency_p95_seconds"][gpu][k0:]).all()
    lat, lat0 = tel.series["latency_p95_seconds"][w], base.series["latency_p95_seconds"][w]
    assert (lat[k0:] > lat0[k0:]).mean() > 0.95


def test_thermal_throttle_heats_one_gpu_sets_thermal_bits_slows_its_clock_and_its_pod():
    tel, base = run("thermal_throttle"), clean()
    fault, k0, k1 = fault_of(tel)
    assert fault.entity == Entity(fault.entity.node, fault.entity.gpu) and fault.expected_cause == "GPU_THERMAL_THROTTLING"
    (gpu,) = tel.entities("DCGM_FI_DEV_GPU_TEMP", fault.entity)
    temp = tel.series["DCGM_FI_DEV_GPU_TEMP"][gpu]
    assert temp[k0] > temp[k0 - 1] and 88 <= temp[k0:k1].max() <= 95
    bits = tel.series["DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"][gpu].astype(int)
    hot = np.flatnonzero(bits & 0x40)
    assert len(hot) >= 20 and k0 < hot[0] and hot[-1] < k1 + 5
    assert ((bits[hot] & 0x20) > 0).all()
    clock, clock0 = tel.series["DCGM_FI_DEV_SM_CLOCK"][gpu], base.series["DCGM_FI_DEV_SM_CLOCK"][gpu]
    assert 0.55 <= np.median(clock[hot] / clock0[hot]) <= 0.72
    siblings = [p for p in pods_of(tel, gpu.workload) if p != gpu]
    lat = tel.series["pod_latency_p95_seconds"]
    before = lat[gpu][k0 - 30:k0].mean() / np.mean([lat[p][k0 - 30:k0].mean() for p in siblings])
    during = lat[gpu][hot].mean() / np.mean([lat[p][hot].mean() for p in siblings])
    assert during > 1.2 * before
    assert tel.series["DCGM_FI_DEV_GPU_UTIL"][gpu][hot].mean() > base.series["DCGM_FI_DEV_GPU_UTIL"][gpu][hot].mean()
    others = np.stack([v for e, v in tel.series["DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"].items() if e != gpu])
    assert (others == 0).all()


def test_rollout_regression_is_recorded_and_slows_every_pod_of_its_workload_with_demand_unchanged():
    tel, base = run("rollout_regression"), clean()
    fault, k0, k1 = fault_of(tel)
    w = fault.entity.workload
    first, *rollback = tel.rollouts
    assert first.workload == w and first.at == fault.start and fault.expected_cause == "ROLLOUT_REGRESSION"
    assert rollback and rollback[0].at == fault.end and rollback[0].revision != first.revision
    np.testing.assert_array_equal(tel.series["demand_rps"][fault.entity], base.series["demand_rps"][fault.entity])
    for pod in pods_of(tel, w):
        ratio = tel.series["pod_latency_p95_seconds"][pod] / base.series["pod_latency_p95_seconds"][pod]
        assert np.allclose(ratio[:k0], 1.0) and np.allclose(ratio[k1:], 1.0)
        assert np.allclose(ratio[k0:k1], ratio[k0]) and 1.6 <= ratio[k0] <= 2.0
    bad, bad0 = tel.series["slo_bad_ratio"][fault.entity], base.series["slo_bad_ratio"][fault.entity]
    assert (bad[k0:k1] > bad0[k0:k1]).all()


def test_crash_loop_restarts_several_pods_every_few_minutes_and_drops_replicas():
    tel, base = run("crash_loop"), clean()
    fault, k0, k1 = fault_of(tel)
    w = fault.entity
    restarts = {p: tel.series["kube_pod_container_status_restarts_total"][p] for p in pods_of(tel, w.workload)}
    looping = [p for p, r in restarts.items() if r[-1] > r[0]]
    assert len(looping) >= 2 and len(looping) < len(restarts)
    minutes = (k1 - k0) * tel.step / 60
    for p in looping:
        r = restarts[p]
        assert r[-1] - r[0] >= minutes / 5 - 1  # every 2-5 min
        assert r[k0 - 1] == r[0] and r[k1] == r[-1]  # only while it lasts
        assert np.isnan(tel.series["pod_latency_p95_seconds"][p][k0 + 1:k1]).all()
    replicas = tel.series["replicas_available"][w]
    assert (replicas[k0 + 1:k1] == len(restarts) - len(looping)).all() and replicas[k1] == len(restarts)
    for p in set(restarts) - set(looping):  # the survivors take the load
        util, util0 = tel.series["DCGM_FI_DEV_GPU_UTIL"][p], base.series["DCGM_FI_DEV_GPU_UTIL"][p]
        assert util[k0 + 1:k1].mean() > 1.5 * util0[k0 + 1:k1].mean()
    lat, lat0 = tel.series["latency_p95_seconds"][w], base.series["latency_p95_seconds"][w]
    assert lat[k0 + 1:k1].mean() > 1.03 * lat0[k0 + 1:k1].mean()


def test_metrics_missing_blanks_one_nodes_dcgm_metrics_and_nothing_else():
    tel, base = run("metrics_missing"), clean()
    fault, k0, k1 = fault_of(tel)
    assert fault.entity == Entity(node=fault.entity.node) and fault.expected_cause == "METRICS_MISSING"
    assert 20 <= (k1 - k0) * tel.step / 60 <= 40
    for (metric, entity), where in changes(tel, base).items():
        assert metric in GPU_METRICS and entity.node == fault.entity.node
        np.testing.assert_array_equal(where, np.arange(k0, k1))
        assert np.isnan(tel.series[metric][entity][where]).all()
    assert len(changes(tel, base)) == len(GPU_METRICS) * 8


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_values_are_finite_except_the_documented_gaps(kind):
    tel = run(kind)
    fault, k0, k1 = fault_of(tel)
    for metric, per_entity in tel.series.items():
        for entity, values in per_entity.items():
            gaps = np.flatnonzero(np.isnan(values))
            if not len(gaps):
                continue
            if metric in GPU_METRICS:
                assert kind in ("xid79", "metrics_missing") and fault.entity.contains(entity)
                assert gaps[0] == (k0 + 2 if kind == "xid79" else k0)
            elif metric == "pod_latency_p95_seconds":  # a pod that is not ready serves nothing
                assert kind in ("xid79", "crash_loop", "memory_leak")
                ready = tel.series["replicas_available"][workload_key(entity.workload)]
                assert (ready[gaps] < len(pods_of(tel, entity.workload))).all()
            else:
                pytest.fail(f"{metric} at {entity.label()} has gaps")


def test_faults_on_gpus_are_found_by_the_gpu_fault_rules_at_their_entity():
    from aiops.detectors import gpu_faults

    expected = {"xid79": "XID_79", "thermal_throttle": "THERMAL_THROTTLE", "memory_leak": "GPU_MEMORY_FULL"}
    for kind, code in expected.items():
        tel = run(kind)
        fault, k0, k1 = fault_of(tel)
        found = gpu_faults(_gpu_series(tel))
        assert found and all(f.code == code for f in found), (kind, [f.code for f in found])
        assert all(Entity(fault.entity.node, fault.entity.gpu).contains(f.entity) for f in found)
        assert all(fault.start <= f.window[0] <= fault.start + 3 * HOUR for f in found)


# -- choosing faults -----------------------------------------------------------------------------------
def test_fault_spec_with_time_entity_and_duration_is_honoured():
    tel0 = clean()
    pod = pods_of(tel0, "code")[0]
    at = SYNTHETIC_START + 10 * HOUR
    specs = [FaultSpec("thermal_throttle", at=at, entity=Entity(pod.node, pod.gpu), duration=45 * 60),
             FaultSpec("traffic_surge", at=at + 600, entity=Entity(workload="chat"), duration=3600),
             FaultSpec("memory_leak", at=at, entity=Entity(pod=pods_of(tel0, "chat")[1].pod), duration=1800),
             FaultSpec("metrics_missing", at=at, entity=Entity(node="gpu-node-1"), duration=1200),
             FaultSpec("xid79", at=at + 7200, entity=Entity(pod=pod.pod), duration=3600)]
    tel = simulate_telemetry(seed=SEED, faults=specs)
    thermal, surge, leak, missing, xid = tel.faults
    assert (thermal.start, thermal.end, thermal.entity) == (at, at + 2700, Entity(pod.node, pod.gpu))
    assert (surge.start, surge.end, surge.entity) == (at + 600, at + 4200, workload_key("chat"))
    assert leak.entity == pods_of(tel0, "chat")[1] and leak.end == at + 1800
    assert missing.entity == Entity(node="gpu-node-1")
    assert xid.entity == Entity(pod.node, pod.gpu) and xid.end == at + 10800
    k = tel.index_of(at + 10800)
    assert np.isfinite(tel.series["DCGM_FI_DEV_GPU_UTIL"][pod][k:]).all()  # back after a reboot
    assert np.isnan(tel.series["DCGM_FI_DEV_GPU_UTIL"][pod][k - 1])
    assert tel.pods == tel0.pods


def test_a_fault_given_off_the_grid_takes_effect_at_the_next_sample():
    at = SYNTHETIC_START + 5 * HOUR + 20.0
    tel = simulate_telemetry(seed=SEED, faults=[FaultSpec("traffic_surge", at=at, entity=Entity(workload="code"))])
    k0 = tel.index_of(at)
    assert tel.times[k0] == at + 40.0
    diffs = changes(tel, clean())
    assert min(int(d.min()) for d in diffs.values()) == k0


@pytest.mark.parametrize("spec, message", [
    ("disk_full", "fault kind"),
    (FaultSpec("traffic_surge", entity=Entity(workload="nope")), "workload"),
    (FaultSpec("xid79", entity=Entity(node="gpu-node-0")), "exactly one GPU"),
    (FaultSpec("memory_leak", entity=Entity(workload="chat")), "exactly one pod"),
    (FaultSpec("metrics_missing", entity=Entity(node="gpu-node-9")), "node"),
    (FaultSpec("crash_loop", at=SYNTHETIC_START - 60), "outside"),
])
def test_bad_fault_specs_are_refused_with_a_reason(spec, message):
    with pytest.raises(ValueError, match=message):
        simulate_telemetry(seed=SEED, faults=[spec])


def test_bad_arguments_are_refused():
    for kwargs in ({"days": 0}, {"step": -1}, {"nodes": 0}, {"workloads": ()}, {"workloads": ("a", "a")},
                   {"nodes": 1, "gpus_per_node": 1, "workloads": ("a", "b")}, {"seed": -1}):
        with pytest.raises(ValueError):
            simulate_telemetry(**kwargs)
    with pytest.raises(ValueError, match="duration"):
        FaultSpec("crash_loop", duration=0)
    with pytest.raises(ValueError, match="too short"):
        simulate_telemetry(days=1 / 24, faults=["crash_loop"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), kinds=st.lists(st.sampled_from(FAULT_KINDS), min_size=1, max_size=3),
       days=st.sampled_from([0.1, 0.25, 0.5, 1.0, 2.0]), step=st.sampled_from([30.0, 60.0, 300.0]))
def test_drawn_faults_lie_inside_the_span_and_leave_30_minutes_after_their_start(seed, kinds, days, step):
    tel = simulate_telemetry(days=days, step=step, nodes=2, gpus_per_node=4, seed=seed, faults=kinds)
    last = tel.times[-1]
    assert [f.kind for f in tel.faults] == kinds
    for f in tel.faults:
        assert tel.start <= f.start <= f.end <= last
        assert f.start + 30 * 60 <= last
        assert f.start >= tel.start + min(2 * HOUR, (last - tel.start) / 3) - step
        assert (f.start - tel.start) % step == 0
    for per_entity in tel.series.values():
        for values in per_entity.values():
            assert not np.isinf(values).any()
    assert all(0 <= v <= 1 for v in np.concatenate(list(tel.series["slo_bad_ratio"].values())))


# -- window() and series_of() ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_a_window_before_a_fault_is_the_clean_runs_window(kind):
    tel = run(kind)
    fault, k0, _ = fault_of(tel)
    assert tel.window(k0 - 1) == clean().window(k0 - 1)
    assert tel.window(k0 - 1).faults == () and tel.window(k0).faults[0].start == fault.start


def test_window_holds_exactly_the_past_samples_and_events():
    tel = run("rollout_regression")
    fault, k0, k1 = fault_of(tel)
    for end, lookback in ((k0, None), (k0 + 10, 60), (5, 60), (tel.n_steps - 1, 1)):
        win = tel.window(end, lookback)
        first = 0 if lookback is None else max(0, end + 1 - lookback)
        assert win.n_steps == end + 1 - first and win.start == tel.times[first] and win.step == tel.step
        assert win.times[-1] == tel.times[end]
        for metric, per_entity in tel.series.items():
            for entity, values in per_entity.items():
                np.testing.assert_array_equal(win.series[metric][entity], values[first:end + 1])
        assert all(r.at <= tel.times[end] for r in win.rollouts)
        assert all(f.start <= f.end <= tel.times[end] for f in win.faults)
        assert win.pods == tel.pods
    assert tel.window(k0).rollouts == tel.rollouts[:1]
    assert tel.window(k0 + 3).faults[0].end == tel.times[k0 + 3]
    # A time picks the samples at or before it; events are known up to that time itself.
    at = float(tel.times[k0]) + 59.0
    by_time, by_index = tel.window(at, 30), tel.window(k0, 30)
    assert by_time.n_steps == 30 and by_time.start == by_index.start
    assert changes(by_time, by_index) == {} and by_time.faults[0].end == at and by_index.faults[0].end == tel.times[k0]
    assert tel.window(1e12) == tel.window(tel.n_steps - 1)
    with pytest.raises(IndexError):
        tel.window(tel.n_steps)
    with pytest.raises(ValueError):
        tel.window(tel.start - 60.0)


def test_series_of_gives_a_keyed_series_and_finds_a_gpu_by_node_and_index():
    tel = clean()
    pod = pods_of(tel, "chat")[0]
    s = tel.series_of("DCGM_FI_DEV_GPU_TEMP", Entity(pod.node, pod.gpu))
    assert isinstance(s, Series) and s.start == tel.start and s.step == 60.0 and len(s) == 1440
    assert s.key == (f'DCGM_FI_DEV_GPU_TEMP{{node="{pod.node}",gpu="{pod.gpu}",pod="{pod.pod}",'
                     f'workload="chat",namespace="inference"}}')
    np.testing.assert_array_equal(s.values, tel.series["DCGM_FI_DEV_GPU_TEMP"][pod])
    assert tel.series_of("demand_rps", Entity(workload="chat")).key == 'demand_rps{workload="chat",namespace="inference"}'
    with pytest.raises(KeyError):
        tel.series_of("DCGM_FI_DEV_GPU_TEMP", Entity(node=pod.node))  # eight GPUs, not one
    with pytest.raises(KeyError):
        tel.series_of("no_such_metric", pod)


def test_telemetry_values_cannot_be_changed():
    tel = clean()
    with pytest.raises(TypeError):
        tel.series["demand_rps"] = {}  # type: ignore[index]
    with pytest.raises(ValueError):
        next(iter(tel.series["demand_rps"].values()))[0] = 1.0
    assert isinstance(tel.rollouts, tuple) and isinstance(Rollout("chat", 0.0, "x"), Rollout)
