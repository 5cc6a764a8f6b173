"""Report a concern: a short conversation in a 1:1 chat that ends in a committed, routed incident.

Two cards (who, danger and what; then that category's details), then the summary: four turns from `report` to
the reference. A client that cannot submit cards types instead: the first typed reply switches the conversation to
the typed questions, asked one at a time with their options numbered. Declared on the conversation engine
(bot.conversation); the answers are the report's one schema (bot.report).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from bot.actor import Actor
from bot.cards.incident import build_confirmation_card
from bot.cards.report import (
    ABOUT_CARD,
    DETAILS_CARD,
    AboutView,
    DetailsView,
    build_report_about_card,
    build_report_details_card,
    build_report_pick_card,
    build_report_summary_card,
)
from bot.conversation import Conversation, Ctx, Prompt, Question, Reply, match_choice, numbered
from bot.incident_service import IncidentService
from bot.incidents import LOCATIONS, SUBJECT_KINDS
from bot.people import ROLE_LABELS, Role
from bot.phase import examples
from bot.policy import Policy
from bot.report import (
    ABOUT_FIELDS,
    DANGER_CHOICES,
    DETAIL_FIELDS,
    IMAGES_WARNING,
    NAMED_KINDS,
    SPEC,
    URL,
    ReportDraft,
    above_threshold,
    category_title,
    check,
    choices,
    fill,
    form_values,
    summary_rows,
    to_input,
)
from dialogs.engine import ConversationDialog

REPORT_DIALOG = "report_concern"
SEARCH_AGAIN, NOT_SAYING = "Someone else: search again", "I'd rather not say"
_NOT_SAYING_WORDS = {
    "rather not say",
    "i'd rather not say",
    "i would rather not say",
    "prefer not to say",
    "not saying",
    "skip",
}
CONFIRM_CHOICES = ["Submit report", "Change an answer"]
_SUBMIT_WORDS, _CHANGE_WORDS = {"submit", "send", "yes"}, {"change", "edit"}
CHANGEABLE = {
    "subject_kind": "Who it is about",
    "category": "What happened (type)",
    "location": "Where",
    "occurred": "When",
    "subjects": "Who is involved",
    "narrative": "What happened (your words)",
    "evidence": "Evidence and device",
    "actions_taken": "What you have done so far",
}
NOT_UNDERSTOOD = "Sorry, I did not understand that. Please reply with one of the numbers, or its words."
ALREADY_SENT = "You have already sent that part of the report. Please fill in the card below."


@dataclass
class ReportState(ReportDraft):
    """The answers so far and where the conversation is; saved as JSON between turns."""

    typed: bool = False  # the reporter typed a reply to a card: the questions come one at a time from then on
    group: str | None = None  # the typed questions ask the group, then the category within it
    person_matches: list[list[str]] | None = None  # [id, name] pairs from the reporter's last search
    early_incident_id: int | None = None
    early_reference: str | None = None
    about_again: bool = False  # "Change an answer" on the summary: the cards come back with the answers filled in
    details_again: bool = False
    changing: bool = False  # typed: which answer to change is the next question
    confirmed: bool = False
    # Fixed here before the effect is committed, so a repeat (double click, or Submit again after a crash before
    # this state was saved) finds the first effect instead of making a second. None in states saved before keys.
    alert_key: str | None = None
    submit_key: str | None = None


class ReportConcernDialog(ConversationDialog[ReportState]):
    def __init__(self, service: IncidentService, policy: Policy) -> None:
        super().__init__(_Report(service, policy).conversation)


def _typed_only(state: ReportState) -> bool:
    return not state.typed


def _cards_only(state: ReportState) -> bool:
    return state.typed


class _Report:
    def __init__(self, service: IncidentService, policy: Policy) -> None:
        self._service = service
        self._policy = policy
        q = Question[ReportState]
        self.conversation: Conversation[ReportState] = Conversation(
            name=REPORT_DIALOG,
            new_state=ReportState,
            finish=self._finish,
            stopped=_stopped,
            intro=(
                "Two short cards, then you check it and submit; it takes about a minute. Type `cancel` to stop at "
                "any time. If a child is in immediate danger, call 999 first."
            ),
            questions=(
                q("changing", self._ask_change, self._answer_change, done=lambda s: not s.changing),
                q(
                    "about",
                    self._ask_about,
                    self._answer_about,
                    skip=_cards_only,
                    done=lambda s: not s.about_again and all(getattr(s, spec.key) is not None for spec in ABOUT_FIELDS),
                ),
                q("subject_kind", self._ask_subject_kind, self._answer_subject_kind, skip=_typed_only),
                q(
                    "subject_person",
                    self._ask_subject_person,
                    self._answer_subject_person,
                    skip=lambda s: s.subject_kind not in NAMED_KINDS,
                ),
                q(
                    "group",
                    self._ask_group,
                    self._answer_group,
                    skip=_typed_only,
                    done=lambda s: s.group is not None or s.category is not None,
                ),
                q("category", self._ask_category, self._answer_category, skip=_typed_only),
                q("immediate_danger", self._ask_danger, self._answer_danger, skip=_typed_only),
                q(
                    "details",
                    self._ask_details,
                    self._answer_details,
                    skip=_cards_only,
                    done=lambda s: (
                        not s.details_again and all(getattr(s, spec.key) is not None for spec in DETAIL_FIELDS)
                    ),
                ),
                q("location", self._ask_location, self._answer_location, skip=_typed_only),
                *(
                    q(key, self._ask_text, self._answer_text, skip=_typed_only)
                    for key in ("occurred", "subjects", "narrative", "evidence", "actions_taken")
                ),
                q("confirm", self._ask_confirm, self._answer_confirm, done=lambda s: s.confirmed),
            ),
        )

    # --- the two cards ---------------------------------------------------------------------------------------

    async def _ask_about(self, ctx: Ctx[ReportState]) -> Prompt:
        ctx.state.alert_key = ctx.state.alert_key or _new_key()  # fixed before the answer can raise the alert
        view = AboutView(ABOUT_FIELDS, choices(self._policy), form_values(ctx.state))
        return Prompt(card=build_report_about_card(view))

    async def _answer_about(self, ctx: Ctx[ReportState], reply: Reply) -> str | None:
        """Who, danger and what: the urgent alert goes at once when there is danger or the category is illegal."""
        if reply.data is None:
            return await self._typed_instead(ctx, reply)
        if reply.data.get("card") != ABOUT_CARD:
            return ALREADY_SENT
        state = ctx.state
        checked = check(reply.data, ABOUT_FIELDS, self._policy)
        before = state.subject_kind
        fill(state, checked.values)
        if checked.problems:
            return _problems(checked.problems)
        state.about_again = False
        if state.subject_kind != before:
            await self._about_whom(ctx)
        if above_threshold(state, self._policy):
            await ctx.say(_ALLEGATION)
        await self._maybe_alert(ctx)
        if state.immediate_danger and state.early_incident_id is None:  # held back until the person is named
            await ctx.say(_CALL_999 + " Tell me who it is about next, and I will raise the urgent alert at once.")
        return None

    async def _ask_details(self, ctx: Ctx[ReportState]) -> Prompt:
        state = ctx.state
        assert state.category is not None  # card 1 is answered first
        category = self._policy.category(state.category)
        guidance = [IMAGES_WARNING, category.guidance] if category.no_imagery else [category.guidance]
        labels = {
            "subjects.placeholder": f"Initials and year group are enough, for example "
            f"{examples(ctx.actor.school.phase).pupil}"
        }
        if category.no_imagery:
            labels |= {
                "evidence": "Which device are the images on, and where is that device now?",
                "evidence.placeholder": "Do not send, link to or describe the images themselves.",
            }
        view = DetailsView(
            DETAIL_FIELDS,
            choices(self._policy),
            category_title(category, self._policy.group(category.group).label),
            guidance,
            form_values(state),
            labels,
        )
        return Prompt(card=build_report_details_card(view))

    async def _answer_details(self, ctx: Ctx[ReportState], reply: Reply) -> str | None:
        if reply.data is None:
            return await self._typed_instead(ctx, reply)
        if reply.data.get("card") != DETAILS_CARD:
            return ALREADY_SENT
        checked = check(reply.data, DETAIL_FIELDS, self._policy, ctx.state.category)
        fill(ctx.state, checked.values)
        if checked.problems:
            return _problems(checked.problems)
        ctx.state.details_again = False
        return None

    async def _typed_instead(self, ctx: Ctx[ReportState], reply: Reply) -> str | None:
        """A typed reply to a card (a client that cannot submit cards): the same reply answers the first typed
        question, and the questions come one at a time from now on."""
        ctx.state.typed = True
        question = self.conversation.next_question(ctx.state)
        if question is None or question.key in ("about", "details"):
            return None
        return await question.answer(ctx, reply)

    # --- typed questions -------------------------------------------------------------------------------------

    async def _ask_subject_kind(self, ctx: Ctx[ReportState]) -> Prompt:
        return numbered(SPEC["subject_kind"].label, list(SUBJECT_KINDS.values()))

    async def _answer_subject_kind(self, ctx: Ctx[ReportState], reply: Reply) -> str | None:
        index = match_choice(_said(reply), list(SUBJECT_KINDS.values()))
        if index is None:
            return NOT_UNDERSTOOD
        ctx.state.subject_kind = list(SUBJECT_KINDS)[index]
        await self._about_whom(ctx)
        return None

    async def _ask_subject_person(self, ctx: Ctx[ReportState]) -> Prompt:
        """Which member of staff? A search by name, then a pick from what the directory found."""
        matches = ctx.state.person_matches
        if matches:
            options = [name for _, name in matches] + [SEARCH_AGAIN, NOT_SAYING]
            if ctx.state.typed:
                return numbered("Which of these is it?", options)
            return Prompt(card=build_report_pick_card("Which of these is it?", options))
        return Prompt(
            text="Who is the member of staff? Type their name, or part of it, and I will look them up. If "
            'you would rather not say, type "rather not say".'
        )

    async def _answer_subject_person(self, ctx: Ctx[ReportState], reply: Reply) -> str | None:
        """Keep the person's directory id; an unknown name is asked again, and not saying is fine."""
        state = ctx.state
        said = _said(reply)
        if state.person_matches:
            matches = state.person_matches
            index = match_choice(said, [name for _, name in matches] + [SEARCH_AGAIN, NOT_SAYING])
            if index is None:
                return NOT_UNDERSTOOD
            state.person_matches = None
            if index < len(matches):
                await self._name_person(ctx, matches[index][0])
            elif index == len(matches) + 1:
                state.subject_person = ""
        elif said.casefold().strip(" .!") in _NOT_SAYING_WORDS:
            state.subject_person = ""
        elif not said:
            return 'Please type their name, or part of it, or "rather not say".'
        else:
            found = await self._service.people_named(ctx.actor, said)
            if not found:
                return (
                    "I could not find anyone with that name in the school's directory. Please try part of their "
                    'first or last name, or type "rather not say".'
                )
            state.person_matches = [[p.id, p.name] for p in found]
        if state.subject_person is not None:
            await self._maybe_alert(ctx, named=True)  # held back until they were named, so they are kept out
        return None

    async def _ask_group(self, ctx: Ctx[ReportState]) -> Prompt:
        return numbered(SPEC["category"].label, [g.label for g in self._policy.category_groups])

    async def _answer_group(self, ctx: Ctx[ReportState], reply: Reply) -> str | None:
        """Store the group; a group of one category needs no second question."""
        index = match_choice(_said(reply), [g.label for g in self._policy.category_groups])
        if index is None:
            return NOT_UNDERSTOOD
        ctx.state.group = self._policy.category_groups[index].key
        options = self._policy.in_group(ctx.state.group)
        if len(options) == 1:
            await self._set_category(ctx, options[0].key)
        return None

    async def _ask_category(self, ctx: Ctx[ReportState]) -> Prompt:
        return numbered("Which of these is closest?", self._category_options(ctx.state))

    async def _answer_category(self, ctx: Ctx[ReportState], reply: Reply) -> str | None:
        index = match_choice(_said(reply), self._category_options(ctx.state))
        if index is None:
            return NOT_UNDERSTOOD
        await self._set_category(ctx, self._policy.in_group(ctx.state.group or "")[index].key)
        return None

    def _category_options(self, state: ReportState) -> list[str]:
        return [f"{c.label}: {c.description}" for c in self._policy.in_group(state.group or "")]

    async def _set_category(self, ctx: Ctx[ReportState], key: str) -> None:
        """Store the category and show its guidance straight away when it is serious."""
        ctx.state.category = key
        category = self._policy.category(key)
        if category.no_imagery:
            await ctx.say(f"{IMAGES_WARNING} {category.guidance}")
        elif category.illegal or category.urgent:
            await ctx.say(category.guidance)
        if category.illegal and above_threshold(ctx.state, self._policy):
            await ctx.say(_ALLEGATION)

    async def _ask_danger(self, ctx: Ctx[ReportState]) -> Prompt:
        ctx.state.alert_key = ctx.state.alert_key or _new_key()
        return numbered(SPEC["immediate_danger"].label, list(DANGER_CHOICES.values()))

    async def _answer_danger(self, ctx: Ctx[ReportState], reply: Reply) -> str | None:
        """If someone is in danger, raise the urgent alert now, before anything else."""
        index = match_choice(_said(reply), list(DANGER_CHOICES.values()))
        if index is None:
            return NOT_UNDERSTOOD
        ctx.state.immediate_danger = index == 0
        if ctx.state.immediate_danger and above_threshold(ctx.state, self._policy):
            await ctx.say(_ALLEGATION)
        await self._maybe_alert(ctx)
        return None

    async def _ask_location(self, ctx: Ctx[ReportState]) -> Prompt:
        return numbered(SPEC["location"].label, list(LOCATIONS.values()))

    async def _answer_location(self, ctx: Ctx[ReportState], reply: Reply) -> str | None:
        index = match_choice(_said(reply), list(LOCATIONS.values()))
        if index is None:
            return NOT_UNDERSTOOD
        ctx.state.location = list(LOCATIONS)[index]
        return None

    async def _ask_text(self, ctx: Ctx[ReportState]) -> Prompt:
        key = self._open_text(ctx.state)
        if key == "subjects":
            example = examples(ctx.actor.school.phase).pupil
            return Prompt(
                text="Who is involved? Initials and year group are enough, for example "
                f'"{example}". Write "not known" if you do not know.'
            )
        if key == "evidence" and self._no_imagery(ctx.state):
            return Prompt(
                text="Which device are the images on, and where is that device now? Do not send, link to "
                "or describe the images themselves."
            )
        return Prompt(text=_TEXT_QUESTIONS[key])

    async def _answer_text(self, ctx: Ctx[ReportState], reply: Reply) -> str | None:
        """Accept short plain text; refuse files, and links where imagery must not be shared."""
        key = self._open_text(ctx.state)
        value = reply.text.strip()
        if reply.has_files:
            return "Please do not send files or pictures here. Describe the evidence and where it is instead."
        if not value:
            return "I did not catch that. Please type a short answer."
        limit = SPEC[key].max_chars
        if len(value) > limit:
            return (
                f"That is a little long. Please keep it under {limit} characters; the DSL will ask for more if "
                "they need it."
            )
        if key == "evidence" and self._no_imagery(ctx.state) and URL.search(value):
            return (
                "Please do not send links to the images. Tell me only which device they are on and where that "
                "device is now."
            )
        setattr(ctx.state, key, value)
        return None

    @staticmethod
    def _open_text(state: ReportState) -> str:
        return next(
            k for k in ("occurred", "subjects", "narrative", "evidence", "actions_taken") if getattr(state, k) is None
        )

    def _no_imagery(self, state: ReportState) -> bool:
        return state.category is not None and self._policy.category(state.category).no_imagery

    # --- changing an answer, and the summary -----------------------------------------------------------------

    async def _ask_change(self, ctx: Ctx[ReportState]) -> Prompt:
        return numbered(
            "Which answer would you like to change?",
            [label for key, label in CHANGEABLE.items() if _may_change(ctx.state, key)],
        )

    async def _answer_change(self, ctx: Ctx[ReportState], reply: Reply) -> str | None:
        keys = [key for key in CHANGEABLE if _may_change(ctx.state, key)]
        index = match_choice(_said(reply), [CHANGEABLE[key] for key in keys])
        if index is None:
            return NOT_UNDERSTOOD
        _forget(ctx.state, keys[index])
        ctx.state.changing = False
        return None

    async def _ask_confirm(self, ctx: Ctx[ReportState]) -> Prompt:
        state = ctx.state
        state.submit_key = state.submit_key or _new_key()
        card = build_report_summary_card(summary_rows(state, self._policy), typed_replies=state.typed)
        return Prompt(text="Shall I submit it?" if state.typed else None, card=card)

    async def _answer_confirm(self, ctx: Ctx[ReportState], reply: Reply) -> str | None:
        said = _said(reply).casefold().strip(" .!")
        index = match_choice(said, CONFIRM_CHOICES)
        if said in _SUBMIT_WORDS or index == 0:
            ctx.state.confirmed = True
        elif said in _CHANGE_WORDS or index == 1:
            if ctx.state.typed:
                ctx.state.changing = True
            else:  # both cards again, filled in; after an urgent alert who and what it is about stay as routed
                ctx.state.about_again = ctx.state.early_incident_id is None
                ctx.state.details_again = True
        else:
            return "Please reply `submit`, `change` or `cancel`."
        return None

    async def _finish(self, ctx: Ctx[ReportState]) -> None:
        """Commit the incident, then tell the reporter its reference and what happens next."""
        state, actor = ctx.state, ctx.actor
        state.submit_key = state.submit_key or _new_key()
        incident = await self._service.submit(
            actor, to_input(state), state.early_incident_id, key=state.submit_key, alert_key=state.alert_key
        )
        plan = self._service.plan_for(incident.subject_kind, incident.category, incident.immediate_danger)
        category = self._policy.category(incident.category)
        guidance = category.guidance if plan.do_not_investigate or category.no_imagery else None
        await ctx.say(
            card=build_confirmation_card(
                incident.reference,
                next_steps(actor, incident.subject_kind, category.routing, incident.case_roles),
                guidance,
            )
        )

    # --- shared steps ----------------------------------------------------------------------------------------

    async def _about_whom(self, ctx: Ctx[ReportState]) -> None:
        """Who it is about was (re)chosen: allegations about adults get a word of guidance."""
        state = ctx.state
        state.subject_person = None if state.subject_kind in NAMED_KINDS else ""
        state.subject_name = state.person_matches = None
        if state.subject_kind == "staff_low_level":
            await ctx.say(
                "Thank you. A low-level concern goes to the Headteacher, who keeps the record of them. "
                "Please do not discuss it with the person concerned."
            )
        elif state.subject_kind in ("staff", "headteacher"):
            who = await self._service.handled_by(ctx.actor, state.subject_kind, self._policy.categories[0].key, False)
            await ctx.say(
                f"Thank you. This will go only to {who}. Please do not discuss it with the person "
                "concerned or try to find out more yourself."
            )

    async def _name_person(self, ctx: Ctx[ReportState], person_id: str) -> None:
        state = ctx.state
        person = await self._service.person(ctx.actor, person_id)
        if person is None:
            await ctx.say("I could not find that person any more. Please search again.")
            return
        state.subject_person, state.subject_name = person.id, person.name
        if person.has(Role.HEADTEACHER):
            state.subject_kind = "headteacher"  # the policies send a concern about the Headteacher elsewhere
            who = await self._service.handled_by(ctx.actor, "headteacher", self._policy.categories[0].key, False)
            await ctx.say(f"As this is about the Headteacher, it will go only to {who}.")
        await ctx.say(f"Thank you. {person.name} will not be told about this report and will not be able to see it.")

    async def _maybe_alert(self, ctx: Ctx[ReportState], *, named: bool = False) -> None:
        """Danger now (or, on the card, an illegal category): the urgent alert goes before anything else is asked.

        Held back while a member of staff it is about is still to be named, so they are kept out of the alert."""
        state = ctx.state
        if state.early_incident_id is not None or state.subject_kind is None or state.category is None:
            return
        danger = bool(state.immediate_danger)
        illegal = self._policy.category(state.category).illegal and not state.typed
        if not (danger or illegal) or (state.subject_kind in NAMED_KINDS and state.subject_person is None):
            return
        if danger and not named:
            await ctx.say(_CALL_999 + " I am alerting the safeguarding team as well.")
        else:
            await ctx.say("This needs the safeguarding team straight away, so I am alerting them now.")
        state.alert_key = state.alert_key or _new_key()
        incident = await self._service.raise_early_alert(ctx.actor, to_input(state), key=state.alert_key)
        state.early_incident_id, state.early_reference = incident.id, incident.reference
        await ctx.say(
            f"Urgent alert raised: {incident.reference}. I will tell you here as soon as it has reached the "
            "safeguarding team. When it is safe to, answer a few more questions so they have the details."
        )


