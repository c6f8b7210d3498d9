"""The agent's own observability and its one write endpoint: /metrics, /healthz, /readyz, /approvals.

* ``/metrics``: Prometheus text from a private registry: ``aiops_up``, ``aiops_ready``,
  ``aiops_leader``, ``aiops_decisions_total{workload,reason}``,
  the forecast drift monitor's ``aiops_forecast_error_ratio{workload,lead}`` (live error over the
  backtest's), ``aiops_forecast_live_mae``, ``aiops_forecast_drifting`` and the others of
  :meth:`forecasters.drift.DriftMonitor.metrics`, ``aiops_job_seconds``
  and ``aiops_job_failures_total{job}``, ``aiops_actions_total{kind,outcome}``,
  ``aiops_actions_failed_total``, ``aiops_holds_total``, ``aiops_mode{workload,mode}``,
  ``aiops_retrains_total{trigger}``, ``aiops_backtest_mase{workload}`` and
  ``aiops_findings_total{code}``.
* ``/healthz``: 200 while the process serves (liveness).
* ``/readyz``: 200 when Prometheus answered the last collect, the Kubernetes API its last call
  (a tick's reads, or leader election), and the configured registry model is loaded; else 503
  with every reason (readiness: a not-ready agent holds and acts on nothing).
* ``POST /approvals/<decision id>?expires=<unix>&signature=<hex>``: applies a decision waiting in
  ``recommend`` mode (a GET of the same link shows a page with a confirming POST button). The signature is HMAC-SHA256 over ``"<id>:<expires>"`` with the key in
  ``$AIOPS_APPROVAL_KEY`` (a Kubernetes Secret); expired, forged or unknown ids get 403/404.
* ``POST /slack/interactions``: Slack's interactive buttons (Approve, 👍/👎), verified with
  ``$AIOPS_SLACK_SIGNING_SECRET`` (:func:`aiops.notify.approvals.handle_slack_interaction`).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import parse_qs, urlparse

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


MODES = ("dry-run", "recommend", "auto")


class AgentMetrics:
    """The agent's metrics on a private registry (never the global one)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.up = Gauge("aiops_up", "1 while the agent runs", registry=r)
        self.ready = Gauge("aiops_ready", "1 when Prometheus and the Kubernetes API answered last time", registry=r)
        self.leader = Gauge("aiops_leader", "1 on the replica that acts", registry=r)
        self.decisions = Counter("aiops_decisions", "Decisions by workload and reason code", ["workload", "reason"], registry=r)
        self.job_seconds = Histogram("aiops_job_seconds", "Duration of scheduled jobs", ["job"], registry=r,
                                     buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300))
        self.job_failures = Counter("aiops_job_failures", "Scheduled jobs that raised", ["job"], registry=r)
        self.actions = Counter("aiops_actions", "Actions by kind (replicas/nodes) and outcome", ["kind", "outcome"], registry=r)
        self.actions_failed = Counter("aiops_actions_failed", "Actions the Kubernetes API refused or failed", registry=r)
        self.holds = Counter("aiops_holds", "Ticks that held: metrics or the API unavailable, or not the leader", registry=r)
        self.mode = Gauge("aiops_mode", "1 for each workload's current mode", ["workload", "mode"], registry=r)
        self.retrains = Counter("aiops_retrains", "Retrains by trigger (scheduled, drift)", ["trigger"], registry=r)
        self.backtest_mase = Gauge("aiops_backtest_mase", "MASE of the forecaster on the last retrain's holdout", ["workload"], registry=r)
        self.findings = Counter("aiops_findings", "Anomaly findings by code", ["code"], registry=r)
        self.up.set(1)

    def watch(self, samples: Callable[[], list[tuple[str, dict[str, str], float]]], help_text: Mapping[str, str] | str,
              counter: bool = False) -> None:
        """Export ``(name, labels, value)`` samples kept elsewhere, read at each scrape: the forecast
        drift monitor's gauges (:meth:`forecasters.drift.DriftMonitor.metrics`), the notifier's
        ``aiops_notify_*_total`` counters. ``help_text``: one text, or one per metric name."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        from prometheus_client.registry import Collector

        class Samples(Collector):
            def collect(self):
                by_name: dict[str, list[tuple[dict[str, str], float]]] = {}
                for name, labels, value in samples():
                    by_name.setdefault(name, []).append((labels, value))
                for name, rows in sorted(by_name.items()):
                    keys = sorted({k for labels, _ in rows for k in labels})
                    text = help_text if isinstance(help_text, str) else help_text.get(name, name)
                    family = (CounterMetricFamily(name.removesuffix("_total"), text, labels=keys) if counter
                              else GaugeMetricFamily(name, text, labels=keys))
                    for labels, value in rows:
                        family.add_metric([labels.get(k, "") for k in keys], value)
                    yield family

            def describe(self):
                return []

        self.registry.register(Samples())

    def set_modes(self, modes: Mapping[str, str]) -> None:
        """``aiops_mode{workload,mode}``: 1 for each workload's mode, 0 for the others."""
        for workload, current in modes.items():
            for mode in MODES:
                self.mode.labels(workload, mode).set(1 if mode == current else 0)

    def retrained(self, result: Mapping[str, Any]) -> None:
        self.retrains.labels(result.get("reason", "scheduled").split(":")[0]).inc()
        for workload, mase in (result.get("per_workload_mase") or {}).items():
            if mase is not None and mase == mase:
                self.backtest_mase.labels(workload).set(float(mase))

    def tick(self, report, ratio, names: Sequence[str]) -> None:
        if report.held:
            self.holds.inc()
            return
        for d in report.decisions:
            for reason in d.reasons:
                self.decisions.labels(d.target, reason.code).inc()
        for outcome in report.outcomes.values():
            if outcome.get("outcome") in ("hold",):
                continue
            kind = outcome.get("kind", "replicas")
            result = str(outcome.get("outcome", ""))
            self.actions.labels(kind, result.split(":")[0]).inc()
            if result.startswith("failed"):
                self.actions_failed.inc()

    def timed(self, job: str, fn: Callable[[], Any]) -> Callable[[], Any]:
        """``fn`` wrapped to record its duration and count its failures (then re-raise)."""
        def run():
            start = time.perf_counter()
            try:
                return fn()
            except Exception:
                self.job_failures.labels(job).inc()
                raise
            finally:
                self.job_seconds.labels(job).observe(time.perf_counter() - start)
        return run


