"""``aiops backtest``: score forecasters on a trace the way they would have been used.

Each workload of the trace is one series. At every origin each model is fitted on everything
before it and forecasts the next ``--horizon``; :mod:`forecasters.backtest` explains where the
origins go and :mod:`forecasters.metrics` what is measured. The command turns the horizon (a
duration) into whole steps of the trace, checks every input before the first fit (so a typo
fails at once with one line, not after minutes), runs the backtest with a progress bar, and
prints one table per workload with the best MAE highlighted. ``--json`` keeps every per-lead
figure; ``--plot`` draws MAE and 90 % coverage per lead and the last origin's forecast fans.
"""

from __future__ import annotations

import math
import re

import click

from forecasters import MODELS
from forecasters.backtest import DEFAULT_ORIGINS
from aiops.history import history_options
from simulations.errors import InputError

DEFAULT_MODELS = ("naive", "seasonal-naive", "auto")
_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)", re.IGNORECASE)

BACKTEST_HELP = f"""Rolling-origin backtest of forecasters on a demand trace.

Each workload of the trace is one series. The models are fitted at --origins origins spread over
the last 7 days or the last third of the trace (whichever is shorter), each time on all the data
before the origin, and forecast the next --horizon. Their forecasts are scored against what was
observed (gaps are never scored): MAE, MASE (1.0 = the one-step naive error of the history),
sMAPE, the pinball loss of the quantiles, and how often the truth fell inside the central 80/90/95 %
intervals (a calibrated model: 80/90/95 %). Fit and predict seconds are means per origin;
"fallbacks" counts origins where a model could not answer itself and a simpler one did.

\b
Models: {", ".join(MODELS)}.
Default: {",".join(DEFAULT_MODELS)} (a default model that is not installed is skipped with a warning).

\b
Examples:
  aiops backtest --trace demand.csv --horizon 30m
  aiops backtest --trace demand.csv --horizon 1h --models naive,ets,auto --workload chat
  aiops backtest --trace demand.csv --horizon 10 --origins 48 --json out/bt.json --plot out/bt.png
  aiops backtest --prometheus http://prometheus:9090 --workload llm-chat --days 14 --horizon 30m

With --prometheus (instead of --trace) the history is each workload's demand query
(see aiops check-prometheus) over the last --days, at prometheus.step_seconds of --config.
"""


def parse_duration(text: str, option: str = "--horizon") -> float:
    """Seconds in ``text``: ``90s``, ``10m``/``10min``, ``1.5h``, ``1d``, or a bare number of minutes.
    Anything else is an InputError naming ``option``."""
    match = _DURATION.fullmatch(text.strip())
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in ("", *_UNITS):
        raise InputError(option, f"{text!r} is not a duration; write e.g. 90s, 10m, 1.5h or 30 (a bare number is minutes)")
    seconds = float(match.group(1)) * _UNITS[unit or "m"]
    if not (math.isfinite(seconds) and seconds > 0):
        raise InputError(option, f"{text!r}: the {option.lstrip('-')} must be longer than zero")
    return seconds


