"""The notifier's decisions, replayed with an explicit clock: dedup, reminders, resolve, grouping,
rate limits with their summary, flapping, feedback, restarts; and the two invariants as properties:
never more than the rate limit in any window, and no incident lost."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiops.findings import Entity
from aiops.notify import ChannelConfig, Delivery, DeliveryError, Notifier, NotifierConfig
from aiops.notify.feedback import FeedbackPolicy
from tests.test_notify_render import T0, make_incident


def incident(n: int = 0, *, workload: str = "", node: str = "", severity: str = "warning", code: str = "SLO_BURN"):
    entity = Entity(workload=workload, namespace="serving" if workload else "", node=node or ("" if workload else f"node-{n}"))
    return make_incident([code], entity, title=f"{code} on {entity.label()}", severity=severity)


def single(**kwargs) -> NotifierConfig:
    """One channel, no grouping: the simplest setting to read a scenario in."""
    channel = ChannelConfig("slack", group=False, **{k: kwargs.pop(k) for k in ("rate_limit", "min_severity") if k in kwargs})
    return NotifierConfig(channels=(channel,), **kwargs)


def events(notes):
    return [(n.kind, n.event) for n in notes]


# -- dedup, updates, reminders, resolve ----------------------------------------------------------------------


def test_an_unchanged_re_detection_is_not_sent_again():
    notifier = Notifier(single())
    a = incident(1)
    assert events(notifier.observe([a], T0)) == [("incident", "opened")]
    assert notifier.observe([a], T0 + 30) == []
    assert notifier.observe([dataclasses.replace(a, window=(T0, T0 + 90), title="reworded")], T0 + 60) == []
    assert notifier.count("aiops_notify_deduplicated_total") == 2


def test_a_change_a_human_acts_on_is_an_update_of_the_same_message():
    notifier = Notifier(single())
    a = incident(1)
    first = notifier.observe([a], T0)
    notes = notifier.observe([dataclasses.replace(a, severity="critical")], T0 + 30)
    assert events(notes) == [("incident", "updated")] and notes[0].key == first[0].key
    assert notes[0].incidents[0].severity == "critical"


def test_an_open_incident_is_repeated_after_renotify_after():
    notifier = Notifier(single(renotify_after=3600, resolve_after=7200))
    a = incident(1)
    notifier.observe([a], T0)
    assert notifier.observe([a], T0 + 3599) == []
    assert events(notifier.observe([a], T0 + 3600)) == [("incident", "reminder")]
    assert notifier.observe([a], T0 + 3700) == []


def test_resolved_after_resolve_after_without_re_detection_or_when_told():
    notifier = Notifier(single(resolve_after=300))
    a, b = incident(1), incident(2)
    notifier.observe([a, b], T0)
    assert notifier.observe([b], T0 + 299) == []
    notes = notifier.observe([b], T0 + 300)
    assert events(notes) == [("incident", "resolved")] and notes[0].incidents[0].status == "resolved"
    assert notes[0].key == a.fingerprint
    notes = notifier.observe([dataclasses.replace(b, status="resolved")], T0 + 310)
    assert events(notes) == [("incident", "resolved")] and notes[0].incidents[0].fingerprint == b.fingerprint
    assert events(notifier.observe([a], T0 + 400)) == [("incident", "opened")]  # back: a new opening


# -- grouping ------------------------------------------------------------------------------------------------


def test_incidents_on_one_workload_within_group_wait_are_one_message():
    notifier = Notifier(NotifierConfig(group_wait=30, resolve_after=300))
    a = incident(workload="llm", code="SLO_BURN")
    b = incident(workload="llm", code="QUEUE_DEPTH")
    c = incident(workload="llm", code="KV_CACHE")
    other = incident(workload="embed")
    assert notifier.observe([a], T0) == []
    assert notifier.observe([a, b], T0 + 10) == []
    assert notifier.observe([a, b, c, other], T0 + 20) == []
    notes = notifier.observe([a, b, c, other], T0 + 30)
    assert events(notes) == [("group", "opened")]
    group = notes[0]
    assert {i.fingerprint for i in group.incidents} == {a.fingerprint, b.fingerprint, c.fingerprint}
    assert events(notifier.observe([a, b, c, other], T0 + 50)) == [("incident", "opened")]  # its own group of one
    # a change to one member edits the group's message; the others are shown as they are
    notes = notifier.observe([dataclasses.replace(a, severity="critical"), b, c, other], T0 + 60)
    assert events(notes) == [("group", "updated")] and notes[0].key == group.key
    assert notes[0].changes == ((a.fingerprint, "updated"),) and len(notes[0].incidents) == 3
    # one resolves: still an update; all resolve: the group message is resolved
    notes = notifier.observe([b, c, other], T0 + 360)
    assert events(notes) == [("group", "updated")] and notes[0].changes == ((a.fingerprint, "resolved"),)
    notes = notifier.observe([other], T0 + 700)
    assert events(notes) == [("group", "resolved")]
    assert notifier.channels["slack"]["groups"] == {}


def test_an_incident_that_opens_and_resolves_within_group_wait_is_still_sent():
    notifier = Notifier(NotifierConfig(group_wait=30))
    a = incident(1)
    notifier.observe([a], T0)
    notifier.observe([dataclasses.replace(a, status="resolved")], T0 + 5)
    notes = notifier.observe([], T0 + 30)
    assert events(notes) == [("incident", "opened")] and notes[0].incidents[0].status == "resolved"
    assert notifier.channels["slack"]["messages"] == {}


# -- rate limits ---------------------------------------------------------------------------------------------


def test_overflow_is_summarised_in_one_message_once_there_is_room():
    notifier = Notifier(single(rate_limit=3, rate_window=600, renotify_after=86400, resolve_after=86400))
    many = [incident(i) for i in range(10)]
    notes = notifier.observe(many, T0)
    assert events(notes) == [("incident", "opened")] * 3
    assert notifier.observe(many, T0 + 300) == []
    assert notifier.count("aiops_notify_incident_fates_total", fate="rate_limited") == 7
    notes = notifier.observe(many, T0 + 600)
    assert events(notes)[0] == ("summary", "suppressed")
    summary = notes[0].summary
    assert summary.incidents == 7 and summary.since == T0 and summary.until == T0 + 600
    assert [e[0] for e in summary.examples] == [i.id for i in many[3:]]
    assert notifier.channels["slack"]["pending"]["incidents"] == 0


def test_the_global_limit_spans_channels():
    config = NotifierConfig(channels=(ChannelConfig("slack", group=False, rate_limit=10),
                                      ChannelConfig("webhook", group=False, rate_limit=10)), rate_limit=4)
    notifier = Notifier(config)
    notes = notifier.observe([incident(i) for i in range(3)], T0)
    assert Counter(n.channel for n in notes) == {"slack": 3, "webhook": 1}
    assert notifier.count("aiops_notify_incident_fates_total", channel="webhook", fate="rate_limited") == 2


def test_channel_min_severity_filters_and_an_escalation_gets_through():
    config = NotifierConfig(channels=(ChannelConfig("pager", group=False, min_severity="critical"),
                                      ChannelConfig("slack", group=False)))
    notifier = Notifier(config)
    a = incident(1, severity="warning")
    assert [n.channel for n in notifier.observe([a], T0)] == ["slack"]
    assert notifier.count("aiops_notify_incident_fates_total", channel="pager", fate="filtered") == 1
    notes = notifier.observe([dataclasses.replace(a, severity="critical")], T0 + 30)
    assert sorted((n.channel, n.event) for n in notes) == [("pager", "opened"), ("slack", "updated")]


# -- flapping ------------------------------------------------------------------------------------------------


def test_a_flapping_incident_gets_one_notice_and_is_muted_until_stable():
    notifier = Notifier(single(flap_threshold=3, flap_window=3600, flap_stable_for=1800))
    a = incident(1)
    gone = dataclasses.replace(a, status="resolved")
    seen = []
    t = T0
    for _ in range(3):
        seen += events(notifier.observe([a], t))
        seen += events(notifier.observe([gone], t + 60))
        t += 120
    assert seen == [("incident", "opened"), ("incident", "resolved")] * 3
    notes = notifier.observe([a], t)
    assert events(notes) == [("flapping", "flapping")]
    assert notes[0].flapping.opens == 4
    muted = []
    for _ in range(3):
        muted += notifier.observe([gone], t + 60)
        muted += notifier.observe([a], t + 120)
        t += 120
    assert muted == []
    assert notifier.count("aiops_notify_incident_fates_total", fate="flapping") == 4  # the notice + 3 muted openings
    # open and quiet for flap_stable_for: trusted again, and announced
    assert notifier.observe([a], t + 1000) == []
    notes = notifier.observe([a], t + 1800)
    assert events(notes) == [("incident", "opened")]


# -- feedback ------------------------------------------------------------------------------------------------


def test_two_thumbs_down_mute_a_fingerprint_for_a_day_unless_it_escalates():
    notifier = Notifier(single(resolve_after=60, feedback=FeedbackPolicy(down_to_mute=2, mute_for=86400)))
    a = incident(1, severity="warning")
    gone = dataclasses.replace(a, status="resolved")
    notifier.observe([a], T0)
    assert notifier.record_feedback(a.fingerprint, "down", "ana", T0 + 10) == "counted"
    assert notifier.record_feedback(a.fingerprint, "down", "ana", T0 + 11) == "duplicate"  # a double click
    assert notifier.record_feedback(a.fingerprint, "down", "bo", T0 + 12) == "muted"
    notifier.observe([gone], T0 + 20)
    assert notifier.observe([a], T0 + 100) == []  # muted
    assert notifier.count("aiops_notify_incident_fates_total", fate="feedback") == 1
    notes = notifier.observe([dataclasses.replace(a, severity="critical")], T0 + 130)
    assert events(notes) == [("incident", "opened")]  # escalated above the muted severity
    notifier.observe([gone], T0 + 200)
    assert events(notifier.observe([a], T0 + 86400 + 20)) == [("incident", "opened")]  # the day is over
    assert notifier.count("aiops_notify_feedback_total", vote="down") == 3


def test_a_thumbs_up_records_usefulness_and_clears_strikes():
    notifier = Notifier(single())
    a = incident(1)
    notifier.observe([a], T0)
    notifier.record_feedback(a.fingerprint, "down", "ana", T0)
    notifier.record_feedback(a.fingerprint, "up", "bo", T0)
    assert notifier.record_feedback(a.fingerprint, "down", "cy", T0) == "counted"  # not muted: the 👍 reset it
    assert notifier.feedback.usefulness(a.fingerprint) == (1, 2)
    assert notifier.fingerprint_of(a.id) == a.fingerprint


# -- state -------------------------------------------------------------------------------------------------------


def scenario(notifier: Notifier, steps) -> list:
    out = []
    for t, active in steps:
        for n in notifier.observe(active, t):
            notifier.delivered(n, Delivery(channel=n.channel, key=n.key, ref=f"C1:{t}"))
            out.append((n.channel, n.kind, n.event, n.key, n.ref, n.changes))
    return out


def test_a_restart_from_json_state_changes_nothing():
    config = NotifierConfig(group_wait=30, resolve_after=120, renotify_after=600,
                            channels=(ChannelConfig("slack", rate_limit=2), ChannelConfig("webhook", group=False)))
    a, b, c = incident(workload="llm"), incident(workload="llm", code="QUEUE"), incident(5)
    steps = [(T0, [a]), (T0 + 10, [a, b, c]), (T0 + 40, [a, b, c]), (T0 + 70, [dataclasses.replace(a, severity="critical"), c]),
             (T0 + 300, [c]), (T0 + 700, [c]), (T0 + 1400, [])]
    straight = scenario(Notifier(config), steps)
    first = Notifier(config)
    before = scenario(first, steps[:3])
    restarted = Notifier.from_json(json.loads(json.dumps(first.to_json())), config)
    assert before + scenario(restarted, steps[3:]) == straight
    assert any(kind == "group" for _, kind, *_ in straight)


def test_counters_are_prometheus_shaped():
    notifier = Notifier(single())
    notifier.observe([incident(1)], T0)
    samples = {(name, tuple(sorted(labels.items()))): v for name, labels, v in notifier.counters()}
    assert samples[("aiops_notify_messages_total", (("channel", "slack"), ("event", "opened"), ("kind", "incident")))] == 1
    assert samples[("aiops_notify_incidents_total", (("event", "opened"),))] == 1
    assert all(name.startswith("aiops_notify_") and name.endswith("_total") for name, _ in samples)


# -- properties ---------------------------------------------------------------------------------------------------

POOL = [incident(workload="llm", code=f"C{i}") for i in range(3)] + [incident(i) for i in range(3)]
CONFIG = NotifierConfig(channels=(ChannelConfig("slack", rate_limit=3), ChannelConfig("webhook", rate_limit=2, group=False),
                                  ChannelConfig("pager", rate_limit=5, min_severity="critical", group=False)),
                        rate_limit=6, rate_window=600, group_wait=30, renotify_after=900, resolve_after=120,
                        retry_failed_after=60, flap_threshold=2, flap_window=1800, flap_stable_for=600,
                        feedback=FeedbackPolicy(down_to_mute=2, mute_for=3000))

step = st.tuples(
    st.integers(min_value=0, max_value=400),  # seconds since the last step
    st.lists(st.tuples(st.integers(0, len(POOL) - 1), st.sampled_from(["warning", "critical"]), st.booleans()),
             max_size=6),  # (incident, severity, resolved?)
    st.lists(st.tuples(st.integers(0, len(POOL) - 1), st.sampled_from(["up", "down"]), st.sampled_from(["ana", "bo"])),
             max_size=1),  # feedback clicks
    st.booleans(),  # the senders fail this step
)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=25))
def test_never_more_than_the_rate_limit_in_any_window_and_no_incident_lost(steps):
    notifier = Notifier(CONFIG)
    sent: list = []
    detected: set[str] = set()
    t = T0
    for gap, active, votes, failing in steps:
        t += gap
        incidents = [dataclasses.replace(POOL[i], severity=sev, status="resolved" if gone else "open")
                     for i, sev, gone in active]
        detected |= {i.fingerprint for i in incidents if i.status == "open"}
        for n in notifier.observe(incidents, t):
            if failing:
                notifier.failed(n, DeliveryError("receiver down"))
            else:
                notifier.delivered(n, Delivery(channel=n.channel, key=n.key, ref=f"C1:{t}"))
            sent.append(n)
        for i, vote, user in votes:
            if POOL[i].fingerprint in notifier.tracks:
                notifier.record_feedback(POOL[i].fingerprint, vote, user, t)
    for _ in range(12):  # drain: everything resolves, groups go, summaries find room
        t += 700
        sent += notifier.observe([], t)
    state = json.loads(json.dumps(notifier.to_json()))  # the state is JSON all along

    # 1. the rate limits hold in every window, per channel and over all channels
    def within(times, limit):
        times = sorted(times)
        return all(sum(1 for u in times if s <= u < s + CONFIG.rate_window) <= limit for s in times)

    assert within([n.at for n in sent], CONFIG.rate_limit)
    for channel in CONFIG.channels:
        assert within([n.at for n in sent if n.channel == channel.name], channel.rate_limit)

    # 2. every opening has exactly one fate on every channel, and what was held back was summarised
    opened = notifier.count("aiops_notify_incidents_total", event="opened")
    for channel in CONFIG.channels:
        fates = {f: notifier.count("aiops_notify_incident_fates_total", channel=channel.name, fate=f)
                 for f in ("sent", "rate_limited", "flapping", "feedback", "filtered")}
        assert sum(fates.values()) == opened, (channel.name, fates, opened)
        summaries = [n.summary for n in sent if n.channel == channel.name and n.kind == "summary"]
        assert state["channels"][channel.name]["pending"]["incidents"] == 0
        assert sum(s.incidents for s in summaries) == fates["rate_limited"]
        # from the outside: each incident ever detected shows up in a message or a summary, or was muted
        shown = {i.fingerprint for n in sent if n.channel == channel.name for i in n.incidents}
        summarised = {e[0] for s in summaries for e in s.examples}
        muted = fates["flapping"] + fates["feedback"] + fates["filtered"]
        for fp in detected:
            assert fp in shown or fp[:12] in summarised or muted or len(summarised) >= 20, (channel.name, fp)

    # 3. once everything has resolved, nothing is left waiting or remembered but the flapping history
    assert all(t["status"] == "resolved" for t in notifier.tracks.values())
    for channel in CONFIG.channels:
        assert state["channels"][channel.name]["messages"] == {} and state["channels"][channel.name]["groups"] == {}
