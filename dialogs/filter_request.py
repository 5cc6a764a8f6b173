"""The `filter` conversation: what to change, which site, for whom, why, how long, then a summary to send."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from botbuilder.core import MessageFactory, TurnContext
from botbuilder.dialogs import (
    ComponentDialog,
    DialogContext,
    DialogTurnResult,
    WaterfallDialog,
    WaterfallStepContext,
)
from botbuilder.dialogs.prompts import Prompt, PromptOptions, PromptRecognizerResult, PromptValidatorContext
from botbuilder.schema import Activity, ActivityTypes, ChannelAccount

from bot.actor import Actor
from bot.cards import filtering as cards
from bot.config import SchoolConfig
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
from bot.handler import message_with_card
from bot.people import stranger
from bot.phase import examples
from bot.protocols import Clock, Directory

FILTER_DIALOG = "filter_request"
_STEPS = "filter_request.steps"
_ASK = "filter_request.answer"
REQUEST_KEY = "request_key"
MAX_UNTIL = dt.timedelta(days=366)
Parser = Callable[[str, TurnContext], Awaitable[tuple[Any, str | None]]]


class AnswerPrompt(Prompt):
    """Takes a typed reply or a card button's {"answer": ...}; the validator parses it by `validations` key."""

    async def on_prompt(self, turn_context: TurnContext, state: dict[str, object], options: PromptOptions,
                        is_retry: bool) -> None:
        if options.prompt is not None:
            await turn_context.send_activity(options.prompt)

    async def on_recognize(self, turn_context: TurnContext, state: dict[str, object],
                           options: PromptOptions) -> PromptRecognizerResult:
        result = PromptRecognizerResult()
        activity = turn_context.activity
        if activity.type != ActivityTypes.message:
            return result
        value = activity.value if isinstance(activity.value, dict) else {}
        answer = value.get("answer") if isinstance(value.get("answer"), str) else activity.text
        if isinstance(answer, str):
            result.succeeded = True
            result.value = answer.strip()
        return result


def _ask(text: str | None = None, card: dict[str, Any] | None = None, key: str = "") -> PromptOptions:
    prompt = message_with_card(card, text) if card is not None else MessageFactory.text(text)
    return PromptOptions(prompt=prompt, validations=key)


