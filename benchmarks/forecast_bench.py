"""Forecast accuracy on the shared real traces: ``auto`` against the baselines and statsforecast.

For every CSV in ``$AIOPS_DATA_DIR/traces`` (default ``../shared/data/traces`` beside the repo) and
every workload in it (``--max-workloads`` caps them), at horizons of 10, 30 and 60 minutes (the
nearest whole number of the trace's steps), four models are backtested in the same harness
(:mod:`forecasters.backtest`: rolling origins, each fit on all the data before its origin, scored
against the observed values, gaps excluded): ``naive``, ``seasonal-naive``, ``auto`` (the
per-series selector; skipped with a note when it cannot be built) and statsforecast's AutoETS
through :class:`AutoETSAdapter`.

Issue 3's targets, per trace and horizon:

* ``auto``'s MAE at least 15 % below the better of the two baselines;
* ``auto`` no worse than AutoETS (MAE);
* ``auto``'s central 90 % interval covers 85-95 % of the observations.

Per trace, MAE and coverage are the means over its workloads (MAE stays in requests/s, so a big
workload weighs more, as it does in GPUs); per-workload figures are in the JSON.

**Cost.** 48 origins per workload (6 with ``--quick``, which also takes at most 3 workloads per
trace); with 24 the per-trace figures moved by several points between runs of nearby code, so
they are too noisy to judge a 15 % target on. Each trace is backtested once, at the longest of
the three horizons it can be evaluated at, and the shorter horizons are scored on the leading
steps of the same forecasts. That is a third of the fits of three separate backtests, and scores
the same forecasts: the models here give the same first steps whatever horizon they are asked
for (their conformal calibration and per-lead choices use a fixed horizon; AutoETS's forecasts are
recursive). The origins are those that have a full longest horizon of truth after them. With
these settings the whole benchmark (3,840 fits on the 20 ServeGen workloads, 192 on each other
trace) runs in about 2 minutes on the 2-core dev machine; AutoETS on the 40,000-step NASA history
(about 1.5 s a fit) is the slowest model there.

A horizon that leaves no origin with a full horizon of truth and a third of the trace as history
(the Azure trace is one hour at 10-second steps: no 60-minute horizon) is reported as not
evaluable, with the reason.

**AutoETS's season.** statsforecast's ETS keeps at most 24 seasonal states: its forecast routine
returns nothing for a seasonal model with a longer season. The daily season of these traces is
1,440 (1-minute steps), 144 (10-minute) and 8,640 steps (10-second), so the adapter passes
``season_length = 1`` (non-seasonal ETS) whenever the daily season is longer than 24 steps.
Tried on the traces before deciding: with ``season_length=144`` on the 10-minute ServeGen trace it
fits the seasonal candidates, rejects them and selects a non-seasonal model anyway (MNN) at twice
the fit time; with ``1440`` on NASA it raises "Parameters out of range". Which ETS form it picked
at each origin is counted in the JSON (``answered_by``: e.g. ``statsforecast-autoets/ANNN``).

    python benchmarks/forecast_bench.py [--traces nasa,servegen] [--max-workloads N] [--origins N] [--quick]
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from forecasters import ForecastInputError
from forecasters.backtest import BacktestResult, backtest_trace, build_models, plan_origins
from forecasters.base import prepare, seasons, steps_for
from forecasters.series import Forecast, Series, json_safe
from machine import describe, save, trace_files
from simulations.traces import load_trace

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "forecast.json"
HORIZONS_MIN = (10, 30, 60)
BASELINES = ("naive", "seasonal-naive")
SELECTED = "auto"
ETS_NAME = "statsforecast-autoets"
TARGET_IMPROVEMENT_PCT = 15.0
TARGET_COVERAGE = (0.85, 0.95)
ORIGINS, QUICK_ORIGINS, QUICK_WORKLOADS = 48, 6, 3


class AutoETSAdapter:
    """statsforecast's AutoETS behind the backtest's ``fit(series).predict(h)`` protocol.

    The history is cleaned like every model's (:func:`forecasters.base.prepare`, without the
    despiking: AutoETS sees the data as observed, gaps interpolated). Quantiles come from its
    normal prediction intervals: the central L % interval gives levels (100 - L) / 200 and
    1 - (100 - L) / 200 (L = 80, 90, 95, 98 -> 0.1/0.9, 0.05/0.95, 0.025/0.975, 0.01/0.99), the
    mean is the median, and everything is clipped at zero (demand is never negative). A fit that
    statsforecast refuses becomes a ForecastInputError, which the backtest counts as a failed
    origin.
    """

    name = ETS_NAME
    levels = (80, 90, 95, 98)

    def fit(self, history: Series) -> "_FittedETS":
        from statsforecast.models import AutoETS

        data = prepare(history, despike=False)
        daily = seasons(data.step).get("daily", 1)
        model = AutoETS(season_length=daily if daily <= 24 else 1)
        try:
            model.fit(data.y)
        except Exception as exc:  # statsforecast raises bare Exception ("no model able to be fitted")
            raise ForecastInputError(f"series {history.key!r}: AutoETS failed: {type(exc).__name__}: {exc}") from None
        return _FittedETS(self.name, model, history.key, data.end - data.step, data.step, self.levels)


class _FittedETS:
    def __init__(self, name: str, model, key: str, issued_at: float, step: float, levels: tuple[int, ...]) -> None:
        self.name, self.model, self.key, self.issued_at, self.step, self.levels = name, model, key, issued_at, step, levels

    def predict(self, horizon: int) -> Forecast:
        out = self.model.predict(horizon, level=list(self.levels))
        quantiles = {0.5: out["mean"]}
        for level in self.levels:
            tail = (100 - level) / 200
            quantiles[tail], quantiles[1 - tail] = out[f"lo-{level}"], out[f"hi-{level}"]
        clipped = {q: np.maximum(np.asarray(v, dtype=float), 0.0) for q, v in quantiles.items()}
        form = self.model.model_["components"]
        return Forecast(self.key, self.issued_at, self.step, clipped, f"{self.name}/{form}")


def models_to_run() -> tuple[list, list[str]]:
    """The models, and a note for each one that had to be left out."""
    models, notes = build_models(BASELINES), []
    try:
        models += build_models([SELECTED])
    except ForecastInputError as exc:
        notes.append(f"{SELECTED} skipped: {exc}")
    try:
        import statsforecast  # noqa: F401  (the benchmark-only extra)

        models.append(AutoETSAdapter())
    except ImportError:
        notes.append(f"{ETS_NAME} skipped: statsforecast is not installed (pip install statsforecast)")
    return models, notes


def horizon_plan(trace, origins: int) -> tuple[dict[int, int], dict[int, str]]:
    """Evaluable horizons (minutes -> steps) and, for the others, why not."""
    ok, not_evaluable = {}, {}
    for minutes in HORIZONS_MIN:
        steps = steps_for(minutes * 60.0, trace.step_seconds)
        try:
            plan_origins(trace.n_steps, trace.step_seconds, steps, origins, key=trace.workloads[0])
            ok[minutes] = steps
        except ForecastInputError as exc:
            not_evaluable[minutes] = str(exc)
    return ok, not_evaluable


def _mean(values) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def score(results: list[BacktestResult]) -> dict:
    """One trace x horizon: per-model means over workloads, the three targets, per-workload rows."""
    by_model: dict[str, list[BacktestResult]] = {}
    for r in results:
        by_model.setdefault(r.model, []).append(r)
    models = {name: {"mae": _mean(r.summary["mae"] for r in rs), "mase": _mean(r.summary["mase"] for r in rs),
                     "cov90": _mean(r.summary["cov90"] for r in rs), "fit_s": _mean(r.fit_s for r in rs),
                     "failed_origins": sum(r.n_failed for r in rs), "fallback_origins": sum(r.n_fallbacks for r in rs),
                     "answered_by": dict(sum((Counter(r.answered_by) for r in rs), Counter()))}
              for name, rs in by_model.items()}
    base = min(BASELINES, key=lambda b: models[b]["mae"] if math.isfinite(models[b]["mae"]) else math.inf)
    auto = models.get(SELECTED)
    ets = models.get(ETS_NAME)
    improvement = 100.0 * (1.0 - auto["mae"] / models[base]["mae"]) if auto and models[base]["mae"] > 0 else float("nan")
    targets = {
        "improvement_ge_15pct": None if auto is None else improvement >= TARGET_IMPROVEMENT_PCT,
        "auto_no_worse_than_autoets": None if auto is None or ets is None else auto["mae"] <= ets["mae"],
        "auto_cov90_in_85_95": None if auto is None else TARGET_COVERAGE[0] <= auto["cov90"] <= TARGET_COVERAGE[1],
    }
    workloads = {}
    for r in results:
        workloads.setdefault(r.key, {})[r.model] = {k: r.summary[k] for k in ("mae", "mase", "smape", "pinball", "cov90")}
    return {"models": models, "best_baseline": base, "auto_mae": auto["mae"] if auto else None,
            "best_baseline_mae": models[base]["mae"], "improvement_pct": improvement,
            "autoets_mae": ets["mae"] if ets else None, "auto_cov90": auto["cov90"] if auto else None,
            "targets": {k: _verdict(v) for k, v in targets.items()}, "per_workload": workloads}


def bench_trace(path: Path, origins: int, max_workloads: int | None, models: list) -> list[dict]:
    trace = load_trace(path)
    if max_workloads is not None:
        trace = trace.select(trace.workloads[:max_workloads])
    ok, not_evaluable = horizon_plan(trace, origins)
    rows = [{"trace": path.name, "horizon_min": m, "steps": steps_for(m * 60.0, trace.step_seconds),
             "evaluable": False, "reason": why} for m, why in not_evaluable.items()]
    if ok:
        longest = max(ok.values())
        print(f"{path.name}: {len(trace.workloads)} workload(s), {trace.n_steps} steps of {trace.step_seconds:g} s; "
              f"backtesting {len(models)} models at {longest} steps, {origins} origins each ...", flush=True)
        started = time.perf_counter()
        results = backtest_trace(models, trace, longest, n_origins=origins)
        elapsed = time.perf_counter() - started
        for minutes, steps in ok.items():
            rows.append({"trace": path.name, "horizon_min": minutes, "steps": steps, "evaluable": True,
                         "n_workloads": len(trace.workloads), "origins": results[0].n_origins,
                         "seconds_all_horizons": elapsed, **score([r.truncated(steps) for r in results])})
    return sorted(rows, key=lambda r: r["horizon_min"])


def _fmt(value, spec: str = ",.3f") -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def print_table(rows: list[dict]) -> None:
    print(f"\n{'trace':<40} {'horizon':>7} {'auto MAE':>10} {'best baseline':>26} {'gain %':>7} {'>=15%':>5} "
          f"{'AutoETS':>10} {'<=ETS':>5} {'cov90':>6} {'85-95':>5}")
    for r in rows:
        head = f"{r['trace']:<40} {r['horizon_min']:>4} min"
        if not r["evaluable"]:
            print(f"{head}  not evaluable: {r['reason']}")
            continue
        t = r["targets"]
        baseline = f"{r['best_baseline']} {_fmt(r['best_baseline_mae'])}"
        print(f"{head} {_fmt(r['auto_mae']):>10} {baseline:>26} {_fmt(r['improvement_pct'], '.1f'):>7} "
              f"{t['improvement_ge_15pct']:>5} {_fmt(r['autoets_mae']):>10} {t['auto_no_worse_than_autoets']:>5} "
              f"{_fmt(r['auto_cov90'], '.1%'):>6} {t['auto_cov90_in_85_95']:>5}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", default="", help="comma-separated substrings of trace file names (default: all)")
    parser.add_argument("--max-workloads", type=int, default=None, help="at most this many workloads per trace")
    parser.add_argument("--origins", type=int, default=None, help=f"origins per workload (default {ORIGINS})")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK_ORIGINS} origins, at most {QUICK_WORKLOADS} workloads per trace")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    files = trace_files(args.traces)
    if not files:
        return
    origins = args.origins or (QUICK_ORIGINS if args.quick else ORIGINS)
    max_workloads = args.max_workloads or (QUICK_WORKLOADS if args.quick else None)
    models, notes = models_to_run()
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    started = time.perf_counter()
    rows = [row for path in files for row in bench_trace(path, origins, max_workloads, models)]
    elapsed = time.perf_counter() - started
    print_table(rows)
    print(f"\n{len(files)} trace(s) in {elapsed:.0f} s; targets: auto MAE >= {TARGET_IMPROVEMENT_PCT:g}% below the best "
          f"baseline, no worse than AutoETS, 90% interval coverage {TARGET_COVERAGE[0]:.0%}-{TARGET_COVERAGE[1]:.0%}")
    doc = {"benchmark": "forecast", "machine": describe(), "seconds": elapsed,
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "settings": {"origins_per_workload": origins, "max_workloads": max_workloads, "horizons_min": list(HORIZONS_MIN),
                        "models": [m.name for m in models], "notes": notes,
                        "aggregation": "per trace: mean over workloads of each workload's mean-over-leads figure"},
           "rows": rows}
    save(json_safe(doc), args.out)


if __name__ == "__main__":
    main()
