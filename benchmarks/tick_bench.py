"""CPU time and memory of one agent control tick for 1,000 workloads, network excluded.

The agent is the real :class:`aiops.agent.Agent` with its default forecaster; Prometheus and the
Kubernetes API are in-process stand-ins that answer at once (the network is excluded, as the
target says). History is 2 days of a daily wave with noise per workload. The first tick fits
every model (a cold start, reported separately); the figure is the CPU time of a steady-state
tick: collect the newest minute, update the forecasts, decide every workload and pool, journal
and act on the changes (auto mode). Peak RSS is the process's maximum.

Target (issue 6): at most 1 s of CPU per tick and 1 GB RSS. Prints the figures and writes
``benchmarks/results/tick.json``.

    python benchmarks/tick_bench.py [--workloads 1000] [--ticks 5] [--forecaster auto]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from aiops.agent import Agent
from aiops.kube import ActionResult
from forecasters.series import Series
from machine import describe, save
from simulations.config import config_from_mapping

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "tick.json"
STEP = 60.0
T0 = 1_790_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Metrics:
    def __init__(self, n: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.level = rng.uniform(5, 200, n)
        self.phase = rng.uniform(0, 2 * np.pi, n)
        self.rng = rng

    def range_many(self, queries, start, end, step, progress=None):
        ts = np.arange(start, end + step / 2, step)
        wave = 1 + 0.5 * np.sin(2 * np.pi * (ts[:, None] % 86_400) / 86_400 + self.phase[None, :])
        values = self.level[None, :] * wave * (1 + 0.05 * self.rng.standard_normal((len(ts), len(self.level))))
        return {name: Series(name, start, step, values[:, i]) for i, name in enumerate(queries)}


class Cluster:
    def __init__(self, n: int) -> None:
        self.current: dict[str, int] = {}

    def replicas(self, t):
        r = self.current.setdefault(t.name, 10)
        return r, r

    def scale(self, t, replicas, decision_id, dry_run=False):
        self.current[t.name] = replicas
        return ActionResult(t.name, "replicas", None, replicas, True, False)

    def set_node_floor(self, p, nodes, decision_id, dry_run=False):
        return ActionResult(p.name, "nodes", None, nodes, True, False)

    def record(self, t, decision_id, reason, message, event_type="Normal"):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=5)
    parser.add_argument("--forecaster", default="auto")
    args = parser.parse_args()
    n = args.workloads
    config = config_from_mapping({
        "prometheus": {"url": "http://prometheus:9090"},
        "agent": {"mode": "auto", "history_days": 2.0},
        "node_pools": [{"name": "gpu-h100", "max_nodes": 10_000}],
        "policies": {"predictive": {"forecaster": args.forecaster}},
        "workloads": [{"name": f"svc-{i:04d}", "capacity_rps": 8.0, "max_replicas": 1000} for i in range(n)],
    })
    clock = Clock()
    with tempfile.TemporaryDirectory() as state:
        agent = Agent(config, Metrics(n), Cluster(n), state_dir=state, clock=clock)
        t0 = time.process_time()
        agent.collect()
        agent.decide_and_act()
        cold = time.process_time() - t0
        print(f"cold start (pull 2 days, fit {n} forecasters, first decisions): {cold:.1f} s CPU")
        cpu = []
        for _ in range(args.ticks):
            clock.now += STEP
            t0 = time.process_time()
            agent.collect()
            report = agent.decide_and_act()
            cpu.append(time.process_time() - t0)
            assert not report.held
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    median = statistics.median(cpu)
    met = median <= 1.0 and rss_mb <= 1024
    print(f"one tick for {n} workloads ({args.forecaster}): {median:.2f} s CPU median of {args.ticks} "
          f"(max {max(cpu):.2f}), peak RSS {rss_mb:.0f} MB; target 1 s and 1 GB: {'met' if met else 'MISSED'}")
    save({"benchmark": "tick", "workloads": n, "forecaster": args.forecaster, "tick_cpu_seconds": cpu,
          "median_cpu_seconds": median, "cold_start_cpu_seconds": cold, "peak_rss_mb": rss_mb,
          "target_cpu_seconds": 1.0, "target_rss_mb": 1024, "met": met, "machine": describe()}, OUT)


if __name__ == "__main__":
    main()
