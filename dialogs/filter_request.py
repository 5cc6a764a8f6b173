"""The `filter` conversation: what to change, which site, for whom, why, how long, then a summary to send."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from bot.cards import filtering as cards
from bot.conversation import Conversation, Ctx, Prompt, Question, Reply
from bot.filtering import (
    BadSite,
    Draft,
    Kind,
    normalise_site,
    parse_audience,
    parse_day,
    parse_kind,
    parse_until,
    parse_year_groups,
    parse_yes,
)
from bot.filtering_service import FilterService
from bot.phase import examples
from bot.protocols import Clock

FILTER_DIALOG = "filter_request"
MAX_UNTIL = dt.timedelta(days=366)
NO_LESSON = "none"
_NO_LESSON_WORDS = {"none", "no", "no lesson", "n/a", "not for a lesson"}


@dataclass
class FilterChat:
    """The answers so far, as saved between turns (plain values only); None is not yet answered."""

    kind: str | None = None
    url: str | None = None
    domain: str | None = None
    refused: bool = False  # the site may never be unblocked: the conversation ends with nothing to send
    seen: str | None = None  # what got through, for a "missed" report
    audience: str | None = None
    year_groups: list[str] | None = None
    reason: str | None = None
    lesson: str | None = None  # an ISO date, or NO_LESSON
    duration: str | None = None  # temporary | permanent
    until: str | None = None  # ISO date-time, for temporary
    previewed: bool | None = None
    confirmed: bool | None = None
    # Fixed before anything is stored: Send pressed twice, or again after a crash before the conversation was
    # saved, finds the first request (or concern) instead of making a second.
    request_key: str | None = None
    missed_key: str | None = field(default=None)

    @property
    def missed(self) -> bool:
        return self.kind == Kind.MISSED

    @property
    def allows(self) -> bool:
        return self.kind in (Kind.UNBLOCK, Kind.OVERBLOCKING)

    def draft(self) -> Draft:
        return Draft(
            kind=self.kind,
            url=self.url,
            domain=self.domain,
            audience=self.audience,
            year_groups=tuple(self.year_groups or ()),
            reason=self.reason,
            lesson_date=dt.date.fromisoformat(self.lesson) if self.lesson and self.lesson != NO_LESSON else None,
            until=dt.datetime.fromisoformat(self.until) if self.until else None,
            previewed=bool(self.previewed),
        )


def filter_conversation(service: FilterService, clock: Clock) -> Conversation[FilterChat]:
    """The questions in the order they are asked; each names when it does not apply."""
    flow = _FilterFlow(service, clock)
    q = Question[FilterChat]
    return Conversation(
        name=FILTER_DIALOG,
        new_state=FilterChat,
        questions=(
            q("kind", flow.ask_kind, flow.answer_kind),
            q("url", flow.ask_site, flow.answer_site),
            q("seen", flow.ask_seen, flow.answer_seen, skip=_unless_missed),
            q("audience", flow.ask_audience, flow.answer_audience, skip=_unless_a_change),
            q("year_groups", flow.ask_years, flow.answer_years, skip=_unless_year_groups),
            q("reason", flow.ask_reason, flow.answer_reason, skip=_unless_a_change),
            q("lesson", flow.ask_lesson, flow.answer_lesson, skip=_unless_unblock),
            q("duration", flow.ask_duration, flow.answer_duration, skip=_unless_unblock),
            q("until", flow.ask_until, flow.answer_until, skip=_unless_temporary),
            q("previewed", flow.ask_previewed, flow.answer_previewed, skip=_unless_unblock),
            q("confirmed", flow.ask_confirm, flow.answer_confirm, skip=_unless_a_change),
        ),
        finish=flow.finish,
        stopped=stopped_text,
    )


# When a question does not apply. A refused site ends the conversation: nothing after it is asked.
def _unless_missed(s: FilterChat) -> bool:
    return s.refused or not s.missed


def _unless_a_change(s: FilterChat) -> bool:
    return s.refused or s.missed


def _unless_year_groups(s: FilterChat) -> bool:
    return _unless_a_change(s) or s.audience != "year_groups"


def _unless_unblock(s: FilterChat) -> bool:
    return s.refused or not s.allows


def _unless_temporary(s: FilterChat) -> bool:
    return _unless_unblock(s) or s.duration != "temporary"


def stopped_text(_state: FilterChat | None, reason: str) -> str:
    if reason == "timed_out":
        return (
            "Your unfinished filter request was left for more than a day, so I have deleted it. Nothing was "
            "sent. Type `filter` to start again."
        )
    if reason == "cancelled":
        return "Stopped. Nothing was sent. Type `filter` to start again."
    return "I have stopped your unfinished filter request. Nothing was sent. Type `filter` to start again."


class _FilterFlow:
    """What each question asks and how its answer is read; the order lives in filter_conversation()."""

    def __init__(self, service: FilterService, clock: Clock) -> None:
        self._service = service
        self._clock = clock

    # --- questions -------------------------------------------------------------------------------------------

    async def ask_kind(self, ctx: Ctx[FilterChat]) -> Prompt:
        return Prompt(card=cards.build_kind_card())

    async def ask_site(self, ctx: Ctx[FilterChat]) -> Prompt:
        if ctx.state.missed:
            return Prompt("Which site got through? Paste its web address. Please don't open it again to check.")
        return Prompt("Which site? Paste its web address, for example https://www.bbc.co.uk/bitesize.")

    async def ask_seen(self, ctx: Ctx[FilterChat]) -> Prompt:
        ctx.state.missed_key = ctx.state.missed_key or uuid.uuid4().hex  # one concern per report
        return Prompt(
            "Briefly, what did you or the pupils see? Please don't include names, and don't copy or forward anything."
        )

    async def ask_audience(self, ctx: Ctx[FilterChat]) -> Prompt:
        return Prompt(card=cards.build_audience_card())

    async def ask_years(self, ctx: Ctx[FilterChat]) -> Prompt:
        example = examples(ctx.actor.school.phase)
        return Prompt(f"Which year groups? For example {example.years} or {example.year_range}.")

    async def ask_reason(self, ctx: Ctx[FilterChat]) -> Prompt:
        if ctx.state.allows:
            return Prompt(
                "Why is it needed? One or two sentences, for example the lesson and what pupils will use it for."
            )
        return Prompt("Why should it be blocked? One or two sentences.")

    async def ask_lesson(self, ctx: Ctx[FilterChat]) -> Prompt:
        return Prompt(
            "When is the lesson? For example `tomorrow`, `Tuesday` or `24/11/2026`. Type `none` if it "
            "isn't for a lesson."
        )

    async def ask_duration(self, ctx: Ctx[FilterChat]) -> Prompt:
        return Prompt(
            card=cards.build_choice_card(
                "Should it be temporary or permanent?",
                [("Temporary, until a date and time", "temporary"), ("Permanent", "permanent")],
                hint="Temporary unblocks end by themselves.",
            )
        )

    async def ask_until(self, ctx: Ctx[FilterChat]) -> Prompt:
        return Prompt(
            "Until when? For example `Tuesday 15:30` or `24/11/2026 at 3pm`. A day alone means the end of "
            "the school day."
        )

    async def ask_previewed(self, ctx: Ctx[FilterChat]) -> Prompt:
        return Prompt(
            card=cards.build_choice_card(
                "Have you previewed this site and checked it is suitable for the pupils?",
                [("Yes, I have previewed it", "yes")],
                hint="Approvers rely on this. If you haven't yet, look at it first (outside the pupils' network), then "
                "answer.",
            )
        )

    async def ask_confirm(self, ctx: Ctx[FilterChat]) -> Prompt:
        """Everything on one card to send or cancel."""
        school = ctx.actor.school
        draft = self._service.scoped(school, ctx.state.draft())  # the rule the filter will get, in words
        needs_head = draft.allows and self._service.needs_headteacher(school, draft.domain)
        ctx.state.request_key = ctx.state.request_key or uuid.uuid4().hex
        return Prompt(
            card=cards.build_summary_card(draft, school.tz, needs_head, host_below=self._service.host_below(school))
        )

    # --- answers ---------------------------------------------------------------------------------------------

    async def answer_kind(self, ctx: Ctx[FilterChat], reply: Reply) -> str | None:
        kind = parse_kind(_answer(reply))
        if not kind:
            return "Sorry, I didn't catch that. Please press one of the buttons, or type 1, 2, 3 or 4."
        ctx.state.kind = str(kind)
        return None

    async def answer_site(self, ctx: Ctx[FilterChat], reply: Reply) -> str | None:
        try:
            site = normalise_site(_answer(reply))
        except BadSite as bad:
            return bad.message
        ctx.state.url, ctx.state.domain = site.url, site.domain
        refusal = await self._service.never_unblock(ctx.actor, ctx.state.kind or "", site)
        if refusal:
            await ctx.say(refusal)
            ctx.state.refused = True
        return None

    async def answer_seen(self, ctx: Ctx[FilterChat], reply: Reply) -> str | None:
        seen, problem = _sentences(_answer(reply))
        ctx.state.seen = seen
        return problem

    async def answer_audience(self, ctx: Ctx[FilterChat], reply: Reply) -> str | None:
        audience = parse_audience(_answer(reply))
        if not audience:
            return "Please choose all pupils, chosen year groups or staff."
        ctx.state.audience = str(audience)
        return None

    async def answer_years(self, ctx: Ctx[FilterChat], reply: Reply) -> str | None:
        years = parse_year_groups(_answer(reply))
        if not years:
            example = examples(ctx.actor.school.phase)
            return f"I couldn't read those year groups. Please type them like {example.years} or {example.year_range}."
        ctx.state.year_groups = list(years)
        return None

    async def answer_reason(self, ctx: Ctx[FilterChat], reply: Reply) -> str | None:
        reason, problem = _sentences(_answer(reply))
        ctx.state.reason = reason
        return problem

    async def answer_lesson(self, ctx: Ctx[FilterChat], reply: Reply) -> str | None:
        typed = _answer(reply)
        if typed.lower() in _NO_LESSON_WORDS:
            ctx.state.lesson = NO_LESSON
            return None
        today = self._clock.now().astimezone(ctx.actor.school.tz).date()
        day = parse_day(typed, today)
        if day is None:
            return "I couldn't read that date. Please type it like `tomorrow`, `Tuesday` or `24/11/2026`."
        if day < today:
            return "That date has passed. Please give the date of the lesson, or type `none`."
        ctx.state.lesson = day.isoformat()
        return None

    async def answer_duration(self, ctx: Ctx[FilterChat], reply: Reply) -> str | None:
        typed = _answer(reply).lower()
        if typed.startswith("temp") or typed in ("1", "until"):
            ctx.state.duration = "temporary"
        elif typed.startswith("perm") or typed == "2":
            ctx.state.duration = "permanent"
        else:
            return "Please choose temporary or permanent."
        return None

    async def answer_until(self, ctx: Ctx[FilterChat], reply: Reply) -> str | None:
        school = ctx.actor.school
        now = self._clock.now()
        until = parse_until(_answer(reply), now, school.tz, school.school_hours.end)
        if until is None:
            return "I couldn't read that. Please give a day and a time, like `Tuesday 15:30` or `24/11/2026 at 3pm`."
        if until <= now:
            return "That time has already passed. Please give a time in the future."
        if until - now > MAX_UNTIL:
            return (
                "Temporary unblocks can last up to a year. Please choose an earlier end, or make it permanent "
                "by typing `cancel` and starting again."
            )
        ctx.state.until = until.isoformat()
        return None

    async def answer_previewed(self, ctx: Ctx[FilterChat], reply: Reply) -> str | None:
        answer = parse_yes(_answer(reply))
        if answer:
            ctx.state.previewed = True
            return None
        if answer is False:
            return (
                "Please preview the site before asking for it to be unblocked, so you know it is suitable. When "
                "you have, press the button or type `yes`. Type `cancel` to stop for now."
            )
        return "Please press the button or type `yes` once you have previewed the site."

    async def answer_confirm(self, ctx: Ctx[FilterChat], reply: Reply) -> str | None:
        typed = _answer(reply).lower()
        if typed in ("submit", "send", "send request", "yes"):
            ctx.state.confirmed = True
            return None
        if typed in ("no", "cancel", "stop"):
            ctx.state.confirmed = False
            return None
        return "Please press Send request, or type `cancel` to stop without sending."

    # --- the end ---------------------------------------------------------------------------------------------

    async def finish(self, ctx: Ctx[FilterChat]) -> None:
        state = ctx.state
        if state.refused:
            return  # the refusal has been said; there is nothing to send
        if state.missed:
            outcome = await self._service.report_missed(
                ctx.actor, normalise_site(state.url or ""), state.seen or "", key=state.missed_key
            )
            await ctx.say(outcome.message)
            return
        if not state.confirmed:
            await ctx.say(stopped_text(state, "cancelled"))
            return
        # A conversation saved before keys existed gets one now.
        outcome = await self._service.submit(ctx.actor, state.draft(), key=state.request_key or uuid.uuid4().hex)
        await ctx.say(outcome.message)


def _answer(reply: Reply) -> str:
    """A card button's {"answer": ...} or the typed text."""
    value = reply.data.get("answer") if reply.data else None
    return (value if isinstance(value, str) else reply.text).strip()


def _sentences(text: str) -> tuple[str | None, str | None]:
    cleaned = " ".join(text.split())
    if len(cleaned) < 5:
        return None, "Please say a little more, so the approver understands what it is for."
    if len(cleaned) > 1000:
        return None, "That's a bit long. Please keep it under 1,000 characters."
    return cleaned, None
