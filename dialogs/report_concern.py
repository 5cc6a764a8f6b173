"""Report a concern: a short guided conversation in a 1:1 chat that ends in a committed, routed incident."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from botbuilder.core import MessageFactory
from botbuilder.dialogs import (
    ComponentDialog,
    DialogContext,
    DialogTurnResult,
    DialogTurnStatus,
    WaterfallDialog,
    WaterfallStepContext,
)
from botbuilder.dialogs.choices import Choice, FoundChoice, ListStyle
from botbuilder.dialogs.prompts import ChoicePrompt, PromptOptions, PromptValidatorContext, TextPrompt

from bot.actor import Actor
from bot.cards.incident import ReportAnswers, build_confirmation_card, build_report_summary_card
from bot.handler import message_with_card
from bot.incident_service import IncidentService, ReportInput
from bot.incidents import LOCATIONS, MAX_ANSWER_CHARS, SUBJECT_KINDS
from bot.people import ROLE_LABELS, Role
from bot.phase import examples
from bot.policy import Policy

REPORT_DIALOG = "report_concern"
_LOOP, _CHOICE, _TEXT = "report_concern.loop", "report_concern.choice", "report_concern.text"
_URL = re.compile(r"(https?://|www\.)\S+", re.IGNORECASE)
DANGER_CHOICES = ["Yes, someone is in danger now", "No"]
# Who the reporter names from the directory, so the person is kept out of the case by who they are.
NAMED_KINDS = ("staff", "staff_low_level")
SEARCH_AGAIN, NOT_SAYING = "Someone else: search again", "I'd rather not say"
_NOT_SAYING_WORDS = {"rather not say", "i'd rather not say", "i would rather not say", "prefer not to say",
                     "not saying", "skip"}
CONFIRM_CHOICES = [Choice("Submit report", synonyms=["submit", "send", "yes"]),
                   Choice("Change an answer", synonyms=["change", "edit"])]
CHANGEABLE = {
    "subject_kind": "Who it is about", "category": "What happened (type)", "location": "Where",
    "occurred": "When", "subjects": "Who is involved", "narrative": "What happened (your words)",
    "evidence": "Evidence and device", "actions_taken": "What you have done so far",
}


@dataclass
class ReportState:
    """Everything answered so far; a missing answer is None. Saved in SQL between turns."""

    subject_kind: str | None = None
    subject_person: str | None = None  # the member of staff's directory id; "" when not named or not staff
    subject_name: str | None = None
    person_matches: list[list[str]] | None = None  # [id, name] pairs from the reporter's last search
    group: str | None = None
    category: str | None = None
    immediate_danger: bool | None = None
    location: str | None = None
    occurred: str | None = None
    subjects: str | None = None
    narrative: str | None = None
    evidence: str | None = None
    actions_taken: str | None = None
    early_incident_id: int | None = None
    early_reference: str | None = None
    changing: bool = False
    asked: str | None = None
    # Fixed here before the effect is committed, so a repeat (double click, or Submit again after a crash before
    # this state was saved) finds the first effect instead of making a second. None in states saved before keys.
    alert_key: str | None = None
    submit_key: str | None = None


QUESTION_ORDER = ["subject_kind", "subject_person", "group", "category", "immediate_danger", "location", "occurred",
                  "subjects", "narrative", "evidence", "actions_taken"]


def next_question(state: ReportState) -> str | None:
    return next((name for name in QUESTION_ORDER if getattr(state, name) is None), None)


class ReportConcernDialog(ComponentDialog):
    handles_cancel = True

    def __init__(self, service: IncidentService, policy: Policy) -> None:
        super().__init__(REPORT_DIALOG)
        self._service = service
        self._policy = policy
        self.add_dialog(ChoicePrompt(_CHOICE))
        self.add_dialog(TextPrompt(_TEXT, _validate_text))
        self.add_dialog(WaterfallDialog(_LOOP, [self.ask, self.record]))
        self.initial_dialog_id = _LOOP

    # --- the loop --------------------------------------------------------------------------------------------

    async def ask(self, step: WaterfallStepContext) -> DialogTurnResult:
        """Ask the next unanswered question, or show the summary to submit."""
        if not isinstance(step.options, ReportState):
            return await step.replace_dialog(_LOOP, ReportState())
        state = _state(step)
        if state.changing:
            return await self._choose(step, "Which answer would you like to change?",
                                      [label for key, label in CHANGEABLE.items() if self._may_change(state, key)])
        question = next_question(state)
        state.asked = question
        if question is None:
            state.submit_key = state.submit_key or _new_key()
            await step.context.send_activity(message_with_card(build_report_summary_card(self._answers(state))))
            return await step.prompt(_CHOICE, PromptOptions(
                prompt=MessageFactory.text("Shall I submit it?"), choices=CONFIRM_CHOICES, style=ListStyle.none,
                retry_prompt=MessageFactory.text("Please reply `submit`, `change` or `cancel`.")))
        return await getattr(self, f"_ask_{question}")(step, state)

    async def record(self, step: WaterfallStepContext) -> DialogTurnResult:
        """Save the answer, act on it at once where it matters, then go round again."""
        state = _state(step)
        result = step.result
        if state.changing:
            key = [k for k in CHANGEABLE if self._may_change(state, k)][result.index]
            _forget(state, key)
            state.changing = False
        elif state.asked is None:
            if result.index == 1:
                state.changing = True
            else:
                return await self._submit(step, state)
        else:
            await getattr(self, f"_save_{state.asked}")(step, state, result)
        return await step.replace_dialog(_LOOP, state)

    def stopped_text(self, outer_dc: DialogContext, reason: str) -> str:
        """What became of an unfinished report that a command interrupted or that was left too long."""
        state = _state_in(outer_dc)
        if state is not None and state.early_reference:
            return (f"I have stopped your report. The safeguarding team already has your urgent alert "
                    f"{state.early_reference}; tell the DSL anything else in person.")
        if reason == "timed_out":
            return ("Your unfinished report was left for more than a day, so I have deleted it. Nothing was sent. "
                    "Type `report` to start again whenever you are ready.")
        return "I have stopped your unfinished report. Nothing was sent. Type `report` to start again."

    async def on_continue_dialog(self, inner_dc: DialogContext) -> DialogTurnResult:
        text = (inner_dc.context.activity.text or "").strip().lower()
        if text in {"cancel", "stop", "quit", "exit"}:
            state = _state_from(inner_dc)
            if state is not None and state.early_reference:
                message = (f"Stopped. The safeguarding team already has your urgent alert {state.early_reference}. "
                           "Tell the DSL anything else in person.")
            else:
                message = "Stopped. Nothing was saved. Type `report` to start again whenever you are ready."
            await inner_dc.context.send_activity(message)
            await inner_dc.cancel_all_dialogs()
            return DialogTurnResult(DialogTurnStatus.Cancelled)
        return await super().on_continue_dialog(inner_dc)

    # --- questions -------------------------------------------------------------------------------------------

    async def _choose(self, step: WaterfallStepContext, question: str, options: list[str]) -> DialogTurnResult:
        return await step.prompt(_CHOICE, PromptOptions(
            prompt=MessageFactory.text(question), choices=[Choice(o) for o in options], style=ListStyle.hero_card,
            retry_prompt=MessageFactory.text("Please pick one of the buttons, or type its number.")))

    async def _text(self, step: WaterfallStepContext, question: str, *, no_links: bool = False) -> DialogTurnResult:
        return await step.prompt(_TEXT, PromptOptions(prompt=MessageFactory.text(question),
                                                      validations={"no_links": no_links}))

    async def _ask_subject_kind(self, step: WaterfallStepContext, state: ReportState) -> DialogTurnResult:
        """Who is the concern about?"""
        return await self._choose(step, "Who is the concern about?",
                                  list(SUBJECT_KINDS.values()))

    async def _ask_subject_person(self, step: WaterfallStepContext, state: ReportState) -> DialogTurnResult:
        """Which member of staff? A search by name, then a pick from what the directory found."""
        if state.person_matches:
            return await self._choose(step, "Which of these is it?",
                                      [name for _, name in state.person_matches] + [SEARCH_AGAIN, NOT_SAYING])
        return await self._text(step, "Who is the member of staff? Type their name, or part of it, and I will "
                                "look them up. If you would rather not say, type \"rather not say\".")

    async def _ask_group(self, step: WaterfallStepContext, state: ReportState) -> DialogTurnResult:
        """Which kind of concern is it?"""
        return await self._choose(step, "What kind of concern is it? Pick the closest; it does "
                                  "not need to be exact.", [g.label for g in self._policy.category_groups])

    async def _ask_category(self, step: WaterfallStepContext, state: ReportState) -> DialogTurnResult:
        """Which category within the group?"""
        options = [f"{c.label}: {c.description}" for c in self._policy.in_group(state.group)]
        return await self._choose(step, "Which of these is closest?", options)

    async def _ask_immediate_danger(self, step: WaterfallStepContext, state: ReportState) -> DialogTurnResult:
        """Is anyone in danger right now?"""
        state.alert_key = state.alert_key or _new_key()
        return await self._choose(step, "Is anyone in immediate danger right now?",
                                  DANGER_CHOICES)

    async def _ask_location(self, step: WaterfallStepContext, state: ReportState) -> DialogTurnResult:
        """Where did it happen?"""
        return await self._choose(step, "Where did it happen?", list(LOCATIONS.values()))

    async def _ask_occurred(self, step: WaterfallStepContext, state: ReportState) -> DialogTurnResult:
        """When did it happen?"""
        return await self._text(step, "When did it happen? For example \"today at lunch\" or \"last night\".")

    async def _ask_subjects(self, step: WaterfallStepContext, state: ReportState) -> DialogTurnResult:
        """Who is involved?"""
        example = examples(_actor(step).school.phase).pupil
        return await self._text(step, "Who is involved? Initials and year group are enough, for example "
                                f"\"{example}\". Write \"not known\" if you do not know.")

    async def _ask_narrative(self, step: WaterfallStepContext, state: ReportState) -> DialogTurnResult:
        """What happened, in the reporter's words?"""
        return await self._text(step, "What happened? Use your own words, and the child's words where you have "
                                "them. Facts are more useful than opinions.")

    async def _ask_evidence(self, step: WaterfallStepContext, state: ReportState) -> DialogTurnResult:
        """What evidence is there, and where is the device now?"""
        if self._policy.category(state.category).no_imagery:
            return await self._text(step, "Which device are the images on, and where is that device now? Do not "
                                    "send, link to or describe the images themselves.", no_links=True)
        return await self._text(step, "What evidence is there, and where is it now? Give any links, which device "
                                "it is on and where that device is. Write \"none\" if there is nothing.")

    async def _ask_actions_taken(self, step: WaterfallStepContext, state: ReportState) -> DialogTurnResult:
        """What has the reporter already done?"""
        return await self._text(step, "What have you done so far? Write \"nothing yet\" if nothing.")

    # --- answers ---------------------------------------------------------------------------------------------

    async def _save_subject_kind(self, step: WaterfallStepContext, state: ReportState, found: FoundChoice) -> None:
        """Store who the concern is about; allegations about adults get a word of guidance."""
        state.subject_kind = list(SUBJECT_KINDS)[found.index]
        state.subject_person = None if state.subject_kind in NAMED_KINDS else ""
        if state.subject_kind == "staff_low_level":
            await step.context.send_activity("Thank you. A low-level concern goes to the Headteacher, who keeps "
                                             "the record of them. Please do not discuss it with the person "
                                             "concerned.")
        elif state.subject_kind in ("staff", "headteacher"):
            who = await self._service.handled_by(_actor(step), state.subject_kind, self._policy.categories[0].key,
                                                 False)
            await step.context.send_activity(f"Thank you. This will go only to {who}. Please do not discuss it with "
                                             "the person concerned or try to find out more yourself.")

    async def _save_subject_person(self, step: WaterfallStepContext, state: ReportState,
                                   result: FoundChoice | str) -> None:
        """Keep the person's directory id; an unknown name is asked again, and not saying is fine."""
        if isinstance(result, FoundChoice):
            matches, state.person_matches = state.person_matches or [], None
            if result.index < len(matches):
                await self._name_person(step, state, matches[result.index][0])
            elif result.index == len(matches) + 1:
                state.subject_person = ""
            return
        typed = result.strip()
        if typed.casefold().strip(" .!") in _NOT_SAYING_WORDS:
            state.subject_person = ""
            return
        found = await self._service.people_named(_actor(step), typed)
        if not found:
            await step.context.send_activity("I could not find anyone with that name in the school's directory. "
                                             "Please try part of their first or last name, or type \"rather not "
                                             "say\".")
            return
        state.person_matches = [[p.id, p.name] for p in found]

    async def _name_person(self, step: WaterfallStepContext, state: ReportState, person_id: str) -> None:
        person = await self._service.person(_actor(step), person_id)
        if person is None:
            await step.context.send_activity("I could not find that person any more. Please search again.")
            return
        state.subject_person, state.subject_name = person.id, person.name
        if person.has(Role.HEADTEACHER):
            state.subject_kind = "headteacher"  # the policies send a concern about the Headteacher elsewhere
            who = await self._service.handled_by(_actor(step), "headteacher", self._policy.categories[0].key, False)
            await step.context.send_activity(f"As this is about the Headteacher, it will go only to {who}.")
        await step.context.send_activity(f"Thank you. {person.name} will not be told about this report and will "
                                         "not be able to see it.")

    async def _save_group(self, step: WaterfallStepContext, state: ReportState, found: FoundChoice) -> None:
        """Store the group; 'not sure' needs no second question."""
        state.group = self._policy.category_groups[found.index].key
        options = self._policy.in_group(state.group)
        if len(options) == 1:
            await self._set_category(step, state, options[0].key)

    async def _save_category(self, step: WaterfallStepContext, state: ReportState, found: FoundChoice) -> None:
        """Store the category and show its guidance straight away when it is serious."""
        await self._set_category(step, state, self._policy.in_group(state.group)[found.index].key)

    async def _set_category(self, step: WaterfallStepContext, state: ReportState, key: str) -> None:
        state.category = key
        category = self._policy.category(key)
        if category.no_imagery:
            await step.context.send_activity(
                "Important: never view, copy, forward, print, screenshot or save the images, and do not send them "
                f"to me or anyone else. Secure the device and leave it as it is. {category.guidance}")
        elif category.illegal or category.urgent:
            await step.context.send_activity(category.guidance)
        if category.illegal:
            await self._above_threshold(step, state)

    async def _above_threshold(self, step: WaterfallStepContext, state: ReportState) -> None:
        """A low-level concern is below the harm threshold: illegal material or danger now makes it an allegation."""
        if state.subject_kind != "staff_low_level":
            return
        state.subject_kind = "staff"
        await step.context.send_activity("This is more than a low-level concern, so I will treat it as an "
                                         "allegation about a member of staff.")

    async def _save_immediate_danger(self, step: WaterfallStepContext, state: ReportState,
                                     found: FoundChoice) -> None:
        """If someone is in danger, raise the urgent alert now, before anything else."""
        state.immediate_danger = found.index == 0
        if state.immediate_danger:
            await self._above_threshold(step, state)
        if not state.immediate_danger or state.early_incident_id is not None:
            return
        await step.context.send_activity("Call 999 now if you have not already, then find the DSL in person "
                                         "straight away. I am alerting the safeguarding team as well.")
        state.alert_key = state.alert_key or _new_key()
        incident = await self._service.raise_early_alert(_actor(step), self._input(state), key=state.alert_key)
        state.early_incident_id, state.early_reference = incident.id, incident.reference
        await step.context.send_activity(f"Urgent alert raised: {incident.reference}. I will tell you here as soon "
                                         "as it has reached the safeguarding team. When it is safe to, answer a few "
                                         "more questions so they have the details.")

    async def _save_location(self, step: WaterfallStepContext, state: ReportState, found: FoundChoice) -> None:
        """Store where it happened."""
        state.location = list(LOCATIONS)[found.index]

    async def _save_occurred(self, step: WaterfallStepContext, state: ReportState, value: str) -> None:
        """Store when it happened."""
        state.occurred = value.strip()

    async def _save_subjects(self, step: WaterfallStepContext, state: ReportState, value: str) -> None:
        """Store who is involved."""
        state.subjects = value.strip()

    async def _save_narrative(self, step: WaterfallStepContext, state: ReportState, value: str) -> None:
        """Store what happened."""
        state.narrative = value.strip()

    async def _save_evidence(self, step: WaterfallStepContext, state: ReportState, value: str) -> None:
        """Store the evidence description."""
        state.evidence = value.strip()

    async def _save_actions_taken(self, step: WaterfallStepContext, state: ReportState, value: str) -> None:
        """Store what has been done already."""
        state.actions_taken = value.strip()

    # --- submit ----------------------------------------------------------------------------------------------

    async def _submit(self, step: WaterfallStepContext, state: ReportState) -> DialogTurnResult:
        """Commit the incident, then tell the reporter its reference and what happens next."""
        actor = _actor(step)
        state.submit_key = state.submit_key or _new_key()
        incident = await self._service.submit(actor, self._input(state), state.early_incident_id, key=state.submit_key,
                                              alert_key=state.alert_key)
        plan = self._service.plan_for(incident.subject_kind, incident.category, incident.immediate_danger)
        category = self._policy.category(incident.category)
        guidance = category.guidance if plan.do_not_investigate or category.no_imagery else None
        await step.context.send_activity(message_with_card(build_confirmation_card(
            incident.reference, next_steps(actor, incident.subject_kind, category.routing, incident.case_roles),
            guidance)))
        return await step.end_dialog(incident.reference)

    def _input(self, state: ReportState) -> ReportInput:
        return ReportInput(subject_kind=state.subject_kind, category=state.category,
                           immediate_danger=bool(state.immediate_danger), location=state.location,
                           occurred=state.occurred, subjects=state.subjects, narrative=state.narrative,
                           evidence=state.evidence, actions_taken=state.actions_taken,
                           subject_person_id=state.subject_person or None)

    def _answers(self, state: ReportState) -> ReportAnswers:
        category = self._policy.category(state.category)
        group = self._policy.group(category.group).label
        return ReportAnswers(
            subject=SUBJECT_KINDS[state.subject_kind] + (f" ({state.subject_name})" if state.subject_person
                                                         and state.subject_name else ""),
            category=f"{category.label} ({group})",
            danger="Yes" if state.immediate_danger else "No", occurred=state.occurred,
            location=LOCATIONS[state.location], subjects=state.subjects, narrative=state.narrative,
            evidence=state.evidence, actions_taken=state.actions_taken)

    @staticmethod
    def _may_change(state: ReportState, key: str) -> bool:
        # After an urgent alert the case is already routed by who and what it is about.
        return not (state.early_incident_id and key in ("subject_kind", "category"))


