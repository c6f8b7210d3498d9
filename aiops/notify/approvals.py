"""What a click in Slack means, once we are sure Slack sent it.

* :func:`verify_slack_signature`: Slack's request signing
  (https://api.slack.com/authentication/verifying-requests-from-slack): HMAC-SHA256 with the
  app's signing secret over ``v0:<X-Slack-Request-Timestamp>:<raw body>``, compared in constant
  time with ``X-Slack-Signature`` (``v0=<hex>``); requests older than ``max_age`` (5 minutes) or
  dated in the future (beyond ``max_future`` of clock skew) are refused, against replays.
* :func:`parse_interaction`: the ``application/x-www-form-urlencoded`` body Slack posts for a
  ``block_actions`` interaction (``payload=<json>``) turned into an :class:`Interaction`: approve
  (incident id + action index, and the decision id when the action carries one), feedback 👍/👎,
  or a click on an approval link (nothing to do: the link itself carries the signed approval).
* :func:`approval_urls`: signed approval links for an incident's approvable actions, made by
  :func:`aiops.observability.approval_link` (:func:`approval_links`: the same, for a sender).
* :func:`handle_slack_interaction`: all of the Slack interaction endpoint but the HTTP.

Anything forged, stale or malformed raises :class:`SignatureError` or :class:`InteractionError`
(both ``ValueError``) with a one-line message that quotes no secret.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Collection, Mapping
from urllib.parse import parse_qs

from slack_sdk.signature import SignatureVerifier

from aiops.findings import Incident
from aiops.notify.render import ACTION_PREFIX, approvable


class SignatureError(ValueError):
    """The request is not provably from Slack, or is too old or dated in the future."""


class InteractionError(ValueError):
    """The interaction payload is not one of ours, or is malformed."""


class _FixedClock:
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def verify_slack_signature(signing_secret: str, headers: Mapping[str, str], body: bytes | str, now: float,
                           max_age: float = 300.0, max_future: float = 60.0) -> None:
    """Return if Slack signed ``body`` within ``max_age`` seconds before ``now``; raise SignatureError if not.
    ``headers``: the request's headers (any case). ``body``: the raw bytes, before any parsing."""
    if not signing_secret:
        raise SignatureError("slack signature: no signing secret configured (AIOPS_SLACK_SIGNING_SECRET)")
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    timestamp = lower.get("x-slack-request-timestamp", "").strip()
    signature = lower.get("x-slack-signature", "").strip()
    if not timestamp or not signature:
        raise SignatureError("slack signature: missing X-Slack-Request-Timestamp or X-Slack-Signature header")
    try:
        sent = int(timestamp)
    except ValueError:
        raise SignatureError(f"slack signature: bad timestamp {timestamp[:20]!r}") from None
    if now - sent > max_age:
        raise SignatureError(f"slack signature: request is {int(now - sent)} s old (at most {int(max_age)} s), "
                             "refused as a replay")
    if sent - now > max_future:
        raise SignatureError(f"slack signature: request is dated {int(sent - now)} s in the future")
    if not signature.startswith("v0="):
        raise SignatureError("slack signature: unknown signature version (expected v0=)")
    verifier = SignatureVerifier(signing_secret, clock=_FixedClock(now))
    try:  # slack_sdk compares with hmac.compare_digest (constant time) and re-checks the age
        valid = verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
    except UnicodeDecodeError:
        raise SignatureError("slack signature: body is not UTF-8") from None
    if not valid:
        raise SignatureError("slack signature: does not match (wrong signing secret, or the body was altered)")


@dataclass(frozen=True)
class Interaction:
    """What was clicked. ``kind``: ``approve``, ``feedback`` or ``link`` (an approval link was opened)."""

    kind: str
    incident_id: str
    fingerprint: str = ""
    action_index: int | None = None  # approve: which of the incident's actions
    decision_id: str = ""  # approve: the policy decision behind the action, when it has one
    vote: str = ""  # feedback: "up" or "down"
    user_id: str = ""
    user_name: str = ""
    channel: str = ""
    message_ts: str = ""
    response_url: str = ""  # where to post a reply (ephemeral confirmation) within 30 minutes


