"""The Microsoft Graph directory, end to end: the real app, msgraph-sdk and azure-identity against a loopback Graph."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from adapters.clock import SettableClock
from adapters.directory_static import StaticDirectory
from adapters.graph_directory import GraphDirectory
from bot.actor import Command, Turn
from bot.config import AppConfig, load_config
from bot.people import Role
from bot.wiring import Wiring
from tests.support.connector import RecordingConnector
from tests.support.fake_graph import FakeGraph
from tests.support.harness import DEMO_CONFIG, Harness
from tests.support.harness import test_settings as app_settings

SCHOOL = "oakfield"
PRIYA = "00000000-0000-4000-8000-000000000001"  # staff, dsl, slt
TOM = "00000000-0000-4000-8000-000000000002"  # staff, deputy_dsl
GRACE = "00000000-0000-4000-8000-000000000003"  # headteacher
LEAH = "00000000-0000-4000-8000-000000000009"  # staff
RUTH = "00000000-0000-4000-8000-000000000007"  # chair of governors, no line manager
CATALOG_APP_ID = "f1d2c3b4-0000-4000-8000-00000000a001"


def group_id(role: Role) -> str:
    return f"grp-{role.value}"


def graph_config() -> AppConfig:
    """The demo school with each role mapped to an Entra security group."""
    raw = load_config(DEMO_CONFIG).model_dump(mode="json")
    raw["schools"][0]["role_groups"] = {role.value: group_id(role) for role in Role}
    return AppConfig.model_validate(raw)


async def _safeguarding_check(turn: Turn, _args: str) -> None:
    await turn.say(f"{turn.actor.person.first_name}, you are on the safeguarding team.")


def safeguarding_probe(wiring: Wiring) -> None:
    """A command only the safeguarding team may use: shows the roles the front door got from the directory."""
    wiring.services.add_command(Command("safeguarding check", "Safeguarding check", "check your access",
                                        _safeguarding_check, roles=frozenset({Role.DSL, Role.DEPUTY_DSL})))


@pytest.fixture
async def graph(tmp_path: Path) -> AsyncIterator[FakeGraph]:
    fake = FakeGraph(tmp_path / "graph-tls", page_size=2)
    for person in graph_config().schools[0].people:
        fake.add_user(person.id, person.name, person.email, manager=person.line_manager)
        for role in person.roles:
            fake.add_member(group_id(role), person.id)
    for role in Role:
        fake.groups.setdefault(group_id(role), [])
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def gh(database_url: str, clock: SettableClock, tmp_path: Path, graph: FakeGraph) -> AsyncIterator[Harness]:
    """The real app with ESAFETY_DIRECTORY=graph pointed at the loopback Graph."""
    connector = RecordingConnector()
    await connector.start()
    settings = app_settings(
        database_url, tmp_path / "var", directory="graph", graph_base_url=graph.base_url,
        graph_authority=graph.url, graph_client_id="esafety-graph-app", graph_client_secret="not-a-real-secret",
        graph_ca_bundle=graph.cert_path, graph_timeout_seconds=5.0, graph_bulk_timeout_seconds=10.0,
        teams_app_catalog_id=CATALOG_APP_ID, teams_service_url=connector.url,
        worker_enabled=False,  # due work runs only when the test says so
    )
    async with aiohttp.ClientSession() as http:
        harness = Harness(settings, graph_config(), clock, connector, http, features=[safeguarding_probe])
        await harness.start()
        try:
            yield harness
        finally:
            await harness.stop()
            await connector.stop()


def directory(harness: Harness) -> GraphDirectory:
    found = harness.parts.directory
    assert isinstance(found, GraphDirectory)
    return found


# --- roles, people, managers, email --------------------------------------------------------------------------------

async def test_roles_come_from_entra_groups_and_follow_changes_after_the_cache_expires(
        gh: Harness, graph: FakeGraph) -> None:
    reply = await gh.user("Priya Shah").says("safeguarding check")
    assert reply.texts == ["Priya, you are on the safeguarding team."]
    assert graph.tokens_issued >= 1  # client-credentials tokens from the fake authority (401 without one)
    check = graph.requests_to(f"/users/{PRIYA}/checkMemberGroups", "POST")
    assert check and set(check[0].body["groupIds"]) == {group_id(r) for r in Role}

    refused = await gh.user("Leah Brooks").says("safeguarding check")
    assert "not available to you" in refused.texts[0]

    graph.remove_member(group_id(Role.DSL), PRIYA)
    still_cached = await gh.user("Priya Shah").says("safeguarding check")
    assert still_cached.texts == ["Priya, you are on the safeguarding team."]
    gh.clock.advance(seconds=gh.settings.graph_cache_seconds + 1)
    after = await gh.user("Priya Shah").says("safeguarding check")
    assert "not available to you" in after.texts[0]


async def test_people_holding_a_role_are_read_across_pages(gh: Harness, graph: FakeGraph) -> None:
    staff = await directory(gh).people_with_role(SCHOOL, Role.STAFF)
    expected = sorted(p.name for p in gh.config.schools[0].people if Role.STAFF in p.roles)
    assert [p.name for p in staff] == expected
    pages = graph.requests_to(f"/groups/{group_id(Role.STAFF)}/transitiveMembers")
    assert len(pages) == 4 and [p.query.get("$skiptoken") for p in pages] == [None, "2", "4", "6"]
    assert pages[0].query["$select"] == "id,displayName,mail,userPrincipalName"

    deputies = await directory(gh).people_with_role(SCHOOL, Role.DEPUTY_DSL)
    assert [p.name for p in deputies] == ["Chris Doyle", "Tom Reed"]
    assert deputies[1].roles == frozenset({Role.STAFF, Role.DEPUTY_DSL})
    everyone = await directory(gh).everyone(SCHOOL)
    assert len(everyone) == len(gh.config.schools[0].people)


async def test_line_manager_and_having_none(gh: Harness, graph: FakeGraph) -> None:
    manager = await directory(gh).line_manager(SCHOOL, LEAH)
    assert manager is not None and manager.name == "Grace Okafor"
    assert Role.HEADTEACHER in manager.roles
    assert await directory(gh).line_manager(SCHOOL, RUTH) is None
    assert [s.status for s in graph.requests_to(f"/users/{RUTH}/manager")] == [404]
    assert await directory(gh).line_manager(SCHOOL, RUTH) is None
    assert len(graph.requests_to(f"/users/{RUTH}/manager")) == 1  # "no manager" is an answer, and it is cached


async def test_find_by_email_is_case_insensitive_and_safe_with_quotes(gh: Harness, graph: FakeGraph) -> None:
    tom = await directory(gh).find_by_email(SCHOOL, "  Tom.Reed@Oakfield.example ")
    assert tom is not None and tom.id == TOM and Role.DEPUTY_DSL in tom.roles
    assert await directory(gh).find_by_email(SCHOOL, "o'brien@oakfield.example") is None
    filters = [s.query["$filter"] for s in graph.requests_to("/v1.0/users", "GET") if "$filter" in s.query]
    assert "mail eq 'o''brien@oakfield.example' or userPrincipalName eq 'o''brien@oakfield.example'" in filters


# --- throttling and outages ----------------------------------------------------------------------------------------

async def test_a_short_retry_after_is_waited_out_within_the_turn(gh: Harness, graph: FakeGraph) -> None:
    graph.fail_next(429, path="checkMemberGroups", headers={"Retry-After": "0"})
    reply = await gh.user("Tom Reed").says("safeguarding check")
    assert reply.texts == ["Tom, you are on the safeguarding team."]
    assert [s.status for s in graph.requests_to(f"/users/{TOM}/checkMemberGroups")] == [429, 200]


async def test_throttling_is_honoured_until_retry_after_and_never_grants_a_role(
        gh: Harness, graph: FakeGraph) -> None:
    graph.fail_next(429, path="checkMemberGroups", headers={"Retry-After": "120"})
    first = await gh.user("Priya Shah").says("safeguarding check")
    assert "not available to you" in first.texts[0]
    again = await gh.user("Priya Shah").says("safeguarding check")
    assert "not available to you" in again.texts[0]
    assert len(graph.requests_to("/checkMemberGroups")) == 1  # nothing was asked while Graph said to wait

    gh.clock.advance(seconds=121)
    later = await gh.user("Priya Shah").says("safeguarding check")
    assert later.texts == ["Priya, you are on the safeguarding team."]


async def test_a_graph_outage_uses_the_last_known_answer(gh: Harness, graph: FakeGraph) -> None:
    first = await gh.user("Priya Shah").says("safeguarding check")
    assert first.texts == ["Priya, you are on the safeguarding team."]
    gh.clock.advance(seconds=gh.settings.graph_cache_seconds + 1)
    graph.fail_next(503, times=50)
    during = await gh.user("Priya Shah").says("safeguarding check")
    assert during.texts == ["Priya, you are on the safeguarding team."]
    assert 503 in [s.status for s in graph.requests_to(f"/users/{PRIYA}/checkMemberGroups")]
    staff = await directory(gh).line_manager(SCHOOL, PRIYA)
    assert staff is None  # never looked up before the outage: no answer rather than a guess


async def test_an_outage_with_nothing_cached_means_no_roles(gh: Harness, graph: FakeGraph) -> None:
    graph.fail_next(503, times=50)
    reply = await gh.user("Priya Shah").says("safeguarding check")
    assert "not available to you" in reply.texts[0]
    tries = graph.requests_to(f"/users/{PRIYA}/checkMemberGroups")
    assert 1 < len(tries) <= 3 and {s.status for s in tries} == {503}  # a few quick retries, then it stops
    help_card = (await gh.user("Priya Shah").says("help")).card
    assert not help_card.get("actions")
    assert len(graph.requests_to(f"/users/{PRIYA}/checkMemberGroups")) == len(tries)  # backing off now


async def test_static_directory_is_still_the_default(harness: Harness) -> None:
    assert isinstance(harness.parts.directory, StaticDirectory)
