"""The Prometheus adapter against a real Prometheus server (Debian's, started on 127.0.0.1).

History is written as OpenMetrics and backfilled with promtool before the server starts; a live
exporter, driven by a function of time, is scraped every second. Nothing here is mocked: the
error paths use real loopback servers that hang or answer with an error status.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from aiops.history import pull_demand
from aiops.prometheus import (
    PrometheusRefused,
    PrometheusSource,
    PrometheusUnavailable,
    PromQLError,
)
from simulations.config import PrometheusConfig, config_from_mapping
from simulations.errors import InputError
from tests.prometheus_server import (
    ErrorServer,
    HangingServer,
    HistorySeries,
    PrometheusServer,
    TraceExporter,
    backfill,
    free_port,
    requires_prometheus,
    write_openmetrics,
)

STEP = 60.0
HOURS = 6
N = HOURS * 60
GAP = (200, 230)  # sample indices with no sample: a 30-minute gap
ROOT = Path(__file__).resolve().parent.parent


def _end() -> float:
    """History ends on a whole minute 20 minutes ago: backfilled, older than the server's head, and
    stale (a query's 5-minute lookback no longer reaches it)."""
    return math.floor(time.time() / STEP) * STEP - 1200


def chat_values() -> np.ndarray:
    v = 10.0 + (np.arange(N) % 7) + 0.25
    v[GAP[0]:GAP[1]] = np.nan
    return v


def _histogram_openmetrics(path: Path, ts: np.ndarray) -> None:
    """vLLM's end-to-end latency histogram for pod chat-0: 10 requests/s, 50 % under 0.5 s, 90 %
    under 1 s, all under 2 s, so p95 is 1.5 s (linear within the 1-2 s bucket)."""
    per_minute = {"0.5": 300, "1.0": 540, "2.0": 600, "+Inf": 600}
    lines = ["# TYPE vllm:e2e_request_latency_seconds histogram"]
    labels = 'namespace="serving",pod="chat-0"'
    for k, t in enumerate(ts):
        for le, count in per_minute.items():
            lines.append(f'vllm:e2e_request_latency_seconds_bucket{{{labels},le="{le}"}} {count * (k + 1)} {int(t)}')
        lines.append(f"vllm:e2e_request_latency_seconds_count{{{labels}}} {600 * (k + 1)} {int(t)}")
        lines.append(f"vllm:e2e_request_latency_seconds_sum{{{labels}}} {420.0 * (k + 1)} {int(t)}")
    lines.append("# EOF")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def live() -> TraceExporter:
    state = {"present": True}
    exporter = TraceExporter({
        "live_demand": lambda t: 42.0,
        "live_queue": lambda t: 3.0,
        "flapping_gauge": lambda t: 7.0 if state["present"] else math.nan,
    }, labels={"namespace": "serving", "pod": "chat-0"})
    exporter.state = state
    with exporter.start():
        yield exporter


@pytest.fixture(scope="module")
def prom(tmp_path_factory, live):
    """A real Prometheus with 6 hours of backfilled history and the live exporter scraped at 1 s."""
    root = tmp_path_factory.mktemp("prom")
    end = _end()
    ts = end - STEP * np.arange(N)[::-1]
    chat = chat_values()
    series = [
        HistorySeries("demand_rps", {"namespace": "serving", "pod": "chat-0"}, ts, chat),
        HistorySeries("demand_rps", {"namespace": "serving", "pod": "chat-1"}, ts, np.full(N, 5.0)),
        HistorySeries("demand_rps", {"namespace": "other", "pod": "batch-0"}, ts, np.full(N, 1.5)),
        HistorySeries("vllm:num_requests_waiting", {"namespace": "serving", "pod": "chat-0"}, ts, np.full(N, 3.0)),
        HistorySeries("vllm:num_requests_waiting", {"namespace": "serving", "pod": "chat-1"}, ts, np.full(N, 1.0)),
    ]
    write_openmetrics(root / "history.om", series)
    backfill(root / "history.om", root / "data")
    _histogram_openmetrics(root / "hist.om", ts)
    backfill(root / "hist.om", root / "data")
    server = PrometheusServer(root / "data", scrape_targets=[live.target], scrape_interval="1s")
    server.start()
    server.wait_for_scrape()
    server.end = end
    server.chat = chat
    yield server
    server.stop()


def source(url: str, **settings) -> PrometheusSource:
    return PrometheusSource(PrometheusConfig(**{"retries": 0, "timeout_seconds": 10.0, **settings}), url)


pytestmark = requires_prometheus


# --------------------------------------------------------------------------------------------
# Exact values, gaps, staleness, splitting
# --------------------------------------------------------------------------------------------


def test_a_range_query_returns_exact_values_on_the_step_grid_with_gaps_as_nan(prom) -> None:
    end = prom.end
    start = end - (N - 1) * STEP
    with source(prom.url) as s:
        (result,) = s.range('demand_rps{pod="chat-0"}', start, end, STEP)
    values = result.series.values
    chat = prom.chat
    assert result.series.start == start and result.series.step == STEP and len(values) == N
    assert result.labels["pod"] == "chat-0" and result.labels["__name__"] == "demand_rps"
    seen = ~np.isnan(chat)
    np.testing.assert_array_equal(values[seen], chat[seen])  # exact, sample for sample
    last = chat[GAP[0] - 1]
    # Inside the gap an instant evaluation looks back 5 minutes: the last sample repeats for the
    # first steps, then the series is missing until samples resume.
    assert (values[GAP[0]:GAP[0] + 4] == last).all()
    assert np.isnan(values[GAP[0] + 6:GAP[1]]).all()


def test_a_long_range_is_split_under_the_point_limit_and_joins_exactly(prom) -> None:
    end = prom.end
    start = end - (N - 1) * STEP
    with source(prom.url) as whole, source(prom.url, max_points_per_query=47) as split:
        a = whole.range_series("chat", 'sum(demand_rps{namespace="serving"})', start, end, STEP)
        b = split.range_series("chat", 'sum(demand_rps{namespace="serving"})', start, end, STEP)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.key == "chat" and np.nansum(a.values) > 0


def test_more_than_11000_points_works_though_prometheus_refuses_them_in_one_query(prom) -> None:
    end = math.floor(time.time())
    start = end - 12_000
    raw = requests.get(f"{prom.url}/api/v1/query_range",
                       params={"query": "vector(1)", "start": start, "end": end, "step": "1s"}, timeout=10)
    assert raw.status_code == 400 and "11,000" in raw.json()["error"]
    with source(prom.url) as s:
        (result,) = s.range("vector(1)", start, end, 1.0)
    assert len(result.series.values) == 12_001 and (result.series.values == 1.0).all()


def test_an_instant_query_sees_live_samples_and_nothing_once_a_series_goes_stale(prom, live) -> None:
    with source(prom.url) as s:
        (sample,) = s.instant('live_demand{namespace="serving"}')
        assert sample.value == 42.0 and sample.labels["pod"] == "chat-0"
        assert abs(sample.timestamp - time.time()) < 5
        assert [x.value for x in s.instant("flapping_gauge")] == [7.0]
        live.state["present"] = False  # the exporter stops exposing it: Prometheus marks it stale
        try:
            deadline = time.time() + 20
            while s.instant("flapping_gauge") and time.time() < deadline:
                time.sleep(0.5)
            assert s.instant("flapping_gauge") == []
        finally:
            live.state["present"] = True
        # Backfilled history older than the 5-minute lookback is not "now" either.
        assert s.instant('demand_rps{pod="chat-0"}') == []
        assert [x.value for x in s.instant('demand_rps{pod="chat-0"}', at=prom.end)] == [prom.chat[-1]]


def test_vllm_catalogue_queries_read_a_real_histogram(prom) -> None:
    from aiops.queries import workload_queries
    from simulations.config import WorkloadMetricsConfig

    q = workload_queries("chat", WorkloadMetricsConfig(namespace="serving"), "2m")
    at = prom.end - 30 * STEP
    with source(prom.url) as s:
        (demand,) = s.instant(q["demand"].promql, at=at)
        (p95,) = s.instant(q["latency_p95"].promql, at=at)
        (queue,) = s.instant(q["queue_depth"].promql, at=at)
    assert demand.value == pytest.approx(10.0)
    assert p95.value == pytest.approx(1.5)
    assert queue.value == 4.0  # summed over the workload's two pods


# --------------------------------------------------------------------------------------------
# Failures: bad PromQL, a server that hangs, one that is killed, error statuses
# --------------------------------------------------------------------------------------------


def test_bad_promql_is_one_error_naming_the_query_and_the_server_s_message(prom) -> None:
    with source(prom.url) as s:
        with pytest.raises(PromQLError) as parse:
            s.instant("sum(rate(demand_rps[5m])")
        with pytest.raises(PromQLError) as execution:  # valid syntax, refused when evaluated (422)
            s.instant("demand_rps + on() demand_rps", at=prom.end)
    assert parse.value.status == 400 and "parse error" in parse.value.message
    assert "sum(rate(demand_rps[5m])" in str(parse.value) and prom.url in str(parse.value)
    assert execution.value.status == 422 and "many-to-many" in execution.value.message
    assert "\n" not in str(parse.value)


def test_a_query_expected_to_be_one_series_names_the_extra_ones(prom) -> None:
    with source(prom.url) as s, pytest.raises(PromQLError, match="gave 2 series where one was expected"):
        s.range_series("chat", 'demand_rps{namespace="serving"}', prom.end - 600, prom.end, STEP)


def test_a_hanging_server_times_out_with_a_clear_error() -> None:
    with HangingServer() as hanging, source(hanging.url, timeout_seconds=0.5, retries=1) as s:
        with pytest.raises(PrometheusUnavailable, match=r"timed out after 0.5 s \(1 retries\)"):
            s.instant("up")


def test_server_errors_are_retried_with_backoff_then_succeed() -> None:
    ok = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"job": "x"}, "value": [1700000000.0, "5"]}]}}
    with ErrorServer([503, 429, 200], ok, headers={"Retry-After": "0"}) as server:
        with source(server.url, retries=3, backoff_seconds=0.0) as s:
            (sample,) = s.instant("up")
    assert sample.value == 5.0 and len(server.requests) == 3


