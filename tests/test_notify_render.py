"""Rendering incidents: Slack Block Kit (golden files, checked against Slack's limits), our webhook
JSON (checked against docs/webhook.schema.json) and Alertmanager's v2 alerts.

Regenerate the golden files with ``AIOPS_UPDATE_GOLDEN=1 pytest tests/test_notify_render.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from datetime import datetime
from pathlib import Path

import pytest

from aiops.findings import Action, Cause, Entity, Evidence, Finding, Incident, fingerprint
from aiops.notify import render
from aiops.notify.approvals import approval_urls
from aiops.notify.messages import Flapping, Notification, Suppressed

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden" / "notify"
T0 = 1714564800.0  # 2024-05-01T12:00:00Z
APPROVAL_KEY = b"test-approval-key"


# -- incidents used across the notify tests ---------------------------------------------------------


def make_incident(codes: list[str], entity: Entity, *, title: str, severity: str = "warning", window=(T0, T0 + 300),
                  findings: tuple[Finding, ...] | None = None, causes: tuple[Cause, ...] = (),
                  actions: tuple[Action, ...] = (), unavailable: tuple[str, ...] = (), status: str = "open") -> Incident:
    fp = fingerprint(frozenset(codes), entity)
    if findings is None:
        findings = tuple(Finding(detector="test", code=c, entity=entity, window=window, metric=f"metric_{c.lower()}",
                                 observed=2.0, expected_band=(0.0, 1.0), score=2.0, severity=severity,
                                 summary=f"{c} seen") for c in codes)
    return Incident(id=fp[:12], fingerprint=fp, title=title, entity=entity, window=window, severity=severity,
                    findings=findings, causes=causes, actions=actions, unavailable=unavailable, status=status)


def xid79_incident() -> Incident:
    node = Entity(node="gpu-a-07", gpu="3")
    window = (T0, T0 + 240)
    xid = Evidence(metric="DCGM_FI_DEV_XID_ERRORS", message="XID 79 reported: the GPU has fallen off the bus",
                   value=79.0, baseline=0.0, at=T0 + 12)
    gone = Evidence(metric="DCGM_FI_DEV_GPU_UTIL", message="GPU 3 stopped reporting metrics", value=None, baseline=87.0,
                    at=T0 + 30)
    restarts = Evidence(metric="kube_pod_container_status_restarts_total", message="3 pods on the node restarted",
                        value=3.0, baseline=0.0, at=T0 + 45)
    findings = (
        Finding(detector="gpu_fault", code="XID_79", entity=node, window=window, metric="DCGM_FI_DEV_XID_ERRORS",
                observed=79.0, expected_band=None, score=10.0, severity="critical",
                summary="GPU 3 reported XID 79 (GPU has fallen off the bus)", evidence=(xid,)),
        Finding(detector="stale_metrics", code="STALE_METRICS", entity=node, window=window, metric="DCGM_FI_DEV_GPU_UTIL",
                observed=float("nan"), expected_band=(60.0, 95.0), score=3.0, severity="warning",
                summary="No GPU utilisation samples for 4 minutes", evidence=(gone,)),
        Finding(detector="forecast_band", code="POD_RESTARTS", entity=Entity(node="gpu-a-07", pod="llm-chat-7f9c",
                                                                              workload="llm-chat", namespace="serving"),
                window=window, metric="kube_pod_container_status_restarts_total", observed=3.0, expected_band=(0.0, 0.0),
                score=4.5, severity="warning", summary="llm-chat pods on gpu-a-07 restarted 3 times", evidence=(restarts,)),
    )
    causes = (Cause(code="GPU_FELL_OFF_BUS", title="GPU 3 on gpu-a-07 fell off the PCIe bus (XID 79)", confidence=0.92,
                    evidence=(xid, gone, restarts)),
              Cause(code="DRIVER_CRASH", title="NVIDIA driver crash", confidence=0.06),
              Cause(code="NODE_POWER", title="Node power or thermal event", confidence=0.02))
    actions = (Action(kind="cordon_drain", target=Entity(node="gpu-a-07"), title="Cordon and drain gpu-a-07",
                      mode="recommend", params={"node": "gpu-a-07"}, blast_radius="1 node, 8 GPUs, 3 pods"),
               Action(kind="investigate", target=Entity(node="gpu-a-07"), title="Check `dmesg` on gpu-a-07 for NVRM errors",
                      mode="recommend"))
    return make_incident(["XID_79", "STALE_METRICS", "POD_RESTARTS"], node, title="GPU lost on gpu-a-07 (XID 79)",
                         severity="critical", window=window, findings=findings, causes=causes, actions=actions,
                         unavailable=("kernel logs (dmesg)", "NVIDIA bug report"))


def surge_incident() -> Incident:
    where = Entity(workload="llm-chat", namespace="serving")
    window = (T0 + 600, T0 + 900)
    rate = Evidence(metric="vllm:request_rate", message="Requests per second doubled in 10 minutes", value=240.0,
                    baseline=120.0, at=T0 + 610)
    queue = Evidence(metric="vllm:num_requests_waiting", message="Queue depth rising", value=85.0, baseline=4.0, at=T0 + 640)
    latency = Evidence(metric="vllm:time_to_first_token_seconds:p95", message="p95 time to first token over the SLO",
                       value=2.4, baseline=0.8, at=T0 + 700)
    findings = (
        Finding(detector="forecast_band", code="DEMAND_ABOVE_FORECAST", entity=where, window=window,
                metric="vllm:request_rate", observed=240.0, expected_band=(100.0, 150.0), score=3.2, severity="warning",
                summary="Request rate 240/s is above the forecast's 95% band (100–150/s)", evidence=(rate,)),
        Finding(detector="slo_burn", code="SLO_BURN", entity=where, window=window,
                metric="vllm:time_to_first_token_seconds:p95", observed=2.4, expected_band=(0.0, 1.0), score=2.4,
                severity="critical", summary="TTFT p95 2.4 s burns the 1 s SLO 14× faster than budgeted",
                evidence=(latency,)),
        Finding(detector="stl_residual", code="QUEUE_DEPTH", entity=where, window=window, metric="vllm:num_requests_waiting",
                observed=85.0, expected_band=(0.0, 10.0), score=5.1, severity="warning",
                summary="85 requests waiting <b>&</b> growing", evidence=(queue,)),
    )
    causes = (Cause(code="TRAFFIC_SURGE", title="Traffic surge beyond provisioned capacity", confidence=0.81,
                    evidence=(rate, queue, latency)),
              Cause(code="ROLLOUT_REGRESSION", title="Regression in the latest rollout", confidence=0.12),
              Cause(code="KV_CACHE_PRESSURE", title="KV-cache pressure from longer prompts", confidence=0.07))
    actions = (Action(kind="scale_up", target=where, title="Scale llm-chat from 4 to 7 replicas", mode="recommend",
                      params={"from": 4, "to": 7, "decision_id": "dec-llm-chat-0001"}, blast_radius="+3 replicas, +3 GPUs"),
               Action(kind="investigate", target=where, title="Compare traffic by client", mode="recommend"))
    return make_incident(["DEMAND_ABOVE_FORECAST", "SLO_BURN", "QUEUE_DEPTH"], where,
                         title="Traffic surge on llm-chat", severity="critical", window=window, findings=findings,
                         causes=causes, actions=actions)


def resolved_incident() -> Incident:
    where = Entity(node="gpu-b-02", gpu="5")
    window = (T0 + 1200, T0 + 3000)
    clocks = Evidence(metric="DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", message="HW thermal slowdown active", value=1.0,
                      baseline=0.0, at=T0 + 1210)
    temp = Evidence(metric="DCGM_FI_DEV_GPU_TEMP", message="GPU temperature", value=91.0, baseline=68.0, at=T0 + 1200)
    finding = Finding(detector="gpu_fault", code="THERMAL_THROTTLE", entity=where, window=window,
                      metric="DCGM_FI_DEV_GPU_TEMP", observed=91.0, expected_band=(55.0, 80.0), score=2.1,
                      severity="warning", summary="GPU 5 throttled by heat at 91 °C", evidence=(temp, clocks))
    return make_incident(["THERMAL_THROTTLE"], where, title="Thermal throttling on gpu-b-02/GPU 5", severity="warning",
                         window=window, findings=(finding,),
                         causes=(Cause(code="THERMAL", title="Cooling problem on gpu-b-02", confidence=0.7,
                                       evidence=(temp, clocks)),),
                         actions=(Action(kind="cordon_drain", target=Entity(node="gpu-b-02"), title="Cordon gpu-b-02"),),
                         status="resolved")


def huge_incident(n: int = 200) -> Incident:
    where = Entity(workload="batch-embed", namespace="jobs")
    window = (T0, T0 + 3600)
    findings = tuple(
        Finding(detector="stl_residual", code=f"LATENCY_{i:03d}", entity=Entity(pod=f"batch-embed-{i:04d}",
                                                                             workload="batch-embed", namespace="jobs"),
                window=window, metric="request_latency_seconds:p99", observed=1.0 + i / 10, expected_band=(0.1, 0.5),
                score=1.0 + (i % 17) / 3, severity=("critical" if i % 50 == 0 else "warning"),
                summary=f"Pod batch-embed-{i:04d} p99 latency {1.0 + i / 10:.1f} s is far above its band " + "x" * 80)
        for i in range(n))
    causes = tuple(Cause(code=f"CAUSE_{i}", title=f"Candidate cause number {i} " + "y" * 200, confidence=0.5 / (i + 1))
                   for i in range(12))
    actions = tuple(Action(kind="restart_pod", target=f.entity, title=f"Restart {f.entity.pod}", mode="recommend")
                    for f in findings[:30])
    return make_incident([f.code for f in findings], where, title="Latency anomalies across batch-embed " + "z" * 200,
                         severity="critical", window=window, findings=findings, causes=causes, actions=actions,
                         unavailable=tuple(f"metric {i}" for i in range(40)))


# -- golden files ---------------------------------------------------------------------------------------


def check_golden(name: str, data) -> None:
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    path = GOLDEN / name
    if os.environ.get("AIOPS_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} missing: run with AIOPS_UPDATE_GOLDEN=1"
    assert path.read_text(encoding="utf-8") == text, f"{name} differs from its golden file (AIOPS_UPDATE_GOLDEN=1 to accept)"


def surge_urls() -> dict[int, str]:
    return approval_urls(surge_incident(), "https://aiops.example.com", APPROVAL_KEY, now=T0 + 900)


SLACK_GOLDENS = {
    "slack_xid79_node_loss.json": lambda: render.slack_blocks(
        xid79_incident(), links={"Grafana": "https://grafana.example.com/d/gpu?var-node=gpu-a-07"}),
    "slack_traffic_surge_approval.json": lambda: render.slack_blocks(surge_incident(), approve_url=surge_urls()),
    "slack_resolved.json": lambda: render.slack_blocks(resolved_incident(), event="resolved"),
    "slack_huge_truncated.json": lambda: render.slack_blocks(huge_incident()),
    "slack_huge_all_that_fit.json": lambda: render.slack_blocks(huge_incident(), max_findings=None),
    "slack_group.json": lambda: render.slack_group_blocks(
        [xid79_incident(), dataclasses.replace(surge_incident(), entity=Entity(node="gpu-a-07"))],
        changes={xid79_incident().fingerprint: "opened"}),
    "slack_summary.json": lambda: render.slack_summary_blocks(Suppressed(
        channel="slack", incidents=7, updates=3, since=T0, until=T0 + 600, limit=10, window=600.0,
        examples=(("abc123def456", "critical", "GPU lost on gpu-a-07 (XID 79)"),
                  ("0123456789ab", "warning", "Thermal throttling on gpu-b-02/GPU 5")), flapping=2, feedback=1)),
    "slack_flapping.json": lambda: render.slack_flapping_blocks(resolved_incident(), opens=4, window=3600, stable_for=1800),
}


@pytest.mark.parametrize("name", sorted(SLACK_GOLDENS))
def test_slack_message_matches_its_golden_file(name):
    check_golden(name, SLACK_GOLDENS[name]())


@pytest.mark.parametrize("name", sorted(SLACK_GOLDENS))
def test_every_golden_slack_message_is_within_block_kit_limits(name):
    message = json.loads((GOLDEN / name).read_text(encoding="utf-8"))
    assert render.slack_limit_violations(message) == []
    # and the hard numbers, spelled out, in case the checker itself were wrong
    blocks = message["blocks"]
    assert message["text"].strip() and len(message["text"]) <= 3000
    assert len(blocks) <= 50
    for block in blocks:
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text" and len(block["text"]["text"]) <= 150
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= 3000
        if block["type"] == "actions":
            assert len(block["elements"]) <= 25
            for e in block["elements"]:
                assert len(e["text"]["text"]) <= 75 and len(e["action_id"]) <= 255 and len(e.get("value", "")) <= 2000


def test_golden_directory_has_nothing_stale():
    expected = set(SLACK_GOLDENS) | {"webhook_surge_opened.json", "alertmanager_xid79.json"}
    assert {p.name for p in GOLDEN.glob("*.json")} == expected


def test_huge_incident_is_truncated_and_says_how_much_was_left_out():
    message = render.slack_blocks(huge_incident())
    text = json.dumps(message, ensure_ascii=False)
    assert "190 more findings not shown (200 in all)" in text
    assert "and 6 more" in text  # 11 other candidate causes, five shown
    assert "20 more actions not shown" in text
    headers = [b for b in message["blocks"] if b["type"] == "header"]
    assert headers[0]["text"]["text"].endswith("…") and len(headers[0]["text"]["text"]) == 150
    every = render.slack_blocks(huge_incident(), max_findings=None)
    assert len(every["blocks"]) <= 50 and render.slack_limit_violations(every) == []
    assert shown_and_left_out(every) == (200, 0)  # 200 lines fit in 50 blocks of 3,000 characters


def shown_and_left_out(message) -> tuple[int, int]:
    sections = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section" and "LATENCY_" in b["text"]["text"]]
    shown = sum(line.startswith("• ") for text in sections for line in text.split("\n"))
    found = re.search(r"and (\d+) more findings not shown", json.dumps(message))
    return shown, int(found.group(1)) if found else 0


def test_very_many_findings_still_fit_in_fifty_blocks():
    message = render.slack_blocks(huge_incident(2000), max_findings=None)
    assert len(message["blocks"]) <= 50
    assert render.slack_limit_violations(message) == []
    assert "more findings not shown (2000 in all)" in json.dumps(message)
    shown, left = shown_and_left_out(message)
    assert shown + left == 2000 and shown > 100


def test_surge_has_an_approve_button_carrying_incident_and_action_and_a_signed_link():
    incident = surge_incident()
    message = render.slack_blocks(incident, approve_url=surge_urls())
    buttons = [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]
    approve = next(b for b in buttons if b["action_id"] == f"aiops:approve:{incident.id}:0")
    assert json.loads(approve["value"]) == {"incident": incident.id, "fingerprint": incident.fingerprint, "action": 0,
                                            "decision": "dec-llm-chat-0001"}
    assert approve["style"] == "primary" and "confirm" in approve
    link = next(b for b in buttons if b["action_id"].startswith("aiops:approve_link:"))
    assert link["url"].startswith("https://aiops.example.com/approvals/dec-llm-chat-0001?expires=")
    # "investigate" runs nothing: no approve button for it
    assert not any(b["action_id"] == f"aiops:approve:{incident.id}:1" for b in buttons)
    assert {b["action_id"] for b in buttons} >= {f"aiops:feedback:up:{incident.id}", f"aiops:feedback:down:{incident.id}"}


def test_user_text_cannot_inject_mentions_or_links():
    message = render.slack_blocks(surge_incident())
    text = json.dumps(message)
    assert "<b>" not in text and "&lt;b&gt;&amp;&lt;/b&gt;" in text


def test_resolved_variant_has_no_approve_buttons_and_says_resolved():
    message = render.slack_blocks(resolved_incident())
    assert message["blocks"][0]["text"]["text"].startswith("✅ Resolved")
    assert message["text"].startswith("✅ Resolved")
    assert "aiops:approve" not in json.dumps(message)


def test_incident_without_causes_says_so():
    incident = dataclasses.replace(resolved_incident(), causes=(), status="open")
    assert "not known" in json.dumps(render.slack_blocks(incident))


def test_slack_message_dispatches_on_the_kind():
    inc = xid79_incident()
    single = Notification(channel="slack", kind="incident", event="updated", key=inc.fingerprint, at=T0, incidents=(inc,))
    assert render.slack_message(single)["blocks"][0]["text"]["text"].startswith("🔴 CRITICAL · Updated ·")
    flap = Notification(channel="slack", kind="flapping", event="flapping", key="flapping:x", at=T0, incidents=(inc,),
                        flapping=Flapping(opens=4, window=3600, stable_for=1800))
    assert "opened *4 times*" in json.dumps(render.slack_message(flap), ensure_ascii=False)


def test_limit_checker_catches_what_it_should():
    bad = {"text": "", "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}] * 51}
    problems = render.slack_limit_violations(bad)
    assert any("fallback" in p for p in problems) and any("51 blocks" in p for p in problems)
    assert any("header text 151" in p for p in problems)
    buttons = [{"type": "button", "text": {"type": "plain_text", "text": "b"}, "action_id": "same"}] * 26
    problems = render.slack_limit_violations({"text": "t", "blocks": [{"type": "actions", "elements": buttons}]})
    assert any("26 elements" in p for p in problems) and any("not unique" in p for p in problems)


def test_truncate_never_exceeds_the_limit_nor_splits_an_escape():
    assert render.truncate("abc", 3) == "abc"
    assert render.truncate("abcdef", 4) == "abc…"
    assert render.truncate("ab &amp; cd", 6) == "ab …"


# -- webhook ------------------------------------------------------------------------------------------------


def webhook_schema():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "docs" / "webhook.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


@pytest.mark.parametrize("make,event", [(xid79_incident, "opened"), (surge_incident, "updated"),
                                        (resolved_incident, "resolved"), (huge_incident, "reminder"),
                                        (xid79_incident, "flapping")])
def test_webhook_payload_follows_the_documented_schema(make, event):
    payload = render.webhook_payload(make(), event, approve_urls={0: "https://aiops.example.com/approvals/x"})
    errors = sorted(webhook_schema().iter_errors(json.loads(json.dumps(payload))), key=str)
    assert not errors, errors[0]


def test_webhook_summary_follows_the_documented_schema():
    summary = Suppressed(channel="webhook", incidents=2, updates=1, since=T0, until=T0 + 60, limit=5, window=600.0,
                         examples=(("abc", "warning", "t"),))
    assert not list(webhook_schema().iter_errors(render.webhook_summary_payload(summary)))


def test_webhook_payload_golden_and_its_fields():
    payload = render.webhook_payload(surge_incident(), "opened", approve_urls=surge_urls())
    check_golden("webhook_surge_opened.json", payload)
    assert payload["schema_version"] == 1 and payload["window"] == {"start": "2024-05-01T12:10:00Z",
                                                                     "end": "2024-05-01T12:15:00Z"}
    assert payload["probable_cause"]["code"] == "TRAFFIC_SURGE" and payload["confidence"] == 0.81
    assert payload["actions"][0]["approval_url"].startswith("https://aiops.example.com/approvals/dec-llm-chat-0001")
    assert payload["findings"][0]["severity"] == "critical"  # most severe first
    datetime.fromisoformat(payload["findings"][0]["evidence"][0]["at"])


def test_webhook_payload_nan_becomes_null_and_many_findings_are_counted():
    payload = render.webhook_payload(xid79_incident(), "opened")
    stale = next(f for f in payload["findings"] if f["code"] == "STALE_METRICS")
    assert stale["observed"] is None
    json.dumps(payload, allow_nan=False)
    big = render.webhook_payload(huge_incident(), "opened")
    assert big["findings_total"] == 200 and big["findings_omitted"] == 100 and len(big["findings"]) == 100


def test_webhook_payload_rejects_unknown_events():
    with pytest.raises(ValueError, match="webhook event"):
        render.webhook_payload(xid79_incident(), "exploded")


def test_group_notification_is_one_webhook_payload_per_changed_incident():
    a, b = xid79_incident(), surge_incident()
    note = Notification(channel="webhook", kind="group", event="updated", key="group:x", at=T0, incidents=(a, b),
                        changes=((b.fingerprint, "resolved"),))
    payloads = render.webhook_payloads(note)
    assert [(p["incident_id"], p["event"]) for p in payloads] == [(b.id, "resolved")]


# -- Alertmanager -------------------------------------------------------------------------------------------


def test_alertmanager_payload_is_v2_postable_alerts():
    alerts = render.alertmanager_payload([xid79_incident(), resolved_incident()],
                                         generator_url="https://aiops.example.com/incidents/{id}",
                                         runbook_url="https://runbooks.example.com/gpu#{code}")
    check_golden("alertmanager_xid79.json", alerts)
    first, second = alerts
    assert first["labels"] == {"alertname": "AIOpsIncident", "severity": "critical", "fingerprint": xid79_incident().id,
                               "codes": "POD_RESTARTS,STALE_METRICS,XID_79", "node": "gpu-a-07", "gpu": "3"}
    assert all(isinstance(v, str) for a in alerts for v in {**a["labels"], **a["annotations"]}.values())
    assert first["annotations"]["summary"] == "GPU lost on gpu-a-07 (XID 79)"
    assert first["annotations"]["runbook_url"] == "https://runbooks.example.com/gpu#gpu_fell_off_bus"
    assert first["generatorURL"] == f"https://aiops.example.com/incidents/{xid79_incident().id}"
    assert first["startsAt"] == "2024-05-01T12:00:00Z" and first["endsAt"] == "2024-05-01T18:04:00Z"  # open: + valid_for
    assert second["endsAt"] == "2024-05-01T12:50:00Z"  # resolved: ends at the last detection
    for alert in alerts:
        assert datetime.fromisoformat(alert["startsAt"]) <= datetime.fromisoformat(alert["endsAt"])
        assert set(alert) <= {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}


def test_the_examples_in_docs_webhook_md_follow_the_schema():
    text = (ROOT / "docs" / "webhook.md").read_text(encoding="utf-8")
    examples = [json.loads(block.split("```", 1)[0]) for block in text.split("```json\n")[1:]]
    assert [e["event"] for e in examples] == ["opened", "suppressed"]
    validator = webhook_schema()
    for example in examples:
        assert not list(validator.iter_errors(example))
    # the documented incident example is what the renderer makes (less the findings it trims)
    rendered = render.webhook_payload(surge_incident(), "opened", approve_urls=surge_urls())
    assert set(examples[0]) == set(rendered)
    assert examples[0]["actions"] == rendered["actions"]


def test_all_lists_exactly_the_public_names():
    import types

    import aiops.notify as notify

    public = {n for n, v in vars(notify).items() if not n.startswith("_") and not isinstance(v, types.ModuleType)}
    assert set(notify.__all__) == public and len(notify.__all__) == len(set(notify.__all__))
