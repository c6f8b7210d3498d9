"""One anomaly scan: every detector over the telemetry a live agent (or a replay) holds at ``now``.

The input is the same value in the simulator and in the cluster: metric name -> entity -> values
on one step grid (:class:`simulations.telemetry.Telemetry`, built by the fault-injection simulator
or from Prometheus by :func:`aiops.agent_scan.pull_telemetry`). The output is a list of
:class:`~aiops.findings.Finding`; :class:`aiops.incidents.IncidentTracker` turns successive scans
into incidents. Pure: no clock, no I/O.

What runs on what (metric names are the DCGM exporter's and kube-state-metrics'):

* per GPU: :func:`~aiops.detectors.gpu_faults` (XID, row remap, ECC, thermal and power
  throttling, memory nearly full), :func:`memory_growth` (a leak long before it is full), peers
  on the same node (:func:`~aiops.detectors.peer_outliers` on SM clock and temperature of GPUs
  that run a pod), staleness (:func:`~aiops.detectors.stale_metrics`);
* per pod: :func:`crash_loop` on the restart counter; peers of one workload on pod latency;
* per workload: :func:`~aiops.detectors.slo_burn` on the bad-request ratio,
  :func:`~aiops.detectors.latency_regression` on p95 latency, and demand against its forecast
  (:func:`~aiops.detectors.forecast_band` when the agent has forecasts, else :func:`seasonal_surge`
  against the same time yesterday);
* the forecasts themselves: :func:`~aiops.detectors.forecast_drift`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

from aiops import detectors as d
from aiops.findings import Entity, Evidence, Finding
from forecasters.drift import DriftStatus
from forecasters.series import Forecast, Series

GPU_UTIL, FB_USED, FB_FREE = "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"
GPU_TEMP, SM_CLOCK = "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_SM_CLOCK"
DEMAND, LATENCY, SLO_BAD = "demand_rps", "latency_p95_seconds", "slo_bad_ratio"
RESTARTS, POD_LATENCY = "kube_pod_container_status_restarts_total", "pod_latency_p95_seconds"
DAY = 86_400.0


@dataclass(frozen=True)
class ScanSettings:
    detectors: d.DetectorConfig = d.DEFAULT_CONFIG
    slo_objective: float = 0.99  # share of requests within the latency objective
    stale_after_seconds: float = 180.0  # three 60 s scrapes (six at 30 s): a dead exporter looks like calm data
    lookback_seconds: float = 5400.0  # what the step detectors look at (the hour baseline and a margin)
    restarts_window_seconds: float = 900.0  # CRASH_LOOP: this many restarts within this window
    restarts_min: int = 2
    leak_window_seconds: float = 1200.0  # GPU_MEMORY_GROWTH: steady growth over this window ...
    leak_full_within_seconds: float = 14_400.0  # ... that would fill the GPU within this
    surge_ratio: float = 1.5  # seasonal_surge: demand above this multiple of the same time yesterday
    surge_steps: int = 3


def _tail(values: np.ndarray, start: float, step: float, now: float, seconds: float) -> tuple[np.ndarray, float]:
    """The samples in ``(now - seconds, now]`` and the time of the first."""
    end = int(math.floor((now - start) / step + 1e-9)) + 1  # samples at or before now
    end = max(0, min(end, values.shape[0]))
    first = max(0, end - int(round(seconds / step)))
    return values[first:end], start + first * step


def memory_growth(used: Series, free: Series, entity: Entity, now: float, settings: ScanSettings = ScanSettings()) -> list[Finding]:
    """GPU memory growing steadily enough to fill the GPU within ``leak_full_within_seconds``: a
    leak, found long before :func:`~aiops.detectors.gpu_faults` sees it nearly full. The slope is a
    least-squares fit over ``leak_window_seconds``; it must explain most of the variance (R² >=
    0.8), so a busy hour's KV-cache swings do not read as a leak."""
    n = int(round(settings.leak_window_seconds / used.step))
    u, f = used.values[-n:], free.values[-n:]
    ok = np.isfinite(u) & np.isfinite(f)
    if len(u) < n or ok.sum() < 0.8 * n:
        return []
    t = np.arange(len(u), dtype=float)[ok] * used.step
    y = u[ok]
    slope, intercept = np.polyfit(t, y, 1)
    fitted = slope * t + intercept
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum((y - fitted) ** 2)) / total if total > 0 else 0.0
    headroom = float(f[ok][-1])
    if slope <= 0 or r2 < 0.8:
        return []
    full_in = headroom / slope
    if full_in > settings.leak_full_within_seconds:
        return []
    start = used.end - len(u) * used.step
    score = settings.leak_full_within_seconds / max(full_in, 1.0)
    summary = (f"GPU memory on {entity.label()} grew {slope * 3600:,.0f} MiB/h for {settings.leak_window_seconds / 60:.0f} min "
               f"(R² {r2:.2f}); at that rate it is full in {full_in / 60:.0f} min")
    ev = Evidence(used.key, summary, float(y[-1]), float(y[0]), start)
    return [Finding("memory_growth", "GPU_MEMORY_GROWTH", entity, (start, now), used.key, float(y[-1]), (float(y[0]), float(y[0])),
                    score, "warning", summary, (ev,))]


