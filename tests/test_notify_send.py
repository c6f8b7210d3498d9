"""Senders against a real local HTTP receiver (http.server on 127.0.0.1, port 0): our signed webhook
with its retries, Slack's incoming webhook and Web API (chat.postMessage then chat.update), and
Alertmanager. Sleeping is injected and recorded, so no test waits for a Retry-After."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from aiops.notify import (
    AlertmanagerSender,
    ChannelConfig,
    DeliveryError,
    Notification,
    Notifier,
    NotifierConfig,
    SlackBotSender,
    SlackWebhookSender,
    WebhookSender,
    deliver,
    secret_from_env,
    senders_from_env,
    verify_webhook,
)
from aiops.notify.senders import safe_url
from tests.test_notify_render import T0, resolved_incident, surge_incident, webhook_schema, xid79_incident

SECRET = "s3cr3t-webhook-key"


class Receiver:
    """Records every request; answers from a script of ``(status, headers, body)`` (then 200), and
    plays Slack's Web API on ``/api/chat.*``."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.script: list[tuple[int, dict, str]] = []
        self.lock = threading.Lock()
        self.ts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    status, headers, text = receiver.answer(self.path, body)
                data = text.encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, path: str, body: bytes) -> tuple[int, dict, str]:
        if self.script:
            return self.script.pop(0)
        if path.startswith("/api/chat."):
            sent = json.loads(body)
            if path == "/api/chat.postMessage":
                self.ts += 1
                ts = f"1714564800.{self.ts:06d}"
            else:
                ts = sent["ts"]
            return 200, {"Content-Type": "application/json"}, json.dumps({"ok": True, "channel": "C0ALERTS", "ts": ts})
        return 200, {"Content-Type": "text/plain"}, "ok"

    def json(self, n: int):
        return json.loads(self.requests[n]["body"])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


