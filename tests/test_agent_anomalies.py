"""The live anomaly scan: telemetry from a real Prometheus, incidents, a signed webhook to a real
local receiver, the incident log, dedup across scans and restarts, and an incident's scale-up
approved from Slack through the agent's actuator."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from aiops.agent import Agent
from aiops.agent_scan import AnomalyWatcher
from aiops.incidents import IncidentLog
from aiops.notify.render import slack_blocks
from aiops.notify.senders import WebhookSender, verify_webhook
from aiops.prometheus import PrometheusSource
from simulations.config import config_from_mapping
from tests.prometheus_server import HistorySeries, PrometheusServer, backfill, requires_prometheus, write_openmetrics
from tests.test_agent import Clock, CurveMetrics, RecordingCluster
from tests.test_approvals import interaction_body, rendered_button, slack_headers
from tests.test_notify_send import Receiver

STEP = 60.0
SECRET = "webhook-secret"
SIGNING = "slack-signing-secret"


def config(url: str, **anomalies):
    return config_from_mapping({
        "prometheus": {"url": url, "retries": 0},
        "agent": {"mode": "auto", "history_days": 1.2},
        "anomalies": anomalies,
        "node_pools": [{"name": "gpu", "kubernetes": {"method": "none"}}],
        "policies": {"predictive": {"forecaster": "naive"}},
        "workloads": [{"name": "chat", "capacity_rps": 4.0, "max_replicas": 40,
                       "metrics": {"namespace": "serving", "queries": {"demand": 'sum(demand_rps{namespace="serving"})'}}}],
    })


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    """Demand, and DCGM metrics of four GPUs on node n1 for the last two hours; GPU 3 reports XID 79
    three minutes before now and then nothing more (it fell off the bus)."""
    root = tmp_path_factory.mktemp("anomalies")
    now = math.floor(time.time() / STEP) * STEP
    ts = now - STEP * np.arange(int(1.3 * 86_400 / STEP))[::-1]
    series = [HistorySeries("demand_rps", {"namespace": "serving", "pod": "chat-0"}, ts, np.full(ts.shape, 20.0))]
    recent = ts[ts > now - 7200]
    for gpu in range(4):
        labels = {"Hostname": "n1", "gpu": str(gpu), "pod": f"chat-7d9f-{gpu}", "namespace": "serving"}
        gone = (gpu == 3) & (recent > now - 2 * STEP)
        util = np.where(gone, np.nan, 55.0 + gpu)
        xid = np.where(gone, np.nan, np.where((gpu == 3) & (recent >= now - 3 * STEP), 79.0, 0.0))
        series += [HistorySeries("DCGM_FI_DEV_GPU_UTIL", labels, recent, util),
                   HistorySeries("DCGM_FI_DEV_XID_ERRORS", labels, recent, xid),
                   HistorySeries("DCGM_FI_DEV_SM_CLOCK", labels, recent, np.where(gone, np.nan, 1800.0))]
    write_openmetrics(root / "h.om", series)
    backfill(root / "h.om", root / "data", max_block_duration="162h")
    with PrometheusServer(root / "data") as server:
        server.now = now
        yield server


@requires_prometheus
def test_an_xid79_from_prometheus_reaches_the_webhook_signed_once_and_is_logged(prom, tmp_path) -> None:
    receiver = Receiver()
    try:
        cfg = config(prom.url)
        source = PrometheusSource(cfg.prometheus)
        agent = Agent(cfg, source, RecordingCluster({"chat": 3}), state_dir=tmp_path, clock=lambda: prom.now)
        agent.collect()
        sender = WebhookSender(receiver.url("/hook"), SECRET, sleep=lambda s: None)
        watcher = AnomalyWatcher(agent, source, [sender])
        incidents = watcher.run(prom.now)
        top = incidents[0]
        assert top.probable_cause.code == "GPU_FELL_OFF_BUS" and top.entity.node == "n1" and top.entity.gpu == "3"
        assert "workload chat" in top.findings[0].entity.label() or any(f.entity.workload == "chat" for f in top.findings)
        (request,) = receiver.requests
        assert verify_webhook(SECRET, request["headers"], request["body"], time.time())
        payload = json.loads(request["body"])
        assert payload["event"] == "opened" and payload["probable_cause"]["code"] == "GPU_FELL_OFF_BUS"
        assert IncidentLog(tmp_path / "incidents.jsonl").find(top.id).fingerprint == top.fingerprint
        # The next scan sees the same fault: nothing new is sent. Nor after a restart (state saved).
        watcher.run(prom.now + 60)
        again = AnomalyWatcher(agent, source, [sender])
        again.run(prom.now + 120)
        assert len(receiver.requests) == 1
    finally:
        receiver.close()


def test_prometheus_down_is_said_not_read_as_missing_metrics(tmp_path) -> None:
    cfg = config("http://127.0.0.1:9")  # nothing listens there
    source = PrometheusSource(cfg.prometheus)
    agent = Agent(cfg, CurveMetrics({"chat": lambda t: 20.0}), RecordingCluster({"chat": 3}), state_dir=tmp_path, clock=Clock(1.79e9))
    agent.collect()
    watcher = AnomalyWatcher(agent, source, [])
    assert watcher.run() == []
    assert any(u.startswith("DCGM_FI_DEV_XID_ERRORS (Prometheus: ") for u in watcher.unavailable)


class NoTelemetry:
    def range(self, promql, start, end, step):
        return []


def surge(t: float) -> float:
    """20 rps, and 60 rps for the last five minutes."""
    return 60.0 if t > T_NOW - 300 else 20.0


T_NOW = 1_790_000_000.0


def test_a_surges_scale_up_is_approved_from_slack_and_applied_once(tmp_path) -> None:
    cfg = config("http://prom:9090", gpu_metrics=False, approvers=["U024BE7LH"])
    clock = Clock(T_NOW)
    cluster = RecordingCluster({"chat": 3})
    agent = Agent(cfg, CurveMetrics({"chat": surge}), cluster, state_dir=tmp_path, clock=clock)
    agent.collect()
    watcher = AnomalyWatcher(agent, NoTelemetry(), [])
    (incident,) = watcher.run()
    assert incident.probable_cause.code == "TRAFFIC_SURGE" and incident.actions[0].kind == "scale_up"
    ident = f"{incident.id}-0"
    assert agent.pending[ident].desired == 9  # 3 replicas x the surge's 3.0
    assert not [c for c in cluster.calls if c[0] == "scale"]
    button = rendered_button(slack_blocks(incident), "aiops:approve")
    body = interaction_body(button)
    handle = watcher.slack_handler(SIGNING)
    forged = handle(slack_headers(body, int(T_NOW), secret="wrong"), body)
    assert forged[0] == 401 and not [c for c in cluster.calls if c[0] == "scale"]
    stale = handle(slack_headers(body, int(T_NOW) - 3600, secret=SIGNING), body)
    assert stale[0] == 401
    status, answer = handle(slack_headers(body, int(T_NOW), secret=SIGNING), body)
    assert status == 200 and answer["decision"] == ident, answer
    assert [c for c in cluster.calls if c[0] == "scale"] == [("scale", "chat", 9, ident)]
    status, answer = handle(slack_headers(body, int(T_NOW), secret=SIGNING), body)  # a second click
    assert "unknown or has expired" in answer["reply"] and len([c for c in cluster.calls if c[0] == "scale"]) == 1
    clock.now += 60
    watcher.run()  # the same incident next scan: not offered again
    assert ident not in agent.pending


def test_an_automatic_scale_up_is_applied_at_once_and_journalled(tmp_path) -> None:
    cfg = config("http://prom:9090", gpu_metrics=False, action_modes={"scale_up": "auto"})
    cluster = RecordingCluster({"chat": 3})
    agent = Agent(cfg, CurveMetrics({"chat": surge}), cluster, state_dir=tmp_path, clock=Clock(T_NOW))
    agent.collect()
    (incident,) = AnomalyWatcher(agent, NoTelemetry(), []).run()
    assert [c[:3] for c in cluster.calls if c[0] == "scale"] == [("scale", "chat", 9)]
    lines = [json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert [(x["event"], x["policy"], x.get("outcome")) for x in lines] == [("decided", "incident", None),
                                                                             ("outcome", "incident", "applied")]


def test_findings_and_notifier_counters_are_on_the_agents_metrics(tmp_path) -> None:
    from prometheus_client import generate_latest

    from aiops.observability import AgentMetrics

    observer = AgentMetrics()
    cfg = config("http://prom:9090", gpu_metrics=False)
    agent = Agent(cfg, CurveMetrics({"chat": surge}), RecordingCluster({"chat": 3}), state_dir=tmp_path, clock=Clock(T_NOW),
                  observer=observer)
    agent.collect()
    AnomalyWatcher(agent, NoTelemetry(), []).run()
    text = generate_latest(observer.registry).decode()
    assert 'aiops_findings_total{code="ABOVE_FORECAST"} 1.0' in text
    assert "aiops_notify_detections_total" in text
