"""Which messages to send, and when: dedup, grouping, rate limits, flapping, resolve, feedback.

:class:`Notifier` is a state machine with an explicit ``now`` and no I/O: :meth:`Notifier.observe`
takes the incidents detected at ``now`` and returns the :class:`~aiops.notify.messages.Notification`
values to send; senders (:mod:`aiops.notify.senders`) send them and report back with
:meth:`Notifier.delivered` / :meth:`Notifier.failed`. Its whole state is JSON (:meth:`Notifier.to_json`)
so it survives restarts and can be replayed.

Per fingerprint (the same anomaly codes on the same entity), whatever the channel:

* **dedup**: a fingerprint that is open is not announced again. A re-detection that changes what a
  human would act on (severity, the ranked causes, the suggested actions, the unavailable data) is
  an *update*; one that only moves numbers is not sent, until ``renotify_after`` has passed since
  the last message (a *reminder*).
* **resolve**: an open fingerprint not re-detected for ``resolve_after`` seconds (or passed in with
  ``status="resolved"``) is resolved, and the message that announced it says so.
* **flapping**: a fingerprint that opened more than ``flap_threshold`` times within ``flap_window``
  gets one *flapping* notice; further openings, updates and resolutions are muted until it has not
  opened or resolved for ``flap_stable_for`` seconds (then, if still open, it is announced again).
* **feedback**: 👎 votes mute a fingerprint (see :mod:`aiops.notify.feedback`); a muted incident is
  announced only if it escalates above the severity it had when muted.

Per channel (``slack``, ``webhook``, ``alertmanager``, ...):

* **grouping**: new incidents for the same workload (or, without one, the same node) that open
  within ``group_wait`` seconds of the first are sent as one message; later changes to any of them
  edit that message.
* **rate limits**: at most ``ChannelConfig.rate_limit`` messages per ``rate_window`` on the channel
  and ``NotifierConfig.rate_limit`` over all channels, in any window of that length. What does not
  fit is never dropped silently: it is counted, and one summary ("N more incidents suppressed") is
  the first message sent once there is room again.
* **never lost**: every opening of an incident ends, on every channel, in exactly one *fate*,
  counted in ``aiops_notify_incident_fates_total{channel,fate}``: ``sent`` (in an incident or group
  message), ``flapping`` (in the flapping notice, or muted while flapping), ``feedback`` (muted by
  👎), ``rate_limited`` (counted in a summary) or ``filtered`` (below the channel's ``min_severity``).
  An incident held back by the rate limit is announced late if it changes or is still open after
  ``renotify_after``; one whose message failed to send is tried again after ``retry_failed_after``.

Counters (:meth:`Notifier.counters`) are ``(name, labels, value)`` triples ready for Prometheus.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from aiops.findings import SEVERITIES, Incident, severity_rank
from aiops.notify.feedback import FeedbackPolicy, FeedbackStore
from aiops.notify.messages import Delivery, Flapping, Notification, Suppressed

STATE_VERSION = 1
MAX_EXAMPLES = 20  # incidents a summary names; the rest are counted


@dataclass(frozen=True)
class ChannelConfig:
    name: str  # matches a sender's name: "slack", "webhook", "alertmanager"
    rate_limit: int = 20  # messages per rate_window: about one every 30 s sustained, a burst of 20 still reads
    group: bool = True  # group new incidents per workload/node (machines may prefer one event each: False)
    min_severity: str = "info"  # incidents below are not sent here (their fate is "filtered")

    def __post_init__(self) -> None:
        if self.rate_limit < 1:
            raise ValueError(f"channel {self.name}: rate_limit must be at least 1")
        if self.min_severity not in SEVERITIES:
            raise ValueError(f"channel {self.name}: min_severity {self.min_severity!r}: expected one of {', '.join(SEVERITIES)}")


@dataclass(frozen=True)
class NotifierConfig:
    channels: tuple[ChannelConfig, ...] = (ChannelConfig("slack"),)
    rate_limit: int = 60  # all channels together per rate_window: the ceiling on noise an outage can make
    rate_window: float = 600.0  # 10 minutes: one human "glance" at a channel
    group_wait: float = 30.0  # a node loss raises its GPU, pod and workload incidents within a few ticks
    renotify_after: float = 4 * 3600.0  # an unchanged open incident is repeated twice a working day
    retry_failed_after: float = 300.0  # a message whose sender gave up is tried again this much later
    resolve_after: float = 600.0  # not re-detected for 10 minutes (20 ticks at 30 s): gone, not a gap
    flap_threshold: int = 3  # more than 3 openings in flap_window is flapping
    flap_window: float = 3600.0
    flap_stable_for: float = 1800.0  # quiet for 30 minutes before a flapping incident is trusted again
    feedback: FeedbackPolicy = FeedbackPolicy()

    def __post_init__(self) -> None:
        names = [c.name for c in self.channels]
        if len(set(names)) != len(names):
            raise ValueError(f"notifier channels must have distinct names: {names}")
        if self.rate_limit < 1 or self.rate_window <= 0:
            raise ValueError("notifier rate_limit must be at least 1 and rate_window positive")
        if self.flap_threshold < 1:
            raise ValueError("notifier flap_threshold must be at least 1")


def group_key(incident: Incident) -> str:
    """What incidents are grouped by: the workload, else the node, else the cluster."""
    e = incident.entity
    if e.workload:
        return f"workload:{e.namespace}/{e.workload}"
    if e.node:
        return f"node:{e.node}"
    return "cluster"


def digest(incident: Incident) -> str:
    """What a human would act on; numbers and wording that merely move are left out."""
    cause_codes = [c.code for c in incident.causes]
    actions = [(a.kind, a.mode, json.dumps(dataclasses.asdict(a.target), sort_keys=True)) for a in incident.actions]
    text = json.dumps([incident.severity, cause_codes, actions, sorted(incident.unavailable)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _new_channel() -> dict[str, Any]:
    return {"sent": [], "messages": {}, "groups": {}, "refs": {}, "pending": _new_pending()}


def _new_pending() -> dict[str, Any]:
    return {"incidents": 0, "updates": 0, "since": None, "examples": [], "flapping": 0, "feedback": 0}


class Notifier:
    """See the module docstring. ``state`` is what :meth:`to_json` returned (None: a fresh start)."""

    def __init__(self, config: NotifierConfig = NotifierConfig(), state: Mapping[str, Any] | None = None) -> None:
        self.config = config
        s = copy.deepcopy(dict(state)) if state else {}
        if s and s.get("version") != STATE_VERSION:
            raise ValueError(f"notifier state version {s.get('version')!r}: expected {STATE_VERSION}")
        self.tracks: dict[str, dict[str, Any]] = s.get("tracks", {})
        saved = s.get("channels", {})
        self.channels: dict[str, dict[str, Any]] = {c.name: saved.get(c.name) or _new_channel() for c in config.channels}
        self.global_sent: list[float] = list(s.get("global_sent", []))
        self.feedback = FeedbackStore(config.feedback, s.get("feedback"))
        self._counts: dict[str, int] = dict(s.get("counters", {}))
        self._incidents: dict[str, Incident] = {}

    # -- state ---------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return copy.deepcopy({"version": STATE_VERSION, "tracks": self.tracks, "channels": self.channels,
                              "global_sent": self.global_sent, "feedback": self.feedback.to_json(),
                              "counters": self._counts})

    @classmethod
    def from_json(cls, data: Mapping[str, Any], config: NotifierConfig = NotifierConfig()) -> "Notifier":
        return cls(config, data)

    def incident(self, fingerprint: str) -> Incident:
        """The latest version of an incident the notifier knows (resolved ones until forgotten)."""
        if fingerprint not in self._incidents:
            self._incidents[fingerprint] = Incident.from_json(self.tracks[fingerprint]["incident"])
        return self._incidents[fingerprint]

    def fingerprint_of(self, incident_id: str) -> str | None:
        """The fingerprint behind an incident id (what a Slack button carries), if still known."""
        return next((fp for fp in self.tracks if fp.startswith(incident_id)), None)

    def _store(self, track: dict[str, Any], incident: Incident) -> None:
        track["incident"] = incident.to_json()
        self._incidents[incident.fingerprint] = incident

    # -- counters ------------------------------------------------------------------------------

    def _count(self, name: str, n: int = 1, **labels: str) -> None:
        key = "|".join([name] + [f"{k}={v}" for k, v in sorted(labels.items())])
        self._counts[key] = self._counts.get(key, 0) + n

    def count(self, name: str, **labels: str) -> int:
        """One counter's value (0 when never counted); labels not given are summed over."""
        total = 0
        for metric, labelset, value in self.counters():
            if metric == name and all(labelset.get(k) == v for k, v in labels.items()):
                total += value
        return total

    def counters(self) -> list[tuple[str, dict[str, str], int]]:
        """``(metric name, labels, value)`` for every counter, e.g.
        ``("aiops_notify_messages_total", {"channel": "slack", "kind": "incident", "event": "opened"}, 3)``."""
        out = []
        for key, value in sorted(self._counts.items()):
            name, *pairs = key.split("|")
            out.append((f"aiops_notify_{name}_total", dict(p.split("=", 1) for p in pairs), value))
        return out

    # -- the step ------------------------------------------------------------------------------

    def observe(self, incidents: Iterable[Incident], now: float) -> list[Notification]:
        """The incidents detected at ``now`` (all that are currently detected: one missing for
        ``resolve_after`` is resolved). Returns the messages to send now. Call it every tick, with
        an empty list when nothing is detected, so that groups, resolutions and summaries go out."""
        latest: dict[str, Incident] = {}
        for incident in incidents:  # one per fingerprint: the last open one, else the last one
            self._count("detections")
            before = latest.get(incident.fingerprint)
            if before is None or incident.status == "open" or before.status != "open":
                latest[incident.fingerprint] = incident
        changes: list[tuple[str, str]] = []
        for incident in latest.values():
            changes += self._detect(incident, now)
        seen = {fp for fp, incident in latest.items() if incident.status == "open"}
        changes += self._expire(now, seen)
        out: list[Notification] = []
        for channel in self.config.channels:
            out += self._route(channel, changes, now)
        self.feedback.prune(now)
        return out

    def _detect(self, incident: Incident, now: float) -> list[tuple[str, str]]:
        fp, cfg = incident.fingerprint, self.config
        track = self.tracks.get(fp)
        if incident.status == "resolved":
            if track is None or track["status"] != "open":
                return []
            self._store(track, incident)
            return self._resolve(track, fp, now)
        if track is None or track["status"] == "resolved":
            track = track or {"opens": [], "flapping": False}
            self.tracks[fp] = track
            track.update(status="open", first_seen=now, last_seen=now, last_change=now, resolved_at=None,
                         digest=digest(incident), muted=None)
            self._store(track, incident)
            track["opens"] = [t for t in track["opens"] if t > now - cfg.flap_window] + [now]
            self._count("incidents", event="opened")
            if track["flapping"]:
                track["muted"] = "flapping"
                return [(fp, "muted_flapping")]
            if len(track["opens"]) > cfg.flap_threshold:
                track["flapping"], track["muted"] = True, "flapping"
                self._count("flapping")
                return [(fp, "flapping")]
            if self.feedback.muted(fp, incident.severity, now):
                track["muted"] = "feedback"
                return [(fp, "muted_feedback")]
            return [(fp, "opened")]
        # re-detected while open
        track["last_seen"] = now
        before = track["digest"]
        track["digest"] = digest(incident)
        self._store(track, incident)
        if track["muted"] == "flapping":
            return []
        if track["muted"] == "feedback":
            if self.feedback.muted(fp, incident.severity, now):
                return []
            track["muted"] = None  # escalated past the mute (or the mute ran out): announce it now
            return [(fp, "late")]
        if track["digest"] != before:
            self._count("incidents", event="updated")
            return [(fp, "updated")]
        return [(fp, "seen")]

    def _resolve(self, track: dict[str, Any], fp: str, now: float) -> list[tuple[str, str]]:
        track.update(status="resolved", resolved_at=now, last_change=now)
        incident = self.incident(fp)
        if incident.status != "resolved":
            self._store(track, dataclasses.replace(incident, status="resolved"))
        self._count("incidents", event="resolved")
        return [] if track["muted"] else [(fp, "resolved")]

    def _expire(self, now: float, seen: set[str]) -> list[tuple[str, str]]:
        cfg, out = self.config, []
        for fp in sorted(self.tracks):
            track = self.tracks[fp]
            if track["status"] == "open" and fp not in seen and now - track["last_seen"] >= cfg.resolve_after:
                out += self._resolve(track, fp, now)
            if track["flapping"] and now - track["last_change"] >= cfg.flap_stable_for:
                track["flapping"], track["opens"] = False, []
                self._count("flapping_ended")
                if track["status"] == "open" and track["muted"] == "flapping":
                    track["muted"] = None
                    out.append((fp, "late"))
        referenced = {fp for cs in self.channels.values() for fp in cs["messages"]}
        referenced |= {fp for cs in self.channels.values() for g in cs["groups"].values() for fp in g["members"]}
        for fp in [fp for fp, t in self.tracks.items()
                   if t["status"] == "resolved" and not t["flapping"] and fp not in referenced
                   and now - t["resolved_at"] >= cfg.flap_window]:
            del self.tracks[fp]
            self._incidents.pop(fp, None)
        return out

    # -- per channel ---------------------------------------------------------------------------

    def _route(self, channel: ChannelConfig, changes: list[tuple[str, str]], now: float) -> list[Notification]:
        cs, cfg, name = self.channels[channel.name], self.config, channel.name
        ready: list[dict[str, Any]] = []  # opened and flapping messages, in order
        updates: dict[str, dict[str, str]] = {}  # message key -> {fingerprint: event}
        reminders: dict[str, list[str]] = {}
        for fp, event in changes:
            incident = self.incident(fp)
            wanted = severity_rank(incident.severity) >= severity_rank(channel.min_severity)
            message = cs["messages"].get(fp)
            pending_group = message is not None and not message["announced"] and self._pending_group(cs, message["key"])
            if event == "opened":
                if not wanted:
                    self._count("incident_fates", channel=name, fate="filtered")
                    self._drop(cs, fp, fate="filtered", channel=name)
                    continue
                ready += self._enqueue(channel, fp, now, first=True)
            elif event in ("muted_flapping", "muted_feedback"):
                reason = event.split("_", 1)[1]
                self._count("incident_fates", channel=name, fate=reason)
                self._count("suppressed", channel=name, reason=reason)
                cs["pending"][reason] += 1
            elif event == "flapping":
                if not wanted:
                    self._count("incident_fates", channel=name, fate="filtered")
                    continue
                self._drop(cs, fp, fate="flapping", channel=name)
                ready.append({"kind": "flapping", "event": "flapping", "key": f"flapping:{fp}", "fps": [fp],
                              "changes": [(fp, "flapping")]})
            elif event in ("updated", "late"):
                if message is not None and message["announced"]:
                    updates.setdefault(message["key"], {})[fp] = "updated"
                elif pending_group:
                    pass  # the group, when it goes, shows the latest version
                elif wanted:
                    ready += self._enqueue(channel, fp, now, first=False)
            elif event == "seen":
                if message is None or pending_group:
                    self._count("deduplicated", channel=name)
                elif message["announced"]:
                    if now - message["last_sent"] >= cfg.renotify_after:
                        reminders.setdefault(message["key"], []).append(fp)
                    else:
                        self._count("deduplicated", channel=name)
                else:  # held back by the rate limit, or its send failed: try again after a while
                    wait = cfg.retry_failed_after if message.get("failed") else cfg.renotify_after
                    if now - message["last_try"] >= wait:
                        ready += self._enqueue(channel, fp, now, first=False)
                    else:
                        self._count("deduplicated", channel=name)
            elif event == "resolved":
                if message is None or pending_group:
                    continue  # never announced here, or the pending group will show it resolved
                if message["announced"]:
                    updates.setdefault(message["key"], {})[fp] = "resolved"
                else:
                    cs["messages"].pop(fp, None)  # announced in no message: the summary counted it
        ready += self._due_groups(cs, now)

        candidates: list[dict[str, Any]] = []
        pending = cs["pending"]
        if pending["incidents"] + pending["updates"]:
            candidates.append({"kind": "summary", "event": "suppressed", "key": f"summary:{now:.3f}", "fps": [],
                               "changes": []})
        candidates += ready
        for key, events in updates.items():
            fps = self._members(cs, key)
            resolved_all = all(self.tracks.get(f, {}).get("status") != "open" for f in fps)
            if key in cs["groups"]:
                candidates.append({"kind": "group", "event": "resolved" if resolved_all else "updated", "key": key,
                                   "fps": fps, "changes": sorted(events.items())})
            else:
                candidates.append({"kind": "incident", "event": events[key], "key": key, "fps": [key],
                                   "changes": sorted(events.items())})
        for key, fps in reminders.items():
            if key not in updates:
                candidates.append({"kind": "group" if key in cs["groups"] else "incident", "event": "reminder", "key": key,
                                   "fps": self._members(cs, key), "changes": [(f, "reminder") for f in sorted(fps)]})
        out = []
        for candidate in candidates:
            note = self._emit(channel, candidate, now)
            if note is not None:
                out.append(note)
        self._sweep(cs)
        return out

    def _sweep(self, cs: dict[str, Any]) -> None:
        """Forget messages for resolved incidents that no message shows and no group waits for."""
        for fp in [fp for fp, m in cs["messages"].items()
                   if not m["announced"] and not self._pending_group(cs, m["key"])
                   and self.tracks.get(fp, {}).get("status") != "open"]:
            del cs["messages"][fp]

    @staticmethod
    def _pending_group(cs: dict[str, Any], key: str) -> bool:
        group = cs["groups"].get(key)
        return group is not None and not group["sent"]

    @staticmethod
    def _members(cs: dict[str, Any], key: str) -> list[str]:
        return list(cs["groups"][key]["members"]) if key in cs["groups"] else [key]

    def _leave_group(self, cs: dict[str, Any], fp: str) -> None:
        message = cs["messages"].get(fp)
        if message is None or message["key"] not in cs["groups"]:
            return
        group = cs["groups"][message["key"]]
        if fp in group["members"]:
            group["members"].remove(fp)
        if not group["members"]:
            del cs["groups"][message["key"]]
            cs["refs"].pop(message["key"], None)

    def _drop(self, cs: dict[str, Any], fp: str, *, fate: str, channel: str) -> None:
        """Forget ``fp``'s message; openings still waiting in a group to be announced get ``fate``."""
        message = cs["messages"].get(fp)
        if message is None:
            return
        if message["first"]:
            self._count("incident_fates", message["first"], channel=channel, fate=fate)
        self._leave_group(cs, fp)
        del cs["messages"][fp]

    def _enqueue(self, channel: ChannelConfig, fp: str, now: float, *, first: bool) -> list[dict[str, Any]]:
        """A new message for ``fp``: held in its group's buffer, or ready now. ``first``: this is the
        first try at announcing an opening (its fate is counted when the message goes or is held back)."""
        cs = self.channels[channel.name]
        old = cs["messages"].get(fp)
        if old is not None and not old["announced"] and self._pending_group(cs, old["key"]):
            old["first"] += int(first)  # already waiting in its group, which will show the latest version
            return []
        self._leave_group(cs, fp)
        message = {"key": fp, "announced": False, "first": int(first), "last_sent": None, "last_try": now, "failed": False}
        cs["messages"][fp] = message
        if channel.group and self.config.group_wait > 0:
            wanted = group_key(self.incident(fp))
            key = next((k for k, g in cs["groups"].items() if not g["sent"] and g["group"] == wanted), None)
            if key is None:
                key = f"group:{wanted}@{now:.3f}"
                while key in cs["groups"]:
                    key += "+"
                cs["groups"][key] = {"group": wanted, "members": [], "due": now + self.config.group_wait, "sent": False}
            cs["groups"][key]["members"].append(fp)
            message["key"] = key
            return []
        return [{"kind": "incident", "event": "opened", "key": fp, "fps": [fp], "changes": [(fp, "opened")]}]

    def _due_groups(self, cs: dict[str, Any], now: float) -> list[dict[str, Any]]:
        out = []
        for key in [k for k, g in cs["groups"].items() if not g["sent"] and g["due"] <= now]:
            members = [fp for fp in cs["groups"][key]["members"] if fp in cs["messages"]]
            cs["groups"][key]["members"] = members
            if len(members) == 1:  # a group of one is an ordinary incident message
                fp = members[0]
                del cs["groups"][key]
                cs["messages"][fp]["key"] = fp
                out.append({"kind": "incident", "event": "opened", "key": fp, "fps": [fp], "changes": [(fp, "opened")]})
            elif members:
                out.append({"kind": "group", "event": "opened", "key": key, "fps": list(members),
                            "changes": [(fp, "opened") for fp in members]})
            else:
                del cs["groups"][key]
        return out

    def _room(self, channel: ChannelConfig, now: float) -> bool:
        cs, window = self.channels[channel.name], self.config.rate_window
        cs["sent"] = [t for t in cs["sent"] if t > now - window]
        self.global_sent = [t for t in self.global_sent if t > now - window]
        return len(cs["sent"]) < channel.rate_limit and len(self.global_sent) < self.config.rate_limit

    def _emit(self, channel: ChannelConfig, c: dict[str, Any], now: float) -> Notification | None:
        cs, name = self.channels[channel.name], channel.name
        if not self._room(channel, now):
            self._hold_back(channel, c, now)
            return None
        cs["sent"].append(now)
        self.global_sent.append(now)
        self._count("messages", channel=name, kind=c["kind"], event=c["event"])
        summary = flapping = None
        if c["kind"] == "summary":
            summary = self._summary(channel, now)
            cs["pending"] = _new_pending()
        elif c["kind"] == "flapping":
            cfg = self.config
            self._count("incident_fates", channel=name, fate="flapping")
            flapping = Flapping(opens=len(self.tracks[c["fps"][0]]["opens"]), window=cfg.flap_window,
                                stable_for=cfg.flap_stable_for)
        ref = cs["refs"].get(c["key"], "") if c["event"] != "opened" else ""
        note = Notification(channel=name, kind=c["kind"], event=c["event"], key=c["key"], at=now,
                            incidents=tuple(self.incident(fp) for fp in c["fps"] if fp in self.tracks),
                            changes=tuple(c["changes"]), ref=ref, summary=summary, flapping=flapping)
        if c["kind"] in ("incident", "group"):
            if c["key"] in cs["groups"]:
                cs["groups"][c["key"]]["sent"] = True
            for fp in c["fps"]:
                message = cs["messages"].get(fp)
                if message is not None:
                    if message["first"]:
                        self._count("incident_fates", message["first"], channel=name, fate="sent")
                    message.update(announced=True, first=0, last_sent=now, failed=False)
            self._forget_resolved(cs, c["key"])
        return note

    def _hold_back(self, channel: ChannelConfig, c: dict[str, Any], now: float) -> None:
        """No room: count it for the next summary, and leave its incidents to be announced later."""
        cs, name = self.channels[channel.name], channel.name
        pending = cs["pending"]
        if c["kind"] == "summary":
            return  # stays pending until there is room
        if pending["since"] is None:
            pending["since"] = now
        self._count("suppressed", channel=name, reason="rate_limited")
        if c["kind"] == "flapping":
            firsts = {c["fps"][0]: 1}
        elif c["event"] == "opened":
            firsts = {fp: cs["messages"][fp]["first"] for fp in c["fps"] if fp in cs["messages"]}
        else:
            pending["updates"] += 1
            self._forget_resolved(cs, c["key"])
            return
        if c["key"] in cs["groups"]:
            del cs["groups"][c["key"]]  # its members are now each unannounced, on their own
        for fp, first in firsts.items():
            if first:
                self._count("incident_fates", first, channel=name, fate="rate_limited")
                pending["incidents"] += first
                if len(pending["examples"]) < MAX_EXAMPLES:
                    inc = self.incident(fp)
                    pending["examples"].append([inc.id, inc.severity, inc.title])
            else:
                pending["updates"] += 1
            message = cs["messages"].get(fp)
            if message is not None:
                message.update(key=fp, first=0, last_try=now)
            if self.tracks.get(fp, {}).get("status") != "open":
                cs["messages"].pop(fp, None)

    def _forget_resolved(self, cs: dict[str, Any], key: str) -> None:
        """Drop message records whose incidents are resolved and whose message is done with."""
        members = self._members(cs, key)
        resolved = [fp for fp in members if self.tracks.get(fp, {}).get("status") != "open"]
        if key in cs["groups"]:
            if len(resolved) == len(members):
                for fp in members:
                    cs["messages"].pop(fp, None)
                del cs["groups"][key]
                cs["refs"].pop(key, None)
            return
        for fp in resolved:
            cs["messages"].pop(fp, None)
            cs["refs"].pop(fp, None)

    def _summary(self, channel: ChannelConfig, now: float) -> Suppressed:
        p = self.channels[channel.name]["pending"]
        return Suppressed(channel=channel.name, incidents=p["incidents"], updates=p["updates"],
                          since=p["since"] if p["since"] is not None else now, until=now, limit=channel.rate_limit,
                          window=self.config.rate_window, examples=tuple(tuple(e) for e in p["examples"]),
                          flapping=p["flapping"], feedback=p["feedback"])

    # -- what the senders report ---------------------------------------------------------------

    def delivered(self, notification: Notification, delivery: Delivery) -> None:
        """A sender delivered ``notification``: remember its message ``ref`` so updates edit it."""
        cs = self.channels[notification.channel]
        self._count("deliveries", channel=notification.channel, outcome="ok")
        key = notification.key
        live = key in cs["groups"] or any(m["key"] == key for m in cs["messages"].values())
        if delivery.ref and live:
            cs["refs"][key] = delivery.ref

    def failed(self, notification: Notification, error: Exception) -> None:
        """A sender gave up on ``notification``: its incidents count as not announced, to be tried
        again after ``retry_failed_after`` if they are still detected."""
        cs = self.channels[notification.channel]
        self._count("deliveries", channel=notification.channel, outcome="failed")
        if notification.event not in ("opened", "reminder"):
            return
        if notification.key in cs["groups"]:
            del cs["groups"][notification.key]
        for fp in (i.fingerprint for i in notification.incidents):
            message = cs["messages"].get(fp)
            if message is not None:
                message.update(key=fp, announced=False, failed=True, last_try=notification.at)
        self._sweep(cs)

    # -- feedback ------------------------------------------------------------------------------

    def record_feedback(self, fingerprint: str, vote: str, user: str, now: float) -> str:
        """👍 (``up``) or 👎 (``down``) from ``user`` on an incident. Returns the store's outcome
        (``counted``, ``duplicate``, ``changed`` or ``muted``)."""
        track = self.tracks.get(fingerprint)
        severity = self.incident(fingerprint).severity if track else ""
        outcome = self.feedback.record(fingerprint, vote, user, now, severity)
        self._count("feedback", vote=vote, outcome=outcome)
        return outcome
