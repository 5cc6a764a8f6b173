"""A generated trust of 50 schools and 12,000 staff on two app replicas sharing one PostgreSQL (issue 18, part 2).

Both replicas are `python app.py` in their own processes, on one database, with one fixed fake clock
(ESAFETY_FAKE_NOW) and a recording Bot Connector in this test process. The configuration holds the whole trust: all
50 schools and all 12,000 staff are in the directory and every school's sweep walks all of them. To keep CI near
three minutes, only OWING_PER_SCHOOL members of staff in each school (200 in all) have not yet acknowledged this
year's staff AUP; everyone else's acknowledgement is in the database before the replicas start, as in a trust that
has been running a while. `make bench` (tests/bench_trust.py) sends the AUP to all 12,000.

Monday 23 November 2026: both replicas start together and each person who owes gets one AUP card. Monday 30 November:
both start again; the first reminder (due on the 26th) and every school's weekly digest (due at 07:30) fall due at
once on both. Exactly once each, and nothing the connector received is a duplicate of anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from sqlalchemy import insert, text

from adapters.clock import SettableClock
from bot.aup import Audience, cycle_key, parse_markdown, sha256
from bot.config import AppConfig
from bot.people import Role
from storage.aup import AupAcknowledgementRow, AupDocumentRow
from storage.db import create_engine, session_factory
from storage.migrate import upgrade
from storage.repos import ConversationRefs
from tests.support import pgserver
from tests.support.connector import RecordingConnector, Sent
from tests.support.harness import ROOT
from tests.support.replicas import replica as run_replica
from tests.support.teams import BOT_ID
from tests.support.trust_gen import TrustPerson, TrustSchool, write_trust

SCHOOLS, STAFF, TENANTS = 50, 12_000, 5
OWING_PER_SCHOOL = 4
FIRST_MONDAY = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)
NEXT_MONDAY = dt.datetime(2026, 11, 30, 9, tzinfo=dt.UTC)
STAFF_AUP = ROOT / "config" / "aup" / "staff.md"
CARD_TEXT = "Please read and acknowledge the Acceptable Use Policy."
REMINDER_TEXT = "Reminder: please acknowledge the Acceptable Use Policy."
DIGEST_TITLE = "Weekly online-safety digest"
START_SECONDS = 240  # each replica parses 12,000 people from YAML while the other does the same on 2 cores
WITHIN = 150
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def owing(school: TrustSchool) -> list[TrustPerson]:
    """The last few plain members of staff: they have not acknowledged this year's AUP."""
    return [p for p in school.people if p.post == "staff"][-OWING_PER_SCHOOL:]


async def _seed(url: str, trust: list[TrustSchool], connector_url: str) -> None:
    """Migrate; store this year's staff AUP and everyone's acknowledgement but the owing few; and tell the database
    how to reach the owing few, each school's leaders and its SLT channel (as their first messages would)."""
    engine = create_engine(url)
    try:
        await upgrade(engine)
        parsed = parse_markdown(STAFF_AUP.read_text(encoding="utf-8"))
        published = dt.datetime(2026, 9, 1, 7, tzinfo=dt.UTC)
        cycle = cycle_key(FIRST_MONDAY, "09-01", ZoneInfo("Europe/London"))
        async with engine.begin() as connection:
            await connection.execute(
                insert(AupDocumentRow),
                [
                    dict(
                        school_id=school.id,
                        audience=Audience.STAFF.value,
                        version=parsed.version,
                        title=parsed.title,
                        summary=parsed.summary,
                        text=parsed.text,
                        sha256=sha256(parsed.text),
                        published_at=published,
                        published_by=None,
                    )
                    for school in trust
                ],
            )
            acknowledged = [
                dict(
                    school_id=school.id,
                    person_id=person.id,
                    person_name=person.name,
                    audience=Audience.STAFF.value,
                    version=parsed.version,
                    cycle=cycle,
                    sha256=sha256(parsed.text),
                    read_kcsie=True,
                    agreed=True,
                    acknowledged_at=published + dt.timedelta(days=3),
                )
                for school in trust
                for person in school.people
                if person not in owing(school)
            ]
            await connection.execute(insert(AupAcknowledgementRow), acknowledged)
        refs = ConversationRefs(session_factory(engine), SettableClock(dt.datetime(2026, 11, 1, tzinfo=dt.UTC)))
        base = {"bot": {"id": BOT_ID, "name": "eSafety"}, "channelId": "msteams", "serviceUrl": connector_url}
        for school in trust:
            reachable = [p for p in school.people if p.post != "staff"] + owing(school)
            for person in reachable:
                conversation = {"id": _chat(person), "conversationType": "personal", "tenantId": school.tenant_id}
                user = {"id": f"29:{person.id}", "aadObjectId": person.id}
                await refs.save(school.id, "person", person.id, {**base, "user": user, "conversation": conversation})
            channel = {"id": school.slt_channel, "conversationType": "channel", "tenantId": school.tenant_id}
            await refs.save(
                school.id, "channel", school.slt_channel, {**base, "conversation": channel}, team_id=school.team_id
            )
    finally:
        await engine.dispose()


