"""👍/👎 on incidents, kept per fingerprint, and the muting they cause.

A 👎 says "this alert was noise". After ``FeedbackPolicy.down_to_mute`` of them on the same
fingerprint (the same anomaly codes on the same entity) the fingerprint is muted for
``mute_for`` seconds; while muted, an incident with that fingerprint gets through only at a
*higher* severity than it had when it was muted (an escalation is news). A 👍 records that the
alert was useful and clears the 👎 strikes collected so far. A user's second click within
``revote_window`` replaces their first (a double click is one vote; changing one's mind is allowed).

The store is a plain value holder with explicit ``now`` and a JSON form, so it survives restarts
inside the notifier's state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from aiops.findings import SEVERITIES, severity_rank

VOTES = ("up", "down")


@dataclass(frozen=True)
class FeedbackPolicy:
    down_to_mute: int = 2  # two people (or two occurrences) calling it noise is a pattern, one is an opinion
    mute_for: float = 86400.0  # a day: long enough to stop the noise, short enough to notice a real change
    revote_window: float = 3600.0  # a user's clicks within an hour on one fingerprint count once


class FeedbackStore:
    """Votes per fingerprint: ``{fp: {"up", "down", "strikes", "muted_until", "muted_severity", "votes"}}``."""

    def __init__(self, policy: FeedbackPolicy = FeedbackPolicy(), data: Mapping[str, Any] | None = None) -> None:
        self.policy = policy
        self.data: dict[str, dict[str, Any]] = {fp: dict(rec, votes=dict(rec.get("votes", {})))
                                                for fp, rec in (data or {}).items()}

    def _record(self, fingerprint: str) -> dict[str, Any]:
        return self.data.setdefault(fingerprint, {"up": 0, "down": 0, "strikes": 0, "muted_until": None,
                                                  "muted_severity": "", "votes": {}})

    def record(self, fingerprint: str, vote: str, user: str, now: float, severity: str = "") -> str:
        """Count one vote. Returns what happened: ``counted``, ``duplicate``, ``changed`` or ``muted``
        (this vote muted the fingerprint)."""
        if vote not in VOTES:
            raise ValueError(f"feedback vote {vote!r}: expected up or down")
        if severity and severity not in SEVERITIES:
            raise ValueError(f"feedback severity {severity!r}: expected one of {', '.join(SEVERITIES)}")
        rec = self._record(fingerprint)
        outcome = "counted"
        previous = rec["votes"].get(user) if user else None
        if previous is not None and now - previous[1] < self.policy.revote_window:
            if previous[0] == vote:
                return "duplicate"
            rec[previous[0]] -= 1
            if previous[0] == "down":
                rec["strikes"] = max(0, rec["strikes"] - 1)
            outcome = "changed"
        rec[vote] += 1
        if user:
            rec["votes"][user] = [vote, now]
        if vote == "up":
            rec["strikes"] = 0
            return outcome
        rec["strikes"] += 1
        if rec["strikes"] >= self.policy.down_to_mute:
            rec["strikes"] = 0
            rec["muted_until"] = now + self.policy.mute_for
            rec["muted_severity"] = severity
            return "muted"
        return outcome

    def muted(self, fingerprint: str, severity: str, now: float) -> bool:
        """True while ``fingerprint`` is muted and ``severity`` is no higher than when it was muted."""
        rec = self.data.get(fingerprint)
        if not rec or rec["muted_until"] is None or now >= rec["muted_until"]:
            return False
        return not rec["muted_severity"] or severity_rank(severity) <= severity_rank(rec["muted_severity"])

    def usefulness(self, fingerprint: str) -> tuple[int, int]:
        """(👍, 👎) counted for ``fingerprint``."""
        rec = self.data.get(fingerprint, {})
        return rec.get("up", 0), rec.get("down", 0)

    def prune(self, now: float) -> None:
        """Forget per-user vote times older than the revote window (the counts stay)."""
        for rec in self.data.values():
            rec["votes"] = {u: v for u, v in rec["votes"].items() if now - v[1] < self.policy.revote_window}

    def to_json(self) -> dict[str, Any]:
        return {fp: dict(rec, votes=dict(rec["votes"])) for fp, rec in self.data.items()}
