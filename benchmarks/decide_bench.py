"""How long one predictive ``decide()`` takes for a large cluster, on one core.

1,000 workloads spread over 10 node pools (1-, 2- and 4-GPU replicas on 8-GPU nodes, prices from
$1.10 to $4.00 per GPU-hour, a third of the workloads eligible for two pools), each with a
five-quantile forecast of 12 steps, 3-minute replica startups and 6-minute node provisioning, a
warm decision log, and every guardrail on. The process is pinned to one CPU and BLAS to one
thread. Forecasts are handed over as a mapping of ``Forecast`` values (what the live agent has),
so gathering them is part of the figure; a pre-gathered ``ForecastBatch`` is timed too.

Target (issue 4): at most 50 ms per call. Prints the figures and writes
``benchmarks/results/decide.json``.

    python benchmarks/decide_bench.py [--workloads 1000] [--pools 10] [--repeat 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from forecasters.series import Forecast
from machine import describe, save
from policies import predictive
from policies.forecasts import ForecastBatch
from policies.types import ClusterState, DecisionLog, PoolTable, WorkloadTable

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "decide.json"
TARGET_MS = 50.0
NOW = 1.767e9
STEP = 60.0
LEVELS = (0.05, 0.5, 0.9, 0.95, 0.99)


def cluster(n: int, p: int, seed: int = 0) -> tuple[ClusterState, dict[str, Forecast]]:
    rng = np.random.default_rng(seed)
    names = tuple(f"svc-{i:04d}" for i in range(n))
    pool = rng.integers(0, p, n)
    gpr = rng.choice([1, 2, 4], n, p=[0.6, 0.3, 0.1])
    capacity = rng.uniform(2.0, 20.0, n)
    replicas = rng.integers(1, 40, n)
    eligible = np.zeros((n, p), dtype=bool)
    eligible[np.arange(n), pool] = True
    flexible = rng.random(n) < 1 / 3
    eligible[np.flatnonzero(flexible), (pool[flexible] + 1) % p] = True
    wl = WorkloadTable(
        names=names, pool=pool, replicas=replicas, ready=replicas, starting=np.zeros(n, dtype=np.int64),
        pending=np.zeros(n, dtype=np.int64), min_replicas=np.ones(n, dtype=np.int64), max_replicas=np.full(n, 400),
        gpus_per_replica=gpr, capacity_rps=capacity, startup_seconds=np.full(n, 180.0),
        demand_rps=replicas * capacity * rng.uniform(0.5, 1.1, n),
        forecast_error_ratio=rng.uniform(0.5, 1.5, n), eligible=eligible,
    )
    pools = PoolTable(
        names=tuple(f"pool-{j}" for j in range(p)), gpus_per_node=np.full(p, 8), nodes=np.full(p, 200),
        provisioning=np.zeros(p, dtype=np.int64), min_nodes=np.zeros(p, dtype=np.int64), max_nodes=np.full(p, 1000),
        provisioning_seconds=np.full(p, 360.0), price_per_gpu_hour=np.linspace(1.1, 4.0, p),
    )
    forecasts = {}
    for i, name in enumerate(names):
        level = wl.demand_rps[i] * (1 + 0.3 * np.sin(np.arange(12) / 4 + i))
        spread = np.array([0.6, 1.0, 1.3, 1.45, 1.8])[:, None]
        forecasts[name] = Forecast(name, NOW - STEP, STEP, {q: level * s for q, s in zip(LEVELS, spread)}, "auto/profile")
    return ClusterState(NOW, STEP, wl, pools), forecasts


def warm_log(state: ClusterState, forecasts, config, steps: int = 8) -> DecisionLog:
    log = DecisionLog.empty(state.workloads.names)
    for k in range(steps, 0, -1):
        _, log = predictive.decide(NOW - k * STEP, replace(state, observed_at=NOW - k * STEP), forecasts, log, config)
    return log


def timed(fn, repeat: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--pools", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    config = predictive.PredictiveConfig(scale_down_stabilization_seconds=300.0)
    state, forecasts = cluster(args.workloads, args.pools)
    with threadpool_limits(1):
        log = warm_log(state, forecasts, config)
        batch = ForecastBatch.gather(state.workloads.names, forecasts, STEP)
        mapping_ms = timed(lambda: predictive.decide(NOW, state, forecasts, log, config), args.repeat)
        batch_ms = timed(lambda: predictive.decide(NOW, state, batch, log, config), args.repeat)
        decisions_ms = timed(lambda: predictive.decide(NOW, state, forecasts, log, config)[0].decisions(state, only_changes=True), 5)
    result = {
        "benchmark": "decide", "workloads": args.workloads, "pools": args.pools, "repeat": args.repeat,
        "median_ms_mapping": statistics.median(mapping_ms), "p95_ms_mapping": float(np.percentile(mapping_ms, 95)),
        "median_ms_batch": statistics.median(batch_ms), "p95_ms_batch": float(np.percentile(batch_ms, 95)),
        "median_ms_with_explanations": statistics.median(decisions_ms),
        "target_ms": TARGET_MS, "meets_target": statistics.median(mapping_ms) <= TARGET_MS,
        "machine": describe(), "cores_used": 1,
    }
    print(f"decide() for {args.workloads} workloads x {args.pools} pools on one core: median {result['median_ms_mapping']:.1f} ms "
          f"(p95 {result['p95_ms_mapping']:.1f}) from Forecast values, {result['median_ms_batch']:.1f} ms from a ForecastBatch; "
          f"with every decision explained {result['median_ms_with_explanations']:.1f} ms; target {TARGET_MS:.0f} ms: "
          f"{'met' if result['meets_target'] else 'MISSED'}")
    save(result, args.out)


if __name__ == "__main__":
    main()
