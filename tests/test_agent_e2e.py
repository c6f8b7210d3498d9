"""End to end: a real Prometheus with demand history, the agent, the real Kubernetes client
talking to the API stand-in. The agent scales ahead of a ramp it has seen the day before, in
auto mode; in dry-run it only posts Events; a restarted agent neither loses nor repeats a
decision.
"""

from __future__ import annotations

import json
import math
import time

import kubernetes
import numpy as np
import pytest

from aiops.agent import Agent, decision_id
from aiops.kube import KubeCluster
from aiops.prometheus import PrometheusSource
from simulations.config import config_from_mapping
from tests.kube_api import KubeAPI
from tests.prometheus_server import HistorySeries, PrometheusServer, backfill, requires_prometheus, write_openmetrics

pytestmark = requires_prometheus

STEP = 60.0
BASE, PEAK = 10.0, 60.0
RAMP_IN = 4  # minutes from "now" to the daily ramp


def demand(ts: np.ndarray, now: float) -> np.ndarray:
    """BASE, and PEAK for an hour each day starting RAMP_IN minutes after ``now``'s time of day."""
    start = (now + RAMP_IN * STEP) % 86_400
    phase = (ts - start) % 86_400
    return np.where(phase < 3600, PEAK, BASE)


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    now = math.floor(time.time() / STEP) * STEP
    ts = now - STEP * np.arange(int(2 * 86_400 / STEP))[::-1]
    write_openmetrics(root / "h.om", [HistorySeries("demand_rps", {"namespace": "serving", "pod": "chat-0"}, ts, demand(ts, now))])
    backfill(root / "h.om", root / "data", max_block_duration="162h")
    with PrometheusServer(root / "data") as server:
        server.now = now
        yield server


@pytest.fixture
def api():
    with KubeAPI() as server:
        server.add({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "chat", "namespace": "serving"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "chat"}},
                     "template": {"metadata": {"labels": {"app": "chat"}}, "spec": {"containers": [{"name": "s", "image": "vllm"}]}}},
            "status": {"replicas": 3, "readyReplicas": 3},
        })
        yield server


def make_agent(prom, api, tmp_path, mode: str) -> Agent:
    config = config_from_mapping({
        "prometheus": {"url": prom.url, "retries": 0},
        "agent": {"mode": mode, "history_days": 2.0},
        "node_pools": [{"name": "gpu", "kubernetes": {"method": "none"}}],
        "policies": {"predictive": {"forecaster": "seasonal-naive"}},
        "workloads": [{"name": "chat", "capacity_rps": 4.0, "max_replicas": 40,
                       "metrics": {"namespace": "serving", "queries": {"demand": 'sum(demand_rps{namespace="serving"})'}}}],
    })
    cluster = KubeCluster(kubernetes.client.ApiClient(kubernetes.client.Configuration(host=api.url)), timeout_seconds=5.0)
    return Agent(config, PrometheusSource(config.prometheus), cluster, state_dir=tmp_path, clock=lambda: prom.now)


def scale_writes(api: KubeAPI) -> list:
    return [r for r in api.writes() if "/deployments/chat/scale" in r.path]


def test_auto_scales_ahead_of_the_ramp_it_saw_yesterday(prom, api, tmp_path) -> None:
    agent = make_agent(prom, api, tmp_path, "auto")
    agent.collect()
    assert agent.observed[-1, 0] == BASE  # demand is still low now
    report = agent.decide_and_act()
    (d,) = [d for d in report.decisions if d.kind == "replicas"]
    assert d.desired > 3 and "FORECAST_UP" in {r.code for r in d.reasons}, d.explain()
    writes = scale_writes(api)
    assert len(writes) == 1 and api.get("apps/v1", "deployments", "serving", "chat")["spec"]["replicas"] == d.desired
    annotations = api.get("apps/v1", "deployments", "serving", "chat")["metadata"]["annotations"]
    assert annotations["aiops.dev/decision-id"] == decision_id(d)
    events = [o for o in api.list("v1", "events", "serving") if o.get("reason") == "ScaledAhead"]
    assert events and events[0]["involvedObject"]["name"] == "chat"


def test_dry_run_posts_an_event_and_writes_nothing(prom, api, tmp_path) -> None:
    agent = make_agent(prom, api, tmp_path, "dry-run")
    agent.collect()
    report = agent.decide_and_act()
    assert [d for d in report.decisions if d.kind == "replicas" and d.is_change]
    assert scale_writes(api) == []
    assert [o for o in api.list("v1", "events", "serving") if o.get("reason") == "DryRun"]


