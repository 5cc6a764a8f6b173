"""Bot Framework Storage on SQL: e_tag concurrency, any keys, batches, the Storage contract, encryption at rest."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from botbuilder.core import StoreItem
from botbuilder.dialogs import ComponentDialog, DialogTurnResult, TextPrompt, WaterfallDialog, WaterfallStepContext
from botbuilder.dialogs.prompts import PromptOptions
from botbuilder.schema import Activity
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.clock import SettableClock
from bot.actor import Command, Turn
from bot.wiring import Wiring
from storage.bot_storage import ETagConflict, SqlStorage
from storage.crypto import FieldCipher, parse_key
from storage.db import create_engine, session_factory
from storage.migrate import upgrade
from tests.support.harness import TEST_DATA_KEY, start_harness


@dataclass
class Stored:
    storage: SqlStorage
    engine: AsyncEngine


@pytest.fixture
async def stored(database_url: str, clock: SettableClock) -> AsyncIterator[Stored]:
    engine = create_engine(database_url)
    await upgrade(engine)
    storage = SqlStorage(session_factory(engine), FieldCipher(parse_key(TEST_DATA_KEY)), clock)
    try:
        yield Stored(storage, engine)
    finally:
        await engine.dispose()


async def _raw_documents(engine: AsyncEngine) -> list[tuple[str, str]]:
    async with engine.connect() as connection:
        return [(row[0], row[1]) for row in await connection.execute(text("SELECT key, document FROM bot_state"))]


async def test_round_trip_then_delete(stored: Stored) -> None:
    storage = stored.storage
    await storage.write({"conv/1": {"step": 2, "answers": ["a", "b"]}, "user/1": {"name": "Leah"}})
    read = await storage.read(["conv/1", "user/1", "missing"])
    assert set(read) == {"conv/1", "user/1"}
    assert read["conv/1"]["step"] == 2 and read["conv/1"]["answers"] == ["a", "b"]
    assert read["conv/1"]["e_tag"] and read["user/1"]["e_tag"]
    await storage.delete(["conv/1"])
    assert set(await storage.read(["conv/1", "user/1"])) == {"user/1"}


async def test_each_write_gets_a_new_etag(stored: Stored) -> None:
    storage = stored.storage
    await storage.write({"k": {"n": 1}})
    first = (await storage.read(["k"]))["k"]
    await storage.write({"k": {**first, "n": 2}})
    second = (await storage.read(["k"]))["k"]
    assert second["n"] == 2
    assert second["e_tag"] != first["e_tag"]


async def test_stale_etag_raises_and_the_whole_batch_writes_nothing(stored: Stored) -> None:
    storage = stored.storage
    await storage.write({"a": {"v": "original"}, "b": {"v": "original"}})
    stale = await storage.read(["a", "b"])
    await storage.write({"a": {**stale["a"], "v": "someone else"}})

    with pytest.raises(KeyError):
        await storage.write({"b": {**stale["b"], "v": "mine"}, "a": {**stale["a"], "v": "mine"}})

    now = await storage.read(["a", "b"])
    assert now["a"]["v"] == "someone else"
    assert now["b"]["v"] == "original", "the batch must be all or nothing"
    assert now["b"]["e_tag"] == stale["b"]["e_tag"]


async def test_star_or_no_etag_overwrites(stored: Stored) -> None:
    storage = stored.storage
    await storage.write({"k": {"v": 1}})
    await storage.write({"k": {"v": 2, "e_tag": "*"}})
    assert (await storage.read(["k"]))["k"]["v"] == 2
    await storage.write({"k": {"v": 3}})
    assert (await storage.read(["k"]))["k"]["v"] == 3


async def test_empty_etag_is_refused(stored: Stored) -> None:
    with pytest.raises(Exception):  # noqa: B017 - the contract only says "raises", as MemoryStorage does
        await stored.storage.write({"k": {"v": 1, "e_tag": ""}})
    assert await stored.storage.read(["k"]) == {}


async def test_store_item_objects_keep_their_type_and_etag(stored: Stored) -> None:
    item = StoreItem(counter=1)
    await stored.storage.write({"item": item})
    read = (await stored.storage.read(["item"]))["item"]
    assert isinstance(read, StoreItem)
    assert read.counter == 1 and read.e_tag
    read.counter = 2
    await stored.storage.write({"item": read})
    stale = read
    with pytest.raises(KeyError):
        await stored.storage.write({"item": stale})


KEYS = [
    "msteams/conversations/a:1Xy_ZZ-9/users/29:1abc",
    "x" * 5000,
    "école/ünïcode/日本語/🙂",
    "quotes ' \" and ; DROP TABLE bot_state; --",
    "back\\slash/and%percent?query=1&x#frag",
    "  leading and trailing spaces  ",
    "",
]


async def test_keys_of_any_characters(stored: Stored) -> None:
    storage = stored.storage
    await storage.write({key: {"key_was": key} for key in KEYS})
    read = await storage.read(KEYS)
    assert set(read) == set(KEYS)
    for key in KEYS:
        assert read[key]["key_was"] == key
    await storage.delete(KEYS[:3])
    assert set(await storage.read(KEYS)) == set(KEYS[3:])


async def test_batch_read_write_delete(stored: Stored) -> None:
    storage = stored.storage
    keys = [f"batch/{i}" for i in range(60)]
    await storage.write({key: {"i": i} for i, key in enumerate(keys)})
    read = await storage.read(keys + ["batch/none"])
    assert sorted(read[k]["i"] for k in keys) == list(range(60))
    await storage.delete(keys[::2] + ["batch/none"])
    assert set(await storage.read(keys)) == set(keys[1::2])


async def test_empty_and_none_inputs_follow_the_storage_contract(stored: Stored) -> None:
    # As botbuilder-testing's StorageBaseTests expects of every store other than MemoryStorage and Cosmos: no keys at
    # all is a caller's bug and raises with the SDK's own message; empty collections are fine and do nothing.
    storage = stored.storage
    assert await storage.read([]) == {}
    await storage.write({})
    await storage.write([])
    await storage.delete([])
    with pytest.raises(Exception) as reading:  # noqa: B017 - the suite checks the message, not the type
        await storage.read(None)
    assert reading.value.args[0] == "Keys are required when reading"
    with pytest.raises(Exception) as writing:  # noqa: B017
        await storage.write(None)
    assert writing.value.args[0] == "Changes are required when writing"
    with pytest.raises(Exception) as deleting:  # noqa: B017
        await storage.delete(None)
    assert deleting.value.args[0] == "Keys are required when deleting"
    assert await _raw_documents(stored.engine) == []


async def test_storage_base_suite_expectations(stored: Stored) -> None:
    """The rest of the SDK suite (botbuilder-testing is not installable here: it imports botbuilder-azure)."""
    storage = stored.storage
    assert await storage.read(["unknown"]) == {}
    await storage.delete(["unknown_key"])  # deleting what is not there is not an error

    # Create: with no e_tag and with "*"; both read back, the "*" one with a real e_tag.
    await storage.write({"createPoco": {"id": 1}, "createPocoStoreItem": {"id": 2, "e_tag": "*"}})
    created = await storage.read({"createPoco": None, "createPocoStoreItem": None}.keys())
    assert created["createPoco"]["id"] == 1 and created["createPocoStoreItem"]["id"] == 2
    assert created["createPocoStoreItem"]["e_tag"] not in (None, "", "*")

    # Update: a None e_tag writes unconditionally, "*" writes over anything, "" is refused and changes nothing.
    await storage.write({"pocoItem": {"id": 1, "count": 1}, "pocoStoreItem": {"id": 1, "count": 1, "e_tag": "*"}})
    loaded = await storage.read(["pocoItem", "pocoStoreItem"])
    loaded["pocoItem"]["e_tag"] = None
    loaded["pocoItem"]["count"] += 1
    loaded["pocoStoreItem"]["count"] += 1
    await storage.write(loaded)
    reloaded = await storage.read(["pocoItem", "pocoStoreItem"])
    assert reloaded["pocoItem"]["count"] == 2 and reloaded["pocoStoreItem"]["count"] == 2
    await storage.write({"pocoItem": {**loaded["pocoItem"], "count": 123}})  # old e_tag None: still writes
    assert (await storage.read(["pocoItem"]))["pocoItem"]["count"] == 123
    await storage.write(
        {
            "pocoItem": {"count": 100, "e_tag": "*"},
            "pocoStoreItem": {**reloaded["pocoStoreItem"], "count": 100, "e_tag": "*"},
        }
    )
    with pytest.raises(Exception):  # noqa: B017
        await storage.write({"pocoStoreItem": {"count": 5, "e_tag": ""}})
    final = await storage.read(["pocoItem", "pocoStoreItem"])
    assert final["pocoItem"]["count"] == 100 and final["pocoStoreItem"]["count"] == 100

    # Crazy keys and delete.
    crazy = '!@#$%^&*()_+??><":QASD~`'
    await storage.write({crazy: {"id": 1}, "delete1": {"id": 1, "count": 1, "e_tag": "*"}})
    assert (await storage.read([crazy]))[crazy]["id"] == 1
    assert (await storage.read(["delete1"]))["delete1"]["e_tag"]
    await storage.delete(["delete1"])
    assert "delete1" not in await storage.read(["delete1"])


async def test_concurrent_writers_with_the_same_etag_exactly_one_wins(stored: Stored) -> None:
    storage = stored.storage
    await storage.write({"race": {"winner": None}})
    base = (await storage.read(["race"]))["race"]

    async def attempt(n: int) -> bool:
        try:
            await storage.write({"race": {**base, "winner": n}})
        except ETagConflict:
            return False
        return True

    outcomes = await asyncio.gather(*(attempt(n) for n in range(8)))
    assert outcomes.count(True) == 1
    winner = outcomes.index(True)
    assert (await storage.read(["race"]))["race"]["winner"] == winner


async def test_documents_are_encrypted_at_rest(stored: Stored) -> None:
    secret = "Pupil in Year 9 said someone shared a photo"
    await stored.storage.write({"conv/secret": {"narrative": secret}})
    rows = await _raw_documents(stored.engine)
    assert len(rows) == 1
    assert secret not in rows[0][1] and "Year 9" not in rows[0][1] and "narrative" not in rows[0][1]
    assert (await stored.storage.read(["conv/secret"]))["conv/secret"]["narrative"] == secret


# --- conversation state through real turns ------------------------------------------------------------------


class _RememberDialog(ComponentDialog):
    """A two-step conversation used only here: ask for a word, then say it back."""

    def __init__(self) -> None:
        super().__init__("test_remember")
        self.add_dialog(TextPrompt("test_remember.text"))
        self.add_dialog(WaterfallDialog("test_remember.steps", [self._ask, self._answer]))
        self.initial_dialog_id = "test_remember.steps"

    async def _ask(self, step: WaterfallStepContext) -> DialogTurnResult:
        """Ask for the word."""
        return await step.prompt(
            "test_remember.text", PromptOptions(prompt=Activity(type="message", text="Which word?"))
        )

    async def _answer(self, step: WaterfallStepContext) -> DialogTurnResult:
        """Say it back."""
        await step.context.send_activity(f"You said {step.result}.")
        return await step.end_dialog()


def _remember_feature(wiring: Wiring) -> None:
    async def run(turn: Turn, _args: str) -> None:
        await turn.begin_dialog("test_remember")

    wiring.services.dialogs.append(_RememberDialog())
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
        assert "You said" not in " ".join(after.texts), "the dialog ended; state must say so after the restart"
