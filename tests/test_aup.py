"""Acceptable Use Policy: documents, the card, acknowledgements, reminders, escalation, renewal and the report."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from adapters.clock import SettableClock
from tests.conftest import START
from tests.support.harness import Harness, start_harness

SUBMIT = "aup.acknowledge"


@pytest.fixture
async def harness(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    """The whole app on SQLite and PostgreSQL, its background worker off: only run_due_work() runs due work."""
    async with start_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", worker_enabled=False
    ) as running:
        yield running


def _aup_cards(sent) -> list[dict]:  # noqa: ANN001
    return [c for s in sent for c in s.cards if SUBMIT in json.dumps(c)]


def _submit_data(card: dict) -> dict:
    action = card["actions"][0]
    assert action["type"] == "Action.Execute" and action["verb"] == SUBMIT
    return dict(action["data"])


async def _card(user) -> dict:  # noqa: ANN001
    """The person types `aup` and gets the card to acknowledge."""
    cards = _aup_cards((await user.says("aup")).sent)
    assert len(cards) == 1
    return cards[0]


def _cards_to(harness: Harness, user) -> list[dict]:  # noqa: ANN001
    return _aup_cards(harness.connector.to(user.conversation_id))


async def test_first_contact_gets_the_card_after_the_reply_with_sections_link_and_confirmations(
    harness: Harness,
) -> None:
    leah = harness.user("Leah Brooks")
    reply = await leah.installs()
    assert "Welcome, Leah" in json.dumps(reply.card) and not _aup_cards(reply.sent)
    harness.clock.advance(minutes=1)
    await harness.run_due_work()
    [card] = await harness.connector.wait_for(lambda _: _cards_to(harness, leah))
    body = json.dumps(card)
    assert "Staff Acceptable Use Policy" in body and "Version 1" in body and "Hello Leah" in body
    toggles = [b for b in card["body"] if b["type"] == "Input.Toggle"]
    assert {t["id"] for t in toggles} == {"read_kcsie", "agree"}
    assert all(t["isRequired"] and t["errorMessage"] for t in toggles)
    show_cards = [
        a for b in card["body"] if b["type"] == "ActionSet" for a in b["actions"] if a["type"] == "Action.ShowCard"
    ]
    assert "Passwords and accounts" in [a["title"] for a in show_cards]
    fallback = card["actions"][0]["fallback"]
    assert fallback["type"] == "Action.Submit" and fallback["data"]["verb"] == SUBMIT
    assert len(json.dumps(card).encode()) < 40 * 1024

    await leah.says("help")  # more messages do not bring more copies
    harness.clock.advance(days=1)
    await harness.run_due_work()
    assert len(_cards_to(harness, leah)) == 1


def _reminders(harness: Harness, user) -> list:  # noqa: ANN001
    return [s for s in harness.connector.to(user.conversation_id) if "Reminder" in s.text]


def _mentions(harness: Harness, user, name: str) -> list[str]:  # noqa: ANN001
    return [s.text for s in harness.connector.to(user.conversation_id) if name in s.text]


async def _ack_rows(harness: Harness, name: str) -> list:
    async with harness.parts.uow() as uow:
        return await uow.aup.history(harness.school.id, harness.person_id(name))


def _ticked(card: dict) -> dict:
    return {**_submit_data(card), "read_kcsie": "true", "agree": "true"}


async def test_acknowledging_records_version_confirmations_time_and_hash_of_the_text_shown(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    card = await _card(leah)
    link = next(
        a["url"]
        for b in card["body"]
        if b["type"] == "ActionSet"
        for a in b["actions"]
        if a["type"] == "Action.OpenUrl"
    )
    path = urlparse(link).path
    assert path == f"/aup/{harness.school.id}/staff/1"
    async with harness.http.get(f"{harness.url}{path}") as response:
        assert response.status == 200
        assert "Staff Acceptable Use Policy" in await response.text()
    async with harness.http.get(f"{harness.url}{path}?format=md") as response:
        shown = await response.text()
    expected_hash = hashlib.sha256(shown.encode("utf-8")).hexdigest()

    reply = await leah.executes(SUBMIT, _ticked(card))
    assert reply.status == 200
    receipt = json.dumps(reply.invoke_card)
    assert "Your acknowledgement is recorded" in receipt

    rows = await _ack_rows(harness, "Leah Brooks")
    assert len(rows) == 1
    ack = rows[0]
    assert (ack.version, ack.sha256, ack.read_kcsie, ack.agreed) == (1, expected_hash, True, True)
    # The receipt quotes a short number worked out from the record; the full hash stays in the record.
    shown_facts = {
        f["title"]: f["value"] for b in reply.invoke_card["body"] if b["type"] == "FactSet" for f in b["facts"]
    }
    assert shown_facts["Receipt number"] == ack.receipt and len(ack.receipt) == 9 and expected_hash not in receipt
    assert ack.at == harness.clock.now()
    again = await leah.says("aup")
    assert "You acknowledged" in json.dumps(again.card) and not _aup_cards(again.sent)


async def test_a_double_submit_records_once_and_the_fallback_submit_reaches_the_same_handler(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    card = await _card(leah)
    first = await leah.submits({"verb": SUBMIT, **_ticked(card)})  # Action.Submit fallback
    assert "Your acknowledgement is recorded" in json.dumps(first.card)
    harness.clock.advance(minutes=5)
    second = await leah.executes(SUBMIT, _ticked(card))
    assert "23 November 2026 at 10:00" in json.dumps(second.invoke_card)  # the first record, not a new one
    rows = await _ack_rows(harness, "Leah Brooks")
    assert len(rows) == 1 and rows[0].at == START


async def test_an_unticked_confirmation_is_refused_kindly_and_nothing_is_recorded(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    card = await _card(leah)
    reply = await leah.executes(SUBMIT, {**_submit_data(card), "read_kcsie": "false", "agree": "true"})
    assert reply.status == 200
    assert "Please tick both boxes" in json.dumps(reply.invoke_card)
    assert SUBMIT in json.dumps(reply.invoke_card)
    assert await _ack_rows(harness, "Leah Brooks") == []


async def test_publish_makes_a_new_version_current_and_everyone_owes_it_again(harness: Harness) -> None:
    leah, sam = harness.user("Leah Brooks"), harness.user("Sam Patel")
    old_card = await _card(leah)
    await leah.executes(SUBMIT, _ticked(old_card))
    await sam.installs()
    await harness.run_due_work()

    refused = await leah.says("aup publish staff")
    assert "not available to you" in " ".join(refused.texts)
    preview = await sam.says("aup publish staff")
    preview_card = next(c for c in preview.cards if "aup.publish" in json.dumps(c))
    assert "version 2" in json.dumps(preview_card)
    publish = preview_card["actions"][0]
    published = await sam.executes(publish["verb"], publish["data"])
    assert "Published version 2" in published.invoke_message
    twice = await sam.executes(publish["verb"], publish["data"])
    assert "already published" in twice.invoke_message

    harness.clock.advance(minutes=4)  # the card is not urgent: it waits until Leah's chat has been quiet a while
    await harness.run_due_work()
    delivered = await harness.connector.wait_for(
        lambda sent: [
            c
            for c in _aup_cards(s for s in sent if s.conversation_id == leah.conversation_id)
            if _submit_data(c)["version"] == 2
        ]
    )
    assert len(delivered) == 1
    stale = await leah.executes(SUBMIT, _ticked(old_card))
    assert "updated to version 2" in json.dumps(stale.invoke_card)
    assert _submit_data(stale.invoke_card)["version"] == 2
    assert [r.version for r in await _ack_rows(harness, "Leah Brooks")] == [1]
    done = await leah.executes(SUBMIT, _ticked(stale.invoke_card))
    assert "version 2" in json.dumps(done.invoke_card)
    assert [r.version for r in await _ack_rows(harness, "Leah Brooks")] == [1, 2]
    late = await leah.executes(SUBMIT, _ticked(old_card))  # the old card again, once she is up to date
    assert "version 2" in json.dumps(late.invoke_card) and SUBMIT not in json.dumps(late.invoke_card)
    assert [r.version for r in await _ack_rows(harness, "Leah Brooks")] == [1, 2]

    await harness.restart()  # the start-up import does not bring back or duplicate version 1
    async with harness.parts.uow() as uow:
        from bot.aup import Audience

        current = await uow.aup.current(harness.school.id, Audience.STAFF)
    assert current.version == 2


async def test_reminders_then_the_line_manager_and_online_safety_lead_are_told(harness: Harness) -> None:
    leah, grace, sam = harness.user("Leah Brooks"), harness.user("Grace Okafor"), harness.user("Sam Patel")
    for user in (leah, grace, sam):
        await user.installs()
    await harness.run_due_work()
    harness.clock.advance(days=3, minutes=1)
    await harness.run_due_work()
    reminders = await harness.connector.wait_for(lambda _: _reminders(harness, leah))
    assert len(reminders) == 1 and _aup_cards(reminders)
    assert not any("Leah Brooks" in s.text for s in harness.connector.to(grace.conversation_id))

    harness.clock.advance(days=7)
    await harness.run_due_work()
    to_manager = await harness.connector.wait_for(lambda _: _mentions(harness, grace, "Leah Brooks"))
    to_lead = await harness.connector.wait_for(lambda _: _mentions(harness, sam, "Leah Brooks"))
    assert len(to_manager) == 1 and "line manager" in to_manager[0]
    assert len(to_lead) == 1 and "Grace Okafor" in to_lead[0]
    assert (
        len(
            await harness.connector.wait_for(
                lambda _: len(_reminders(harness, leah)) >= 2 and _reminders(harness, leah)
            )
        )
        == 2
    )

    card = _aup_cards(harness.connector.to(leah.conversation_id))[-1]
    await leah.executes(SUBMIT, _ticked(card))
    harness.clock.advance(days=10)
    await harness.run_due_work()
    assert len([s for s in harness.connector.to(leah.conversation_id) if "Reminder" in s.text]) == 2
    assert len([s for s in harness.connector.to(grace.conversation_id) if "Leah Brooks" in s.text]) == 1


async def test_annual_renewal_asks_everyone_again_for_the_current_version(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    card = await _card(leah)
    await leah.executes(SUBMIT, _ticked(card))
    await harness.run_due_work()
    before = len(_aup_cards(harness.connector.to(leah.conversation_id)))

    harness.clock.set(dt.datetime(2027, 8, 31, 22, 0, tzinfo=dt.UTC))  # 23:00 in London: not yet
    await harness.run_due_work()
    assert len(_aup_cards(harness.connector.to(leah.conversation_id))) == before
    harness.clock.set(dt.datetime(2027, 9, 1, 7, 0, tzinfo=dt.UTC))
    await harness.run_due_work()
    renewed = await harness.connector.wait_for(
        lambda _: (
            len(_aup_cards(harness.connector.to(leah.conversation_id))) > before
            and _aup_cards(harness.connector.to(leah.conversation_id))
        )
    )
    assert len(renewed) == before + 1 and _submit_data(renewed[-1])["version"] == 1
    shown = await leah.says("aup")
    assert _aup_cards(shown.sent)
    await leah.executes(SUBMIT, _ticked(renewed[-1]))
    assert len(await _ack_rows(harness, "Leah Brooks")) == 2


async def test_status_report_shows_percentages_outstanding_names_and_a_csv_export(harness: Harness) -> None:
    leah, sam = harness.user("Leah Brooks"), harness.user("Sam Patel")
    card = await _card(leah)
    await leah.executes(SUBMIT, _ticked(card))
    await harness.run_due_work()

    refused = await leah.says("aup status")
    assert "not available to you" in " ".join(refused.texts)
    reply = await sam.says("aup status")
    status = next(c for c in reply.cards if "who has acknowledged" in json.dumps(c))
    body = json.dumps(status)
    assert "**Staff** (version 1): 12% acknowledged, 1 of 8" in body
    assert "**Governors** (version 1): 0% acknowledged, 0 of 2" in body
    assert "Tom Reed" in body and "Ruth Evans" in body and "Leah Brooks" not in body

    export = await sam.says("aup status csv")
    text = " ".join(export.texts)
    assert "audience,version,name,email,status" in text
    assert "staff,1,Leah Brooks,leah.brooks@oakfield.example,acknowledged" in text
    assert "governor,1,Ben Carter,ben.carter@oakfield.example,outstanding" in text


async def test_the_full_text_page_is_404_for_a_version_that_does_not_exist(harness: Harness) -> None:
    for path in ("/aup/oakfield/staff/9", "/aup/oakfield/pupils/1", "/aup/nowhere/staff/1", "/aup/oakfield/staff/x"):
        async with harness.http.get(f"{harness.url}{path}") as response:
            assert response.status == 404, path


async def test_a_newcomer_is_picked_up_by_the_daily_directory_check_and_gets_the_card_on_first_contact(
    harness: Harness,
) -> None:
    from bot.config import AppConfig, PersonConfig
    from bot.people import Role

    await harness.run_due_work()
    school = harness.school
    newcomer = PersonConfig(
        id="00000000-0000-4000-8000-000000000099",
        name="Nina Wood",
        email="nina.wood@oakfield.example",
        roles=[Role.STAFF],
        line_manager=harness.person_id("Grace Okafor"),
    )
    harness.config = AppConfig(
        schools=[school.model_copy(update={"people": [*school.people, newcomer]})],
        dev_default_school=harness.config.dev_default_school,
    )
    await harness.restart()  # the directory now knows her, as after a sync from the school's records

    harness.clock.advance(days=1)
    await harness.run_due_work()  # the daily check asks her (she has not opened the app, so it cannot reach her)
    status = json.dumps((await harness.user("Sam Patel").says("aup status")).card)
    assert "Nina Wood: asked 24 Nov" in status
    assert "1 of 9" not in status and "0 of 9" in status

    nina = harness.user("Nina Wood")
    reply = await nina.says("hello")
    assert not _aup_cards(reply.sent)
    harness.clock.advance(minutes=4)  # a minute after first contact, then until her chat has been quiet a while
    await harness.run_due_work()
    [card] = await harness.connector.wait_for(lambda _: _cards_to(harness, nina))
    await nina.executes(SUBMIT, _ticked(card))
    status = json.dumps((await harness.user("Sam Patel").says("aup status")).card)
    assert "1 of 9" in status and "Nina Wood" not in status


async def test_publishing_changed_wording_keeps_every_version_and_checks_the_preview_is_current(
    database_url: str, clock: SettableClock, tmp_path: Path
) -> None:
    from bot.aup import Audience
    from dialogs import aup
    from dialogs.aup import markdown_source

    files = markdown_source()
    edited: dict[Audience, str] = {}

    def install(wiring) -> None:  # noqa: ANN001 - the AUP feature reading an editable copy of the repository files
        wiring.features.aup_source = lambda audience: edited.get(audience) or files(audience)
        aup.install(wiring)

    async with start_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", features=[install], worker_enabled=False
    ) as harness:
        sam = harness.user("Sam Patel")
        original = files(Audience.STAFF)
        edited[Audience.STAFF] = original.replace(
            "I will not use anyone else's account.", "I will never use anyone else's account or device."
        )
        preview = next(c for c in (await sam.says("aup publish staff")).cards if "aup.publish" in json.dumps(c))
        assert "has changed since version 1" in json.dumps(preview)
        edited[Audience.STAFF] += "- I will report lost or stolen devices the same day.\n"
        action = preview["actions"][0]
        changed = await sam.executes(action["verb"], action["data"])
        assert "Something changed since you opened this preview" in json.dumps(changed.invoke_card)
        action = changed.invoke_card["actions"][0]
        assert "Published version 2" in (await sam.executes(action["verb"], action["data"])).invoke_message

        async with harness.http.get(f"{harness.url}/aup/oakfield/staff/2?format=md") as response:
            version_2 = await response.text()
        async with harness.http.get(f"{harness.url}/aup/oakfield/staff/1?format=md") as response:
            version_1 = await response.text()
        assert "Version: 2" in version_2 and "lost or stolen devices" in version_2
        assert "Version: 1" in version_1 and "lost or stolen" not in version_1

        edited[Audience.GOVERNOR] = "# Governor AUP\nVersion: 1\n"
        refused = await sam.says("aup publish governor")
        assert "cannot be used yet" in " ".join(refused.texts) and refused.status == 200
