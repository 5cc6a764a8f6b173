"""Wiring for the filtering feature: commands, card actions, dialogs and work handlers."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from bot.actor import Actor, CardAction, CardActionRun, CardReply, Command, Turn
from bot.cards.filtering import build_log_card
from bot.config import SchoolConfig
from bot.filtering import ConcurrentChange, FilterBackend, FilterRules, IncidentFiler
from bot.filtering_service import APPLY_KIND, REVERT_KIND, FilterService, log_csv
from bot.wiring import Features, Wiring
from dialogs.engine import ConversationDialog
from dialogs.filter_request import FILTER_DIALOG, filter_conversation

if TYPE_CHECKING:
    from bot.incident_service import IncidentService

REFERENCE = re.compile(r"^FR-\d{4,}$")


class IncidentFlowFiler:
    """Files a technical concern through the incidents feature's service (installed before this one)."""

    def __init__(self, incidents: IncidentService) -> None:
        self._incidents = incidents

    async def file_technical_concern(
        self, actor: Actor, category_key: str, summary_text: str, *, key: str | None = None
    ) -> str:
        from bot.incident_service import ReportInput  # the incidents feature; only reached when it is installed

        report = ReportInput(
            subject_kind="unknown",
            category=category_key,
            immediate_danger=False,
            location="in_school",
            narrative=summary_text,
        )
        incident = await self._incidents.submit(actor, report, key=key)
        return incident.reference


def incident_filer(features: Features) -> IncidentFiler | None:
    """The incident flow when it is installed: an explicit filer, or one over the incidents service."""
    if features.incident_filer is not None:
        return features.incident_filer
    incidents = features.incidents
    return IncidentFlowFiler(incidents) if incidents is not None and hasattr(incidents, "submit") else None


def install(wiring: Wiring) -> None:
    """Register this feature with the front door and the work runner."""
    backends: dict[str, FilterBackend] = {}

    def backend(school: SchoolConfig) -> FilterBackend:
        if school.id not in backends:
            make = wiring.filter_backend_for
            assert make is not None, "the app factory names the filter backend"
            backends[school.id] = make(school)
        return backends[school.id]

    def rules(school: SchoolConfig) -> FilterRules:
        return FilterRules.from_policy(wiring.policy.filtering, school.filtering)

    for school in wiring.config.schools:
        rules(school)  # read the category lists at start-up, not in someone's turn

    service = FilterService(
        wiring.uow,
        wiring.directory,
        wiring.clock,
        school=wiring.config.school,
        rules=rules,
        backend=backend,
        filer=incident_filer(wiring.features),
    )
    wiring.features.filter_service = service
    services = wiring.services
    services.dialogs.append(ConversationDialog(filter_conversation(service, wiring.clock)))

    async def start(turn: Turn, args: str) -> None:
        reference = args.strip().upper()
        if REFERENCE.match(reference):
            card = await service.view(turn.actor, reference)
            if card is None:
                await turn.say(
                    f"I can't find a filter request {reference} that you can see. Type `filter` to ask for a change."
                )
            else:
                await turn.say(card=card)
            return
        await turn.begin_dialog(FILTER_DIALOG)

    async def show_log(turn: Turn, args: str) -> None:
        entries = await service.change_log(turn.actor)
        tz = turn.actor.school.tz
        if args.strip().lower() in ("csv", "export"):
            if not entries:
                await turn.say("The change log is empty, so there is nothing to export yet.")
                return
            body, count = log_csv(entries, tz)
            await turn.say(
                f"Web filter change log: the {count} most recent entries, as CSV. Copy the block below "
                f"into a file ending .csv to open it in Excel.\n\n```\n{body}```"
            )
            return
        await turn.say(card=build_log_card(entries, tz))

    services.add_command(
        Command(
            "filter",
            "Ask for a filter change",
            "unblock or block a website, or report a filtering problem",
            start,
            permission="filter.request",
            menu=("personal",),
            rank=3,
        )
    )
    services.add_command(
        Command(
            "filter log",
            "Filter change log",
            "see and export every filter change",
            show_log,
            permission="filter.log",
            menu=("personal",),
        )
    )

    def guarded(run: CardActionRun) -> CardActionRun:
        """Two people pressing at once: the second is told, not shown an error."""

        async def action(actor: Actor, data: dict[str, Any]) -> CardReply:
            try:
                return await run(actor, data)
            except ConcurrentChange:
                return CardReply(
                    message="Someone else updated this request a moment ago. Type `filter "
                    f"{str(data.get('reference') or '')[:12]}` to see where it is now."
                )

        return action

    def decide(decision: str) -> CardActionRun:
        async def run(actor: Actor, data: dict[str, Any]) -> CardReply:
            return await service.decide(actor, data, decision)

        return guarded(run)

    services.add_card_action(CardAction("filter.approve", decide("approve"), permission="filter.approve"))
    services.add_card_action(CardAction("filter.decline", decide("decline"), permission="filter.approve"))
    services.add_card_action(CardAction("filter.ask", decide("ask"), permission="filter.approve"))
    services.add_card_action(CardAction("filter.card", guarded(service.current_card), permission="filter.approve"))
    services.add_card_action(CardAction("filter.reply", guarded(service.answer_question)))
    services.add_card_action(CardAction("filter.applied", guarded(service.mark_applied), permission="filter.apply"))
    services.add_card_action(CardAction("filter.removed", guarded(service.mark_removed), permission="filter.apply"))
    services.add_card_action(CardAction("filter.retry", guarded(service.retry), permission="filter.retry"))
    wiring.work.register(APPLY_KIND, service.run_apply)
    wiring.work.register(REVERT_KIND, service.run_revert)
