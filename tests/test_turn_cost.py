"""What an ordinary turn asks of the database: one transaction to claim it and read the conversation's state, and at
most one to close it. Counted on the real app over HTTP, on SQLite and PostgreSQL.

Speed itself is measured by `make bench`; this guards the shape that makes it possible, so a later change that adds
a query to every turn (a per-turn check that could have been cached, a state write of nothing) is seen here.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from botbuilder.core import TurnContext
from botbuilder.dialogs import DialogContext
from botbuilder.schema import Activity
from sqlalchemy import event
from sqlalchemy.engine import Engine

from adapters.logs import current_turn
from storage.one_trip import OneTrip
from storage.prepared import Prepared
from tests.support.harness import Harness

ACKNOWLEDGE = "aup.acknowledge"


@dataclass
class Seen:
    transactions: int = 0
    statements: list[str] = field(default_factory=list)


def _in_a_request() -> bool:
    """Whether the database is being used for an HTTP request (a turn), not by the background work runner.

    A turn's bookkeeping on SQLite runs on the event loop or, when it queues, on the driver's thread
    (storage.one_trip): in the turn's context either way."""
    if current_turn() is not None:
        return True
    with contextlib.suppress(RuntimeError):  # no event loop on this thread
        task = asyncio.current_task()
        return task is not None and task.get_coro().__qualname__.startswith("RequestHandler.")
    return False


@contextlib.contextmanager
def counting() -> Iterator[Seen]:
    """Every engine's transactions and statements: the app's through SQLAlchemy, and the bookkeeping's prepared
    statements, which the driver runs itself (storage.prepared), each trip of them one transaction."""
    seen = Seen()
    steps, bind = OneTrip.steps, Prepared.bind

    async def counted_steps(trip: OneTrip, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - passes through
        if _in_a_request():
            seen.transactions += 1
        return await steps(trip, *args, **kwargs)

    def counted_bind(prepared: Prepared, dialect: Any, params: Any) -> Any:  # noqa: ANN401 - passes through
        bound = bind(prepared, dialect, params)
        if _in_a_request():
            seen.statements.append(" ".join(bound[0].split()))
        return bound

    def on_begin(_connection: Any) -> None:
        if _in_a_request():
            seen.transactions += 1

    def on_execute(_connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if _in_a_request() and not statement.lstrip().upper().startswith(("BEGIN", "PRAGMA", "COMMIT", "ROLLBACK")):
            seen.statements.append(" ".join(statement.split()))

    event.listen(Engine, "begin", on_begin)
    event.listen(Engine, "before_cursor_execute", on_execute)
    OneTrip.steps, Prepared.bind = counted_steps, counted_bind  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        OneTrip.steps, Prepared.bind = steps, bind  # type: ignore[method-assign]
        event.remove(Engine, "begin", on_begin)
        event.remove(Engine, "before_cursor_execute", on_execute)


async def _acknowledged(harness: Harness, name: str) -> Any:  # noqa: ANN401 - a TeamsUser
    """Someone with nothing owed: they acknowledged the AUP, so no follow-up card is due after their turns."""
    user = harness.user(name)
    reply = await user.says("aup")
    card = next(c for c in reply.cards if ACKNOWLEDGE in json.dumps(c))
    action = card["actions"][0]
    ticked = {**action["data"], "read_kcsie": "true", "agree": "true"}
    assert "Your acknowledgement is recorded" in json.dumps((await user.executes(ACKNOWLEDGE, ticked)).invoke_card)
    await harness.run_due_work()
    await user.says("help")  # the conversation is known from now on (its reference saved, its activity noted)
    return user


async def test_a_help_turn_is_one_transaction_before_and_one_after(harness: Harness) -> None:
    leah = await _acknowledged(harness, "Leah Brooks")
    with counting() as seen:
        reply = await leah.says("help")
    assert "What would you like to do?" in reply.everything
    # Claim the activity and read the conversation's state (one statement); then mark the claim finished. Nothing
    # else: the AUP check is answered from memory, the reference and the activity note have not changed, and the
    # state was not touched.
    assert seen.transactions == 2, seen.statements
    assert [s.split()[0] for s in seen.statements] == ["INSERT", "UPDATE"], seen.statements
    assert "FROM bot_state" in seen.statements[0], seen.statements  # the state comes back with the claim


async def test_a_guided_conversation_step_writes_its_state_in_the_closing_transaction(harness: Harness) -> None:
    leah = await _acknowledged(harness, "Leah Brooks")
    await leah.says("filter")
    with counting() as seen:
        reply = await leah.submits({"answer": "unblock"})
    assert reply.texts or reply.cards  # the next question
    assert seen.transactions == 2, seen.statements
    assert any(s.upper().startswith("UPDATE BOT_STATE") for s in seen.statements), seen.statements


async def test_a_redelivery_costs_one_transaction_and_writes_nothing(harness: Harness) -> None:
    leah = await _acknowledged(harness, "Leah Brooks")
    activity = leah._activity("message", text="help")  # noqa: SLF001 - the same activity, delivered twice
    await leah.post(activity, leah.conversation_id)
    with counting() as seen:
        again = await leah.post(activity, leah.conversation_id)
    assert again.status == 200 and not again.sent
    # The claim is refused (its RETURNING, the state included, yields no row), the lease is found still held or
    # finished, and nothing is finished, saved or noted.
    assert seen.transactions == 1, seen.statements
    assert [s.split()[0] for s in seen.statements] == ["INSERT", "UPDATE"], seen.statements
    assert "lease_until" in seen.statements[1], seen.statements


@contextlib.contextmanager
def cyclic_garbage() -> Iterator[list[Any]]:
    """What became unreachable meanwhile but only the garbage collector could free (reference cycles)."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    found: list[Any] = []
    try:
        yield found
    finally:
        gc.collect()
        found.extend(gc.garbage)
        gc.garbage.clear()
        gc.set_debug(0)


async def test_a_turn_leaves_nothing_for_the_garbage_collector(harness: Harness) -> None:
    """A turn's context, its activity and what it built are freed as soon as the turn ends. Each turn had left them
    as a reference cycle (botbuilder's middleware chain, a dialog context and its memory), about 55 objects a turn
    that only a collection could free, with the event loop stopped while it ran."""
    leah = await _acknowledged(harness, "Leah Brooks")
    await leah.says("help")
    with cyclic_garbage() as found:
        assert "What would you like to do?" in (await leah.says("help")).everything
        assert (await leah.says("filter")).cards  # a guided conversation begins
        step = await leah.submits({"answer": "unblock"})
        assert step.texts or step.cards  # and takes a step
        answered = await leah.executes(ACKNOWLEDGE, {"read_kcsie": "true", "agree": "true"})  # a card action
        assert answered.invoke_card or answered.invoke_message
    left = sorted({type(o).__qualname__ for o in found if isinstance(o, TurnContext | DialogContext | Activity)})
    assert left == [], f"turns left these in reference cycles: {left}"
