"""Cards for web-filter change requests: dialog choices, summary, approval, apply, log. Pure functions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bot.cards.common import card, command_button, execute, heading, submit, text, typed, typed_facts
from bot.filtering import (
    AUDIENCE_LABELS,
    KIND_LABELS,
    STATUS_LABELS,
    Audience,
    Draft,
    FilterRequest,
    Kind,
    LogEntry,
    Status,
    audience_text,
    domain_display,
    effect_words,
)

LOG_ACTION_LABELS = {
    "requested": "Requested",
    "refused": "Refused (never-unblock list)",
    "linked": "Linked to earlier request",
    "approved": "Approved",
    "declined": "Declined",
    "info_requested": "More information asked for",
    "info_given": "More information given",
    "applied": "Applied",
    "apply_failed": "Applying failed",
    "expired": "Time up",
    "reverted": "Ended (reverted)",
    "concern_reported": "Filter failure reported",
    "retry": "Apply retried",
}


def when(value: dt.datetime | None, tz: dt.tzinfo) -> str:
    if value is None:
        return "-"
    local = value.astimezone(tz)
    return local.strftime("%a %d %b %Y, %H:%M")


def day(value: dt.date | None) -> str:
    return value.strftime("%a %d %b %Y") if value else "Not for a lesson"


def _action(
    title: str, verb: str, data: dict[str, Any], *, style: str | None = None, inputs: bool = False
) -> dict[str, Any]:
    """Action.Execute with an Action.Submit fallback carrying the same verb, for clients without Universal Actions."""
    action = execute(title, verb, data, style=style, associated_inputs="auto" if inputs else None)
    action["fallback"] = submit(title, {"verb": verb, **data}, style=style)
    return action


def build_choice_card(question: str, options: list[tuple[str, str]], hint: str | None = None) -> dict[str, Any]:
    """A question with one button per answer; typing the answer works too."""
    body = [text(question, weight="Bolder")]
    if hint:
        body.append(text(hint, subtle=True, spacing="Small"))
    return card(body, [submit(title, {"answer": answer}) for title, answer in options], fallback_text=question)


def build_kind_card() -> dict[str, Any]:
    return build_choice_card(
        "What would you like to do?",
        [(KIND_LABELS[k], str(k)) for k in Kind],
        hint="Type `cancel` at any time to stop. Nothing is sent until you submit.",
    )


def build_audience_card() -> dict[str, Any]:
    return build_choice_card("Who is it for?", [(AUDIENCE_LABELS[a], str(a)) for a in Audience])


def _audience_text(audience: str | None, year_groups: tuple[str, ...] | list[str]) -> str:
    return audience_text(audience, year_groups)


def _duration_text(until: dt.datetime | None, tz: dt.tzinfo, allows: bool) -> str:
    if not allows:
        return "Permanent"
    return f"Temporary, until {when(until, tz)}" if until else "Permanent"


def request_effect(request: FilterRequest, tz: dt.tzinfo, host_below: bool = False) -> str:
    """The real effect of a stored request, in the words all three cards use."""
    return effect_words(
        request.action,
        request.scope,
        request.rule_target,
        request.domain,
        request.audience,
        request.year_groups,
        request.until,
        tz,
        host_below=host_below,
    )


def build_summary_card(
    draft: Draft, tz: dt.tzinfo, needs_headteacher: bool, *, host_below: bool = False
) -> dict[str, Any]:
    """The requester checks everything before it goes to the approvers."""
    kind = Kind(draft.kind or "")  # the summary comes after the kind is chosen; none is no Kind (ValueError)
    pairs = [
        ("Request", KIND_LABELS[kind]),
        ("Site", domain_display(draft.domain or "")),
        ("Address", draft.url or "-"),
        ("For", _audience_text(draft.audience, draft.year_groups)),
        ("Reason", draft.reason or "-"),
    ]
    if draft.allows:
        pairs += [
            ("Lesson", day(draft.lesson_date)),
            ("How long", _duration_text(draft.until, tz, True)),
            ("Previewed", "Yes" if draft.previewed else "No"),
        ]
    body = [heading("Check your request"), typed_facts(pairs)]
    if draft.scope:  # the narrowest rule the school's filter can enforce, chosen for the requester
        body.append(
            typed(
                effect_words(
                    "allow" if draft.allows else "block",
                    draft.scope,
                    draft.target,
                    draft.domain or "",
                    draft.audience,
                    draft.year_groups,
                    draft.until if draft.allows else None,
                    tz,
                    host_below=host_below,
                ),
                weight="Bolder",
                spacing="Medium",
            )
        )
    if needs_headteacher:
        body.append(
            text(
                "This is a social networking, messaging or chat site, so the Headteacher must approve it.",
                spacing="Medium",
            )
        )
    body.append(text("You can't approve your own request. You'll get a message when it is decided.", subtle=True))
    actions = [submit("Send request", {"answer": "submit"}, style="positive"), submit("Cancel", {"answer": "cancel"})]
    return card(body, actions, fallback_text="Check your filter request and send it.")


def _request_facts(request: FilterRequest, tz: dt.tzinfo, *, names: bool) -> list[tuple[str, str]]:
    pairs = [
        ("Reference", request.reference),
        ("Request", KIND_LABELS[Kind(request.kind)]),
        ("Site", domain_display(request.domain)),
        ("Address", request.url),
        ("For", _audience_text(request.audience, request.year_groups)),
    ]
    if names:
        pairs.append(("Asked by", request.requester_name))
        pairs.append(("Reason", request.reason))
    if request.allows:
        pairs += [("Lesson", day(request.lesson_date)), ("How long", _duration_text(request.until, tz, True))]
        if names:
            pairs.append(("Previewed by requester", "Yes" if request.previewed else "No"))
    pairs.append(("Status", STATUS_LABELS[Status(request.status)]))
    if names and request.approver_name:
        pairs.append(("Decided by", f"{request.approver_name}, {when(request.decided_at, tz)}"))
    if names and request.decision_note:
        pairs.append(("Note", request.decision_note))
    if request.applied_at:
        pairs.append(("Applied", when(request.applied_at, tz)))
    if request.status == Status.FAILED and request.backend_result:
        pairs.append(("Filter problem", request.backend_result))
    if request.reverted_at:
        pairs.append(("Ended", when(request.reverted_at, tz)))
    return pairs


def _related_block(related: list[FilterRequest], tz: dt.tzinfo, host_below: bool) -> list[dict[str, Any]]:
    """Other requests for the same site: the approver decides this one knowing what else is asked for or in place."""
    if not related:
        return []
    site = domain_display(related[0].domain)
    items: list[dict[str, Any]] = [text(f"Other requests for {site}", weight="Bolder", spacing="Medium")]
    for other in related[:10]:
        line = (
            f"{other.reference} ({STATUS_LABELS[Status(other.status)].lower()}): "
            f"{request_effect(other, tz, host_below)}"
        )
        items.append(typed(line, subtle=True, spacing="Small"))
    if len(related) > 10:
        items.append(text(f"And {len(related) - 10} more.", subtle=True, spacing="Small"))
    return items


def build_approval_card(
    request: FilterRequest,
    tz: dt.tzinfo,
    approver_ids: list[str] | None = None,
    *,
    related: list[FilterRequest] | None = None,
    host_below: bool = False,
) -> dict[str, Any]:
    """For filtering approvers: approve, decline with a reason, or ask for more information. With approver_ids,
    Teams refreshes the card for each of them when it is shown, so a request decided by one approver shows as
    decided to the others too. `related`: the other waiting or active requests for the same site."""
    data = {"reference": request.reference}
    body = [
        heading(f"Filter request {request.reference}"),
        typed_facts(_request_facts(request, tz, names=True)),
        typed(request_effect(request, tz, host_below), weight="Bolder", spacing="Medium"),
        *_related_block(related or [], tz, host_below),
    ]
    if request.needs_headteacher:
        body.append(
            text(
                "Social networking, messaging or chat: only the Headteacher can approve this.",
                weight="Bolder",
                spacing="Medium",
            )
        )
    actions: list[dict[str, Any]] = []
    if request.status in (Status.PENDING, Status.INFO_REQUESTED):
        body.append(
            {
                "type": "Input.Text",
                "id": "note",
                "isMultiline": True,
                "maxLength": 500,
                "label": "Reason for declining, or your question (optional when approving)",
                "placeholder": "For example: please use the BBC Bitesize page instead",
            }
        )
        actions = [
            _action("Approve", "filter.approve", data, style="positive"),
            _action("Decline", "filter.decline", data, style="destructive", inputs=True),
            _action("Ask for more information", "filter.ask", data, inputs=True),
        ]
    return card(
        body,
        actions,
        fallback_text=f"Filter request {request.reference} needs a decision.",
        refresh_verb="filter.card" if approver_ids else None,
        refresh_user_ids=approver_ids,
        refresh_data=data,
    )


def build_request_card(
    request: FilterRequest, tz: dt.tzinfo, title: str | None = None, *, host_below: bool = False
) -> dict[str, Any]:
    """The current state of a request, with names: for the requester and approvers."""
    body = [
        heading(title or f"Filter request {request.reference}"),
        typed_facts(_request_facts(request, tz, names=True)),
        typed(request_effect(request, tz, host_below), spacing="Medium"),
    ]
    return card(
        body, fallback_text=f"Filter request {request.reference}: {STATUS_LABELS[Status(request.status)].lower()}."
    )


def build_info_request_card(request: FilterRequest, question: str) -> dict[str, Any]:
    """For the requester: the approver's question and a box to answer it."""
    data = {"reference": request.reference}
    body = [
        heading(f"A question about your filter request {request.reference}"),
        text(f"Site: {domain_display(request.domain)}"),
        typed(f'"{question}"', spacing="Medium"),
        {
            "type": "Input.Text",
            "id": "answer",
            "isMultiline": True,
            "maxLength": 1000,
            "label": "Your answer",
            "isRequired": True,
            "errorMessage": "Please write an answer",
        },
    ]
    return card(
        body,
        [_action("Send answer", "filter.reply", data, inputs=True)],
        fallback_text=f"An approver has a question about {request.reference}.",
    )


