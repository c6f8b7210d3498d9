"""Replay simulated telemetry through the agent's anomaly pipeline, scan by scan, and score it.

Every ``scan_every`` seconds the replay does what the agent's scan job does live: run every
detector on what has been observed up to now (:func:`aiops.scan.scan`), keep the incidents open
(:class:`aiops.incidents.IncidentTracker`) and hand them to the notifier
(:class:`aiops.notify.notifier.Notifier`), which decides the Slack and webhook messages. Nothing
sees the future: a scan at ``t`` reads samples at or before ``t``.

Scoring against the injected faults (:class:`simulations.telemetry.InjectedFault`):

* **detected**: some incident related to the fault's entity (same GPU, node, pod or workload)
  is open at a scan between the fault's start and 30 minutes after it;
* **time to detect**: that scan's time minus the fault's start;
* **top-1 cause**: the probable cause of that incident at that scan equals the fault's expected cause;
* **false alarm**: an incident (a fingerprint) opened that relates to no injected fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from aiops.findings import Entity, Incident, severity_rank
from aiops.incidents import Context, IncidentTracker
from aiops.scan import ScanSettings, scan
from simulations.telemetry import InjectedFault, Telemetry

DETECT_WITHIN = 1800.0  # a fault not detected within 30 minutes counts as missed


@dataclass
class FaultResult:
    fault: InjectedFault
    detected_at: float | None = None
    incident: Incident | None = None  # the matching incident at the first detection

    @property
    def detected(self) -> bool:
        return self.detected_at is not None

    @property
    def time_to_detect(self) -> float | None:
        return None if self.detected_at is None else self.detected_at - self.fault.start

    @property
    def top_cause(self) -> str | None:
        return self.incident.probable_cause.code if self.incident is not None and self.incident.causes else None

    @property
    def cause_correct(self) -> bool:
        return self.top_cause == self.fault.expected_cause


@dataclass
class ReplayResult:
    telemetry: Telemetry
    scans: int
    scanned_seconds: float
    faults: list[FaultResult]
    incidents: dict[str, Incident] = field(default_factory=dict)  # fingerprint -> as first seen
    false_alarms: list[Incident] = field(default_factory=list)
    notifications: list = field(default_factory=list)  # (time, Notification)


def related(a: Entity, b: Entity) -> bool:
    """Same GPU, node, pod or workload (empty fields say nothing)."""
    if a.node and a.node == b.node:
        return not (a.gpu and b.gpu and a.gpu != b.gpu)
    if a.pod and a.pod == b.pod:
        return True
    return bool(a.workload and a.workload == b.workload)


def matches(incident: Incident, fault: InjectedFault) -> bool:
    """The incident is about the fault: its entity, or one of its findings', relates to the fault's."""
    if incident.window[1] < fault.start - 300 or incident.window[0] > fault.end + DETECT_WITHIN:
        return False
    return related(incident.entity, fault.entity) or any(related(f.entity, fault.entity) for f in incident.findings)


def replay(telemetry: Telemetry, *, scan_every: float = 60.0, begin: float | None = None, until: float | None = None,
           settings: ScanSettings = ScanSettings(), notifier=None, progress: Callable[[int], None] | None = None) -> ReplayResult:
    """Scan ``telemetry`` every ``scan_every`` seconds from ``begin`` (default: one day in, so
    day-over-day baselines exist, or the middle when shorter) to ``until`` (default: its end)."""
    begin = begin if begin is not None else telemetry.start + min(86_400.0, 0.5 * telemetry.n_steps * telemetry.step)
    rollouts = tuple(telemetry.rollouts)
    tracker = IncidentTracker(Context(pods=dict(telemetry.pods)))
    results = [FaultResult(f) for f in telemetry.faults]
    out = ReplayResult(telemetry, 0, 0.0, results)
    end = telemetry.start + (telemetry.n_steps - 1) * telemetry.step
    end = end if until is None else min(end, until)
    now = begin
    while now <= end + 1e-6:
        ctx = Context(pods=dict(telemetry.pods), rollouts=tuple(r for r in rollouts if r.at <= now))
        incidents = tracker.update(scan(telemetry.series, telemetry.start, telemetry.step, now, settings), now, ctx)
        for inc in incidents:
            if inc.fingerprint not in out.incidents:
                out.incidents[inc.fingerprint] = inc
                if not any(matches(inc, r.fault) for r in results):
                    out.false_alarms.append(inc)
        for r in results:
            if r.detected or not (r.fault.start <= now <= r.fault.start + DETECT_WITHIN):
                continue
            hit = [inc for inc in incidents if matches(inc, r.fault)]
            if hit:
                r.detected_at = now
                # What on-call reads first: the incident about the fault's own entity, then the most severe and sure.
                r.incident = min(hit, key=lambda i: (not related(i.entity, r.fault.entity), -severity_rank(i.severity),
                                                     -i.confidence, i.id))
        if notifier is not None:
            out.notifications += [(now, n) for n in notifier.observe(incidents, now)]
        out.scans += 1
        if progress is not None:
            progress(1)
        now += scan_every
    out.scanned_seconds = max(0.0, min(now, end + scan_every) - begin)
    return out