def _bad(why: str) -> InteractionError:
    return InteractionError(f"slack interaction: {why}")


def _value(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, str):
        raise _bad("the action has no value")
    try:
        data = json.loads(raw)
    except ValueError:
        raise _bad("the action's value is not JSON") from None
    if not isinstance(data, dict):
        raise _bad("the action's value is not a JSON object")
    return data


def parse_interaction(body: bytes | str) -> Interaction:
    """The first action of a ``block_actions`` payload posted to the Slack app's interaction URL."""
    text = body.decode("utf-8", errors="strict") if isinstance(body, bytes) else body
    try:
        form = parse_qs(text, keep_blank_values=True, strict_parsing=True)
    except (ValueError, UnicodeDecodeError):
        raise _bad("body is not form-encoded") from None
    payloads = form.get("payload", [])
    if len(payloads) != 1:
        raise _bad("expected exactly one payload= field")
    try:
        payload = json.loads(payloads[0])
    except ValueError:
        raise _bad("payload is not JSON") from None
    if not isinstance(payload, dict):
        raise _bad("payload is not a JSON object")
    if payload.get("type") != "block_actions":
        raise _bad(f"unsupported type {str(payload.get('type'))[:40]!r} (expected block_actions)")
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise _bad("no actions")
    action = actions[0]
    action_id = action.get("action_id")
    if not isinstance(action_id, str) or not action_id.startswith(f"{ACTION_PREFIX}:"):
        raise _bad(f"action_id {str(action_id)[:60]!r} is not one of ours")
    parts = action_id.split(":")
    user = payload.get("user") if isinstance(payload.get("user"), dict) else {}
    channel = payload.get("channel") if isinstance(payload.get("channel"), dict) else {}
    container = payload.get("container") if isinstance(payload.get("container"), dict) else {}
    common = {"user_id": str(user.get("id", "")), "user_name": str(user.get("username") or user.get("name") or ""),
              "channel": str(channel.get("id", "") or container.get("channel_id", "")),
              "message_ts": str(container.get("message_ts", "")), "response_url": str(payload.get("response_url", ""))}

    if parts[1] in ("approve", "approve_link") and len(parts) == 4:
        value = _value(action.get("value"))
        incident_id, index_text = parts[2], parts[3]
        if not index_text.isdigit():
            raise _bad(f"action index {index_text[:20]!r} is not a number")
        index = int(index_text)
        if value.get("incident") != incident_id or value.get("action") != index:
            raise _bad("action_id and value disagree on the incident or the action")
        return Interaction(kind="approve" if parts[1] == "approve" else "link", incident_id=incident_id,
                           fingerprint=str(value.get("fingerprint", "")), action_index=index,
                           decision_id=str(value.get("decision", "")), **common)
    if parts[1] == "feedback" and len(parts) == 4 and parts[2] in ("up", "down"):
        value = _value(action.get("value"))
        if value.get("incident") != parts[3]:
            raise _bad("action_id and value disagree on the incident")
        return Interaction(kind="feedback", incident_id=parts[3], fingerprint=str(value.get("fingerprint", "")),
                           vote=parts[2], **common)
    if parts[1] == "feedback" and len(parts) == 3:  # the overflow menu of a group message
        selected = action.get("selected_option")
        value = _value(selected.get("value") if isinstance(selected, dict) else None)
        if value.get("incident") != parts[2] or value.get("vote") not in ("up", "down"):
            raise _bad("feedback option does not name this incident and up or down")
        return Interaction(kind="feedback", incident_id=parts[2], fingerprint=str(value.get("fingerprint", "")),
                           vote=value["vote"], **common)
    raise _bad(f"action_id {action_id[:60]!r} is not one of ours")


def decision_id_for(incident: Incident, index: int) -> str:
    """The id an approval applies: the action's ``params["decision_id"]`` when the policy made one,
    else ``<incident id>-<action index>``."""
    return str(incident.actions[index].params.get("decision_id") or f"{incident.id}-{index}")


