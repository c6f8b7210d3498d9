"""Training throughput of the global torch forecaster ("torch-mlp") on the CPU and, when there is one, a GPU.

Data: 100 synthetic series x 14 days at 1-minute steps from a seeded rng (daily and weekly cycles,
a random scale from 0.1 to 10,000 requests/s, multiplicative noise, a level shift in some, near-zero
intermittent demand in a few), plus the real traces in ../shared/data/traces/*.csv when present
(resampled to 1 minute when their step divides it; coarser ones are skipped and listed).

For each device it trains one network on all series with the last day held out and reports
samples/s (training windows x epochs per second, everything in ``train`` included, after an
untimed warm-up that pays one-time costs such as lazy imports and the CUDA context), seconds and
final pinball loss; then, with the trained network, the median's mean absolute error over the
held-out day (24 hourly origins per series, every lead up to an hour) divided by that of seasonal
naive (the value a day earlier; below 1 is better), and the time of ``fit`` + ``predict`` per
series (the conformal calibration that reuses the global network). Prints a table and writes
benchmarks/results/torch_train.json.

    python benchmarks/torch_train_bench.py [--device auto|cpu|cuda] [--quick] [--samples N] [--epochs N]
                                           [--threads N] [--out PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, when not installed

from machine import data_dir, describe, save  # noqa: E402

from forecasters.base import DAY, ForecastInputError, prepare, seasons  # noqa: E402
from forecasters.device import describe_device, resolve_device  # noqa: E402
from forecasters.series import Series  # noqa: E402
from forecasters.torch_global import TorchGlobal  # noqa: E402

STEP = 60.0
START = 1_767_571_200.0  # 2026-01-05 00:00 UTC, a Monday
OUT = Path(__file__).parent / "results" / "torch_train.json"
TRACES = data_dir() / "traces"
HOLDOUT_ORIGINS = 24  # hourly origins in the held-out last day


def synthetic(n: int, days: float, seed: int = 0) -> list[Series]:
    """``n`` seeded series at 1-minute steps: daily and weekly cycles, noise, level shifts, sparse ones."""
    rng = np.random.default_rng(seed)
    steps = int(days * DAY / STEP)
    t = START + np.arange(steps) * STEP
    hour = (t % DAY) / 3600.0
    weekend = (((t // DAY) + 3) % 7) >= 5  # 1970-01-01 was a Thursday
    out = []
    for i in range(n):
        scale = 10 ** rng.uniform(-1, 4)
        peak = rng.uniform(10, 20)  # hour of the daily peak
        daily = 1 + rng.uniform(0.3, 0.8) * np.cos(2 * np.pi * (hour - peak) / 24)
        weekly = np.where(weekend, rng.uniform(0.5, 1.0), 1.0)
        values = scale * daily * weekly * rng.lognormal(0, rng.uniform(0.02, 0.2), steps)
        if rng.random() < 0.3:  # a level shift somewhere in the second half
            values[rng.integers(steps // 2, steps):] *= rng.uniform(0.5, 2.0)
        if rng.random() < 0.1:  # intermittent: most minutes idle
            values *= rng.random(steps) < 0.2
        out.append(Series(f"syn{i:03d}", START, STEP, values))
    return out


def trace_series(folder: Path) -> tuple[list[Series], list[str]]:
    """Workloads of the trace CSVs in ``folder`` at 1-minute steps, and what was skipped, with why."""
    from simulations.traces import load_trace

    need = int(DAY / STEP) + TorchGlobal().min_history(STEP)
    series, skipped = [], []
    for path in sorted(folder.glob("*.csv")):
        trace = load_trace(path)
        k = STEP / trace.step_seconds
        if abs(k - round(k)) > 1e-9:
            skipped.append(f"{path.name}: step {trace.step_seconds:g} s does not divide {STEP:g} s")
            continue
        k = int(round(k))
        n = trace.values.shape[0] // k
        for j, name in enumerate(trace.workloads):
            column = trace.values[: n * k, j].reshape(n, k)
            known = ~np.isnan(column)
            counts = known.sum(axis=1)
            means = np.where(counts > 0, np.where(known, column, 0.0).sum(axis=1) / np.maximum(counts, 1), np.nan)
            key = f"{path.stem}/{name}"
            if n < need:
                skipped.append(f"{key}: {n} steps, fewer than the {need} needed (a held-out day + the model's history)")
            else:
                series.append(Series(key, trace.start, STEP, means))
    return series, skipped


def holdout_ratio(model: TorchGlobal, full: list[Series]) -> float:
    """MAE of the network's median over the held-out last day / MAE of seasonal naive (a day back)."""
    m = seasons(STEP)["daily"]
    net = model.learned_for("any")
    horizon = net.arch.horizon
    errors_model, errors_naive = [], []
    for s in full:
        data = prepare(s)  # gaps filled as fit() would
        n = data.y.shape[0]
        origins = np.linspace(n - m, n - horizon, HOLDOUT_ORIGINS).round().astype(np.int64)
        point, _ = model._paths(net, data.y, data.start, STEP, origins, horizon)
        targets = origins[:, None] + np.arange(horizon)[None, :]
        truth = data.observed[targets]  # scored against observations only
        known = ~np.isnan(truth)
        errors_model.append(np.abs(point - truth)[known])
        errors_naive.append(np.abs(data.y[targets - m] - truth)[known])
    return float(np.concatenate(errors_model).mean() / max(np.concatenate(errors_naive).mean(), 1e-12))


