"""Child records over HTTP on SQLite and PostgreSQL: link concerns to a child, read one chronology, find pupils in
the static directory and in School Data Sync (a loopback Graph), refuse everyone else, keep names sealed."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from sqlalchemy import text

from adapters import pupils
from adapters.clock import SettableClock
from app import _features
from bot.cards import children as child_cards
from bot.cards.common import MAX_CARD_BYTES
from bot.cards.incident import build_not_allowed_card
from bot.case_record import CaseRecord, ChildDetails, ChildFile, ChildRef, ChronologyEntry
from bot.child_service import LinkView, StaffMatch
from bot.children import ChildMatch
from dialogs import children, incidents
from tests.support.connector import RecordingConnector
from tests.support.fake_graph import FakeGraph
from tests.support.graph_harness import CATALOG_APP_ID, demo_graph, graph_config
from tests.support.harness import Harness, start_harness
from tests.support.harness import test_settings as app_settings
from tests.support.teams import Reply, TeamsUser
from tests.test_cards import schema_errors, structural_problems
from tests.test_incidents import _database_text, submit_report

NOT_ALLOWED = build_not_allowed_card()


def features() -> list[Any]:
    """The app's features, with the pupil directory and child records in place if app._features() lacks them."""
    installed = _features()
    if children.install not in installed:
        installed.insert(installed.index(incidents.install) + 1, children.install)
    if pupils.install not in installed:
        installed.insert(installed.index(children.install), pupils.install)
    return installed


@pytest.fixture
async def harness(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    async with start_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", features=features()
    ) as running:
        yield running


# --- helpers: what a person sees and presses ------------------------------------------------------------------------


