"""Wiring for child records: the link card's actions, a child's file, and the `child NAME` command."""

from __future__ import annotations

from typing import Any

from bot.actor import Actor, CardAction, CardReply, Command, Turn
from bot.cards.children import (
    CREATE_VERB,
    FIND_VERB,
    LINK_STAFF_VERB,
    LINK_VERB,
    SEARCH_VERB,
    UNLINK_VERB,
    VIEW_VERB,
    ChildFileView,
    SearchView,
    build_child_file_card,
    build_child_link_card,
    build_child_search_card,
)
from bot.cards.incident import build_not_allowed_card
from bot.child_service import ChildService, Outcome
from bot.wiring import Wiring

FIELDS = ("name", "year_group", "date_of_birth", "upn", "mis_id")


def install(wiring: Wiring) -> None:
    """Needs wiring.features.pupils (adapters.pupils.install) for directory pupils; without it, records only."""
    service = ChildService(wiring.uow, wiring.directory, wiring.features.pupils, wiring.policy, wiring.clock)
    wiring.features.children = service
    incidents = wiring.features.incidents  # installed before this feature: its case cards list the links
    if incidents is not None:
        incidents.linked = service.linked
        service.access_narrowed = incidents.access_narrowed
    services = wiring.services

    async def link_card(actor: Actor, token: Any, *, query: str = "", outcome: Outcome | None = None) -> CardReply:
        if outcome is not None and outcome.refused:
            return CardReply(card=build_not_allowed_card())
        view = await service.link_view(actor, token, query=query, outcome=outcome)
        return CardReply(card=build_child_link_card(view) if view is not None else build_not_allowed_card())

    async def find(actor: Actor, data: dict[str, Any]) -> CardReply:
        return await link_card(actor, data.get("token"))

    async def search(actor: Actor, data: dict[str, Any]) -> CardReply:
        return await link_card(actor, data.get("token"), query=_text(data.get("query")))

    async def link(actor: Actor, data: dict[str, Any]) -> CardReply:
        outcome = await service.link(actor, data.get("token"), {"child": data.get("child"), "pupil": data.get("pupil")})
        return await link_card(actor, data.get("token"), outcome=outcome)

    async def create(actor: Actor, data: dict[str, Any]) -> CardReply:
        token = data.get("token")
        fields = {key: data.get(key) for key in (*FIELDS, "pupil")}
        outcome = await service.create(actor, fields, case_token=token)
        if token is not None:
            return await link_card(actor, token, outcome=outcome)
        # From the `child` command's results: show the new record's file.
        if outcome.refused or outcome.child is None:
            return (
                CardReply(card=build_not_allowed_card())
                if outcome.refused
                else CardReply(message=" ".join(outcome.problems))
            )
        return await view_file(actor, {"child": outcome.child.token})

    async def unlink(actor: Actor, data: dict[str, Any]) -> CardReply:
        outcome = await service.unlink(actor, data.get("token"), data.get("child"))
        return await link_card(actor, data.get("token"), outcome=outcome)

    async def link_staff(actor: Actor, data: dict[str, Any]) -> CardReply:
        outcome = await service.link_staff(actor, data.get("token"), data.get("person"))
        return await link_card(actor, data.get("token"), outcome=outcome)

    async def view_file(actor: Actor, data: dict[str, Any]) -> CardReply:
        file = await service.file(actor, data.get("child"))
        if file is None:
            return CardReply(card=build_not_allowed_card())
        page = data.get("page")
        return CardReply(
            card=build_child_file_card(
                ChildFileView(
                    file, actor.school.tz, page if isinstance(page, int) and not isinstance(page, bool) else None
                )
            )
        )

    # No roles on the actions: the service asks the case's access rule and the child-records permission, and
    # every refusal is the one card that names nothing (audited), whatever the card carried.
    for verb, run in (
        (FIND_VERB, find),
        (SEARCH_VERB, search),
        (LINK_VERB, link),
        (CREATE_VERB, create),
        (UNLINK_VERB, unlink),
        (LINK_STAFF_VERB, link_staff),
        (VIEW_VERB, view_file),
    ):
        services.add_card_action(CardAction(verb, run))

    async def child(turn: Turn, args: str) -> None:
        query = args.strip()
        if not query:
            await turn.say("Please give the child's name, for example `child Jamie Smith`.")
            return
        result = await service.search_result(turn.actor, query)
        await turn.say(card=build_child_search_card(SearchView(query, result.matches, result.directory_failed)))

    services.add_command(
        Command(
            "child",
            "Find a child",
            "open a child's file: every concern about them in one chronology",
            child,
            permission="child.view",
        )
    )


def _text(value: Any) -> str:
    return " ".join(value.split())[:80] if isinstance(value, str) else ""
