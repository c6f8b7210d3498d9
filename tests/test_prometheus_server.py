"""The Prometheus test harness against the real server: backfill, live scrapes, kill/restart, misbehaving servers."""

from __future__ import annotations

import math
import socket
import time
from types import SimpleNamespace

import numpy as np
import pytest
import requests

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

pytestmark = requires_prometheus

STEP = 60
GAP = slice(60, 80)  # 20 missing one-minute samples in gauge "demand_rps"
ODD_LABEL = 'say "hi"\\n\nnext line'  # quote, backslash, line feed: escaped per OpenMetrics


def _values(result: list[dict]) -> dict[float, float]:
    assert len(result) == 1, result
    return {float(t): float(v) for t, v in result[0]["values"]}


# --------------------------------------------------------------------------------------------------------------
# OpenMetrics writing (no server)
# --------------------------------------------------------------------------------------------------------------


def test_write_openmetrics_text(tmp_path):
    ts = np.array([20.0, 10.0, 30.0, 40.0])  # unsorted on purpose: written sorted
    series = [
        HistorySeries("vllm:num_requests_waiting", {"pod": "p0"}, ts, np.array([2.0, 1.0, np.nan, 4.0])),
        HistorySeries("requests", {"pod": "p0"}, ts, np.array([1.5, 1.25, math.inf, 0.1]), kind="counter"),
        HistorySeries("vllm:num_requests_waiting", {"pod": ODD_LABEL}, ts[:1], np.array([7.0])),
        HistorySeries("requests_total", {"pod": "p1"}, np.array([1.5, 2.25]), np.array([1.0, 2.0]), kind="counter"),
    ]
    n = write_openmetrics(tmp_path / "h.om", series)
    assert n == 3 + 4 + 1 + 2
    assert (tmp_path / "h.om").read_text().splitlines() == [
        "# TYPE vllm:num_requests_waiting gauge",
        'vllm:num_requests_waiting{pod="p0"} 1 10',
        'vllm:num_requests_waiting{pod="p0"} 2 20',
        'vllm:num_requests_waiting{pod="p0"} 4 40',
        'vllm:num_requests_waiting{pod="say \\"hi\\"\\\\n\\nnext line"} 7 20',
        "# TYPE requests counter",
        'requests_total{pod="p0"} 1.25 10',
        'requests_total{pod="p0"} 1.5 20',
        'requests_total{pod="p0"} +Inf 30',
        'requests_total{pod="p0"} 0.1 40',
        'requests_total{pod="p1"} 1 1.5005',  # 1.5 s: promtool stores int64(1.5005 * 1000) == 1500 ms
        'requests_total{pod="p1"} 2 2.2505',
        "# EOF",
    ]


def test_write_openmetrics_rejects_conflicts(tmp_path):
    ts, v = np.array([1.0]), np.array([1.0])
    with pytest.raises(ValueError, match="both a gauge and a counter"):
        write_openmetrics(tmp_path / "a.om", [HistorySeries("x", {}, ts, v), HistorySeries("x_total", {}, ts, v, kind="counter")])
    with pytest.raises(ValueError, match="duplicate series"):
        write_openmetrics(tmp_path / "b.om", [HistorySeries("x", {"a": "1"}, ts, v), HistorySeries("x", {"a": "1"}, ts, v)])
    with pytest.raises(ValueError, match="duplicate timestamps"):
        write_openmetrics(tmp_path / "c.om", [HistorySeries("x", {}, np.array([1.0, 1.0]), np.array([1.0, 2.0]))])
    with pytest.raises(ValueError, match="invalid label name"):
        HistorySeries("x", {"bad-name": "1"}, ts, v)
    with pytest.raises(ValueError, match="invalid metric name"):
        HistorySeries("9x", {}, ts, v)


def test_backfill_reports_promtool_errors(tmp_path):
    bad = tmp_path / "bad.om"
    bad.write_text("# TYPE x gauge\nx{ 1 10\n# EOF\n")
    with pytest.raises(RuntimeError, match="promtool backfill .* failed"):
        backfill(bad, tmp_path / "data")


def test_start_failure_reports_the_log(tmp_path):
    srv = PrometheusServer(tmp_path / "data", extra_args=["--no-such-flag"])
    with pytest.raises(RuntimeError, match="no-such-flag"):
        srv.start(timeout=10)
    srv.stop()
    assert not srv.running


