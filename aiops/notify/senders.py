"""Thin adapters that send a :class:`~aiops.notify.messages.Notification`: Slack (incoming webhook
or bot), our signed JSON webhook, and Alertmanager. Rendering is :mod:`aiops.notify.render`'s;
what to send and when is :mod:`aiops.notify.notifier`'s.

Secrets come from the environment or from a mounted file (``NAME_FILE=/path``, for Kubernetes
Secrets mounted as volumes); constructors take the values, :func:`senders_from_env` reads them:

=============================  ============================================================
``AIOPS_SLACK_WEBHOOK_URL``    Slack incoming-webhook URL (the URL itself is the secret)
``AIOPS_SLACK_BOT_TOKEN``      Slack bot token (``xoxb-...``), with ``AIOPS_SLACK_CHANNEL``
``AIOPS_SLACK_CHANNEL``        channel id or name for the bot (``C0123456789``, ``#gpu-alerts``)
``AIOPS_SLACK_SIGNING_SECRET`` verifies Slack's interaction requests (:mod:`aiops.notify.approvals`)
``AIOPS_WEBHOOK_URL``          our JSON webhook's URL
``AIOPS_WEBHOOK_SECRET``       HMAC-SHA256 key for ``X-AIOps-Signature``
``AIOPS_ALERTMANAGER_URL``     Alertmanager's base URL (``/api/v2/alerts`` is added)
``AIOPS_ALERTMANAGER_TOKEN``   optional bearer token for Alertmanager behind a proxy
=============================  ============================================================

Every sender raises :class:`~aiops.notify.messages.DeliveryError` when it gives up: one line
naming the destination (userinfo, query strings and Slack webhook paths left out) and the last
status. Sleeping between retries goes through an injectable ``sleep`` so tests do not wait.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from aiops.notify.messages import Delivery, DeliveryError, Notification
from aiops.notify.render import alertmanager_payload, iso, slack_message, webhook_payloads

SIGNATURE_HEADER = "X-AIOps-Signature"
TIMESTAMP_HEADER = "X-AIOps-Timestamp"
DELIVERY_HEADER = "X-AIOps-Delivery"
EVENT_HEADER = "X-AIOps-Event"
USER_AGENT = "gpu-aiops-notifier/1"


class Sender(Protocol):
    """Sends one notification; returns a receipt or raises :class:`DeliveryError`."""

    name: str

    def send(self, notification: Notification) -> Delivery: ...


def safe_url(url: str) -> str:
    """``url`` fit for a log line: no userinfo, no query, and a Slack webhook's secret path hidden."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    path = parts.path
    if host == "hooks.slack.com" or "/services/" in path:
        path = path.split("/services/")[0] + "/services/…"
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def secret_from_env(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """``$NAME``, else the contents of the file named by ``$NAME_FILE`` (stripped), else None."""
    env = os.environ if env is None else env
    value = env.get(name)
    if value:
        return value
    path = env.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise ValueError(f"{name}_FILE={path}: cannot read it ({exc.strerror or exc})") from None
    return None


# ---------------------------------------------------------------------------------------------
# Our signed JSON webhook (and the HTTP plumbing Alertmanager shares)


def sign_webhook(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``"<timestamp>.<body>"``: the ``X-AIOps-Signature`` value."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_webhook(secret: str | bytes, headers: Mapping[str, str], body: bytes, now: float, max_age: float = 300.0) -> bool:
    """What a receiver does: the signature matches and the timestamp is within ``max_age`` of ``now``."""
    lower = {k.lower(): v for k, v in headers.items()}
    timestamp, signature = lower.get(TIMESTAMP_HEADER.lower(), ""), lower.get(SIGNATURE_HEADER.lower(), "")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > max_age:
        return False
    return hmac.compare_digest(sign_webhook(secret, timestamp, body), signature)


def _retry(attempts: int, backoff: float, max_backoff: float, max_retry_after: float,
           sleep: Callable[[float], None]) -> Retry:
    """urllib3's Retry with its sleeping sent through ``sleep``: exponential backoff on connection
    errors and 5xx, and 429/503 ``Retry-After`` honoured (capped at ``max_retry_after``)."""

    class _Retry(Retry):
        def sleep_for_retry(self, response) -> bool:
            retry_after = self.get_retry_after(response)
            if retry_after:
                sleep(retry_after)
                return True
            return False

        def _sleep_backoff(self) -> None:
            backoff_time = self.get_backoff_time()
            if backoff_time > 0:
                sleep(backoff_time)

    retries = max(0, attempts - 1)
    return _Retry(total=retries, connect=retries, read=retries, status=retries, other=0, redirect=0,
                  allowed_methods=None,  # POST too: deliveries carry an id, so receivers can drop repeats
                  status_forcelist=[429, *range(500, 600)], backoff_factor=backoff, backoff_max=max_backoff,
                  respect_retry_after_header=True, retry_after_max=int(max_retry_after), raise_on_status=False)


class _HttpPoster:
    """One session with retries mounted; ``post`` returns the final response or raises DeliveryError."""

    def __init__(self, what: str, url: str, *, attempts: int, backoff: float, max_backoff: float, max_retry_after: float,
                 timeout: float, sleep: Callable[[float], None], session: requests.Session | None = None) -> None:
        if attempts < 1:
            raise ValueError(f"{what}: attempts must be at least 1")
        self.what, self.url, self.timeout, self.attempts = what, url, timeout, attempts
        self.session = session or requests.Session()
        adapter = HTTPAdapter(max_retries=_retry(attempts, backoff, max_backoff, max_retry_after, sleep))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def post(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, int]:
        """(status, attempts). 2xx is success; anything else raises DeliveryError (4xx other than 429
        at once: they will not get better by retrying)."""
        where = safe_url(self.url)
        try:
            response = self.session.post(self.url, data=body, headers=dict(headers), timeout=self.timeout,
                                         allow_redirects=False)
        except requests.exceptions.RequestException as exc:
            inner = exc.args[0] if exc.args else None
            reason = type(getattr(inner, "reason", None) or exc).__name__  # never str(exc): it quotes the URL
            raise DeliveryError(f"{self.what} {where}: gave up after {self.attempts} attempts, no response ({reason})",
                                attempts=self.attempts) from None
        retries = getattr(response.raw, "retries", None)
        attempts = len(retries.history) + 1 if retries is not None else 1
        status = response.status_code
        if 200 <= status < 300:
            return status, attempts
        detail = " ".join(response.text[:120].split())
        why = "gave up after " + (f"{attempts} attempts" if attempts > 1 else "1 attempt")
        if 400 <= status < 500 and status != 429:
            why = "rejected, not retried"
        raise DeliveryError(f"{self.what} {where}: {why}, last status HTTP {status}" + (f": {detail}" if detail else ""),
                            status=status, attempts=attempts)


class WebhookSender:
    """POSTs :func:`~aiops.notify.render.webhook_payloads` as JSON, one request per incident event.

    Headers: ``X-AIOps-Signature: sha256=<hex>`` (HMAC-SHA256 with ``secret`` over
    ``"<X-AIOps-Timestamp>.<body>"``), ``X-AIOps-Timestamp`` (unix seconds of the first attempt),
    ``X-AIOps-Event`` and ``X-AIOps-Delivery`` (an id that is the same on every retry of one
    delivery, so a receiver can drop repeats). Retries ``attempts - 1`` times with exponential
    backoff (``backoff * 2**n`` seconds, the first retry at once) on connection errors and 5xx;
    on 429 (and 503) waits ``Retry-After`` seconds (at most ``max_retry_after``).
    """

    name = "webhook"

    def __init__(self, url: str, secret: str, *, attempts: int = 5, backoff: float = 0.5, max_backoff: float = 30.0,
                 max_retry_after: float = 60.0, timeout: float = 10.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time, name: str = "webhook",
                 approve_urls: Callable[[Notification], Mapping[str, Mapping[int, str]]] | None = None,
                 session: requests.Session | None = None) -> None:
        if not secret:
            raise ValueError("webhook: a signing secret is required (AIOPS_WEBHOOK_SECRET)")
        self.name, self._secret, self.clock, self.approve_urls = name, secret, clock, approve_urls
        self.http = _HttpPoster("webhook", url, attempts=attempts, backoff=backoff, max_backoff=max_backoff,
                                max_retry_after=max_retry_after, timeout=timeout, sleep=sleep, session=session)

    def __repr__(self) -> str:  # never the secret
        return f"WebhookSender({safe_url(self.http.url)!r})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> "WebhookSender | None":
        """From ``AIOPS_WEBHOOK_URL`` and ``AIOPS_WEBHOOK_SECRET`` (or ``..._FILE``); None when no URL."""
        url = secret_from_env("AIOPS_WEBHOOK_URL", env)
        if not url:
            return None
        secret = secret_from_env("AIOPS_WEBHOOK_SECRET", env)
        if not secret:
            raise ValueError("AIOPS_WEBHOOK_URL is set but AIOPS_WEBHOOK_SECRET (or AIOPS_WEBHOOK_SECRET_FILE) is not")
        return cls(url, secret, **kwargs)

    def post(self, payload: Mapping[str, Any]) -> tuple[int, int]:
        body = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        timestamp = str(int(self.clock()))
        delivery = hashlib.sha256(timestamp.encode() + b"." + body).hexdigest()[:32]
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, TIMESTAMP_HEADER: timestamp,
                   SIGNATURE_HEADER: sign_webhook(self._secret, timestamp, body), DELIVERY_HEADER: delivery,
                   EVENT_HEADER: str(payload.get("event", ""))}
        return self.http.post(body, headers)

    def send(self, notification: Notification) -> Delivery:
        urls = self.approve_urls(notification) if self.approve_urls else None
        status, attempts = 0, 0
        for payload in webhook_payloads(notification, approve_urls=urls):
            status, tries = self.post(payload)
            attempts += tries
        return Delivery(channel=notification.channel, key=notification.key, status=status, attempts=attempts)


class AlertmanagerSender:
    """POSTs :func:`~aiops.notify.render.alertmanager_payload` to ``<url>/api/v2/alerts``.

    Alertmanager identifies an alert by its labels; when an incident's severity changes (a label),
    the alert with the old labels is sent resolved in the same request, so it does not linger.
    Summaries are not sent (Alertmanager groups and throttles on its own)."""

    name = "alertmanager"

    def __init__(self, url: str, *, bearer_token: str | None = None, valid_for: float = 6 * 3600.0,
                 generator_url: str = "", runbook_url: str = "", attempts: int = 5, backoff: float = 0.5,
                 max_backoff: float = 30.0, max_retry_after: float = 60.0, timeout: float = 10.0,
                 sleep: Callable[[float], None] = time.sleep, name: str = "alertmanager",
                 session: requests.Session | None = None) -> None:
        endpoint = url.rstrip("/")
        if not endpoint.endswith("/api/v2/alerts"):
            endpoint += "/api/v2/alerts"
        self.name, self._token = name, bearer_token
        self.valid_for, self.generator_url, self.runbook_url = valid_for, generator_url, runbook_url
        self.http = _HttpPoster("alertmanager", endpoint, attempts=attempts, backoff=backoff, max_backoff=max_backoff,
                                max_retry_after=max_retry_after, timeout=timeout, sleep=sleep, session=session)
        self._labels: dict[str, dict[str, str]] = {}  # fingerprint -> the labels last sent

    def __repr__(self) -> str:
        return f"AlertmanagerSender({safe_url(self.http.url)!r})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> "AlertmanagerSender | None":
        """From ``AIOPS_ALERTMANAGER_URL`` (and optional ``AIOPS_ALERTMANAGER_TOKEN``); None when unset."""
        url = secret_from_env("AIOPS_ALERTMANAGER_URL", env)
        if not url:
            return None
        return cls(url, bearer_token=secret_from_env("AIOPS_ALERTMANAGER_TOKEN", env), **kwargs)

    def alerts(self, notification: Notification) -> list[dict[str, Any]]:
        if notification.kind == "summary":
            return []
        alerts = alertmanager_payload(notification.incidents, valid_for=self.valid_for,
                                      generator_url=self.generator_url, runbook_url=self.runbook_url)
        stale = []
        for incident, alert in zip(notification.incidents, alerts):
            before = self._labels.get(incident.fingerprint)
            if before is not None and before != alert["labels"]:  # the old label set ends at the last detection
                stale.append(dict(alert, labels=before, endsAt=iso(incident.window[1])))
            if incident.status == "resolved":
                self._labels.pop(incident.fingerprint, None)
            else:
                self._labels[incident.fingerprint] = alert["labels"]
        return stale + alerts

    def send(self, notification: Notification) -> Delivery:
        alerts = self.alerts(notification)
        if not alerts:
            return Delivery(channel=notification.channel, key=notification.key, attempts=0)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        status, attempts = self.http.post(json.dumps(alerts, sort_keys=True).encode(), headers)
        return Delivery(channel=notification.channel, key=notification.key, status=status, attempts=attempts)


# ---------------------------------------------------------------------------------------------
# Slack


def _slack_retry_handlers(max_retries: int) -> list:
    from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

    return [ConnectionErrorRetryHandler(max_retry_count=max_retries), RateLimitErrorRetryHandler(max_retry_count=max_retries)]


class SlackWebhookSender:
    """Posts to a Slack incoming webhook (``slack_sdk.webhook.WebhookClient``). An incoming webhook
    cannot edit what it posted, so every update is a new message (marked "Updated"/"Resolved");
    use :class:`SlackBotSender` to edit in place. Buttons (Approve, 👍/👎) only when ``interactive``:
    they need the Slack app's Interactivity Request URL pointed at the agent's
    ``/slack/interactions``; signed approval links are shown whenever ``approve_urls`` gives them."""

    name = "slack"

    def __init__(self, url: str, *, timeout: int = 10, max_retries: int = 2, name: str = "slack",
                 approve_urls: Callable[[Notification], Mapping[str, Mapping[int, str]]] | None = None,
                 interactive: bool = False) -> None:
        from slack_sdk.webhook import WebhookClient

        self.name, self.approve_urls, self.interactive = name, approve_urls, interactive
        self._where = safe_url(url)
        self.client = WebhookClient(url=url, timeout=timeout, retry_handlers=_slack_retry_handlers(max_retries))

    def __repr__(self) -> str:
        return f"SlackWebhookSender({self._where!r})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> "SlackWebhookSender | None":
        """From ``AIOPS_SLACK_WEBHOOK_URL`` (or ``..._FILE``); None when unset."""
        url = secret_from_env("AIOPS_SLACK_WEBHOOK_URL", env)
        return cls(url, **kwargs) if url else None

    def send(self, notification: Notification) -> Delivery:
        urls = self.approve_urls(notification) if self.approve_urls else None
        message = slack_message(notification, approve_urls=urls, interactive=self.interactive, feedback=self.interactive)
        try:
            response = self.client.send(text=message["text"], blocks=message["blocks"])
        except Exception as exc:  # noqa: BLE001 - urllib errors; the message must not carry the URL
            raise DeliveryError(f"slack webhook {self._where}: gave up, no response ({type(exc).__name__})") from None
        if response.status_code != 200:
            detail = " ".join(str(response.body)[:120].split())
            raise DeliveryError(f"slack webhook {self._where}: last status HTTP {response.status_code}: {detail}",
                                status=response.status_code)
        return Delivery(channel=notification.channel, key=notification.key, status=response.status_code)


class SlackBotSender:
    """Posts with a bot token (``slack_sdk.WebClient``): ``chat.postMessage`` for a new message,
    ``chat.update`` of the same message (its ``channel:ts`` is the delivery ``ref``) for updates
    and resolutions, so a channel shows one message per incident that changes in place. Reminders
    post anew (an edit notifies nobody). Also remembers refs itself, for callers that do not keep
    them in the notifier's state."""

    name = "slack"

    def __init__(self, token: str, channel: str, *, base_url: str | None = None, timeout: int = 10,
                 max_retries: int = 2, name: str = "slack", interactive: bool = True,
                 approve_urls: Callable[[Notification], Mapping[str, Mapping[int, str]]] | None = None) -> None:
        from slack_sdk import WebClient

        if not token or not channel:
            raise ValueError("slack bot: a token (AIOPS_SLACK_BOT_TOKEN) and a channel (AIOPS_SLACK_CHANNEL) are required")
        kwargs: dict[str, Any] = {"token": token, "timeout": timeout, "retry_handlers": _slack_retry_handlers(max_retries)}
        if base_url:
            kwargs["base_url"] = base_url
        self.client = WebClient(**kwargs)
        self.name, self.channel, self.interactive, self.approve_urls = name, channel, interactive, approve_urls
        self.refs: dict[str, str] = {}  # notification key -> "channel:ts"

    def __repr__(self) -> str:
        return f"SlackBotSender(channel={self.channel!r})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> "SlackBotSender | None":
        """From ``AIOPS_SLACK_BOT_TOKEN`` (or ``..._FILE``) and ``AIOPS_SLACK_CHANNEL``; None when no token."""
        token = secret_from_env("AIOPS_SLACK_BOT_TOKEN", env)
        if not token:
            return None
        channel = (os.environ if env is None else env).get("AIOPS_SLACK_CHANNEL", "")
        if not channel:
            raise ValueError("AIOPS_SLACK_BOT_TOKEN is set but AIOPS_SLACK_CHANNEL is not")
        return cls(token, channel, **kwargs)

    def send(self, notification: Notification) -> Delivery:
        from slack_sdk.errors import SlackApiError, SlackClientError

        urls = self.approve_urls(notification) if self.approve_urls else None
        message = slack_message(notification, approve_urls=urls, interactive=self.interactive)
        ref = notification.ref or self.refs.get(notification.key, "")
        edit = bool(ref) and notification.event in ("updated", "resolved")
        try:
            if edit:
                channel, ts = ref.split(":", 1)
                try:
                    response = self.client.chat_update(channel=channel, ts=ts, text=message["text"], blocks=message["blocks"])
                except SlackApiError as exc:
                    if exc.response.get("error") not in ("message_not_found", "cant_update_message"):
                        raise
                    edit = False  # deleted or too old to edit: post it anew
            if not edit:
                response = self.client.chat_postMessage(channel=self.channel, text=message["text"],
                                                        blocks=message["blocks"], unfurl_links=False)
        except SlackApiError as exc:
            method = "chat.update" if edit else "chat.postMessage"
            raise DeliveryError(f"slack {method} to {self.channel}: {exc.response.get('error', 'error')}, "
                                f"last status HTTP {exc.response.status_code}", status=exc.response.status_code) from None
        except (SlackClientError, OSError) as exc:
            raise DeliveryError(f"slack {self.client.base_url}: gave up, no response ({type(exc).__name__})") from None
        new_ref = f"{response['channel']}:{response['ts']}"
        self.refs[notification.key] = new_ref
        return Delivery(channel=notification.channel, key=notification.key, ref=new_ref, status=response.status_code)


# ---------------------------------------------------------------------------------------------


def senders_from_env(env: Mapping[str, str] | None = None, *, sleep: Callable[[float], None] = time.sleep) -> list[Sender]:
    """Every sender whose variables are set: the Slack bot (else the Slack webhook), the JSON webhook,
    Alertmanager. Names: ``slack``, ``webhook``, ``alertmanager`` (the notifier's channel names)."""
    out: list[Sender] = []
    slack = SlackBotSender.from_env(env) or SlackWebhookSender.from_env(env)
    if slack is not None:
        out.append(slack)
    webhook = WebhookSender.from_env(env, sleep=sleep)
    if webhook is not None:
        out.append(webhook)
    alertmanager = AlertmanagerSender.from_env(env, sleep=sleep)
    if alertmanager is not None:
        out.append(alertmanager)
    return out


def deliver(notifier, notifications: Sequence[Notification], senders: Sequence[Sender] | Mapping[str, Sender],
            log: Callable[[str], None] | None = None) -> list[Delivery | DeliveryError]:
    """Send each notification with the sender named by its channel and report back to ``notifier``
    (:meth:`~aiops.notify.notifier.Notifier.delivered` / ``failed``). A failure is logged as its
    one line and does not stop the others."""
    by_name = dict(senders) if isinstance(senders, Mapping) else {s.name: s for s in senders}
    results: list[Delivery | DeliveryError] = []
    for notification in notifications:
        sender = by_name.get(notification.channel)
        if sender is None:
            error = DeliveryError(f"no sender for channel {notification.channel!r}")
            notifier.failed(notification, error)
            results.append(error)
            continue
        try:
            delivery = sender.send(notification)
        except DeliveryError as error:
            notifier.failed(notification, error)
            if log is not None:
                log(str(error))
            results.append(error)
        else:
            notifier.delivered(notification, delivery)
            results.append(delivery)
    return results