_CALL_999 = "Call 999 now if you have not already, then find the DSL in person straight away."
_ALLEGATION = "This is more than a low-level concern, so I will treat it as an allegation about a member of staff."
_TEXT_QUESTIONS = {
    "occurred": 'When did it happen? For example "today at lunch" or "last night".',
    "narrative": "What happened? Use your own words, and the child's words where you have them. Facts are more "
    "useful than opinions.",
    "evidence": "What evidence is there, and where is it now? Give any links, which device it is on and where that "
    'device is. Write "none" if there is nothing.',
    "actions_taken": 'What have you done so far? Write "nothing yet" if nothing.',
}


def _stopped(state: ReportState | None, reason: str) -> str:
    """What became of an unfinished report that was cancelled, interrupted by a command or left too long."""
    reference = state.early_reference if state is not None else None
    if reason == "cancelled":
        if reference:
            return (
                f"Stopped. The safeguarding team already has your urgent alert {reference}. Tell the DSL "
                "anything else in person."
            )
        return "Stopped. Nothing was saved. Type `report` to start again whenever you are ready."
    if reference:
        return (
            f"I have stopped your report. The safeguarding team already has your urgent alert {reference}; "
            "tell the DSL anything else in person."
        )
    if reason == "timed_out":
        return (
            "Your unfinished report was left for more than a day, so I have deleted it. Nothing was sent. "
            "Type `report` to start again whenever you are ready."
        )
    return "I have stopped your unfinished report. Nothing was sent. Type `report` to start again."


