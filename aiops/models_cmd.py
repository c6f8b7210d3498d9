"""``aiops train`` and ``aiops models``: train forecasters on a trace, register, promote, roll back.

``aiops train`` holds out the last stretch of the trace (``--holdout``, by default a day or a
quarter of the trace, whichever is shorter), trains the model on what comes before
(``Forecaster.train``), and scores it by a rolling-origin backtest over the holdout
(:mod:`forecasters.backtest`: at each origin the model is fitted on the history up to it, reusing
what training learned, and forecasts ``--horizon`` ahead). The model is built with the
backtest's quantile levels, so the central 90 % interval's coverage can be scored. Scores are
each metric's mean over the series (MAE, MASE, sMAPE, pinball loss, interval coverage) and an
``evaluation`` string naming the protocol and the data's fingerprint; two versions are only
compared when those strings are equal.

The new version is registered (:mod:`forecasters.registry`) and, unless ``--no-promote``,
promoted when it beats the current version *re-scored on the same evaluation*: the current
model is loaded from the registry and backtested on the same holdout, horizon and origins, so
neither side is judged on numbers from another trace. Not being promoted is a normal outcome
(exit 0) and the reason is printed.

Every user-fixable problem (a bad trace or option, a corrupt or tampered registry file, an
unknown version, a refused ``models promote``) is one line ``error: WHERE: PROBLEM`` and exit 2.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import click

from aiops.backtest_cmd import parse_duration
from forecasters import MODELS
from forecasters.registry import DEFAULT_ROOT, ENV_ROOT
from aiops.history import history_options
from simulations.errors import InputError

if TYPE_CHECKING:
    from forecasters.base import Forecaster
    from forecasters.registry import ModelRegistry
    from forecasters.series import Series
    from simulations.traces import Trace

DAY = 86_400.0

TRAIN_HELP = """Train a forecaster on a trace, score it, register it and promote it if it is better.

The last stretch of the trace (--holdout) is held out: the model is trained on what comes
before and scored by a rolling-origin backtest over the holdout (MASE: lower is better). The
version is stored in the registry (--registry, or $AIOPS_MODEL_REGISTRY) and promoted when it
beats the current version re-scored on the same holdout; the reason is printed either way.

\b
Examples:
  aiops train --trace demand.csv --model seasonal-naive
  aiops train --trace demand.csv --model torch-mlp --device cuda --horizon 1h --name llm-chat
  aiops train --prometheus http://prometheus:9090 --config cluster.yaml --days 14 --model auto

With --prometheus (instead of --trace) the history is each workload's demand query
(see aiops check-prometheus) over the last --days, pulled with a progress bar.
"""


# -- shared plumbing ---------------------------------------------------------------------------------
def _one_line_errors(fn: Callable) -> Callable:
    """aiops.cli's ``_input_errors``, with registry and forecaster errors, and a registry that
    cannot be written (a full or read-only volume), turned into InputError.

    ``aiops.cli`` imports this module at its end, so it is imported here at call time."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from aiops.cli import _input_errors
        from forecasters.base import ForecastInputError
        from forecasters.registry import RegistryError

        def run():
            try:
                return fn(*args, **kwargs)
            except RegistryError as exc:
                raise InputError(exc.where, exc.problem) from None
            except ForecastInputError as exc:
                raise InputError(click.get_current_context().command_path, str(exc)) from None
            except OSError as exc:
                raise InputError(str(exc.filename or "--registry"), f"cannot write: {exc.strerror or exc}") from None

        return _input_errors(run)()

    return wrapper


def _registry_option(fn: Callable) -> Callable:
    return click.option("--registry", "registry_dir", metavar="DIR", envvar=ENV_ROOT, default=DEFAULT_ROOT,
                        show_default=True, show_envvar=True,
                        help="Model registry directory (a PVC mount in the cluster).")(fn)


def _open_registry(directory: str, create: bool = False) -> "ModelRegistry":
    """The registry at ``directory``; with ``create``, made (and checked writable) before any work."""
    from forecasters.registry import ModelRegistry

    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise InputError("--registry", f"{directory!r} is not a directory")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError("--registry", f"cannot create {directory!r}: {exc.strerror or exc}") from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise InputError("--registry", f"{directory!r} is not writable")
    return ModelRegistry(path)


def console_for(stderr: bool = False):
    from rich.console import Console

    console = Console(stderr=stderr)
    if not stderr and not console.is_terminal:  # piped or captured: do not squeeze tables into 80 columns
        console = Console(width=140)
    return console


def _say(console, text: str, style: str | None = None) -> None:
    console.print(text, style=style, highlight=False, markup=False, soft_wrap=True)


