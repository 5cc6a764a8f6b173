"""The restore procedure in docs/operations.md, end to end on PostgreSQL: real cases made through the real app, backed
up and restored with the very scripts the document names, then the app on the restored database with the same keys:
the audit trail verifies with `python app.py verify-audit` and the DSL opens the case as before."""

from __future__ import annotations

import asyncio
import glob
import json
import os
import sys
from pathlib import Path

import pytest

from adapters.clock import SettableClock
from storage.audit_trail import CHECKPOINT_FILE
from tests.support import pgserver
from tests.support.harness import DEMO_CONFIG, ROOT, TEST_DATA_KEY, Harness, start_harness
from tests.test_incidents import card_titled, submit_report

pytestmark = pytest.mark.postgres

AUDIT_KEY = "audit-key-for-restore-tests-0123456789abcdefgh"
OPERATIONS = ROOT / "docs" / "operations.md"
# The commands docs/operations.md tells an operator to run, word for word; the tests run these.
BACKUP = "sh scripts/backup.sh"
RESTORE = "sh scripts/restore.sh"
VERIFY = "python app.py verify-audit"
ARCHIVE = f"mv var/{CHECKPOINT_FILE} var/audit-checkpoints.before-restore-"


def _pg_bin() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"))
    assert found, "PostgreSQL's client programs are not installed: run `make test`, which installs them"
    return os.path.dirname(found[-1])


async def _run(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(process.communicate(), 180)
    return process.returncode, out.decode()


async def doc_command(command: str, database_url: str, *args: str) -> tuple[int, str]:
    """A command from docs/operations.md, with DATABASE_URL set as the document says."""
    assert command in OPERATIONS.read_text(), f"docs/operations.md no longer gives `{command}`"
    env = {**os.environ, "PATH": f"{_pg_bin()}:{os.environ.get('PATH', '/usr/bin:/bin')}", "DATABASE_URL": database_url}
    return await _run([*command.split(), *args], env)


async def verify_audit(database_url: str, var_dir: Path, audit_key: str = AUDIT_KEY) -> tuple[int, str]:
    """`python app.py verify-audit` in its own process, with the keys, var dir and config the app ran with."""
    assert VERIFY in OPERATIONS.read_text()
    env = {
        **os.environ,
        "ESAFETY_DEV": "1",
        "DATABASE_URL": database_url,
        "ESAFETY_DATA_KEY": TEST_DATA_KEY,
        "ESAFETY_AUDIT_KEY": audit_key,
        "ESAFETY_VAR_DIR": str(var_dir),
        "ESAFETY_CONFIG": str(DEMO_CONFIG),
        "ESAFETY_LOG_LEVEL": "WARNING",
    }
    return await _run([sys.executable, *VERIFY.split()[1:]], env)


def _written_whole(dump: Path) -> bool:
    """The backup has its final name and no half-written file is left beside it."""
    return dump.stat().st_size > 0 and not dump.with_name(f"{dump.name}.partial").exists()


def _app(database_url: str, clock: SettableClock, var_dir: Path):  # noqa: ANN202
    return start_harness(database_url=database_url, clock=clock, var_dir=var_dir, audit_key=AUDIT_KEY)


async def _dsl_opens(harness: Harness, reference: str) -> str:
    """The case card as the DSL sees it when they ask for the case in a 1:1 chat."""
    return json.dumps(card_titled(await harness.user("Priya Shah").says(f"case {reference}"), reference))


@pytest.fixture
def restored_url(pg: pgserver.PgServer, postgres_url: str):  # noqa: ANN201
    """The URL of a database that does not exist yet: restore.sh creates it; dropped afterwards."""
    name = postgres_url.rsplit("/", 1)[1][:50] + "_restored"
    yield pg.url(name)
    pg.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_a_backup_restores_into_a_fresh_database_where_the_trail_verifies_and_the_dsl_opens_the_case(
    postgres_url: str, restored_url: str, clock: SettableClock, tmp_path: Path
) -> None:
    var_dir = tmp_path / "var"
    async with _app(postgres_url, clock, var_dir) as live:
        reference = await submit_report(live.user("Leah Brooks"), what="Threats in a group chat")
        other = await submit_report(live.user("Tom Reed"), what="A fake account using a pupil's photo")
        card = json.loads(await _dsl_opens(live, reference))
        token = card["refresh"]["action"]["data"]["token"]
        owned = await live.user("Priya Shah").executes("incident.own", {"token": token, "version": 1})
        assert "Priya Shah" in json.dumps(owned.invoke_card)
    # The app is stopped, as the document's restore drill says: the backup is then the whole story.
    dump = tmp_path / "esafety.dump"
    code, output = await doc_command(BACKUP, postgres_url, str(dump))
    assert code == 0, output
    assert _written_whole(dump)

    code, output = await doc_command(RESTORE, restored_url, str(dump))
    assert code == 0, output
    async with _app(restored_url, clock, var_dir) as restored:
        ready = await (await restored.http.get(f"{restored.url}/readyz")).json()
        assert ready["status"] == "ready" and ready["audit"] == "intact"
        code, output = await verify_audit(restored_url, var_dir)
        assert code == 0, output
        assert "intact: school oakfield" in output
        seen = await _dsl_opens(restored, reference)
        assert "Threats in a group chat" in seen and "Priya Shah" in seen  # decrypted, and still owned by her
        assert "A fake account using a pupil" in await _dsl_opens(restored, other)

    # Without the audit key the restored trail cannot be trusted: the keys are part of the backup.
    code, output = await verify_audit(restored_url, var_dir, audit_key="a-different-audit-key-0123456789abcdefgh")
    assert code == 1 and "broken: school oakfield" in output
    # And the script never restores over a database that holds data.
    code, output = await doc_command(RESTORE, restored_url, str(dump))
    assert code == 1 and "already has tables" in output


async def test_restoring_an_older_backup_shows_the_lost_entries_until_the_checkpoints_are_set_aside(
    postgres_url: str, restored_url: str, clock: SettableClock, tmp_path: Path
) -> None:
    var_dir = tmp_path / "var"
    dump = tmp_path / "nightly.dump"
    async with _app(postgres_url, clock, var_dir) as live:
        kept = await submit_report(live.user("Leah Brooks"), what="Threats in a group chat")
        code, output = await doc_command(BACKUP, postgres_url, str(dump))  # while the app serves, as scheduled
        assert code == 0, output
        lost = await submit_report(live.user("Tom Reed"), what="A fake account using a pupil's photo")
        await live.restart()  # start-up checks the trail and writes a checkpoint past the backup

    code, output = await doc_command(RESTORE, restored_url, str(dump))
    assert code == 0, output
    code, output = await verify_audit(restored_url, var_dir)
    assert code == 1 and "are gone" in output  # the restore is visible, as any deletion would be

    # The document's step: keep the old checkpoints as the record of what the restore lost, then start afresh.
    assert ARCHIVE in OPERATIONS.read_text()
    (var_dir / CHECKPOINT_FILE).rename(var_dir / "audit-checkpoints.before-restore-2026-11-23.log")
    code, output = await verify_audit(restored_url, var_dir)
    assert code == 0, output
    async with _app(restored_url, clock, var_dir) as restored:
        assert "Threats in a group chat" in await _dsl_opens(restored, kept)
        missing = await restored.user("Priya Shah").says(f"case {lost}")
        assert "A fake account" not in missing.everything