def describe_seconds(seconds: float) -> str:
    """``90 s``, ``10 min``, ``1.5 h``, ``2 days``: the largest unit that keeps it readable."""
    for unit, size in (("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def _model_names(value: str | None) -> tuple[list[str], bool]:
    """The requested model names and whether they were asked for explicitly."""
    if value is None:
        return list(DEFAULT_MODELS), False
    names = [m.strip() for m in value.split(",") if m.strip()]
    if not names:
        raise InputError("--models", "empty list; choose from " + ", ".join(MODELS))
    for name in names:
        if name not in MODELS:
            raise InputError("--models", f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    if len(set(names)) != len(names):
        raise InputError("--models", "a model is listed twice")
    return names, True


def _build(names: list[str], explicit: bool) -> list:
    """Models to backtest. An explicit model that cannot be built is an error; a default one is
    skipped with a warning (the registry lists models whose modules may not be installed)."""
    from forecasters import ForecastInputError
    from forecasters.backtest import build_models

    models = []
    for name in names:
        try:
            models.extend(build_models([name]))
        except ForecastInputError as exc:
            if explicit:
                raise InputError("--models", str(exc)) from None
            click.echo(f"warning: {exc}; skipped", err=True)
    if not models:
        raise InputError("--models", "none of the default models is available; name some with --models")
    return models


def _check_length(trace, path: str, text: str, steps: int, origins: int) -> None:
    """Fail before any fit when the trace is too short for the horizon."""
    from forecasters import ForecastInputError
    from forecasters.backtest import plan_origins

    span = describe_seconds(trace.n_steps * trace.step_seconds)
    if steps >= trace.n_steps:
        raise InputError("--horizon", f"{text} is {steps} steps, but the trace has only {trace.n_steps} steps ({span})")
    try:
        plan_origins(trace.n_steps, trace.step_seconds, steps, origins, key=trace.workloads[0])
    except ForecastInputError as exc:
        raise InputError(path, f"{exc}; use a shorter --horizon or a longer trace") from None


@click.command(help=BACKTEST_HELP)
@click.option("--trace", "trace_path", metavar="FILE",
              help="Demand trace CSV: `timestamp,workload,value` or `timestamp,value` (a blank value is a gap).")
@history_options
@click.option("--horizon", "horizon", metavar="DURATION", required=True,
              help="How far ahead to forecast: 90s, 10m, 1h, 1d; a bare number is minutes. "
                   "Rounded to the nearest whole number of the trace's steps (at least one).")
@click.option("--resample", "resample", metavar="DURATION",
              help="Average irregular timestamps into bins of this width (e.g. 1m); without it every "
                   "timestamp must lie on the trace's one step grid.")
@click.option("--models", "models", metavar="LIST", help=f"Comma-separated models (default: {','.join(DEFAULT_MODELS)}).")
@click.option("--workload", "workload", metavar="NAME", help="Only these workloads of the trace (comma-separated).")
@click.option("--origins", "origins", type=click.IntRange(min=1, max=10_000), default=DEFAULT_ORIGINS, show_default=True,
              help="Forecast origins per workload (more: steadier figures, slower).")
@click.option("--json", "json_path", metavar="OUT", help="Write every per-lead figure as JSON.")
@click.option("--plot", "plot_path", metavar="OUT.png",
              help="Draw MAE and 90 % coverage per lead and the last origin's forecasts per workload.")
@click.option("--progress/--no-progress", default=None, help="Show a progress bar (default: when stderr is a terminal).")
def backtest(**options) -> None:
    from aiops.cli import _input_errors  # here, not at import: aiops.cli imports this module

    _input_errors(_backtest)(**options)


def _backtest(trace_path, prometheus_url, days, config_path, horizon, resample, models, workload, origins, json_path,
              plot_path, progress) -> None:
    from rich.console import Console

    from aiops.cli import PLOT_FORMATS, _output_path, _write
    from forecasters.backtest import compare
    from forecasters.base import steps_for
    from simulations.traces import load_trace

    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        console = Console(width=140)
    errors = Console(stderr=True)
    names, explicit = _model_names(models)
    seconds = parse_duration(horizon)
    json_path = _output_path("--json", json_path)
    plot_path = _output_path("--plot", plot_path, PLOT_FORMATS)
    wanted = [w.strip() for w in (workload or "").split(",") if w.strip()]
    if (trace_path is None) == (prometheus_url is None):
        raise InputError("aiops backtest", "give either --trace FILE or --prometheus URL (with --days)")
    if prometheus_url is None:
        trace = load_trace(trace_path, None if resample is None else parse_duration(resample, "--resample"))
        if wanted:
            trace = trace.select(wanted)
    else:
        from aiops.history import load_history

        trace = load_history(prometheus_url, config_path, wanted, days,
                             errors.is_terminal if progress is None else progress, errors)
        trace_path = trace.source
    step = trace.step_seconds
    steps = steps_for(seconds, step)
    exact = "" if math.isclose(steps * step, seconds) else \
        f" ({describe_seconds(steps * step)}, the nearest whole number of steps)"
    console.print(f"horizon {horizon.strip()} = {steps} step(s) of {describe_seconds(step)}{exact}", highlight=False)
    _check_length(trace, trace_path, horizon.strip(), steps, origins)
    built = _build(names, explicit)
    console.print(f"backtesting {', '.join(m.name for m in built)} on {len(trace.workloads)} workload(s) of "
                  f"{trace.source} ({trace.n_steps} steps), {origins} origins each", highlight=False, soft_wrap=True)
    results = _run_with_progress(built, trace, steps, origins, errors.is_terminal if progress is None else progress, errors)
    for comparison in compare(results):
        rows = [r for r in results if r.key == comparison.key]
        console.print(render_table(rows, comparison))
        console.print(best_line(comparison), highlight=False)
    if json_path:
        doc = to_document(results, trace, trace_path, horizon.strip(), seconds, origins)
        _write("--json", json_path, lambda p: _write_json(doc, p))
        console.print(f"wrote {json_path}", highlight=False)
    if plot_path:
        _write("--plot", plot_path, lambda p: plot(results, p))
        console.print(f"wrote {plot_path}", highlight=False)


def _run_with_progress(models, trace, steps: int, origins: int, show: bool, console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from forecasters.backtest import backtest_trace

    with Progress(TextColumn("backtesting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, disable=not show, transient=True) as bar:
        task = bar.add_task("backtest", total=None)
        return backtest_trace(models, trace, steps, n_origins=origins,
                              progress=lambda done, total: bar.update(task, completed=done, total=total))


def _num(value: float, percent: bool = False) -> str:
    if not math.isfinite(value):
        return "-"
    if percent:
        return f"{100 * value:.0f}%"
    return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4g}"


def render_table(rows, comparison):
    """One workload's table: a row per model, the best MAE in bold green."""
    from rich.table import Table

    first = rows[0]
    table = Table(title=f"{first.key}: {first.horizon}-step horizon ({describe_seconds(first.horizon * first.step)}), "
                        f"{first.n_origins} origins", title_justify="left")
    for header in ("model", "MAE", "MASE", "sMAPE %", "pinball", "cov80", "cov90", "cov95", "fit s", "predict s",
                   "fallbacks", "failed"):
        table.add_column(header, justify="left" if header == "model" else "right")
    for r in rows:
        s = r.summary
        style = "bold green" if r.model == comparison.best else None
        table.add_row(r.model, _num(s["mae"]), _num(s["mase"]), _num(s["smape"]), _num(s["pinball"]),
                      _num(s["cov80"], True), _num(s["cov90"], True), _num(s["cov95"], True),
                      f"{r.fit_s:.3f}" if math.isfinite(r.fit_s) else "-",
                      f"{r.predict_s:.4f}" if math.isfinite(r.predict_s) else "-",
                      f"{r.n_fallbacks}/{r.n_origins}", f"{r.n_failed}/{r.n_origins}", style=style)
    return table


def best_line(comparison) -> str:
    ranking = comparison.ranking
    if not ranking:
        return f"{comparison.key}: every model failed at every origin"
    best = ranking[0]
    line = f"best model for {comparison.key}: {best} (MAE {_num(comparison.scores[best])}"
    if len(ranking) > 1:
        gain = comparison.improvement(best, [ranking[1]])
        if math.isfinite(gain):
            line += f", {gain:.0f}% lower than the runner-up {ranking[1]}"
    return line + ")"


def to_document(results, trace, path: str, horizon: str, seconds: float, origins: int) -> dict:
    """The --json document (schema_version 1): the run's inputs and every result's figures."""
    from forecasters.backtest import compare

    return {
        "schema_version": 1,
        "command": "backtest",
        "trace": {"path": str(path), "source": trace.source, "step_seconds": trace.step_seconds,
                  "steps": trace.n_steps, "workloads": list(trace.workloads)},
        "horizon": {"requested": horizon, "seconds": seconds, "steps": results[0].horizon},
        "origins_requested": origins,
        "models": list(dict.fromkeys(r.model for r in results)),
        "best": {c.key: c.best for c in compare(results)},
        "results": [r.to_json() for r in results],
    }


def _write_json(doc: dict, path: str) -> None:
    import json

    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2, allow_nan=False)
        fh.write("\n")


def plot(results, path: str) -> None:
    """Per workload (one row each): MAE per lead, 90 % coverage per lead against the nominal
    0.9, and the last origin's median and 5-95 % band of every model against the truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    keys = list(dict.fromkeys(r.key for r in results))
    fig, axes = plt.subplots(len(keys), 3, figsize=(15, 3.4 * len(keys)), squeeze=False)
    for row, key in zip(axes, keys):
        mae_ax, cov_ax, fan_ax = row
        shown = [r for r in results if r.key == key]
        minutes = np.arange(1, shown[0].horizon + 1) * shown[0].step / 60
        truth_drawn = False
        for i, r in enumerate(shown):
            colour = f"C{i}"
            mae_ax.plot(minutes, r.per_lead["mae"], color=colour, label=r.model)
            cov_ax.plot(minutes, r.per_lead["cov90"], color=colour, label=r.model)
            if r.forecasts:
                last = r.forecasts[-1]
                fan_ax.plot(minutes, last["median"], color=colour, label=f"{r.model} median")
                if last["q05"] is not None and last["q95"] is not None:
                    fan_ax.fill_between(minutes, last["q05"], last["q95"], color=colour, alpha=0.15)
                if not truth_drawn:
                    fan_ax.plot(minutes, np.asarray(last["truth"], dtype=float), color="black", lw=1.5, label="observed")
                    truth_drawn = True
        cov_ax.axhline(0.9, color="grey", ls="--", label="nominal 90 %")
        cov_ax.set_ylim(-0.02, 1.02)
        mae_ax.set(title=f"{key}: MAE per lead", xlabel="lead (min)", ylabel="MAE")
        cov_ax.set(title=f"{key}: 90 % interval coverage", xlabel="lead (min)", ylabel="coverage")
        fan_ax.set(title=f"{key}: last origin, median and 5-95 %", xlabel="lead (min)", ylabel="demand")
        for ax in row:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
