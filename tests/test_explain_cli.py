"""``aiops explain``: an incident from the log, as text or JSON; unknown ids are one line and exit 2."""

from __future__ import annotations

import json

from click.testing import CliRunner

from aiops.cli import main
from aiops.findings import Entity, Finding
from aiops.incidents import IncidentLog, correlate

T0 = 1_790_000_000.0


def test_explain_prints_the_incident_from_the_state_directory(tmp_path) -> None:
    f = Finding("gpu_faults", "XID_79", Entity(node="n1", gpu="3"), (T0, T0 + 60), "DCGM_FI_DEV_XID_ERRORS", 79.0, None, 5.0,
                "critical", "XID 79 on node n1/GPU 3")
    (inc,) = correlate([f])
    IncidentLog(tmp_path / "incidents.jsonl").append(inc, "opened", T0)
    runner = CliRunner()
    text = runner.invoke(main, ["explain", inc.id[:6], "--state-dir", str(tmp_path)])
    assert text.exit_code == 0 and f"Incident {inc.id}" in text.output and "fell off the bus" in text.output
    as_json = runner.invoke(main, ["explain", inc.id, "--log", str(tmp_path / "incidents.jsonl"), "--json"])
    assert as_json.exit_code == 0 and json.loads(as_json.output)["fingerprint"] == inc.fingerprint
    missing = runner.invoke(main, ["explain", "0000", "--state-dir", str(tmp_path)])
    assert missing.exit_code == 2 and missing.output.strip().endswith("no incident '0000'")
    assert len(missing.output.strip().splitlines()) == 1


def test_simulate_inject_shows_the_slack_message_and_webhook_payload_and_logs_the_incident(tmp_path) -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["simulate", "--inject", "xid79", "--incidents-dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    text = out.output
    assert "GPU_FELL_OFF_BUS (9" in text and " ok " in text  # detected and explained right
    assert "Slack message at" in text and "CRITICAL" in text and "fell off the bus" in text
    assert "Webhook payload at" in text and '"event": "opened"' in text
    (slack,) = tmp_path.glob("slack-*.json")
    blocks = json.loads(slack.read_text())["blocks"]
    assert 0 < len(blocks) <= 50
    incident_id = slack.stem.split("-", 1)[1]
    webhook = json.loads((tmp_path / f"webhook-{incident_id}.json").read_text())
    assert webhook["probable_cause"]["code"] == "GPU_FELL_OFF_BUS"
    explained = runner.invoke(main, ["explain", incident_id, "--log", str(tmp_path / "incidents.jsonl")])
    assert explained.exit_code == 0 and "Cordon and drain node" in explained.output


def test_incidents_dir_without_inject_is_refused_in_one_line() -> None:
    out = CliRunner().invoke(main, ["simulate", "--incidents-dir", "x"])
    assert out.exit_code == 2 and "--incidents-dir: only goes with --inject" in out.output
