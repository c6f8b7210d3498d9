"""The live agent's anomaly scan: pull telemetry from Prometheus, scan, track incidents, notify.

:class:`AnomalyWatcher` is the scan job of ``aiops run`` (:mod:`aiops.runner`). Each run:

1. :meth:`AnomalyWatcher.pull` reads the last 90 minutes from Prometheus into the same shape the
   fault-injection simulator produces (metric -> :class:`~aiops.findings.Entity` -> values on
   one step grid): every DCGM GPU metric with its ``Hostname``/``gpu``/``pod``/``namespace``
   labels (a pod is mapped to its workload by the workload's object name), each workload's p95
   latency (the query catalogue), its pods' restart counters (kube-state-metrics), and demand
   (the history the agent already holds, a day and more, for the day-over-day check);
2. :func:`aiops.scan.scan` runs every detector on it, exactly as in the replay;
3. :class:`aiops.incidents.IncidentTracker` keeps the incidents open and explains them;
4. :class:`aiops.notify.notifier.Notifier` decides the messages; the senders configured from the
   environment (Slack, webhook, Alertmanager) send them; every opened, updated and resolved
   incident is appended to ``STATE_DIR/incidents.jsonl`` (``aiops explain``); the notifier's
   state is saved to ``STATE_DIR/notifier.json`` so a restart neither repeats nor forgets.

A ``scale_up`` action of an open incident becomes a pending decision of the agent, so the
Approve button (Slack) or signed link applies it through the same actuator and journal as the
policy's decisions; in ``auto`` (``anomalies.action_modes``) it is applied at once within its
blast radius. Other actions (cordon, restart, roll back) are for humans: the agent has no RBAC
for them. A scan that cannot read Prometheus reports the metrics as unavailable and raises no
incident from missing data it could not fetch.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from aiops.findings import Entity, Incident
from aiops.incidents import BlastLimits, Context, IncidentLog, IncidentTracker
from aiops.prometheus import PrometheusError
from aiops.queries import workload_queries
from aiops.scan import DEMAND, LATENCY, RESTARTS, ScanSettings, scan

log = logging.getLogger("aiops.anomalies")

GPU_FIELDS = ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_GPU_TEMP",
              "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS")
LOOKBACK = 5400.0


class AnomalyWatcher:
    def __init__(self, agent, source, senders: Sequence = (), *, notifier=None, approval_key: bytes | None = None) -> None:
        from aiops.notify.notifier import ChannelConfig, Notifier, NotifierConfig

        self.agent = agent
        self.source = source
        self.config = agent.config.anomalies
        self.senders = list(senders)
        self.key = approval_key
        self.state_path = Path(agent.state_dir) / "notifier.json"
        self.incident_log = IncidentLog(Path(agent.state_dir) / "incidents.jsonl")
        if notifier is None:
            channels = tuple(ChannelConfig(s.name, rate_limit=self.config.rate_limit, group=s.name == "slack") for s in self.senders) \
                or (ChannelConfig("log", rate_limit=self.config.rate_limit),)
            nc = NotifierConfig(channels=channels, group_wait=self.config.group_wait_seconds,
                                resolve_after=self.config.resolve_after_seconds, renotify_after=self.config.renotify_after_seconds)
            state = None
            if self.state_path.exists():
                try:
                    state = json.loads(self.state_path.read_text())
                except (OSError, json.JSONDecodeError) as exc:
                    log.warning("%s unreadable, starting the notifier afresh: %s", self.state_path, exc)
            try:
                notifier = Notifier(nc, state=state)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("%s does not match this version, starting the notifier afresh: %s", self.state_path, exc)
                notifier = Notifier(nc)
        self.notifier = notifier
        self.settings = ScanSettings(stale_after_seconds=self.config.stale_after_seconds)
        self.tracker = IncidentTracker(self._context())
        self.unavailable: list[str] = []
        self.workload_of = {t.object_name: name for name, t in agent.targets.items()}
        if agent.observer is not None:
            agent.observer.watch(lambda: self.notifier.counters(), "Notifier messages and incident fates (aiops.notify)", counter=True)

    def _context(self, unavailable: Sequence[str] = ()) -> Context:
        return Context(action_modes=dict(self.config.action_modes), limits=BlastLimits(max_pods=self.config.max_auto_pods),
                       unavailable=tuple(unavailable), decisions=tuple(self.agent.recent_actions))

    # -- pull --------------------------------------------------------------------------------------

    def _workload(self, pod: str) -> str:
        for prefix, name in self.workload_of.items():
            if pod.startswith(prefix + "-"):
                return name
        return ""

    def pull(self, now: float) -> tuple[dict[str, dict[Entity, np.ndarray]], float, float]:
        """Telemetry over the last 90 minutes (demand: the agent's history) on the agent's step grid."""
        step = self.agent.step
        end = math.floor(now / step) * step
        start = end - LOOKBACK  # what is queried
        with self.agent.lock:  # demand: the agent's own history, which reaches back a day and more
            observed, hist_start = self.agent.observed.copy(), self.agent.start
        has_history = hist_start is not None and len(observed) > 0
        grid = min(start, hist_start) if has_history else start  # one grid for every metric
        n = int(round((end - grid) / step)) + 1
        series: dict[str, dict[Entity, np.ndarray]] = {}
        self.unavailable = []

        def put(metric: str, e: Entity, first: float, src) -> None:
            values = np.full(n, np.nan)
            k0 = int(round((first - grid) / step))
            src = np.asarray(src, dtype=float)
            lo, hi = max(0, k0), min(n, k0 + len(src))
            if hi > lo:
                values[lo:hi] = src[lo - k0:hi - k0]
            series.setdefault(metric, {})[e] = values

        def query(metric: str, promql: str):
            try:
                return self.source.range(promql, start, end, step)
            except PrometheusError as exc:
                self.unavailable.append(f"{metric} (Prometheus: {exc.message})")
                return []

        if self.config.gpu_metrics:
            for field in GPU_FIELDS:
                for r in query(field, field):
                    labels = r.labels
                    pod = labels.get("pod", "") or labels.get("exported_pod", "")
                    e = Entity(node=labels.get("Hostname") or labels.get("node") or labels.get("instance", ""),
                               gpu=labels.get("gpu", ""), pod=pod, workload=self._workload(pod) if pod else "",
                               namespace=(labels.get("namespace", "") or labels.get("exported_namespace", "")) if pod else "")
                    put(field, e, r.series.start, r.series.values)
        for name, target in self.agent.targets.items():
            w = self.agent.config.workload_for(name)
            entity = Entity(workload=name, namespace=target.namespace)
            latency = workload_queries(name, w.metrics, self.agent.config.prometheus.rate_window).get("latency_p95")
            if latency is not None:
                for r in query(f"latency of {name}", latency.promql):
                    put(LATENCY, entity, r.series.start, r.series.values)
            restarts = (f'sum by (pod, namespace) (kube_pod_container_status_restarts_total'
                        f'{{namespace="{target.namespace}",pod=~"{target.object_name}-.*"}})')
            for r in query(f"restarts of {name}", restarts):
                pod = r.labels.get("pod", "")
                put(RESTARTS, Entity(pod=pod, workload=name, namespace=target.namespace), r.series.start, r.series.values)
        if has_history:
            for i, name in enumerate(self.agent.names):
                put(DEMAND, Entity(workload=name, namespace=self.agent.targets[name].namespace), hist_start, observed[:, i])
        return series, grid, step

    # -- run ---------------------------------------------------------------------------------------

    def run(self, now: float | None = None) -> list[Incident]:
        """One scan: the incidents open now (after notifying what changed)."""
        now = self.agent.clock() if now is None else now
        series, start, step = self.pull(now)
        findings = scan(series, start, step, math.floor(now / step) * step, self.settings)
        if self.unavailable:  # what could not be fetched is said, never read as an anomaly
            findings = [f for f in findings if f.code not in ("STALE_METRICS", "METRICS_MISSING")]
        incidents = self.tracker.update(findings, now, self._context(self.unavailable))
        observer = self.agent.observer
        if observer is not None:
            for f in findings:
                observer.findings.labels(f.code).inc()
        self._offer_actions(incidents, now)
        notifications = self.notifier.observe(incidents, now)
        for n in notifications:
            for inc in n.incidents:
                event = n.event_of(inc.fingerprint)
                if event in ("opened", "updated", "resolved"):
                    self.incident_log.append(inc, event, now)
            log.warning("incident %s (%s): %s", n.event, n.channel, "; ".join(f"{i.id} {i.title}" for i in n.incidents)
                        or (n.summary and f"{n.summary.total} suppressed"))
        if self.senders:
            from aiops.notify.senders import deliver

            deliver(self.notifier, [n for n in notifications if n.channel != "log"], self.senders, log=log.warning)
        self._save()
        return incidents

    def _offer_actions(self, incidents: Sequence[Incident], now: float) -> None:
        """Scale-ups suggested by incidents become the agent's pending decisions (or are applied in auto)."""
        from aiops.agent import Pending
        from aiops.notify.approvals import decision_id_for

        for inc in incidents:
            for i, action in enumerate(inc.actions):
                if action.kind != "scale_up" or action.target.workload not in self.agent.targets:
                    continue
                ident = decision_id_for(inc, i)
                if ident in self.agent.pending or self.agent.was_journalled(ident):
                    continue
                name = action.target.workload
                w = self.agent.config.workload_for(name)
                try:
                    current, _ = self.agent.cluster.replicas(self.agent.targets[name])
                except Exception as exc:  # the API is down: offer nothing now, try again next scan
                    log.warning("cannot offer %s for incident %s: %s", action.kind, inc.id, exc)
                    continue
                desired = min(w.max_replicas, max(current + 1, math.ceil(current * float(action.params.get("factor", 1.5)))))
                pending = Pending(ident, name, int(desired), now, f"{name}: scale up replicas {current} -> {desired} "
                                  f"(incident {inc.id}: {inc.title})")
                self.agent.offer(pending, mode=action.mode)

    def _save(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.notifier.to_json()))
        os.replace(tmp, self.state_path)

    # -- Slack interactivity -----------------------------------------------------------------------

    def slack_handler(self, signing_secret: str):
        """``POST /slack/interactions``: verified, then Approve applies, 👍/👎 is recorded."""
        from aiops.notify.approvals import handle_slack_interaction

        def handle(headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
            return handle_slack_interaction(signing_secret, headers, body, self.agent.clock(), approve=self.agent.approve,
                                            feedback=self.notifier.record_feedback, fingerprint_of=self.notifier.fingerprint_of,
                                            approvers=set(self.config.approvers) or None)
        return handle
