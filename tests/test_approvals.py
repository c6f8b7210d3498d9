"""Slack interactions: request signatures (forged, stale, future, malformed) and what a click means;
signed approval links."""

from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import parse_qs, quote, urlencode, urlparse

import pytest

from aiops.notify import Notification, Notifier, NotifierConfig, render
from aiops.notify.approvals import (
    Interaction,
    InteractionError,
    SignatureError,
    approval_links,
    approval_urls,
    decision_id_for,
    handle_slack_interaction,
    parse_interaction,
    verify_slack_signature,
)
from aiops.observability import sign
from tests.test_notify_render import T0, resolved_incident, surge_incident, xid79_incident

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def slack_headers(body: bytes, timestamp: int, secret: str = SIGNING_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": f"v0={digest}"}


def interaction_body(action: dict, **extra) -> bytes:
    payload = {"type": "block_actions", "user": {"id": "U024BE7LH", "username": "ana", "name": "ana", "team_id": "T1"},
               "api_app_id": "A1", "container": {"type": "message", "message_ts": "1714564800.000001",
                                                  "channel_id": "C0ALERTS", "is_ephemeral": False},
               "channel": {"id": "C0ALERTS", "name": "gpu-alerts"}, "trigger_id": "1.2.3",
               "response_url": "https://hooks.slack.com/actions/T1/1/abc", "actions": [action], **extra}
    return urlencode({"payload": json.dumps(payload)}).encode()


def rendered_button(message: dict, prefix: str) -> dict:
    for block in message["blocks"]:
        for element in block.get("elements", []) if block["type"] == "actions" else []:
            if element["action_id"].startswith(prefix):
                return dict(element, type="button", block_id="b1", action_ts="1714564801.1")
    raise AssertionError(f"no button {prefix}")


# -- signatures -------------------------------------------------------------------------------------------


def test_slacks_documented_example_verifies():
    body = ("token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
            "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
            "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
            "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c").encode()
    headers = {"x-slack-request-timestamp": "1531420618",
               "x-slack-signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"}
    verify_slack_signature(SIGNING_SECRET, headers, body, now=1531420618 + 10)
    verify_slack_signature(SIGNING_SECRET, headers, body.decode(), now=1531420618)  # str bodies too


def test_a_valid_request_is_accepted():
    body = interaction_body({"action_id": "aiops:feedback:up:abc", "value": json.dumps({"incident": "abc"})})
    verify_slack_signature(SIGNING_SECRET, slack_headers(body, int(T0)), body, now=T0 + 299)


@pytest.mark.parametrize("case,match", [
    ("forged", "does not match"),
    ("altered body", "does not match"),
    ("stale", "301 s old"),
    ("future", "in the future"),
    ("no headers", "missing"),
    ("bad timestamp", "bad timestamp"),
    ("bad version", "version"),
    ("not utf-8", "not UTF-8"),
])
def test_forged_stale_future_and_malformed_requests_are_rejected(case, match):
    body = interaction_body({"action_id": "aiops:feedback:up:abc", "value": json.dumps({"incident": "abc"})})
    now, ts = T0, int(T0)
    headers = slack_headers(body, ts)
    if case == "forged":
        headers = slack_headers(body, ts, secret="someone-else")
    elif case == "altered body":
        body = body.replace(b"up", b"down")
    elif case == "stale":
        now = T0 + 301
    elif case == "future":
        now = T0 - 120
    elif case == "no headers":
        headers = {}
    elif case == "bad timestamp":
        headers["X-Slack-Request-Timestamp"] = "yesterday"
    elif case == "bad version":
        headers["X-Slack-Signature"] = "v1=" + headers["X-Slack-Signature"][3:]
    elif case == "not utf-8":
        body = b"\xff\xfe"
        headers = slack_headers(body, ts)
    with pytest.raises(SignatureError, match=match) as caught:
        verify_slack_signature(SIGNING_SECRET, headers, body, now=now)
    assert "\n" not in str(caught.value) and SIGNING_SECRET not in str(caught.value)


def test_no_signing_secret_rejects_everything():
    body = b"payload=%7B%7D"
    with pytest.raises(SignatureError, match="no signing secret"):
        verify_slack_signature("", slack_headers(body, int(T0)), body, now=T0)


# -- interactions ----------------------------------------------------------------------------------------


def test_approve_click_from_the_rendered_message_parses_to_incident_action_and_decision():
    incident = surge_incident()
    button = rendered_button(render.slack_blocks(incident), "aiops:approve:")
    got = parse_interaction(interaction_body(button))
    assert got == Interaction(kind="approve", incident_id=incident.id, fingerprint=incident.fingerprint, action_index=0,
                              decision_id="dec-llm-chat-0001", user_id="U024BE7LH", user_name="ana", channel="C0ALERTS",
                              message_ts="1714564800.000001", response_url="https://hooks.slack.com/actions/T1/1/abc")


def test_approve_without_a_decision_id_and_the_link_button():
    incident = xid79_incident()
    urls = approval_urls(incident, "https://aiops.example.com", b"k", now=T0)
    message = render.slack_blocks(incident, approve_url=urls)
    got = parse_interaction(interaction_body(rendered_button(message, "aiops:approve:")))
    assert (got.kind, got.action_index, got.decision_id) == ("approve", 0, "")
    assert decision_id_for(incident, 0) == f"{incident.id}-0"
    link = parse_interaction(interaction_body(rendered_button(message, "aiops:approve_link:")))
    assert link.kind == "link" and link.action_index == 0


@pytest.mark.parametrize("vote", ["up", "down"])
def test_feedback_buttons_parse_to_a_vote(vote):
    incident = xid79_incident()
    button = rendered_button(render.slack_blocks(incident), f"aiops:feedback:{vote}:")
    got = parse_interaction(interaction_body(button))
    assert (got.kind, got.vote, got.incident_id, got.fingerprint) == ("feedback", vote, incident.id, incident.fingerprint)


def test_feedback_from_a_group_overflow_menu():
    incident = xid79_incident()
    group = render.slack_group_blocks([incident, surge_incident()])
    menu = next(b["accessory"] for b in group["blocks"] if b.get("accessory", {}).get("action_id", "").endswith(incident.id))
    action = {"type": "overflow", "action_id": menu["action_id"], "block_id": "b", "selected_option": menu["options"][1]}
    got = parse_interaction(interaction_body(action))
    assert (got.kind, got.vote, got.incident_id, got.fingerprint) == ("feedback", "down", incident.id, incident.fingerprint)


@pytest.mark.parametrize("body,match", [
    (b"not a form", "form-encoded"),
    (b"payload=%7Bnope", "not JSON"),
    (b"payload=1&payload=2", "exactly one"),
    (b"other=1", "exactly one"),
    (("payload=" + quote(json.dumps([1]))).encode(), "not a JSON object"),
    (("payload=" + quote(json.dumps({"type": "view_submission"}))).encode(), "unsupported type"),
    (("payload=" + quote(json.dumps({"type": "block_actions", "actions": []}))).encode(), "no actions"),
    (interaction_body({"action_id": "someone_elses", "value": "{}"}), "not one of ours"),
    (interaction_body({"action_id": "aiops:approve:abc:x", "value": "{}"}), "not a number"),
    (interaction_body({"action_id": "aiops:approve:abc:0", "value": "not json"}), "not JSON"),
    (interaction_body({"action_id": "aiops:approve:abc:0", "value": json.dumps({"incident": "zzz", "action": 0})}),
     "disagree"),
    (interaction_body({"action_id": "aiops:approve:abc:0"}), "no value"),
    (interaction_body({"action_id": "aiops:feedback:sideways:abc", "value": "{}"}), "not one of ours"),
    (interaction_body({"action_id": "aiops:feedback:abc", "selected_option": {"value": json.dumps({"incident": "abc"})}}),
     "up or down"),
])
def test_malformed_interactions_are_rejected_in_one_line(body, match):
    with pytest.raises(InteractionError, match=match) as caught:
        parse_interaction(body)
    assert "\n" not in str(caught.value) and str(caught.value).startswith("slack interaction: ")


# -- signed approval links --------------------------------------------------------------------------------


def test_approval_urls_are_signed_links_the_approvals_endpoint_accepts():
    incident = surge_incident()
    urls = approval_urls(incident, "https://aiops.example.com/", b"key", now=T0, ttl_seconds=600)
    assert list(urls) == [0]  # "investigate" is not approvable
    url = urlparse(urls[0])
    query = parse_qs(url.query)
    assert url.path == "/approvals/dec-llm-chat-0001"
    assert int(query["expires"][0]) == int(T0 + 600)
    assert query["signature"][0] == sign(b"key", "dec-llm-chat-0001", int(T0 + 600))
    assert approval_urls(resolved_incident(), "https://a", b"key", now=T0) == {}
    assert approval_urls(incident, "https://a", b"", now=T0) == {}


def test_approval_links_for_a_sender_use_the_notification_time():
    incident = surge_incident()
    note = Notification(channel="slack", kind="incident", event="opened", key=incident.fingerprint, at=T0,
                        incidents=(incident,))
    links = approval_links("https://aiops.example.com", b"key", ttl_seconds=60)(note)
    assert links == {incident.fingerprint: approval_urls(incident, "https://aiops.example.com", b"key", now=T0, ttl_seconds=60)}


# -- the whole endpoint but the HTTP ----------------------------------------------------------------------


def click(button: dict, now: float = T0, secret: str = SIGNING_SECRET, **kwargs):
    body = interaction_body(button)
    return handle_slack_interaction(SIGNING_SECRET, slack_headers(body, int(T0), secret), body, now, **kwargs)


def test_handle_interaction_approves_the_decision_behind_the_button():
    approved = []
    button = rendered_button(render.slack_blocks(surge_incident()), "aiops:approve:")
    status, body = click(button, approve=lambda ident: approved.append(ident) or {"applied": ident})
    assert status == 200 and approved == ["dec-llm-chat-0001"]
    assert body["result"] == {"applied": "dec-llm-chat-0001"} and "Approved by <@U024BE7LH>" in body["reply"]
    assert body["response_url"] == "https://hooks.slack.com/actions/T1/1/abc"


def test_handle_interaction_refuses_forgeries_junk_and_non_approvers():
    button = rendered_button(render.slack_blocks(surge_incident()), "aiops:approve:")
    approved = []
    assert click(button, secret="forged", approve=approved.append)[0] == 401
    assert click(button, now=T0 + 600, approve=approved.append)[0] == 401
    status, body = click({"action_id": "nope"}, approve=approved.append)
    assert status == 400 and body["error"].startswith("slack interaction:")
    assert click(button, approve=approved.append, approvers={"U999"})[0] == 403
    assert approved == []
    status, body = click(button, approve=lambda ident: (_ for _ in ()).throw(KeyError(ident)))
    assert status == 200 and "unknown or has expired" in body["reply"]


def test_handle_interaction_records_feedback():
    incident = xid79_incident()
    notifier = Notifier(NotifierConfig())
    notifier.observe([incident], T0)
    button = rendered_button(render.slack_blocks(incident), "aiops:feedback:down:")
    status, body = click(button, feedback=notifier.record_feedback, fingerprint_of=notifier.fingerprint_of)
    assert status == 200 and body["outcome"] == "counted"
    assert notifier.feedback.usefulness(incident.fingerprint) == (0, 1)