# -- evaluation --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    """A rolling-origin backtest on the holdout: the full series, where the holdout starts, the
    horizon and the number of origins. :mod:`forecasters.backtest` plans the same origins from
    these every time, so equal evaluations score models on exactly the same forecasts."""

    series: tuple["Series", ...]
    cut: int  # index of the holdout's first step: training sees values[:cut], every origin is >= cut
    horizon: int  # steps
    n_origins: int

    @property
    def description(self) -> str:
        """What the scores were measured on; equal descriptions mean comparable scores."""
        from forecasters.backtest import plan_origins
        from forecasters.registry import data_fingerprint, iso_utc

        first = self.series[0]
        origins = plan_origins(len(first), first.step, self.horizon, self.n_origins, self.cut, first.key)
        return (f"rolling-origin backtest: {len(origins)} origins from {iso_utc(first.start + origins[0] * first.step)} "
                f"(training up to {iso_utc(first.start + self.cut * first.step)}), horizon {self.horizon} x "
                f"{first.step:g} s, {len(self.series)} series, data {data_fingerprint(list(self.series))}")

    def training(self) -> list["Series"]:
        """What models are trained on: every series up to the holdout."""
        from forecasters.series import Series

        return [Series(s.key, s.start, s.step, s.values[: self.cut]) for s in self.series]


def score(model: "Forecaster", evaluation: Evaluation, progress: Callable[[int, int], None] | None = None) -> dict:
    """Backtest ``model`` on ``evaluation`` (:func:`forecasters.backtest.backtest_trace`): each
    metric's mean over the series (MASE is scale-free, so series of any size weigh the same)."""
    import numpy as np

    from forecasters.backtest import METRICS, backtest_trace

    results = backtest_trace([model], list(evaluation.series), evaluation.horizon, evaluation.n_origins,
                             min_train=evaluation.cut, progress=progress)
    out: dict = {}
    for metric in METRICS:
        values = np.array([r.summary[metric] for r in results])
        finite = values[np.isfinite(values)]
        out[metric] = float(finite.mean()) if finite.shape[0] else None
    out["coverage_90"] = out.pop("cov90")
    out["per_series_mase"] = {r.key: r.summary["mase"] for r in results}
    out["n_origins"] = int(sum(r.n_origins for r in results))
    out["failed_origins"] = int(sum(r.n_failed for r in results))
    out["horizon_steps"] = evaluation.horizon
    out["evaluation"] = evaluation.description
    return out


# -- aiops train ------------------------------------------------------------------------------------
@click.command(help=TRAIN_HELP)
@click.option("--trace", "trace_path", metavar="FILE",
              help="Demand trace CSV (`timestamp,workload,value`); a blank value is a gap.")
@history_options
@click.option("--model", "model_name", required=True, metavar="NAME", help=f"Forecaster to train: {', '.join(MODELS)}.")
@click.option("--workload", "workloads", multiple=True, metavar="W",
              help="Train on this workload only (repeatable; default: all).")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]",
              help="Where torch models train; numpy models always run on the CPU.")
@_registry_option
@click.option("--name", "name", metavar="NAME", help="Registered name (default: the model's name).")
@click.option("--horizon", default="30m", show_default=True, metavar="DURATION", help="Backtest horizon, e.g. 30m or 1h.")
@click.option("--resample", "resample", metavar="DURATION",
              help="Average irregular timestamps into bins of this width (e.g. 1m); without it every "
                   "timestamp must lie on the trace's one step grid.")
@click.option("--holdout", default=None, metavar="DURATION",
              help="Last stretch of the trace kept out of training and used for scoring (default: 1d or a quarter of the trace).")
@click.option("--promote/--no-promote", default=True, show_default=True,
              help="Promote the new version if it beats the current one on the same holdout.")
@click.option("--progress/--no-progress", default=None, help="Show progress (default: when stderr is a terminal).")
@_one_line_errors
def train(trace_path, prometheus_url, days, config_path, model_name, workloads, device, registry_dir, name, horizon,
          resample, holdout, promote, progress) -> None:
    from forecasters.registry import check_name

    if model_name not in MODELS:
        raise InputError("--model", f"unknown model {model_name!r}; choose from {', '.join(MODELS)}")
    name = name or model_name
    check_name(name)
    registry = _open_registry(registry_dir, create=True)
    horizon_s = parse_duration(horizon, "--horizon")
    holdout_s = None if holdout is None else parse_duration(holdout, "--holdout")
    out, err = console_for(), console_for(stderr=True)
    show = err.is_terminal if progress is None else progress
    if (trace_path is None) == (prometheus_url is None):
        raise InputError("aiops train", "give either --trace FILE or --prometheus URL (with --days)")
    if prometheus_url is None:
        trace = _load(trace_path, workloads, None if resample is None else parse_duration(resample, "--resample"))
    else:
        from aiops.history import load_history

        trace = load_history(prometheus_url, config_path, workloads, days, show, err)
        trace_path = trace.source
    evaluation = _evaluation(trace, horizon_s, holdout_s)

    model, device_text = build_model(model_name, device)
    _say(err, f"device: {device_text}")
    training = evaluation.training()
    _say(out, f"training {model_name} on {len(training)} series of {trace.source}, holding out the last "
              f"{len(evaluation.series[0]) - evaluation.cut} steps for scoring")
    _train(model, training, trace_path, show, err)
    scores = _score_with_progress(model, evaluation, "scoring", show, err, trace_path)
    entry = registry.register(name, model, training, scores, device=device_text)
    _say(out, f"registered {name} {entry.version} in {registry.root}: MASE {_fmt(scores['mase'])}, "
              f"MAE {_fmt(scores['mae'])}, pinball {_fmt(scores['pinball'])}, 90% coverage {_fmt(scores['coverage_90'])}")
    if not promote:
        _say(out, f"not promoted (--no-promote); to promote: aiops models promote {name} {entry.version}")
        return
    _say(out, promote_if_better(registry, name, entry.version, evaluation, device, show, err))


