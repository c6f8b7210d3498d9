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
    assert len(agent.observed) == int(2 * 86_400 / STEP) and agent.metrics_ok
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
    assert agent.metrics_ok and not agent.decide_and_act().held and agent.ready


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
        assert 'aiops_forecast_drifting{lead="1",workload="chat"} 0.0' in text  # the drift monitor's gauges
        assert urllib.request.urlopen(base + "/healthz", timeout=5).status == 200
        assert urllib.request.urlopen(base + "/readyz", timeout=5).status == 200
        ready["ok"] = False
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + "/readyz", timeout=5)
        assert err.value.code == 503 and json.loads(err.value.read())["reason"] == "prometheus unreachable"
    finally:
        server.stop()


# -- readiness, modes ------------------------------------------------------------------------------

class FailingCluster(RecordingCluster):
    """The API is down for reads: every replicas() raises like an unreachable server."""

    def __init__(self, replicas) -> None:
        super().__init__(replicas)
        self.down = False

    def replicas(self, t):
        if self.down:
            raise ConnectionError("api.cluster:443: connection refused")
        return super().replicas(t)


def test_ready_needs_prometheus_the_api_and_the_model(tmp_path) -> None:
    clock = Clock(T0)
    cluster = FailingCluster({"chat": 5})
    agent = Agent(config("auto"), CurveMetrics({"chat": rising}), cluster, state_dir=tmp_path, clock=clock)
    ok, why = agent.readiness()
    assert not ok and "Prometheus: no metrics collected yet" in why and "Kubernetes API: " in why
    agent.collect()
    assert agent.readiness() == (False, "Kubernetes API: the Kubernetes API has not answered yet")
    agent.decide_and_act()
    assert agent.readiness() == (True, "ok")
    cluster.down = True
    report = agent.decide_and_act()
    assert "cannot read replicas" in report.held
    assert agent.readiness() == (False, "Kubernetes API: api.cluster:443: connection refused")


def test_a_registry_model_must_be_loaded_before_the_agent_is_ready(tmp_path, monkeypatch) -> None:
    from forecasters import build
    from forecasters.registry import ModelRegistry

    monkeypatch.setenv("AIOPS_MODEL_REGISTRY", str(tmp_path / "models"))
    cfg = config("auto").model_copy(update={"agent": config("auto").agent.model_copy(update={"model_name": "demand"})})
    agent = Agent(cfg, CurveMetrics({"chat": rising}), RecordingCluster({"chat": 5}), state_dir=tmp_path, clock=Clock(T0))
    agent.collect()
    agent.decide_and_act()
    assert agent.reload_model() is None
    ok, why = agent.readiness()
    assert not ok and why.startswith("model: ") and "no promoted version" in why
    registry = ModelRegistry(tmp_path / "models")
    model = build("seasonal-naive", {})
    history = [Series("chat", T0 - 86_400 * 2, STEP, np.array([rising(T0 - 86_400 * 2 + k * STEP) for k in range(2880)]))]
    model.train(history)
    v = registry.register("demand", model, history, {"mase": 1.0, "evaluation": "e"})
    registry.promote("demand", v.version, force=True)
    assert agent.reload_model() == v.version and agent.readiness() == (True, "ok")
    assert agent.reload_model() is None  # unchanged: nothing reloaded
    assert agent.stream.model.name == model.name and not agent.decide_and_act().held


def test_metrics_export_each_workloads_mode(tmp_path) -> None:
    agent, *_, observer = make_agent(tmp_path, mode="recommend")
    assert observer.mode.labels("chat", "recommend")._value.get() == 1
    assert observer.mode.labels("chat", "auto")._value.get() == 0


# -- kill and restart ------------------------------------------------------------------------------

class Killed(BaseException):
    """What a SIGKILL looks like from inside: nothing after this line runs."""


class KilledCluster(RecordingCluster):
    """Dies in the middle of a scale: before the write reaches the API, or just after it."""

    def __init__(self, replicas, after_write: bool) -> None:
        super().__init__(replicas)
        self.after_write = after_write

    def scale(self, t, replicas, decision_id, dry_run=False):
        if self.after_write:
            super().scale(t, replicas, decision_id, dry_run)
        raise Killed()