def _rule_text(request: FilterRequest) -> str:
    """The rule itself, as a technician types it into the filter."""
    verb = "Allow" if request.allows else "Block"
    if request.scope == "url":
        return f"{verb} the page {request.rule_target} only"
    if request.scope == "host":
        return f"{verb} the host {domain_display(request.rule_target)} only"
    return f"{verb} {domain_display(request.domain)} and its subdomains"


def build_apply_card(request: FilterRequest, tz: dt.tzinfo, host_below: bool = False) -> dict[str, Any]:
    """For technicians (also posted in their channel): what to change. No names and no reasons."""
    body = [
        heading(f"Please apply filter change {request.reference}"),
        typed_facts(
            [
                ("Change", _rule_text(request)),
                ("For", _audience_text(request.audience, request.year_groups)),
                ("How long", _duration_text(request.until, tz, request.allows)),
            ]
        ),
        typed(request_effect(request, tz, host_below), weight="Bolder", spacing="Medium"),
        text("It has been approved. Make the change in the school's filter, then press the button.", spacing="Medium"),
    ]
    if request.until:
        body.append(text("I will remind you to remove it when the time is up.", subtle=True))
    return card(
        body,
        [_action("Mark as applied", "filter.applied", {"reference": request.reference}, style="positive")],
        fallback_text=f"Filter change {request.reference} is ready to apply.",
    )


