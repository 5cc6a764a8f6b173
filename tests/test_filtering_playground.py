"""The `filter` conversation in the Microsoft 365 Agents Playground (a Teams-like client) driven by headless Chromium.

The real app runs on loopback (SQLite); the playground is its client and its Bot Connector for this chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from adapters.clock import SettableClock
from tests.conftest import START
from tests.support.harness import ROOT, Harness
from tests.support.squid import free_port, start_filter_harness

PLAYGROUND = ROOT / "tools" / "playground"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
MISSING = (
    not (PLAYGROUND / "node_modules" / ".bin" / "agentsplayground").exists()
    or shutil.which("node") is None
    or not Path(CHROMIUM).exists()
)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        MISSING, reason="the Agents Playground or Chromium is not installed: run scripts/system-deps.sh"
    ),
]
LEAH_ID = "00000000-0000-4000-8000-000000000009"


def _playground_config(harness: Harness, path: Path, current_user_id: str = LEAH_ID) -> None:
    """Mock Teams data: the current user is someone of the demo school, by default Leah Brooks (the playground
    wants five other users)."""
    school = harness.school
    me = next(p for p in school.people if p.id == current_user_id)
    first, last = me.name.split()[0], me.name.split()[-1]
    people = [p for p in school.people if p.id != current_user_id][:5]
    users = "".join(
        f"  - id: user-{n}\n    name: {p.name}\n    userPrincipleName: {p.email}\n    aadObjectId: {p.id}\n"
        f"    givenName: {p.name.split()[0]}\n    surname: {p.name.split()[-1]}\n    email: {p.email}\n"
        for n, p in enumerate(people, start=1)
    )
    path.write_text(
        f'version: "0.1.1"\ntenantId: {school.tenant_id}\nbot:\n  id: 00000000-0000-0000-0000-00000000000011\n'
        f"  name: eSafety\ncurrentUser:\n  id: user-0\n  name: {me.name}\n"
        f"  userPrincipleName: {me.email}\n  aadObjectId: {me.id}\n  givenName: {first}\n"
        f"  surname: {last}\n  email: {me.email}\nusers:\n{users}"
        f"personalChat:\n  id: personal-chat-{first.lower()}\ngroupChat:\n  id: group-chat-1\n  name: Group Chat\n"
        f"team:\n  id: team-id\n  name: My Team\n  aadGroupId: 00000000-0000-0000-0000-000000000031\n"
        f"  channels:\n    - id: channel-general-id\n      name: General\n"
    )


@contextlib.asynccontextmanager
async def running_playground(harness: Harness, workdir: Path, *, current_user_id: str = LEAH_ID) -> AsyncIterator[str]:
    port = free_port()
    config = workdir / "playground.yml"
    _playground_config(harness, config, current_user_id)
    env = {
        **os.environ,
        "BOT_URL": f"{harness.url}/api/messages",
        "PLAYGROUND_PORT": str(port),
        "PLAYGROUND_CONFIG": str(config),
        "PLAYGROUND_LOG": str(workdir / "playground.log"),
    }
    log = os.open(workdir / "playground.out", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        process = await asyncio.create_subprocess_exec(
            "bash", str(ROOT / "scripts" / "playground.sh"), env=env, stdout=log, stderr=log, start_new_session=True
        )
    finally:
        os.close(log)
    url = f"http://localhost:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):  # up to about 30 s for node to start
                if process.returncode is not None:
                    raise RuntimeError("the playground exited; see playground.out")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{port}/_debug/ping") as response:
                        if (await response.text()) == "pong":
                            break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("the playground did not start")
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def drive(url: str, workdir: Path, *steps: str) -> str:
    """Run tools/playground/drive.mjs with CLI steps; fail the test with its output if any step fails."""
    process = await asyncio.create_subprocess_exec(
        "node",
        str(PLAYGROUND / "drive.mjs"),
        "--url",
        url,
        "--screenshots",
        str(workdir / "shots"),
        "--timeout",
        "20000",
        *steps,
        cwd=str(PLAYGROUND),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "CHROMIUM_PATH": CHROMIUM},
    )
    out, _ = await asyncio.wait_for(process.communicate(), 240)
    text = out.decode("utf-8", "replace")
    assert process.returncode == 0, text
    return text


@pytest.fixture
async def sqlite_harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with start_filter_harness(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'esafety.db'}",
        clock=SettableClock(START),
        var_dir=tmp_path / "var",
    ) as running:
        yield running


async def test_a_teacher_asks_for_an_unblock_in_the_playground(sqlite_harness: Harness, tmp_path: Path) -> None:
    harness = sqlite_harness
    async with running_playground(harness, tmp_path) as url:
        await drive(
            url,
            tmp_path,
            "--send",
            "filter",
            "--expect",
            "What would you like to do?",
            "--click",
            "Unblock a site",
            "--expect",
            "Which site?",
            "--send",
            "bbc co uk",
            "--expect",
            "no spaces",
            "--screenshot",
            "filter-site-problem",
            "--send",
            "https://www.bbc.co.uk/bitesize",
            "--expect",
            "Who is it for?",
            "--click",
            "Chosen year groups",
            "--expect",
            "Which year groups?",
            "--send",
            "Year 5, Year 6",
            "--expect",
            "Why is it needed?",
            "--send",
            "Year 6 science lesson on the water cycle",
            "--expect",
            "When is the lesson?",
            "--send",
            "tomorrow",
            "--expect",
            "temporary or permanent",
            "--click",
            "Temporary, until a date and time",
            "--expect",
            "Until when?",
            "--send",
            "Tuesday 15:30",
            "--expect",
            "Have you previewed",
            "--click",
            "Yes, I have previewed it",
            "--expect",
            "Check your request",
            "--click",
            "Send request",
            "--expect",
            "I am sending it to the filtering approvers",
        )
    reply = await harness.user("Sam Patel").says("filter FR-0001")
    shown = json.dumps(reply.cards)
    assert "Leah Brooks" in shown and "Year 5, Year 6" in shown and "Tue 24 Nov 2026, 15:30" in shown
    assert "Waiting for approval" in shown
