"""The values that pass between the notifier, the renderers and the senders.

* :class:`Notification`: one message for one channel, decided by :class:`aiops.notify.notifier.Notifier`:
  an incident (``kind="incident"``), several incidents on the same workload or node sent together
  (``"group"``), a flapping notice (``"flapping"``) or a rate-limit summary (``"summary"``).
* :class:`Suppressed`: what a summary says: how many messages the rate limit held back, and what
  was muted since the last summary.
* :class:`Delivery`: what a sender reports back (``ref`` identifies the posted message, so a later
  update edits it rather than posting again).
* :class:`DeliveryError`: a sender gave up; its message is one line that names the destination
  (with any secret in the URL left out) and the last status, never a secret.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiops.findings import Incident

KINDS = ("incident", "group", "flapping", "summary")
# Message-level events. "reminder": an unchanged open incident re-sent after ``renotify_after``;
# "flapping": the incident opens and resolves too often and is muted until stable; "suppressed":
# a rate-limit summary.
EVENTS = ("opened", "updated", "resolved", "reminder", "flapping", "suppressed")


@dataclass(frozen=True)
class Suppressed:
    """A rate-limit summary for one channel, covering ``[since, until]``."""

    channel: str
    incidents: int  # newly opened incidents that were not announced (the rate limit was reached)
    updates: int  # other messages not sent: updates, reminders, resolutions, re-announcements
    since: float
    until: float
    limit: int  # the limit that was reached: messages per ``window`` seconds
    window: float
    examples: tuple[tuple[str, str, str], ...] = ()  # (incident id, severity, title), oldest first, at most 20
    flapping: int = 0  # incident openings muted because they were flapping, since the last summary
    feedback: int = 0  # incident openings muted by 👎 feedback, since the last summary

    @property
    def total(self) -> int:
        return self.incidents + self.updates


@dataclass(frozen=True)
class Flapping:
    """Why an incident is muted: it opened ``opens`` times within ``window`` seconds."""

    opens: int
    window: float
    stable_for: float  # it is announced again after this long without opening or resolving


@dataclass(frozen=True)
class Notification:
    """One message for one channel. ``key`` is the message's identity on the channel: the
    incident's fingerprint, ``group:...`` for a group, ``flapping:<fingerprint>`` or ``summary:...``."""

    channel: str
    kind: str  # one of KINDS
    event: str  # one of EVENTS
    key: str
    at: float  # when the notifier decided it (unix seconds)
    incidents: tuple[Incident, ...] = ()  # the current state of every incident the message shows
    changes: tuple[tuple[str, str], ...] = ()  # (fingerprint, event): the incidents this message is about
    ref: str = ""  # the channel's reference to the message this one edits ("" = post a new one)
    summary: Suppressed | None = None
    flapping: Flapping | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"notification kind {self.kind!r}: expected one of {', '.join(KINDS)}")
        if self.event not in EVENTS:
            raise ValueError(f"notification event {self.event!r}: expected one of {', '.join(EVENTS)}")

    def event_of(self, fingerprint: str) -> str:
        """The event for one incident in this message (``updated`` when it is shown but unchanged)."""
        return dict(self.changes).get(fingerprint, "updated")


@dataclass(frozen=True)
class Delivery:
    """A sender's receipt: ``ref`` names the posted message on its channel (Slack: ``channel:ts``)."""

    channel: str
    key: str
    ref: str = ""
    status: int = 0  # the last HTTP status (0 when not over HTTP or nothing was sent)
    attempts: int = 1


class DeliveryError(Exception):
    """A sender gave up. ``str()`` is one line naming the destination and the last status."""

    def __init__(self, message: str, *, status: int = 0, attempts: int = 1) -> None:
        super().__init__(" ".join(message.split()))
        self.status, self.attempts = status, attempts
