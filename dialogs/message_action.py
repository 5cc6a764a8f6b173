"""Wiring for "Report a concern" on a Teams message: a compose extension's task module that files a report."""

from __future__ import annotations

from typing import Any

from bot.actor import Actor
from bot.cards.incident import build_confirmation_card
from bot.cards.report_form import build_report_form_card
from bot.incident_service import IncidentService
from bot.people import Role
from bot.policy import Policy
from bot.report_form import (
    author_of,
    form_key,
    form_view,
    message_from_data,
    message_from_payload,
    new_form_token,
    parse_report_form,
)
from bot.wiring import Wiring
from dialogs.report_concern import next_steps

FETCH_TASK, SUBMIT_ACTION = "composeExtension/fetchTask", "composeExtension/submitAction"
COMMAND_ID = "reportConcern"  # the command's id in manifest/manifest.json
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
NOT_SET_UP = "This school is not set up for the eSafety app yet. Please ask your IT team to finish setting it up."
STRANGER = (
    "Sorry, I cannot find you in the school's staff directory, so I cannot take a report here. Please tell "
    "the DSL in person, and ask your IT team to add you."
)
OUT_OF_DATE = (
    "This form is out of date, so nothing was sent. Please close it and choose Report a concern on the message again."
)
UNKNOWN_COMMAND = "Sorry, I can't do that here. Choose Report a concern on a message to report it."


def install(wiring: Wiring) -> None:
    """Needs the incidents feature installed first: the report is filed exactly as the chat files it."""
    service = wiring.features.incidents
    assert service is not None, "install the incidents feature before the message action"
    policy = wiring.policy
    wiring.services.add_answered_invoke(FETCH_TASK, lambda actor, value: _fetch(policy, service, actor, value))
    wiring.services.add_answered_invoke(SUBMIT_ACTION, lambda actor, value: _submit(policy, service, actor, value))


async def _fetch(
    policy: Policy, service: IncidentService, actor: Actor | None, value: dict[str, Any]
) -> dict[str, Any]:
    if (refusal := _refusal(actor, value)) is not None:
        return refusal
    assert actor is not None
    payload = value.get("messagePayload")
    author = await _staff(service, actor, author_of(payload))
    message = message_from_payload(payload, actor.school.tz, author.id if author is not None else None)
    return _task("Report a concern", build_report_form_card(form_view(policy, new_form_token(), message)))


async def _submit(
    policy: Policy, service: IncidentService, actor: Actor | None, value: dict[str, Any]
) -> dict[str, Any]:
    if (refusal := _refusal(actor, value)) is not None:
        return refusal
    assert actor is not None
    raw = value.get("data")
    data: dict[str, Any] = raw if isinstance(raw, dict) else {}
    key = form_key(actor.person.id, data)
    if key is None:
        return _message(OUT_OF_DATE)
    outcome = parse_report_form(data, policy)
    if outcome.report is None:
        view = form_view(policy, data["form"], message_from_data(data), data, outcome.problems)
        return _task("Report a concern", build_report_form_card(view))
    report = outcome.report
    if outcome.about_author:
        named = await service.person(actor, outcome.about_author)
        if named is None:
            report.subject_person_id = None  # not someone the directory knows: kept out by role only
        elif named.has(Role.HEADTEACHER):
            report.subject_kind = "headteacher"  # the policies send a concern about the Headteacher elsewhere
    incident = await service.submit(actor, report, key=key)
    plan = service.plan_for(incident.subject_kind, incident.category, incident.immediate_danger)
    category = policy.category(incident.category)
    guidance = category.guidance if plan.do_not_investigate or category.no_imagery else None
    # The chat's own promise, pointed at the chat: this form closes, the delivery news comes in the 1:1 chat.
    steps = next_steps(
        actor, incident.subject_kind, category.routing, incident.case_roles, where="in your chat with me"
    )
    return _task("Report sent", build_confirmation_card(incident.reference, steps, guidance))


def _refusal(actor: Actor | None, value: dict[str, Any]) -> dict[str, Any] | None:
    if actor is None:
        return _message(NOT_SET_UP)
    if not actor.person.roles:
        return _message(STRANGER)
    if value.get("commandId") != COMMAND_ID:
        return _message(UNKNOWN_COMMAND)
    return None


async def _staff(service: IncidentService, actor: Actor, person_id: str | None) -> Any:
    """The author, when the directory knows them: only then may the reporter say the report is about them."""
    if person_id is None:
        return None
    person = await service.person(actor, person_id)
    return person if person is not None and person.roles else None


def _task(title: str, card: dict[str, Any]) -> dict[str, Any]:
    return {
        "task": {
            "type": "continue",
            "value": {
                "title": title,
                "height": "large",
                "width": "medium",
                "card": {"contentType": ADAPTIVE_CARD, "content": card},
            },
        }
    }


def _message(text: str) -> dict[str, Any]:
    return {"task": {"type": "message", "value": text}}