def approval_urls(incident: Incident, base_url: str, key: bytes, now: float, ttl_seconds: float = 3600.0) -> dict[int, str]:
    """Signed approval links (``POST <base>/approvals/<decision id>?expires=..&signature=..``) for
    every approvable action of ``incident``, by action index. Resolved incidents get none."""
    from aiops.observability import approval_link

    if not key or incident.status == "resolved" or not math.isfinite(now):
        return {}
    return {i: approval_link(base_url, key, decision_id_for(incident, i), ttl_seconds=ttl_seconds, now=now)
            for i, action in enumerate(incident.actions) if approvable(action)}


def approval_links(base_url: str, key: bytes, ttl_seconds: float = 3600.0):
    """For a sender's ``approve_urls``: a notification -> ``{fingerprint: {action index: signed url}}``
    (links expire ``ttl_seconds`` after the notification was decided)."""

    def links(notification) -> dict[str, dict[int, str]]:
        return {i.fingerprint: approval_urls(i, base_url, key, now=notification.at, ttl_seconds=ttl_seconds)
                for i in notification.incidents}

    return links


def handle_slack_interaction(signing_secret: str, headers: Mapping[str, str], body: bytes, now: float, *,
                             approve: Callable[[str], Any] | None = None,
                             feedback: Callable[[str, str, str, float], str] | None = None,
                             fingerprint_of: Callable[[str], str | None] | None = None,
                             approvers: Collection[str] | None = None) -> tuple[int, dict[str, Any]]:
    """Everything ``POST /slack/interactions`` does, but the HTTP: verify, parse, act.

    Returns ``(status, body)``: 401 for a bad signature, 400 for a malformed payload, 403 for a
    user not in ``approvers`` (Slack user ids; None lets anyone in the channel approve), else 200.
    ``approve(decision_id)`` is the agent's approval callback (as for ``/approvals/<id>``; a
    ``KeyError`` means unknown or expired); ``feedback(fingerprint, vote, user, now)`` is
    :meth:`aiops.notify.notifier.Notifier.record_feedback`. ``body["reply"]`` is a line to post
    back to the clicker through ``body["response_url"]`` (Slack ignores the HTTP response body).
    """
    try:
        verify_slack_signature(signing_secret, headers, body, now)
    except SignatureError as exc:
        return 401, {"error": str(exc)}
    try:
        interaction = parse_interaction(body)
    except InteractionError as exc:
        return 400, {"error": str(exc)}
    answer: dict[str, Any] = {"kind": interaction.kind, "incident": interaction.incident_id,
                              "response_url": interaction.response_url}
    if interaction.kind == "link":
        return 200, dict(answer, reply="")  # the link carries its own signed approval
    if interaction.kind == "approve":
        if approvers is not None and interaction.user_id not in approvers:
            return 403, dict(answer, error=f"user {interaction.user_id} may not approve", reply="You are not an approver.")
        if approve is None:
            return 200, dict(answer, reply="Approvals are off for this agent.")
        ident = interaction.decision_id or f"{interaction.incident_id}-{interaction.action_index}"
        try:
            result = approve(ident)
        except KeyError:
            return 200, dict(answer, decision=ident, reply=f"Decision {ident} is unknown or has expired.")
        return 200, dict(answer, decision=ident, result=result,
                         reply=f"Approved by <@{interaction.user_id}>: decision {ident}.")
    fingerprint = interaction.fingerprint or (fingerprint_of(interaction.incident_id) if fingerprint_of else None)
    if feedback is None or not fingerprint:
        return 200, dict(answer, reply="Thanks (feedback is not recorded by this agent).")
    outcome = feedback(fingerprint, interaction.vote, interaction.user_id, now)
    reply = {"muted": "Thanks: this alert is muted for a day unless it gets worse.",
             "duplicate": "Already counted."}.get(outcome, "Thanks, recorded.")
    return 200, dict(answer, vote=interaction.vote, outcome=outcome, reply=reply)