# --------------------------------------------------------------------------------------------------------------
# Backfilled history
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    root = tmp_path_factory.mktemp("history")
    end = (int(time.time()) // STEP) * STEP - 3600  # ending about an hour ago
    ts = np.arange(end - 3 * 3600, end + 1, STEP).astype(float)  # 181 samples over 3 hours
    rng = np.random.default_rng(7)
    demand = rng.normal(100.0, 30.0, ts.size)  # full-precision floats: exact round trip asserted
    demand[GAP] = np.nan
    waiting = rng.integers(0, 50, ts.size).astype(float)
    waiting[5] = 0.1 + 0.2  # 0.30000000000000004
    counter = 1000.0 + 5.0 * np.arange(ts.size)  # +5 per minute: rate 5/60
    series = [
        HistorySeries("demand_rps", {"workload": "chat", "note": ODD_LABEL}, ts, demand),
        HistorySeries("vllm:num_requests_waiting", {"model": "llama"}, ts, waiting),
        HistorySeries("requests_total", {"workload": "chat"}, ts, counter, kind="counter"),
    ]
    n = write_openmetrics(root / "history.om", series)
    assert n == 3 * ts.size - (GAP.stop - GAP.start)
    backfill(root / "history.om", root / "data")
    return SimpleNamespace(data_dir=root / "data", ts=ts, demand=demand, waiting=waiting, counter=counter)


@pytest.fixture(scope="module")
def backfilled(history):
    with PrometheusServer(history.data_dir) as srv:
        yield srv


def test_backfilled_values_are_exact(backfilled, history):
    ts = history.ts
    waiting = _values(backfilled.query_range('vllm:num_requests_waiting{model="llama"}', ts[0], ts[-1], STEP))
    assert waiting == dict(zip(ts.tolist(), history.waiting.tolist()))
    assert waiting[ts[5]] == 0.1 + 0.2

    result = backfilled.query_range("demand_rps", ts[0], ts[-1], STEP)
    assert result[0]["metric"] == {"__name__": "demand_rps", "workload": "chat", "note": ODD_LABEL}
    demand = _values(result)
    present = ~np.isnan(history.demand)
    for t, v in zip(ts[present].tolist(), history.demand[present].tolist()):
        assert demand[t] == v  # exact, at every sample time


def test_gap_repeats_last_sample_within_lookback_then_is_missing(backfilled, history):
    ts = history.ts
    demand = _values(backfilled.query_range("demand_rps", ts[0], ts[-1], STEP))
    last = ts[GAP.start - 1]
    for k in range(1, GAP.stop - GAP.start + 1):
        t = last + k * STEP
        if k * STEP <= 300:  # 5 m lookback; 2.42 includes its left end (t - 5m == last)
            assert demand[t] == history.demand[GAP.start - 1], k
        else:
            assert t not in demand, k
    assert demand[ts[GAP.stop]] == history.demand[GAP.stop]


def test_counter_rate(backfilled, history):
    ts = history.ts
    rate = _values(backfilled.query_range('rate(requests_total{workload="chat"}[5m])', ts[10], ts[-1], STEP))
    assert len(rate) == ts.size - 10
    assert all(v == pytest.approx(5.0 / 60.0, rel=1e-12) for v in rate.values())
    (point,) = backfilled.query("increase(requests_total[1h])", time=ts[-1])
    assert float(point["value"][1]) == pytest.approx(300.0)


def test_kill_then_restart_keeps_backfilled_data(backfilled, history):
    ts = history.ts
    before = backfilled.query_range("demand_rps", ts[0], ts[-1], STEP)
    pid = backfilled.pid
    backfilled.kill()
    assert not backfilled.running
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{backfilled.url}/api/v1/query", params={"query": "up"}, timeout=2)
    backfilled.restart()
    assert backfilled.running and backfilled.pid != pid
    assert backfilled.url.endswith(f":{backfilled.port}")
    assert backfilled.query_range("demand_rps", ts[0], ts[-1], STEP) == before


# --------------------------------------------------------------------------------------------------------------
# Live scrapes
# --------------------------------------------------------------------------------------------------------------


def clock_mod(t: float) -> float:
    return t % 1000.0


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    toggle = {"on": True}
    plain = TraceExporter(
        {
            "const_metric": lambda t: 42.0,
            "clock_seconds": lambda t: t,
            "absent_metric": lambda t: math.nan,
            "toggled_metric": lambda t: 1.0 if toggle["on"] else math.nan,
        },
        labels={"workload": "w1"},
    )
    stamped = TraceExporter({"stamped_clock": clock_mod}, labels={"workload": "w2"}, timestamps=True)
    with plain, stamped:
        srv = PrometheusServer(tmp_path_factory.mktemp("live") / "data", scrape_targets=[plain.target, stamped.target])
        with srv:
            srv.wait_for_scrape()
            yield SimpleNamespace(server=srv, plain=plain, stamped=stamped, toggle=toggle)


def test_live_constant_and_absent(live):
    (point,) = live.server.query("const_metric")
    assert point["metric"] == {"__name__": "const_metric", "job": "trace", "instance": live.plain.target, "workload": "w1"}
    assert float(point["value"][1]) == 42.0
    assert live.server.query("absent_metric") == []
    assert {r["metric"]["instance"] for r in live.server.query("up")} == {live.plain.target, live.stamped.target}


def test_live_value_follows_the_scrape_time(live):
    time.sleep(1.5)  # at least two scrapes
    (series,) = live.server.query("clock_seconds[10s]")
    assert len(series["values"]) >= 2
    for t, v in series["values"]:
        assert 0.0 <= float(v) - float(t) < 1.0  # f(t) = t, read just after Prometheus stamps the scrape


def test_live_explicit_timestamps_are_exact(live):
    time.sleep(1.5)
    (series,) = live.server.query("stamped_clock[10s]")
    assert len(series["values"]) >= 2
    for t, v in series["values"]:
        assert float(v) == clock_mod(float(t))


def test_live_series_goes_stale_when_absent(live):
    assert len(live.server.query("toggled_metric")) == 1
    live.toggle["on"] = False
    try:
        deadline = time.monotonic() + 10
        while live.server.query("toggled_metric"):  # staleness marker, long before the 5 m lookback
            assert time.monotonic() < deadline, "toggled_metric never went stale"
            time.sleep(0.2)
    finally:
        live.toggle["on"] = True


def test_live_samples_survive_kill_and_restart(live):
    srv = live.server
    t_before = time.time()
    (series,) = srv.query("const_metric[30s]", time=t_before)
    before = series["values"]
    assert before
    srv.kill()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{srv.url}/-/ready", timeout=2)
    srv.restart()
    (series,) = srv.query("const_metric[30s]", time=t_before)  # replayed from the WAL
    assert series["values"] == before
    srv.wait_for_scrape()


# --------------------------------------------------------------------------------------------------------------
# Misbehaving servers
# --------------------------------------------------------------------------------------------------------------


def test_hanging_server_times_out_clients():
    with HangingServer() as hang:
        t0 = time.monotonic()
        with pytest.raises(requests.exceptions.Timeout):
            requests.get(f"{hang.url}/api/v1/query", params={"query": "up"}, timeout=0.5)
        assert time.monotonic() - t0 < 3.0


def test_error_server_statuses_and_recorded_requests():
    body = {"status": "error", "errorType": "unavailable", "error": "try later"}
    with ErrorServer([503, 200], body, headers={"Retry-After": "1"}) as err:
        auth = {"Authorization": "Bearer s3cret"}
        first = requests.get(f"{err.url}/api/v1/query", params={"query": "up"}, headers=auth, timeout=5)
        second = requests.post(f"{err.url}/api/v1/query_range", data={"query": "rate(x[5m])", "step": "60"}, timeout=5)
        third = requests.get(err.url, timeout=5)
    assert (first.status_code, second.status_code, third.status_code) == (503, 200, 200)
    assert first.json() == body and first.headers["Retry-After"] == "1"
    assert first.headers["Content-Type"] == "application/json"
    r0, r1, _ = err.requests
    assert (r0["method"], r0["path"], r0["query"]) == ("GET", "/api/v1/query", {"query": "up"})
    assert r0["headers"]["authorization"] == "Bearer s3cret"
    assert (r1["method"], r1["path"], r1["form"]) == ("POST", "/api/v1/query_range", {"query": "rate(x[5m])", "step": "60"})


def test_error_server_text_body_and_per_request_bodies():
    with ErrorServer(429, "slow down", headers={"Retry-After": "7"}) as err:
        r = requests.get(err.url, timeout=5)
    assert (r.status_code, r.text, r.headers["Retry-After"]) == (429, "slow down", "7")
    with ErrorServer([500, 200], {}, bodies=[{"n": 1}, {"n": 2}]) as err:
        assert [requests.get(err.url, timeout=5).json()["n"] for _ in range(3)] == [1, 2, 2]


def test_free_port_is_bindable():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
