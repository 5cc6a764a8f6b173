"""The publish sweep asks a whole staff a batch at a time in a few statements, and still asks each person once: one
card, one reminder, one escalation and one audit entry each, whoever else is asking (a second sweep, the person's
own `aup`), with the audit trail one unbroken chain."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.clock import SettableClock
from bot import aup
from bot.audit import AuditKeys, verify_chain
from bot.aup import Audience
from bot.protocols import PersonMessage
from bot.work import Then
from tests.support.aup_cards import aup_cards, staff_of
from tests.support.harness import Harness, start_harness
from tests.support.teams import TeamsUser

QUIET = {"minutes": 2}  # with no idle period, a quiet card waits one activity-recording interval
CYCLE = "2026-09-01"


@pytest.fixture
async def harness(
    database_url: str, clock: SettableClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Harness]:
    """The whole app on SQLite and PostgreSQL, its worker off; batches of two, so the demo staff take several, and a
    sweep keeps at most two cards waiting ahead of the outbox, so it waits for the sends between batches."""
    monkeypatch.setattr(aup, "SWEEP_BATCH", 2)
    monkeypatch.setattr(aup, "SWEEP_AHEAD", 2)
    monkeypatch.setattr(aup, "SWEEP_POLL_SECONDS", 0.02)
    async with start_harness(
        database_url=database_url,
        clock=clock,
        var_dir=tmp_path / "var",
        worker_enabled=False,
        quiet_idle_minutes=0,
    ) as running:
        yield running


async def _publish_version_2(harness: Harness, staff: list[TeamsUser]) -> None:
    """Everyone has had version 1; Sam publishes version 2 (the worker has not run its sweep yet)."""
    for user in staff:
        await user.installs()
    harness.clock.advance(**QUIET)
    await harness.run_due_work()
    sam = harness.user("Sam Patel")
    preview = await sam.says("aup publish staff")
    action = next(c for c in preview.cards if "aup.publish" in json.dumps(c))["actions"][0]
    assert "Published version 2" in ((await sam.executes(action["verb"], action["data"])).invoke_message or "")


def _keys(harness: Harness) -> AuditKeys:
    watch = harness.parts.features.audit_watch
    assert watch is not None
    return watch.keys


async def _per_person(harness: Harness, kind: str, version: int) -> list[str]:
    assert harness.parts.claims is not None
    items = await harness.parts.claims.list(kind=kind, school_id=harness.school.id)
    return sorted(i.payload["person_id"] for i in items if i.payload.get("version") == version)


async def _requested(harness: Harness, version: int) -> list[tuple[str, str]]:
    """(person, how they were asked) for each `requested` audit entry of this version; the chain must verify."""
    async with harness.parts.uow() as uow:
        entries = await uow.audit.entries(harness.school.id)
    assert verify_chain(entries, _keys(harness)) is None
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    return sorted(
        (e.record_id or "", e.detail["delivery"])
        for e in entries
        if e.action == "requested" and e.detail.get("version") == version
    )


async def test_two_sweeps_at_once_bring_each_member_of_staff_one_card_reminder_escalation_and_audit_entry(
    harness: Harness,
) -> None:
    staff = staff_of(harness)
    await _publish_version_2(harness, staff)
    # The same sweep queued again under another key, as a second replica would run it: the worker takes both in one
    # claim and runs them side by side, batch by batch.
    async with harness.parts.uow() as uow:
        await uow.work.schedule(
            harness.school.id, "aup.sweep", harness.clock.now(), {"audience": "staff"}, dedupe_key="second replica"
        )
    harness.clock.advance(**QUIET)
    await harness.run_due_work()

    ids = sorted(harness.person_id(u.name) for u in staff)
    assert len(ids) > 2 * aup.SWEEP_BATCH  # several batches
    assert [len(aup_cards(harness, user, 2)) for user in staff] == [1] * len(staff)
    async with harness.parts.uow() as uow:
        requests = await uow.aup.requests(harness.school.id, Audience.STAFF, 2, CYCLE)
    assert sorted(r.person_id for r in requests) == ids
    assert all(r.last_card and r.last_card.startswith("aup.card:") for r in requests)
    assert await _per_person(harness, "aup.remind", 2) == ids
    assert await _per_person(harness, "aup.escalate", 2) == ids
    assert await _requested(harness, 2) == [(i, "proactive") for i in ids]


async def test_a_sweep_whose_cards_cannot_go_yet_still_asks_everyone(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pacing waits for the outbox only so long: with nothing sending (the worker is off), every batch is still
    asked, once, and every card waits in the queue for when sending resumes."""
    monkeypatch.setattr(aup, "SWEEP_WAIT_SECONDS", 0.1)
    staff = staff_of(harness)
    await _publish_version_2(harness, staff)
    service = harness.parts.features.aup_service
    assert service is not None

    asked = await service.deliver_owed(harness.school, Audience.STAFF)

    assert asked == len(staff) > 2 * aup.SWEEP_BATCH
    async with harness.parts.uow() as uow:
        requests = await uow.aup.requests(harness.school.id, Audience.STAFF, 2, CYCLE)
        waiting = await uow.notify.waiting(harness.school.id)
    assert sorted(r.person_id for r in requests) == sorted(harness.person_id(u.name) for u in staff)
    assert waiting == len(staff), "one card each, queued, none sent"
    harness.clock.advance(**QUIET)
    await harness.run_due_work()  # sending resumes: the queued sweep item finds everyone asked
    assert [len(aup_cards(harness, user, 2)) for user in staff] == [1] * len(staff)


