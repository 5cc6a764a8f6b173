"""Wiring for the Acceptable Use Policy: commands, card actions, the full-text page and the work handlers.

The AUP needs no waterfall: each step is one card (read, tick, submit), so the commands answer with cards and the
buttons go to card actions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.actor import Actor, CardAction, Command, Refused, Turn
from bot.aup import (
    ACK_VERB,
    DELIVER_KIND,
    ESCALATE_KIND,
    PUBLISH_VERB,
    REMIND_KIND,
    RENEWAL_KIND,
    SWEEP_KIND,
    Audience,
    AupService,
    Cards,
    DocumentSource,
    csv_parts,
    parse_audience,
    render_html,
    status_csv,
)
from bot.cards.aup import (
    build_acknowledged_card,
    build_aup_card,
    build_publish_preview_card,
    build_status_card,
)
from bot.wiring import Wiring

AUP_DIR = Path(__file__).resolve().parents[1] / "config" / "aup"
DEFAULT_PUBLIC_URL = "http://localhost:3978"


def markdown_source(directory: Path = AUP_DIR) -> DocumentSource:
    def read(audience: Audience) -> str | None:
        path = directory / f"{audience.value}.md"
        return path.read_text(encoding="utf-8") if path.is_file() else None

    return read


def install(wiring: Wiring) -> None:
    """Register this feature with the front door and the work runner."""
    base = str(wiring.features.public_url or DEFAULT_PUBLIC_URL).rstrip("/")
    source = wiring.features.aup_source or markdown_source()

    def link(school_id: str, audience: Audience, version: int) -> str:
        return f"{base}/aup/{school_id}/{audience.value}/{version}"

    cards = Cards(
        aup=build_aup_card,
        acknowledged=build_acknowledged_card,
        preview=build_publish_preview_card,
        status=build_status_card,
    )
    service = AupService(wiring.uow, wiring.directory, wiring.clock, wiring.config.school, source, cards, link)
    wiring.features.aup_service = service
    services = wiring.services

    async def show(turn: Turn, _args: str) -> None:
        message, card = await service.show(turn.actor)
        await turn.say(message, card=card)

    async def status(turn: Turn, args: str) -> None:
        report = await service.status(turn.actor)
        if args.strip().lower() in ("csv", "export"):
            parts = csv_parts(status_csv(report, turn.actor.school.tz))
            for number, body in enumerate(parts, start=1):
                part = f" (part {number} of {len(parts)})" if len(parts) > 1 else ""
                await turn.say(
                    f"Acceptable Use Policy acknowledgements{part}, as CSV. Copy the block below into a "
                    f"file ending .csv to open it in Excel.\n\n```\n{body}```"
                )
            return
        await turn.say(card=build_status_card(report, tz=turn.actor.school.tz))

    async def publish(turn: Turn, args: str) -> None:
        audience = parse_audience(args) if args.strip() else None
        if audience is None:
            await turn.say(
                "Which policy would you like to publish? Type `aup publish staff`, "
                "`aup publish governor` or `aup publish volunteer`. I will show you a preview first."
            )
            return
        try:
            card = await service.publish_preview_card(turn.actor, audience)
        except Refused as refused:  # e.g. the file has a mistake in it: say so, kindly
            await turn.say(refused.message)
            return
        await turn.say(card=card)

    services.add_command(
        Command(
            "aup",
            "Acceptable Use Policy",
            "read and acknowledge the school's rules for using technology",
            show,
            menu=("personal",),
            rank=4,
        )
    )
    services.add_command(
        Command(
            "aup status",
            "AUP status",
            "who has acknowledged the AUP, with a CSV export",
            status,
            permission="aup.status",
        )
    )
    services.add_command(
        Command(
            "aup publish",
            "Publish an AUP",
            "make the repository's AUP text the new version",
            publish,
            permission="aup.publish",
        )
    )
    services.add_card_action(CardAction(ACK_VERB, service.acknowledge))
    services.add_card_action(CardAction(PUBLISH_VERB, service.publish, permission="aup.publish"))

    async def follow_up(actor: Actor) -> dict[str, Any] | None:
        return await service.follow_up(actor)

    if hasattr(services, "follow_ups"):
        services.follow_ups.append(follow_up)

    async def start() -> None:
        for school in wiring.config.schools:
            await service.start(school)

    wiring.features.startup.append(start)

    async def page(school_id: str, audience_name: str, version: str, fmt: str) -> tuple[str, str] | None:
        audience = parse_audience(audience_name)
        if audience is None or not version.isdigit() or wiring.config.school(school_id) is None:
            return None
        async with wiring.uow() as uow:
            document = await uow.aup.document(school_id, audience, int(version))
        if document is None:
            return None
        if fmt in ("md", "text", "markdown"):
            return "text/markdown", document.text
        return "text/html", render_html(document)

    wiring.features.aup_page = page
    wiring.work.register(SWEEP_KIND, service.run_sweep)
    wiring.work.register(RENEWAL_KIND, service.run_renewal)
    wiring.work.register(REMIND_KIND, service.run_reminder)
    wiring.work.register(ESCALATE_KIND, service.run_escalation)
    wiring.work.register(DELIVER_KIND, service.run_delivery)