class Sleeps(list):
    """An injectable sleep that records what was asked (and does not wait)."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def opened(incident, channel="webhook") -> Notification:
    return Notification(channel=channel, kind="incident", event="opened", key=incident.fingerprint, at=T0,
                        incidents=(incident,), changes=((incident.fingerprint, "opened"),))


def webhook(receiver, sleeps, **kwargs) -> WebhookSender:
    return WebhookSender(receiver.url("/hooks/aiops"), SECRET, sleep=sleeps, clock=lambda: T0 + 5, **kwargs)


# -- our webhook --------------------------------------------------------------------------------------------


def test_webhook_posts_the_documented_json_signed_with_hmac(receiver):
    delivery = webhook(receiver, Sleeps()).send(opened(surge_incident()))
    assert delivery.status == 200 and delivery.attempts == 1 and len(receiver.requests) == 1
    request = receiver.requests[0]
    body, headers = request["body"], request["headers"]
    assert request["path"] == "/hooks/aiops" and headers["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert not list(webhook_schema().iter_errors(payload))
    assert payload["event"] == "opened" and payload["incident_id"] == surge_incident().id
    # the signature, recomputed here from the documented recipe
    timestamp = headers["X-AIOps-Timestamp"]
    assert timestamp == str(int(T0 + 5))
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert headers["X-AIOps-Signature"] == f"sha256={expected}"
    assert verify_webhook(SECRET, headers, body, now=T0 + 10)
    assert not verify_webhook("wrong", headers, body, now=T0 + 10)
    assert not verify_webhook(SECRET, headers, body + b" ", now=T0 + 10)
    assert not verify_webhook(SECRET, headers, body, now=T0 + 3600)  # a replay an hour later
    assert headers["X-AIOps-Event"] == "opened" and len(headers["X-AIOps-Delivery"]) == 32


def test_webhook_retries_a_500_and_delivers_once(receiver):
    receiver.script = [(500, {}, "boom")]
    sleeps = Sleeps()
    delivery = webhook(receiver, sleeps).send(opened(xid79_incident()))
    assert [r["path"] for r in receiver.requests] == ["/hooks/aiops"] * 2
    assert delivery.status == 200 and delivery.attempts == 2
    first, second = (r["headers"] for r in receiver.requests)
    assert first["X-AIOps-Delivery"] == second["X-AIOps-Delivery"]  # the receiver can drop a repeat


def test_webhook_honours_429_retry_after(receiver):
    receiver.script = [(429, {"Retry-After": "1"}, "slow down")]
    sleeps = Sleeps()
    delivery = webhook(receiver, sleeps).send(opened(xid79_incident()))
    assert sleeps == [1.0]  # waited what the server asked, once
    assert len(receiver.requests) == 2 and delivery.status == 200


def test_webhook_caps_a_long_retry_after(receiver):
    receiver.script = [(503, {"Retry-After": "3600"}, "")]
    sleeps = Sleeps()
    webhook(receiver, sleeps, max_retry_after=30).send(opened(xid79_incident()))
    assert sleeps == [30.0]


def test_webhook_does_not_retry_a_permanent_4xx_and_says_so_in_one_line(receiver):
    receiver.script = [(400, {}, "bad payload\nsecond line")]
    sleeps = Sleeps()
    with pytest.raises(DeliveryError) as caught:
        webhook(receiver, sleeps).send(opened(xid79_incident()))
    message = str(caught.value)
    assert len(receiver.requests) == 1 and sleeps == []
    assert "\n" not in message and SECRET not in message
    assert f"127.0.0.1:{receiver.port}/hooks/aiops" in message and "HTTP 400" in message and "not retried" in message
    assert caught.value.status == 400


def test_webhook_gives_up_after_n_attempts_with_backoff_naming_the_last_status(receiver):
    receiver.script = [(502, {}, "")] * 2 + [(503, {}, "down")] * 2 + [(200, {}, "ok")]
    sleeps = Sleeps()
    with pytest.raises(DeliveryError) as caught:
        webhook(receiver, sleeps, attempts=4, backoff=0.5).send(opened(xid79_incident()))
    assert len(receiver.requests) == 4
    assert sleeps == [1.0, 2.0]  # exponential: the first retry at once, then 0.5 * 2**n
    message = str(caught.value)
    assert "gave up after 4 attempts" in message and "HTTP 503" in message and "\n" not in message


def test_webhook_connection_refused_is_retried_then_one_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps = Sleeps()
    sender = WebhookSender(f"http://user:pw@127.0.0.1:{port}/hook?token=abc", SECRET, attempts=3, sleep=sleeps)
    with pytest.raises(DeliveryError) as caught:
        sender.send(opened(xid79_incident()))
    message = str(caught.value)
    assert f"http://127.0.0.1:{port}/hook" in message and "gave up after 3 attempts" in message
    assert "pw" not in message and "token" not in message and SECRET not in message and "\n" not in message
    assert len(sleeps) == 1  # backoff before the third attempt (the second goes at once)
    assert SECRET not in repr(sender)


def test_safe_url_hides_secrets():
    assert safe_url("https://hooks.slack.com/services/T000/B000/XXXX") == "https://hooks.slack.com/services/…"
    assert safe_url("https://u:p@example.com:8443/a/b?key=1#f") == "https://example.com:8443/a/b"


# -- the notifier's decisions, delivered --------------------------------------------------------------------


def test_two_identical_detections_reach_the_receiver_once_and_resolve_once(receiver):
    config = NotifierConfig(channels=(ChannelConfig("webhook", group=False),), resolve_after=300)
    notifier = Notifier(config)
    sender = webhook(receiver, Sleeps())
    incident = surge_incident()
    deliver(notifier, notifier.observe([incident], T0), [sender])
    deliver(notifier, notifier.observe([incident], T0 + 30), [sender])
    assert [receiver.json(i)["event"] for i in range(len(receiver.requests))] == ["opened"]
    deliver(notifier, notifier.observe([], T0 + 400), [sender])
    events = [receiver.json(i)["event"] for i in range(len(receiver.requests))]
    assert events == ["opened", "resolved"]
    assert receiver.json(1)["status"] == "resolved" and receiver.json(1)["incident_id"] == incident.id


def test_a_failed_delivery_is_counted_and_tried_again_later(receiver):
    config = NotifierConfig(channels=(ChannelConfig("webhook", group=False),), retry_failed_after=60)
    notifier = Notifier(config)
    receiver.script = [(400, {}, "no")]
    logged = []
    incident = xid79_incident()
    results = deliver(notifier, notifier.observe([incident], T0), [webhook(receiver, Sleeps())], log=logged.append)
    assert isinstance(results[0], DeliveryError) and len(logged) == 1
    assert notifier.count("aiops_notify_deliveries_total", outcome="failed") == 1
    deliver(notifier, notifier.observe([incident], T0 + 30), [webhook(receiver, Sleeps())])
    assert len(receiver.requests) == 1  # not yet
    deliver(notifier, notifier.observe([incident], T0 + 61), [webhook(receiver, Sleeps())])
    assert len(receiver.requests) == 2 and receiver.json(1)["event"] == "opened"


# -- Slack ---------------------------------------------------------------------------------------------------


def test_slack_incoming_webhook_posts_blocks(receiver):
    sender = SlackWebhookSender(receiver.url("/services/T000/B000/XXXX"))
    delivery = sender.send(opened(xid79_incident(), channel="slack"))
    assert delivery.status == 200
    sent = receiver.json(0)
    assert receiver.requests[0]["path"] == "/services/T000/B000/XXXX"
    assert sent["text"].startswith("🔴 [CRITICAL] GPU lost") and sent["blocks"][0]["type"] == "header"
    assert "aiops:" not in json.dumps(sent)  # no buttons unless the app's interaction endpoint is set up
    SlackWebhookSender(receiver.url("/services/T000/B000/XXXX"), interactive=True).send(opened(surge_incident(), "slack"))
    assert f"aiops:approve:{surge_incident().id}:0" in json.dumps(receiver.json(1))


def test_slack_incoming_webhook_error_does_not_leak_the_url_secret(receiver):
    receiver.script = [(404, {"Content-Type": "text/plain"}, "no_service")]
    sender = SlackWebhookSender(receiver.url("/services/T000/B000/SECRETPART"))
    with pytest.raises(DeliveryError) as caught:
        sender.send(opened(xid79_incident(), channel="slack"))
    message = str(caught.value)
    assert "SECRETPART" not in message and "HTTP 404" in message and "no_service" in message


def test_slack_bot_posts_then_updates_the_same_message(receiver):
    config = NotifierConfig(channels=(ChannelConfig("slack"),), group_wait=30, resolve_after=300)
    notifier = Notifier(config)
    bot = SlackBotSender("xoxb-test-token", "#gpu-alerts", base_url=receiver.url("/api/"))
    incident = surge_incident()
    deliver(notifier, notifier.observe([incident], T0), [bot])
    assert receiver.requests == []  # waiting group_wait for the rest of its group
    deliver(notifier, notifier.observe([incident], T0 + 30), [bot])
    escalated = dataclasses.replace(incident, causes=incident.causes[1:])  # the ranking changed: an update
    deliver(notifier, notifier.observe([escalated], T0 + 60), [bot])
    deliver(notifier, notifier.observe([], T0 + 400), [bot])
    paths = [r["path"] for r in receiver.requests]
    assert paths == ["/api/chat.postMessage", "/api/chat.update", "/api/chat.update"]
    post, update, resolve = (receiver.json(i) for i in range(3))
    assert post["channel"] == "#gpu-alerts" and "blocks" in post
    assert update["channel"] == resolve["channel"] == "C0ALERTS"  # chat.update needs the channel id
    assert update["ts"] == resolve["ts"] == "1714564800.000001"
    assert resolve["blocks"][0]["text"]["text"].startswith("✅ Resolved")
    assert receiver.requests[0]["headers"]["Authorization"] == "Bearer xoxb-test-token"
    # the ref survives a restart: it lives in the notifier's JSON state
    state = json.loads(json.dumps(notifier.to_json()))
    assert Notifier.from_json(state, config).to_json() == notifier.to_json()


def test_slack_bot_update_after_restart_uses_the_ref_from_state(receiver):
    config = NotifierConfig(channels=(ChannelConfig("slack", group=False),))
    notifier = Notifier(config)
    deliver(notifier, notifier.observe([xid79_incident()], T0),
            [SlackBotSender("xoxb-t", "C0ALERTS", base_url=receiver.url("/api/"))])
    restarted = Notifier.from_json(json.loads(json.dumps(notifier.to_json())), config)
    fresh_bot = SlackBotSender("xoxb-t", "C0ALERTS", base_url=receiver.url("/api/"))  # remembers nothing itself
    deliver(restarted, restarted.observe([dataclasses.replace(xid79_incident(), severity="warning")], T0 + 60), [fresh_bot])
    assert [r["path"] for r in receiver.requests] == ["/api/chat.postMessage", "/api/chat.update"]
    assert receiver.json(1)["ts"] == "1714564800.000001" and receiver.json(1)["channel"] == "C0ALERTS"


def test_slack_bot_api_error_is_one_line_without_the_token(receiver):
    receiver.script = [(200, {"Content-Type": "application/json"}, json.dumps({"ok": False, "error": "channel_not_found"}))]
    bot = SlackBotSender("xoxb-very-secret", "#nope", base_url=receiver.url("/api/"))
    with pytest.raises(DeliveryError) as caught:
        bot.send(opened(xid79_incident(), channel="slack"))
    message = str(caught.value)
    assert "channel_not_found" in message and "#nope" in message and "xoxb" not in message and "\n" not in message


# -- Alertmanager --------------------------------------------------------------------------------------------


def test_alertmanager_gets_v2_alerts_and_a_severity_change_resolves_the_old_labels(receiver):
    sender = AlertmanagerSender(receiver.url(""), sleep=Sleeps())
    incident = xid79_incident()
    sender.send(opened(incident, channel="alertmanager"))
    assert receiver.requests[0]["path"] == "/api/v2/alerts"
    alerts = receiver.json(0)
    assert isinstance(alerts, list) and alerts[0]["labels"]["alertname"] == "AIOpsIncident"
    lowered = dataclasses.replace(incident, severity="warning", window=(incident.window[0], incident.window[1] + 60))
    sender.send(dataclasses.replace(opened(lowered, channel="alertmanager"), event="updated"))
    stale, current = receiver.json(1)
    assert stale["labels"]["severity"] == "critical" and current["labels"]["severity"] == "warning"
    assert stale["endsAt"] == "2024-05-01T12:05:00Z"  # ended at the last detection
    sender.send(dataclasses.replace(opened(resolved_incident(), channel="alertmanager"), event="resolved"))
    assert receiver.json(2)[0]["endsAt"] == "2024-05-01T12:50:00Z"


# -- configuration from the environment ----------------------------------------------------------------------


def test_senders_from_env_and_file_secrets(tmp_path: Path, receiver):
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file\n")
    env = {"AIOPS_WEBHOOK_URL": receiver.url("/hooks/aiops"), "AIOPS_WEBHOOK_SECRET_FILE": str(secret_file),
           "AIOPS_SLACK_WEBHOOK_URL": receiver.url("/services/T/B/X"), "AIOPS_ALERTMANAGER_URL": receiver.url("")}
    assert secret_from_env("AIOPS_WEBHOOK_SECRET", env) == "from-a-file"
    senders = senders_from_env(env)
    assert [s.name for s in senders] == ["slack", "webhook", "alertmanager"]
    assert isinstance(senders[0], SlackWebhookSender)
    senders[1].send(opened(xid79_incident()))
    sent = receiver.requests[0]
    timestamp = float(sent["headers"]["X-AIOps-Timestamp"])  # from the real clock: no clock was injected
    assert verify_webhook("from-a-file", sent["headers"], sent["body"], now=timestamp)
    bot_env = {"AIOPS_SLACK_BOT_TOKEN": "xoxb-1", "AIOPS_SLACK_CHANNEL": "C1", "AIOPS_SLACK_WEBHOOK_URL": "http://x"}
    assert isinstance(senders_from_env(bot_env)[0], SlackBotSender)
    with pytest.raises(ValueError, match="AIOPS_WEBHOOK_SECRET"):
        senders_from_env({"AIOPS_WEBHOOK_URL": "http://x"})
    with pytest.raises(ValueError, match="AIOPS_SLACK_CHANNEL"):
        senders_from_env({"AIOPS_SLACK_BOT_TOKEN": "xoxb-1"})
    assert senders_from_env({}) == []
