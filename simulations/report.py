"""Scores, the table, the JSON document and the plot of a :class:`~simulations.replay.Simulation`.

JSON document (``schema_version`` 1); every figure is a number, ``null`` when it does not apply:

``schema_version``
    1; bumped on any incompatible change.
``generated_by``
    ``"aiops <version>"``.
``trace``
    ``source``, ``start`` (ISO-8601 UTC), ``step_seconds`` (simulation step), ``steps``,
    ``days``, ``workloads`` (names), ``gap_steps`` (steps with no observation, all workloads).
``config``
    The full validated configuration that ran (see ``simulations/config.py``).
``policies.<name>.totals``
    Over all workloads: ``slo_attainment_pct`` (share of scored workload-minutes meeting the SLO),
    ``slo_violation_minutes``, ``p95_latency_seconds`` (95th percentile over scored workload-steps),
    ``gpu_hours`` and ``cost_usd`` *billed* (every GPU of every ready or provisioning node, idle ones
    included), ``cost_vs_oracle`` (cost / the oracle's cost; null without an oracle run),
    ``idle_gpu_pct`` (billed GPU-hours held by no replica), ``scaling_actions`` (replica count
    changes plus nodes added or removed), ``requests_arrived``, ``requests_served``,
    ``requests_queued_at_end``.
``policies.<name>.workloads.<workload>``
    Per workload: ``slo_attainment_pct``, ``slo_violation_minutes``, ``p95_latency_seconds``,
    ``gpu_hours`` and ``cost_usd`` of the GPUs its replicas held (starting or ready),
    ``cost_vs_oracle``, ``scaling_actions`` (steps whose replica count changed), ``scored_minutes``,
    ``gap_minutes`` (not scored), ``forecast_fallback_minutes`` (minutes decided without the
    policy's forecast model: by the reactive fallback, for want of a forecast or behind a closed
    quality gate, or on a forecaster that fell back to a simpler model), ``peak_replicas``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from forecasters.series import json_safe
from simulations.replay import Simulation

SCHEMA_VERSION = 1


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("gpu-aiops")
    except Exception:  # running from a source tree that is not installed
        return "0+unknown"


def _pct(ok: np.ndarray, scored: np.ndarray) -> float:
    n = int(scored.sum())
    return 100.0 * float((ok & scored).sum()) / n if n else 100.0


def _p95(p95: np.ndarray, scored: np.ndarray) -> float | None:
    values = p95[scored]
    return float(np.percentile(values, 95)) if values.size else None


def _ratio(value: float, base: float | None) -> float | None:
    if base is None:
        return None
    return value / base if base > 0 else (1.0 if value == 0 else math.inf)


@dataclass(frozen=True)
class Scores:
    """Every figure of the report, as plain dicts ready for JSON and the table."""

    totals: dict[str, dict[str, Any]]  # policy -> figures
    workloads: dict[str, dict[str, dict[str, Any]]]  # policy -> workload -> figures


def score(sim: Simulation) -> Scores:
    scored = ~sim.gaps
    minutes = sim.step_seconds / 60.0
    pool_price = np.array([p.price_per_gpu_hour for p in sim.config.node_pools])
    price = pool_price[sim.pool_of]
    oracle = sim.runs.get("oracle")
    totals: dict[str, dict[str, Any]] = {}
    per: dict[str, dict[str, dict[str, Any]]] = {}
    for name, run in sim.runs.items():
        cost = run.gpu_hours_allocated * price
        oracle_cost = oracle.gpu_hours_allocated * price if oracle is not None else None
        per[name] = {}
        for i, wname in enumerate(sim.trace.workloads):
            col = scored[:, i]
            per[name][wname] = {
                "slo_attainment_pct": _pct(run.slo_ok[:, i], col),
                "slo_violation_minutes": float((col & ~run.slo_ok[:, i]).sum() * minutes),
                "p95_latency_seconds": _p95(run.p95[:, i], col),
                "gpu_hours": float(run.gpu_hours_allocated[i]),
                "cost_usd": float(cost[i]),
                "cost_vs_oracle": _ratio(float(cost[i]), None if oracle_cost is None else float(oracle_cost[i])),
                "scaling_actions": int(run.replica_actions[i]),
                "scored_minutes": float(col.sum() * minutes),
                "gap_minutes": float((~col).sum() * minutes),
                "forecast_fallback_minutes": float(run.forecast_fallback_steps[i] * minutes),
                "peak_replicas": int(run.replicas[:, i].max(initial=0)),
                # what the predictive policy had learned by the end (None for the others)
                "learned_capacity_rps": None if run.capacity_rps is None else float(run.capacity_rps[i]),
                "measured_startup_seconds": None if run.startup_seconds is None else float(run.startup_seconds[i]),
            }
        billed_cost = float((run.gpu_hours_billed * pool_price).sum())
        billed_hours = float(run.gpu_hours_billed.sum())
        oracle_billed = float((oracle.gpu_hours_billed * pool_price).sum()) if oracle is not None else None
        totals[name] = {
            "slo_attainment_pct": _pct(run.slo_ok, scored),
            "slo_violation_minutes": float((scored & ~run.slo_ok).sum() * minutes),
            "p95_latency_seconds": _p95(run.p95, scored),
            "gpu_hours": billed_hours,
            "cost_usd": billed_cost,
            "cost_vs_oracle": _ratio(billed_cost, oracle_billed),
            "idle_gpu_pct": 100.0 * (1 - float(run.gpu_hours_allocated.sum()) / billed_hours) if billed_hours else 0.0,
            "scaling_actions": int(run.replica_actions.sum() + run.node_actions.sum()),
            "requests_arrived": float(run.arrived.sum()),
            "requests_served": float(run.served.sum()),
            "requests_queued_at_end": float(run.backlog_end.sum()),
        }
    return Scores(totals, per)


def to_document(sim: Simulation, scores: Scores) -> dict[str, Any]:
    trace = sim.trace
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_by": f"aiops {_version()}",
        "trace": {
            "source": trace.source,
            "start": dt.datetime.fromtimestamp(trace.start, dt.timezone.utc).isoformat().replace("+00:00", "Z"),
            "step_seconds": trace.step_seconds,
            "steps": int(trace.n_steps),
            "days": trace.n_steps * trace.step_seconds / 86_400,
            "workloads": list(trace.workloads),
            "gap_steps": int(sim.gaps.all(axis=1).sum()),
        },
        "config": sim.config.model_dump(mode="json"),
        "policies": {name: {"totals": scores.totals[name], "workloads": scores.workloads[name]} for name in sim.runs},
    }


def write_json(document: dict[str, Any], path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(json_safe(document), fh, indent=2, sort_keys=False)
        fh.write("\n")


# -- the table -------------------------------------------------------------------------------------
_COLUMNS = (
    ("SLO met", "slo_attainment_pct", "{:.2f}%"),
    ("SLO-viol. min", "slo_violation_minutes", "{:,.0f}"),
    ("p95 latency", "p95_latency_seconds", "{:.2f}s"),
    ("GPU-h", "gpu_hours", "{:,.0f}"),
    ("cost", "cost_usd", "${:,.0f}"),
    ("x oracle", "cost_vs_oracle", "{:.2f}"),
    ("actions", "scaling_actions", "{:,}"),
)


def _cell(fmt: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return fmt.format(value)


def render_table(sim: Simulation, scores: Scores, max_workloads: int = 20):
    """A rich Table: a block of policy rows per workload, then the billed totals."""
    from rich.table import Table

    table = Table(title=None, show_lines=False, header_style="bold")
    table.add_column("workload")
    table.add_column("policy")
    for header, _, _ in _COLUMNS:
        table.add_column(header, justify="right")
    names = list(sim.trace.workloads)
    for wname in names[:max_workloads]:
        for k, policy in enumerate(sim.runs):
            row = scores.workloads[policy][wname]
            table.add_row(wname if k == 0 else "", policy, *(_cell(fmt, row[key]) for _, key, fmt in _COLUMNS))
        table.add_section()
    if len(names) > max_workloads:
        table.add_row(f"... {len(names) - max_workloads} more in --json", "", *([""] * len(_COLUMNS)))
        table.add_section()
    for k, policy in enumerate(sim.runs):
        row = scores.totals[policy]
        table.add_row("TOTAL (billed)" if k == 0 else "", policy, *(_cell(fmt, row[key]) for _, key, fmt in _COLUMNS),
                      style="bold")
    return table


def verdict(scores: Scores) -> list[str]:
    """Plain sentences comparing predictive with reactive, and both with the oracle."""
    t = scores.totals
    lines = []
    if "reactive" in t and "predictive" in t:
        r, p = t["reactive"], t["predictive"]
        fewer = r["slo_violation_minutes"] - p["slo_violation_minutes"]
        rel = f"{p['cost_usd'] / r['cost_usd']:.3f}x reactive's cost" if r["cost_usd"] else "no cost (nothing billed)"
        change = (f"{fewer:,.0f} fewer SLO-violating minutes" if fewer >= 0 else f"{-fewer:,.0f} more SLO-violating minutes")
        lines.append(f"predictive vs reactive: {change} ({r['slo_violation_minutes']:,.0f} -> "
                     f"{p['slo_violation_minutes']:,.0f}) at {rel}.")
    if "oracle" in t:
        o = t["oracle"]
        lines.append(f"oracle (perfect foresight, the floor): {o['slo_attainment_pct']:.2f}% SLO at ${o['cost_usd']:,.0f}.")
    return lines


# -- the plot --------------------------------------------------------------------------------------
def plot(sim: Simulation, path: str) -> None:
    """Demand against ready capacity per policy, nodes per policy, and p95 latency against the SLO.

    With several workloads the panels show totals (demand, capacity, nodes) and the worst p95.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    times = np.array([np.datetime64(int(t), "s") for t in sim.trace.timestamps])
    capacity = np.array([w.capacity_rps for w in sim.workloads])
    slo = np.array([w.slo.latency_p95_seconds for w in sim.workloads])
    single = len(sim.workloads) == 1
    title = sim.trace.workloads[0] if single else f"{len(sim.workloads)} workloads (totals)"
    fig, axes = plt.subplots(3, 1, figsize=(13, 9), sharex=True, height_ratios=(3, 1.4, 1.4))
    colors = {"reactive": "tab:red", "predictive": "tab:blue", "oracle": "tab:green"}
    ax = axes[0]
    ax.plot(times, sim.demand.sum(axis=1), color="black", lw=0.8, label="demand")
    for name, run in sim.runs.items():
        ax.plot(times, (run.ready * capacity).sum(axis=1), lw=0.9, color=colors.get(name), alpha=0.85,
                label=f"{name}: ready capacity at SLO")
    ax.set_ylabel("requests / s")
    ax.set_title(f"{title}: demand vs ready capacity ({sim.trace.source})")
    ax.legend(loc="upper left", fontsize=8)
    ax = axes[1]
    for name, run in sim.runs.items():
        ax.step(times, run.nodes.sum(axis=1), where="post", lw=0.9, color=colors.get(name), label=name)
    ax.set_ylabel("GPU nodes (billed)")
    ax.legend(loc="upper left", fontsize=8)
    ax = axes[2]
    for name, run in sim.runs.items():
        worst = (run.p95 / slo).max(axis=1)
        ax.plot(times, worst, lw=0.7, color=colors.get(name), alpha=0.8, label=name)
    ax.axhline(1.0, color="black", ls="--", lw=0.8, label="SLO")
    ax.set_yscale("log")
    ax.set_ylabel("p95 / SLO" + ("" if single else " (worst)"))
    ax.legend(loc="upper left", fontsize=8)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