def test_a_restarted_agent_neither_loses_nor_repeats_a_decision(prom, api, tmp_path) -> None:
    first = make_agent(prom, api, tmp_path, "auto")
    first.collect()
    (d,) = [d for d in first.decide_and_act().decisions if d.kind == "replicas"]
    # Killed and started again at the same moment: the same state, the same decision id, and
    # the cluster already shows it applied, so the new agent holds instead of writing again.
    second = make_agent(prom, api, tmp_path, "auto")
    second.collect()
    (again,) = [x for x in second.decide_and_act().decisions if x.kind == "replicas"]
    assert decision_id(again) == decision_id(d) and not again.is_change and again.desired == d.desired
    assert len(scale_writes(api)) == 1
    lines = [json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert [(x["id"], x["event"], x.get("outcome")) for x in lines if x["target"] == "chat"] == [
        (decision_id(d), "decided", None), (decision_id(d), "outcome", "applied")]


# -- live: Prometheus scraping a trace-driven exporter --------------------------------------------

LIVE_STEP = 10.0
LIVE_OFFSET = 0.5  # the live exporter serves BASE + this, so the test can tell live samples from history


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """Yesterday's demand backfilled up to two minutes ago, then a live exporter scraped every second
    serving the same trace (the ramp still minutes away) plus LIVE_OFFSET."""
    from tests.prometheus_server import TraceExporter

    root = tmp_path_factory.mktemp("live")
    now = time.time()
    ts = math.floor((now - 120) / LIVE_STEP) * LIVE_STEP - LIVE_STEP * np.arange(int(86_400 * 2.2 / LIVE_STEP))[::-1]
    write_openmetrics(root / "h.om", [HistorySeries("live_rps", {"namespace": "serving", "pod": "chat-0"}, ts, demand(ts, now))])
    backfill(root / "h.om", root / "data", max_block_duration="162h")
    trace = lambda t: float(demand(np.array([t]), now)[0]) + LIVE_OFFSET  # noqa: E731
    with TraceExporter({"live_rps": trace}, labels={"namespace": "serving", "pod": "chat-live"}) as exporter, \
            PrometheusServer(root / "data", scrape_targets=[exporter.target], scrape_interval="1s", lookback_delta="30s") as server:
        server.wait_for_scrape()
        # The agent reads the grid point at or before now: wait for one past the first live scrape.
        time.sleep(max(0.0, math.floor(time.time() / LIVE_STEP) * LIVE_STEP + LIVE_STEP + 1.5 - time.time()))
        yield server


def live_agent(server, api, tmp_path, mode: str) -> Agent:
    config = config_from_mapping({
        "prometheus": {"url": server.url, "retries": 0, "step_seconds": LIVE_STEP},
        "agent": {"mode": mode, "history_days": 2.1},
        "node_pools": [{"name": "gpu", "kubernetes": {"method": "none"}}],
        "policies": {"predictive": {"forecaster": "seasonal-naive"}},
        "workloads": [{"name": "chat", "capacity_rps": 4.0, "max_replicas": 40,
                       "metrics": {"namespace": "serving", "queries": {"demand": 'sum(live_rps{namespace="serving"})'}}}],
    })
    cluster = KubeCluster(kubernetes.client.ApiClient(kubernetes.client.Configuration(host=api.url)), timeout_seconds=5.0)
    return Agent(config, PrometheusSource(config.prometheus), cluster, state_dir=tmp_path)  # the real clock


@pytest.mark.parametrize("mode", ["auto", "dry-run"])
def test_live_scrapes_drive_the_agent_ahead_of_the_ramp(live, api, tmp_path, mode) -> None:
    agent = live_agent(live, api, tmp_path, mode)
    agent.collect()
    assert agent.observed[-1, 0] == BASE + LIVE_OFFSET  # the newest step is a live scrape, before the ramp
    report = agent.decide_and_act()
    assert agent.readiness() == (True, "ok")
    (d,) = [d for d in report.decisions if d.kind == "replicas"]
    # Observed load needs 3 replicas; yesterday's ramp is minutes away and the lead time covers it.
    assert d.desired > 3 and "FORECAST_UP" in {r.code for r in d.reasons}, d.explain()
    deployment = api.get("apps/v1", "deployments", "serving", "chat")
    if mode == "auto":
        assert len(scale_writes(api)) == 1 and deployment["spec"]["replicas"] == d.desired
        assert report.outcomes[decision_id(d)]["outcome"] == "applied"
    else:
        assert scale_writes(api) == [] and deployment["spec"]["replicas"] == 3
        assert [o for o in api.list("v1", "events", "serving") if o.get("reason") == "DryRun"]
