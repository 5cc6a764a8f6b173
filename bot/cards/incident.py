"""Incident cards: the minimal channel alert, the case card for case managers, and the reporter's cards."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from bot.cards.common import card, execute, facts, heading, text, typed
from bot.case_record import ChildRef, entries_for
from bot.incidents import (
    LOCATIONS,
    SEVERITY_LABELS,
    STATUS_LABELS,
    SUBJECT_KINDS,
    Incident,
    IncidentSummary,
    Status,
    age_text,
)

VIEW_VERB = "incident.view"
MAX_EVENTS_SHOWN = 12
SEVERITY_COLOURS = {"critical": "Attention", "high": "Warning", "medium": "Accent", "low": "Default"}


@dataclass(frozen=True)
class Labels:
    """Display names from the policy, resolved by the caller so cards stay pure."""

    category: str
    group: str


@dataclass(frozen=True)
class Option:
    key: str
    label: str


@dataclass(frozen=True)
class CasePart:
    """A feature's section of the case card (referrals, a review, a hold): blocks shown before the chronology
    (they may hold their own ActionSet), and actions offered under "More"."""

    body: list[dict[str, Any]] = field(default_factory=list)
    more: list[dict[str, Any]] = field(default_factory=list)
    close_inputs: list[dict[str, Any]] = field(default_factory=list)  # optional inputs added to the Close form


@dataclass(frozen=True)
class CaseView:
    incident: Incident
    labels: Labels
    now: dt.datetime
    timezone: Any
    can_act: bool
    suggested_actions: list[Option] = field(default_factory=list)
    outcomes: list[Option] = field(default_factory=list)
    escalation_targets: list[Option] = field(default_factory=list)
    refresh_user_ids: list[str] = field(default_factory=list)
    notice: str | None = None
    lado_prompt: bool = False
    children: tuple[ChildRef, ...] = ()
    staff_member: str | None = None
    categories: list[Option] = field(default_factory=list)  # every type, for re-categorising
    can_move: bool = False  # may change what it is about (bot.incidents.may_correct_routing)
    can_link: bool = False  # may link child records (bot.children.may_use_child_records)
    parts: list[CasePart] = field(default_factory=list)  # other features' sections, in registration order


def _local(when: dt.datetime, timezone: Any) -> str:
    return when.astimezone(timezone).strftime("%a %d %b %Y, %H:%M")


def _refresh(token: str, user_ids: list[str]) -> dict[str, Any]:
    return {"refresh_user_ids": user_ids, "refresh_verb": VIEW_VERB, "refresh_data": {"token": token}}


def build_channel_alert_card(
    incident: Incident, labels: Labels, now: dt.datetime, timezone: Any, refresh_user_ids: list[str]
) -> dict[str, Any]:
    """Reference, category group, severity, age and status only: no names, no narrative, ever."""
    body = [
        heading(f"New online-safety concern {incident.reference}"),
        facts(
            [
                ("Type", labels.group),
                ("Severity", SEVERITY_LABELS[incident.severity]),
                ("Reported", f"{_local(incident.reported_at, timezone)} ({age_text(incident.reported_at, now)} ago)"),
                ("Status", STATUS_LABELS[incident.status]),
            ]
        ),
        text("Safeguarding leads: open the case to see details and act.", subtle=True),
    ]
    actions = [execute("Open case", VIEW_VERB, {"token": incident.token})]
    return card(
        body,
        actions,
        fallback_text=f"New online-safety concern {incident.reference}",
        **_refresh(incident.token, refresh_user_ids),
    )


def build_case_notice_card(
    incident: Incident, labels: Labels, now: dt.datetime, timezone: Any, note: str
) -> dict[str, Any]:
    """A 1:1 notice with no details, for people who keep the log but do not manage the case."""
    body = [
        heading(f"Concern {incident.reference} logged"),
        facts(
            [
                ("Type", labels.group),
                ("Severity", SEVERITY_LABELS[incident.severity]),
                ("Reported", _local(incident.reported_at, timezone)),
            ]
        ),
        text(note, subtle=True),
    ]
    return card(body, fallback_text=f"Concern {incident.reference} logged")


def build_case_card(view: CaseView) -> dict[str, Any]:
    """Everything a case manager needs, with the actions they may take; refreshes for the case team."""
    incident = view.incident
    body: list[dict[str, Any]] = []
    if view.notice:
        body.append(text(view.notice, color="Warning", weight="Bolder"))
    title = f"{incident.reference}: {view.labels.category}"
    body.append(heading(title))
    if incident.illegal or incident.immediate_danger:
        body.append(
            text(
                "Urgent. Do not investigate, view, copy or forward any material. Secure the device. "
                "Involve the police where the law may have been broken.",
                color="Attention",
            )
        )
    if view.lado_prompt and incident.is_open:
        body.append(text("This concerns a member of staff. Contact the LADO within one working day.", color="Warning"))
    details = [
        ("Type", view.labels.group),
        ("Severity", SEVERITY_LABELS[incident.severity]),
        ("Status", STATUS_LABELS[incident.status]),
        ("About", SUBJECT_KINDS.get(incident.subject_kind, incident.subject_kind)),
        ("Where", LOCATIONS.get(incident.location or "", "Not given")),
        ("Reported", _local(incident.reported_at, view.timezone)),
        ("Danger now", "Yes" if incident.immediate_danger else "No"),
    ]
    if incident.outcome:
        details.append(("Outcome", incident.outcome))
    body.append(facts(details))
    # Names come from the directory and "when" was typed: shown as text, never as Markdown.
    body.append(typed(incident.owner_name or "Nobody yet", label="Owner", spacing="Small"))
    body.append(typed(incident.reporter_name, label="Reported by", spacing="None"))
    body.append(typed(incident.occurred or "Not given", label="When", spacing="None"))
    if not incident.complete:
        body.append(text("The reporter is still answering questions; details will appear here.", subtle=True))
    for label, value in (
        ("Who is involved", incident.subjects),
        ("What happened", incident.narrative),
        ("Evidence and device", incident.evidence),
        ("Already done", incident.actions_taken),
    ):
        if value:
            body.append(text(f"**{label}**", spacing="Medium"))
            body.append(typed(value, spacing="None"))
    if incident.recorded_actions:
        body.append(text("**Actions recorded**", spacing="Medium"))
        body.append(text("\n".join(f"- {a}" for a in incident.recorded_actions), spacing="None"))
    if view.children or view.staff_member:
        body.append(text("**Linked records**", spacing="Medium"))
        for child in view.children:
            body.append(
                typed(
                    f"{child.name}" + (f", {child.year_group}" if child.year_group else ""),
                    label="Child",
                    spacing="None",
                )
            )
        if view.staff_member:
            body.append(typed(view.staff_member, label="Member of staff", spacing="None"))
    for part in view.parts:
        body.extend(part.body)
    body.extend(_chronology(incident, view.timezone))
    actions: list[dict[str, Any]] = []
    if view.can_act and incident.is_open:
        actions = _case_actions(view)
    elif view.can_act:
        actions = [
            _show(
                "Reopen",
                [_text_input("reopen_reason", "Why is it being reopened?")],
                execute("Reopen case", "incident.reopen", _data(incident)),
            )
        ]
    if view.can_act:
        actions.append(_more(view))
    elif view.can_move and incident.is_open:
        actions.append(
            _show(
                "Change who it is about",
                _move_inputs(view),
                execute("Move case", "incident.move", _data(incident), style="destructive"),
            )
        )
    return card(body, actions, fallback_text=title, **_refresh(incident.token, view.refresh_user_ids))


def _chronology(incident: Incident, timezone: Any) -> list[dict[str, Any]]:
    shown = list(entries_for(incident))[-MAX_EVENTS_SHOWN:]
    if not shown:
        return []
    blocks = [text("**Chronology**", spacing="Medium")]
    for entry in shown:
        # Notes, reasons and names are typed by people: one text-only block per entry.
        recorded = (
            ""
            if abs((entry.recorded_at - entry.happened_at).total_seconds()) < 120
            else f" (recorded {_local(entry.recorded_at, timezone)})"
        )
        blocks.append(typed(f"{_local(entry.happened_at, timezone)}{recorded}: {entry.text}", spacing="None"))
    return blocks


def _data(incident: Incident) -> dict[str, Any]:
    return {"token": incident.token, "version": incident.version}


def _show(title: str, inputs: list[dict[str, Any]], action: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Action.ShowCard", "title": title, "card": _inputs_card(inputs, action)}


def _happened_inputs(view: CaseView, prefix: str) -> list[dict[str, Any]]:
    """When it happened, defaulting to now: the chronology keeps this apart from when it was written down.
    Input ids are unique on a card, so each form has its own `prefix`."""
    local = view.now.astimezone(view.timezone)
    return [
        {
            "type": "Input.Date",
            "id": f"{prefix}_on",
            "label": "When did it happen?",
            "value": local.strftime("%Y-%m-%d"),
            "max": local.strftime("%Y-%m-%d"),
        },
        {"type": "Input.Time", "id": f"{prefix}_time", "label": "Time", "value": local.strftime("%H:%M")},
    ]


def _move_inputs(view: CaseView) -> list[dict[str, Any]]:
    about = [Option(k, label) for k, label in SUBJECT_KINDS.items() if k != view.incident.subject_kind]
    return [
        _choice_set("subject_kind", "Who is the concern about?", about),
        text(
            "The case goes to the case managers the policy names for this, and everyone else loses access at once.",
            subtle=True,
        ),
        _text_input("move_reason", "Reason (goes on the chronology)"),
    ]


def _more(view: CaseView) -> dict[str, Any]:
    """Less frequent actions behind one button: Teams shows at most six on a card."""
    incident = view.incident
    data = _data(incident)
    actions: list[dict[str, Any]] = []
    if view.can_link and incident.is_open:
        actions.append(execute("Link a child", "child.find", {"token": incident.token}))
    if incident.is_open and view.categories:
        types = [o for o in view.categories if o.key != incident.category]
        actions.append(
            _show(
                "Change the type",
                [
                    _choice_set("category", "What type of concern is it?", types),
                    _text_input("category_reason", "Reason (goes on the chronology)"),
                ],
                execute("Change type", "incident.recategorise", data),
            )
        )
    if incident.is_open and view.can_move:
        actions.append(
            _show(
                "Change who it is about",
                _move_inputs(view),
                execute("Move case", "incident.move", data, style="destructive"),
            )
        )
    for part in view.parts:
        actions.extend(part.more)
    actions.append(execute("Export PDF", "case.export", {"token": incident.token, "format": "pdf"}))
    actions.append(execute("Export JSON", "case.export", {"token": incident.token, "format": "json"}))
    return {
        "type": "Action.ShowCard",
        "title": "More",
        "card": {
            "type": "AdaptiveCard",
            "body": [text("Exports go only to you, in your chat with me.", subtle=True)],
            "actions": actions,
        },
    }


def build_moved_card(reference: str, notice: str | None) -> dict[str, Any]:
    """What replaces a case card for someone who no longer handles the case: no details at all."""
    body = [text(notice, color="Warning", weight="Bolder")] if notice else []
    body.append(heading(f"{reference} has moved"))
    body.append(
        text(
            "Other people handle this case now, so its details are no longer shown here. If you need to "
            "know more, speak to your DSL."
        )
    )
    return card(body, fallback_text=f"{reference} has moved")


def _inputs_card(inputs: list[dict[str, Any]], action: dict[str, Any]) -> dict[str, Any]:
    return {"type": "AdaptiveCard", "body": inputs, "actions": [action]}


def _choice_set(input_id: str, label: str, options: list[Option]) -> dict[str, Any]:
    return {
        "type": "Input.ChoiceSet",
        "id": input_id,
        "label": label,
        "isRequired": True,
        "errorMessage": "Please choose one.",
        "choices": [{"title": o.label, "value": o.key} for o in options],
    }


def _text_input(input_id: str, label: str, *, required: bool = True) -> dict[str, Any]:
    block = {"type": "Input.Text", "id": input_id, "label": label, "isMultiline": True, "maxLength": 2000}
    if required:
        block.update(isRequired=True, errorMessage="Please write a few words.")
    return block


def _case_actions(view: CaseView) -> list[dict[str, Any]]:
    incident = view.incident
    data = {"token": incident.token, "version": incident.version}
    actions: list[dict[str, Any]] = []
    if incident.status == Status.NEW:
        actions.append(execute("Take ownership", "incident.own", data, style="positive"))
    actions.append(
        {
            "type": "Action.ShowCard",
            "title": "Add note",
            "card": _inputs_card(
                [_text_input("note", "Note for the chronology"), *_happened_inputs(view, "note")],
                execute("Save note", "incident.note", data),
            ),
        }
    )
    if view.suggested_actions:
        actions.append(
            {
                "type": "Action.ShowCard",
                "title": "Record action",
                "card": _inputs_card(
                    [
                        _choice_set(
                            "action_key", "Action taken (suggested for this kind of concern)", view.suggested_actions
                        ),
                        _text_input("action_note", "Details (optional)", required=False),
                        *_happened_inputs(view, "action"),
                    ],
                    execute("Record", "incident.action", data),
                ),
            }
        )
    if view.escalation_targets:
        actions.append(
            {
                "type": "Action.ShowCard",
                "title": "Escalate",
                "card": _inputs_card(
                    [_choice_set("target", "Escalate to", view.escalation_targets), _text_input("reason", "Reason")],
                    execute("Escalate", "incident.escalate", data, style="destructive"),
                ),
            }
        )
    actions.append(
        {
            "type": "Action.ShowCard",
            "title": "Close",
            "card": _inputs_card(
                [
                    _choice_set("outcome", "Outcome", view.outcomes),
                    _text_input("close_note", "Closing note"),
                    *(block for part in view.parts for block in part.close_inputs),
                ],
                execute("Close case", "incident.close", data),
            ),
        }
    )
    return actions


NOT_ALLOWED_TEXT = (
    "I can't open that case. It may not exist, this card may be out of date, or it may not be one "
    "you handle. If you handle it, type `case` followed by its reference. If you think you should "
    "have access, speak to your DSL."
)


def build_not_allowed_card() -> dict[str, Any]:
    """The one refusal for every way of reaching a case: it names nothing, so it cannot confirm a case exists."""
    return card([text(NOT_ALLOWED_TEXT)], fallback_text="I can't open that case.")


def build_confirmation_card(reference: str, next_steps: list[str], guidance: str | None) -> dict[str, Any]:
    body = [heading(f"Thank you. Your report is {reference}"), text("It is saved.")]
    if guidance:
        body.append(text(guidance, color="Attention", weight="Bolder"))
    body.append(text("**What happens next**", spacing="Medium"))
    body.extend(text(f"- {step}", spacing="None") for step in next_steps)
    body.append(text("Type `my reports` at any time to see where your reports are up to.", subtle=True))
    return card(body, fallback_text=f"Your report is {reference}")


def build_my_reports_card(
    reports: list[IncidentSummary], category_labels: dict[str, str], timezone: Any
) -> dict[str, Any]:
    if not reports:
        return card(
            [heading("Your reports"), text("You have not reported any concerns yet. Type `report` to start.")],
            fallback_text="You have no reports.",
        )
    rows = [
        (
            f"{r.reference}",
            f"{category_labels.get(r.category, r.category)}, "
            f"{_local(r.reported_at, timezone)}: {STATUS_LABELS[r.status]}",
        )
        for r in reports
    ]
    return card(
        [
            heading("Your reports"),
            facts(rows),
            text("Only you and the people handling a report can see it.", subtle=True),
        ],
        fallback_text="Your reports",
    )
