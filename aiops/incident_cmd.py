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