def _load(trace_path: str, workloads: tuple[str, ...], resample_s: float | None = None) -> "Trace":
    from simulations.traces import load_trace

    trace = load_trace(trace_path, resample_s)
    return trace.select(list(workloads)) if workloads else trace


def _evaluation(trace: "Trace", horizon_s: float, holdout_s: float | None) -> Evaluation:
    from forecasters.backtest import DEFAULT_ORIGINS, as_series

    step, n = trace.step_seconds, trace.n_steps
    horizon = int(round(horizon_s / step))
    if horizon < 1:
        raise InputError("--horizon", f"{horizon_s:g} s is shorter than the trace's {step:g} s step")
    holdout = int(round((holdout_s if holdout_s is not None else min(DAY, n * step / 4)) / step))
    if holdout <= horizon:
        raise InputError("--holdout" if holdout_s is not None else trace.source,
                         f"the holdout ({holdout} steps) must be longer than the horizon ({horizon} steps); "
                         "give a longer trace or --holdout, or a shorter --horizon")
    if holdout > n // 2:
        raise InputError("--holdout" if holdout_s is not None else trace.source,
                         f"the holdout ({holdout} steps) would leave less than half of the trace's {n} steps for training")
    return Evaluation(tuple(as_series(trace)), n - holdout, horizon, DEFAULT_ORIGINS)


def holdout_evaluation(series: list["Series"], horizon: int, n_origins: int) -> Evaluation | None:
    """The agent's retrain evaluation on its own history: the last day (at most a quarter of the
    history) held out; None when the history is too short to hold anything out."""
    step, n = series[0].step, len(series[0])
    holdout = int(round(min(DAY, n * step / 4) / step))
    if holdout <= horizon or holdout > n // 2:
        return None
    return Evaluation(tuple(series), n - holdout, horizon, n_origins)


def build_model(model_name: str, device: str) -> tuple["Forecaster", str]:
    """The model (with the backtest's quantile levels, and ``device`` for models that take one)
    and the device in words."""
    from forecasters import build, model_class
    from forecasters.backtest import BACKTEST_QUANTILES

    config: dict = {"quantiles": list(BACKTEST_QUANTILES)}
    try:
        cls = model_class(model_name)
    except (ImportError, AttributeError) as exc:  # listed, but its module is missing (an optional dependency)
        raise InputError("--model", f"{model_name} is not available: {type(exc).__name__}: {exc}") from None
    if "device" not in inspect.signature(cls).parameters:
        if device not in ("auto", "cpu"):
            click.echo(f"note: {model_name} runs on numpy; --device {device} does not apply", err=True)
        return build(model_name, config), "cpu (numpy)"
    from forecasters.base import ForecastInputError
    from forecasters.device import describe_device, resolve_device

    try:
        resolved = resolve_device(device)
    except ForecastInputError as exc:
        raise InputError("--device", str(exc)) from None
    return build(model_name, {**config, "device": device}), describe_device(resolved)


def _train(model: "Forecaster", training: list["Series"], where: str, show: bool, console) -> None:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from forecasters.base import ForecastInputError

    with Progress(SpinnerColumn(), TextColumn(f"training {model.name}"), TimeElapsedColumn(),
                  console=console, disable=not show, transient=True) as bar:
        bar.add_task("train", total=None)
        try:
            model.train(training)
        except ForecastInputError as exc:
            raise InputError(where, str(exc)) from None


def _score_with_progress(model: "Forecaster", evaluation: Evaluation, label: str, show: bool, console,
                         where: str) -> dict:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from forecasters.base import ForecastInputError

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, disable=not show, transient=True) as bar:
        task = bar.add_task(label, total=None)
        try:
            return score(model, evaluation, lambda done, total: bar.update(task, completed=done, total=total))
        except ForecastInputError as exc:
            raise InputError(where, str(exc)) from None


