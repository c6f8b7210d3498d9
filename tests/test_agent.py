"""The agent's tick: collect -> forecast -> decide -> act, its modes, holds, journal and endpoints.

The cluster here is a recording fake behind the agent's ``Cluster`` protocol (the Kubernetes
actuator itself is tested against an API stand-in in ``test_kube.py``); the metrics source serves
a known demand curve on the step grid, or fails like an unreachable Prometheus.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request

import numpy as np
import pytest

from aiops.agent import Agent, decision_id
from aiops.kube import ActionResult
from aiops.observability import AgentMetrics, Endpoints, approval_link
from aiops.prometheus import PrometheusUnavailable
from forecasters.series import Series
from simulations.config import config_from_mapping

STEP = 60.0
T0 = 1_790_000_000.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CurveMetrics:
    """demand(t) per workload on the grid; ``down`` makes it fail like an unreachable Prometheus."""

    def __init__(self, curves) -> None:
        self.curves = curves
        self.down = False
        self.calls = []

    def range_many(self, queries, start, end, step, progress=None):
        self.calls.append((start, end))
        if self.down:
            raise PrometheusUnavailable("http://prom:9090", "q", "unreachable: connection refused")
        ts = np.arange(start, end + step / 2, step)
        return {name: Series(name, start, step, np.array([self.curves[name](t) for t in ts])) for name in queries}


class RecordingCluster:
    def __init__(self, replicas: dict[str, int]) -> None:
        self.current = dict(replicas)
        self.calls = []

    def replicas(self, t):
        return self.current[t.name], self.current[t.name]

    def scale(self, t, replicas, decision_id, dry_run=False):
        self.calls.append(("scale", t.name, replicas, decision_id))
        before = self.current[t.name]
        self.current[t.name] = replicas
        return ActionResult(t.name, "replicas", before, replicas, True, False)

    def set_node_floor(self, p, nodes, decision_id, dry_run=False):
        self.calls.append(("nodes", p.name, nodes, decision_id))
        return ActionResult(p.name, "nodes", None, nodes, True, False)

    def record(self, t, decision_id, reason, message, event_type="Normal"):
        self.calls.append(("event", t.name, reason, decision_id))


def config(mode: str = "dry-run", **workload):
    return config_from_mapping({
        "prometheus": {"url": "http://prom:9090"},
        "agent": {"mode": mode, "history_days": 2.0},
        "policies": {"predictive": {"forecaster": "seasonal-naive"}},
        "workloads": [{"name": "chat", "capacity_rps": 4.0, "metrics": {"namespace": "serving"}, **workload}],
    })


def rising(t: float) -> float:
    """A daily wave: the forecaster knows the next ramp from yesterday."""
    return 40.0 + 30.0 * math.sin(2 * math.pi * (t % 86_400) / 86_400)


def make_agent(tmp_path, mode="dry-run", replicas=5, **workload):
    clock = Clock(T0)
    metrics = CurveMetrics({"chat": rising})
    cluster = RecordingCluster({"chat": replicas})
    observer = AgentMetrics()
    agent = Agent(config(mode, **workload), metrics, cluster, state_dir=tmp_path, clock=clock, observer=observer)
    return agent, clock, metrics, cluster, observer


def journal(tmp_path):
    path = tmp_path / "decisions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_collect_pulls_the_history_once_then_only_what_is_new(tmp_path) -> None:
    agent, clock, metrics, *_ = make_agent(tmp_path)
    agent.collect()
    assert len(agent.observed) == int(2 * 86_400 / STEP) and agent.ready
    clock.now += 180
    agent.collect()
    assert len(agent.observed) == int(2 * 86_400 / STEP)  # the window slides
    (s1, e1), (s2, e2) = metrics.calls
    assert e2 - e1 == 180 and s2 == e1 + STEP  # only the three new steps
    assert agent.observed[-1, 0] == pytest.approx(rising(e2))


def test_dry_run_posts_and_logs_decisions_and_applies_nothing(tmp_path) -> None:
    agent, clock, metrics, cluster, _ = make_agent(tmp_path, replicas=1)
    agent.collect()
    report = agent.decide_and_act()
    assert not report.held and report.decisions
    changes = [d for d in report.decisions if d.kind == "replicas" and d.is_change]
    assert changes, report.decisions
    assert not [c for c in cluster.calls if c[0] in ("scale", "nodes")]
    events = [c for c in cluster.calls if c[0] == "event"]
    assert events and all(c[2] == "DryRun" for c in events)
    lines = journal(tmp_path)
    ident = decision_id(changes[0])
    assert [(line["event"], line["mode"]) for line in lines if line["id"] == ident] == [("decided", "dry-run"), ("outcome", "dry-run")]
    assert "chat: scale" in lines[0]["explain"]


def test_auto_applies_the_decision_and_journals_it_before_and_after(tmp_path) -> None:
    agent, clock, metrics, cluster, observer = make_agent(tmp_path, mode="auto", replicas=1)
    agent.collect()
    report = agent.decide_and_act()
    (change,) = [d for d in report.decisions if d.kind == "replicas" and d.is_change]
    scales = [c for c in cluster.calls if c[0] == "scale"]
    assert scales == [("scale", "chat", change.desired, decision_id(change))]
    assert cluster.current["chat"] == change.desired > 1
    assert report.outcomes[decision_id(change)]["outcome"] == "applied"
    assert ("event", "chat", "ScaledAhead", decision_id(change)) in cluster.calls
    assert [line["event"] for line in journal(tmp_path) if line["target"] == "chat"] == ["decided", "outcome"]
    assert observer.actions.labels("replicas", "applied")._value.get() == 1


def test_a_workload_may_override_the_agent_mode(tmp_path) -> None:
    agent, clock, metrics, cluster, _ = make_agent(tmp_path, mode="dry-run", replicas=1, kubernetes={"mode": "auto"})
    agent.collect()
    agent.decide_and_act()
    assert [c for c in cluster.calls if c[0] == "scale"]


def test_metrics_unavailable_holds_without_touching_the_cluster(tmp_path) -> None:
    agent, clock, metrics, cluster, observer = make_agent(tmp_path, mode="auto", replicas=50)
    agent.collect()
    metrics.down = True
    clock.now += 60
    agent.collect()
    report = agent.decide_and_act()
    assert "metrics unavailable (unreachable: connection refused): holding" in report.held
    assert cluster.calls == [] and not agent.ready
    assert observer.holds._value.get() == 1
    metrics.down = False
    agent.collect()
    assert agent.ready and not agent.decide_and_act().held


def test_a_replica_that_is_not_the_leader_holds(tmp_path) -> None:
    agent, *_ = make_agent(tmp_path, mode="auto")
    agent.is_leader = lambda: False
    agent.collect()
    assert agent.decide_and_act().held == "not the leader: another replica acts"


def _post(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_recommend_waits_for_a_signed_approval_over_http(tmp_path) -> None:
    agent, clock, metrics, cluster, observer = make_agent(tmp_path, mode="recommend", replicas=1)
    agent.collect()
    report = agent.decide_and_act()
    (change,) = [d for d in report.decisions if d.kind == "replicas" and d.is_change]
    ident = decision_id(change)
    assert not [c for c in cluster.calls if c[0] == "scale"] and ident in agent.pending
    key = b"test-approval-key"
    server = Endpoints(observer, lambda: (True, "ok"), agent.approve, key, "127.0.0.1", 0, clock=clock).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        forged = approval_link(base, b"another-key", ident, now=clock.now)
        assert _post(forged)[0] == 403
        expired = approval_link(base, key, ident, ttl_seconds=-1, now=clock.now)
        assert _post(expired) == (403, {"error": "approval link expired"})
        status, body = _post(approval_link(base, key, ident, now=clock.now))
        assert status == 200 and body["applied"] and body["desired"] == change.desired
        assert ("scale", "chat", change.desired, ident) in cluster.calls
        again = _post(approval_link(base, key, ident, now=clock.now))
        assert again[0] == 404  # applied once, never twice
    finally:
        server.stop()


def test_endpoints_serve_metrics_health_and_readiness(tmp_path) -> None:
    agent, clock, metrics, cluster, observer = make_agent(tmp_path, mode="auto", replicas=1)
    agent.collect()
    agent.decide_and_act()
    ready = {"ok": True}
    server = Endpoints(observer, lambda: (ready["ok"], "ok" if ready["ok"] else "prometheus unreachable"),
                       address="127.0.0.1", port=0).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        text = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
        assert "aiops_up 1.0" in text and 'aiops_decisions_total{reason="FORECAST_UP",workload="chat"}' in text
        assert 'aiops_actions_total{kind="replicas",outcome="applied"} 1.0' in text
        assert urllib.request.urlopen(base + "/healthz", timeout=5).status == 200
        assert urllib.request.urlopen(base + "/readyz", timeout=5).status == 200
        ready["ok"] = False
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + "/readyz", timeout=5)
        assert err.value.code == 503 and json.loads(err.value.read())["reason"] == "prometheus unreachable"
    finally:
        server.stop()
