"""Pure renderers: an incident (or a notification) in, a JSON-ready ``dict`` out. No I/O, no clock.

* :func:`slack_blocks`: one incident as a Slack Block Kit message (``{"text": ..., "blocks": [...]}``):
  severity, title and where; the probable cause with its confidence and the evidence with numbers;
  other candidate causes; the findings (most severe first); the data that was unavailable; the
  suggested actions with Approve buttons for recommended ones, and 👍/👎 feedback buttons.
* :func:`slack_group_blocks`, :func:`slack_flapping_blocks`, :func:`slack_summary_blocks` and
  :func:`slack_message` (any :class:`~aiops.notify.messages.Notification`).
* :func:`webhook_payload` and :func:`webhook_summary_payload`: our documented JSON
  (``docs/webhook.md``, ``docs/webhook.schema.json``).
* :func:`alertmanager_payload`: alerts for Alertmanager's ``POST /api/v2/alerts``.

Slack's limits are enforced here, not hoped for: every block is built with ``slack_sdk``'s block
classes (whose ``to_dict`` raises on the limits it knows), long text is cut with "…", and what is
left out is said ("…and 190 more findings not shown"). :func:`slack_limit_violations` checks a
rendered message against all the limits below; the golden tests run it on every golden file.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    Option,
    OverflowMenuElement,
    PlainTextObject,
    SectionBlock,
)

from aiops.findings import Action, Cause, Entity, Evidence, Finding, Incident, severity_rank
from aiops.notify.messages import Notification, Suppressed

# Slack's documented Block Kit limits (https://api.slack.com/reference/block-kit).
MAX_BLOCKS = 50  # blocks in one message
MAX_SECTION_TEXT = 3000  # a section's text
MAX_CONTEXT_TEXT = 3000  # one text element of a context block
MAX_CONTEXT_ELEMENTS = 10
MAX_HEADER_TEXT = 150  # a header's plain_text
MAX_BUTTON_TEXT = 75
MAX_ACTION_ID = 255
MAX_BUTTON_VALUE = 2000
MAX_BUTTON_URL = 3000
MAX_ACTIONS_ELEMENTS = 25  # elements in one actions block
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
MAX_CONFIRM_TITLE, MAX_CONFIRM_TEXT, MAX_CONFIRM_BUTTON = 100, 300, 30
# Ours, not Slack's (Slack cuts ``text`` at 40,000): the fallback shown in notifications stays short.
MAX_FALLBACK_TEXT = 3000
MAX_LINE = 500  # one bullet line: a longer summary is cut, so one finding cannot fill a section

SCHEMA_VERSION = 1
ACTION_PREFIX = "aiops"  # every action_id we render starts with "aiops:"
SEVERITY_ICON = {"critical": "🔴", "warning": "🟠", "info": "🔵"}
RESOLVED_ICON = "✅"
ELLIPSIS = "…"
# Actions a human can approve from a message: everything but "investigate", which runs nothing.
NOT_APPROVABLE = frozenset({"investigate"})


# ---------------------------------------------------------------------------------------------
# Small formatting helpers


def _icon(severity: str) -> str:
    return SEVERITY_ICON.get(severity, "⚪")


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in "…" when cut."""
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - 1)]
    # never leave half an escape (``&am``) or a dangling backtick pair behind
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:] and len(cut) - amp <= 5:
        cut = cut[:amp]
    return cut + ELLIPSIS


def escape(text: str) -> str:
    """Slack mrkdwn's three control characters escaped, so user text cannot form links or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def iso(ts: float | None) -> str | None:
    """Unix seconds as ISO-8601/RFC 3339 UTC (``2024-05-01T12:03:04Z``), None stays None."""
    if ts is None or not math.isfinite(ts):
        return None
    moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    text = moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def num(value: float | None) -> str:
    """A number for humans: 4 significant digits, "n/a" for missing or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.4g}"


def _pct(value: float) -> str:
    return f"{value:.0%}"


def approvable(action: Action) -> bool:
    """True for an action a human approves from a message: recommended, and one that runs something."""
    return action.mode == "recommend" and action.kind not in NOT_APPROVABLE


def group_label(entity: Entity) -> str:
    """The workload or node incidents are grouped by (see :func:`aiops.notify.notifier.group_key`)."""
    if entity.workload:
        return f"workload {entity.namespace}/{entity.workload}" if entity.namespace else f"workload {entity.workload}"
    if entity.node:
        return f"node {entity.node}"
    return "the cluster"