async def test_someone_who_typed_aup_before_the_sweep_reached_them_is_not_asked_again(harness: Harness) -> None:
    staff = staff_of(harness)
    await _publish_version_2(harness, staff)
    leah = harness.user("Leah Brooks")
    assert len(aup_cards(harness, leah, 2)) == 0
    await leah.says("aup")  # the card comes in her chat: she is asked there
    assert len(aup_cards(harness, leah, 2)) == 1

    harness.clock.advance(**QUIET)
    await harness.run_due_work()
    assert [len(aup_cards(harness, user, 2)) for user in staff] == [1] * len(staff)
    ids = sorted(harness.person_id(u.name) for u in staff)
    assert await _per_person(harness, "aup.remind", 2) == ids
    leah_id = harness.person_id("Leah Brooks")
    assert await _requested(harness, 2) == sorted((i, "in chat" if i == leah_id else "proactive") for i in ids)


async def test_opening_requests_for_many_returns_only_those_this_call_opened_even_side_by_side(
    harness: Harness,
) -> None:
    school, at = harness.school.id, harness.clock.now()
    async with harness.parts.uow() as uow:
        _, created = await uow.aup.open_request(school, "p-asked-in-chat", Audience.STAFF, 3, CYCLE, at)
        assert created

    async def open_for(people: list[str]) -> set[str]:
        async with harness.parts.uow() as uow:
            opened = await uow.aup.open_requests(
                school, Audience.STAFF, 3, CYCLE, at, {p: f"aup.card:{p}" for p in people}
            )
        assert all(r.person_id == p and r.last_card == f"aup.card:{p}" for p, r in opened.items())
        return set(opened)

    # Two callers at once over overlapping people, in different orders (two replicas' batches): each person is
    # opened by exactly one of them, and nobody already asked is opened again.
    everyone = [f"p-{n:02d}" for n in range(12)] + ["p-asked-in-chat"]
    first, second = await asyncio.gather(open_for(everyone[:9]), open_for(list(reversed(everyone[4:]))))
    assert first.isdisjoint(second)
    assert first | second == set(everyone) - {"p-asked-in-chat"}
    assert await open_for(everyone) == set()
    async with harness.parts.uow() as uow:
        requests = await uow.aup.requests(school, Audience.STAFF, 3, CYCLE)
    assert sorted(r.person_id for r in requests) == sorted(everyone)
    assert {r.person_id: r.last_card for r in requests}["p-asked-in-chat"] is None


async def test_many_audit_entries_at_once_keep_one_unbroken_chain_among_single_writers(harness: Harness) -> None:
    school = harness.school.id

    async def one(n: int) -> None:
        async with harness.parts.uow() as uow:
            await uow.audit.record(school, None, "viewed", "aup_status", f"single-{n}", {"n": n})

    async def many(n: int) -> None:
        async with harness.parts.uow() as uow:
            await uow.audit.record_many(
                school, None, "requested", "aup_acknowledgement", [(f"many-{n}-{k}", {"k": k}) for k in range(5)]
            )

    await asyncio.gather(*(one(n) for n in range(6)), *(many(n) for n in range(4)))
    async with harness.parts.uow() as uow:
        entries = await uow.audit.entries(school)
        assert await uow.audit.record_many(school, None, "requested", "aup_acknowledgement", []) == []
    assert verify_chain(entries, _keys(harness)) is None
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    ours = [e.record_id or "" for e in entries if (e.record_id or "").startswith(("single-", "many-"))]
    assert sorted(ours) == sorted(
        [f"single-{n}" for n in range(6)] + [f"many-{n}-{k}" for n in range(4) for k in range(5)]
    )
    for n in range(4):  # each call's entries are in the order given, one after another
        seqs = [e.seq for e in entries if (e.record_id or "").startswith(f"many-{n}-")]
        assert seqs == list(range(seqs[0], seqs[0] + 5))


async def test_cards_queued_together_are_the_messages_queued_one_by_one_and_each_key_counts_once(
    harness: Harness,
) -> None:
    school = harness.school.id
    card = {"type": "AdaptiveCard", "body": [{"type": "TextBlock", "text": "Hello"}]}
    async with harness.parts.uow() as uow:
        await uow.notify.to_person(school, "p-one", text="Hi", card=card, dedupe_key="single:p-one", quiet=True)
        messages = [
            PersonMessage("p-one", text="Hi", card=card, dedupe_key="many:p-one", quiet=True),
            PersonMessage("p-two", text="Hi", dedupe_key="many:p-two"),
            PersonMessage("p-two", text="Again", dedupe_key="many:p-two"),  # the same key: ignored
        ]
        await uow.notify.to_people(school, messages)
    async with harness.parts.uow() as uow:
        await uow.notify.to_people(school, messages[:1])  # queued already: ignored
        await uow.work.schedule_many(
            school,
            [Then("aup.remind", {"n": 1}, harness.clock.now()), Then("aup.remind", {"n": 2}, harness.clock.now())],
        )
    assert harness.parts.claims is not None
    sends = await harness.parts.claims.list(kind="send", school_id=school)
    payloads = [s.payload for s in sends]
    assert payloads[0] == payloads[1]  # together or alone, the outbox gets the same message
    assert payloads[1:] == [
        {"target": {"kind": "person", "id": "p-one"}, "text": "Hi", "card": card, "quiet": True},
        {"target": {"kind": "person", "id": "p-two"}, "text": "Hi", "card": None},
    ]
    reminders = await harness.parts.claims.list(kind="aup.remind", school_id=school)
    assert [r.payload for r in reminders] == [{"n": 1}, {"n": 2}]  # no dedupe key: never deduplicated