def test_server_errors_after_every_retry_are_unavailable_with_the_status() -> None:
    body = {"status": "error", "errorType": "unavailable", "error": "overloaded"}
    with ErrorServer(503, body) as server, source(server.url, retries=2, backoff_seconds=0.0) as s:
        with pytest.raises(PrometheusUnavailable, match="HTTP 503: unavailable: overloaded after 2 retries"):
            s.instant("up")
        assert len(server.requests) == 3


def test_refused_credentials_say_so() -> None:
    with ErrorServer(401, "Unauthorized") as server, source(server.url) as s:
        with pytest.raises(PrometheusRefused, match="HTTP 401"):
            s.instant("up")


def test_auth_headers_and_tenant_reach_the_server(tmp_path, monkeypatch) -> None:
    ok = {"status": "success", "data": {"resultType": "vector", "result": []}}
    token = tmp_path / "token"
    token.write_text("first\n")
    with ErrorServer(200, ok) as server:
        with source(server.url, bearer_token_file=str(token), headers={"X-Scope-OrgID": "team-a"}) as s:
            s.instant("up")
            token.write_text("rotated\n")  # a projected service-account token rotates
            s.instant("up")
        monkeypatch.setenv("PROM_PASSWORD", "s3cret")
        with source(server.url, basic_auth_username="agent", basic_auth_password_env="PROM_PASSWORD") as s:
            s.instant("up")
    first, second, basic = (r["headers"] for r in server.requests)
    assert first["Authorization"] == "Bearer first" and first["X-Scope-OrgID"] == "team-a"
    assert first["Accept-Encoding"] == "identity"  # gzip only when compress_responses asks for it
    assert second["Authorization"] == "Bearer rotated"
    assert basic["Authorization"] == "Basic YWdlbnQ6czNjcmV0"  # agent:s3cret