def fit_predict_ms(model: TorchGlobal, full: list[Series], count: int = 10) -> float:
    """Milliseconds per series of ``fit`` (calibration with the global network) + ``predict``."""
    horizon = model.learned_for("any").arch.horizon
    started = time.perf_counter()
    for s in full[:count]:
        model.fit(s).predict(horizon)
    return 1000 * (time.perf_counter() - started) / min(count, len(full))


def bench(device: str, full: list[Series], args: argparse.Namespace) -> dict:
    day = int(DAY / STEP)
    train = [Series(s.key, s.start, s.step, s.values[: len(s) - day]) for s in full]  # the last day held out
    # warm-up, not timed: lazy torch imports, the allocator and (on a GPU) the CUDA context cost seconds once
    TorchGlobal(samples=args.batch_size, epochs=1, batch_size=args.batch_size, device=device).train(train[:1])
    model = TorchGlobal(samples=args.samples, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, device=device)
    summary = model.train(train)
    return {**summary, "holdout_mae_vs_seasonal_naive": holdout_ratio(model, full),
            "fit_predict_ms_per_series": fit_predict_ms(model, full)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: the CPU, and the GPU too when torch can use one")
    parser.add_argument("--quick", action="store_true", help="8 series x 3 days, a small budget (a smoke test)")
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--samples", type=int, default=100_000, help="training windows drawn")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (0: torch's default); on a busy machine 1 can beat 2")
    parser.add_argument("--traces", default=str(TRACES), help="folder of trace CSVs to add (skipped when absent)")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    if args.quick:
        args.series, args.days, args.samples, args.epochs = 8, 3.0, 5_000, 2

    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        devices = ["cpu", "cuda"] if args.device == "auto" and torch.cuda.is_available() else [args.device]
        devices = [str(resolve_device(d)) for d in devices]
    except ForecastInputError as exc:
        print(f"error: --device: {exc}", file=sys.stderr)
        sys.exit(2)

    full = synthetic(args.series, args.days, args.seed)
    traces, skipped = trace_series(Path(args.traces)) if Path(args.traces).is_dir() and not args.quick else ([], [])
    results = [bench(d, full + traces, args) for d in devices]

    print(f"{len(full)} synthetic series x {args.days:g} days + {len(traces)} trace series at {STEP:g} s; "
          f"{args.samples:,} windows x {args.epochs} epochs, batch {args.batch_size}")
    print(f"{'device':<36} {'windows':>8} {'seconds':>8} {'samples/s':>10} {'loss':>7} {'MAE/snaive':>10} {'fit ms':>7}")
    for r in results:
        print(f"{r['device']:<36} {r['samples']:>8,} {r['seconds']:>8.2f} {r['samples_per_s']:>10,.0f} "
              f"{r['final_loss']:>7.4f} {r['holdout_mae_vs_seasonal_naive']:>10.3f} {r['fit_predict_ms_per_series']:>7.1f}")
    doc = {
        "benchmark": "torch_train", "machine": describe(), "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(), "devices": [describe_device(d) for d in devices],
        "data": {"synthetic_series": len(full), "days": args.days, "step_s": STEP,
                 "trace_series": [s.key for s in traces], "traces_skipped": skipped},
        "config": {"samples": args.samples, "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
                   "quick": args.quick},
        "results": results,
    }
    save(doc, args.out)


if __name__ == "__main__":
    main()