@pytest.mark.parametrize("after_write", [False, True], ids=["killed-before-the-write", "killed-after-the-write"])
def test_a_kill_between_decided_and_outcome_loses_no_decision_and_applies_none_twice(tmp_path, after_write) -> None:
    clock = Clock(T0)
    dying = KilledCluster({"chat": 1}, after_write)
    first = Agent(config("auto"), CurveMetrics({"chat": rising}), dying, state_dir=tmp_path, clock=clock)
    first.collect()
    with pytest.raises(Killed):
        first.decide_and_act()
    (cut,) = journal(tmp_path)
    assert cut["event"] == "decided"
    # Started again a minute later on the same state directory, against the same cluster.
    clock.now += 60
    survivor = RecordingCluster(dict(dying.current))
    second = Agent(config("auto"), CurveMetrics({"chat": rising}), survivor, state_dir=tmp_path, clock=clock)
    second.collect()
    report = second.decide_and_act()
    settled = [e for e in journal(tmp_path) if e["id"] == cut["id"]]
    assert [e["event"] for e in settled] == ["decided", "outcome"] and settled[1]["recovered"]
    assert settled[1]["applied"] is after_write
    assert settled[1]["outcome"].startswith("applied (found on the target" if after_write else "not applied: the agent stopped")
    scales = [c for c in survivor.calls if c[0] == "scale"]
    if after_write:  # already there: the new tick does not write it again
        assert scales == [] and survivor.current["chat"] == cut["desired"]
    else:  # never applied: decided again from fresh state, with its own id, and applied once
        (change,) = [d for d in report.decisions if d.kind == "replicas" and d.is_change]
        assert scales == [("scale", "chat", change.desired, decision_id(change))] and decision_id(change) != cut["id"]
    # Every decided line has exactly one outcome.
    lines = journal(tmp_path)
    decided = [e["id"] for e in lines if e["event"] == "decided"]
    assert sorted(decided) == sorted(e["id"] for e in lines if e["event"] == "outcome")


def test_a_recommendation_survives_a_restart_and_is_approved_once(tmp_path) -> None:
    clock = Clock(T0)
    first = Agent(config("recommend"), CurveMetrics({"chat": rising}), RecordingCluster({"chat": 1}), state_dir=tmp_path, clock=clock)
    first.collect()
    (change,) = [d for d in first.decide_and_act().decisions if d.kind == "replicas" and d.is_change]
    ident = decision_id(change)
    cluster = RecordingCluster({"chat": 1})
    second = Agent(config("recommend"), CurveMetrics({"chat": rising}), cluster, state_dir=tmp_path, clock=clock)
    done = second.approve(ident)  # the human clicks right after the restart
    assert done["applied"] and cluster.calls[0] == ("scale", "chat", change.desired, ident)
    third = Agent(config("recommend"), CurveMetrics({"chat": rising}), cluster, state_dir=tmp_path, clock=clock)
    with pytest.raises(KeyError):
        third.approve(ident)  # approved before the restart: never applied twice


def test_a_recommendation_expires_and_a_newer_one_supersedes_it(tmp_path) -> None:
    agent, clock, metrics, cluster, _ = make_agent(tmp_path, mode="recommend", replicas=1)
    agent.collect()
    (first,) = [d for d in agent.decide_and_act().decisions if d.kind == "replicas" and d.is_change]
    clock.now += 60
    agent.collect()
    (second,) = [d for d in agent.decide_and_act().decisions if d.kind == "replicas" and d.is_change]
    assert list(agent.pending) == [decision_id(second)]
    with pytest.raises(KeyError, match="superseded"):
        agent.approve(decision_id(first))
    clock.now += agent.config.agent.approval_ttl_seconds + 1
    with pytest.raises(KeyError, match="expired"):
        agent.approve(decision_id(second))
    events = [(e["id"], e["event"]) for e in journal(tmp_path) if e["event"] in ("superseded", "expired")]
    assert events == [(decision_id(first), "superseded"), (decision_id(second), "expired")]
    assert not [c for c in cluster.calls if c[0] == "scale"]