def next_steps(
    actor: Actor, subject_kind: str, routing: str, case_roles: tuple[str, ...] = (), *, where: str = "here"
) -> list[str]:
    """What happens next, promising only what the bot will do: delivery is confirmed in a later message, `where`
    the reporter will read it."""
    sla = actor.school.sla_minutes
    # Whoever the case actually went to (the Vice-Chair when there is no Chair), never the usual role regardless.
    manager = f"the {ROLE_LABELS[Role(case_roles[0])]}" if case_roles and case_roles[0] in set(Role) else None
    if subject_kind == "headteacher":
        first = (
            f"I am sending it to {manager or 'the Chair of Governors'} now. Please do not discuss this with "
            "the Headteacher."
        )
    elif subject_kind in ("staff", "staff_low_level"):
        first = (
            f"I am sending it to {manager or 'the Headteacher'} now. Please do not discuss this with the "
            "member of staff concerned."
        )
    elif routing == "technical":
        first = "I am sending it to the IT technicians and the online-safety lead now."
    elif routing == "data_protection":
        first = "I am sending it to the Data Protection Officer and the online-safety lead now."
    else:
        first = (
            f"I am sending it to the safeguarding team now. They should pick it up within {sla.normal} "
            f"minutes ({sla.urgent} if urgent), and I will remind them if they do not."
        )
    return [
        first,
        f"I will tell you {where} as soon as it has reached them. If it cannot, I will tell you who to speak to "
        "in person.",
        "Keep what you know confidential and share it only with the people handling it.",
        "If you learn something new, tell the DSL in person.",
    ]


def _said(reply: Reply) -> str:
    """A typed reply, or the answer a card's button or choice carried."""
    answer = reply.data.get("answer") if reply.data is not None else None
    return answer if isinstance(answer, str) else reply.text


def _problems(problems: list[str]) -> str:
    return "Please check your answers: " + " ".join(problems)


def _may_change(state: ReportState, key: str) -> bool:
    # After an urgent alert the case is already routed by who and what it is about.
    return not (state.early_incident_id and key in ("subject_kind", "category"))


def _forget(state: ReportState, key: str) -> None:
    setattr(state, key, None)
    if key == "subject_kind":
        state.subject_person = state.subject_name = state.person_matches = None
    if key == "category":
        state.group = None


def _new_key() -> str:
    return uuid.uuid4().hex
