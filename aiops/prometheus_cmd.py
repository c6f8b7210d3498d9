"""``aiops check-prometheus``: run every configured query and say what each finds.

The first command an operator runs: it shows, per workload and cluster-wide, each metric's
PromQL result over a recent window: how many series, how old the newest sample is, how many
steps are missing, and any error, with the server's own message.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass

import click
import numpy as np

from aiops.prometheus import PrometheusError, PrometheusSource, PrometheusUnavailable
from aiops.queries import CLUSTER, Query, catalogue

STALE_SECONDS = 300.0  # Prometheus's default lookback: older than this, instant queries see nothing

CHECK_HELP = """Run every configured Prometheus query and print what each finds.

For each workload in the config (or --workload) and for the cluster, every metric of the query
catalogue (demand, latency, queue, DCGM GPU metrics, kube-state-metrics replicas and GPUs) is
queried over the last --window at the configured step. The table shows the series found, the
age of the newest data point (as a query sees it: Prometheus looks back up to 5 minutes for a
sample), the steps missing since the first one, and errors (bad PromQL with the server's
message, timeouts, refused credentials).

\b
Status: ok; stale (newest sample older than 5 minutes); no data; error.
Exit code: 0 when every workload's demand query has fresh data and no query errors;
1 otherwise; 2 when the server cannot be reached or the config is invalid.

\b
Examples:
  aiops check-prometheus --config cluster.yaml
  aiops check-prometheus --config cluster.yaml --prometheus http://localhost:9090 --window 6h --json checks.json
"""


@dataclass(frozen=True)
class Check:
    """What one query found."""

    target: str
    metric: str
    query: str
    series: int
    newest_age_seconds: float | None  # None: no sample in the window
    missing_steps: int
    status: str  # ok | stale | no data | error
    required: bool
    error: str = ""


def check_query(source: PrometheusSource, q: Query, start: float, end: float, step: float) -> Check:
    try:
        results = source.range(q.promql, start, end, step, align=False)
    except PrometheusUnavailable:
        raise  # the server itself is gone: every other row would say the same
    except PrometheusError as exc:
        return Check(q.target, q.metric, q.promql, 0, None, 0, "error", q.required, exc.message)
    newest, missing = None, 0
    for r in results:
        values = r.series.values
        seen = np.flatnonzero(~np.isnan(values))
        if not len(seen):
            continue
        age = end - (r.series.start + seen[-1] * step)
        newest = age if newest is None else min(newest, age)
        missing += int(np.isnan(values[seen[0]:]).sum())
    status = "no data" if newest is None else ("stale" if newest > STALE_SECONDS else "ok")
    return Check(q.target, q.metric, q.promql, len(results), newest, missing, status, q.required)


def run_checks(source: PrometheusSource, queries: list[Query], window: float, step: float,
               now: float | None = None) -> list[Check]:
    end = time.time() if now is None else now  # the last evaluation is now: the freshest sample counts
    start = end - math.floor(window / step) * step
    return [check_query(source, q, start, end, step) for q in queries]


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


_STYLE = {"ok": "green", "stale": "yellow", "no data": "yellow", "error": "red"}


def render(checks: list[Check]):
    from rich.table import Table

    table = Table(title=None, show_lines=False)
    for column, justify in (("target", "left"), ("metric", "left"), ("series", "right"), ("newest", "right"),
                            ("gaps", "right"), ("status", "left"), ("query / error", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    for c in checks:
        status = f"[{_STYLE[c.status]}]{c.status}[/]" + (" (required)" if c.required and c.status != "ok" else "")
        detail = c.error if c.error else c.query
        table.add_row(c.target, c.metric, str(c.series), _age(c.newest_age_seconds), str(c.missing_steps), status, detail)
    return table


def failed(checks: list[Check]) -> list[Check]:
    """Checks that make the command fail: errors, and required metrics without fresh data."""
    return [c for c in checks if c.status == "error" or (c.required and c.status != "ok")]


@click.command("check-prometheus", help=CHECK_HELP)
@click.option("--config", "config_path", metavar="FILE.yaml", help="Config with prometheus: and workloads (default: the built-in one).")
@click.option("--prometheus", "url", metavar="URL", help="Prometheus base URL (overrides prometheus.url).")
@click.option("--workload", "workloads", multiple=True, metavar="NAME", help="Check this workload (repeatable; default: every listed one).")
@click.option("--window", default="1h", show_default=True, metavar="DURATION", help="How far back to look, e.g. 30m, 6h.")
@click.option("--json", "json_path", metavar="OUT", help="Also write every row as JSON.")
def check_prometheus(config_path, url, workloads, window, json_path) -> None:
    from aiops.cli import _input_errors

    _input_errors(_check)(config_path, url, workloads, window, json_path)


def _check(config_path, url, workloads, window, json_path) -> None:
    from rich.console import Console

    from aiops.backtest_cmd import parse_duration
    from aiops.cli import _output_path, _write
    from simulations.config import load_config

    config = load_config(config_path)
    window_s = parse_duration(window, "--window")
    json_path = _output_path("--json", json_path)
    step = min(config.prometheus.step_seconds, max(window_s / 60.0, 1.0))
    queries = catalogue(config, list(workloads) or None)
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    with PrometheusSource(config.prometheus, url) as source:
        source.instant("vector(1)")  # unreachable or refused: one line and exit 2, before any table
        console.print(f"checking {len(queries)} queries against {source.url} over the last {window.strip()} "
                      f"at {step:g} s steps", highlight=False)
        checks = run_checks(source, queries, window_s, step)
    console.print(render(checks))
    bad = failed(checks)
    counts = {s: sum(c.status == s for c in checks) for s in ("ok", "stale", "no data", "error")}
    console.print(", ".join(f"{n} {s}" for s, n in counts.items()) + f" of {len(checks)} queries", highlight=False)
    if json_path:
        doc = {"command": "check-prometheus", "server": url or config.prometheus.url, "window_seconds": window_s,
               "step_seconds": step, "checks": [asdict(c) for c in checks]}
        _write("--json", json_path, lambda p: open(p, "w", encoding="utf-8").write(json.dumps(doc, indent=2) + "\n"))
    if bad:
        first = bad[0]
        where = "cluster" if first.target == CLUSTER else f"workload {first.target}"
        console.print(f"[red]FAILED[/]: {len(bad)} quer{'y' if len(bad) == 1 else 'ies'} need attention, first: "
                      f"{where} {first.metric}: {first.error or first.status}", highlight=False)
        raise SystemExit(1)
