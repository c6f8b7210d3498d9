"""How long pulling training history from a real Prometheus takes.

1,000 workloads' demand, 14 days at 1-minute steps (20,160 samples each, 20 M in all), is written
as OpenMetrics, backfilled with ``promtool tsdb create-blocks-from openmetrics`` into a data
directory (cached under ``out/prometheus-bench/``), and served by Debian's ``prometheus`` on
127.0.0.1. The figure is the wall time of :meth:`aiops.prometheus.PrometheusSource.range_many`
pulling all 1,000 series (one query each, split in two under the 11,000-point limit, 8 in
parallel) into ``Series`` values, on this machine, server and client sharing its cores.

Target (issue 5): at most 30 s. Prints the figures and writes ``benchmarks/results/prometheus_pull.json``.

    python benchmarks/prometheus_bench.py [--series 1000] [--days 14] [--workers 8]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the test harness that runs a real Prometheus

from aiops.prometheus import PrometheusSource  # noqa: E402
from machine import describe, save  # noqa: E402
from simulations.config import PrometheusConfig  # noqa: E402
from tests.prometheus_server import HistorySeries, PrometheusServer, backfill, write_openmetrics  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "prometheus_pull.json"
CACHE = ROOT / "out" / "prometheus-bench"
TARGET_S = 30.0
STEP = 60.0


def history(n: int, days: float, end: float, seed: int = 0):
    """Diurnal demand with noise per workload, ending at ``end``."""
    rng = np.random.default_rng(seed)
    steps = int(days * 86_400 / STEP)
    ts = end - STEP * np.arange(steps)[::-1]
    phase = 2 * np.pi * (ts % 86_400) / 86_400
    for i in range(n):
        level = rng.uniform(5, 200)
        values = np.round(level * (1 + 0.5 * np.sin(phase + rng.uniform(0, 6.28))) + rng.normal(0, 0.05 * level, steps), 3)
        yield HistorySeries("demand_rps", {"workload": f"w{i:04d}"}, ts, np.maximum(values, 0.0))


def prepare(n: int, days: float) -> tuple[Path, float]:
    """A backfilled data directory for (n, days), reused when present. Returns it and its end time."""
    folder = CACHE / f"n{n}-d{days:g}"
    stamp = folder / "end.txt"
    if stamp.exists():
        return folder / "data", float(stamp.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    end = float(np.floor(time.time() / 3600) * 3600 - 3600)  # whole hours, an hour back: away from the head block
    text = folder / "history.om"
    t0 = time.perf_counter()
    samples = write_openmetrics(text, tqdm(history(n, days, end), total=n, desc="writing OpenMetrics", unit="series"))
    print(f"wrote {samples:,} samples in {time.perf_counter() - t0:.0f} s; backfilling with promtool ...")
    t0 = time.perf_counter()
    backfill(text, folder / "data", max_block_duration="162h")  # few long blocks: promtool reads the file once per block
    print(f"backfilled in {time.perf_counter() - t0:.0f} s")
    text.unlink()
    stamp.write_text(f"{end}")
    return folder / "data", end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        print("Debian's prometheus is not installed (./dev test installs it); nothing to do")
        return
    data, end = prepare(args.series, args.days)
    queries = {f"w{i:04d}": f'demand_rps{{workload="w{i:04d}"}}' for i in range(args.series)}
    start = end - args.days * 86_400 + STEP
    settings = PrometheusConfig(workers=args.workers, timeout_seconds=120.0)
    times = []
    with PrometheusServer(data) as server:
        with PrometheusSource(settings, server.url) as source:
            for r in range(args.repeat):
                with tqdm(total=len(queries), desc=f"pull {r + 1}/{args.repeat}", unit="series", leave=False) as bar:
                    t0 = time.perf_counter()
                    pulled = source.range_many(queries, start, end, STEP, progress=bar.update)
                    times.append(time.perf_counter() - t0)
    points = sum(len(s.values) for s in pulled.values())
    missing = int(sum(np.isnan(s.values).sum() for s in pulled.values()))
    best, median = min(times), float(np.median(times))
    met = median <= TARGET_S
    print(f"pulled {args.series} series x {args.days:g} days at 1-minute steps ({points:,} points, {missing} missing) "
          f"from a local Prometheus in {median:.1f} s median of {args.repeat} (best {best:.1f} s), "
          f"{args.workers} in parallel; target {TARGET_S:.0f} s: {'met' if met else 'MISSED'}")
    save({"benchmark": "prometheus_pull", "series": args.series, "days": args.days, "step_seconds": STEP,
          "points": points, "missing_points": missing, "workers": args.workers, "seconds": times,
          "median_seconds": median, "target_seconds": TARGET_S, "met": met, "machine": describe()}, OUT)


if __name__ == "__main__":
    main()
