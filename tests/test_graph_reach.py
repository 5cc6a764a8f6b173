"""Reaching people who never opened the app (install through Graph, then a 1:1 chat) and noticing new staff."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.clock import SettableClock
from bot.people import Role
from tests.support.fake_graph import FakeGraph
from tests.support.graph_harness import CATALOG_APP_ID, GRACE, LEAH, SCHOOL, demo_graph, graph_harness, group_id
from tests.support.harness import Harness

NIA = "00000000-0000-4000-8000-000000000101"
OWEN = "00000000-0000-4000-8000-000000000102"


@pytest.fixture
async def graph(tmp_path: Path) -> AsyncIterator[FakeGraph]:
    async with demo_graph(tmp_path / "graph-tls") as fake:
        yield fake


@pytest.fixture
async def gh(database_url: str, clock: SettableClock, tmp_path: Path, graph: FakeGraph) -> AsyncIterator[Harness]:
    async with graph_harness(database_url, clock, tmp_path / "var", graph) as harness:
        yield harness


async def queue_message(harness: Harness, person_id: str, text: str) -> None:
    async with harness.parts.uow() as uow:
        await uow.notify.to_person(SCHOOL, person_id, text=text)


def texts_to(harness: Harness, fragment: str) -> list:
    return [s for s in harness.connector.sent if fragment in s.text]


async def test_a_person_who_never_opened_the_app_is_reached_by_installing_it_first(
    gh: Harness, graph: FakeGraph
) -> None:
    await queue_message(gh, LEAH, "Your filter request for a lesson site was approved.")
    await gh.run_due_work()
    sent = await gh.connector.wait_for(lambda sent: [s for s in sent if "was approved" in s.text])

    installs = graph.requests_to(f"/users/{LEAH}/teamwork/installedApps", "POST")
    assert [s.status for s in installs] == [201]
    bind = installs[0].body["teamsApp@odata.bind"]
    assert bind == f"{graph.base_url}/appCatalogs/teamsApps/{CATALOG_APP_ID}"
    assert len(gh.connector.created) == 1
    created = gh.connector.created[0]
    assert created["members"] == [{"id": LEAH}] and created["channelData"]["tenant"]["id"] == gh.school.tenant_id
    assert created["isGroup"] is False
    assert sent[0].conversation_id.startswith("a:created-")
    rows = await gh.parts.claims.list(kind="send")
    assert [r.status for r in rows] == ["done"]

    await queue_message(gh, LEAH, "Your second request was approved too.")
    await gh.run_due_work()
    second = await gh.connector.wait_for(lambda sent: [s for s in sent if "second request" in s.text])
    assert second[0].conversation_id == sent[0].conversation_id
    assert len(graph.requests_to("/teamwork/installedApps")) == 1  # the saved conversation is used from now on


async def test_an_app_already_installed_for_the_person_is_fine(gh: Harness, graph: FakeGraph) -> None:
    graph.installed[LEAH] = {CATALOG_APP_ID}
    await queue_message(gh, LEAH, "A message for Leah.")
    await gh.run_due_work()
    await gh.connector.wait_for(lambda sent: [s for s in sent if s.text == "A message for Leah."])
    assert [s.status for s in graph.requests_to("/teamwork/installedApps")] == [409]


async def test_a_refused_installation_is_recorded_on_the_outbox_row(gh: Harness, graph: FakeGraph) -> None:
    graph.fail_next(403, path="/teamwork/installedApps")
    await queue_message(gh, LEAH, "This cannot be delivered.")
    await gh.run_due_work()
    [row] = await gh.parts.claims.list(kind="send")
    assert row.status == "failed"
    assert "refused to install the app" in row.last_error and "403" in row.last_error
    assert not gh.connector.created and not texts_to(gh, "cannot be delivered")


async def test_a_throttled_installation_is_retried_after_retry_after(gh: Harness, graph: FakeGraph) -> None:
    graph.fail_next(429, path="/teamwork/installedApps", headers={"Retry-After": "300"})
    await queue_message(gh, LEAH, "Delivered in the end.")
    await gh.run_due_work()
    [row] = await gh.parts.claims.list(kind="send")
    assert row.status == "pending" and "could not install the app" in row.last_error
    assert row.run_at >= gh.clock.now() + dt.timedelta(seconds=300)

    gh.clock.advance(seconds=301)
    await gh.run_due_work()
    await gh.connector.wait_for(lambda sent: [s for s in sent if s.text == "Delivered in the end."])
    assert [r.status for r in await gh.parts.claims.list(kind="send")] == ["done"]


async def test_new_staff_are_noticed_by_the_delta_query_and_welcomed(gh: Harness, graph: FakeGraph) -> None:
    await gh.run_due_work()  # the first delta query is a baseline: nobody already there is new
    assert not texts_to(gh, "Welcome to")
    assert "$filter" in graph.requests_to("/groups/delta")[0].query

    graph.add_user(NIA, "Nia Jones", "nia.jones@oakfield.example", manager=GRACE)
    graph.add_member(group_id(Role.STAFF), NIA)
    gh.clock.advance(hours=1)
    await gh.run_due_work()
    welcome = await gh.connector.wait_for(lambda sent: [s for s in sent if "Welcome to Oakfield" in s.text])
    assert "type `report`" in welcome[0].text
    assert [s.body for s in graph.requests_to(f"/users/{NIA}/teamwork/installedApps")]
    assert gh.connector.created[-1]["members"] == [{"id": NIA}]
    async with gh.parts.uow() as uow:
        audit = await uow.audit.entries(SCHOOL, "person", NIA)
    assert "directory.new_staff" in [entry.action for entry in audit]

    await gh.restart()  # the delta link is in the database, so a new process carries on where this one stopped
    graph.add_user(OWEN, "Owen Price", "owen.price@oakfield.example")
    graph.add_member(group_id(Role.STAFF), OWEN)
    graph.remove_member(group_id(Role.STAFF), LEAH)
    gh.clock.advance(hours=1)
    await gh.run_due_work()
    await gh.connector.wait_for(lambda sent: len([s for s in sent if "Welcome to" in s.text]) >= 2)
    welcomed = [c["members"][0]["id"] for c in gh.connector.created]
    assert welcomed == [NIA, OWEN]
    assert len(texts_to(gh, "Welcome to")) == 2
    assert "$deltatoken" in graph.requests_to("/groups/delta")[-1].query


async def test_two_messages_for_a_newcomer_install_once_and_share_one_chat(gh: Harness, graph: FakeGraph) -> None:
    await queue_message(gh, LEAH, "First of two.")
    await queue_message(gh, LEAH, "Second of two.")
    await gh.run_due_work()
    sent = await gh.connector.wait_for(lambda sent: len([s for s in sent if "of two." in s.text]) == 2 and sent)
    assert len({s.conversation_id for s in sent if "of two." in s.text}) == 1
    assert len(graph.requests_to("/teamwork/installedApps")) == 1 and len(gh.connector.created) == 1
