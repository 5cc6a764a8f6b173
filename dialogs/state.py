"""The dialog stack as plain JSON in the conversation's state (bot.turns.ConversationState).

botbuilder's DialogSet reads and writes its stack through a property accessor; this one keeps the stack as live
objects for the turn and turns it back into JSON data when the turn ends, so what is stored is only ever data
(ids and the conversation's own plain state), never pickled objects, and an unchanged stack is never written.
"""

from __future__ import annotations

from typing import Any

from botbuilder.core import TurnContext
from botbuilder.dialogs import DialogContext, DialogInstance, DialogSet, DialogState
from botbuilder.dialogs.memory import DialogStateManagerConfiguration

from bot.turns import ConversationState

_STATE = "esafety.conversation_state"
_LIVE = "esafety.dialog_stack"
STACK = "dialogStack"
LAST_TURN = "lastTurnAt"
_LEGACY_STACK = "DialogState"  # documents written by botbuilder's ConversationState (jsonpickle) before this module
_LEGACY_LAST_TURN = "LastTurnAt"
_MEMORY_CONFIGURATION = DialogStateManagerConfiguration.__name__  # where botbuilder looks for it in a turn
_CONTEXTS = "esafety.dialog_contexts"


def attach(turn_context: TurnContext, state: ConversationState | None) -> None:
    """Give the turn its conversation's state (None: a turn without one, such as a redelivery)."""
    turn_context.turn_state[_STATE] = state


def state_of(turn_context: TurnContext) -> ConversationState | None:
    state: ConversationState | None = turn_context.turn_state.get(_STATE)
    return state


def last_turn(turn_context: TurnContext) -> str | None:
    state = state_of(turn_context)
    value = state.data.get(LAST_TURN) if state is not None else None
    return value if isinstance(value, str) else None


def set_last_turn(turn_context: TurnContext, stamp: str) -> None:
    state = state_of(turn_context)
    if state is not None:
        state.data[LAST_TURN] = stamp


def settle(turn_context: TurnContext) -> None:
    """Put the turn's dialog stack back into the state as data; with no dialog under way nothing is kept."""
    state = state_of(turn_context)
    live: DialogState | None = turn_context.turn_state.get(_LIVE)
    if state is None or live is None:
        return
    if live.dialog_stack:
        state.data[STACK] = [{"id": instance.id, "state": instance.state} for instance in live.dialog_stack]
    else:
        state.data.pop(STACK, None)
        state.data.pop(LAST_TURN, None)  # kept only while a guided conversation runs


class StackDialogs(DialogSet):  # type: ignore[misc]  # botbuilder ships no type information
    """botbuilder's DialogSet over the stack kept here (DialogStackProperty).

    Each DialogContext builds the configuration of botbuilder's dialog memory (its scopes and path resolvers), unless
    the turn already holds one: 30 microseconds every time, for objects that never change and that no dialog here
    reads. The first is kept and handed to every later turn.
    """

    def __init__(self) -> None:
        super().__init__(DialogStackProperty())
        self._memory: Any = None

    async def create_context(self, turn_context: TurnContext) -> DialogContext:
        if self._memory is not None:
            turn_context.turn_state.setdefault(_MEMORY_CONFIGURATION, self._memory)
        context = await super().create_context(turn_context)
        self._memory = turn_context.turn_state.get(_MEMORY_CONFIGURATION)
        turn_context.turn_state.setdefault(_CONTEXTS, []).append(context)
        return context


def release(turn_context: TurnContext) -> None:
    """At the end of a turn, let go of the dialog contexts it built. A DialogContext and its memory
    (DialogStateManager) refer to each other, so each one, and the turn's context and all it held with it, was a
    reference cycle that only the garbage collector could free: about 35 objects a dialog step."""
    for context in turn_context.turn_state.pop(_CONTEXTS, ()):
        context.state = None


class DialogStackProperty:
    """The accessor DialogSet is given (botbuilder's StatePropertyAccessor interface: get, set, delete)."""

    name = "DialogState"

    async def get(self, turn_context: TurnContext, default_value_or_factory: Any = None) -> DialogState:
        return _live(turn_context)

    async def set(self, turn_context: TurnContext, value: DialogState) -> None:
        turn_context.turn_state[_LIVE] = value

    async def delete(self, turn_context: TurnContext) -> None:
        turn_context.turn_state[_LIVE] = DialogState()


def in_dialog(turn_context: TurnContext) -> bool:
    """Whether a guided conversation is under way, read from the stack itself: no DialogContext is built for it."""
    return bool(_live(turn_context).dialog_stack)


def _live(turn_context: TurnContext) -> DialogState:
    """The turn's dialog stack, read from the conversation's state the first time it is asked for."""
    live: DialogState | None = turn_context.turn_state.get(_LIVE)
    if live is None:
        live = turn_context.turn_state[_LIVE] = _stack_from(state_of(turn_context))
    return live


def _stack_from(state: ConversationState | None) -> DialogState:
    if state is None:
        return DialogState()
    if _LEGACY_STACK in state.data:
        _upgrade_legacy(state)
    stack = state.data.get(STACK)
    instances = [
        DialogInstance(id=item["id"], state=dict(item.get("state") or {}))
        for item in stack or []
        if isinstance(item, dict) and isinstance(item.get("id"), str)
    ]
    return DialogState(instances)


def _upgrade_legacy(state: ConversationState) -> None:
    """A conversation begun before the upgrade, stored by jsonpickle: its stack's ids and plain state carry over."""
    legacy = state.data.pop(_LEGACY_STACK)
    stamp = state.data.pop(_LEGACY_LAST_TURN, None)
    stack = legacy.get("_dialog_stack") if isinstance(legacy, dict) else None
    state.data[STACK] = [
        {"id": item["id"], "state": item.get("state") or {}}
        for item in stack or []
        if isinstance(item, dict) and isinstance(item.get("id"), str) and isinstance(item.get("state") or {}, dict)
    ]
    if isinstance(stamp, str):
        state.data[LAST_TURN] = stamp