def next_steps(actor: Actor, subject_kind: str, routing: str, case_roles: tuple[str, ...] = (), *,
               where: str = "here") -> list[str]:
    """What happens next, promising only what the bot will do: delivery is confirmed in a later message, `where`
    the reporter will read it."""
    sla = actor.school.sla_minutes
    # Whoever the case actually went to (the Vice-Chair when there is no Chair), never the usual role regardless.
    manager = f"the {ROLE_LABELS[Role(case_roles[0])]}" if case_roles and case_roles[0] in set(Role) else None
    if subject_kind == "headteacher":
        first = (f"I am sending it to {manager or 'the Chair of Governors'} now. Please do not discuss this with "
                 "the Headteacher.")
    elif subject_kind in ("staff", "staff_low_level"):
        first = (f"I am sending it to {manager or 'the Headteacher'} now. Please do not discuss this with the "
                 "member of staff concerned.")
    elif routing == "technical":
        first = "I am sending it to the IT technicians and the online-safety lead now."
    elif routing == "data_protection":
        first = "I am sending it to the Data Protection Officer and the online-safety lead now."
    else:
        first = (f"I am sending it to the safeguarding team now. They should pick it up within {sla.normal} "
                 f"minutes ({sla.urgent} if urgent), and I will remind them if they do not.")
    return [first,
            f"I will tell you {where} as soon as it has reached them. If it cannot, I will tell you who to speak to "
            "in person.",
            "Keep what you know confidential and share it only with the people handling it.",
            "If you learn something new, tell the DSL in person."]


