"""Report a concern in the Microsoft 365 Agents Playground, a Teams-like client, driven by headless Chromium.

Everything is real and on loopback: `python app.py` in local dev mode on a throwaway SQLite database with the demo
school, the playground started by scripts/playground.sh as its client and Bot Connector, and tools/playground/drive.mjs
(Playwright in Debian's Chromium) typing and reading the page like a person. The playground's mock tenant is set up as
the demo school: the current user is Leah Brooks (staff), and its team is the school's staff team with the
safeguarding channel that config/demo.yaml names as the DSL channel. Screenshots go to var/screenshots/playground/.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from bot.config import load_config
from bot.people import Role
from storage.crypto import new_key_text

ROOT = Path(__file__).resolve().parents[1]
PLAYGROUND = ROOT / "tools" / "playground"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "var" / "screenshots" / "playground"
PYTHON = sys.executable

SCHOOL = load_config(ROOT / "config" / "demo.yaml").schools[0]
REPORTER_ID = "00000000-0000-4000-8000-000000000009"  # Leah Brooks, staff
TEAM_NAME = "Oakfield Staff"
DSL_CHANNEL_NAME = "Safeguarding"


def _require_tools() -> None:
    """Fail, never skip, when the real client cannot run: the suite must say what to install."""
    if shutil.which("node") is None:
        pytest.fail("node is not installed: run `make system-deps` (scripts/system-deps.sh)")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not at {CHROMIUM}: run `make system-deps` (scripts/system-deps.sh)")
    if not (PLAYGROUND / "node_modules" / ".bin" / "agentsplayground").exists():
        pytest.fail("the Agents Playground is not installed: run `make system-deps` (scripts/system-deps.sh)")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _person_yaml(person, user_id: str, first: str, rest: str) -> str:  # noqa: ANN001
    """One playground user: `first` prefixes the id line (e.g. "  - "), `rest` the other lines."""
    given, family = person.name.split()[0], person.name.split()[-1]
    return (
        f"{first}id: {user_id}\n{rest}name: {person.name}\n{rest}userPrincipleName: {person.email}\n"
        f"{rest}aadObjectId: {person.id}\n{rest}givenName: {given}\n{rest}surname: {family}\n"
        f"{rest}email: {person.email}\n"
    )


DEMO_CONFIG = ROOT / "tools" / "playground" / ".m365agentsplayground.yml"
DEMO_USER_ID = "00000000-0000-4000-8000-000000000001"  # Priya Shah: staff, DSL and SLT, for `make run`


def playground_config(current_user_id: str = REPORTER_ID) -> str:
    """Mock Teams data shaped like the demo school: its tenant, its staff team and its DSL channel.

    The playground allows one channel besides its own General, so the DSL channel is the one it gets.
    """
    me = next(p for p in SCHOOL.people if p.id == current_user_id)
    others = [p for p in SCHOOL.people if p.id != current_user_id][:5]  # the playground wants five other users
    users = "".join(_person_yaml(p, f"user-{n}", "  - ", "    ") for n, p in enumerate(others, start=1))
    channels = f'    - id: "{SCHOOL.channels.dsl}"\n      name: {DSL_CHANNEL_NAME}\n'
    return (
        f"# Generated from config/demo.yaml by tests/test_playground_e2e.py (playground_config); a test keeps\n"
        f"# them in step. The playground's mock tenant as the demo school, signed in as {me.name}.\n"
        f'version: "0.1.1"\ntenantId: {SCHOOL.tenant_id}\n'
        f"bot:\n  id: 00000000-0000-0000-0000-00000000000011\n  name: eSafety\n"
        f"currentUser:\n{_person_yaml(me, 'user-0', '  ', '  ')}users:\n{users}"
        f"personalChat:\n  id: personal-chat\ngroupChat:\n  id: group-chat-1\n  name: Group Chat\n"
        f'team:\n  id: "{SCHOOL.team_id}"\n  name: {TEAM_NAME}\n'
        f"  aadGroupId: 00000000-0000-0000-0000-000000000031\n  channels:\n{channels}"
    )


def test_make_run_uses_a_playground_shaped_like_the_demo_school() -> None:
    """`make run` (scripts/playground.sh) loads tools/playground/.m365agentsplayground.yml: it must match demo.yaml."""
    assert DEMO_CONFIG.read_text(encoding="utf-8") == playground_config(DEMO_USER_ID), (
        "tools/playground/.m365agentsplayground.yml is out of step with config/demo.yaml: regenerate it with "
        "`.venv/bin/python -c 'from tests.test_playground_e2e import write_demo_config; write_demo_config()'`"
    )
    demo_user = next(p for p in SCHOOL.people if p.id == DEMO_USER_ID)
    assert Role.DSL in demo_user.roles


def write_demo_config() -> None:
    DEMO_CONFIG.write_text(playground_config(DEMO_USER_ID), encoding="utf-8")


async def _wait_until(url: str, ok, process: asyncio.subprocess.Process, what: str, log: Path) -> None:  # noqa: ANN001
    async with aiohttp.ClientSession() as http:
        for _ in range(600):  # up to about a minute on a busy machine
            if process.returncode is not None:
                pytest.fail(f"{what} exited with {process.returncode}:\n{_tail(log)}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                    if ok(response.status, await response.text()):
                        return
            await asyncio.sleep(0.1)
    pytest.fail(f"{what} did not start:\n{_tail(log)}")


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), 20)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


async def _spawn(args: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> asyncio.subprocess.Process:
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        return await asyncio.create_subprocess_exec(
            *args, cwd=str(cwd), env=env, stdout=out, stderr=out, start_new_session=True
        )
    finally:
        os.close(out)


def bot_env(workdir: Path) -> dict[str, str]:
    """Local dev mode (no app id: the playground sends no token) on a SQLite file of this test's own."""
    key = workdir / "data.key"
    if not key.exists():
        key.write_text(new_key_text(), encoding="utf-8")
    env = {
        **os.environ,
        "ESAFETY_DEV": "1",
        "HOST": "127.0.0.1",
        "DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'esafety.db'}",
        "ESAFETY_DATA_KEY": key.read_text(),
        "ESAFETY_VAR_DIR": str(workdir / "var"),
        "ESAFETY_CONFIG": str(ROOT / "config" / "demo.yaml"),
        "ESAFETY_WORKER_POLL_SECONDS": "0.5",
        "MicrosoftAppId": "",
        "MicrosoftAppPassword": "",
    }
    env.pop("ESAFETY_FAKE_NOW", None)
    return env