def crash_loop(restarts: Series, entity: Entity, now: float, settings: ScanSettings = ScanSettings()) -> list[Finding]:
    """A pod restarting repeatedly: its restart counter rose by ``restarts_min`` or more within
    ``restarts_window_seconds`` (``CRASH_LOOP``); once is ``POD_RESTART`` (info: a deploy, an
    eviction, an OOM kill, or the start of a loop, which the incident rules weigh with the rest)."""
    n = int(round(settings.restarts_window_seconds / restarts.step)) + 1
    v = restarts.values[-n:]
    ok = v[np.isfinite(v)]
    if ok.shape[0] < 2:
        return []
    rises = np.diff(ok)
    count = float(np.sum(rises[rises > 0]))
    if count < 1:
        return []
    first = restarts.end - len(v) * restarts.step
    rise_at = first + float(np.argmax(np.diff(np.where(np.isfinite(v), v, -np.inf)) > 0) + 1) * restarts.step
    minutes = settings.restarts_window_seconds / 60
    if count < settings.restarts_min:  # once: a deploy, an eviction, an OOM kill, or the start of a loop
        summary = f"pod {entity.pod or entity.label()} restarted in the last {minutes:.0f} min"
        return [Finding("crash_loop", "POD_RESTART", entity, (min(rise_at, now), now), restarts.key, count, (0.0, 0.0), 0.5, "info",
                        summary, (Evidence(restarts.key, summary, count, 0.0, rise_at),))]
    summary = f"pod {entity.pod or entity.label()} restarted {count:.0f} times in the last {minutes:.0f} min"
    return [Finding("crash_loop", "CRASH_LOOP", entity, (min(rise_at, now), now), restarts.key, count, (0.0, settings.restarts_min - 1.0),
                    count / settings.restarts_min, "warning" if count < 2 * settings.restarts_min else "critical", summary,
                    (Evidence(restarts.key, summary, count, 0.0, rise_at),))]


def seasonal_surge(demand: Series, entity: Entity, now: float, settings: ScanSettings = ScanSettings()) -> list[Finding]:
    """Demand well above the same time yesterday: the median of the last ``surge_steps`` over the
    median of yesterday's samples 15 minutes either side, above ``surge_ratio`` (1.5: a daily
    pattern repeats within tens of percent; a surge is a multiple). Needs a day of history; with
    forecasts, :func:`~aiops.detectors.forecast_band` is the better judge and is used instead."""
    step = demand.step
    recent = demand.values[-settings.surge_steps:]
    lag = int(round(DAY / step))
    half = int(round(900.0 / step))
    i = len(demand) - 1 - lag
    if i - half < 0 or not np.isfinite(recent).sum() >= max(1, settings.surge_steps - 1):
        return []
    yesterday = demand.values[i - half: i + half + 1]
    yesterday = yesterday[np.isfinite(yesterday)]
    if yesterday.shape[0] < half:
        return []
    now_level, base = float(np.nanmedian(recent)), float(np.median(yesterday))
    if not base > 0 or now_level < settings.surge_ratio * base:
        return []
    start = demand.end - settings.surge_steps * step
    summary = f"demand of {entity.label()} is {now_level:,.1f} rps, {now_level / base:.1f}x the {base:,.1f} rps of this time yesterday"
    return [Finding("seasonal_surge", "ABOVE_FORECAST", entity, (start, now), demand.key, now_level, (0.0, base * settings.surge_ratio),
                    now_level / (base * settings.surge_ratio), "warning", summary,
                    (Evidence(demand.key, summary, now_level, base, start),))]


def demand_rising(demand: Series, entity: Entity, now: float, settings: ScanSettings = ScanSettings(), ratio: float = 1.2) -> list[Finding]:
    """``DEMAND_RISING`` (info): demand at least ``ratio`` times this time yesterday. Only asked
    where latency already rose, as evidence for a surge rather than an anomaly of its own."""
    found = seasonal_surge(demand, entity, now, replace(settings, surge_ratio=ratio))
    return [replace(f, detector="demand_rising", code="DEMAND_RISING", severity="info",
                    summary=f.summary.replace("demand of", "while latency rose, demand of")) for f in found]