def _new_key() -> str:
    return uuid.uuid4().hex


def _forget(state: ReportState, key: str) -> None:
    setattr(state, key, None)
    if key == "subject_kind":
        state.subject_person = state.subject_name = state.person_matches = None
    if key == "category":
        state.group = None


def _state(step: WaterfallStepContext) -> ReportState:
    return step.options if isinstance(step.options, ReportState) else ReportState()


def _state_in(outer_dc: DialogContext) -> ReportState | None:
    """The report's answers, from the conversation's stack (this component keeps its own stack inside it)."""
    instance = outer_dc.active_dialog
    inner = instance.state.get(ComponentDialog.persisted_dialog_state) if instance else None
    for entry in getattr(inner, "dialog_stack", None) or []:
        options = entry.state.get("options") if isinstance(entry.state, dict) else None
        if isinstance(options, ReportState):
            return options
    return None


def _state_from(inner_dc: DialogContext) -> ReportState | None:
    active = inner_dc.active_dialog
    options = active.state.get("options") if active and isinstance(active.state, dict) else None
    return options if isinstance(options, ReportState) else None


def _actor(step: WaterfallStepContext) -> Actor:
    return step.context.turn_state["esafety.actor"]


async def _validate_text(prompt: PromptValidatorContext) -> bool:
    """Accept short plain text; refuse files, and links where imagery must not be shared."""
    activity = prompt.context.activity
    files = [a for a in activity.attachments or [] if (a.content_type or "").lower() != "text/html"]
    if files:
        await prompt.context.send_activity("Please do not send files or pictures here. Describe the evidence and "
                                           "where it is instead.")
        return False
    value = (prompt.recognized.value or "").strip() if prompt.recognized.succeeded else ""
    if not value:
        await prompt.context.send_activity("I did not catch that. Please type a short answer.")
        return False
    if len(value) > MAX_ANSWER_CHARS:
        await prompt.context.send_activity(f"That is a little long. Please keep it under {MAX_ANSWER_CHARS} "
                                           "characters; the DSL will ask for more if they need it.")
        return False
    if (prompt.options.validations or {}).get("no_links") and _URL.search(value):
        await prompt.context.send_activity("Please do not send links to the images. Tell me only which device "
                                           "they are on and where that device is now.")
        return False
    return True