@contextlib.asynccontextmanager
async def running_bot(workdir: Path, *, worker: bool, name: str) -> AsyncIterator[str]:
    """`python app.py serve`; with worker=False it answers chats but leaves proactive sends queued in the database."""
    port = _free_port()
    env = {**bot_env(workdir), "PORT": str(port), "ESAFETY_WORKER": "1" if worker else "0", "ESAFETY_REPLICA": name}
    log = workdir / f"{name}.log"
    migrate = await _spawn([PYTHON, "app.py", "migrate"], env, log)
    assert await migrate.wait() == 0, _tail(log)
    process = await _spawn([PYTHON, "app.py", "serve"], env, log)
    try:
        await _wait_until(f"http://127.0.0.1:{port}/readyz", lambda status, _: status == 200, process, "the bot", log)
        yield f"http://127.0.0.1:{port}/api/messages"
    finally:
        await _stop(process)


@contextlib.asynccontextmanager
async def running_playground(bot_url: str, workdir: Path) -> AsyncIterator[str]:
    """The Agents Playground started by the repo's own script, with the demo school's mock tenant."""
    port = _free_port()
    config = workdir / "playground.yml"
    config.write_text(playground_config(REPORTER_ID), encoding="utf-8")
    env = {
        **os.environ,
        "BOT_URL": bot_url,
        "PLAYGROUND_PORT": str(port),
        "PLAYGROUND_CONFIG": str(config),
        "PLAYGROUND_LOG": str(workdir / "playground.log"),
        "TEAMSAPPTESTER_BROWSER": "none",
    }
    log = workdir / "playground.out"
    process = await _spawn(["bash", str(ROOT / "scripts" / "playground.sh")], env, log)
    try:
        await _wait_until(
            f"http://127.0.0.1:{port}/_debug/ping", lambda _, text: text == "pong", process, "the playground", log
        )
        yield f"http://localhost:{port}"
    finally:
        await _stop(process)