def sign(key: bytes, decision_id: str, expires: int) -> str:
    """The approval signature for ``decision_id`` valid until ``expires`` (unix seconds)."""
    return hmac.new(key, f"{decision_id}:{int(expires)}".encode(), hashlib.sha256).hexdigest()


def approval_link(base_url: str, key: bytes, decision_id: str, ttl_seconds: float = 3600.0, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + ttl_seconds)
    return f"{base_url.rstrip('/')}/approvals/{decision_id}?expires={expires}&signature={sign(key, decision_id, expires)}"


def _confirm_page(ident: str, path_and_query: str) -> str:
    safe = html.escape(ident)
    return (f"<!doctype html><html><head><title>Approve {safe}</title></head><body>"
            f"<h1>Approve decision {safe}?</h1><p>This applies the recommended action once.</p>"
            f'<form method="post" action="{html.escape(path_and_query, quote=True)}"><button type="submit">Approve</button></form>'
            "</body></html>")


class Endpoints:
    """The HTTP server: started with :meth:`start`, stopped with :meth:`stop`."""

    def __init__(self, metrics: AgentMetrics, ready: Callable[[], tuple[bool, str]],
                 approve: Callable[[str], dict] | None = None, approval_key: bytes | None = None,
                 address: str = "0.0.0.0", port: int = 8080, clock: Callable[[], float] = time.time,
                 slack: Callable[[dict[str, str], bytes], tuple[int, dict]] | None = None) -> None:
        self.metrics, self.ready, self.approve, self.key, self.clock = metrics, ready, approve, approval_key, clock
        self.slack = slack  # POST /slack/interactions: aiops.notify.approvals.handle_slack_interaction, bound
        endpoints = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # structured logs come from the agent, not per request
                pass

            def _send(self, status: int, body: bytes | str, content_type: str = "application/json") -> None:
                data = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                path = urlparse(self.path).path
                if path == "/metrics":
                    self._send(200, generate_latest(endpoints.metrics.registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._send(200, '{"status": "ok"}')
                elif path == "/readyz":
                    ok, why = endpoints.ready()
                    endpoints.metrics.ready.set(1 if ok else 0)
                    self._send(200 if ok else 503, json.dumps({"ready": ok, "reason": why}))
                elif path.startswith("/approvals/"):
                    # A link button opens this in a browser: confirm with a POST form. A GET never
                    # approves (chat link previews and mail scanners fetch URLs by themselves).
                    self._send(200, _confirm_page(path[len("/approvals/"):], self.path), "text/html; charset=utf-8")
                else:
                    self._send(404, '{"error": "not found"}')

            def do_POST(self) -> None:
                url = urlparse(self.path)
                if url.path == "/slack/interactions" and endpoints.slack is not None:
                    length = int(self.headers.get("Content-Length") or 0)
                    body = self.rfile.read(min(length, 1 << 20))
                    status, answer = endpoints.slack({k: v for k, v in self.headers.items()}, body)
                    self._send(status, json.dumps({k: v for k, v in answer.items() if k != "result"}, default=str))
                    return
                if not url.path.startswith("/approvals/"):
                    self._send(404, '{"error": "not found"}')
                    return
                status, body = endpoints.handle_approval(url.path[len("/approvals/"):], parse_qs(url.query))
                self._send(status, json.dumps(body))

        self.server = ThreadingHTTPServer((address, port), Handler)
        self.port = self.server.server_address[1]
        self.thread: threading.Thread | None = None

    def handle_approval(self, ident: str, query: dict[str, list[str]]) -> tuple[int, dict]:
        if self.approve is None or not self.key:
            return 404, {"error": "approvals are off (no AIOPS_APPROVAL_KEY)"}
        try:
            expires = int(query.get("expires", [""])[0])
        except ValueError:
            return 403, {"error": "missing or bad expires"}
        signature = query.get("signature", [""])[0]
        if not hmac.compare_digest(signature, sign(self.key, ident, expires)):
            return 403, {"error": "bad signature"}
        if expires < self.clock():
            return 403, {"error": "approval link expired"}
        try:
            return 200, self.approve(ident)
        except KeyError as exc:
            return 404, {"error": str(exc.args[0]) if exc.args else "unknown decision"}
        except Exception as exc:  # the API is down: nothing applied, try again later
            return 503, {"error": f"not applied: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"}

    def start(self) -> "Endpoints":
        self.thread = threading.Thread(target=self.server.serve_forever, name="aiops-http", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.thread is not None:
            self.thread.join(timeout=5)