def build_remove_card(request: FilterRequest, tz: dt.tzinfo) -> dict[str, Any]:
    """For technicians: a temporary unblock's time is up and must be taken out by hand."""
    body = [
        heading(f"Time is up for {request.reference}"),
        typed_facts([("Change to remove", _rule_text(request)), ("Ended at", when(request.until, tz))]),
        text("Please remove this unblock from the school's filter, then press the button.", spacing="Medium"),
    ]
    return card(
        body,
        [_action("Mark as removed", "filter.removed", {"reference": request.reference}, style="positive")],
        fallback_text=f"Please remove the temporary unblock {request.reference}.",
    )


def build_failure_card(request: FilterRequest, tz: dt.tzinfo, error: str, what: str) -> dict[str, Any]:
    """For technicians and the online-safety lead: the filter could not make an approved change."""
    body = [
        heading(f"Filter change {request.reference} failed"),
        typed_facts(
            [
                ("Change", f"{what} {domain_display(request.rule_target)}"),
                ("Problem", error[:300]),
                ("Status", STATUS_LABELS[Status(request.status)]),
            ]
        ),
        text("I tried several times. Please check the filter server, then press Try again.", spacing="Medium"),
    ]
    return card(
        body,
        [_action("Try again", "filter.retry", {"reference": request.reference})],
        fallback_text=f"Filter change {request.reference} failed.",
    )


def build_log_card(entries: list[LogEntry], tz: dt.tzinfo, shown: int = 15) -> dict[str, Any]:
    """Recent change-log entries, newest first, and a button for the CSV export."""
    body: list[dict[str, Any]] = [heading("Web filter change log")]
    if not entries:
        body.append(text("Nothing has been requested or changed yet."))
    for entry in entries[:shown]:
        label = LOG_ACTION_LABELS.get(entry.action, entry.action)
        line = f"{entry.reference or '-'} · {label} · {domain_display(entry.domain)} · {entry.actor_name}"
        body.append(typed(line, label=when(entry.at, tz), spacing="Small"))  # names and details are typed text
        if entry.detail:
            body.append(typed(entry.detail[:200], subtle=True, spacing="None"))
    if len(entries) > shown:
        body.append(
            text(
                f"Showing the latest {shown} of {len(entries)} entries. Export the CSV for all of them.",
                subtle=True,
                spacing="Medium",
            )
        )
    return card(
        body,
        [command_button("Export as CSV", "filter log csv")] if entries else None,
        fallback_text="Web filter change log.",
    )
