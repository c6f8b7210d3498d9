"""The ``aiops`` command line.

Every user-fixable problem (a bad trace, config or option) ends with one line on stderr,
``error: WHERE: PROBLEM``, and exit code 2; never a traceback.
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path

import click

from simulations.errors import InputError

SIMULATE_HELP = """Replay a demand trace against a simulated GPU cluster and compare policies.

With no options it runs the embedded default: a seeded synthetic 7-day LLM-serving trace
(diurnal and weekly cycles, noise, flash crowds) on one pool of 8-GPU nodes that take 6 minutes
to provision, serving one workload whose replicas take 3 minutes to load their weights.

\b
Policies:
  reactive    the Kubernetes HPA algorithm plus cluster-autoscaler (what most teams run)
  predictive  calibrated forecast (per-workload model selection) over the lead time, never below reactive
  oracle      perfect foresight: the cheapest way to meet the SLO at every minute

\b
Output: a table per workload and policy (SLO attainment, SLO-violating minutes, p95 latency,
GPU-hours, cost, cost / oracle cost, scaling actions) and billed totals.

\b
Examples:
  aiops simulate
  aiops simulate --trace demand.csv --scale-to 256 --json out/result.json --plot out/run.png
  aiops simulate --config cluster.yaml --policies reactive,predictive
  aiops simulate --inject xid79 --incidents-dir out/incidents
"""


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _input_errors(fn):
    """Turn InputError (and unwritable outputs) into one line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


def _version() -> str:
    from simulations.report import _version as v

    return v()


class _OneLineErrors(click.Group):
    """Usage errors (a bad option value, an unknown option) as one line too, exit code 2."""

    def main(self, *args, **kwargs):
        kwargs.pop("standalone_mode", None)
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.Exit as exc:  # --help, --version
            sys.exit(exc.exit_code)
        except click.exceptions.NoArgsIsHelpError as exc:  # bare `aiops`: the help, as click would
            click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message(), err=True)
            sys.exit(2)
        except click.ClickException as exc:
            name = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "aiops"
            _fail(f"{name}: {' '.join(exc.format_message().split())} (see --help)")
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(130)


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(version=_version(), prog_name="aiops")
def main() -> None:
    """Predictive GPU autoscaler and AIOps agent for Kubernetes.

    Start with `aiops simulate`: it needs no cluster. `aiops backtest` compares demand
    forecasters on a trace or on Prometheus history; `aiops train` trains one and registers it;
    `aiops models` lists, promotes and rolls back registered versions. On a cluster,
    `aiops check-prometheus` runs every metric query and shows what it finds.
    """


def _policies(value: str | None) -> list[str] | None:
    if value is None:
        return None
    from policies import POLICIES

    names = [p.strip() for p in value.split(",") if p.strip()]
    if not names:
        raise InputError("--policies", "empty list; choose from " + ", ".join(POLICIES))
    for name in names:
        if name not in POLICIES:
            raise InputError("--policies", f"unknown policy {name!r}; choose from {', '.join(POLICIES)}")
    if len(set(names)) != len(names):
        raise InputError("--policies", "a policy is listed twice")
    return names


PLOT_FORMATS = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


