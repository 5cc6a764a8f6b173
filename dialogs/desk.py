"""Wiring for the desk: `cases` (the caseload card) and its filter and paging buttons."""

from __future__ import annotations

from typing import Any

from bot.actor import Actor, CardAction, CardReply, Command, Turn
from bot.cards.desk import CASES_VERB, build_caseload_card
from bot.desk import VIEWS
from bot.desk_service import DeskService
from bot.wiring import Wiring


def install(wiring: Wiring) -> None:
    service = DeskService(wiring.caseload, wiring.read_audit, wiring.policy, wiring.clock)
    wiring.features.desk = service

    async def cases(turn: Turn, args: str) -> None:
        # `cases unowned`, `cases mine`...: a view's name (or its label) after the command picks it.
        wanted = args.strip().lower()
        view = next((key for key, label in VIEWS.items() if wanted in (key, label.lower())), None)
        if wanted and view is None:
            await turn.say("I can show `cases`, `cases unowned`, `cases mine`, `cases overdue` or `cases urgent`.")
            return
        page = await service.caseload(turn.actor, service.filter_from(view))
        await turn.say(card=build_caseload_card(page, wiring.clock.now()))

    wiring.services.add_command(
        Command(
            "cases",
            "Open cases",
            "list the open cases you handle, most pressing first",
            cases,
            permission="case.desk",
            menu=("personal",),
            rank=2,
        )
    )
    wiring.services.add_command(
        Command("open cases", "Open cases", "the same as `cases`", cases, permission="case.desk", in_help=False)
    )

    async def filtered(actor: Actor, data: dict[str, Any]) -> CardReply:
        chosen = service.filter_from(data.get("view"), data.get("group") or None, data.get("page"))
        return CardReply(card=build_caseload_card(await service.caseload(actor, chosen), wiring.clock.now()))

    wiring.services.add_card_action(CardAction(CASES_VERB, filtered, permission="case.desk"))