def _sorted_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (-severity_rank(f.severity), -f.score if math.isfinite(f.score) else 0.0,
                                           f.code, f.entity, f.window))


def evidence_line(e: Evidence) -> str:
    numbers = ""
    if e.value is not None:
        numbers = f" `{escape(e.metric)}` = {num(e.value)}"
        if e.baseline is not None:
            numbers += f" (baseline {num(e.baseline)}"
            numbers += f", {e.change:+.0%})" if e.change is not None else ")"
    elif e.metric:
        numbers = f" `{escape(e.metric)}`"
    when = f", since {_clock(e.at)}" if e.at is not None else ""
    return truncate(f"• {escape(e.message)}{' —' if numbers else ''}{numbers}{when}", MAX_LINE)


def finding_line(f: Finding) -> str:
    band = ""
    if f.expected_band is not None:
        band = f", expected {num(f.expected_band[0])}–{num(f.expected_band[1])}"
    return truncate(f"• {_icon(f.severity)} *{escape(f.code)}* on {escape(f.entity.label())}: {escape(f.summary)} "
                    f"(observed {num(f.observed)}{band}, score {num(f.score)})", MAX_LINE)


def _cause_line(c: Cause) -> str:
    return truncate(f"• {escape(c.title)} — {_pct(c.confidence)}", MAX_LINE)


def _action_line(index: int, a: Action) -> str:
    how = "needs approval" if approvable(a) else ("runs automatically" if a.mode == "auto" else "for a human")
    radius = f" · blast radius: {escape(a.blast_radius)}" if a.blast_radius else ""
    return truncate(f"{index + 1}. {escape(a.title)} — _{a.mode}, {how}_{radius}", MAX_LINE)


def fallback_text(incident: Incident, event: str = "opened") -> str:
    """The plain ``text`` Slack shows in notifications and where blocks cannot be drawn."""
    cause = incident.probable_cause
    why = f" Probable cause: {cause.title} ({_pct(cause.confidence)})." if cause else ""
    if incident.status == "resolved" or event == "resolved":
        head = f"{RESOLVED_ICON} Resolved: {incident.title}"
    else:
        prefix = {"updated": "Updated: ", "reminder": "Still open: "}.get(event, "")
        head = f"{_icon(incident.severity)} [{incident.severity.upper()}] {prefix}{incident.title}"
    return truncate(f"{head} — {incident.entity.label()}.{why} {len(incident.findings)} finding"
                    f"{'' if len(incident.findings) == 1 else 's'}. Incident {incident.id}.", MAX_FALLBACK_TEXT)


# ---------------------------------------------------------------------------------------------
# Block builders (slack_sdk classes: ``to_dict`` validates what slack_sdk knows of the limits)


def _header(text: str) -> Block:
    return HeaderBlock(text=PlainTextObject(text=truncate(text, MAX_HEADER_TEXT), emoji=True))


def _section(text: str, accessory=None) -> Block:
    return SectionBlock(text=MarkdownTextObject(text=truncate(text, MAX_SECTION_TEXT)), accessory=accessory)


def _context(*texts: str) -> Block:
    elements = [MarkdownTextObject(text=truncate(t, MAX_CONTEXT_TEXT)) for t in texts if t][:MAX_CONTEXT_ELEMENTS]
    return ContextBlock(elements=elements)


def _button(text: str, action_id: str, *, value: str | None = None, url: str | None = None, style: str | None = None,
            confirm: ConfirmObject | None = None) -> ButtonElement:
    if len(action_id) > MAX_ACTION_ID or (value is not None and len(value) > MAX_BUTTON_VALUE):
        raise ValueError(f"button {action_id[:40]!r}: action_id or value over Slack's limit")
    if url is not None and len(url) > MAX_BUTTON_URL:
        url = None  # a link Slack would refuse; the interactive button still works
    return ButtonElement(text=PlainTextObject(text=truncate(text, MAX_BUTTON_TEXT), emoji=True), action_id=action_id,
                         value=value, url=url, style=style, confirm=confirm)


