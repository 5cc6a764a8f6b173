"""Conversation state in SQL: plain JSON, written only when changed, optimistic versions, encryption at rest, and a
conversation that carries over a restart and an upgrade from the old (jsonpickle) documents."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.clock import SettableClock
from bot.actor import Command, Turn
from bot.conversation import Conversation, Ctx, Prompt, Question, Reply
from bot.turns import ActivityNote, ConversationState
from bot.wiring import Wiring
from dialogs.engine import ConversationDialog
from storage.bot_storage import document_context, key_hash
from storage.crypto import FieldCipher, parse_key
from storage.db import BOOKKEEPING, SYNCHRONOUS, create_engine
from storage.migrate import upgrade
from storage.turns import SqlTurns
from tests.support.harness import TEST_DATA_KEY, start_harness

CIPHER = FieldCipher(parse_key(TEST_DATA_KEY))


@dataclass
class Stored:
    turns: SqlTurns
    engine: AsyncEngine
    cipher: FieldCipher
    # A state saved as a turn saves it: with that turn's claim finished and its conversation noted in the same
    # writes (on PostgreSQL one statement), or alone (a turn of an activity without an id).
    with_claim: bool = False


# A state is saved alone, or with the turn's claim and activity note, so its version check is the same either way.
@pytest.fixture(params=["alone", "with the turn's claim"])
async def stored(database_url: str, clock: SettableClock, request: pytest.FixtureRequest) -> AsyncIterator[Stored]:
    engine = create_engine(database_url)
    await upgrade(engine)
    turns = SqlTurns(engine, CIPHER, clock)
    try:
        yield Stored(turns, engine, CIPHER, with_claim=request.param != "alone")
    finally:
        await turns.close()
        await engine.dispose()


async def _rows(engine: AsyncEngine) -> list[tuple[str, str, str]]:
    async with engine.connect() as connection:
        rows = await connection.execute(text("SELECT key, document, e_tag FROM bot_state"))
        return [(row[0], row[1], row[2]) for row in rows]


async def _read(stored: Stored, key: str) -> ConversationState:
    started = await stored.turns.begin(None, key)
    assert started.state is not None
    return started.state


async def _save(stored: Stored, state: ConversationState) -> bool:
    if not stored.with_claim:
        return await stored.turns.end(None, None, state.change(), None)
    claim = uuid.uuid4().hex
    assert (await stored.turns.begin(claim, None)).claimed
    note = ActivityNote("school", "person", uuid.uuid4().hex, busy=True)
    saved = await stored.turns.end(claim, None, state.change(), note)
    # Whether or not the state was saved, the turn is over: a redelivery of its activity does nothing.
    assert not (await stored.turns.begin(claim, None)).claimed
    return saved


async def test_state_round_trips_as_plain_data_and_an_unchanged_state_is_not_written(stored: Stored) -> None:
    state = await _read(stored, "msteams/conversations/a:1")
    assert state.data == {} and state.etag is None
    state.data["dialogStack"] = [{"id": "report", "state": {"narrative": "Seen on a phone", "typed": True}}]
    assert await _save(stored, state)
    again = await _read(stored, "msteams/conversations/a:1")
    assert again.data == state.data and again.etag is not None
    assert again.change() is None  # read and left alone: nothing to write
    assert await _save(stored, again)
    assert (await _rows(stored.engine))[0][2] == again.etag


async def test_a_stale_version_loses_and_the_other_turns_state_stands(stored: Stored) -> None:
    first = await _read(stored, "k")
    first.data["n"] = 0
    await _save(stored, first)
    one, two = await _read(stored, "k"), await _read(stored, "k")
    one.data["n"], two.data["n"] = 1, 2
    assert await _save(stored, one)
    assert not await _save(stored, two)
    assert (await _read(stored, "k")).data["n"] == 1


async def test_concurrent_writers_of_one_version_exactly_one_wins(stored: Stored) -> None:
    base = await _read(stored, "race")
    base.data["winner"] = None
    await _save(stored, base)
    copies = [await _read(stored, "race") for _ in range(8)]
    for n, copy in enumerate(copies):
        copy.data["winner"] = n
    outcomes = await asyncio.gather(*(_save(stored, copy) for copy in copies))
    assert outcomes.count(True) == 1
    assert (await _read(stored, "race")).data["winner"] == outcomes.index(True)


async def test_two_first_writers_of_a_new_conversation_one_wins(stored: Stored) -> None:
    one, two = await _read(stored, "new"), await _read(stored, "new")
    one.data["who"], two.data["who"] = "one", "two"
    assert [await _save(stored, one), await _save(stored, two)] == [True, False]
    assert (await _read(stored, "new")).data["who"] == "one"


async def test_keys_of_any_characters(stored: Stored) -> None:
    odd = 'msteams/conversations/19:abc;messageid=1!@#$%^&*()_+??><":QASD~`' + "é" * 300
    state = await _read(stored, odd)
    state.data["x"] = 1
    await _save(stored, state)
    assert (await _read(stored, odd)).data == {"x": 1}


async def test_documents_are_encrypted_at_rest_and_bound_to_their_key(stored: Stored) -> None:
    secret = "Pupil in Year 9 said someone shared a photo"
    state = await _read(stored, "conv/secret")
    state.data["narrative"] = secret
    await _save(stored, state)
    [(key, document, _)] = await _rows(stored.engine)
    assert secret not in document and "Year 9" not in document and "narrative" not in document
    assert json.loads(stored.cipher.decrypt(document, document_context(key_hash(key))))["narrative"] == secret
    with pytest.raises(Exception):  # noqa: B017, PT011 - moved under another key, it cannot be opened at all
        stored.cipher.decrypt(document, document_context(key_hash("conv/other")))


# --- conversation state through real turns ------------------------------------------------------------------


@dataclass
class _Word:
    word: str | None = None


async def _ask(ctx: Ctx[_Word]) -> Prompt:
    return Prompt(text="Which word?")


async def _answer(ctx: Ctx[_Word], reply: Reply) -> str | None:
    ctx.state.word = reply.text
    return None


async def _finish(ctx: Ctx[_Word]) -> None:
    await ctx.say(f"You said {ctx.state.word}.")


REMEMBER = Conversation(
    name="test_remember",
    new_state=_Word,
    questions=(Question("word", _ask, _answer),),
    finish=_finish,
    stopped=lambda _state, _reason: "Stopped.",
)


def _remember_feature(wiring: Wiring) -> None:
    async def run(turn: Turn, _args: str) -> None:
        await turn.begin_dialog("test_remember")

    wiring.services.dialogs.append(ConversationDialog(REMEMBER))
    wiring.services.add_command(Command("remember", "Remember", "Test only.", run))


async def test_conversation_state_survives_a_restart(database_url: str, clock: SettableClock, tmp_path) -> None:
    async with start_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", features=[_remember_feature]
    ) as harness:
        leah = harness.user("Leah Brooks")
        asked = await leah.says("remember")
        assert asked.texts == ["Which word?"]

        await harness.restart()

        answered = await leah.says("marmalade")
        assert answered.texts == ["You said marmalade."]
        after = await leah.says("marmalade")
        assert "You said" not in " ".join(after.texts), "the conversation ended; state must say so after the restart"
        # Ended: the stored state holds nothing of it (the word went with the conversation).
        [(key, document, _)] = await _rows(harness.parts.engine)
        assert json.loads(CIPHER.decrypt(document, document_context(key_hash(key)))) == {}


async def test_a_conversation_begun_before_the_upgrade_carries_on(
    database_url: str, clock: SettableClock, tmp_path
) -> None:
    """A document botbuilder's ConversationState wrote (jsonpickle) is read as data: the conversation continues."""
    async with start_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", features=[_remember_feature]
    ) as harness:
        leah = harness.user("Leah Brooks")
        legacy = {
            "DialogState": {
                "py/object": "botbuilder.dialogs.dialog_state.DialogState",
                "_dialog_stack": [
                    {
                        "py/object": "botbuilder.dialogs.dialog_instance.DialogInstance",
                        "id": "test_remember",
                        "state": {"conversation.state": {"word": None}, "conversation.asked": "word"},
                    }
                ],
            },
            "LastTurnAt": clock.now().isoformat(),
        }
        key = f"msteams/conversations/{leah.conversation_id}"
        async with harness.parts.engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO bot_state (key_hash, key, document, e_tag, updated_at) VALUES (:h, :k, :d, 'old', :t)"
                ),
                {
                    "h": key_hash(key),
                    "k": key,
                    "d": CIPHER.encrypt(json.dumps(legacy), document_context(key_hash(key))),
                    "t": clock.now(),
                },
            )
        answered = await leah.says("marmalade")
        assert answered.texts == ["You said marmalade."]


async def test_on_sqlite_a_turns_bookkeeping_is_flushed_lazily_and_everything_else_at_once(
    stored: Stored, database_url: str
) -> None:
    """A report's commit reaches the disk before anyone is told (FULL); a turn's claim and state need not."""
    if not database_url.startswith("sqlite"):
        pytest.skip("synchronous is SQLite's setting")

    async def level(**options: str) -> int:
        async with stored.engine.connect() as connection:
            await connection.execution_options(**options)
            async with connection.begin():
                return (await connection.exec_driver_sql("PRAGMA synchronous")).scalar_one()

    assert await level() == 2  # FULL
    started = await stored.turns.begin("claim-1", "msteams/conversations/a:1")
    assert started.claimed
    assert await level(**{SYNCHRONOUS: BOOKKEEPING}) == 1  # NORMAL
    assert await level() == 2  # and back to FULL for the next unit of work on the same connection
