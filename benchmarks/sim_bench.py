"""Simulator throughput: 7 days at 1-minute steps for 1, 100 and 1,000 workloads, reactive policy.

Target (issue 2): at least 1,000,000 workload-steps per second on 2 cores, by vectorising across
workloads. Workloads are synthetic LLM traces (20 seeds, each workload a seed scaled by a random
factor), spread round-robin over 4 node pools. Only the replay loop is timed (trace generation and
set-up are not). Prints a table and writes benchmarks/results/sim_bench.json.

    python benchmarks/sim_bench.py [--sizes 1,100,1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np

from machine import describe, save
from simulations.config import config_from_mapping
from simulations.replay import prepare, run_policy, tables
from simulations.traces import Trace, synthetic_llm_trace

TARGET = 1_000_000
OUT = Path(__file__).parent / "results" / "sim_bench.json"


def workload_trace(n: int) -> Trace:
    rng = np.random.default_rng(42)
    bases = [synthetic_llm_trace(days=7, step_seconds=60, seed=s, peak_rps=100.0).values[:, 0] for s in range(min(n, 20))]
    values = np.stack([bases[i % len(bases)] * rng.uniform(0.2, 3.0) for i in range(n)], axis=1)
    start = synthetic_llm_trace(days=0.01).start  # the synthetic traces' own start
    return Trace("bench", start, 60.0, tuple(f"w{i:04d}" for i in range(n)), values)


def config_for(n: int):
    pools = [{"name": f"pool-{p}", "gpus_per_node": 8, "max_nodes": 100_000, "provisioning_seconds": 360} for p in range(4)]
    workloads = [{"name": f"w{i:04d}", "node_pool": f"pool-{i % 4}"} for i in range(n)]
    return config_from_mapping({"node_pools": pools, "workloads": workloads, "policies": {"enabled": ["reactive"]}})


def bench(n: int, repeat: int) -> dict:
    trace = workload_trace(n)
    config = config_for(n)
    trace, demand, _ = prepare(trace, config)
    tb = tables(config, trace.workloads)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run = run_policy("reactive", trace, demand, tb, config)
        times.append(time.perf_counter() - started)
    best = min(times)
    steps = trace.n_steps
    return {
        "workloads": n, "steps": steps, "workload_steps": n * steps,
        "seconds_best": best, "seconds_all": times,
        "workload_steps_per_second": n * steps / best,
        "meets_target": n * steps / best >= TARGET,
        "slo_attainment_pct": float(100 * run.slo_ok.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,100,1000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    results = [bench(int(n), args.repeat) for n in args.sizes.split(",")]
    print(f"{'workloads':>10} {'steps':>7} {'best s':>8} {'workload-steps/s':>18}  target {TARGET:,}/s")
    for r in results:
        print(f"{r['workloads']:>10,} {r['steps']:>7,} {r['seconds_best']:>8.2f} {r['workload_steps_per_second']:>18,.0f}  "
              f"{'met' if r['meets_target'] else 'MISSED'}")
    doc = {
        "benchmark": "sim_bench", "policy": "reactive", "target_workload_steps_per_second": TARGET,
        "machine": describe(),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "results": results,
    }
    save(doc, args.out)


if __name__ == "__main__":
    main()
