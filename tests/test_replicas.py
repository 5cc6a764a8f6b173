"""Two real app processes on one PostgreSQL: no reminder is sent twice, and one replica alone catches up.

Each replica is `python app.py` in its own process, sharing the database and a fixed fake clock
(ESAFETY_FAKE_NOW), and sending to a recording Bot Connector in this test process.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from sqlalchemy import text

from adapters.clock import SettableClock
from bot.config import load_config
from storage.db import create_engine, session_factory
from storage.migrate import upgrade
from storage.repos import ConversationRefs
from tests.support import pgserver
from tests.support.connector import RecordingConnector, Sent
from tests.support.harness import DEMO_CONFIG
from tests.support.replicas import replica as run_replica
from tests.support.teams import BOT_ID

SCHOOL = load_config(DEMO_CONFIG).schools[0]
SLT_CHANNEL = SCHOOL.channels.slt
PEOPLE = {p.name: p.id for p in SCHOOL.people}


async def _save_references(url: str, connector_url: str) -> None:
    """Migrate, and tell the database how to reach everyone and the SLT channel (as their first messages would)."""
    engine = create_engine(url)
    try:
        await upgrade(engine)
        refs = ConversationRefs(session_factory(engine), SettableClock(dt.datetime(2026, 11, 1, tzinfo=dt.UTC)))
        base = {"bot": {"id": BOT_ID, "name": "eSafety"}, "channelId": "msteams", "serviceUrl": connector_url}
        for person in SCHOOL.people:
            await refs.save(
                SCHOOL.id,
                "person",
                person.id,
                {
                    **base,
                    "user": {"id": f"29:{person.id}", "aadObjectId": person.id},
                    "conversation": {
                        "id": f"a:personal-{person.id}",
                        "conversationType": "personal",
                        "tenantId": SCHOOL.tenant_id,
                    },
                },
                name=person.name,
            )
        await refs.save(
            SCHOOL.id,
            "channel",
            SLT_CHANNEL,
            {**base, "conversation": {"id": SLT_CHANNEL, "conversationType": "channel", "tenantId": SCHOOL.tenant_id}},
            team_id=SCHOOL.team_id,
        )
    finally:
        await engine.dispose()


def replica(name: str, url: str, now: dt.datetime, var_dir: Path) -> Any:
    return run_replica(name, url, DEMO_CONFIG, now, var_dir)


def reminders(sent: list[Sent], name: str, words: str) -> int:
    conversation = f"a:personal-{PEOPLE[name]}"
    return sum(1 for s in sent if s.conversation_id == conversation and s.card and words in json.dumps(s.card))


def digests(sent: list[Sent]) -> int:
    return sum(
        1
        for s in sent
        if s.conversation_id == SLT_CHANNEL
        and s.card
        and s.card.get("body")
        and s.card["body"][0].get("text") == "Weekly online-safety digest"
    )


async def test_two_replicas_send_each_reminder_once_and_one_alone_catches_up(
    pg: pgserver.PgServer, tmp_path: Path
) -> None:
    database = f"t_replicas_{os.getpid()}"
    pg.psql(f'CREATE DATABASE "{database}"')
    connector = RecordingConnector()
    await connector.start()
    url = pg.url(database)
    try:
        await _save_references(url, connector.url)
        # Replica a starts on Monday 23 November 2026 and seeds the review calendar and the digest schedule.
        async with replica("a", url, dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC), tmp_path):
            pass
        # Down until Monday 14 December: the 7-day reminder (Friday 11th) and two Monday digests fell due meanwhile.
        async with replica("a", url, dt.datetime(2026, 12, 14, 11, tzinfo=dt.UTC), tmp_path):
            await connector.wait_for(
                lambda sent: (
                    reminders(sent, "Ruth Evans", "Incident log review") == 1
                    and reminders(sent, "Ben Carter", "Incident log review") == 1
                    and digests(sent) == 1
                ),
                within=60,
            )
        assert reminders(connector.sent, "Ruth Evans", "due in 4 days") == 1
        assert reminders(connector.sent, "Ben Carter", "due in 4 days") == 1
        assert digests(connector.sent) == 1  # one catch-up digest, not one per missed Monday

        # Both replicas together on Monday 2 August 2027: the 30-day reminders of three annual reviews, the
        # incident-log review's overdue notice and a digest are all due at once.
        when = dt.datetime(2027, 8, 2, 9, tzinfo=dt.UTC)
        async with replica("a", url, when, tmp_path), replica("b", url, when, tmp_path):
            await connector.wait_for(
                lambda sent: (
                    reminders(sent, "Sam Patel", "due in 30 days") >= 3
                    and reminders(sent, "Grace Okafor", "Overdue: Incident log review") >= 1
                    and digests(sent) >= 2
                ),
                within=60,
            )
        # Both processes have stopped: nothing more can arrive. Exactly once each.
        assert reminders(connector.sent, "Sam Patel", "due in 30 days") == 3
        for label in (
            "Online-safety policy review",
            "Filtering and monitoring review",
            "Acceptable Use Policy renewal",
        ):
            assert reminders(connector.sent, "Sam Patel", f"Reminder: {label} is due in 30 days") == 1
        assert reminders(connector.sent, "Grace Okafor", "Overdue: Incident log review") == 1
        assert digests(connector.sent) == 2
        assert reminders(connector.sent, "Ruth Evans", "Incident log review") == 1  # no late "due in -227 days"
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                runs = (
                    await connection.execute(
                        text(
                            "SELECT kind, status, attempts FROM work_items WHERE kind IN "
                            "('review.remind', 'review.overdue', 'digest.weekly') AND status <> 'pending'"
                        )
                    )
                ).all()
        finally:
            await engine.dispose()
        assert runs and all(status == "done" and attempts == 1 for _, status, attempts in runs), runs
    finally:
        await connector.stop()
        pg.psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
