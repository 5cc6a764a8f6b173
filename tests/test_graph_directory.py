"""The Microsoft Graph directory, end to end: the real app, msgraph-sdk and azure-identity against a loopback Graph."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.clock import SettableClock
from adapters.directory_static import StaticDirectory
from adapters.graph_directory import GraphDirectory
from bot.people import Role
from tests.support.fake_graph import FakeGraph, make_certificate
from tests.support.graph_harness import LEAH, PRIYA, RUTH, SCHOOL, TOM, demo_graph, graph_harness, group_id
from tests.support.harness import Harness


@pytest.fixture
async def graph(tmp_path: Path) -> AsyncIterator[FakeGraph]:
    async with demo_graph(tmp_path / "graph-tls") as fake:
        yield fake


@pytest.fixture
async def gh(database_url: str, clock: SettableClock, tmp_path: Path, graph: FakeGraph) -> AsyncIterator[Harness]:
    """The real app with ESAFETY_DIRECTORY=graph pointed at the loopback Graph."""
    async with graph_harness(database_url, clock, tmp_path / "var", graph) as harness:
        yield harness


def directory(harness: Harness) -> GraphDirectory:
    found = harness.parts.directory
    assert isinstance(found, GraphDirectory)
    return found


# --- roles, people, managers, email --------------------------------------------------------------------------------


async def test_roles_come_from_entra_groups_and_follow_changes_after_the_cache_expires(
    gh: Harness, graph: FakeGraph
) -> None:
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


async def test_throttling_is_honoured_until_retry_after_and_never_grants_a_role(gh: Harness, graph: FakeGraph) -> None:
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


async def test_a_slow_graph_never_holds_up_a_turn(
    database_url: str, clock: SettableClock, tmp_path: Path, graph: FakeGraph
) -> None:
    async with graph_harness(database_url, clock, tmp_path / "var", graph, graph_timeout_seconds=0.3) as harness:
        graph.slow_next(1.5, times=10)
        reply = await harness.user("Priya Shah").says("safeguarding check")
        assert "not available to you" in reply.texts[0]  # answered without waiting for Graph, and no role granted


async def test_certificate_credentials_sign_a_client_assertion(
    database_url: str, clock: SettableClock, tmp_path: Path, graph: FakeGraph
) -> None:
    cert, key = make_certificate(tmp_path / "app-cert", rsa_key=True)
    pem = tmp_path / "app-cert" / "app.pem"
    pem.write_bytes(key.read_bytes() + cert.read_bytes())
    async with graph_harness(
        database_url, clock, tmp_path / "var", graph, graph_certificate_path=pem, graph_client_secret=None
    ) as harness:
        reply = await harness.user("Tom Reed").says("safeguarding check")
        assert reply.texts == ["Tom, you are on the safeguarding team."]
    form = graph.token_requests[-1]
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert form["client_id"] == "esafety-graph-app" and "client_secret" not in form


async def test_static_directory_is_still_the_default(harness: Harness) -> None:
    assert isinstance(harness.parts.directory, StaticDirectory)
