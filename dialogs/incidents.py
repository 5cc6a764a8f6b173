"""Wiring for concerns: `report`, `my reports`, `case`, the case-card actions and the SLA work."""

from __future__ import annotations

import re
from typing import Any

from bot.actor import Actor, CardAction, CardActionRun, CardReply, Command, Turn
from bot.incident_service import REROUTE_KIND, SLA_KIND, IncidentService
from bot.wiring import Wiring
from bot.work import WorkItem
from dialogs.report_concern import REPORT_DIALOG, ReportConcernDialog

REFERENCE = re.compile(r"^[A-Z]{2,4}-\d{4}-\d{4,}$")
ACT_VERBS = (
    "incident.own",
    "incident.note",
    "incident.action",
    "incident.escalate",
    "incident.close",
    "incident.move",
    "incident.recategorise",
    "incident.reopen",
)


def install(wiring: Wiring) -> None:
    """Register the report dialog, the commands, the card actions and the SLA handler."""
    service = IncidentService(
        wiring.uow,
        wiring.directory,
        wiring.policy,
        wiring.config,
        wiring.clock,
        reads=wiring.reads,
        read_audit=wiring.read_audit,
    )
    wiring.features.incidents = service
    services = wiring.services
    services.dialogs.append(ReportConcernDialog(service, wiring.policy))

    async def report(turn: Turn, _args: str) -> None:
        await turn.begin_dialog(REPORT_DIALOG)

    async def my_reports(turn: Turn, _args: str) -> None:
        await turn.say(card=await service.my_reports(turn.actor))

    async def case(turn: Turn, args: str) -> None:
        reference = args.strip().upper()
        if not REFERENCE.match(reference):
            await turn.say("Please give the case reference, for example `case ES-2026-0001`.")
            return
        await turn.say(card=await service.view(turn.actor, reference=reference))

    services.add_command(
        Command(
            "report",
            "Report a concern",
            "tell the safeguarding team about an online-safety worry",
            report,
            menu=("personal",),
            rank=0,
        )
    )
    services.add_command(
        Command("my reports", "My reports", "see where your reports are up to", my_reports, menu=("personal",), rank=1)
    )
    services.add_command(
        Command(
            "case",
            "Open a case",
            "open one case: type `case` and its reference",
            case,
            permission="case.open",
            menu=("personal",),
        )
    )

    async def view(actor: Actor, data: dict[str, Any]) -> CardReply:
        # No roles here: the service applies the case's own access rule, and refuses (audited) with one card that
        # names nothing, whatever the card carried (a token, an old integer id, or nothing).
        return CardReply(card=await service.minimal_or_full(actor, data.get("token")))

    services.add_card_action(CardAction("incident.view", view))
    for verb in ACT_VERBS:
        services.add_card_action(CardAction(verb, _acting(service, verb)))

    async def sla(item: WorkItem) -> None:
        await service.sla_due(item.school_id, int(item.payload["incident_id"]), int(item.payload["stage"]))

    wiring.work.register(SLA_KIND, sla)

    async def reroute(item: WorkItem) -> None:
        await service.rerouted(item.school_id, item.payload)

    wiring.work.register(REROUTE_KIND, reroute)


def _acting(service: IncidentService, verb: str) -> CardActionRun:
    async def run(actor: Actor, data: dict[str, Any]) -> CardReply:
        return await service.act(actor, verb, data)

    return run
