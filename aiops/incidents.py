"""From findings to incidents: group, rank candidate causes with evidence, suggest actions.

Pure functions, no I/O (except :class:`IncidentLog`, a JSONL file): detectors
(:mod:`aiops.detectors`) say *what* looks wrong; :func:`correlate` says *which findings are one
problem* and *why it probably happened*, in terms an on-call human can act on.

**Grouping** (:func:`group`). Two findings belong to one incident when their windows are within
``gap_seconds`` of each other and they share a place on the node -> GPU -> pod -> workload chain:
the same GPU, the same node, the same pod, or the same workload. A GPU finding carries the pod
and workload running on it (the DCGM exporter's pod labels, or the topology given in
:class:`Context`), so an XID on a GPU, the restarts of its pod and the latency of its workload
end up in one incident, not three pages.

**Causes** (:data:`RULES`). Each rule looks at the incident's findings (and the context: recent
rollouts and scaling decisions) and, when it applies, returns a strength in [0, 1], the entity it
blames and its evidence. Strength comes from the kind of finding (an XID 79 is unambiguous; a
peer outlier alone is a hint), then:

* which metric moved first (the finding with the earliest window start) adds weight to the cause
  that explains it: a demand surge that precedes the latency rise is a surge; a latency rise with
  flat demand right after a rollout is the rollout;
* a cause with evidence contradicting it loses weight (a rollout regression while demand also
  surged);
* missing data lowers every confidence a little and is listed, so "no GPU metrics from node n3"
  is said rather than silently ignored.

Confidence is the rule's strength scaled by its share of all candidate strength: a lone strong
cause is near its strength; two equally strong causes are each less certain.

**Actions** come from a catalogue per cause (scale up, cordon and drain a node, restart a pod,
roll back, investigate), each ``recommend`` or ``auto`` by configuration, and demoted to
``recommend`` when its blast radius (nodes, GPUs, pods touched) exceeds the configured limits.

**Fingerprint**: the top cause's code and the entity it blames (never wording, scores or exact
times), so the same fault seen again deduplicates, and one incident keeps one identity while
more findings join it.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from aiops.findings import Action, Cause, Entity, Evidence, Finding, Incident, fingerprint, severity_rank

ACTION_KINDS = ("scale_up", "cordon_drain", "restart_pod", "reset_gpu", "rollback", "investigate")
DEMAND_WORDS = ("demand", "request", "rps", "qps", "arrival")
LATENCY_WORDS = ("latency", "ttft", "duration", "slo")


@dataclass(frozen=True)
class Rollout:
    """A workload changed its revision at ``at`` (a Deployment rollout seen by the agent)."""

    workload: str
    at: float
    revision: str = ""


@dataclass(frozen=True)
class BlastLimits:
    """What one automatic action may touch; beyond it the action is only recommended."""

    max_nodes: int = 1
    max_gpus: int = 8
    max_pods: int = 4


@dataclass(frozen=True)
class Context:
    """What else the explanation may use. Every field is optional."""

    rollouts: tuple[Rollout, ...] = ()
    decisions: tuple[Mapping[str, Any], ...] = ()  # journalled scaling decisions: target, decided_at, current, desired
    pods: Mapping[str, Entity] = field(default_factory=dict)  # pod name -> where it runs
    unavailable: tuple[str, ...] = ()  # data sources that did not answer this scan
    action_modes: Mapping[str, str] = field(default_factory=dict)  # action kind -> "recommend" | "auto"
    limits: BlastLimits = BlastLimits()
    rollout_window_seconds: float = 1800.0  # a latency rise this soon after a rollout points at it


# -- grouping --------------------------------------------------------------------------------------

def _with_topology(f: Finding, pods: Mapping[str, Entity]) -> Entity:
    """The finding's entity completed from the topology (a pod's node, GPU and workload)."""
    e = f.entity
    where = pods.get(e.pod) if e.pod else None
    if where is None:
        return e
    return Entity(node=e.node or where.node, gpu=e.gpu or where.gpu, pod=e.pod, workload=e.workload or where.workload,
                  namespace=e.namespace or where.namespace)


def _keys(e: Entity) -> list[tuple[str, ...]]:
    keys: list[tuple[str, ...]] = []
    if e.node and e.gpu:
        keys.append(("gpu", e.node, e.gpu))
    if e.node:
        keys.append(("node", e.node))
    if e.pod:
        keys.append(("pod", e.namespace, e.pod))
    if e.workload:
        keys.append(("workload", e.namespace, e.workload))
    return keys


def group(findings: Sequence[Finding], pods: Mapping[str, Entity] | None = None, gap_seconds: float = 900.0) -> list[list[Finding]]:
    """Findings that are one problem, each group in time order; groups ordered by first start."""
    pods = pods or {}
    items = sorted(findings, key=lambda f: (f.window[0], f.window[1], f.code, f.entity))
    parent = list(range(len(items)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_key: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, f in enumerate(items):
        for key in _keys(_with_topology(f, pods)):
            by_key[key].append(i)
    for members in by_key.values():  # each list is in time order
        reach = items[members[0]].window[1]
        for a, b in zip(members, members[1:]):
            if items[b].window[0] - reach <= gap_seconds:  # close enough to what came before at this place
                parent[find(b)] = find(a)
            reach = max(reach, items[b].window[1])
    groups: dict[int, list[Finding]] = defaultdict(list)
    for i, f in enumerate(items):
        groups[find(i)].append(f)
    return sorted(groups.values(), key=lambda g: (g[0].window[0], g[0].code))


# -- causes ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    code: str
    title: str
    strength: float
    entity: Entity
    evidence: tuple[Evidence, ...]


def _is(f: Finding, words: Iterable[str]) -> bool:
    name = f.metric.lower()
    return any(w in name for w in words)


def _ev(f: Finding, message: str | None = None) -> Evidence:
    """The finding as evidence; its baseline is the detector's own (e.g. yesterday's level), else
    the edge of the expected band it crossed."""
    own = next((e for e in f.evidence if e.baseline is not None and e.value is not None), None)
    if own is not None and math.isfinite(own.baseline):
        return Evidence(metric=f.metric, message=message or f.summary, value=own.value, baseline=own.baseline, at=f.window[0])
    baseline = None
    if f.expected_band is not None:
        lo, hi = f.expected_band
        baseline = hi if f.observed > hi else lo if f.observed < lo else (lo + hi) / 2
        baseline = baseline if baseline is not None and math.isfinite(baseline) else None
    observed = f.observed if math.isfinite(f.observed) else None
    return Evidence(metric=f.metric, message=message or f.summary, value=observed, baseline=baseline, at=f.window[0])


def _where(f: Finding) -> str:
    return f.entity.label()


def _gpu_entity(f: Finding) -> Entity:
    return Entity(node=f.entity.node, gpu=f.entity.gpu)


def _xid(fs: list[Finding], ctx: Context) -> list[Candidate]:
    from aiops.xid import lookup

    out = []
    for f in fs:
        if not f.code.startswith("XID_"):
            continue
        try:
            info = lookup(int(f.code[4:]))
        except ValueError:
            continue
        code = "GPU_FELL_OFF_BUS" if info.code == 79 else "GPU_XID_ERROR"
        strength = 0.95 if info.code == 79 else (0.85 if info.severity == "critical" else 0.6)
        title = (f"GPU {f.entity.gpu} on node {f.entity.node} fell off the bus (XID 79)" if info.code == 79
                 else f"{_where(f)}: XID {info.code}, {info.meaning}")
        out.append(Candidate(code, title, strength, _gpu_entity(f) if info.action != "restart_pod" else f.entity,
                             (_ev(f, f"XID {info.code}: {info.meaning}; {info.advice}"),)))
    return out


def _ecc(fs: list[Finding], ctx: Context) -> list[Candidate]:
    hits = [f for f in fs if f.code in ("ECC_UNCORRECTABLE", "ROW_REMAP_FAILURE")]
    return [Candidate("GPU_MEMORY_ERRORS", f"{_where(f)}: uncorrectable GPU memory errors ({f.code.lower().replace('_', ' ')})",
                      0.9, _gpu_entity(f), (_ev(f),)) for f in hits]


def _throttle(fs: list[Finding], ctx: Context) -> list[Candidate]:
    out = []
    for code, cause, title, strength in (("THERMAL_THROTTLE", "GPU_THERMAL_THROTTLING", "is thermally throttled", 0.85),
                                         ("POWER_THROTTLE", "GPU_POWER_THROTTLING", "is power throttled", 0.5)):
        for f in [f for f in fs if f.code == code]:
            support = [g for g in fs if g is not f and g.code in ("PEER_OUTLIER", "MULTIVARIATE_OUTLIER", "LATENCY_REGRESSION")
                       and (g.entity.gpu == f.entity.gpu and g.entity.node == f.entity.node or g.entity.pod and g.entity.pod == f.entity.pod)]
            s = min(0.95, strength + 0.05 * len(support))
            out.append(Candidate(cause, f"GPU {f.entity.gpu} on node {f.entity.node} {title}", s, _gpu_entity(f),
                                 (_ev(f),) + tuple(_ev(g) for g in support[:3])))
    return out


def _memory(fs: list[Finding], ctx: Context) -> list[Candidate]:
    out = []
    for f in [f for f in fs if f.code in ("GPU_MEMORY_FULL", "GPU_MEMORY_GROWTH")]:
        growth = any(g.code == "GPU_MEMORY_GROWTH" and g.entity == f.entity for g in fs)
        s = 0.85 if growth else 0.7
        who = f.entity.pod or f"GPU {f.entity.gpu} on node {f.entity.node}"
        out.append(Candidate("GPU_MEMORY_LEAK", f"{who}: GPU memory keeps growing towards full (likely a leak)" if growth
                             else f"{who}: GPU memory nearly full", s,
                             Entity(node=f.entity.node, gpu=f.entity.gpu, pod=f.entity.pod, workload=f.entity.workload,
                                    namespace=f.entity.namespace), (_ev(f),)))
    return out


def _surge(fs: list[Finding], ctx: Context) -> list[Candidate]:
    demand = [f for f in fs if _is(f, DEMAND_WORDS) and f.code in ("ABOVE_FORECAST", "SEASONAL_RESIDUAL", "MULTIVARIATE_WINDOW",
                                                                   "PEER_OUTLIER", "DEMAND_RISING")
              and (f.expected_band is None or f.observed > f.expected_band[1] or f.code == "DEMAND_RISING")]
    out = []
    for workload in sorted({f.entity.workload for f in demand if f.entity.workload}):
        mine = [f for f in demand if f.entity.workload == workload]
        first = _first_mover(fs)
        strong = any(f.code != "DEMAND_RISING" for f in mine)  # rising alone: below the surge threshold
        s = (0.8 if strong else 0.6) + (0.1 if first is not None and first in mine else 0.0)
        peak = max(mine, key=lambda f: f.score)
        e = _ev(peak)
        change = f" ({e.change:+.0%} against its expected level)" if e.change is not None else ""
        out.append(Candidate("TRAFFIC_SURGE", f"traffic surge on workload {workload}{change}", min(s, 0.95),
                             Entity(workload=workload, namespace=peak.entity.namespace), tuple(_ev(f) for f in mine[:3])))
    return out


def _latency_findings(fs: list[Finding]) -> list[Finding]:
    return [f for f in fs if f.code in ("LATENCY_REGRESSION", "SLO_BURN") or (_is(f, LATENCY_WORDS) and f.code in (
        "ABOVE_FORECAST", "SEASONAL_RESIDUAL", "MULTIVARIATE_WINDOW"))]


def _rollout(fs: list[Finding], ctx: Context) -> list[Candidate]:
    out = []
    latency = _latency_findings(fs)
    surging = {c.entity.workload for c in _surge(fs, ctx)}
    for workload in sorted({f.entity.workload for f in latency if f.entity.workload}):
        start = min(f.window[0] for f in latency if f.entity.workload == workload)
        recent = [r for r in ctx.rollouts if r.workload == workload and start - ctx.rollout_window_seconds <= r.at <= start + 120]
        if not recent:
            continue
        r = max(recent, key=lambda r: r.at)
        s = 0.4 if workload in surging else 0.85
        ns = next((f.entity.namespace for f in latency if f.entity.workload == workload), "")
        rev = f" to {r.revision}" if r.revision else ""
        out.append(Candidate("ROLLOUT_REGRESSION", f"latency of {workload} regressed after its rollout{rev} at {_hm(r.at)}", s,
                             Entity(workload=workload, namespace=ns),
                             (Evidence("rollout", f"{workload} rolled out{rev} at {_hm(r.at)}, {max(0.0, start - r.at) / 60:.0f} min "
                                       "before latency rose", at=r.at),) + tuple(_ev(f) for f in latency if f.entity.workload == workload)[:3]))
    return out


def _crash(fs: list[Finding], ctx: Context) -> list[Candidate]:
    hits = [f for f in fs if f.code in ("CRASH_LOOP", "POD_RESTART")]
    out = []
    for workload in sorted({f.entity.workload or f.entity.pod for f in hits}):
        mine = [f for f in hits if (f.entity.workload or f.entity.pod) == workload]
        pods = sorted({f.entity.pod for f in mine if f.entity.pod})
        loops = [f for f in mine if f.code == "CRASH_LOOP"]
        # Several restarts of one pod, or several pods restarting at once, is a loop; one restart is a hint.
        strength = 0.85 if len(loops) > 1 or (loops and len(pods) > 1) else 0.75 if loops else 0.6 if len(pods) > 1 else 0.4
        title = f"pods of {workload} are crash-looping" + (f" ({', '.join(pods[:3])}{'...' if len(pods) > 3 else ''})" if pods else "")
        out.append(Candidate("CRASH_LOOP", title, strength,
                             Entity(workload=mine[0].entity.workload, namespace=mine[0].entity.namespace) if mine[0].entity.workload
                             else mine[0].entity, tuple(_ev(f) for f in mine[:3])))
    return out


def _missing(fs: list[Finding], ctx: Context) -> list[Candidate]:
    hits = [f for f in fs if f.code in ("STALE_METRICS", "METRICS_MISSING")]
    if not hits:
        return []
    nodes = sorted({f.entity.node for f in hits if f.entity.node})
    # Metrics vanishing *after* a fault on the same GPU (XID 79) are its symptom, not the cause.
    others = [f for f in fs if f.code not in ("STALE_METRICS", "METRICS_MISSING")]
    s = 0.75 if not others else 0.3
    entity = Entity(node=nodes[0]) if len(nodes) == 1 else Entity(workload=hits[0].entity.workload, namespace=hits[0].entity.namespace)
    where = f"node {nodes[0]}" if len(nodes) == 1 else entity.label()
    return [Candidate("METRICS_MISSING", f"metrics from {where} stopped arriving (exporter or scrape down)", s, entity,
                      tuple(_ev(f) for f in hits[:3]))]


def _drift(fs: list[Finding], ctx: Context) -> list[Candidate]:
    return [Candidate("DEMAND_PATTERN_CHANGED", f"demand of {f.entity.workload} no longer follows its forecast (pattern changed)", 0.5,
                      Entity(workload=f.entity.workload, namespace=f.entity.namespace), (_ev(f),)) for f in fs if f.code == "FORECAST_DRIFT"]


def _outlier(fs: list[Finding], ctx: Context) -> list[Candidate]:
    faults = {(f.entity.node, f.entity.gpu) for f in fs if f.code.startswith("XID_") or f.code.endswith("THROTTLE")}
    out = []
    for f in fs:
        if f.code in ("PEER_OUTLIER", "MULTIVARIATE_OUTLIER") and f.entity.gpu and (f.entity.node, f.entity.gpu) not in faults \
                and not _is(f, DEMAND_WORDS):
            # A GPU metric unlike its peers' is a GPU hint; a slow replica may be its GPU or its load.
            strength = 0.5 if f.metric.startswith("DCGM_") else 0.35
            out.append(Candidate("DEGRADED_GPU", f"GPU {f.entity.gpu} on node {f.entity.node} behaves unlike its peers "
                                 f"({f.metric})", strength, _gpu_entity(f), (_ev(f),)))
    return out


def _unexplained(fs: list[Finding], ctx: Context) -> list[Candidate]:
    latency = _latency_findings(fs)
    if not latency:
        return []
    f = max(latency, key=lambda f: f.score)
    return [Candidate("LATENCY_REGRESSION", f"latency of {f.entity.workload or _where(f)} regressed, cause unclear", 0.3,
                      Entity(workload=f.entity.workload, namespace=f.entity.namespace) if f.entity.workload else f.entity,
                      tuple(_ev(g) for g in latency[:3]))]


# Codes that are usually the consequence of something else, when something else is there to blame.
SYMPTOMS = frozenset({"CRASH_LOOP", "METRICS_MISSING", "LATENCY_REGRESSION", "DEGRADED_GPU"})

RULES: tuple[Callable[[list[Finding], Context], list[Candidate]], ...] = (
    _xid, _ecc, _throttle, _memory, _surge, _rollout, _crash, _missing, _drift, _outlier, _unexplained)


def _first_mover(fs: Sequence[Finding]) -> Finding | None:
    moving = [f for f in fs if f.code not in ("STALE_METRICS", "METRICS_MISSING", "FORECAST_DRIFT")]
    return min(moving, key=lambda f: (f.window[0], -f.score)) if moving else None


def rank_causes(findings: Sequence[Finding], ctx: Context) -> list[Cause]:
    """Candidate causes, best first, each with its confidence and evidence (see the module docstring)."""
    return [cause for cause, _ in _ranked(findings, ctx)]


def _ranked(findings: Sequence[Finding], ctx: Context) -> list[tuple[Cause, Entity]]:
    """:func:`rank_causes` with the entity each cause blames."""
    fs = list(findings)
    candidates: dict[tuple[str, Entity], Candidate] = {}
    for rule in RULES:
        for c in rule(fs, ctx):
            key = (c.code, c.entity)
            if key not in candidates or c.strength > candidates[key].strength:
                candidates[key] = c
    if not candidates and fs:  # no rule knows this pattern: say what is unusual, with low confidence
        f = max(fs, key=lambda f: (f.score, f.window[0]))
        candidates[("UNUSUAL_METRIC", f.entity)] = Candidate("UNUSUAL_METRIC", f"unusual {f.metric} on {f.entity.label()}", 0.25,
                                                              f.entity, (_ev(f),))
    if not candidates:
        return []
    # A strong root cause explains its symptoms (a GPU gone explains its pod crashing, its metrics
    # missing and its workload's latency): those then weigh less, and do not dilute its confidence.
    rooted = any(c.strength >= 0.7 for c in candidates.values() if c.code not in SYMPTOMS)
    weight = {key: (0.3 if rooted and c.code in SYMPTOMS else 1.0) for key, c in candidates.items()}
    total = sum(c.strength * weight[key] for key, c in candidates.items())
    penalty = 0.9 if ctx.unavailable else 1.0
    first = _first_mover(fs)
    causes = []
    for key, c in candidates.items():
        strength = c.strength * weight[key]
        confidence = strength * (0.6 + 0.4 * strength / total) * penalty
        evidence = c.evidence
        if first is not None and len({f.metric for f in fs}) > 1 and any(e.metric == first.metric and e.at == first.window[0]
                                                                           for e in evidence):
            evidence = (Evidence(first.metric, f"{first.metric} moved first, at {_hm(first.window[0])}", at=first.window[0]),) + evidence
        causes.append((Cause(c.code, c.title, round(min(confidence, 0.99), 3), evidence), c.entity))
    causes.sort(key=lambda pair: (-pair[0].confidence, pair[0].code, pair[1]))
    return causes


# -- actions ---------------------------------------------------------------------------------------

def _blast(kind: str, target: Entity, ctx: Context) -> tuple[str, bool]:
    """What the action touches, in words, and whether that is within the limits for ``auto``."""
    on_node = [p for p, e in ctx.pods.items() if target.node and e.node == target.node]
    pods = [p for p in on_node if not target.gpu or ctx.pods[p].gpu == target.gpu] if target.node else \
        [p for p, e in ctx.pods.items() if target.workload and e.workload == target.workload]
    if kind == "cordon_drain":  # the whole node: every pod on it moves
        return f"1 node ({target.node}), {len(on_node)} pods moved", len(on_node) <= ctx.limits.max_pods and ctx.limits.max_nodes >= 1
    if kind in ("restart_pod", "reset_gpu"):
        n = 1 if target.pod else max(1, len(pods))
        return f"{n} pod{'s' if n != 1 else ''} restarted", n <= ctx.limits.max_pods
    if kind == "rollback":
        return f"every pod of {target.workload} replaced", False  # a rollout is never automatic here
    if kind == "scale_up":
        return f"more replicas of {target.workload}; GPUs added within the policy's guardrails", True
    return "nothing: a human looks", True


_CATALOGUE: Mapping[str, tuple[tuple[str, str], ...]] = {
    "GPU_FELL_OFF_BUS": (("cordon_drain", "Cordon and drain node {node}: GPU {gpu} is gone until the node is rebooted"),
                         ("investigate", "Reboot {node} and check the GPU (reseat or RMA if XID 79 recurs)")),
    "GPU_XID_ERROR": (("restart_pod", "Restart the pod on GPU {gpu} of {node}"),
                      ("investigate", "Check the kernel log of {node} for the XID context")),
    "GPU_MEMORY_ERRORS": (("cordon_drain", "Cordon and drain node {node}, then reset GPU {gpu} to apply the row remap"),),
    "GPU_THERMAL_THROTTLING": (("restart_pod", "Move the pod off GPU {gpu} of {node} (restart it elsewhere)"),
                               ("investigate", "Check cooling of {node} (fans, airflow, inlet temperature)")),
    "GPU_POWER_THROTTLING": (("investigate", "Check the power cap and power delivery of {node}"),),
    "GPU_MEMORY_LEAK": (("restart_pod", "Restart pod {pod} before it runs out of GPU memory"),
                        ("investigate", "Report the leak to the owners of {workload}")),
    "TRAFFIC_SURGE": (("scale_up", "Scale {workload} up for the surge"),),
    "ROLLOUT_REGRESSION": (("rollback", "Roll {workload} back to its previous revision"),),
    "CRASH_LOOP": (("investigate", "Read the logs of the crashing pods of {workload}"),
                   ("rollback", "Roll {workload} back if the crashes started with a rollout")),
    "METRICS_MISSING": (("investigate", "Check the metrics exporter on {node} and its scrape target"),),
    "DEMAND_PATTERN_CHANGED": (("investigate", "Retrain the forecaster for {workload} (the agent retrains on drift)"),),
    "DEGRADED_GPU": (("investigate", "Compare GPU {gpu} of {node} with its peers (clocks, temperature, ECC)"),),
    "LATENCY_REGRESSION": (("investigate", "Look at recent changes to {workload}"),),
    "UNUSUAL_METRIC": (("investigate", "Look at the findings: no known pattern matched"),),
}


def suggest_actions(ranked: Sequence[tuple[Cause, Entity]], ctx: Context) -> list[Action]:
    """Actions for the top cause (and the second when it is close), from :data:`_CATALOGUE`."""
    out: list[Action] = []
    close = len(ranked) > 1 and ranked[1][0].confidence >= 0.8 * ranked[0][0].confidence
    for cause, target in ranked[: 2 if close else 1]:
        for kind, template in _CATALOGUE.get(cause.code, ()):
            blast, within = _blast(kind, target, ctx)
            mode = ctx.action_modes.get(kind, "recommend")
            if mode == "auto" and not within:
                mode, blast = "recommend", blast + " (over the automatic limit: recommended only)"
            title = template.format(node=target.node or "?", gpu=target.gpu or "?", pod=target.pod or "?",
                                    workload=target.workload or target.pod or "?")
            params: dict[str, Any] = {"cause": cause.code}
            if kind == "scale_up":
                change = next((e.change for e in cause.evidence if e.change is not None and e.change > 0), None)
                if change is not None:
                    params["factor"] = round(1.0 + change, 2)
            out.append(Action(kind, target, title, mode, params, blast))
    return out


# -- incidents -------------------------------------------------------------------------------------

def explain(findings: Sequence[Finding], ctx: Context = Context()) -> Incident:
    """One incident from one group of findings."""
    fs = sorted(findings, key=lambda f: (f.window[0], f.code, f.entity))
    ranked = _ranked(fs, ctx)
    causes = [cause for cause, _ in ranked]
    top = causes[0] if causes else None
    entity = ranked[0][1] if ranked else fs[0].entity
    fp = fingerprint(frozenset({top.code if top else fs[0].code}), entity)
    unavailable = list(ctx.unavailable)
    for f in fs:
        if f.code in ("STALE_METRICS", "METRICS_MISSING") and (top is None or top.code != "METRICS_MISSING"):
            unavailable.append(f"{f.metric} for {f.entity.label()} (missing since {_hm(f.window[0])})")
    actions = suggest_actions(ranked, ctx)
    if causes:  # what the autoscaler did meanwhile is evidence too (a scale-up that did not help, or none at all)
        start, end = min(f.window[0] for f in fs), max(f.window[1] for f in fs)
        workloads = {f.entity.workload for f in fs if f.entity.workload} | ({entity.workload} if entity.workload else set())
        scaled = [d for d in ctx.decisions if d.get("target") in workloads and start - 1800 <= float(d.get("decided_at", 0)) <= end]
        if scaled:
            extra = tuple(Evidence("scaling", f"the agent scaled {d['target']} {d.get('current', '?')} -> {d.get('desired', '?')} at "
                                   f"{_hm(float(d['decided_at']))} ({d.get('outcome', 'applied')})", at=float(d["decided_at"]))
                          for d in scaled[-3:])
            causes[0] = replace(causes[0], evidence=causes[0].evidence + extra)
    severity = max((f.severity for f in fs), key=severity_rank)
    title = top.title if top is not None else fs[0].summary
    return Incident(id=fp[:12], fingerprint=fp, title=title, entity=entity,
                    window=(min(f.window[0] for f in fs), max(f.window[1] for f in fs)), severity=severity,
                    findings=tuple(fs), causes=tuple(causes), actions=tuple(actions),
                    unavailable=tuple(dict.fromkeys(unavailable)))


def correlate(findings: Sequence[Finding], ctx: Context = Context(), gap_seconds: float = 900.0) -> list[Incident]:
    """Group ``findings`` and explain each group: the incidents, most severe first."""
    incidents = [explain(g, ctx) for g in group(findings, ctx.pods, gap_seconds)]
    merged: dict[str, Incident] = {}
    for inc in incidents:  # two groups blaming the same thing are one incident
        if inc.fingerprint in merged:
            inc = explain(merged[inc.fingerprint].findings + inc.findings, ctx)
        merged[inc.fingerprint] = inc
    return sorted(merged.values(), key=lambda i: (-severity_rank(i.severity), -i.confidence, i.window[0], i.id))


# -- rendering for a terminal, and the log behind `aiops explain` ---------------------------------

def explain_text(incident: Incident, max_findings: int = 10) -> str:
    """The incident as plain text: what, where, why (with evidence), what to do, what was missing."""
    lines = [f"Incident {incident.id} [{incident.severity}, {incident.status}]: {incident.title}",
             f"  where: {incident.entity.label()}    when: {_iso(incident.window[0])} .. {_iso(incident.window[1])}",
             f"  fingerprint: {incident.fingerprint}"]
    if incident.causes:
        lines.append("Probable causes:")
        for i, c in enumerate(incident.causes, 1):
            lines.append(f"  {i}. {c.title} (confidence {c.confidence:.0%}, {c.code})")
            for e in c.evidence[:4]:
                figures = ""
                if e.value is not None and e.baseline is not None:
                    figures = f" [{_num(e.value)} vs {_num(e.baseline)}]"
                lines.append(f"       - {e.message}{figures}")
    if incident.actions:
        lines.append("Suggested actions:")
        for a in incident.actions:
            lines.append(f"  - [{a.mode}] {a.title} (blast radius: {a.blast_radius})")
    if incident.unavailable:
        lines.append("Data unavailable:")
        lines.extend(f"  - {u}" for u in incident.unavailable)
    lines.append(f"Findings ({len(incident.findings)}):")
    for f in incident.findings[:max_findings]:
        lines.append(f"  - {_hm(f.window[0])} {f.code} {f.entity.label()}: {f.summary}")
    if len(incident.findings) > max_findings:
        lines.append(f"  ... and {len(incident.findings) - max_findings} more")
    return "\n".join(lines)


class IncidentLog:
    """``incidents.jsonl``: one line per incident event (opened, updated, resolved), fsynced."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def append(self, incident: Incident, event: str, at: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"event": event, "at": at, "incident": incident.to_json()}, sort_keys=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def find(self, ident: str) -> Incident:
        """The latest state of the incident whose id (or fingerprint) starts with ``ident``."""
        if not self.path.exists():
            raise KeyError(f"{self.path}: no incident log (the agent writes it in its state directory)")
        found: dict[str, Incident] = {}
        for n, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                entry = json.loads(line)
                inc = Incident.from_json(entry["incident"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a torn or foreign line: skip
            if inc.fingerprint.startswith(ident) or inc.id.startswith(ident):
                found[inc.fingerprint] = replace(inc, status="resolved") if entry.get("event") == "resolved" else inc
        if not found:
            raise KeyError(f"{self.path}: no incident {ident!r}")
        if len(found) > 1:
            raise KeyError(f"{self.path}: {ident!r} matches {len(found)} incidents; give more of the id")
        return next(iter(found.values()))


def _hm(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%H:%M") if math.isfinite(t) else "?"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if math.isfinite(t) else "?"


def _num(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


class IncidentTracker:
    """Successive scans -> the incidents open now. Pure apart from its own state; ``now`` is given.

    A scan reports what its detectors see in their lookback; the same anomaly is reported again
    by the next scan with a longer window. The tracker keeps one finding per (code, entity, metric),
    merging windows (earliest start, latest end) and keeping the strongest score, and forgets a
    finding ``keep_seconds`` after it was last seen. :meth:`update` correlates what is kept.
    """

    def __init__(self, ctx: Context = Context(), keep_seconds: float = 1800.0, gap_seconds: float = 900.0) -> None:
        self.ctx = ctx
        self.keep_seconds = keep_seconds
        self.gap_seconds = gap_seconds
        self.active: dict[tuple[str, Entity, str], Finding] = {}
        self.seen: dict[tuple[str, Entity, str], float] = {}

    def update(self, findings: Sequence[Finding], now: float, ctx: Context | None = None) -> list[Incident]:
        if ctx is not None:
            self.ctx = ctx
        for f in findings:
            key = (f.code, f.entity, f.metric)
            old = self.active.get(key)
            if old is not None and f.window[0] - old.window[1] <= self.gap_seconds:
                stronger = f if f.score >= old.score else old
                f = replace(stronger, window=(min(old.window[0], f.window[0]), max(old.window[1], f.window[1])),
                            severity=max(old.severity, f.severity, key=severity_rank))
            self.active[key] = f
            self.seen[key] = now
        for key in [k for k, at in self.seen.items() if now - at > self.keep_seconds]:
            del self.active[key], self.seen[key]
        return correlate(list(self.active.values()), self.ctx, self.gap_seconds)