async def drive(url: str, *steps: str, on_line: Callable[[str], Awaitable[None]] | None = None) -> str:
    """Run tools/playground/drive.mjs with CLI steps; fail the test with its output if any step fails.

    `on_line` sees each line drive.mjs prints as it prints it (e.g. `[drive] conversation "..."` once a
    conversation is open on the page), so the test can act at that point of the script.
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    process = await asyncio.create_subprocess_exec(
        "node",
        str(PLAYGROUND / "drive.mjs"),
        "--url",
        url,
        "--screenshots",
        str(SCREENSHOTS),
        "--timeout",
        "30000",
        *steps,
        cwd=str(PLAYGROUND),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "CHROMIUM_PATH": CHROMIUM},
    )

    async def read() -> str:
        lines = []
        assert process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            lines.append(line)
            if on_line is not None:
                await on_line(line)
        await process.wait()
        return "\n".join(lines)

    try:
        text = await asyncio.wait_for(read(), 400)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, text
    return text


@pytest.mark.slow
async def test_a_teacher_reports_a_concern_and_the_dsl_channel_gets_the_card(tmp_path: Path) -> None:
    """From `report` to the reference number in four turns (two cards and Submit), then the DSL card in the channel.

    The playground shows a proactive post only in the conversation the page has open when it arrives, and a page
    shows one conversation at a time. So the bot that talks to Leah runs without its work runner (the channel card
    waits in the outbox, as it would if the connector were slow), and a second replica with a work runner is
    started once a fresh page has the channel open: that replica delivers the queued card, which appears live.
    """
    _require_tools()
    channel = f"{TEAM_NAME} - {DSL_CHANNEL_NAME}"
    async with contextlib.AsyncExitStack() as stack:
        bot_url = await stack.enter_async_context(running_bot(tmp_path, worker=False, name="front"))
        url = await stack.enter_async_context(running_playground(bot_url, tmp_path))
        reported = await drive(
            url,
            # Opening the channel adds the bot there (the playground sends the install); the bot saves the channel
            # and posts its welcome, which is already on the page when drive.mjs starts watching, so no --expect.
            "--conversation",
            channel,
            "--conversation",
            "Personal Chat",
            "--send",
            "report",
            "--expect",
            "Who is the concern about?",
            "--show",
            "Two short cards",
            "--screenshot",
            "report-start",
            "--fill",
            "subject_kind=pupil",
            "--fill",
            "immediate_danger=no",
            "--fill",
            "category=cyberbullying",
            "--screenshot",
            "report-card-1",
            "--click",
            "Next",
            "--expect",
            "Report a concern: the details",
            "--fill",
            "location=online",
            "--fill",
            "occurred=Yesterday evening",
            "--fill",
            "subjects=JS, Year 6",
            "--fill",
            "narrative=Unkind messages in the class group chat",
            "--fill",
            "evidence=Screenshots on the class teacher's laptop",
            "--fill",
            "actions_taken=nothing yet",
            "--screenshot",
            "report-card-2",
            "--click",
            "Next",
            "--expect",
            "Please check your report",
            "--screenshot",
            "report-summary",
            "--click",
            "Submit report",
            "--expect",
            "Your report is ES-2026-0001",
            "--screenshot",
            "report-confirmation",
        )
        # A turn is each message or card submit the reporter sends: `report`, card 1, card 2, Submit.
        turns = [
            line
            for line in reported.splitlines()
            if line.startswith("[drive] sent ") or (line.startswith("[drive] clicked ") and "-> submit" in line)
        ]
        assert len(turns) <= 4, turns
        assert len(turns) == 4 and all(" 200" in t for t in turns if "clicked" in t), turns

        async def start_the_worker(line: str) -> None:
            if line == f'[drive] conversation "{channel}"':
                await stack.enter_async_context(running_bot(tmp_path, worker=True, name="worker"))

        shown = await drive(
            url,
            "--conversation",
            channel,
            "--expect",
            "New online-safety concern ES-2026-0001",
            "--screenshot",
            "dsl-channel-card",
            on_line=start_the_worker,
        )
    assert 'saw "New online-safety concern ES-2026-0001"' in shown
    assert (SCREENSHOTS / "dsl-channel-card.png").stat().st_size > 5000