def _output_path(option: str, value: str | None, suffixes: tuple[str, ...] = ()) -> str | None:
    """Check an output path before the (long) simulation, so a typo fails at once, not at the end."""
    if value is None:
        return None
    path = Path(value)
    if suffixes and path.suffix.lower() not in suffixes:
        raise InputError(option, f"{value!r}: the file name must end in one of {', '.join(suffixes)}")
    if path.is_dir():
        raise InputError(option, f"{value!r} is a directory; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        with open(path, "a", encoding="utf-8"):
            pass
        if not existed:
            path.unlink()
    except OSError as exc:
        raise InputError(option, f"cannot write {value!r}: {exc.strerror or exc}") from None
    return str(path)


def _write(option: str, path: str, write) -> None:
    """Run ``write(path)``; a full disk or a vanished directory is one line, not a traceback."""
    try:
        write(path)
    except OSError as exc:
        raise InputError(option, f"cannot write {path!r}: {exc.strerror or exc}") from None


@main.command(help=SIMULATE_HELP)
@click.option("--trace", "trace_path", metavar="FILE",
              help="Demand trace CSV: `timestamp,workload,value` (several workloads) or `timestamp,value`; "
                   "a blank value is a gap. Default: the synthetic 7-day trace.")
@click.option("--config", "config_path", metavar="FILE.yaml",
              help="Cluster, workloads, SLOs and policy settings (YAML). Missing sections keep their defaults.")
@click.option("--policies", "policies", metavar="LIST", help="Comma-separated subset of reactive,predictive,oracle "
              "(default: the config's `policies.enabled`, all three).")
@click.option("--json", "json_path", metavar="OUT", help="Write every figure as JSON (schema_version 1).")
@click.option("--decisions", "decisions_path", metavar="OUT.jsonl",
              help="Write every scaling change as a JSON line: target, counts, the policy and its reasons.")
@click.option("--plot", "plot_path", metavar="OUT.png", help="Draw demand vs ready capacity, nodes and latency per policy.")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Seed of the synthetic default trace (overrides simulation.seed). The simulation itself is deterministic.")
@click.option("--scale-to", "scale_to", type=click.FloatRange(min=0, min_open=True, max=1e7), default=None, metavar="GPUS",
              help="Rescale the trace so that its peak needs this many GPUs at the workloads' SLO capacity.")
@click.option("--progress/--no-progress", default=None, help="Show a progress bar (default: when stderr is a terminal).")
@click.option("--inject", "inject", multiple=True, metavar="FAULT",
              type=click.Choice(["traffic_surge", "memory_leak", "xid79", "thermal_throttle", "rollout_regression", "crash_loop",
                                 "metrics_missing"]),
              help="Instead of scaling: inject this fault (repeatable) into a simulated GPU cluster's telemetry, run the "
                   "agent's anomaly scan on it, and show the incidents, the Slack message and the webhook payload.")
@click.option("--incidents-dir", "incidents_dir", metavar="DIR",
              help="With --inject: write the incident log (for `aiops explain`), the Slack messages and webhook payloads here.")
@_input_errors
def simulate(trace_path, config_path, policies, json_path, decisions_path, plot_path, seed, scale_to, progress, inject,
             incidents_dir) -> None:
    from rich.console import Console

    from simulations.config import load_config
    from simulations.replay import simulate as run
    from simulations.report import plot, render_table, score, to_document, verdict, write_json
    from simulations.traces import load_trace, synthetic_llm_trace

    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        console = Console(width=140)
    errors = Console(stderr=True)
    if inject:
        from aiops.incident_cmd import run_injection

        run_injection(tuple(inject), 0 if seed is None else seed, incidents_dir, console)
        return
    if incidents_dir:
        raise InputError("--incidents-dir", "only goes with --inject")
    names = _policies(policies)
    json_path = _output_path("--json", json_path)
    plot_path = _output_path("--plot", plot_path, PLOT_FORMATS)
    decisions_path = _output_path("--decisions", decisions_path)
    config = load_config(config_path)
    if seed is not None:
        config = config.model_copy(update={"simulation": config.simulation.model_copy(update={"seed": seed})})
    if trace_path is None:
        first = config.workloads[0].name if config.workloads else "llm-chat"
        trace = synthetic_llm_trace(days=7, step_seconds=60, seed=config.simulation.seed, workload=first)
    else:
        trace = load_trace(trace_path)
    if scale_to is not None:
        trace = trace.scaled(scale_to / _peak_gpus(trace, config))
    for warning in _capacity_warnings(trace, config):
        click.echo(f"warning: {warning}", err=True)

    names = names or list(config.policies.enabled)
    pools = ", ".join(f"{p.name} ({p.gpus_per_node} GPUs/node, {p.provisioning_seconds / 60:g} min to provision, "
                      f"${p.price_per_gpu_hour:g}/GPU-h)" for p in config.node_pools)
    seconds = trace.n_steps * trace.step_seconds
    span = f"{seconds / 86400:.1f} days" if seconds >= 86400 else f"{seconds / 3600:.1f} hours"
    console.print(f"Simulating {span} of {trace.source}: {len(trace.workloads)} workload(s), "
                  f"{trace.step_seconds:g} s steps", highlight=False)
    console.print(f"node pools: {pools}; policies: {', '.join(names)}", highlight=False)
    started = time.perf_counter()
    show = errors.is_terminal if progress is None else progress
    sim = _run_with_progress(run, trace, config, names, show, errors, record=decisions_path is not None)
    scores = score(sim)
    console.print(render_table(sim, scores))
    for line in verdict(scores):
        console.print(line, highlight=False)
    if json_path:
        _write("--json", json_path, lambda p: write_json(to_document(sim, scores), p))
        console.print(f"wrote {json_path}", highlight=False)
    if decisions_path:
        _write("--decisions", decisions_path, lambda p: _write_decisions(sim, p))
        console.print(f"wrote {decisions_path}", highlight=False)
    if plot_path:
        _write("--plot", plot_path, lambda p: plot(sim, p))
        console.print(f"wrote {plot_path}", highlight=False)
    console.print(f"simulated in {time.perf_counter() - started:.1f} s", style="dim", highlight=False)


def _write_decisions(sim, path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for run in sim.runs.values():
            for decision in run.decisions:
                fh.write(decision.to_json() + "\n")


def _peak_gpus(trace, config) -> float:
    import numpy as np

    workloads = [config.workload_for(n) for n in trace.workloads]
    per_gpu = np.array([w.capacity_rps / w.gpus_per_replica for w in workloads])
    gpus = np.nansum(np.asarray(trace.values) / per_gpu, axis=1)
    peak = float(gpus.max(initial=0.0))
    if not peak > 0:
        raise InputError(trace.source, "--scale-to needs a trace with some non-zero demand")
    return peak


def _capacity_warnings(trace, config) -> list[str]:
    """Limits the trace's peak cannot fit in: the oracle will miss its SLO there too."""
    import numpy as np

    from policies.leadtime import replicas_needed

    out = []
    peak = np.nanmax(np.asarray(trace.values), axis=0)
    pool_gpus: dict[str, float] = {}
    for name, value in zip(trace.workloads, peak):
        w = config.workload_for(name)
        replicas = int(replicas_needed(float(value), w.capacity_rps)) if np.isfinite(value) else 0
        if replicas > w.max_replicas:
            out.append(f"workload {name!r} peaks at {value:,.1f} rps, which needs {replicas} replicas at its SLO "
                       f"capacity; max_replicas is {w.max_replicas}")
        pool = config.pool(w.node_pool).name
        pool_gpus[pool] = pool_gpus.get(pool, 0.0) + replicas * w.gpus_per_replica
    for pool in config.node_pools:
        limit = pool.max_nodes * pool.gpus_per_node
        if pool_gpus.get(pool.name, 0) > limit:
            out.append(f"node pool {pool.name!r}: workload peaks add up to {pool_gpus[pool.name]:,.0f} GPUs, above its "
                       f"{limit} (max_nodes {pool.max_nodes} x {pool.gpus_per_node}); raise node_pools[].max_nodes in --config")
    return out


def _run_with_progress(run, trace, config, names, show: bool, console, record: bool = False):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from simulations.replay import simulation_steps

    steps = simulation_steps(trace, config) * len(names)
    with Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, disable=not show, transient=True) as bar:
        task = bar.add_task("simulate", total=steps)
        return run(trace, config, names, progress=lambda k: bar.advance(task, k), record_decisions=record)


def _register_commands() -> None:
    from aiops.backtest_cmd import backtest
    from aiops.detect_cmd import detect
    from aiops.gpu_exporter import gpu_exporter
    from aiops.incident_cmd import explain
    from aiops.models_cmd import models, train
    from aiops.prometheus_cmd import check_prometheus
    from aiops.runner import check_config, run

    for command in (backtest, train, models, check_prometheus, check_config, run, gpu_exporter, detect, explain):
        main.add_command(command)


_register_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
