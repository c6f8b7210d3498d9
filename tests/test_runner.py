"""``aiops run`` as a process: scheduled jobs against a real Prometheus and the API stand-in,
endpoints, JSON logs, a clean stop on SIGTERM; ``aiops check-config``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.kube_api import KubeAPI
from tests.prometheus_server import PrometheusServer, TraceExporter, free_port, requires_prometheus

ROOT = Path(__file__).resolve().parent.parent


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def _config(tmp_path: Path, prom_url: str, port: int, **agent) -> Path:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({
        "prometheus": {"url": prom_url, "retries": 0, "timeout_seconds": 2.0},
        "agent": {"mode": "dry-run", "history_days": 0.05, "collect_interval_seconds": 5, "decide_interval_seconds": 10,
                  "listen_address": "127.0.0.1", "port": port, "state_dir": str(tmp_path / "state"),
                  "leader_election": False, **agent},
        "node_pools": [{"name": "gpu", "kubernetes": {"method": "none"}}],
        "policies": {"predictive": {"forecaster": "naive"}},
        "workloads": [{"name": "chat", "metrics": {"namespace": "serving", "queries": {"demand": "sum(live_demand)"}}}],
    }))
    return cfg


def _kubeconfig(tmp_path: Path, url: str) -> Path:
    kc = tmp_path / "kubeconfig"
    kc.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
        "clusters": [{"name": "stand-in", "cluster": {"server": url}}],
        "users": [{"name": "agent", "user": {"token": "t"}}],
        "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "agent"}}],
    }))
    return kc


@requires_prometheus
@pytest.mark.parametrize("mode", ["dry-run", "auto"])
def test_run_serves_endpoints_logs_json_and_stops_cleanly_on_sigterm(tmp_path, mode) -> None:
    with TraceExporter({"live_demand": lambda t: 8.0}) as exporter, \
            PrometheusServer(tmp_path / "prom", scrape_targets=[exporter.target], scrape_interval="1s") as prom, \
            KubeAPI() as api:
        prom.wait_for_scrape()
        api.add({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "chat", "namespace": "serving"},
                 "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "chat"}},
                          "template": {"metadata": {"labels": {"app": "chat"}}, "spec": {"containers": [{"name": "s", "image": "x"}]}}},
                 "status": {"replicas": 1, "readyReplicas": 1}})
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "aiops", "run", "--config", str(_config(tmp_path, prom.url, port, mode=mode, anomaly_interval_seconds=10)),
                                 "--kubeconfig", str(_kubeconfig(tmp_path, api.url))],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.time() + 60
            while _get(base + "/readyz")[0] != 200:
                assert proc.poll() is None, proc.stderr.read()
                assert time.time() < deadline, "never ready"
                time.sleep(0.5)
            assert _get(base + "/healthz")[0] == 200
            deadline = time.time() + 60
            while not all(f'aiops_job_seconds_count{{job="{job}"}}' in _get(base + "/metrics")[1] for job in ("decide", "scan")):
                assert time.time() < deadline, "the decide and scan jobs did not both run"
                time.sleep(0.5)
            metrics = _get(base + "/metrics")[1]
            assert "aiops_up 1.0" in metrics and 'aiops_decisions_total{reason=' in metrics
            assert f'aiops_mode{{mode="{mode}",workload="chat"}} 1.0' in metrics
            assert _get(base + "/readyz") == (200, '{"ready": true, "reason": "ok"}')
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        assert logs and {"time", "level", "logger", "message"} <= set(logs[0])
        assert any("agent started" in entry["message"] for entry in logs)
        assert logs[-1]["message"] == "stopped"
        journal = tmp_path / "state" / "decisions.jsonl"
        lines = [json.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else []
        scales = [r for r in api.writes() if "/scale" in r.path]
        if mode == "dry-run":  # an Event, never a scale write
            assert not scales and all(line["mode"] == "dry-run" and not line.get("applied") for line in lines)
        else:  # 8 rps on one replica: scaled up through the API, journalled as applied
            assert scales and api.get("apps/v1", "deployments", "serving", "chat")["spec"]["replicas"] > 1
            assert any(line["event"] == "outcome" and line["applied"] for line in lines)


def test_check_config_says_what_the_agent_will_do(tmp_path) -> None:
    cfg = _config(tmp_path, "http://prom:9090", 8080, mode="auto")
    out = subprocess.run([sys.executable, "-m", "aiops", "check-config", "--config", str(cfg)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "workload chat: Deployment serving/chat via scale subresource, mode auto, metrics vllm" in out.stdout
    assert "node pool gpu: nodes ahead via none" in out.stdout and out.stdout.strip().endswith(": ok")


def test_check_config_reports_a_bad_field_on_one_line(tmp_path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("agent: {mode: yolo}\n")
    out = subprocess.run([sys.executable, "-m", "aiops", "check-config", "--config", str(cfg)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "agent.mode: Input should be 'dry-run', 'recommend' or 'auto'" in out.stderr


@pytest.mark.parametrize("missing", ["kubeconfig"])
def test_run_without_a_cluster_is_one_line_and_exit_2(tmp_path, missing, monkeypatch) -> None:
    cfg = _config(tmp_path, "http://127.0.0.1:9", free_port())
    env = {k: v for k, v in os.environ.items() if k not in ("KUBERNETES_SERVICE_HOST", "KUBECONFIG")}
    env["HOME"] = str(tmp_path)  # no ~/.kube/config
    out = subprocess.run([sys.executable, "-m", "aiops", "run", "--config", str(cfg)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().count("\n") == 0 and "error:" in out.stderr
