"""The Teams front door: turns SDK activities into plain actors and routes them to features."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import hashlib
import logging
import random
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from botbuilder.core import InvokeResponse, TurnContext
from botbuilder.core.teams import TeamsActivityHandler
from botbuilder.dialogs import Dialog, DialogContext, DialogSet, DialogTurnStatus
from botbuilder.schema import Activity, ActivityTypes, Attachment, ChannelAccount
from botbuilder.schema.teams import TeamInfo

from bot.actor import (
    ACTOR_SLOT,
    Actor,
    CardAction,
    CardActionRun,
    CardReply,
    Command,
    Refused,
    access_key,
    in_menu_order,
)
from bot.cards.help import CommandHelp, build_channel_welcome_card, build_help_card, build_personal_welcome_card
from bot.config import AppConfig, SchoolConfig
from bot.inbound import InvokeAnswer, claim_key
from bot.people import stranger
from bot.protocols import Clock, ConversationStore, Directory, UnitOfWorkFactory
from bot.quiet import Greetings
from bot.school_lookup import Placement, place
from bot.turns import ActivityNote, TurnStore
from dialogs import state as dialog_state

log = logging.getLogger(__name__)
InvokeAnswerRun = Callable[[Actor | None, dict[str, Any]], Awaitable[dict[str, Any] | None]]

ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
CANCEL_WORDS = {"cancel", "stop", "quit", "exit"}
HELP_WORDS = {"help", "menu", "?"}
HEALTH_CHECK = "healthCheck"  # Teams' invoke to check the bot answers; it has no effect, so it takes no claim
HEALTH_CHECK_BODY = {"healthResults": {"success": True, "messages": ["Health check succeeded."]}}
# A redelivered invoke waits at most this long for the first delivery's answer, then gets a neutral one: Teams itself
# waits only seconds for an invoke's answer, and a first delivery usually answers in well under one.
REDELIVERY_WAIT_SECONDS = 5.0
STILL_WORKING = "Still working on that. Please wait a moment before trying again."
INVOKE_FAILED = "Sorry, something went wrong on my side and I could not finish that. Please try again."
MAX_STORED_KEY = 255  # conversation_refs key columns; a longer id is not one Teams issues
# Bytes of memory, not a count: a count let long ids and names grow the cache without limit.
SAVED_REFERENCES_BUDGET = 2 * 1024 * 1024
_ENTRY_OVERHEAD = 240  # an OrderedDict slot, the key tuple and the digest object, roughly
_MENTION = re.compile(r"<at>.*?</at>", re.IGNORECASE)
_ACTIVITY_NOTE = "esafety.activity_note"


@dataclass
class BotServices:
    """Everything the front door needs, wired once by the app factory."""

    config: AppConfig
    directory: Directory
    uow: UnitOfWorkFactory
    refs: ConversationStore
    dev: bool = False
    commands: list[Command] = field(default_factory=list)
    card_actions: dict[str, CardAction] = field(default_factory=dict)
    dialogs: list[Dialog] = field(default_factory=list)
    # async (Actor) -> card | None: after a person's own message in their 1:1 chat, a card they still owe (AUP)
    follow_ups: list[Any] = field(default_factory=list)
    # The turn's own database work: the inbound claim (each activity Teams delivers, and redelivers, takes effect
    # once) and the conversation's state, read before the turn and written after it. None only in unit wiring.
    turns: TurnStore | None = None
    # Invokes other than Universal Actions that a feature answers, by invoke name (e.g. "fileConsent/invoke")
    invokes: dict[str, CardActionRun] = field(default_factory=dict)
    # Invokes answered in the invoke response itself (compose extensions): the feature returns the body
    answered_invokes: dict[str, InvokeAnswerRun] = field(default_factory=dict)
    # A guided conversation left longer than this ends, and what was half-written in it is deleted.
    conversation_timeout: dt.timedelta = dt.timedelta(hours=24)
    clock: Clock | None = None
    # One greeting per install: Teams announces an install twice (installationUpdate and conversationUpdate)
    greetings: Greetings | None = None
    # async (tenant id, person id, conversation kind, text) -> bot.trust.TrustAnswer | None: a message from someone
    # no school of a shared tenant places; the trust feature answers its own people there (dialogs/trust.py).
    trust_turn: Any = None

    def add_command(self, command: Command) -> None:
        self.commands.append(command)
        self.commands.sort(key=lambda c: -len(c.name))  # longest first: "my reports" before "my"

    def add_invoke(self, name: str, run: CardActionRun) -> None:
        """A feature answers this invoke: `run(actor, value)`; its reply is posted in the conversation."""
        if name in self.invokes:
            raise ValueError(f"invoke {name!r} registered twice")
        self.invokes[name] = run

    def add_answered_invoke(self, name: str, run: InvokeAnswerRun) -> None:
        """A feature answers this invoke in its response: `run(actor, value)` returns the body Teams reads (a
        compose extension's task module, say), or None for an empty answer. The actor is None where the school is
        not set up."""
        if name in self.invokes or name in self.answered_invokes:
            raise ValueError(f"invoke {name!r} registered twice")
        self.answered_invokes[name] = run

    def add_card_action(self, action: CardAction) -> None:
        if action.verb in self.card_actions:
            raise ValueError(f"card action {action.verb!r} registered twice")
        self.card_actions[action.verb] = action


class _Outgoing(Activity):  # type: ignore[misc]  # botbuilder ships no type information
    """A message built for one send. TurnContext deep-copies every activity it sends so the caller's object is never
    changed; it only sets top-level fields on the copy, and a card is a large tree, so a shallow copy does."""

    def __deepcopy__(self, _memo: dict[int, Any]) -> _Outgoing:
        return copy.copy(self)


def message_with_card(card: dict[str, Any], text: str | None = None) -> Activity:
    return _Outgoing(
        type=ActivityTypes.message, text=text, attachments=[Attachment(content_type=ADAPTIVE_CARD, content=card)]
    )


def clean_text(activity: Activity) -> str:
    """The typed text without @mentions, trimmed and with single spaces."""
    raw = _MENTION.sub(" ", activity.text or "")
    return " ".join(raw.split())


class _TurnAdapter:
    """The plain `Turn` a feature sees, backed by the SDK's TurnContext."""

    def __init__(self, context: TurnContext, actor: Actor, text: str, dialogs: DialogSet, started: Any = None) -> None:
        self._context = context
        self.actor = actor
        self.text = text
        self._dialogs = dialogs
        self._started = started  # async (context) -> None: notes when a guided conversation began

    async def say(self, text: str | None = None, card: dict[str, Any] | None = None) -> None:
        if card is not None:
            await self._context.send_activity(message_with_card(card, text))
        elif text:
            await self._context.send_activity(text)

    async def begin_dialog(self, dialog_id: str, options: Any = None) -> None:
        dialog_context = await self._dialogs.create_context(self._context)
        if self._started is not None:
            await self._started(self._context)
        await dialog_context.begin_dialog(dialog_id, options)


class EsafetyBot(TeamsActivityHandler):  # type: ignore[misc]  # botbuilder ships no type information
    def __init__(self, services: BotServices) -> None:
        super().__init__()
        self._services = services
        self._dialogs = dialog_state.StackDialogs()
        self._saved_references = _ByteBoundedDigests(SAVED_REFERENCES_BUDGET)
        # The help menu for each distinct access (bot.actor.access_key): a school has a handful of role sets, and the
        # menu was worked out afresh on every `help`, a permission check a command.
        self._menus: dict[tuple[object, ...], tuple[CommandHelp, ...]] = {}
        for dialog in services.dialogs:
            self._dialogs.add(dialog)

    # --- the turn ---------------------------------------------------------------------------------------------

    async def on_turn(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        if activity.type == ActivityTypes.invoke and activity.name == HEALTH_CHECK:
            await _answer_invoke(turn_context, InvokeResponse(status=int(HTTPStatus.OK), body=HEALTH_CHECK_BODY))
            return
        turns = self._services.turns
        if turns is None:  # unit wiring: no database
            await self._take_turn(turn_context)
            return
        # The claim is taken here, not in the HTTP route, because this runs only after the adapter has
        # authenticated the request: a forged activity can never use up the id of a real one.
        key = self._claim_key(activity)
        started = await turns.begin(key, _state_key(activity))
        if not started.claimed:
            assert key is not None  # only a claim can be lost
            await self._answer_redelivery(turn_context, turns, key)
            return
        dialog_state.attach(turn_context, started.state)
        invoke = activity.type == ActivityTypes.invoke
        try:
            await self._take_turn(turn_context)
        except Exception:
            # A redelivery should hear that this failed, not wait for an answer that will not come.
            failed = InvokeAnswer(int(HTTPStatus.OK), _message_body(INVOKE_FAILED)) if invoke else None
            await self._end(turn_context, turns, key, failed)
            raise
        unanswered = InvokeAnswer(int(HTTPStatus.NOT_IMPLEMENTED), None)  # what the adapter says when none is sent
        answer = (_invoke_answer(turn_context) or unanswered) if key is not None and invoke else None
        await self._end(turn_context, turns, key, answer)

    async def _end(
        self, turn_context: TurnContext, turns: TurnStore, key: str | None, answer: InvokeAnswer | None
    ) -> None:
        """Finish the claim, save the conversation's state if it changed and note the activity: one transaction."""
        dialog_state.settle(turn_context)
        dialog_state.release(turn_context)
        state = dialog_state.state_of(turn_context)
        note: ActivityNote | None = turn_context.turn_state.get(_ACTIVITY_NOTE)
        try:
            saved = await turns.end(key, answer, state.change() if state is not None else None, note)
        except Exception:  # noqa: BLE001 - the turn itself is done; a late redelivery may run it again after the lease
            log.exception("could not finish an inbound activity")
            return
        if not saved:
            # Another turn in this conversation saved first; its state stands. The person's request has been
            # handled (effects are idempotent on their own), so an error message here would only alarm them.
            log.warning("conversation state not saved: another turn in the conversation saved first")

    async def _take_turn(self, turn_context: TurnContext) -> None:
        placement = await self._school_for(turn_context.activity)
        school = placement.school
        turn_context.turn_state["esafety.school"] = school
        if school is None and placement.shared:
            await self._unplaced(turn_context, placement)
            return
        if school is not None:
            await self._remember_conversation(turn_context, school)
        await super().on_turn(turn_context)
        await self._follow_up(turn_context)
        if school is not None:
            await self._note_activity(turn_context, school)

    def _claim_key(self, activity: Activity) -> str | None:
        if not activity.id or not activity.conversation:
            return None  # an activity without an id cannot be told from its redelivery; process it as before
        return claim_key(activity.channel_id or "", activity.conversation.id or "", activity.id)

    async def _answer_redelivery(self, turn_context: TurnContext, turns: TurnStore, key: str) -> None:
        """A redelivery has no effect; an invoke gets the first delivery's answer, waiting briefly for it."""
        activity = turn_context.activity
        log.info("ignoring a redelivered %s activity %s", activity.type, activity.id)
        if activity.type != ActivityTypes.invoke:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REDELIVERY_WAIT_SECONDS
        pause = 0.05
        while (found := await turns.answered(key)) is None and loop.time() < deadline:
            await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
            pause = min(pause * 2, 0.5)
        if found is None:
            response = _invoke_message(HTTPStatus.OK, STILL_WORKING)
        else:
            response = InvokeResponse(status=found.status, body=found.body)
        await _answer_invoke(turn_context, response)

    async def _follow_up(self, turn_context: TurnContext) -> None:
        """After someone's own message (or install) in their 1:1 chat, features may add a card they still owe."""
        activity = turn_context.activity
        if not self._services.follow_ups or turn_context.turn_state.get("esafety.school") is None:
            return
        if activity.type != ActivityTypes.message and not turn_context.turn_state.get("esafety.greeted"):
            return  # of an install's two announcements, only the one that greeted
        if isinstance(activity.value, dict) and activity.value.get("verb"):
            return  # not invokes or card submits: those answer with their own card
        actor = await self._actor(turn_context)
        if actor is None or actor.conversation_kind != "personal" or not actor.person.roles:
            return
        if dialog_state.in_dialog(turn_context):
            return  # never interrupt a guided conversation
        for follow_up in self._services.follow_ups:
            try:
                card = await follow_up(actor)
            except Exception:  # noqa: BLE001 - the person's own request already succeeded
                log.exception("follow-up failed")
                continue
            if card is not None:
                await turn_context.send_activity(message_with_card(card))

    async def _note_activity(self, turn_context: TurnContext, school: SchoolConfig) -> None:
        """Note that someone spoke in this conversation, and whether a guided conversation is under way in it; the
        note is written with the turn's closing transaction."""
        activity = turn_context.activity
        if not activity.conversation or activity.type not in (ActivityTypes.message, ActivityTypes.invoke):
            return  # installs and membership changes are Teams speaking, not the person
        kind = activity.conversation.conversation_type or "personal"
        if kind == "personal":
            sender = activity.from_property or ChannelAccount()
            key = sender.aad_object_id or sender.id
            busy = dialog_state.in_dialog(turn_context)
        elif kind == "channel":
            key, busy = _channel_id(activity), False
        else:
            return
        if key and len(key) <= MAX_STORED_KEY:
            turn_context.turn_state[_ACTIVITY_NOTE] = ActivityNote(
                school.id, kind if kind == "channel" else "person", key, busy
            )

    async def _school_for(self, activity: Activity) -> Placement:
        """Tenant, team, then the person (bot.school_lookup): the same rule as the tab's."""
        team_id = ((activity.channel_data or {}).get("team") or {}).get("id")
        sender = activity.from_property or ChannelAccount()
        config = self._services.config
        placement = await place(config, self._services.directory, _tenant_of(activity), team_id, sender.aad_object_id)
        if placement.school is None and not placement.shared and self._services.dev and config.dev_default_school:
            placement = Placement(config.school(config.dev_default_school))
        return placement

    async def _unplaced(self, turn_context: TurnContext, placement: Placement) -> None:
        """A tenant hosting several schools and a person who is at none or several of them: nothing reaches any
        school. A trust person outside every school may still ask for the trust digest."""
        activity = turn_context.activity
        if activity.type == ActivityTypes.message and self._services.trust_turn is not None:
            sender = activity.from_property or ChannelAccount()
            kind = (activity.conversation.conversation_type if activity.conversation else None) or "personal"
            text = clean_text(activity)
            answer = await self._services.trust_turn(_tenant_of(activity), sender.aad_object_id, kind, text)
            if answer is not None:
                # Kept under the trust's home school, so the weekly trust digest can reach this chat.
                await self._remember_conversation(turn_context, answer.home)
                reply = answer.reply
                if reply.card is not None:
                    await turn_context.send_activity(message_with_card(reply.card, reply.message))
                else:
                    await turn_context.send_activity(reply.message)
                return
        message = placement.message or ""
        if activity.type == ActivityTypes.invoke:
            await _answer_invoke(turn_context, _invoke_message(HTTPStatus.OK, message))
        elif activity.type == ActivityTypes.message:
            await turn_context.send_activity(message)

    async def _actor(self, turn_context: TurnContext) -> Actor | None:
        known: Actor | None = turn_context.turn_state.get(ACTOR_SLOT)
        if known is not None:
            return known
        school: SchoolConfig | None = turn_context.turn_state.get("esafety.school")
        if school is None:
            return None
        sender = turn_context.activity.from_property or ChannelAccount()
        person_id = sender.aad_object_id or sender.id or ""
        person = await self._services.directory.person(school.id, person_id) or stranger(person_id, sender.name)
        kind = (
            turn_context.activity.conversation.conversation_type if turn_context.activity.conversation else None
        ) or "personal"
        actor = turn_context.turn_state[ACTOR_SLOT] = Actor(school=school, person=person, conversation_kind=kind)
        return actor

    async def _remember_conversation(self, turn_context: TurnContext, school: SchoolConfig) -> None:
        activity = turn_context.activity
        if not activity.conversation or not activity.service_url:
            return
        conversation_type = activity.conversation.conversation_type or "personal"
        channel_data = activity.channel_data or {}
        if conversation_type == "personal":
            sender = activity.from_property or ChannelAccount()
            kind, key, extra = "person", sender.aad_object_id or sender.id, {}
        elif conversation_type == "channel":
            kind, key = (
                "channel",
                (channel_data.get("channel") or {}).get("id") or activity.conversation.id.split(";")[0],
            )
            extra = {"team_id": (channel_data.get("team") or {}).get("id")}
        else:
            return
        if not key:
            return
        if len(key) > MAX_STORED_KEY or any(len(v) > MAX_STORED_KEY for v in extra.values() if v):
            log.warning("not saving a %s conversation reference: its id is longer than Teams issues", kind)
            return
        # A reference rarely changes, so it is written only when what it is made of changed. Only a digest of that
        # is kept, so the memory an entry takes does not depend on what the activity carried.
        cache_key = (school.id, kind, key)
        fingerprint = _reference_fingerprint(activity, extra)
        if self._saved_references.get(cache_key) == fingerprint:
            return
        reference = TurnContext.get_conversation_reference(activity).serialize()
        reference.pop("activityId", None)
        reference.pop("locale", None)
        for account in ("user", "bot", "conversation"):  # display names are personal data a send never needs
            if isinstance(reference.get(account), dict):
                reference[account].pop("name", None)
        if kind == "channel":
            reference["conversation"]["id"] = key
        await self._services.refs.save(school.id, kind, key, reference, **extra)
        self._saved_references.put(cache_key, fingerprint)

    # --- messages --------------------------------------------------------------------------------------------

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        actor = await self._actor(turn_context)
        if actor is None:
            await turn_context.send_activity(
                "This school is not set up for the eSafety app yet. Please ask your IT team to finish setting it up."
            )
            return
        value = turn_context.activity.value if isinstance(turn_context.activity.value, dict) else None
        if value and value.get("verb") and not value.get("command"):
            await self._submit_card_action(turn_context, actor, value)
            return
        if value and isinstance(value.get("command"), str):
            turn_context.activity.text = value["command"]  # a card button that stands for typed text
        text = clean_text(turn_context.activity)
        if dialog_state.in_dialog(turn_context):
            dialog_context = await self._dialogs.create_context(turn_context)
            assert dialog_context.active_dialog is not None  # the same stack in_dialog read
            # Kept only while a guided conversation runs, so other turns write no state for it.
            last_turn = dialog_state.last_turn(turn_context)
            now = self._now()
            dialog_state.set_last_turn(turn_context, now.isoformat())
            active = self._dialogs.find_dialog(dialog_context.active_dialog.id)
            limit = getattr(active, "timeout", None) or self._services.conversation_timeout
            if _older_than(last_turn, now, limit):
                # Left for too long: end it and delete what was half-written, then treat this as a fresh message.
                await turn_context.send_activity(_stopped_text(active, dialog_context, "timed_out"))
                await dialog_context.cancel_all_dialogs()
                await self._run_command(turn_context, actor, text)
                return
            if self._is_command(text):
                # Every command interrupts a guided conversation, which says what became of it.
                await turn_context.send_activity(_stopped_text(active, dialog_context, "interrupted"))
                await dialog_context.cancel_all_dialogs()
                await self._run_command(turn_context, actor, text)
                return
            if text.lower() in CANCEL_WORDS and not getattr(active, "handles_cancel", False):
                await dialog_context.cancel_all_dialogs()
                await turn_context.send_activity("Stopped. Nothing was saved. Type `help` to see what I can do.")
                return
            result = await dialog_context.continue_dialog()
            if result.status != DialogTurnStatus.Empty:
                return
        await self._run_command(turn_context, actor, text)

    async def _note_start(self, turn_context: TurnContext) -> None:
        dialog_state.set_last_turn(turn_context, self._now().isoformat())

    def _now(self) -> dt.datetime:
        return self._services.clock.now() if self._services.clock is not None else dt.datetime.now(dt.UTC)

    def _is_command(self, text: str) -> bool:
        """Exactly a command's name (or help): a longer answer that starts with one ("report it to the police")
        stays an answer."""
        lowered = text.lower()
        return lowered in HELP_WORDS or any(lowered == c.name for c in self._services.commands)

    async def _run_command(self, turn_context: TurnContext, actor: Actor, text: str) -> None:
        lowered = text.lower()
        if lowered in CANCEL_WORDS:
            await turn_context.send_activity("There is nothing to cancel. Type `help` to see what I can do.")
            return
        if lowered in HELP_WORDS or lowered in {"hi", "hello", ""}:
            await self._send_help(turn_context, actor)
            return
        for command in self._services.commands:
            if lowered == command.name or lowered.startswith(command.name + " "):
                if not command.allowed(actor):
                    await self._refuse(actor, command.name, "command")
                    await turn_context.send_activity(
                        "Sorry, that is not available to you. Type `help` to see what you can do."
                    )
                    return
                if actor.conversation_kind != "personal" and not command.channel_ok:
                    await turn_context.send_activity(
                        "Please message me privately for that, so nothing sensitive is posted here."
                    )
                    return
                args = text[len(command.name) :].strip()
                await command.run(_TurnAdapter(turn_context, actor, text, self._dialogs, self._note_start), args)
                return
        await self._send_help(turn_context, actor, unknown_text=text)

    async def _send_help(self, turn_context: TurnContext, actor: Actor, unknown_text: str | None = None) -> None:
        card = build_help_card(actor.person.first_name, self._help_items(actor), unknown_text=unknown_text)
        await turn_context.send_activity(message_with_card(card))

    def _help_items(self, actor: Actor) -> tuple[CommandHelp, ...]:
        key = access_key(actor)
        menu = self._menus.get(key)
        if menu is None:
            allowed = [c for c in self._services.commands if c.in_help and c.allowed(actor)]
            menu = self._menus[key] = tuple(CommandHelp(c.name, c.title, c.description) for c in in_menu_order(allowed))
        return menu

    # --- card actions ----------------------------------------------------------------------------------------

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        response = await self._invoke(turn_context)
        await _answer_invoke(turn_context, response)  # the SDK sends none of its own once one is there
        return response

    async def _invoke(self, turn_context: TurnContext) -> InvokeResponse:
        feature_invoke = self._services.invokes.get(turn_context.activity.name or "")
        if feature_invoke is not None:
            return await self._feature_invoke(turn_context, feature_invoke)
        answered = self._services.answered_invokes.get(turn_context.activity.name or "")
        if answered is not None:
            value = turn_context.activity.value if isinstance(turn_context.activity.value, dict) else {}
            body = await answered(await self._actor(turn_context), value)
            return InvokeResponse(status=int(HTTPStatus.OK), body=body)
        if turn_context.activity.name != "adaptiveCard/action":
            response = await super().on_invoke_activity(turn_context)
            if response is None or response.status == int(HTTPStatus.NOT_IMPLEMENTED):
                # An invoke this app does not offer is the sender's mistake, not a fault here (which 5xx would say).
                return _invoke_message(HTTPStatus.OK, "Sorry, I can't do that here. Type `help` to see what I can do.")
            return response
        value = turn_context.activity.value if isinstance(turn_context.activity.value, dict) else {}
        given = value.get("action")
        action: dict[str, Any] = given if isinstance(given, dict) else {}
        verb = action.get("verb")
        if not verb:
            return _invoke_message(HTTPStatus.BAD_REQUEST, "That button is missing its action.")
        actor = await self._actor(turn_context)
        if actor is None:
            return _invoke_message(HTTPStatus.OK, "This school is not set up for the eSafety app yet.")
        given_data = action.get("data")
        data: dict[str, Any] = given_data if isinstance(given_data, dict) else {}
        reply = await self._dispatch(actor, verb, data)
        if reply.card is not None:
            return InvokeResponse(
                status=int(HTTPStatus.OK),
                body={
                    "statusCode": 200,
                    "type": ADAPTIVE_CARD,
                    "value": reply.card,
                },
            )
        return _invoke_message(HTTPStatus.OK, reply.message or "Done.")

    async def _feature_invoke(self, turn_context: TurnContext, run: CardActionRun) -> InvokeResponse:
        """An invoke a feature registered: it gets the plain actor and value; Teams gets an empty 200."""
        actor = await self._actor(turn_context)
        if actor is None:
            return _invoke_message(HTTPStatus.OK, "This school is not set up for the eSafety app yet.")
        value = turn_context.activity.value if isinstance(turn_context.activity.value, dict) else {}
        reply = await run(actor, value)
        if reply.card is not None:
            await turn_context.send_activity(message_with_card(reply.card, reply.message))
        elif reply.message:
            await turn_context.send_activity(reply.message)
        return InvokeResponse(status=int(HTTPStatus.OK))

    async def _submit_card_action(self, turn_context: TurnContext, actor: Actor, value: dict[str, Any]) -> None:
        """Action.Submit fallback for clients without Universal Actions: answer with a new message."""
        data = {k: v for k, v in value.items() if k != "verb"}
        reply = await self._dispatch(actor, value["verb"], data)
        if reply.card is not None:
            await turn_context.send_activity(message_with_card(reply.card, reply.message))
        elif reply.message:
            await turn_context.send_activity(reply.message)

    async def _dispatch(self, actor: Actor, verb: Any, data: dict[str, Any]) -> CardReply:
        action = self._services.card_actions.get(verb) if isinstance(verb, str) else None
        if action is None:
            return CardReply(message="Sorry, that button is no longer available. Type `help` to start again.")
        if not action.allowed(actor):
            await self._refuse(actor, verb, "card_action")
            return CardReply(message="Sorry, you are not allowed to do that. It has been recorded.")
        try:
            return await action.run(actor, data)
        except Refused as refused:
            await self._refuse(actor, verb, "card_action", refused.message)
            return CardReply(message=refused.message)

    async def _refuse(self, actor: Actor, what: str, kind: str, reason: str | None = None) -> None:
        async with self._services.uow() as uow:
            await uow.audit.record(
                actor.school_id, actor.person.id, "refused", kind, what, {"reason": reason or "role not held"}
            )

    # --- installs --------------------------------------------------------------------------------------------

    async def on_installation_update_add(self, turn_context: TurnContext) -> None:
        await self._greet(turn_context)

    async def on_installation_update_remove(self, turn_context: TurnContext) -> None:
        if turn_context.activity.action != "remove" or self._services.greetings is None:
            return  # "remove-upgrade" is half of an upgrade, not an uninstall: the app stays
        school: SchoolConfig | None = turn_context.turn_state.get("esafety.school")
        await self._services.greetings.release(school.id if school else "", _greeting_key(turn_context.activity))

    async def on_teams_members_added(
        self, teams_members_added: list[Any], team_info: TeamInfo, turn_context: TurnContext
    ) -> None:
        bot_id = turn_context.activity.recipient.id if turn_context.activity.recipient else None
        if any(member.id == bot_id for member in teams_members_added):
            await self._greet(turn_context)

    async def _greet(self, turn_context: TurnContext) -> None:
        """Greet once per install, whichever of Teams' two announcements comes first, on any replica."""
        greetings = self._services.greetings
        if greetings is None:
            await self._send_greeting(turn_context)
            return
        school: SchoolConfig | None = turn_context.turn_state.get("esafety.school")
        school_id, conversation = (school.id if school else ""), _greeting_key(turn_context.activity)
        if not await greetings.claim(school_id, conversation):
            return
        try:
            await self._send_greeting(turn_context)
        except BaseException:
            await greetings.release(school_id, conversation)  # the other announcement, or a redelivery, may greet
            raise
        await greetings.greeted(school_id, conversation)
        turn_context.turn_state["esafety.greeted"] = True

    async def _send_greeting(self, turn_context: TurnContext) -> None:
        school: SchoolConfig | None = turn_context.turn_state.get("esafety.school")
        if school is None:
            await turn_context.send_activity(
                "This school is not set up for the eSafety app yet. Please ask your IT team to finish setting it up."
            )
            return
        if turn_context.activity.conversation and turn_context.activity.conversation.conversation_type == "channel":
            channel_id = _channel_id(turn_context.activity)
            purposes = [p for p, cid in school.channels.model_dump().items() if cid and cid == channel_id]
            await turn_context.send_activity(message_with_card(build_channel_welcome_card(school.name, purposes)))
            return
        actor = await self._actor(turn_context)
        assert actor is not None  # the school is set up (above), so the person has an actor
        card = build_personal_welcome_card(actor.person.first_name, school.name, self._help_items(actor))
        await turn_context.send_activity(message_with_card(card))


def _reference_fingerprint(activity: Activity, extra: dict[str, str | None]) -> bytes:
    """A digest of every field a saved conversation reference takes from the activity (names excepted)."""
    user, bot, conversation = activity.from_property, activity.recipient, activity.conversation
    parts = [
        activity.service_url,
        activity.channel_id,
        *((user.id, user.aad_object_id, user.role) if user else ("",) * 3),
        *((bot.id, bot.aad_object_id, bot.role) if bot else ("",) * 3),
        conversation.id,
        conversation.tenant_id,
        conversation.conversation_type,
        conversation.is_group,
        *sorted(extra.items()),
    ]
    return hashlib.sha256(repr(parts).encode("utf-8", "surrogatepass")).digest()


def _tenant_of(activity: Activity) -> str | None:
    channel_data = activity.channel_data or {}
    conversation_tenant = activity.conversation.tenant_id if activity.conversation else None
    return conversation_tenant or (channel_data.get("tenant") or {}).get("id")


def _state_key(activity: Activity) -> str | None:
    """Where a conversation's state is kept: botbuilder's ConversationState key, so state saved before carries over."""
    if not activity.channel_id or not activity.conversation or not activity.conversation.id:
        return None
    return f"{activity.channel_id}/conversations/{activity.conversation.id}"


def _channel_id(activity: Activity) -> str:
    """A channel's own id: a channel conversation's id may carry the thread (";messageid=...")."""
    return ((activity.channel_data or {}).get("channel") or {}).get("id") or (activity.conversation.id or "").split(
        ";"
    )[0]


def _greeting_key(activity: Activity) -> str:
    """What one install greets: the 1:1 or group chat, or the channel (whatever thread the announcement came in)."""
    if activity.conversation.conversation_type == "channel":
        return _channel_id(activity)
    return (activity.conversation.id or "").split(";")[0]


def _older_than(stamp: Any, now: dt.datetime, limit: dt.timedelta) -> bool:
    try:
        return isinstance(stamp, str) and now - dt.datetime.fromisoformat(stamp) > limit
    except (TypeError, ValueError):
        return False


def _stopped_text(dialog: Any, dialog_context: DialogContext, reason: str) -> str:
    """What became of the conversation, in the dialog's own words where it has them."""
    words = getattr(dialog, "stopped_text", None)
    if words is not None:
        text: str = words(dialog_context, reason)
        return text
    if reason == "timed_out":
        return "What we were doing was left for more than a day, so I have deleted it. Nothing was saved."
    return "I have stopped what we were doing. Nothing was saved."


def _invoke_message(status: HTTPStatus, message: str) -> InvokeResponse:
    return InvokeResponse(status=int(status), body=_message_body(message, status))


def _message_body(message: str, status: HTTPStatus = HTTPStatus.OK) -> dict[str, Any]:
    return {"statusCode": int(status), "type": "application/vnd.microsoft.activity.message", "value": message}


async def _answer_invoke(turn_context: TurnContext, response: InvokeResponse) -> None:
    """Where the adapter reads the answer to send (as sending an invokeResponse activity puts it), without the deep
    copy of the whole answer, card and all, that send_activity makes of everything it sends."""
    answer = Activity(type=ActivityTypes.invoke_response, value=response)
    turn_context.turn_state[TurnContext._INVOKE_RESPONSE_KEY] = answer  # noqa: SLF001 - the SDK's own slot


def _invoke_answer(turn_context: TurnContext) -> InvokeAnswer | None:
    """The answer this turn gave its invoke, if any, so a redelivery can be given the same one."""
    sent = turn_context.turn_state.get(TurnContext._INVOKE_RESPONSE_KEY)  # noqa: SLF001 - the SDK's own slot
    response = getattr(sent, "value", None)
    if not isinstance(response, InvokeResponse):
        return None
    return InvokeAnswer(status=int(response.status or HTTPStatus.OK), body=response.body)


class _ByteBoundedDigests:
    """A least-recently-used map of small digests whose total size, not count, is bounded."""

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._used = 0
        self._entries: OrderedDict[tuple[str, ...], bytes] = OrderedDict()

    @staticmethod
    def _cost(key: tuple[str, ...], value: bytes) -> int:
        return _ENTRY_OVERHEAD + sum(len(part) for part in key) + len(value)

    def get(self, key: tuple[str, ...]) -> bytes | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: tuple[str, ...], value: bytes) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._used -= self._cost(key, old)
        cost = self._cost(key, value)
        if cost > self._budget:
            return
        while self._entries and self._used + cost > self._budget:
            evicted_key, evicted = self._entries.popitem(last=False)
            self._used -= self._cost(evicted_key, evicted)
        self._entries[key] = value
        self._used += cost


def new_correlation_id() -> str:
    # Only tells one turn's log lines from another's, never a secret: no system call for randomness every turn.
    return f"{random.getrandbits(32):08x}"  # noqa: S311