class FilterRequestDialog(ComponentDialog):
    def __init__(self, service: FilterService, directory: Directory, clock: Clock) -> None:
        super().__init__(FILTER_DIALOG)
        self._service = service
        self._directory = directory
        self._clock = clock
        self._parsers: dict[str, Parser] = {
            "kind": self._parse_kind, "site": self._parse_site, "audience": self._parse_audience,
            "years": self._parse_years, "reason": self._parse_reason, "lesson": self._parse_lesson,
            "duration": self._parse_duration, "until": self._parse_until, "previewed": self._parse_previewed,
            "confirm": self._parse_confirm, "seen": self._parse_reason,
        }
        self.add_dialog(AnswerPrompt(_ASK, self._validate))
        self.add_dialog(WaterfallDialog(_STEPS, [
            self.ask_kind, self.ask_site, self.ask_audience, self.ask_years, self.ask_reason, self.ask_lesson,
            self.ask_duration, self.ask_until, self.ask_previewed, self.show_summary, self.send,
        ]))
        self.initial_dialog_id = _STEPS

    def stopped_text(self, outer_dc: DialogContext, reason: str) -> str:
        """What became of an unfinished request that a command interrupted or that was left too long."""
        if reason == "timed_out":
            return ("Your unfinished filter request was left for more than a day, so I have deleted it. Nothing was "
                    "sent. Type `filter` to start again.")
        return "I have stopped your unfinished filter request. Nothing was sent. Type `filter` to start again."

    # --- steps -----------------------------------------------------------------------------------------------

    async def ask_kind(self, step: WaterfallStepContext) -> DialogTurnResult:
        """Ask what kind of change this is."""
        step.values["draft"] = Draft().to_state()
        return await step.prompt(_ASK, _ask(card=cards.build_kind_card(), key="kind"))

    async def ask_site(self, step: WaterfallStepContext) -> DialogTurnResult:
        """Ask for the site's web address."""
        _save(step, kind=str(step.result))
        question = ("Which site got through? Paste its web address. Please don't open it again to check."
                    if step.result == Kind.MISSED else "Which site? Paste its web address, for example "
                                                       "https://www.bbc.co.uk/bitesize.")
        return await step.prompt(_ASK, _ask(question, key="site"))

    async def ask_audience(self, step: WaterfallStepContext) -> DialogTurnResult:
        """Refuse never-unblock sites at once; otherwise ask who it is for (or what was seen)."""
        site = step.result
        draft = _save(step, url=site.url, domain=site.domain)
        refusal = await self._service.never_unblock(await self._actor(step.context), draft.kind, site)
        if refusal:
            await step.context.send_activity(refusal)
            return await step.end_dialog()
        if draft.kind == Kind.MISSED:
            step.values["missed_key"] = step.values.get("missed_key") or uuid.uuid4().hex  # one concern per report
            return await step.prompt(_ASK, _ask("Briefly, what did you or the pupils see? Please don't include "
                                                "names, and don't copy or forward anything.", key="seen"))
        return await step.prompt(_ASK, _ask(card=cards.build_audience_card(), key="audience"))

    async def ask_years(self, step: WaterfallStepContext) -> DialogTurnResult:
        """File a missed-content concern, or ask which year groups when that was chosen."""
        draft = _draft(step)
        if draft.kind == Kind.MISSED:
            actor = await self._actor(step.context)
            outcome = await self._service.report_missed(actor, normalise_site(draft.url), str(step.result),
                                                        key=step.values.get("missed_key"))
            await step.context.send_activity(outcome.message)
            return await step.end_dialog()
        draft = _save(step, audience=str(step.result))
        if draft.audience != "year_groups":
            return await step.next(None)
        example = examples(_school(step.context).phase)
        return await step.prompt(_ASK, _ask(f"Which year groups? For example {example.years} or {example.year_range}.",
                                            key="years"))

    async def ask_reason(self, step: WaterfallStepContext) -> DialogTurnResult:
        """Ask why the change is needed."""
        if step.result:
            _save(step, year_groups=tuple(step.result))
        question = ("Why is it needed? One or two sentences, for example the lesson and what pupils will use it "
                    "for." if _draft(step).allows else "Why should it be blocked? One or two sentences.")
        return await step.prompt(_ASK, _ask(question, key="reason"))

    async def ask_lesson(self, step: WaterfallStepContext) -> DialogTurnResult:
        """Ask the lesson date, for unblocks."""
        draft = _save(step, reason=str(step.result))
        if not draft.allows:
            return await step.next(None)
        return await step.prompt(_ASK, _ask("When is the lesson? For example `tomorrow`, `Tuesday` or `24/11/2026`. "
                                            "Type `none` if it isn't for a lesson.", key="lesson"))

    async def ask_duration(self, step: WaterfallStepContext) -> DialogTurnResult:
        """Ask whether an unblock is temporary or permanent."""
        if step.result:
            _save(step, lesson_date=step.result if isinstance(step.result, dt.date) else None)
        if not _draft(step).allows:
            return await step.next(None)
        return await step.prompt(_ASK, _ask(card=cards.build_choice_card(
            "Should it be temporary or permanent?",
            [("Temporary, until a date and time", "temporary"), ("Permanent", "permanent")],
            hint="Temporary unblocks end by themselves."), key="duration"))

    async def ask_until(self, step: WaterfallStepContext) -> DialogTurnResult:
        """Ask when a temporary unblock should end."""
        if step.result != "temporary":
            return await step.next(None)
        return await step.prompt(_ASK, _ask("Until when? For example `Tuesday 15:30` or `24/11/2026 at 3pm`. "
                                            "A day alone means the end of the school day.", key="until"))

    async def ask_previewed(self, step: WaterfallStepContext) -> DialogTurnResult:
        """Ask the requester to confirm they have previewed the site, for unblocks."""
        if isinstance(step.result, dt.datetime):
            _save(step, until=step.result)
        if not _draft(step).allows:
            return await step.next(None)
        return await step.prompt(_ASK, _ask(card=cards.build_choice_card(
            "Have you previewed this site and checked it is suitable for the pupils?",
            [("Yes, I have previewed it", "yes")],
            hint="Approvers rely on this. If you haven't yet, look at it first (outside the pupils' network), then "
                 "answer."), key="previewed"))

    async def show_summary(self, step: WaterfallStepContext) -> DialogTurnResult:
        """Show everything on one card to send or cancel."""
        draft = _save(step, previewed=bool(step.result)) if step.result is not None else _draft(step)
        school = _school(step.context)
        needs_head = draft.allows and self._service.needs_headteacher(school, draft.domain)
        card = cards.build_summary_card(draft, school.tz, needs_head)
        # Fixed before anything is stored: Send pressed twice, or again after a crash before this conversation was
        # saved, finds the first request instead of making a second.
        step.values[REQUEST_KEY] = step.values.get(REQUEST_KEY) or uuid.uuid4().hex
        return await step.prompt(_ASK, _ask(card=card, key="confirm"))

    async def send(self, step: WaterfallStepContext) -> DialogTurnResult:
        """Send the request, or stop if the person cancelled."""
        if step.result != "submit":
            await step.context.send_activity("Stopped. Nothing was sent. Type `filter` to start again.")
            return await step.end_dialog()
        # A conversation saved before keys existed gets one now.
        key = step.values.get(REQUEST_KEY) or uuid.uuid4().hex
        outcome = await self._service.submit(await self._actor(step.context), _draft(step), key=key)
        await step.context.send_activity(outcome.message)
        return await step.end_dialog(outcome.reference)

    # --- validation ------------------------------------------------------------------------------------------

    async def _validate(self, prompt: PromptValidatorContext) -> bool:
        """Parse the answer for this question; on a mistake say what is wrong and ask again."""
        if not prompt.recognized.succeeded:
            await _again(prompt, "Please type your answer or press one of the buttons.")
            return False
        value, problem = await self._parsers[prompt.options.validations](prompt.recognized.value, prompt.context)
        if problem:
            await _again(prompt, problem)
            return False
        prompt.recognized.value = value
        return True

    async def _parse_kind(self, text: str, _context: TurnContext) -> tuple[Any, str | None]:
        kind = parse_kind(text)
        return (str(kind), None) if kind else (None, "Sorry, I didn't catch that. Please press one of the buttons, "
                                                     "or type 1, 2, 3 or 4.")

    async def _parse_site(self, text: str, _context: TurnContext) -> tuple[Any, str | None]:
        try:
            return normalise_site(text), None
        except BadSite as bad:
            return None, bad.message

    async def _parse_audience(self, text: str, _context: TurnContext) -> tuple[Any, str | None]:
        audience = parse_audience(text)
        return (str(audience), None) if audience else (None, "Please choose all pupils, chosen year groups or staff.")

    async def _parse_years(self, text: str, context: TurnContext) -> tuple[Any, str | None]:
        years = parse_year_groups(text)
        example = examples(_school(context).phase)
        return (list(years), None) if years else (None, "I couldn't read those year groups. Please type them like "
                                                        f"{example.years} or {example.year_range}.")

    async def _parse_reason(self, text: str, _context: TurnContext) -> tuple[Any, str | None]:
        cleaned = " ".join(text.split())
        if len(cleaned) < 5:
            return None, "Please say a little more, so the approver understands what it is for."
        if len(cleaned) > 1000:
            return None, "That's a bit long. Please keep it under 1,000 characters."
        return cleaned, None

    async def _parse_lesson(self, text: str, context: TurnContext) -> tuple[Any, str | None]:
        if text.strip().lower() in ("none", "no", "no lesson", "n/a", "not for a lesson"):
            return "none", None
        school = _school(context)
        today = self._clock.now().astimezone(school.tz).date()
        day = parse_day(text, today)
        if day is None:
            return None, "I couldn't read that date. Please type it like `tomorrow`, `Tuesday` or `24/11/2026`."
        if day < today:
            return None, "That date has passed. Please give the date of the lesson, or type `none`."
        return day, None

    async def _parse_duration(self, text: str, _context: TurnContext) -> tuple[Any, str | None]:
        cleaned = text.strip().lower()
        if cleaned.startswith("temp") or cleaned in ("1", "until"):
            return "temporary", None
        if cleaned.startswith("perm") or cleaned == "2":
            return "permanent", None
        return None, "Please choose temporary or permanent."

    async def _parse_until(self, text: str, context: TurnContext) -> tuple[Any, str | None]:
        school = _school(context)
        now = self._clock.now()
        until = parse_until(text, now, school.tz, school.school_hours.end)
        if until is None:
            return None, "I couldn't read that. Please give a day and a time, like `Tuesday 15:30` or " \
                         "`24/11/2026 at 3pm`."
        if until <= now:
            return None, "That time has already passed. Please give a time in the future."
        if until - now > MAX_UNTIL:
            return None, "Temporary unblocks can last up to a year. Please choose an earlier end, or make it " \
                         "permanent by typing `cancel` and starting again."
        return until, None

    async def _parse_previewed(self, text: str, _context: TurnContext) -> tuple[Any, str | None]:
        answer = parse_yes(text)
        if answer:
            return True, None
        if answer is False:
            return None, "Please preview the site before asking for it to be unblocked, so you know it is " \
                         "suitable. When you have, press the button or type `yes`. Type `cancel` to stop for now."
        return None, "Please press the button or type `yes` once you have previewed the site."

    async def _parse_confirm(self, text: str, _context: TurnContext) -> tuple[Any, str | None]:
        cleaned = text.strip().lower()
        if cleaned in ("submit", "send", "send request", "yes"):
            return "submit", None
        if cleaned in ("cancel", "no", "stop"):
            return "cancel", None
        return None, "Please press Send request, or type `cancel` to stop without sending."

    # --- who is asking ---------------------------------------------------------------------------------------

    async def _actor(self, context: TurnContext) -> Actor:
        school = _school(context)
        sender = context.activity.from_property or ChannelAccount()
        person_id = sender.aad_object_id or sender.id or ""
        person = await self._directory.person(school.id, person_id) or stranger(person_id, sender.name)
        return Actor(school=school, person=person, conversation_kind="personal")


async def _again(prompt: PromptValidatorContext, problem: str) -> None:
    await prompt.context.send_activity(problem)
    if isinstance(prompt.options.prompt, Activity):
        await prompt.context.send_activity(prompt.options.prompt)


def _school(context: TurnContext) -> SchoolConfig:
    return context.turn_state["esafety.school"]


def _draft(step: WaterfallStepContext) -> Draft:
    return Draft.from_state(step.values.get("draft"))


def _save(step: WaterfallStepContext, **changes: Any) -> Draft:
    draft = _draft(step).with_(**changes)
    step.values["draft"] = draft.to_state()
    return draft