def _chat(person: TrustPerson) -> str:
    return f"a:personal-{person.id}"


def replica(name: str, url: str, config: Path, now: dt.datetime, var_dir: Path) -> Any:
    return run_replica(name, url, config, now, var_dir, start_seconds=START_SECONDS)


@contextlib.asynccontextmanager
async def both(url: str, config: Path, now: dt.datetime, var_dir: Path) -> AsyncIterator[None]:
    """Replicas a and b, started side by side (each spends a while reading the trust's configuration)."""
    async with contextlib.AsyncExitStack() as stack:
        await asyncio.gather(
            *(stack.enter_async_context(replica(name, url, config, now, var_dir)) for name in ("a", "b"))
        )
        yield


def per_chat(sent: list[Sent], words: str) -> Counter[str]:
    return Counter(s.conversation_id for s in sent if s.op == "send" and s.text == words)


def digests(sent: list[Sent]) -> Counter[str]:
    return Counter(
        s.conversation_id
        for s in sent
        if s.card and s.card.get("body") and s.card["body"][0].get("text") == DIGEST_TITLE
    )


def test_the_generated_trust_is_a_valid_configuration_and_the_same_every_time(tmp_path: Path) -> None:
    first, second = tmp_path / "one.yaml", tmp_path / "two.yaml"
    trust = write_trust(first, SCHOOLS, STAFF, TENANTS)
    write_trust(second, SCHOOLS, STAFF, TENANTS)
    assert first.read_bytes() == second.read_bytes()
    loaded = AppConfig.model_validate(yaml.load(first.read_text(encoding="utf-8"), Loader=_LOADER))
    assert [s.id for s in loaded.schools] == [s.id for s in trust] and len(loaded.schools) == SCHOOLS
    assert sum(len(s.people) for s in loaded.schools) == STAFF
    assert len({p.id for s in loaded.schools for p in s.people}) == STAFF  # nobody is at two schools
    assert len({s.team_id for s in loaded.schools}) == SCHOOLS and len({s.tenant_id for s in loaded.schools}) == TENANTS
    for school in loaded.schools:
        assert all(Role.STAFF in p.roles for p in school.people)
        for role in (Role.HEADTEACHER, Role.DSL, Role.ONLINE_SAFETY_LEAD, Role.TECHNICIAN, Role.DPO):
            assert len([p for p in school.people if role in p.roles]) == 1, (school.id, role)
        assert len([p for p in school.people if Role.DEPUTY_DSL in p.roles]) == 2


async def test_a_50_school_trust_on_two_replicas_sends_each_card_reminder_and_digest_once(
    pg: pgserver.PgServer, tmp_path: Path
) -> None:
    database = f"t_trust_replicas_{os.getpid()}"
    pg.psql(f'CREATE DATABASE "{database}"')
    config = tmp_path / "trust.yaml"
    trust = write_trust(config, SCHOOLS, STAFF, TENANTS)
    assert sum(len(s.people) for s in trust) == STAFF and len({s.tenant_id for s in trust}) == TENANTS
    owed = {_chat(p) for school in trust for p in owing(school)}
    slt = {school.slt_channel for school in trust}
    connector = RecordingConnector()
    await connector.start()
    url = pg.url(database)
    try:
        await _seed(url, trust, connector.url)

        async with both(url, config, FIRST_MONDAY, tmp_path):
            await connector.wait_for(lambda sent: set(per_chat(sent, CARD_TEXT)) >= owed, within=WITHIN)
        async with both(url, config, NEXT_MONDAY, tmp_path):
            await connector.wait_for(
                lambda sent: set(per_chat(sent, REMINDER_TEXT)) >= owed and set(digests(sent)) >= slt, within=WITHIN
            )
        # Both replicas have stopped: nothing more can arrive. Exactly once each, and only to those who owe.
        sent = list(connector.sent)
        assert per_chat(sent, CARD_TEXT) == Counter(dict.fromkeys(owed, 1))
        assert per_chat(sent, REMINDER_TEXT) == Counter(dict.fromkeys(owed, 1))
        assert digests(sent) == Counter(dict.fromkeys(slt, 1))
        # Whatever else fell due (review reminders, say) came once too: no two calls carried the same message.
        same = Counter(
            (s.conversation_id, json.dumps(s.activity.get("attachments"), sort_keys=True), s.text) for s in sent
        )
        assert [key for key, count in same.items() if count > 1] == []

        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                runs = (
                    await connection.execute(
                        text(
                            "SELECT kind, count(*) FROM work_items WHERE kind IN ('aup.remind', 'digest.weekly') "
                            "AND status = 'done' GROUP BY kind"
                        )
                    )
                ).all()
        finally:
            await engine.dispose()
        assert dict(runs) == {"aup.remind": len(owed), "digest.weekly": SCHOOLS}
    finally:
        await connector.stop()
        pg.psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