def _actions(node: Any) -> list[dict[str, Any]]:
    """Every Action.Execute on a card, wherever it sits (ActionSets, ShowCards, the card's own actions)."""
    found = []
    if isinstance(node, dict):
        if node.get("type") == "Action.Execute":
            found.append(node)
        for value in node.values():
            found.extend(_actions(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_actions(value))
    return found


def _press(card: dict[str, Any], title: str, near: str | None = None) -> dict[str, Any]:
    """The verb and data of the button `title`; with `near`, the one in the same container as that text."""
    if near is not None:
        containers = [c for c in _containers(card) if near in json.dumps(c["items"][:2])]
        assert containers, f"no {near!r} on the card: {json.dumps(card)[:800]}"
        card = containers[0]
    buttons = [a for a in _actions(card) if a.get("title") == title]
    assert buttons, f"no {title!r} button in {json.dumps(card)[:800]}"
    return {"verb": buttons[0]["verb"], "data": buttons[0]["data"]}


def _containers(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        if node.get("type") == "Container":
            found.append(node)
        for value in node.values():
            found.extend(_containers(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_containers(value))
    return found


async def _presses(
    user: TeamsUser, card: dict[str, Any], title: str, near: str | None = None, **inputs: Any
) -> dict[str, Any]:
    button = _press(card, title, near)
    reply = await user.executes(button["verb"], {**button["data"], **inputs})
    assert reply.status == 200 and reply.invoke_card, reply.body
    return reply.invoke_card


def _results(reply: Reply) -> dict[str, Any]:
    """The `child NAME` answer (other features may add their own cards to the same reply, e.g. the AUP)."""
    found = [c for c in reply.cards if "Children found" in json.dumps(c["body"][:1])]
    assert found, f"no search results in {reply.everything[:500]}"
    return found[0]


def _seen(card: dict[str, Any]) -> str:
    return json.dumps(card)


async def _case_card(user: TeamsUser, reference: str) -> dict[str, Any]:
    reply = await user.says(f"case {reference}")
    return next(c for c in reply.cards if reference in json.dumps(c))


def _token_of(case_card: dict[str, Any]) -> str:
    return re.search(r'"token": "([^"]+)"', json.dumps(case_card)).group(1)


async def _link_card(user: TeamsUser, reference: str) -> dict[str, Any]:
    """The link card, as the case card's "Link a child" button (verb child.find) opens it."""
    reply = await user.executes("child.find", {"token": _token_of(await _case_card(user, reference))})
    assert reply.invoke_card, reply.body
    return reply.invoke_card


def _chronology(file_card: dict[str, Any]) -> list[tuple[str, str]]:
    """(case reference, entry text) for each chronology entry on a child's file card, top to bottom."""
    entries = []
    for container in _containers(file_card):
        items = container["items"]
        first = items[0].get("text", "") if items else ""
        if re.match(r"^[A-Z]{2,4}-\d{4}-\d{4} · ", first):
            entries.append((first.split(" · ")[0], items[1]["inlines"][-1]["text"]))
    return entries


# --- the tests ------------------------------------------------------------------------------------------------------


async def test_two_concerns_linked_to_one_child_read_back_as_one_chronology_in_time_order(
    harness: Harness, clock: SettableClock
) -> None:
    leah, priya = harness.user("Leah Brooks"), harness.user("Priya Shah")
    first = await submit_report(leah, who="Jamie in Year 6", what="Unkind messages in the class chat")
    clock.advance(hours=1)
    second = await submit_report(leah, who="Jamie again", what="Pushed to share a photo")
    clock.advance(hours=1)

    card = await _link_card(priya, first)
    assert "No child is linked to this case yet." in _seen(card)
    found = await _presses(priya, card, "Search", query="jamie smi")
    assert "Jamie Smith" in _seen(found) and "From the school's pupil list" in _seen(found)
    linked = await _presses(priya, found, "Link", near="Jamie Smith")
    assert f"Jamie Smith is now linked to {first}." in _seen(linked)
    assert "Linked children" in _seen(linked)

    clock.advance(hours=1)
    card = await _link_card(priya, second)
    found = await _presses(priya, card, "Search", query="Smith")
    assert "Record already here" in _seen(found) and "From the school's pupil list" not in _seen(found)
    linked = await _presses(priya, found, "Link", near="Jamie Smith")
    assert f"Jamie Smith is now linked to {second}." in _seen(linked)

    clock.advance(hours=1)
    case = await _case_card(priya, first)
    note = _press(case, "Save note")
    await priya.executes(note["verb"], {**note["data"], "note": "Spoke to his parents"})

    file = await _presses(priya, linked, "Open file", near="Jamie Smith")
    assert "Jamie Smith" in _seen(file)
    assert "Year 6" in _seen(file) and "22 Jan 2015" in _seen(file) and "B210987654321" in _seen(file)
    # The SLA reminders that fire as the clock moves are entries too; these are the ones this test made.
    entries = [(ref, words) for ref, words in _chronology(file) if not words.startswith("Not taken on in time")]
    assert [ref for ref, _ in entries] == [first, second, first, second, first]
    assert entries[0][1].startswith("Reported by Leah Brooks")
    assert entries[2][1] == "Linked to a child's record by Priya Shah: Year 6"
    assert entries[4][1] == "Note from Priya Shah: Spoke to his parents"
    # The chronology (read by the whole case team, and exported) says a child was linked, not who; the case
    # card lists the linked child for the safeguarding team.
    assert "Jamie Smith" in _seen(await _case_card(priya, second))


async def test_a_pupil_from_the_static_directory_becomes_one_record_and_typed_details_are_checked(
    harness: Harness,
) -> None:
    tom = harness.user("Tom Reed")  # a deputy DSL
    reply = await tom.says("child zara")
    assert "Zara Ahmed" in _seen(_results(reply)) and "2 Birch" in _seen(_results(reply))
    file = await _presses(tom, _results(reply), "Create record", near="Zara Ahmed")
    assert "Zara Ahmed" in _seen(file) and "SIMS-40517" in _seen(file) and "2 Nov 2019" in _seen(file)
    assert "None that you can see." in _seen(file)

    again = await tom.says("child ahmed")
    assert _seen(_results(again)).count("Zara Ahmed") == 1 and "Record already here" in _seen(_results(again))
    assert [a.get("title") for a in _actions(_results(again))] == ["Open file"]

    reference = await submit_report(harness.user("Leah Brooks"))
    card = await _link_card(tom, reference)
    form = _press(card, "Create and link")
    refused = await tom.executes(
        form["verb"],
        {**form["data"], "name": "Sam Lee", "date_of_birth": "2990-01-01", "upn": "12345", "year_group": "y5"},
    )
    shown = _seen(refused.invoke_card)
    assert "The date of birth must be in the past. Please check it." in shown
    assert "A UPN is 13 characters: a letter and then 12 digits." in shown
    made = await tom.executes(
        form["verb"],
        {
            **form["data"],
            "name": "  Sam   Lee ",
            "date_of_birth": "14/03/2016",
            "upn": "c123456789012",
            "year_group": "y5",
        },
    )
    assert f"Sam Lee is now linked to {reference}." in _seen(made.invoke_card)
    assert "Sam Lee (Year 5)" in _seen(made.invoke_card)
    assert _seen(_results(await tom.says("child sam l"))).count("Sam Lee") == 1
    unlinked = await _presses(tom, made.invoke_card, "Unlink", near="Sam Lee")
    assert f"Sam Lee is no longer linked to {reference}." in _seen(unlinked)
    assert "No child is linked to this case yet." in _seen(unlinked)


async def test_two_leads_creating_a_record_for_the_same_pupil_at_once_make_one_record(harness: Harness) -> None:
    priya, tom = harness.user("Priya Shah"), harness.user("Tom Reed")
    results = _results(await priya.says("child noah"))
    button = _press(results, "Create record", near="Noah Williams")
    files = await asyncio.gather(
        priya.executes(button["verb"], button["data"]), tom.executes(button["verb"], button["data"])
    )
    assert all("Noah Williams" in _seen(f.invoke_card) for f in files)
    again = _results(await tom.says("child noah"))
    assert _seen(again).count("Noah Williams") == 1 and "Record already here" in _seen(again)
    async with harness.parts.engine.connect() as connection:
        assert (await connection.execute(text("SELECT COUNT(*) FROM children"))).scalar_one() == 1


async def test_staff_without_the_role_get_the_one_refusal_and_it_is_audited(harness: Harness) -> None:
    priya, leah, grace = harness.user("Priya Shah"), harness.user("Leah Brooks"), harness.user("Grace Okafor")
    reference = await submit_report(leah)
    token = _token_of(await _case_card(priya, reference))
    found = await _presses(priya, await _link_card(priya, reference), "Search", query="amelia")
    linked = await _presses(priya, found, "Link", near="Amelia Hart")
    child_token = _press(linked, "Open file", near="Amelia Hart")["data"]["child"]  # a card someone could copy

    for person in (leah, grace):  # a member of staff; the Headteacher, who is not a DSL
        replies: list[Reply] = [
            await person.executes("child.find", {"token": token}),
            await person.executes("child.search", {"token": token, "query": "amelia"}),
            await person.executes("child.link", {"token": token, "pupil": "pupil-0002"}),
            await person.executes("child.create", {"token": token, "name": "Someone New"}),
            await person.executes("child.create", {"pupil": "pupil-0003"}),
            await person.executes("child.unlink", {"token": token, "child": child_token}),
            await person.executes("child.view", {"child": child_token}),
            await person.executes("child.view", {"child": "not-a-real-token"}),
        ]
        for reply in replies:
            assert reply.status == 200 and reply.invoke_card == NOT_ALLOWED, reply.body
        typed = await person.says("child amelia")
        assert "not available to you" in typed.texts[0] and "Amelia" not in typed.everything

    async with harness.parts.uow() as uow:
        entries = await uow.audit.entries(harness.school.id)
    refusals = [e for e in entries if e.action == "child.access_refused"]
    assert {e.actor_id for e in refusals} == {harness.person_id("Leah Brooks"), harness.person_id("Grace Okafor")}
    assert len(refusals) == 16
    file_again = await priya.executes("child.view", {"child": child_token})
    assert "Amelia Hart" in _seen(file_again.invoke_card)  # still linked: nothing the others sent took effect
    assert [e.action for e in entries].count("child.linked") == 1
    for forged in ({"child": "not-a-real-token"}, {"child": {"id": 1}}, {"child": 1}, {}):
        assert (await priya.executes("child.view", forged)).invoke_card == NOT_ALLOWED  # even for the DSL


async def test_the_childs_name_is_not_in_the_database_in_clear(harness: Harness) -> None:
    tom = harness.user("Tom Reed")
    reference = await submit_report(harness.user("Leah Brooks"), who="a pupil", what="Shared a private photo")
    card = await _link_card(tom, reference)
    form = _press(card, "Create and link")
    made = await tom.executes(
        form["verb"],
        {
            **form["data"],
            "name": "Ottoline Quennell-Vasquez",
            "date_of_birth": "2016-02-29",
            "upn": "Q998877665544",
            "mis_id": "MIS-Ott-4421",
            "year_group": "Year 4",
        },
    )
    assert "Ottoline Quennell-Vasquez is now linked" in _seen(made.invoke_card)

    async with harness.parts.engine.connect() as connection:
        row = (
            await connection.execute(text("SELECT name, date_of_birth, upn, mis_id, year_group, source FROM children"))
        ).one()
    for sealed in row[:4]:
        assert sealed.startswith("v2:")
    assert row[4:] == ("Year 4", "local")
    everything = await _database_text(harness)
    for secret in ("Ottoline", "Quennell", "Q998877665544", "MIS-Ott-4421", "2016-02-29"):
        assert secret not in everything


async def test_the_headteacher_names_the_member_of_staff_an_allegation_is_about_from_the_directory(
    harness: Harness,
) -> None:
    grace, tom = harness.user("Grace Okafor"), harness.user("Tom Reed")
    reference = await submit_report(
        harness.user("Leah Brooks"),
        subject="A member of staff",
        who="A teacher",
        what="Messaging a pupil on a personal account",
    )
    card = await _link_card(grace, reference)
    assert "New child record" not in _seen(card)  # the Headteacher is not on the safeguarding team
    found = await _presses(grace, card, "Search", query="tom")
    assert "Tom Reed" in _seen(found) and "Member of staff" in _seen(found)
    assert "Amelia" not in _seen(await _presses(grace, card, "Search", query="amelia"))
    named = await _presses(grace, found, "Name on this case", near="Tom Reed")
    assert f"Tom Reed is now named on {reference} and cannot see it." in _seen(named)

    async with harness.parts.uow() as uow:
        incident = await uow.incidents.by_reference(harness.school.id, reference)
    assert harness.person_id("Tom Reed") in incident.excluded_ids  # excluded by who he is, whatever his roles
    refused = await tom.executes("child.find", {"token": incident.token})
    assert refused.invoke_card == NOT_ALLOWED
    pupil_case = await submit_report(harness.user("Leah Brooks"))
    token = _token_of(await _case_card(harness.user("Priya Shah"), pupil_case))
    staff_on_pupil_case = await grace.executes("child.link_staff", {"token": token, "person": tom.aad_id})
    assert staff_on_pupil_case.invoke_card == NOT_ALLOWED


# --- School Data Sync through a loopback Graph ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _graph_school(
    database_url: str, clock: SettableClock, var_dir: Path, graph: FakeGraph
) -> AsyncIterator[Harness]:
    """The real app with ESAFETY_DIRECTORY=graph (as tests.support.graph_harness) and the child records feature."""
    connector = RecordingConnector()
    await connector.start()
    settings = app_settings(
        database_url,
        var_dir,
        directory="graph",
        graph_base_url=graph.base_url,
        graph_authority=graph.url,
        graph_client_id="esafety-graph-app",
        graph_client_secret="not-a-real-secret",
        graph_ca_bundle=graph.cert_path,
        graph_timeout_seconds=15.0,
        graph_bulk_timeout_seconds=20.0,
        teams_app_catalog_id=CATALOG_APP_ID,
        teams_service_url=connector.url,
        worker_enabled=False,
    )
    async with aiohttp.ClientSession() as http:
        harness = Harness(settings, graph_config(), clock, connector, http, features=features())
        await harness.start()
        try:
            yield harness
        finally:
            await harness.stop()
            await connector.stop()


async def test_a_graph_school_finds_pupils_in_school_data_sync_with_their_classes(
    database_url: str, clock: SettableClock, tmp_path: Path
) -> None:
    async with demo_graph(tmp_path / "graph-tls") as graph:
        graph.add_class("class-5r", "5 Rowan", grade="Year 5")
        graph.add_pupil(
            "edu-maya",
            "Maya",
            "Okonjo",
            birth_date="2016-06-01",
            grade="Year 5",
            external_id="MIS-7781",
            classes=("class-5r",),
        )
        graph.add_pupil("edu-teacher", "Martin", "Okonjo", role="teacher", classes=("class-5r",))
        async with _graph_school(database_url, clock, tmp_path / "var", graph) as school:
            priya = school.user("Priya Shah")
            reply = await priya.says("child okon")
            shown = _seen(_results(reply))
            assert "Maya Okonjo" in shown and "5 Rowan" in shown and "born 1 Jun 2016" in shown
            assert "Martin" not in shown  # a teacher in the same roster is not a pupil
            asked = graph.requests_to("/education/users")
            assert asked[0].path == "/v1.0/education/users"
            assert "startswith(surname,'okon')" in asked[0].query["$filter"]
            assert graph.requests_to("/education/users/edu-maya/classes")

            file = await _presses(priya, _results(reply), "Create record", near="Maya Okonjo")
            assert "Maya Okonjo" in _seen(file) and "MIS-7781" in _seen(file) and "Year 5" in _seen(file)
            assert "Record already here" in _seen(_results(await priya.says("child maya")))

            graph.fail_next(503, times=10, path="/education/users")
            during = await priya.says("child maya")
            assert "did not answer just now" in _seen(_results(during)) and "Maya Okonjo" in _seen(_results(during))


# --- the cards themselves -------------------------------------------------------------------------------------------


def _sample_cards() -> dict[str, dict[str, Any]]:
    """Each child card at its fullest: every section, long typed text, more entries than one page holds."""
    now = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
    matches = [
        ChildMatch("Jamie Smith", "Year 6", dt.date(2015, 1, 22), token="c" * 32),
        ChildMatch("Jamie Smithson", "Year 3", None, pupil_id="pupil-9", classes=("3 Elm",)),
    ]
    link = LinkView(
        reference="ES-2026-0042",
        case_token="t" * 32,
        children=(ChildRef("c" * 32, "Amelia Hart", "Year 4"),),
        staff_member="Tom Reed",
        may_link_children=True,
        may_link_staff=True,
        query="jamie",
        matches=matches,
        staff_matches=[StaffMatch("p-1", "Jamie Staff")],
        notice="Amelia Hart is now linked to ES-2026-0042.",
        problems=["Please give the child's name."],
        directory_failed=True,
    )
    entries = tuple(
        ChronologyEntry(
            now + dt.timedelta(hours=n),
            now + dt.timedelta(hours=n, minutes=n % 3),
            f"ES-2026-{n % 12:04d}",
            "note",
            "[not a link](https://x.example) " * 60,
        )
        for n in range(40)
    )
    cases = [
        CaseRecord(
            reference=f"ES-2026-{n:04d}",
            token=f"{n}" * 32,
            category="Cyberbullying or harassment",
            group="Conduct",
            severity="Medium",
            status="Closed",
            about="A pupil",
            where="Online",
            reported_at=now,
            reported_by="Leah",
            owner=None,
            outcome=None,
            when=None,
            who_is_involved=None,
            what_happened=None,
            evidence=None,
            already_done=None,
            actions=(),
            children=(),
            staff_member=None,
            entries=(),
            is_open=n % 2 == 0,
        )
        for n in range(12)
    ]
    file = ChildFile(
        ChildDetails("c" * 32, "Amelia Hart", "Year 4", dt.date(2017, 5, 14), "A123456789012", "SIMS-1"),
        tuple(cases),
        hidden_cases=2,
        entries=entries,
    )
    tz = ZoneInfo("Europe/London")
    return {
        "link": child_cards.build_child_link_card(link),
        "search": child_cards.build_child_search_card(child_cards.SearchView("jamie", matches, True)),
        "search-empty": child_cards.build_child_search_card(child_cards.SearchView("nobody")),
        "file-latest": child_cards.build_child_file_card(child_cards.ChildFileView(file, tz)),
        "file-first-page": child_cards.build_child_file_card(child_cards.ChildFileView(file, tz, page=1)),
    }


def test_child_cards_are_valid_teams_cards_under_40_kb_and_page_a_long_chronology() -> None:
    cards = _sample_cards()
    for name, card in cards.items():
        assert structural_problems(card) == [], name
        assert schema_errors(card) == [], name
        assert len(json.dumps(card).encode()) < MAX_CARD_BYTES, name
    latest = cards["file-latest"]
    assert "Page 3 of 3, earliest first." in _seen(latest)
    assert [a["title"] for a in _actions(latest)][-1:] == ["Earlier entries"]
    assert "Later entries" in [a["title"] for a in _actions(cards["file-first-page"])]
    assert "2 more linked cases are handled by other case managers" in _seen(latest)
    # Typed text is shown as text: the Markdown link stays inside a TextRun, never a TextBlock.
    holders = _holding(latest, "not a link")
    assert holders and {node["type"] for node in holders} == {"TextRun"}
    assert all(len(n["text"]) <= child_cards.MAX_ENTRY_CHARS for n in holders)  # long entries are cut short


def _holding(node: Any, words: str) -> list[dict[str, Any]]:
    """The card elements whose own text contains `words`."""
    found = []
    if isinstance(node, dict):
        if words in str(node.get("text", "")):
            found.append(node)
        for value in node.values():
            found.extend(_holding(value, words))
    elif isinstance(node, list):
        for value in node:
            found.extend(_holding(value, words))
    return found
