"""History from Prometheus for training and backtests: each workload's demand as a trace.

``aiops backtest --prometheus URL`` and ``aiops train --prometheus URL`` call :func:`pull_demand`,
which runs each workload's catalogue ``demand`` query (:mod:`aiops.queries`) over the last N days
at ``prometheus.step_seconds``, in parallel, with long ranges split under Prometheus's point
limit. Steps without a sample stay gaps (NaN): the forecasters and the backtest treat them as
missing, never as zero traffic.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import numpy as np

from aiops.prometheus import PrometheusSource
from aiops.queries import workload_queries
from simulations.config import SimConfig
from simulations.errors import InputError
from simulations.traces import Trace

DAY = 86_400.0


def demand_queries(config: SimConfig, workloads: Sequence[str]) -> dict[str, str]:
    """Workload name -> its demand PromQL."""
    out = {}
    for name in workloads:
        queries = workload_queries(name, config.workload_for(name).metrics, config.prometheus.rate_window)
        if "demand" not in queries:
            raise InputError(f"workloads[{name}].metrics.queries.demand", "is turned off; a forecast needs demand")
        out[name] = queries["demand"].promql
    return out


def pull_demand(source: PrometheusSource, config: SimConfig, workloads: Sequence[str], days: float,
                end: float | None = None, progress: Callable[[int], None] | None = None) -> Trace:
    """The last ``days`` of demand for ``workloads`` as a :class:`Trace` (NaN where no sample).

    Raises :class:`InputError` when a workload has no demand data at all in the range (a wrong
    namespace or selector is the usual cause: ``aiops check-prometheus`` shows the query).
    """
    if not workloads:
        raise InputError("--workload", "name at least one workload")
    if not (days > 0 and math.isfinite(days)):
        raise InputError("--days", f"must be a positive number of days (got {days})")
    step = config.prometheus.step_seconds
    end = time.time() if end is None else end
    end = math.floor(end / step) * step
    start = end - days * DAY + step
    queries = demand_queries(config, workloads)
    series = source.range_many(queries, start, end, step, progress)
    empty = [name for name in workloads if np.isnan(series[name].values).all()]
    if empty:
        name = empty[0]
        raise InputError(f"prometheus {source.url}", f"no demand data for workload {name!r} in the last {days:g} days "
                         f"(query: {queries[name]}); check its metrics settings with aiops check-prometheus")
    first = series[workloads[0]]
    values = np.column_stack([series[name].values for name in workloads])
    return Trace(f"prometheus {source.url} ({days:g} days)", first.start, step, tuple(workloads), values)


def history_options(fn):
    """``--prometheus URL --days N --config FILE`` for commands that can read history from Prometheus."""
    import click

    for option in reversed((
        click.option("--prometheus", "prometheus_url", metavar="URL",
                     help="Pull the history from this Prometheus instead of a trace (with --days; --config for the queries)."),
        click.option("--days", type=click.FloatRange(min=0, min_open=True, max=366), metavar="N",
                     help="With --prometheus: how many days of history to pull."),
        click.option("--config", "config_path", metavar="FILE.yaml",
                     help="With --prometheus: the config whose prometheus: and workloads' metrics: give the queries."),
    )):
        fn = option(fn)
    return fn


def load_history(url: str | None, config_path: str | None, workloads: Sequence[str], days: float | None,
                 show_progress: bool, console) -> Trace:
    """``--prometheus URL [--config FILE] --workload W --days N`` as a trace, with a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from simulations.config import load_config

    config = load_config(config_path)
    if days is None:
        raise InputError("--days", "how many days of history to pull from Prometheus (e.g. --days 14)")
    workloads = list(workloads) or [w.name for w in config.workloads]
    with PrometheusSource(config.prometheus, url) as source, \
            Progress(TextColumn(f"pulling {days:g} days from Prometheus"), BarColumn(), MofNCompleteColumn(),
                     TimeElapsedColumn(), console=console, disable=not show_progress, transient=True) as bar:
        task = bar.add_task("pull", total=len(workloads))
        return pull_demand(source, config, workloads, days, progress=lambda k: bar.advance(task, k))
