"""``aiops explain INCIDENT_ID``: an incident's explanation from the agent's incident log."""

from __future__ import annotations

import json
import os

import click

EXPLAIN_HELP = """Explain one incident: what happened where, the ranked probable causes with their
evidence, the suggested actions (and whether each would be automatic), and the data that was
unavailable.

INCIDENT_ID is the 12-digit id quoted in Slack, webhooks and logs (any unique prefix, or the
full fingerprint). The incident log is STATE_DIR/incidents.jsonl, written by `aiops run` and by
`aiops simulate --inject ... --out DIR`.

\b
Examples:
  aiops explain 3f9a1c2b7d4e --state-dir /var/lib/aiops
  aiops explain 3f9a --log out/incidents/incidents.jsonl --json
"""


@click.command("explain", help=EXPLAIN_HELP)
@click.argument("incident_id")
@click.option("--state-dir", default=lambda: os.environ.get("AIOPS_STATE_DIR", "/var/lib/aiops"), show_default="$AIOPS_STATE_DIR or /var/lib/aiops",
              metavar="DIR", help="The agent's state directory (holds incidents.jsonl).")
@click.option("--log", "log_path", metavar="FILE", help="An incident log file (overrides --state-dir).")
@click.option("--json", "as_json", is_flag=True, help="Print the incident as JSON instead of text.")
def explain(incident_id, state_dir, log_path, as_json) -> None:
    from aiops.cli import _input_errors
    from aiops.incidents import IncidentLog, explain_text
    from simulations.errors import InputError

    def run():
        log = IncidentLog(log_path or os.path.join(state_dir, "incidents.jsonl"))
        try:
            incident = log.find(incident_id)
        except KeyError as exc:
            raise InputError(str(log.path), str(exc.args[0]).split(": ", 1)[-1]) from None
        click.echo(json.dumps(incident.to_json(), indent=2) if as_json else explain_text(incident))

    _input_errors(run)()


def run_injection(kinds: tuple[str, ...], seed: int, out_dir: str | None, console) -> None:
    """``aiops simulate --inject KIND``: simulate the faults on a GPU cluster, run the agent's scan
    every minute, and show what on-call would receive: the incidents, the Slack message and the
    webhook payload (written to ``out_dir`` with the incident log when given)."""
    from pathlib import Path

    import numpy as np
    from rich.table import Table

    from aiops.incidents import IncidentLog
    from aiops.notify.notifier import ChannelConfig, Notifier, NotifierConfig
    from aiops.notify.render import slack_message, webhook_payloads
    from simulations.incident_replay import replay
    from simulations.telemetry import SYNTHETIC_START, FaultSpec, simulate_telemetry

    day = 86_400.0
    rng = np.random.default_rng(seed)
    # One fault every two hours from 10:00 on the second day (the first is the baseline).
    specs = [FaultSpec(kind, at=SYNTHETIC_START + day + 10 * 3600.0 + 7200.0 * i + 60.0 * int(rng.integers(0, 30)))
             for i, kind in enumerate(kinds)]
    telemetry = simulate_telemetry(days=2.0, seed=seed, faults=specs)
    console.print(f"Simulating a 4-node x 8-GPU inference cluster (3 workloads) for 2 days, seed {seed}; "
                  f"the agent's anomaly scan runs every minute", highlight=False)
    notifier = Notifier(NotifierConfig(channels=(ChannelConfig("slack"), ChannelConfig("webhook", group=False))))
    first, last = min(f.start for f in telemetry.faults), max(f.start for f in telemetry.faults)
    result = replay(telemetry, begin=first - 1800.0, until=last + 3600.0, notifier=notifier)

    table = Table(title="Injected faults", title_justify="left")
    for col in ("fault", "where", "at", "detected after", "probable cause (confidence)", "expected", ""):
        table.add_column(col)
    for r in result.faults:
        f = r.fault
        table.add_row(f.kind, f.entity.label(), _hm(f.start),
                      "missed" if r.time_to_detect is None else f"{r.time_to_detect / 60:.0f} min",
                      f"{r.top_cause} ({r.incident.confidence:.0%})" if r.incident else "-", f.expected_cause,
                      "ok" if r.detected and r.cause_correct else "WRONG")
    console.print(table)
    console.print(f"{len(result.incidents)} incident(s), {len(result.false_alarms)} unrelated to any fault, "
                  f"{result.scans} scans", highlight=False)
    out = Path(out_dir) if out_dir else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        log = IncidentLog(out / "incidents.jsonl")
        for at, n in result.notifications:
            for inc in n.incidents:
                log.append(inc, n.event_of(inc.fingerprint), at)
    shown: set[tuple[str, str]] = set()  # (channel, fingerprint): the first message of each incident on each channel
    for at, n in result.notifications:
        if n.kind not in ("incident", "group") or n.event != "opened":
            continue
        fresh = [i for i in n.incidents if (n.channel, i.fingerprint) not in shown]
        if not fresh:
            continue
        shown.update((n.channel, i.fingerprint) for i in fresh)
        if n.channel == "slack":
            message = slack_message(n)
            console.rule(f"Slack message at {_hm(at)} ({len(message['blocks'])} blocks; the text a human sees)")
            console.print(_slack_preview(message), highlight=False, markup=False)
            if out is not None:
                path = out / f"slack-{fresh[0].id}.json"
                path.write_text(json.dumps(message, indent=2))
                console.print(f"Block Kit JSON: {path}", highlight=False)
            continue
        payloads = webhook_payloads(n)
        if out is not None:
            for payload in payloads:
                (out / f"webhook-{payload.get('incident_id', 'summary')}.json").write_text(json.dumps(payload, indent=2))
        console.rule(f"Webhook payload at {_hm(at)} (POST, signed in X-AIOps-Signature)")
        lines = json.dumps(payloads[0], indent=2).splitlines()
        console.print("\n".join(lines[:50]) + (f"\n  ... {len(lines) - 50} more lines" + (f" in {out}" if out else "")
                                              if len(lines) > 50 else ""), highlight=False, markup=False)
    if out is not None:
        console.print(f"wrote {out}/incidents.jsonl and the messages; explain one with: "
                      f"aiops explain ID --log {out}/incidents.jsonl", highlight=False)


def _slack_preview(message: dict) -> str:
    """Block Kit as a terminal would show it: headers, section texts, context and button labels."""
    out = []
    for block in message.get("blocks", []):
        kind = block.get("type")
        if kind == "header":
            out.append(f"# {block['text']['text']}")
        elif kind == "section":
            if "text" in block:
                out.append(block["text"]["text"])
            out.extend(f["text"] for f in block.get("fields", []))
        elif kind == "context":
            out.append("  " + " | ".join(e.get("text", "") for e in block.get("elements", [])))
        elif kind == "actions":
            out.append("  " + "  ".join(f"[{e['text']['text']}]" for e in block.get("elements", []) if "text" in e))
        elif kind == "divider":
            out.append("-" * 40)
    return "\n".join(out)


def _hm(t: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(t, timezone.utc).strftime("%a %H:%M")
