"""The demo school on a loopback Microsoft Graph, and the real app with ESAFETY_DIRECTORY=graph pointed at it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from adapters.clock import SettableClock
from bot.actor import Command, Turn
from bot.config import AppConfig, load_config
from bot.people import Role
from bot.wiring import Wiring
from tests.support.connector import RecordingConnector
from tests.support.fake_graph import FakeGraph
from tests.support.harness import DEMO_CONFIG, Harness, test_settings

SCHOOL = "oakfield"
PRIYA = "00000000-0000-4000-8000-000000000001"  # staff, dsl, slt
TOM = "00000000-0000-4000-8000-000000000002"  # staff, deputy_dsl
GRACE = "00000000-0000-4000-8000-000000000003"  # headteacher
RUTH = "00000000-0000-4000-8000-000000000007"  # chair of governors, no line manager
LEAH = "00000000-0000-4000-8000-000000000009"  # staff
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
    wiring.services.add_command(
        Command(
            "safeguarding check",
            "Safeguarding check",
            "check your access",
            _safeguarding_check,
            permission="child.view",
        )
    )  # the DSL and deputies


@contextlib.asynccontextmanager
async def demo_graph(directory: Path, *, page_size: int = 2) -> AsyncIterator[FakeGraph]:
    """A fake Graph holding the demo school's people, managers and role groups (small pages, to force paging)."""
    fake = FakeGraph(directory, page_size=page_size)
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


@contextlib.asynccontextmanager
async def graph_harness(
    database_url: str, clock: SettableClock, var_dir: Path, graph: FakeGraph, **overrides: Any
) -> AsyncIterator[Harness]:
    connector = RecordingConnector()
    await connector.start()
    settings = test_settings(
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
        worker_enabled=False,  # due work runs only when the test says so
    )
    settings = settings.model_copy(update=overrides)
    async with aiohttp.ClientSession() as http:
        harness = Harness(settings, graph_config(), clock, connector, http, features=[safeguarding_probe])
        await harness.start()
        try:
            yield harness
        finally:
            await harness.stop()
            await connector.stop()
