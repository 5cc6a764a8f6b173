"""Retention over HTTP on SQLite and PostgreSQL: the daily sweep deletes and anonymises exactly what the schedule
says, a legal hold keeps a case (and its child's record), and the DPO reads the schedule and the figures."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from adapters.clock import SettableClock
from bot.policy import RetentionRule
from bot.retention import SWEEP_KIND, case_due, case_type, child_due, cutoff, due_after
from bot.work import WorkItem
from dialogs import retention
from tests.support.harness import ROOT, Harness, start_harness
from tests.support.squid import start_filter_harness
from tests.support.teams import TeamsUser
from tests.test_aup import SUBMIT, _ack_rows, _card, _ticked
from tests.test_children import _case_card, _link_card, _press, _presses, _token_of
from tests.test_children import features as child_features
from tests.test_filtering import ask
from tests.test_incidents import _choice, submit_report

UTC = dt.UTC


def features() -> list[Any]:
    installed = child_features()
    if retention.install not in installed:
        installed.append(retention.install)
    return installed


@pytest.fixture
async def harness(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    # Due work runs only when the test says so: each sweep happens exactly where the test puts it.
    async with start_filter_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", features=features()
    ) as running:
        yield running


# --- helpers ------------------------------------------------------------------------------------------------------


async def settle(harness: Harness) -> None:
    while await harness.run_due_work():
        pass


async def sweep_at(harness: Harness, when: dt.datetime) -> None:
    """Move the clock to `when` and run everything due, the retention sweep among it."""
    harness.clock.set(when)
    await settle(harness)


async def link(priya: TeamsUser, reference: str, name: str) -> None:
    card = await _link_card(priya, reference)
    found = await _presses(priya, card, "Search", query=name)
    linked = await _presses(priya, found, "Link", near=name)
    assert f"{name} is now linked to {reference}." in json.dumps(linked)


def _close_form_inputs(node: Any) -> list[str]:
    """The text inputs of the Close form (other features add their own, such as why a referral was not made)."""
    if isinstance(node, dict):
        if node.get("type") == "Action.ShowCard" and "Close case" in json.dumps(node.get("card", {}).get("actions")):
            return [i["id"] for i in node["card"].get("body", []) if i.get("type") == "Input.Text"]
        return [found for value in node.values() for found in _close_form_inputs(value)]
    if isinstance(node, list):
        return [found for value in node for found in _close_form_inputs(value)]
    return []


async def close(user: TeamsUser, reference: str, outcome: str = "no_further_action") -> dict[str, Any]:
    card = await _case_card(user, reference)
    button = _press(card, "Close case")
    typed = {input_id: "Handled in school after advice" for input_id in _close_form_inputs(card)}
    reply = await user.executes(
        button["verb"], {**button["data"], **typed, "outcome": outcome, "close_note": "Nothing more to do"}
    )
    assert "Closed by" in json.dumps(reply.invoke_card), [b.get("text") for b in reply.invoke_card["body"][:3]]
    return reply.invoke_card


async def rows(harness: Harness, sql: str, **params: Any) -> list[Any]:
    async with harness.parts.engine.connect() as connection:
        return list((await connection.execute(text(sql), params)).all())


async def case_fields(harness: Harness, reference: str) -> tuple[Any, ...]:
    found = await rows(
        harness,
        "SELECT narrative, subjects, reporter_name, category, closed_at, outcome FROM incidents WHERE reference = :r",
        r=reference,
    )
    return tuple(found[0])


async def children_left(harness: Harness) -> int:
    return (await rows(harness, "SELECT count(*) FROM children"))[0][0]


async def swept_audit(harness: Harness) -> list[tuple[str, dict[str, int]]]:
    found = await rows(
        harness, "SELECT record_id, detail FROM audit_events WHERE action = 'retention.swept' ORDER BY seq"
    )
    return [(r[0], r[1] if isinstance(r[1], dict) else json.loads(r[1])) for r in found]


async def next_sweep(harness: Harness) -> dt.datetime:
    pending = [w for w in await harness.parts.claims.list(kind=SWEEP_KIND) if w.status == "pending"]
    return min(w.run_at for w in pending)


def seen(card: dict[str, Any]) -> str:
    return json.dumps(card)


# --- the schedule, end to end ---------------------------------------------------------------------------------------


async def test_the_sweep_deletes_and_keeps_exactly_what_the_schedule_says(harness: Harness) -> None:
    leah, priya, sam, tom, chris = (
        harness.user(n) for n in ("Leah Brooks", "Priya Shah", "Sam Patel", "Tom Reed", "Chris Doyle")
    )
    # Jamie Smith is born 22 Jan 2015 (25 on 22 Jan 2040); Olivia Jones-Baker 30 Jul 2021 (25 on 30 Jul 2046).
    jamie_case = await submit_report(leah, who="Jamie, Year 6", what="Jamie was sent cruel messages")
    olivia_case = await submit_report(leah, who="Olivia, Reception", what="Olivia saw a frightening video")
    no_child_case = await submit_report(leah, who="A pupil in Year 3", what="Unkind comments in a game")
    held_case = await submit_report(leah, who="Jamie again", what="Jamie was asked for a photo")
    technical_case = await submit_report(
        leah, subject="Not sure", group="technical", category="filter_failure", what="A game site loaded in Year 4"
    )
    open_case = await submit_report(leah, who="Noah, Year 5", what="Noah shared his password")
    # It turns out to be about a member of staff: the DSL moves it, and the Headteacher closes the allegation.
    allegation = await submit_report(leah, who="A teaching assistant", what="Messaged a pupil privately")
    move = _press(await _case_card(priya, allegation), "Move case")
    moved = await priya.executes(
        move["verb"], {**move["data"], "subject_kind": "staff", "move_reason": "It is about an adult in school"}
    )
    assert moved.status == 200
    await close(harness.user("Grace Okafor"), allegation, "unsubstantiated")
    await link(priya, jamie_case, "Jamie Smith")
    await link(priya, held_case, "Jamie Smith")
    await link(priya, olivia_case, "Olivia Jones-Baker")
    for reference in (jamie_case, olivia_case, no_child_case, held_case):
        await close(priya, reference)
    await close(sam, technical_case)

    # The DSL places a legal hold on one of Jamie's cases; a reason is required, and only the case team may.
    card = await _case_card(priya, held_case)
    refused = await _presses(priya, card, "Place hold")
    assert "Please give a reason for the hold." in seen(refused)
    stranger = await leah.executes("retention.hold", {"token": _token_of(card), "retention_hold_reason": "Mine"})
    assert "Legal hold" not in seen(stranger.invoke_card) and held_case not in seen(stranger.invoke_card)
    held = await _presses(priya, card, "Place hold", retention_hold_reason="A claim has been made")
    assert "Legal hold placed. This case will not be deleted" in seen(held)
    assert "Legal hold placed by Priya Shah: A claim has been made" in seen(held)

    filter_reply = await ask(leah)
    assert "FR-" in filter_reply.everything
    await settle(harness)

    # Leah acknowledges the staff AUP, then the newer version the online-safety lead publishes.
    await leah.executes(SUBMIT, _ticked(await _card(leah)))
    preview = await sam.says("aup publish staff")
    publish = next(c for c in preview.cards if "aup.publish" in json.dumps(c))["actions"][0]
    assert "Published version 2" in (await sam.executes(publish["verb"], publish["data"])).invoke_message
    await leah.executes(SUBMIT, _ticked(await _card(leah)))
    assert [r.version for r in await _ack_rows(harness, "Leah Brooks")] == [1, 2]

    # A report left half-written: gone after 24 hours; one started an hour before the sweep carries on.
    await tom.says("report")
    await tom.says("A pupil")
    first = await next_sweep(harness)
    harness.clock.set(first + dt.timedelta(days=1) - dt.timedelta(hours=1))
    await settle(harness)
    await chris.says("report")
    await chris.says("A pupil")
    await sweep_at(harness, first + dt.timedelta(days=1, minutes=1))
    group = _choice("conduct", None)[0]
    carried_on = await chris.says(group)
    forgotten = await tom.says(group)
    assert carried_on.everything and forgotten.everything
    assert carried_on.everything != forgotten.everything  # Chris is asked the next question; Tom is not
    assert "cyberbullying" in carried_on.everything.lower() or "Cyberbullying" in carried_on.everything
    assert "Cyberbullying" not in forgotten.everything
    await chris.says("cancel")
    # Nothing else was touched yet.
    for reference in (jamie_case, olivia_case, no_child_case, held_case, technical_case, open_case):
        assert (await case_fields(harness, reference))[0] is not None, reference

    # Two years on: the filtering request is anonymised, its log deleted, old messages emptied; cases untouched.
    await sweep_at(harness, dt.datetime(2029, 1, 15, 3, 0, tzinfo=UTC))
    request = (await rows(harness, "SELECT requester_name, requester_id, domain, status FROM filter_requests"))[0]
    assert request[0] == "(removed)" and request[1] == "" and request[2] == "bbc.co.uk"
    assert (await rows(harness, "SELECT count(*) FROM filter_log"))[0][0] == 0
    sends = await harness.parts.claims.list(kind="send")
    old = [w for w in sends if w.status == "done" and w.run_at.year == 2026]
    assert old and all(w.payload["text"] is None and w.payload["card"] is None for w in old)
    assert all("target" in w.payload for w in old)  # who it went to stays, for the delivery records
    recent = [w for w in sends if w.status == "done" and w.run_at.year == 2029]
    assert recent and all(w.payload["text"] or w.payload["card"] for w in recent)
    assert (await case_fields(harness, technical_case))[0] is not None
    assert [r.version for r in await _ack_rows(harness, "Leah Brooks")] == [1, 2]

    # Six years after closure: the technical incident is anonymised, keeping its type, dates and outcome.
    await sweep_at(harness, dt.datetime(2033, 1, 15, 3, 0, tzinfo=UTC))
    narrative, subjects, reporter, category, closed_at, outcome = await case_fields(harness, technical_case)
    assert (narrative, subjects, reporter) == (None, None, "(removed)")
    assert category == "filter_failure" and closed_at is not None and outcome == "No further action"
    anonymised = await _case_card(sam, technical_case)
    assert "Anonymised" in seen(anonymised) and "A game site loaded" not in seen(anonymised)
    assert "Leah Brooks" not in seen(anonymised)
    assert (await case_fields(harness, jamie_case))[0] is not None
    assert (await case_fields(harness, allegation))[0] is not None  # allegations: 10 years
    # Six years after she acknowledged version 2, her acknowledgement of version 1 goes; version 2's stays.
    assert [r.version for r in await _ack_rows(harness, "Leah Brooks")] == [2]

    # Ten years after closure, the allegation is anonymised.
    await sweep_at(harness, dt.datetime(2036, 11, 22, 3, 0, tzinfo=UTC))
    assert (await case_fields(harness, allegation))[0] is not None
    await sweep_at(harness, dt.datetime(2036, 11, 24, 3, 0, tzinfo=UTC))
    narrative, _, _, _, _, outcome = await case_fields(harness, allegation)
    assert narrative is None and outcome is not None

    # Jamie turns 25: his case is anonymised, the held one is kept, and so is his record (the held case links it).
    await sweep_at(harness, dt.datetime(2040, 1, 23, 3, 0, tzinfo=UTC))
    assert (await case_fields(harness, jamie_case))[0] is None
    assert (await case_fields(harness, held_case))[0] is not None
    assert (await case_fields(harness, olivia_case))[0] is not None  # Olivia is 18: her file stays
    assert (await case_fields(harness, no_child_case))[0] is not None
    assert await children_left(harness) == 2
    held_card = await _case_card(priya, held_case)
    assert "Jamie Smith" in seen(held_card) and "A claim has been made" in seen(held_card)
    assert "Jamie was asked for a photo" in seen(held_card)
    dpo = harness.user("Dana Lewis")
    report = (await dpo.says("retention")).cards[0]
    assert "Safeguarding case files: 1 anonymised, 1 kept because of a legal hold." in seen(report)

    # The hold is released: the next sweep anonymises the case, and Jamie's record, now linked to nothing, goes.
    released = await _presses(priya, held_card, "Release hold", retention_release_reason="The claim was settled")
    assert "Legal hold released" in seen(released)
    await sweep_at(harness, dt.datetime(2040, 1, 24, 3, 0, tzinfo=UTC))
    assert (await case_fields(harness, held_case))[0] is None
    assert await children_left(harness) == 1

    # Olivia turns 25 in July 2046; the case with no child runs 25 years from closure (November 2051).
    await sweep_at(harness, dt.datetime(2046, 7, 29, 3, 0, tzinfo=UTC))
    assert (await case_fields(harness, olivia_case))[0] is not None
    await sweep_at(harness, dt.datetime(2046, 7, 31, 3, 0, tzinfo=UTC))
    assert (await case_fields(harness, olivia_case))[0] is None
    assert await children_left(harness) == 0
    assert (await case_fields(harness, no_child_case))[0] is not None
    await sweep_at(harness, dt.datetime(2051, 12, 1, 3, 0, tzinfo=UTC))
    assert (await case_fields(harness, no_child_case))[0] is None

    # Nothing twice: another sweep changes nothing and adds no audit entry; the open case was never touched.
    audited = await swept_audit(harness)
    await sweep_at(harness, dt.datetime(2051, 12, 2, 3, 0, tzinfo=UTC))
    assert await swept_audit(harness) == audited
    marks = await rows(
        harness, "SELECT count(*), count(DISTINCT record_key) FROM retention_marks WHERE record_type = 'case'"
    )
    assert tuple(marks[0]) == (6, 6)
    assert (await case_fields(harness, open_case))[0] is not None
    assert "Noah shared his password" in seen(await _case_card(priya, open_case))
    # The audit entries name record types and counts, never a person, a child or a case.
    totals: dict[str, int] = {}
    for record_type, detail in audited:
        assert set(detail) == {"deleted", "anonymised", "kept_on_hold"}, detail
        totals[record_type] = totals.get(record_type, 0) + detail["deleted"] + detail["anonymised"]
    assert totals["safeguarding_case"] == 4 and totals["other_incident"] == 1 and totals["allegation"] == 1
    assert totals["child_record"] == 2 and totals["filter_request"] == 1 and totals["conversation_state"] >= 1
    assert totals["aup_acknowledgement"] == 1 and totals["filter_log"] >= 1 and totals["outbox"] >= 1
    assert not any(word in json.dumps(audited) for word in ("Jamie", "Olivia", "Leah", jamie_case, "ES-"))
    # The audit trail itself is kept whole and still verifies.
    check = await harness.parts.features.audit_watch.check_school(harness.school.id)
    assert check.broken is None


async def test_the_dpo_holds_a_case_without_reading_it_and_reads_the_schedule(harness: Harness) -> None:
    leah, priya, dana = harness.user("Leah Brooks"), harness.user("Priya Shah"), harness.user("Dana Lewis")
    reference = await submit_report(leah, who="Amelia, Year 4", what="Amelia was sent a scary link")
    await close(priya, reference)

    reply = await dana.says(f"hold {reference}")
    assert "Please give the case reference and the reason" in reply.everything
    reply = await dana.says("hold Amelia Hart because of a claim")
    assert "Please give the case reference and the reason" in reply.everything
    reply = await dana.says("hold ES-2026-9999 A subject access request")
    assert "could not find a case" in reply.everything
    reply = await dana.says(f"hold {reference} A subject access request is open")
    assert f"Legal hold placed. {reference} will not be deleted" in reply.everything
    for secret in ("Amelia", "scary", "Leah", "Cyberbullying"):
        assert secret not in reply.everything
    again = await dana.says(f"hold {reference} Again")
    assert "already under a legal hold" in again.everything
    refused = await leah.says(f"hold {reference} Mine")
    assert "Legal hold placed" not in refused.everything
    # The case team sees who placed it and why.
    card = await _case_card(priya, reference)
    assert "Legal hold placed by Dana Lewis: A subject access request is open" in seen(card)
    assert "Release the hold" in seen(card)

    schedule = (await dana.says("retention")).cards[0]
    for words in (
        "Retention schedule",
        "Anonymised on the linked child's 25th birthday",
        "Audit trail",
        "Deleted 24 hours after the last message",
        "No sweep has run yet.",
        "Next sweep:",
    ):
        assert words in seen(schedule), words
    assert "Retention schedule" not in (await leah.says("retention")).everything
    released = await dana.says(f"hold release {reference} The request was answered")
    assert f"Legal hold released. {reference} follows the retention schedule again." in released.everything
    viewed = await rows(harness, "SELECT count(*) FROM audit_events WHERE action = 'retention.viewed'")
    assert viewed[0][0] == 1
    audit_text = json.dumps([list(r) for r in await rows(harness, "SELECT record_id, detail FROM audit_events")])
    assert "AMELIA" not in audit_text.upper()


async def test_two_sweeps_at_once_change_each_record_once(harness: Harness) -> None:
    """Two replicas can each hold a sweep (the day's and a backlog's continuation): each case changes once."""
    leah, priya = harness.user("Leah Brooks"), harness.user("Priya Shah")
    references = [await submit_report(leah, who=f"Pupil {n}", what=f"Worry number {n}") for n in range(3)]
    for reference in references:
        await close(priya, reference)
    await settle(harness)
    harness.clock.set(dt.datetime(2052, 1, 10, 3, 0, tzinfo=UTC))
    service = harness.parts.features.retention
    items = [
        WorkItem(
            id=900 + n,
            school_id=harness.school.id,
            kind=SWEEP_KIND,
            payload={},
            run_at=harness.clock.now(),
            attempts=1,
            dedupe_key=None,
        )
        for n in range(2)
    ]
    await asyncio.gather(*(service.sweep(item) for item in items))

    audited = [d for t, d in await swept_audit(harness) if t == "safeguarding_case"]
    assert sum(d["anonymised"] for d in audited) == 3
    for reference in references:
        card = await _case_card(priya, reference)
        assert seen(card).count("Anonymised under the retention schedule") == 1, reference
        assert (await case_fields(harness, reference))[0] is None


async def test_a_backlog_is_swept_in_batches_that_continue_by_themselves(
    database_url: str, clock: SettableClock, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    defaults = (ROOT / "config" / "policy_defaults.yaml").read_text()
    assert "  batch_size: 200" in defaults
    policy.write_text(defaults.replace("  batch_size: 200", "  batch_size: 2"))
    async with start_harness(
        database_url=database_url,
        clock=clock,
        var_dir=tmp_path / "var",
        features=features(),
        worker_enabled=False,
        policy_path=policy,
    ) as harness:
        leah, priya = harness.user("Leah Brooks"), harness.user("Priya Shah")
        references = [await submit_report(leah, who=f"Pupil {n}", what=f"Worry number {n}") for n in range(5)]
        for reference in references:
            await close(priya, reference)
        await settle(harness)

        async def anonymised() -> int:
            return sum([(await case_fields(harness, r))[0] is None for r in references])

        await sweep_at(harness, dt.datetime(2052, 1, 10, 3, 0, tzinfo=UTC))
        assert await anonymised() == 2  # one batch now; the rest is queued, not done in one long transaction
        harness.clock.advance(minutes=5)
        await settle(harness)
        assert await anonymised() == 4
        harness.clock.advance(minutes=5)
        await settle(harness)
        assert await anonymised() == 5

        async def continuations() -> list[str]:
            return [w.status for w in await harness.parts.claims.list(kind=SWEEP_KIND) if w.payload.get("continues")]

        # Other record types (old messages, conversations) drain two at a time too, and then the chain stops.
        for _ in range(30):
            if "pending" not in await continuations():
                break
            harness.clock.advance(minutes=5)
            await settle(harness)
        assert set(await continuations()) == {"done"} and len(await continuations()) >= 2
        assert await anonymised() == 5


# --- the schedule's arithmetic (pure) -------------------------------------------------------------------------------

CLOSED = dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_a_case_runs_to_the_latest_linked_childs_25th_birthday_or_a_fixed_period_without_one() -> None:
    rule = RetentionRule(action="anonymise", until_child_age=25, after_years=25)
    assert case_due(rule, CLOSED, [dt.date(2015, 1, 22)]) == dt.datetime(2040, 1, 22, tzinfo=UTC)
    assert case_due(rule, CLOSED, [dt.date(2015, 1, 22), dt.date(2018, 6, 1)]) == dt.datetime(2043, 6, 1, tzinfo=UTC)
    assert case_due(rule, CLOSED, []) == dt.datetime(2051, 3, 1, 12, 0, tzinfo=UTC)
    assert case_due(rule, CLOSED, [dt.date(2015, 1, 22), None]) == dt.datetime(2051, 3, 1, 12, 0, tzinfo=UTC)
    assert child_due(rule, dt.date(2016, 2, 29), CLOSED) == dt.datetime(2041, 2, 28, tzinfo=UTC)


def test_record_types_and_periods() -> None:
    assert case_type("staff", "safeguarding") == "allegation"
    assert case_type("headteacher", "technical") == "allegation"
    assert case_type("pupil", "safeguarding") == "safeguarding_case"
    assert case_type("unknown", "data_protection") == "other_incident"
    ten = RetentionRule(action="anonymise", after_years=10)
    assert due_after(ten, CLOSED) == dt.datetime(2036, 3, 1, 12, 0, tzinfo=UTC)
    day = RetentionRule(action="delete", after_hours=24)
    now = dt.datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    assert cutoff(day, now) == dt.datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="not possible here"):
        from bot.policy import RetentionPolicy

        RetentionPolicy(audit_entry=RetentionRule(action="delete", after_years=1))


# --- the cards --------------------------------------------------------------------------------------------------


def _sample_cards() -> dict[str, dict[str, Any]]:
    from zoneinfo import ZoneInfo

    from bot.cards.incident import CasePart, CaseView, Labels, build_case_card
    from bot.cards.retention import HoldView, RetentionView, build_hold_section, build_retention_card
    from bot.policy import load_policy
    from bot.retention import INBOUND_NOTE, schedule_lines
    from tests.support.cards import _incident
    from tests.support.harness import ROOT

    zone, now = ZoneInfo("Europe/London"), dt.datetime(2026, 11, 23, 10, 30, tzinfo=UTC)
    schedule = schedule_lines(load_policy(ROOT / "config" / "policy_defaults.yaml").retention)
    held = CasePart(
        *build_hold_section(
            HoldView(
                token="c" * 32,
                timezone=zone,
                held_since=now,
                held_by="Priya Shah",
                reason="A claim has been made",
                can_act=True,
            )
        )
    )
    return {
        "retention": build_retention_card(
            RetentionView(
                school="Oakfield Primary School",
                schedule=schedule,
                timezone=zone,
                last_run_at=now,
                last_figures=[("Safeguarding case files", "2 anonymised, 1 kept because of a legal hold")],
                next_run_at=now + dt.timedelta(hours=16),
                note=INBOUND_NOTE,
            )
        ),
        "retention-empty": build_retention_card(
            RetentionView(school="Oakfield Primary School", schedule=schedule, timezone=zone)
        ),
        "case-held": build_case_card(
            CaseView(
                incident=_incident(),
                labels=Labels("Cyberbullying", "Conduct"),
                now=now,
                timezone=zone,
                can_act=True,
                parts=[held],
            )
        ),
    }


def test_retention_cards_are_valid_teams_cards_under_40_kb() -> None:
    from bot.cards.common import MAX_CARD_BYTES
    from tests.test_cards import schema_errors, structural_problems

    for name, card in _sample_cards().items():
        assert structural_problems(card) == [], name
        assert schema_errors(card) == [], name
        assert len(json.dumps(card).encode()) < MAX_CARD_BYTES, name
