"""Wiring for reviews, reminders, the weekly SLT digest and the governors' report.

No waterfall here: completing a review is one card (notes and next date), so every step is a card action.
"""

from __future__ import annotations

from bot.actor import CardAction, Command, Turn
from bot.cards import digest as digest_cards
from bot.cards import reviews as review_cards
from bot.cards.filtering_check import FilteringCheckCards
from bot.digest import WEEKLY_KIND, DigestService, figures_csv, figures_markdown
from bot.filtering_check import RECORD_VERB, FilteringCheckService
from bot.reviews import COMPLETE_VERB, OPEN_VERB, OVERDUE_KIND, REMIND_KIND, ReviewService
from bot.wiring import Wiring


def install(wiring: Wiring) -> None:
    """Register this feature with the front door and the work runner."""
    reviews = ReviewService(
        wiring.uow, wiring.directory, wiring.clock, wiring.policy, wiring.config.school, review_cards
    )
    digest = DigestService(
        wiring.uow, wiring.directory, wiring.clock, wiring.policy, wiring.config.school, reviews, digest_cards
    )
    wiring.features.reviews = reviews
    wiring.features.digest = digest
    services = wiring.services

    async def show_reviews(turn: Turn, _args: str) -> None:
        open_views, done = await reviews.views(turn.actor)
        await turn.say(card=review_cards.build_reviews_card(open_views, done, turn.actor.school.tz))

    async def digest_now(turn: Turn, _args: str) -> None:
        await turn.say(card=await digest.on_demand(turn.actor))

    async def governors_report(turn: Turn, args: str) -> None:
        figures = await digest.termly(turn.actor.school, turn.actor.person.id, reader=turn.actor.person)
        wanted = args.strip().lower()
        if wanted in ("csv", "export"):
            await turn.say(
                "The governors' report as CSV (figures only). Copy the block into a file ending .csv to "
                f"open it in Excel.\n\n```\n{figures_csv(figures)}```"
            )
            return
        if wanted in ("markdown", "md", "text"):
            await turn.say(
                f"The governors' report as Markdown, ready to paste into the minutes.\n\n```\n"
                f"{figures_markdown(figures)}\n```"
            )
            return
        await turn.say(card=digest_cards.build_governors_card(figures))

    checks = FilteringCheckService(wiring.uow, wiring.directory, wiring.policy, FilteringCheckCards(), reviews)

    async def filter_check(turn: Turn, _args: str) -> None:
        await turn.say(card=await checks.form(turn.actor))

    services.add_command(
        Command(
            "filter check",
            "Filtering check",
            "record the termly test that the web filter blocks what it should",
            filter_check,
            permission="filter.check",
        )
    )
    services.add_card_action(CardAction(RECORD_VERB, checks.record, permission="filter.check"))
    services.add_command(
        Command(
            "reviews",
            "Review calendar",
            "see when the policy, filtering, AUP and incident-log reviews are due",
            show_reviews,
            permission="reviews.view",
            menu=("personal",),
        )
    )
    services.add_command(
        Command(
            "digest now",
            "Weekly digest now",
            "this week's anonymised online-safety figures",
            digest_now,
            permission="digest.view",
            channel_ok=True,
            menu=("personal", "team"),
        )
    )
    services.add_command(
        Command(
            "governors report",
            "Governors' report",
            "this term's anonymised figures, as a card, CSV or Markdown",
            governors_report,
            permission="governors.report",
        )
    )
    services.add_card_action(CardAction(OPEN_VERB, reviews.open_card, permission="reviews.view"))
    services.add_card_action(CardAction(COMPLETE_VERB, reviews.complete, permission="reviews.view"))
    wiring.work.register(REMIND_KIND, reviews.run_reminder)
    wiring.work.register(OVERDUE_KIND, reviews.run_overdue)
    wiring.work.register(WEEKLY_KIND, digest.run_weekly)

    async def start() -> None:
        for school in wiring.config.schools:
            await reviews.seed(school)
            await digest.seed(school)

    wiring.features.startup.append(start)