def scan(series: Mapping[str, Mapping[Entity, np.ndarray]], start: float, step: float, now: float,
         settings: ScanSettings = ScanSettings(), forecasts: Mapping[str, Sequence[Forecast]] | None = None,
         drift: Mapping[str, DriftStatus] | None = None) -> list[Finding]:
    """Every detector over ``series`` (metric -> entity -> values from ``start`` at ``step``), as of ``now``."""
    cfg = settings.detectors
    out: list[Finding] = []
    look = settings.lookback_seconds

    def recent(metric: str, e: Entity, seconds: float = look) -> Series | None:
        values = series.get(metric, {}).get(e)
        if values is None:
            return None
        tail, first = _tail(np.asarray(values, dtype=float), start, step, now, seconds)
        return Series(metric, first, step, tail) if tail.shape[0] else None

    # -- per GPU ----------------------------------------------------------------------------------
    gpus: dict[Entity, dict[str, Series]] = defaultdict(dict)
    for metric, by_entity in series.items():
        if metric.startswith("DCGM_"):
            for e in by_entity:
                s = recent(metric, e)
                if s is not None:
                    gpus[e][metric] = s
    out += d.gpu_faults(gpus, config=cfg)
    for e, metrics in gpus.items():
        if FB_USED in metrics and FB_FREE in metrics and e.pod:
            out += memory_growth(metrics[FB_USED], metrics[FB_FREE], e, now, settings)
    by_node: dict[str, dict[Entity, dict[str, Series]]] = defaultdict(dict)
    for e, metrics in gpus.items():
        by_node[e.node][e] = metrics
    for node, members in sorted(by_node.items()):
        # Stale per node: one finding per metric family rather than per GPU when the whole node is gone.
        stale = d.stale_metrics({e: {GPU_UTIL: m.get(GPU_UTIL)} for e, m in members.items() if GPU_UTIL in m}, now,
                                settings.stale_after_seconds)
        if stale and len(stale) == len(members) and len(members) > 1:
            worst = max(stale, key=lambda f: f.score)
            out.append(replace(worst, entity=Entity(node=node), summary=f"no DCGM metrics from any GPU of node {node} "
                               f"since {d._when(worst.window[0])}"))
        else:
            out += stale

    # Peers are GPUs serving the same workload (the same model at the same share of its load),
    # wherever they run: a GPU of another workload at another load is not a sibling.
    by_workload: dict[str, dict[Entity, dict[str, Series]]] = defaultdict(dict)
    for e, metrics in gpus.items():
        if e.workload:
            by_workload[e.workload][e] = metrics
    for workload, members in sorted(by_workload.items()):
        for metric in (SM_CLOCK,):  # not temperature: each node has its own inlet temperature
            peers = {e: m[metric] for e, m in members.items() if metric in m}
            if len(peers) >= cfg.peer_min_peers + 1:
                out += d.peer_outliers(peers, metric, now, config=cfg, direction="low")

    # -- per pod ----------------------------------------------------------------------------------
    pod_latency: dict[str, dict[Entity, Series]] = defaultdict(dict)
    for e in series.get(RESTARTS, {}):
        s = recent(RESTARTS, e, settings.restarts_window_seconds + step)
        if s is not None:
            out += crash_loop(s, e, now, settings)
    for e in series.get(POD_LATENCY, {}):
        s = recent(POD_LATENCY, e, cfg.peer_window_s)
        if s is not None and np.isfinite(s.values).any():
            pod_latency[e.workload][e] = s
    for workload, peers in sorted(pod_latency.items()):
        if len(peers) >= cfg.peer_min_peers + 1:
            # Latency is noisier than clocks: a replica counts as slow at 30% over its siblings' median.
            out += d.peer_outliers(peers, POD_LATENCY, now, config=replace(cfg, peer_min_rel_diff=max(cfg.peer_min_rel_diff, 0.3)),
                                   direction="high")

    # -- per workload -----------------------------------------------------------------------------
    for e in series.get(SLO_BAD, {}):
        s = recent(SLO_BAD, e, max(w.long_s for w in cfg.burn_windows) + step)
        if s is not None:
            out += d.slo_burn(s, settings.slo_objective, entity=e, config=cfg)
    for e in series.get(LATENCY, {}):
        s = recent(LATENCY, e)
        if s is not None:
            out += d.latency_regression(s, entity=e, config=cfg)
    for e in series.get(DEMAND, {}):
        mine = (forecasts or {}).get(e.workload)
        if mine:
            s = recent(DEMAND, e)
            if s is not None:
                out += d.forecast_band(s, mine, entity=e, config=cfg)
        else:
            s = recent(DEMAND, e, DAY + 1800.0)
            if s is not None:
                out += seasonal_surge(s, e, now, settings)
    # Correlated evidence: where latency rose, is demand rising too? Below the surge threshold this
    # is no anomaly by itself (no finding without a latency one), but it tells a surge from a regression.
    slow = {f.entity.workload for f in out if f.code in ("LATENCY_REGRESSION", "SLO_BURN") and f.entity.workload}
    surging = {f.entity.workload for f in out if f.code == "ABOVE_FORECAST" and f.metric == DEMAND}
    for e in series.get(DEMAND, {}):
        if e.workload in slow - surging:
            s = recent(DEMAND, e, DAY + 1800.0)
            if s is not None:
                out += demand_rising(s, e, now, settings)
    if drift:
        out += d.forecast_drift(drift, now, config=cfg)
    # Findings whose window ended long ago are history, not news.
    return [f for f in out if f.window[1] >= now - look]