def test_missing_secrets_and_files_are_clear_errors(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    with pytest.raises(InputError, match="prometheus.bearer_token_env: environment variable NO_SUCH_TOKEN is not set"):
        source("http://127.0.0.1:9", bearer_token_env="NO_SUCH_TOKEN")
    with pytest.raises(InputError, match="prometheus.ca_file: no such file"):
        source("http://127.0.0.1:9", ca_file=str(tmp_path / "ca.pem"))
    with pytest.raises(InputError, match="no Prometheus URL"):
        PrometheusSource(PrometheusConfig())
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    assert source("https://127.0.0.1:9", ca_file=str(tmp_path / "ca.pem"))._session.verify == str(tmp_path / "ca.pem")


# --------------------------------------------------------------------------------------------
# History for training and backtests; check-prometheus
# --------------------------------------------------------------------------------------------


def _config(url: str, demand: str, **extra) -> dict:
    return {"prometheus": {"url": url, "retries": 0},
            "workloads": [{"name": "chat", "metrics": {"namespace": "serving", "queries": {"demand": demand, **extra}}}]}


def test_pull_demand_gives_a_trace_with_the_gap_kept(prom) -> None:
    config = config_from_mapping(_config(prom.url, 'sum(demand_rps{namespace="serving",pod="chat-0"})'))
    with source(prom.url) as s:
        trace = pull_demand(s, config, ["chat"], days=HOURS / 24, end=prom.end)
    values = np.asarray(trace.values)[:, 0]
    assert trace.workloads == ("chat",) and trace.step_seconds == STEP and len(values) == N
    assert trace.start == prom.end - (N - 1) * STEP
    seen = ~np.isnan(prom.chat)
    np.testing.assert_array_equal(values[seen], prom.chat[seen])
    assert np.isnan(values[GAP[0] + 6:GAP[1]]).all()


def test_pull_demand_without_data_names_the_workload_and_its_query(prom) -> None:
    config = config_from_mapping(_config(prom.url, 'sum(demand_rps{namespace="nowhere"})'))
    with source(prom.url) as s, pytest.raises(InputError, match="no demand data for workload 'chat'.*namespace=\"nowhere\""):
        pull_demand(s, config, ["chat"], days=0.1, end=prom.end)


def _wait_for_live(s: PrometheusSource, timeout: float = 30.0) -> None:
    """Until the live exporter's latest scrape is queryable (the checks below read it)."""
    deadline = time.time() + timeout
    while not s.instant('live_demand{namespace="serving"}'):
        assert time.time() < deadline, "the live exporter's samples never showed up"
        time.sleep(0.5)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aiops", *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_backtest_pulls_history_from_prometheus(prom, tmp_path) -> None:
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(json.dumps(_config(prom.url, 'sum(demand_rps{namespace="serving",pod="chat-0"})')))
    out = _run("backtest", "--prometheus", prom.url, "--config", str(cfg), "--days", "0.25", "--workload", "chat",
               "--horizon", "10m", "--models", "naive", "--origins", "4", "--json", str(tmp_path / "bt.json"))
    assert out.returncode == 0, out.stderr
    doc = json.loads((tmp_path / "bt.json").read_text())
    assert "chat" in out.stdout and doc["results"]


def test_check_prometheus_prints_the_table_and_fails_on_errors(prom, tmp_path) -> None:
    with source(prom.url) as s:
        _wait_for_live(s)
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(json.dumps(_config(prom.url, 'sum(live_demand{namespace="serving"})',
                                      latency_p95="histogram_quantile(0.95,", queue_depth="sum(live_queue{$selector})")))
    out = _run("check-prometheus", "--config", str(cfg), "--window", "10m", "--json", str(tmp_path / "c.json"))
    assert out.returncode == 1, out.stdout + out.stderr
    rows = {(c["target"], c["metric"]): c for c in json.loads((tmp_path / "c.json").read_text())["checks"]}
    assert rows[("chat", "demand")]["status"] == "ok" and rows[("chat", "demand")]["series"] == 1
    assert rows[("chat", "demand")]["newest_age_seconds"] <= 120
    assert rows[("chat", "queue_depth")]["status"] == "ok"  # an override with the workload's $selector
    assert 'live_queue{namespace="serving",pod=~"chat-.*"}' in rows[("chat", "queue_depth")]["query"]
    assert rows[("chat", "latency_p95")]["status"] == "error" and "parse error" in rows[("chat", "latency_p95")]["error"]
    assert rows[("chat", "gpu_utilization")]["status"] == "no data"
    for words in ("target", "newest", "demand", "queue_depth", "no data", "FAILED", "latency_p95"):
        assert words in out.stdout, out.stdout


def test_check_prometheus_passes_when_demand_is_fresh_and_nothing_errors(prom, tmp_path) -> None:
    with source(prom.url) as s:
        _wait_for_live(s)
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(json.dumps(_config(prom.url, 'sum(live_demand{namespace="serving"})')))
    out = _run("check-prometheus", "--config", str(cfg), "--window", "10m")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 error of" in out.stdout


def test_check_prometheus_on_history_that_stopped_says_stale(prom, tmp_path) -> None:
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(json.dumps(_config(prom.url, 'sum(demand_rps{namespace="serving"})')))
    out = _run("check-prometheus", "--config", str(cfg), "--window", "1h", "--json", str(tmp_path / "c.json"))
    rows = {(c["target"], c["metric"]): c for c in json.loads((tmp_path / "c.json").read_text())["checks"]}
    assert rows[("chat", "demand")]["status"] == "stale" and out.returncode == 1


def test_check_prometheus_against_nothing_is_one_line_and_exit_2() -> None:
    out = _run("check-prometheus", "--prometheus", f"http://127.0.0.1:{free_port()}")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "unreachable: connection refused" in out.stderr


def test_train_pulls_history_from_prometheus_and_registers_a_model(prom, tmp_path) -> None:
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(json.dumps(_config(prom.url, 'sum(demand_rps{namespace="serving",pod="chat-0"})')))
    out = _run("train", "--prometheus", prom.url, "--config", str(cfg), "--days", "0.25", "--workload", "chat",
               "--model", "naive", "--horizon", "10m", "--holdout", "1h", "--registry", str(tmp_path / "registry"))
    assert out.returncode == 0, out.stderr
    assert "registered naive" in out.stdout and "prometheus" in out.stdout


def test_prometheus_killed_mid_test_is_reported_unavailable_then_recovers(prom) -> None:
    with source(prom.url) as s:
        assert s.ready()
        prom.kill()
        try:
            with pytest.raises(PrometheusUnavailable, match="unreachable: connection refused"):
                s.instant("vector(1)")
            assert not s.ready()
        finally:
            prom.restart()
        assert s.ready()
        # The backfilled history survived the kill.
        assert [x.value for x in s.instant('demand_rps{pod="chat-0"}', at=prom.end)] == [prom.chat[-1]]
        prom.wait_for_scrape()
        _wait_for_live(s)