def test_a_torn_journal_line_is_skipped_not_fatal(tmp_path) -> None:
    (tmp_path / "decisions.jsonl").write_text('{"id": "abc", "event": "decided", "kind": "rep')
    agent, clock, metrics, cluster, _ = make_agent(tmp_path, mode="auto", replicas=1)
    agent.collect()
    assert not agent.decide_and_act().held


# -- retrain, scan ---------------------------------------------------------------------------------

def test_retrain_scores_the_forecaster_on_held_out_history_and_refits(tmp_path) -> None:
    agent, clock, metrics, cluster, observer = make_agent(tmp_path, mode="auto")
    assert "not enough history" in agent.retrain()["skipped"]
    agent.collect()
    agent.decide_and_act()
    assert agent.stream.fitted("chat") is not None
    result = agent.retrain("scheduled")
    assert result["model"] == "seasonal-naive" and math.isfinite(result["mase"]) and result["verdict"] == "refitted every workload"
    assert agent.stream.fitted("chat") is None  # refits on the next tick
    assert observer.retrains.labels("scheduled")._value.get() == 1
    assert observer.backtest_mase.labels("chat")._value.get() == pytest.approx(result["per_workload_mase"]["chat"])


def test_retrain_with_a_registry_model_registers_promotes_and_reloads(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AIOPS_MODEL_REGISTRY", str(tmp_path / "models"))
    base = config("auto")
    cfg = base.model_copy(update={"agent": base.agent.model_copy(update={"model_name": "demand"})})
    agent = Agent(cfg, CurveMetrics({"chat": rising}), RecordingCluster({"chat": 5}), state_dir=tmp_path, clock=Clock(T0))
    agent.collect()
    result = agent.retrain("drift: test")
    assert result["version"] == "v0001" and result["verdict"].startswith("promoted demand v0001")
    assert agent.model_version == "v0001" and agent.model_error == ""
    assert (tmp_path / "models" / "demand" / "v0001" / "metadata.json").exists()


def test_the_scan_asks_for_a_retrain_when_the_stream_refitted_on_drift(tmp_path) -> None:
    agent, clock, metrics, cluster, observer = make_agent(tmp_path, mode="auto")
    agent.collect()
    agent.decide_and_act()
    assert agent.scan() == [] and agent.retrain_requested == ""
    agent.stream.retrains["chat"] = 1  # the drift monitor made the stream refit chat
    agent.scan()
    assert agent.retrain_requested.startswith("drift: ") and "chat" in agent.retrain_requested
    agent.retrain(agent.retrain_requested)
    assert agent.retrain_requested == "" and observer.retrains.labels("drift")._value.get() == 1
    agent.scan()
    assert agent.retrain_requested == ""  # answered once per episode


def test_the_agent_follows_a_rising_trend_like_the_replay(tmp_path) -> None:
    cfg = config_from_mapping({
        "prometheus": {"url": "http://prom:9090"},
        "agent": {"mode": "auto", "history_days": 1.0},
        "policies": {"predictive": {"forecaster": "naive", "follow_trend": True}},
        "workloads": [{"name": "chat", "capacity_rps": 4.0, "max_replicas": 100, "metrics": {"namespace": "serving"}}],
    })
    ramp = lambda t: 10.0 + max(0.0, t - (T0 - 660)) * 0.2  # noqa: E731  rising 12 rps a minute for the last 11 minutes
    agent = Agent(cfg, CurveMetrics({"chat": ramp}), RecordingCluster({"chat": 30}), state_dir=tmp_path, clock=Clock(T0))
    agent.collect()
    (d,) = [d for d in agent.decide_and_act().decisions if d.kind == "replicas"]
    assert "TREND" in {r.code for r in d.reasons}, d.explain()
    assert d.desired > 30