def _compact(data: Mapping[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def action_value(incident: Incident, index: int | None = None) -> str:
    """A button's ``value``: what :func:`aiops.notify.approvals.parse_interaction` reads back."""
    data: dict[str, Any] = {"incident": incident.id, "fingerprint": incident.fingerprint}
    if index is not None:
        data["action"] = index
        decision = incident.actions[index].params.get("decision_id")
        if decision:
            data["decision"] = str(decision)
    return _compact(data)


def approve_buttons(incident: Incident, approve_url: str | Mapping[int, str] | None, *, interactive: bool = True,
                    limit: int = 10) -> list[ButtonElement]:
    """Approve buttons for the first ``limit`` approvable actions: an interactive one (``action_id``
    ``aiops:approve:<incident id>:<action index>``), and a link to the signed approval URL when given."""
    urls = _approve_urls(incident, approve_url)
    buttons: list[ButtonElement] = []
    for index, action in enumerate(incident.actions):
        if not approvable(action) or len(buttons) >= 2 * limit:
            continue
        radius = f" Blast radius: {action.blast_radius}." if action.blast_radius else ""
        confirm = ConfirmObject(title=PlainTextObject(text=truncate("Approve this action?", MAX_CONFIRM_TITLE)),
                                text=PlainTextObject(text=truncate(f"{action.title}.{radius}", MAX_CONFIRM_TEXT)),
                                confirm=PlainTextObject(text="Approve"), deny=PlainTextObject(text="Cancel"))
        if interactive:
            buttons.append(_button(f"✅ Approve: {action.title}", f"{ACTION_PREFIX}:approve:{incident.id}:{index}",
                                   value=action_value(incident, index), style="primary", confirm=confirm))
        if index in urls:
            buttons.append(_button(f"🔗 Approval link: {action.title}", f"{ACTION_PREFIX}:approve_link:{incident.id}:{index}",
                                   value=action_value(incident, index), url=urls[index]))
    return buttons


def _approve_urls(incident: Incident, approve_url: str | Mapping[int, str] | None) -> dict[int, str]:
    """A mapping is per action index; a plain string is the link for the first approvable action."""
    if approve_url is None:
        return {}
    if isinstance(approve_url, str):
        first = next((i for i, a in enumerate(incident.actions) if approvable(a)), None)
        return {} if first is None else {first: approve_url}
    return {int(k): v for k, v in approve_url.items()}


def feedback_buttons(incident: Incident) -> list[ButtonElement]:
    value = action_value(incident)
    return [_button("👍 Useful", f"{ACTION_PREFIX}:feedback:up:{incident.id}", value=value),
            _button("👎 Not useful", f"{ACTION_PREFIX}:feedback:down:{incident.id}", value=value)]


def feedback_menu(incident: Incident) -> OverflowMenuElement:
    """The per-incident 👍/👎 in a group message (one section accessory instead of two buttons)."""
    def value(vote: str) -> str:  # at most 150 characters: 12 + 64 hex digits and the keys fit
        return _compact({"fingerprint": incident.fingerprint, "incident": incident.id, "vote": vote})

    return OverflowMenuElement(action_id=f"{ACTION_PREFIX}:feedback:{incident.id}", options=[
        Option(value=value("up"), text=PlainTextObject(text="👍 Useful", emoji=True)),
        Option(value=value("down"), text=PlainTextObject(text="👎 Not useful", emoji=True)),
    ])


def _actions_blocks(buttons: Sequence[ButtonElement]) -> list[Block]:
    return [ActionsBlock(elements=list(buttons[i:i + MAX_ACTIONS_ELEMENTS]))
            for i in range(0, len(buttons), MAX_ACTIONS_ELEMENTS)]


def pack_lines(heading: str, lines: Sequence[str], max_blocks: int, *, noun: str = "findings",
               total: int | None = None) -> tuple[list[Block], int]:
    """``lines`` packed into at most ``max_blocks`` sections of at most 3,000 characters each, the
    first starting with ``heading``. Lines that do not fit are counted in a closing "…and N more
    {noun} not shown" line. Returns the blocks and how many lines were shown."""
    total = len(lines) if total is None else total
    reserve = 80  # room for the closing line
    texts: list[str] = []
    current = heading
    shown = 0
    for line in lines:
        room = MAX_SECTION_TEXT - reserve
        if len(current) + 1 + len(line) <= room:
            current = f"{current}\n{line}" if current else line
            shown += 1
            continue
        if len(texts) + 1 >= max_blocks:  # no block left for another section
            break
        texts.append(current)
        current = line
        shown += 1
    if shown < total:
        current += f"\n{ELLIPSIS}and {total - shown} more {noun} not shown ({total} in all)"
    texts.append(current)
    return [_section(t) for t in texts[:max_blocks]], shown


def _message(text: str, blocks: Sequence[Block]) -> dict[str, Any]:
    rendered = [b.to_dict() for b in blocks]
    if len(rendered) > MAX_BLOCKS:  # a safety net: the renderers below budget their blocks
        left = len(rendered) - (MAX_BLOCKS - 1)
        rendered = rendered[: MAX_BLOCKS - 1] + [_context(f"{ELLIPSIS}{left} more blocks not shown").to_dict()]
    return {"text": truncate(text, MAX_FALLBACK_TEXT), "blocks": rendered}


# ---------------------------------------------------------------------------------------------
# Slack messages


def slack_blocks(incident: Incident, *, event: str = "opened", approve_url: str | Mapping[int, str] | None = None,
                 interactive: bool = True, feedback: bool = True, max_findings: int | None = 10,
                 links: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One incident as a Block Kit message (``chat.postMessage``/``chat.update``/incoming webhook body).

    ``event`` is ``opened``, ``updated``, ``reminder`` or ``resolved`` (a resolved incident renders
    the resolved variant whatever the event). ``approve_url``: a signed approval link (see
    :func:`aiops.notify.approvals.approval_urls`), either per action index or, as a plain string,
    for the first approvable action. ``interactive`` adds the Approve buttons that post back to the
    Slack app; ``feedback`` the 👍/👎 buttons. ``max_findings``: how many findings to list (None: as
    many as fit in Slack's limits); the rest are counted, never silently dropped. ``links``: extra
    ``{label: url}`` shown at the bottom (Grafana, runbook).
    """
    resolved = incident.status == "resolved" or event == "resolved"
    icon = _icon(incident.severity)
    blocks: list[Block] = []
    if resolved:
        blocks.append(_header(f"{RESOLVED_ICON} Resolved · {incident.title}"))
    else:
        prefix = {"updated": "Updated · ", "reminder": "Still open · "}.get(event, "")
        blocks.append(_header(f"{icon} {incident.severity.upper()} · {prefix}{incident.title}"))
    start, end = incident.window
    when = (f"open {_clock(start)} → {_clock(end)} ({_duration(end - start)})" if resolved
            else f"since {_clock(start)}, last seen {_clock(end)}")
    blocks.append(_context(f"*{escape(incident.entity.label())}*", when, f"incident `{incident.id}`"))

    cause = incident.probable_cause
    if cause is None:
        blocks.append(_section("*Probable cause:* not known — no candidate explained the findings."))
    else:
        evidence = cause.evidence or next((f.evidence for f in _sorted_findings(incident.findings) if f.evidence), ())
        lines = [f"*Probable cause:* {escape(cause.title)} — *{_pct(cause.confidence)}* confidence"]
        lines += [evidence_line(e) for e in evidence[:3]]
        if len(evidence) > 3:
            lines.append(f"{ELLIPSIS}and {len(evidence) - 3} more pieces of evidence")
        blocks.append(_section("\n".join(lines)))
    others = incident.causes[1:]
    if others:
        lines = ["*Other candidate causes:*"] + [_cause_line(c) for c in others[:5]]
        if len(others) > 5:
            lines.append(f"{ELLIPSIS}and {len(others) - 5} more")
        blocks.append(_section("\n".join(lines)))

    actions = [] if resolved else list(incident.actions)
    buttons = [] if resolved else approve_buttons(incident, approve_url, interactive=interactive)
    if feedback:
        buttons += feedback_buttons(incident)
    tail: list[Block] = []
    if incident.unavailable:
        tail.append(_section(truncate("*Data unavailable:* " + ", ".join(escape(u) for u in incident.unavailable)
                                      + " — the explanation could not use it.", MAX_SECTION_TEXT)))
    if actions:
        lines = ["*Suggested actions:*"] + [_action_line(i, a) for i, a in enumerate(actions[:10])]
        if len(actions) > 10:
            lines.append(f"{ELLIPSIS}and {len(actions) - 10} more actions not shown")
        tail += [DividerBlock(), _section("\n".join(lines))]
    tail += _actions_blocks(buttons)
    footer = [f"`aiops explain {incident.id}`"] + [f"<{url}|{escape(label)}>" for label, url in (links or {}).items()]
    tail.append(_context(" · ".join(footer)))

    findings = _sorted_findings(incident.findings)
    limit = len(findings) if max_findings is None else min(max_findings, len(findings))
    if resolved:
        limit = min(limit, 5)
    budget = MAX_BLOCKS - len(blocks) - len(tail)
    if findings:
        heading = f"*Findings ({len(findings)}):*"
        section_blocks, _ = pack_lines(heading, [finding_line(f) for f in findings[:limit]], budget,
                                       total=len(findings))
        blocks += section_blocks
    return _message(fallback_text(incident, "resolved" if resolved else event), blocks + tail)


def slack_group_blocks(incidents: Sequence[Incident], *, changes: Mapping[str, str] | None = None,
                       approve_urls: Mapping[str, Mapping[int, str]] | None = None, interactive: bool = True,
                       feedback: bool = True, max_incidents: int = 15) -> dict[str, Any]:
    """Several incidents on the same workload or node as one message, most severe first.
    ``changes``: ``{fingerprint: event}`` marks what is new in this version of the message;
    ``approve_urls``: ``{fingerprint: {action index: url}}``."""
    changes = changes or {}
    ordered = sorted(incidents, key=lambda i: (i.status == "resolved", -severity_rank(i.severity), i.id))
    open_ones = [i for i in ordered if i.status != "resolved"]
    where = group_label(ordered[0].entity) if ordered else "the cluster"
    if not open_ones:
        head = f"{RESOLVED_ICON} Resolved · {len(ordered)} incidents on {where}"
    else:
        worst = max(open_ones, key=lambda i: severity_rank(i.severity)).severity
        plural = "s" if len(open_ones) != 1 else ""
        head = f"{_icon(worst)} {worst.upper()} · {len(open_ones)} incident{plural} on {where}"
    blocks: list[Block] = [_header(head)]
    blocks.append(_context(f"{len(ordered)} incidents grouped by {escape(where)}",
                           "open one with `aiops explain ID`"))
    buttons: list[ButtonElement] = []
    shown = ordered[:max_incidents]
    for inc in shown:
        cause = inc.probable_cause
        status = f"{RESOLVED_ICON} resolved" if inc.status == "resolved" else _icon(inc.severity) + " " + inc.severity
        new = {"opened": " · 🆕", "updated": " · updated", "resolved": ""}.get(changes.get(inc.fingerprint, ""), "")
        text = (f"*{escape(inc.title)}*{new}\n{status} · {escape(inc.entity.label())} · `{inc.id}` · "
                f"{len(inc.findings)} finding{'s' if len(inc.findings) != 1 else ''}\n"
                + (f"Probable cause: {escape(cause.title)} — {_pct(cause.confidence)}" if cause
                   else "Probable cause: not known"))
        if inc.unavailable:
            text += f"\n_Unavailable: {escape(', '.join(inc.unavailable))}_"
        blocks.append(_section(truncate(text, MAX_SECTION_TEXT), accessory=feedback_menu(inc) if feedback else None))
        if inc.status != "resolved" and len(buttons) < 20:
            buttons += approve_buttons(inc, (approve_urls or {}).get(inc.fingerprint), interactive=interactive, limit=2)
    if len(ordered) > len(shown):
        blocks.append(_context(f"{ELLIPSIS}and {len(ordered) - len(shown)} more incidents not shown ({len(ordered)} in all)"))
    blocks += _actions_blocks(buttons[:20])
    text = f"{head}: " + "; ".join(f"{i.title} ({i.id})" for i in ordered)
    return _message(text, blocks)


def slack_flapping_blocks(incident: Incident, opens: int, window: float, stable_for: float) -> dict[str, Any]:
    """The one notice sent when an incident starts flapping; it is muted until stable."""
    head = f"🔁 Flapping · {incident.title}"
    cause = incident.probable_cause
    blocks = [_header(head),
              _context(f"*{escape(incident.entity.label())}*", f"incident `{incident.id}`"),
              _section(f"This incident opened *{opens} times* in the last {_duration(window)}. Further openings, "
                       f"updates and resolutions are muted until it has been stable for {_duration(stable_for)}."
                       + (f"\n*Probable cause:* {escape(cause.title)} — {_pct(cause.confidence)}" if cause else "")),
              ActionsBlock(elements=feedback_buttons(incident))]
    return _message(f"🔁 Flapping: {incident.title} — {incident.entity.label()} opened {opens} times in "
                    f"{_duration(window)}; muted until stable.", blocks)


def slack_summary_blocks(summary: Suppressed) -> dict[str, Any]:
    """The one message that stands for what the rate limit held back."""
    parts = []
    if summary.incidents:
        parts.append(f"{summary.incidents} more incident{'s' if summary.incidents != 1 else ''}")
    if summary.updates:
        parts.append(f"{summary.updates} update{'s' if summary.updates != 1 else ''}")
    what = " and ".join(parts) or "nothing"
    head = f"⏸ {what} suppressed"
    lines = [f"The rate limit ({summary.limit} messages per {_duration(summary.window)} on `{escape(summary.channel)}`) "
             f"held back {what} between {_clock(summary.since)} and {_clock(summary.until)}."]
    if summary.examples:
        lines.append("*Held back:*")
        lines += [truncate(f"• {_icon(sev)} {escape(title)} (`{ident}`)", MAX_LINE)
                  for ident, sev, title in summary.examples]
        if summary.incidents > len(summary.examples):
            lines.append(f"{ELLIPSIS}and {summary.incidents - len(summary.examples)} more")
    muted = [f"{n} {why}" for n, why in ((summary.flapping, "flapping"), (summary.feedback, "muted by 👎 feedback")) if n]
    blocks = [_header(head), *pack_lines("", lines, 3, noun="incidents")[0]]
    if muted:
        blocks.append(_context("Also muted since the last summary: " + ", ".join(muted)))
    blocks.append(_context("Counted on the agent's /metrics: `aiops_notify_suppressed_total`."))
    return _message(f"{head} (rate limit {summary.limit} per {_duration(summary.window)}).", blocks)


def slack_message(notification: Notification, *, approve_urls: Mapping[str, Mapping[int, str]] | None = None,
                  interactive: bool = True, feedback: bool = True) -> dict[str, Any]:
    """Any notification as a Slack message. ``approve_urls``: ``{fingerprint: {action index: url}}``."""
    n = notification
    urls = approve_urls or {}
    if n.kind == "summary":
        assert n.summary is not None
        return slack_summary_blocks(n.summary)
    if n.kind == "flapping":
        assert n.flapping is not None
        f = n.flapping
        return slack_flapping_blocks(n.incidents[0], f.opens, f.window, f.stable_for)
    if n.kind == "group":
        return slack_group_blocks(n.incidents, changes=dict(n.changes), approve_urls=urls, interactive=interactive,
                                  feedback=feedback)
    incident = n.incidents[0]
    return slack_blocks(incident, event=n.event, approve_url=urls.get(incident.fingerprint), interactive=interactive,
                        feedback=feedback)


def slack_limit_violations(message: Mapping[str, Any]) -> list[str]:
    """Every way ``message`` breaks Slack's Block Kit limits (empty when it is fine)."""
    problems: list[str] = []
    text = message.get("text")
    if not isinstance(text, str) or not text.strip():
        problems.append("no plain-text fallback `text`")
    elif len(text) > MAX_FALLBACK_TEXT:
        problems.append(f"fallback text {len(text)} > {MAX_FALLBACK_TEXT}")
    blocks = message.get("blocks", [])
    if len(blocks) > MAX_BLOCKS:
        problems.append(f"{len(blocks)} blocks > {MAX_BLOCKS}")
    action_ids: list[str] = []
    for n, block in enumerate(blocks):
        where = f"block {n} ({block.get('type')})"
        try:
            Block.parse(block).validate_json()  # slack_sdk's own checks
        except Exception as exc:  # noqa: BLE001 - report, do not raise
            problems.append(f"{where}: {exc}")
        kind = block.get("type")
        if kind == "header" and len(block["text"]["text"]) > MAX_HEADER_TEXT:
            problems.append(f"{where}: header text {len(block['text']['text'])} > {MAX_HEADER_TEXT}")
        if kind == "section":
            if "text" in block and len(block["text"]["text"]) > MAX_SECTION_TEXT:
                problems.append(f"{where}: section text {len(block['text']['text'])} > {MAX_SECTION_TEXT}")
            if "accessory" in block:
                action_ids.append(block["accessory"].get("action_id", ""))
        if kind == "context":
            if len(block["elements"]) > MAX_CONTEXT_ELEMENTS:
                problems.append(f"{where}: {len(block['elements'])} context elements > {MAX_CONTEXT_ELEMENTS}")
            for e in block["elements"]:
                if len(e.get("text", "")) > MAX_CONTEXT_TEXT:
                    problems.append(f"{where}: context text > {MAX_CONTEXT_TEXT}")
        if kind == "actions":
            elements = block["elements"]
            if len(elements) > MAX_ACTIONS_ELEMENTS:
                problems.append(f"{where}: {len(elements)} elements > {MAX_ACTIONS_ELEMENTS}")
            for e in elements:
                action_ids.append(e.get("action_id", ""))
                if len(e.get("text", {}).get("text", "")) > MAX_BUTTON_TEXT:
                    problems.append(f"{where}: button text > {MAX_BUTTON_TEXT}")
                if len(e.get("action_id", "")) > MAX_ACTION_ID:
                    problems.append(f"{where}: action_id > {MAX_ACTION_ID}")
                if len(e.get("value", "")) > MAX_BUTTON_VALUE:
                    problems.append(f"{where}: value > {MAX_BUTTON_VALUE}")
                if len(e.get("url", "")) > MAX_BUTTON_URL:
                    problems.append(f"{where}: url > {MAX_BUTTON_URL}")
    duplicates = {a for a in action_ids if a and action_ids.count(a) > 1}
    if duplicates:
        problems.append(f"action_ids not unique: {sorted(duplicates)}")
    return problems


# ---------------------------------------------------------------------------------------------
# Our webhook


def _number(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _entity_json(e: Entity) -> dict[str, Any]:
    return {"node": e.node, "gpu": e.gpu, "pod": e.pod, "workload": e.workload, "namespace": e.namespace,
            "level": e.level, "label": e.label()}


def _window_json(window: tuple[float, float]) -> dict[str, Any]:
    return {"start": iso(window[0]), "end": iso(window[1])}


def _evidence_json(e: Evidence) -> dict[str, Any]:
    change = _number(e.change)
    return {"metric": e.metric, "message": e.message, "value": _number(e.value), "baseline": _number(e.baseline),
            "change": None if change is None else round(change, 6), "at": iso(e.at)}


def _cause_json(c: Cause) -> dict[str, Any]:
    return {"code": c.code, "title": c.title, "confidence": _number(c.confidence),
            "evidence": [_evidence_json(e) for e in c.evidence]}


def _finding_json(f: Finding) -> dict[str, Any]:
    band = None if f.expected_band is None else [_number(f.expected_band[0]), _number(f.expected_band[1])]
    return {"detector": f.detector, "code": f.code, "severity": f.severity, "entity": _entity_json(f.entity),
            "window": _window_json(f.window), "metric": f.metric, "observed": _number(f.observed), "expected_band": band,
            "score": _number(f.score), "summary": f.summary, "evidence": [_evidence_json(e) for e in f.evidence]}


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


WEBHOOK_EVENTS = ("opened", "updated", "resolved", "reminder", "flapping")


def webhook_payload(incident: Incident, event: str, *, approve_urls: Mapping[int, str] | None = None,
                    links: Mapping[str, str] | None = None, max_findings: int | None = 100) -> dict[str, Any]:
    """Our webhook's JSON for one incident (schema: ``docs/webhook.schema.json``, version 1).

    ``event``: ``opened``, ``updated``, ``resolved``, ``reminder`` (unchanged, re-sent after
    ``renotify_after``) or ``flapping``. Findings beyond ``max_findings`` are left out and counted
    in ``findings_omitted``; everything else is complete.
    """
    if event not in WEBHOOK_EVENTS:
        raise ValueError(f"webhook event {event!r}: expected one of {', '.join(WEBHOOK_EVENTS)}")
    findings = _sorted_findings(incident.findings)
    keep = findings if max_findings is None else findings[:max_findings]
    urls = dict(approve_urls or {})
    cause = incident.probable_cause
    return {
        "schema_version": SCHEMA_VERSION,
        "event": event,
        "incident_id": incident.id,
        "fingerprint": incident.fingerprint,
        "title": incident.title,
        "severity": incident.severity,
        "status": incident.status,
        "entity": _entity_json(incident.entity),
        "window": _window_json(incident.window),
        "probable_cause": _cause_json(cause) if cause else None,
        "confidence": _number(incident.confidence),
        "causes": [_cause_json(c) for c in incident.causes],
        "findings": [_finding_json(f) for f in keep],
        "findings_total": len(findings),
        "findings_omitted": len(findings) - len(keep),
        "actions": [{"index": i, "kind": a.kind, "title": a.title, "mode": a.mode, "target": _entity_json(a.target),
                     "params": _jsonable(dict(a.params)), "blast_radius": a.blast_radius, "approvable": approvable(a),
                     "approval_url": urls.get(i)} for i, a in enumerate(incident.actions)],
        "unavailable": list(incident.unavailable),
        "links": {"explain": f"aiops explain {incident.id}", **dict(links or {})},
    }


def webhook_summary_payload(summary: Suppressed) -> dict[str, Any]:
    """Our webhook's JSON for a rate-limit summary (``event: suppressed``)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "event": "suppressed",
        "channel": summary.channel,
        "suppressed": {"incidents": summary.incidents, "updates": summary.updates, "flapping": summary.flapping,
                       "feedback": summary.feedback},
        "window": _window_json((summary.since, summary.until)),
        "rate_limit": {"messages": summary.limit, "per_seconds": summary.window},
        "examples": [{"incident_id": i, "severity": s, "title": t} for i, s, t in summary.examples],
    }


def webhook_payloads(notification: Notification, *, approve_urls: Mapping[str, Mapping[int, str]] | None = None
                     ) -> list[dict[str, Any]]:
    """The webhook bodies for a notification: one per incident it is about (a group message for
    humans is several machine events), or the one summary."""
    n = notification
    if n.kind == "summary":
        assert n.summary is not None
        return [webhook_summary_payload(n.summary)]
    by_fp = {i.fingerprint: i for i in n.incidents}
    changes = n.changes or tuple((i.fingerprint, n.event) for i in n.incidents)
    out = []
    for fp, event in changes:
        if fp in by_fp:
            event = "flapping" if n.kind == "flapping" else event
            out.append(webhook_payload(by_fp[fp], event if event in WEBHOOK_EVENTS else "updated",
                                       approve_urls=(approve_urls or {}).get(fp)))
    return out


# ---------------------------------------------------------------------------------------------
# Alertmanager


def _alertname(incident: Incident) -> str:
    return "AIOpsIncident"


def alertmanager_payload(incidents: Iterable[Incident], *, valid_for: float = 6 * 3600.0, generator_url: str = "",
                         runbook_url: str = "") -> list[dict[str, Any]]:
    """Alerts for Alertmanager's ``POST /api/v2/alerts`` (its ``postableAlerts``).

    Labels identify the alert and must not change while it lives, so they carry only what the
    fingerprint depends on (the anomaly codes and where) plus the severity for routing:
    ``alertname="AIOpsIncident"``, ``severity``, ``fingerprint`` (the incident id), ``codes``, and
    ``node``/``gpu``/``pod``/``workload``/``namespace`` when set. Open incidents get
    ``endsAt = last seen + valid_for`` (keep ``valid_for`` above the notifier's ``renotify_after``,
    which re-sends them); resolved ones ``endsAt = last seen``.
    ``runbook_url`` may contain ``{code}`` (the probable cause's code, lower case).
    """
    alerts = []
    for inc in incidents:
        codes = sorted({f.code for f in inc.findings})
        labels = {"alertname": _alertname(inc), "severity": inc.severity, "fingerprint": inc.id,
                  "codes": ",".join(codes)}
        for name in ("node", "gpu", "pod", "workload", "namespace"):
            if getattr(inc.entity, name):
                labels[name] = str(getattr(inc.entity, name))
        cause = inc.probable_cause
        description = [f"{inc.entity.label()}: {len(inc.findings)} findings."]
        if cause:
            description.append(f"Probable cause: {cause.title} ({_pct(cause.confidence)}).")
            description += [e.message + (f" ({e.metric}={num(e.value)}, baseline {num(e.baseline)})"
                                         if e.value is not None else "") for e in cause.evidence[:3]]
        if inc.unavailable:
            description.append("Unavailable: " + ", ".join(inc.unavailable) + ".")
        annotations = {"summary": inc.title, "description": " ".join(description), "incident_id": inc.id,
                       "confidence": f"{inc.confidence:.2f}"}
        if cause:
            annotations["probable_cause"] = cause.code
        if runbook_url:
            annotations["runbook_url"] = runbook_url.replace("{code}", (cause.code if cause else "unknown").lower())
        resolved = inc.status == "resolved"
        alert: dict[str, Any] = {"labels": labels, "annotations": annotations, "startsAt": iso(inc.window[0]),
                                 "endsAt": iso(inc.window[1] if resolved else inc.window[1] + valid_for)}
        if generator_url:
            alert["generatorURL"] = generator_url.replace("{id}", inc.id)
        alerts.append(alert)
    return alerts


