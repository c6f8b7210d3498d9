"""Fleet forecasting cost: fit and forecast 1,000 series of 14 days at 1-minute steps.

Target (issue 3): at most 60 s on 2 cores with the default model (``auto``: per-series selection
among naive, seasonal-naive and the seasonal profile model, each conformally calibrated), using at
most 2 GB of memory.

The series are synthetic (seeded): daily and weekly cycles with per-series amplitude, phase and
scale, noise, gaps and an occasional level shift, like a fleet of inference services. Generation is
not timed. Each series gets ``fit(history).predict(60)`` (a one-hour forecast) in a pool of
``--workers`` processes (default: one per core). Memory is the peak resident set of the parent plus
the largest child times the number of workers (an upper bound: forked children share pages).

    python benchmarks/fleet_forecast_bench.py [--series 1000] [--days 14] [--workers 2] [--model auto]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine import describe, save  # noqa: E402

from forecasters import DEFAULT_MODEL, build  # noqa: E402
from forecasters.series import Series  # noqa: E402

OUT = Path(__file__).parent / "results" / "fleet_forecast.json"
TARGET_S = 60.0
TARGET_MB = 2048.0
START = 1_767_571_200.0  # a Monday 00:00 UTC
_DATA: np.ndarray | None = None  # [series, steps], shared with forked workers
_MODEL = DEFAULT_MODEL


def fleet(n: int, days: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    steps = int(days * 1440)
    t = np.arange(steps) * 60.0
    out = np.empty((n, steps))
    for i in range(n):
        day = 1 + rng.uniform(0.2, 0.8) * np.sin(2 * np.pi * (t / 86_400 + rng.uniform()))
        week = 1 + rng.uniform(0, 0.3) * np.sin(2 * np.pi * t / (7 * 86_400))
        level = rng.lognormal(3, 1.5)
        y = level * day * week * (1 + rng.normal(0, 0.08, steps))
        if rng.random() < 0.2:  # a level shift somewhere in the last week
            y[rng.integers(steps // 2, steps):] *= rng.uniform(1.3, 2.0)
        gaps = rng.integers(0, steps, 3)
        for g in gaps:
            y[g: g + rng.integers(1, 30)] = np.nan
        out[i] = np.maximum(y, 0)
    return out


def _one_thread() -> None:
    """Each worker process uses one BLAS/OpenMP thread: the pool already fills the cores, and
    oversubscribed threads slow each other down badly on 2 cores."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _work(i: int) -> tuple[str, bool]:
    model = build(_MODEL)
    f = model.fit(Series(f"s{i:04d}", START, 60.0, _DATA[i])).predict(60)
    return f.model, f.fell_back is not None


def main() -> int:
    global _DATA, _MODEL
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--days", type=float, default=14.0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    args = ap.parse_args()
    _MODEL = args.model
    _DATA = fleet(args.series, args.days)
    print(f"{args.series} series x {args.days:g} days at 1-minute steps ({_DATA.shape[1]:,} points each), "
          f"model {args.model!r}, {args.workers} worker process(es)")
    started = time.perf_counter()
    ctx = mp.get_context("fork")
    with ctx.Pool(args.workers, initializer=_one_thread) as pool:
        results = pool.map(_work, range(args.series), chunksize=max(1, args.series // (8 * args.workers)))
    seconds = time.perf_counter() - started
    parent_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    peak_mb = parent_mb + child_mb * args.workers
    chosen: dict[str, int] = {}
    for model, _ in results:
        chosen[model] = chosen.get(model, 0) + 1
    fell_back = sum(fb for _, fb in results)
    doc = {
        "benchmark": "fleet_forecast", "series": args.series, "days": args.days, "step_seconds": 60,
        "model": args.model, "workers": args.workers, "seconds": round(seconds, 2),
        "series_per_s": round(args.series / seconds, 1), "peak_memory_mb": round(peak_mb, 1),
        "parent_rss_mb": round(parent_mb, 1), "largest_child_rss_mb": round(child_mb, 1),
        "models_chosen": chosen, "forecasts_with_fallback": int(fell_back),
        "target_seconds": TARGET_S, "target_memory_mb": TARGET_MB,
        "met_time": seconds <= TARGET_S, "met_memory": peak_mb <= TARGET_MB, "machine": describe(),
    }
    print(f"fit + forecast: {seconds:.1f} s ({doc['series_per_s']} series/s), target <= {TARGET_S:.0f} s: "
          f"{'MET' if doc['met_time'] else 'MISSED'}")
    print(f"peak memory: {peak_mb:,.0f} MB (parent {parent_mb:,.0f} + {args.workers} x child {child_mb:,.0f}), "
          f"target <= {TARGET_MB:,.0f} MB: {'MET' if doc['met_memory'] else 'MISSED'}")
    print(f"models chosen: {chosen}; forecasts with a fallback note: {fell_back}")
    save(doc, OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
