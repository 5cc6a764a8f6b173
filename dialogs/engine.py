"""The conversation engine: runs a bot.conversation.Conversation as a botbuilder Dialog.

The only place a feature's conversation meets botbuilder's dialogs. The handler starts it, interrupts it for a
command and ends it after its timeout; everything else (asking, re-asking, cancel, finishing) happens here.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Generic

from botbuilder.core import TurnContext
from botbuilder.dialogs import Dialog, DialogContext, DialogInstance, DialogReason, DialogTurnResult
from botbuilder.schema import ActivityTypes

from bot.actor import ACTOR_SLOT, Actor
from bot.conversation import Conversation, Ctx, Reply, S, state_from_data, state_to_data
from bot.handler import message_with_card

CANCEL_WORDS = frozenset({"cancel", "stop", "quit", "exit"})
_STATE, _ASKED = "conversation.state", "conversation.asked"


class ConversationDialog(Dialog, Generic[S]):  # type: ignore[misc]  # botbuilder ships no type information
    handles_cancel = True  # the engine says what became of the conversation itself

    def __init__(self, conversation: Conversation[S]) -> None:
        super().__init__(conversation.name)
        self.conversation = conversation

    @property
    def timeout(self) -> dt.timedelta | None:
        return self.conversation.timeout

    async def begin_dialog(self, dialog_context: DialogContext, options: object = None) -> DialogTurnResult:
        state = (
            state_from_data(self.conversation, options) if isinstance(options, dict) else self.conversation.new_state()
        )
        ctx = self._ctx(dialog_context.context, state, self.conversation.intro)
        result = await self._advance(dialog_context, ctx)
        await ctx.say()  # the intro, if nothing was said for it to go with
        return result

    async def continue_dialog(self, dialog_context: DialogContext) -> DialogTurnResult:
        context = dialog_context.context
        if context.activity.type != ActivityTypes.message:
            return Dialog.end_of_turn
        instance = dialog_context.active_dialog
        ctx = self._ctx(context, state_from_data(self.conversation, instance.state.get(_STATE)))
        reply = _reply(context)
        if _said(reply).casefold() in CANCEL_WORDS:
            await ctx.say(self.conversation.stopped(ctx.state, "cancelled"))
            return await dialog_context.end_dialog()
        question = self.conversation.question(instance.state.get(_ASKED))
        problem = await question.answer(ctx, reply) if question is not None else None
        if problem:  # said above the question it is about, in one message
            ctx = self._ctx(context, ctx.state, problem)
        result = await self._advance(dialog_context, ctx)
        await ctx.say()  # the problem, if nothing was said for it to go with
        return result

    async def resume_dialog(
        self, dialog_context: DialogContext, reason: DialogReason, result: object = None
    ) -> DialogTurnResult:
        return Dialog.end_of_turn  # nothing is ever stacked on a conversation

    async def end_dialog(self, context: TurnContext, instance: DialogInstance, reason: DialogReason) -> None:
        instance.state.pop(_STATE, None)  # what was half-written goes with the conversation

    def stopped_text(self, outer_dc: DialogContext, reason: str) -> str:
        """What became of this conversation when a command interrupted it or it was left too long."""
        instance = outer_dc.active_dialog
        saved = instance.state.get(_STATE) if instance is not None else None
        state = state_from_data(self.conversation, saved) if isinstance(saved, dict) else None
        return self.conversation.stopped(state, reason)

    async def _advance(self, dialog_context: DialogContext, ctx: Ctx[S]) -> DialogTurnResult:
        """Ask the first question still open, or finish when there is none."""
        question = self.conversation.next_question(ctx.state)
        if question is None:
            await self.conversation.finish(ctx)
            return await dialog_context.end_dialog()
        prompt = await question.ask(ctx)
        await ctx.say(prompt.text, prompt.card)
        instance = dialog_context.active_dialog
        instance.state[_STATE] = state_to_data(ctx.state)
        instance.state[_ASKED] = question.key
        return Dialog.end_of_turn

    def _ctx(self, context: TurnContext, state: S, preface: str | None = None) -> Ctx[S]:
        """`preface` goes with the first thing said (an intro, or a problem above the question asked again): one
        message to read and one send to make, not two."""
        actor: Actor = context.turn_state[ACTOR_SLOT]
        unsaid = [preface] if preface else []

        async def say(text: str | None = None, card: dict[str, Any] | None = None) -> None:
            if unsaid:
                text = "\n\n".join(part for part in (unsaid.pop(), text) if part)
            if card is not None:
                await context.send_activity(message_with_card(card, text))
            elif text:
                await context.send_activity(text)

        return Ctx(actor=actor, state=state, say=say)


def _reply(context: TurnContext) -> Reply:
    activity = context.activity
    value = activity.value if isinstance(activity.value, dict) else None
    files = any((a.content_type or "").lower() != "text/html" for a in activity.attachments or [])
    # The person's words exactly as typed (a mention or Markdown in a report is evidence, kept as text); only the
    # ends are trimmed. Commands were matched on the cleaned text before the conversation saw this.
    return Reply(text=(activity.text or "").strip(), data=value, has_files=files)


def _said(reply: Reply) -> str:
    """The typed text, or what a card's button stands for ({"answer": "cancel"})."""
    answer = reply.data.get("answer") if reply.data else None
    return (answer if isinstance(answer, str) else reply.text).strip()
