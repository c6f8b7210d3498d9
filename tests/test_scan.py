"""The scan (every detector over cluster telemetry) and its replay against injected faults.

Each fault kind of the telemetry simulator is replayed scan by scan around its start: it must be
detected, at its own entity, with the cause the simulator says is right; a clean day raises no
incident. (The full evaluation, over many seeds, is benchmarks/anomaly_bench.py.)
"""

from __future__ import annotations

import numpy as np
import pytest

from aiops.findings import Entity
from aiops.scan import ScanSettings, crash_loop, memory_growth, scan, seasonal_surge
from forecasters.series import Series
from simulations.incident_replay import matches, related, replay
from simulations.telemetry import FAULT_KINDS, SYNTHETIC_START, FaultSpec, simulate_telemetry

DAY = 86_400.0
POD = Entity(node="n1", gpu="2", pod="chat-abc", workload="chat", namespace="serving")


def test_memory_growth_finds_a_steady_leak_and_ignores_noise() -> None:
    t = np.arange(40)
    used = Series("DCGM_FI_DEV_FB_USED", 0.0, 60.0, 40_000 + 400.0 * t)  # 24 GiB/h
    free = Series("DCGM_FI_DEV_FB_FREE", 0.0, 60.0, 41_559 - 400.0 * t)
    (f,) = memory_growth(used, free, POD, now=39 * 60.0)
    assert f.code == "GPU_MEMORY_GROWTH" and f.entity == POD and "full in" in f.summary
    noisy = Series("DCGM_FI_DEV_FB_USED", 0.0, 60.0, 40_000 + np.random.default_rng(0).normal(0, 800, 40))
    assert memory_growth(noisy, free, POD, now=39 * 60.0) == []


def test_one_restart_is_a_hint_and_several_are_a_loop() -> None:
    once = Series("restarts", 0.0, 60.0, np.array([3.0] * 10 + [4.0] * 6))
    (f,) = crash_loop(once, POD, now=15 * 60.0)
    assert f.code == "POD_RESTART" and f.severity == "info"
    loop = Series("restarts", 0.0, 60.0, np.array([3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 7, 8, 8, 9, 9, 10], dtype=float))
    (f,) = crash_loop(loop, POD, now=15 * 60.0)
    assert f.code == "CRASH_LOOP" and f.observed == 7 and f.severity == "critical"
    assert crash_loop(Series("restarts", 0.0, 60.0, np.full(16, 3.0)), POD, now=15 * 60.0) == []


def test_a_surge_is_judged_against_the_same_time_yesterday() -> None:
    t = np.arange(int(DAY / 60) + 60) * 60.0
    daily = 100 + 50 * np.sin(2 * np.pi * t / DAY)
    chat = Entity(workload="chat")
    assert seasonal_surge(Series("demand_rps", 0.0, 60.0, daily), chat, now=t[-1]) == []  # the daily ramp is not a surge
    surged = daily.copy()
    surged[-3:] *= 2.0
    (f,) = seasonal_surge(Series("demand_rps", 0.0, 60.0, surged), chat, now=t[-1])
    assert f.code == "ABOVE_FORECAST" and "2.0x" in f.summary
    assert seasonal_surge(Series("demand_rps", 0.0, 60.0, surged[-100:]), chat, now=t[-1]) == []  # no yesterday: no verdict


def test_related_entities() -> None:
    assert related(Entity(node="a", gpu="1", pod="p", workload="w"), Entity(node="a", gpu="1"))
    assert not related(Entity(node="a", gpu="1"), Entity(node="a", gpu="2"))
    assert related(Entity(node="a", gpu="1"), Entity(node="a"))
    assert related(Entity(workload="w"), Entity(node="b", gpu="3", pod="p", workload="w"))
    assert not related(Entity(workload="w"), Entity(workload="v"))


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_injected_fault_is_detected_where_it_is_and_explained(kind) -> None:
    at = SYNTHETIC_START + DAY + 14 * 3600.0
    telemetry = simulate_telemetry(days=1.75, seed=3, faults=(FaultSpec(kind, at=at),))
    result = replay(telemetry, begin=at - 1800.0, until=at + 1800.0)
    (fault,) = result.faults
    assert fault.detected, f"{kind} not detected within 30 min"
    assert fault.top_cause == fault.fault.expected_cause, (kind, fault.incident.title)
    assert matches(fault.incident, fault.fault) and fault.time_to_detect <= 900
    assert result.false_alarms == []


def test_a_clean_afternoon_raises_no_incident() -> None:
    telemetry = simulate_telemetry(days=1.75, seed=4)
    result = replay(telemetry, begin=SYNTHETIC_START + DAY + 12 * 3600.0, until=SYNTHETIC_START + DAY + 16 * 3600.0)
    assert result.scans == 241 and result.incidents == {}


def test_a_scan_never_reads_the_future() -> None:
    at = SYNTHETIC_START + DAY + 10 * 3600.0
    telemetry = simulate_telemetry(days=1.75, seed=3, faults=(FaultSpec("xid79", at=at),))
    before = scan(telemetry.series, telemetry.start, telemetry.step, at - 60.0, ScanSettings())
    assert not [f for f in before if f.code.startswith("XID")]
    after = scan(telemetry.series, telemetry.start, telemetry.step, at, ScanSettings())
    assert [f for f in after if f.code == "XID_79"]