def promote_if_better(registry: "ModelRegistry", name: str, version: str, evaluation: Evaluation, device: str,
                       show: bool, console) -> str:
    """Promote ``version`` when it beats the current version re-scored on ``evaluation``: the verdict."""
    from forecasters.registry import PromotionRefused, RegistryError

    current = registry.current(name)
    baseline = None
    if current is not None:
        try:
            incumbent = registry.load(name, current.version, device=device)
            baseline = _score_with_progress(incumbent, evaluation, f"re-scoring {current.version}", show, console,
                                            str(current.path))
        except (RegistryError, InputError) as exc:
            return f"not promoted: cannot re-score current {current.version} on the same data: {exc}"
    try:
        return f"promoted {name} {version}: {registry.promote(name, version, baseline=baseline)}"
    except PromotionRefused as exc:
        return f"not promoted: {exc.problem}; to promote anyway: aiops models promote {name} {version} --force"


def _minute(iso: str | None) -> str:
    """``2026-01-05T00:00:00Z`` as ``2026-01-05 00:00``: enough for a table cell."""
    return "?" if not iso else iso.replace("T", " ")[:16]


def _fmt(value) -> str:
    return "n/a" if value is None or value != value else f"{value:.4f}"


# -- aiops models -----------------------------------------------------------------------------------
@click.group(help="List, show, promote and roll back registered forecasters.")
def models() -> None:
    pass


def _version_arg(version: str) -> str:
    """``3``, ``v3`` and ``v0003`` all name version v0003."""
    match = re.fullmatch(r"v?(\d+)", version.strip())
    if not match:
        raise InputError("VERSION", f"{version!r} is not a version (v0001, v0002, ... or 1, 2, ...)")
    return f"v{int(match.group(1)):04d}"


@models.command("list", help="Registered versions: model, training data, device, score and status.")
@_registry_option
@click.option("--name", "only", metavar="NAME", help="Only this registered name.")
@_one_line_errors
def list_models(registry_dir, only) -> None:
    from rich.table import Table

    registry = _open_registry(registry_dir)
    names = [only] if only else registry.names()
    console = console_for()
    rows = [(n, v, registry.promotions(n)) for n in names for v in registry.versions(n)]
    if not rows:
        where = f"for {only!r} " if only else ""
        _say(console, f"no models registered {where}in {registry.root}")
        return
    table = Table(title=f"models in {registry.root} (UTC)", title_justify="left")
    for column in ("name", "version", "model", "created", "trained on", "device", "MASE", "status"):
        table.add_column(column, justify="right" if column == "MASE" else "left", no_wrap=column != "device")
    for n, v, history in rows:
        window = v.metadata["training"]
        status = ("current" if v.version == history.current else "known-good" if v.version in history.known_good
                  else "rolled back" if v.version in history.rolled_back else "")
        trained = f"{_minute(window.get('start'))} .. {_minute(window.get('end'))}, {window.get('n_series', '?')} series"
        table.add_row(n, v.version, v.model, _minute(v.metadata.get("created_at")), trained,
                      str(v.metadata.get("device", "")), _fmt(v.mase), status)
    console.print(table)


@models.command(help="Print a version's metadata as JSON (default: the current version, else the latest).")
@click.argument("name")
@click.argument("version", required=False)
@_registry_option
@_one_line_errors
def show(name, version, registry_dir) -> None:
    registry = _open_registry(registry_dir)
    if version is not None:
        entry = registry.get(name, _version_arg(version))
    else:
        entry = registry.current(name) or (registry.versions(name) or [None])[-1]
        if entry is None:
            raise InputError(name, f"no model named {name!r} in {registry.root}")
    click.echo(json.dumps(entry.metadata, indent=2))


@models.command(help="Make VERSION current if its MASE beats the current version's on the same evaluation.")
@click.argument("name")
@click.argument("version")
@click.option("--force", is_flag=True, help="Promote even when it is not better or the scores are not comparable.")
@_registry_option
@_one_line_errors
def promote(name, version, force, registry_dir) -> None:
    registry = _open_registry(registry_dir)
    version = _version_arg(version)
    from forecasters.registry import PromotionRefused

    try:
        reason = registry.promote(name, version, force=force)
    except PromotionRefused as exc:
        raise InputError(exc.where, f"not promoted: {exc.problem} (--force promotes anyway)") from None
    click.echo(f"{name}: {version} is current: {reason}")


@models.command(help="Retire the current version and make the previous known-good version current again.")
@click.argument("name")
@_registry_option
@_one_line_errors
def rollback(name, registry_dir) -> None:
    registry = _open_registry(registry_dir)
    old, new = registry.rollback(name)
    click.echo(f"{name}: rolled back from {old} to {new} ({new} is current)")

