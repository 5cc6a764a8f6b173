"""Starting and stopping: `python app.py` refuses unsafe or invalid set-ups in one line; shutdown is graceful."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from adapters.clock import SettableClock
from bot.actor import Command, Turn
from bot.wiring import Wiring
from tests.support.harness import DEMO_CONFIG, ROOT, TEST_DATA_KEY, start_harness

PYTHON = sys.executable


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    """A clean environment: nothing from the developer's shell leaks in."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'startup.db'}",
        "ESAFETY_VAR_DIR": str(tmp_path / "var"),
        "PORT": str(_free_port()),
        "ESAFETY_WORKER": "0",
    }
    env.update(values)
    return env


async def _run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        PYTHON, "app.py", *args, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, stdout.decode(), stderr.decode()


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one clear line, got: {stderr!r}"
    return lines[0]


async def test_refuses_to_start_without_an_app_id_outside_dev_mode(tmp_path: Path) -> None:
    code, stdout, stderr = await _run(_env(tmp_path, ESAFETY_DATA_KEY=TEST_DATA_KEY))
    assert code != 0
    line = _one_line(stderr)
    assert "MicrosoftAppId" in line and "ESAFETY_DEV" in line
    assert "listening" not in stdout
    assert not (tmp_path / "startup.db").exists(), "nothing should be touched before the checks pass"


async def test_an_app_id_that_is_only_spaces_counts_as_missing(tmp_path: Path) -> None:
    code, _, stderr = await _run(_env(tmp_path, MicrosoftAppId="   ", ESAFETY_DATA_KEY=TEST_DATA_KEY))
    assert code != 0
    assert "MicrosoftAppId" in _one_line(stderr)


async def test_single_tenant_needs_a_tenant_id(tmp_path: Path) -> None:
    code, _, stderr = await _run(
        _env(
            tmp_path,
            MicrosoftAppId="6f1c2d3e-4a5b-4c6d-8e7f-901234567890",
            MicrosoftAppPassword="x",
            ESAFETY_DATA_KEY=TEST_DATA_KEY,
        )
    )
    assert code != 0
    assert "MicrosoftAppTenantId" in _one_line(stderr)


async def test_refuses_to_start_without_a_data_key_outside_dev_mode(tmp_path: Path) -> None:
    code, _, stderr = await _run(
        _env(
            tmp_path,
            MicrosoftAppId="6f1c2d3e-4a5b-4c6d-8e7f-901234567890",
            MicrosoftAppPassword="x",
            MicrosoftAppTenantId="t",
        )
    )
    assert code != 0
    assert "ESAFETY_DATA_KEY" in _one_line(stderr)


@pytest.mark.parametrize("key", ["short", "A" * 60])
async def test_a_bad_data_key_is_refused(tmp_path: Path, key: str) -> None:
    code, stdout, stderr = await _run(_env(tmp_path, ESAFETY_DEV="1", ESAFETY_DATA_KEY=key))
    assert code != 0
    assert "ESAFETY_DATA_KEY" in _one_line(stderr)
    assert "listening" not in stdout


async def test_an_invalid_setting_is_named(tmp_path: Path) -> None:
    code, _, stderr = await _run(_env(tmp_path, ESAFETY_DEV="1", PORT="not-a-port"))
    assert code != 0
    assert "PORT" in stderr or "port" in stderr


async def test_an_unknown_app_type_is_named(tmp_path: Path) -> None:
    code, _, stderr = await _run(
        _env(
            tmp_path,
            MicrosoftAppId="6f1c2d3e-4a5b-4c6d-8e7f-901234567890",
            MicrosoftAppType="SomethingElse",
            ESAFETY_DATA_KEY=TEST_DATA_KEY,
        )
    )
    assert code != 0
    assert "MicrosoftAppType" in stderr


async def test_migrate_command_brings_a_new_database_up_to_date(tmp_path: Path) -> None:
    code, stdout, stderr = await _run(_env(tmp_path, ESAFETY_DEV="1"), "migrate")
    assert code == 0, stderr
    assert "up to date" in stdout
    assert (tmp_path / "startup.db").exists()
    code, stdout, _ = await _run(_env(tmp_path, ESAFETY_DEV="1"), "migrate")
    assert code == 0 and "up to date" in stdout


def _config_variant(tmp_path: Path, old: str, new: str) -> Path:
    text = DEMO_CONFIG.read_text(encoding="utf-8")
    assert old in text, f"the demo config no longer contains {old!r}"
    path = tmp_path / "school.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


async def test_config_that_is_not_yaml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("schools:\n  - id: oakfield\n   name: [unclosed\n", encoding="utf-8")
    code, _, stderr = await _run(_env(tmp_path, ESAFETY_DEV="1", ESAFETY_CONFIG=str(path)))
    assert code != 0
    line = _one_line(stderr)
    assert "broken.yaml" in line and "YAML" in line


async def test_config_with_an_unknown_timezone_names_the_key(tmp_path: Path) -> None:
    text = DEMO_CONFIG.read_text(encoding="utf-8")
    if "timezone:" in text:
        path = _config_variant(tmp_path, "timezone: Europe/London", "timezone: Mars/Olympus_Mons")
    else:
        path = _config_variant(tmp_path, "    tenant_id:", "    timezone: Mars/Olympus_Mons\n    tenant_id:")
    code, _, stderr = await _run(_env(tmp_path, ESAFETY_DEV="1", ESAFETY_CONFIG=str(path)))
    assert code != 0
    assert "timezone" in _one_line(stderr)


async def test_config_missing_a_required_key_names_it(tmp_path: Path) -> None:
    path = _config_variant(tmp_path, "    tenant_id: 00000000-0000-4000-8000-00000000d000\n", "")
    code, _, stderr = await _run(_env(tmp_path, ESAFETY_DEV="1", ESAFETY_CONFIG=str(path)))
    assert code != 0
    assert "tenant_id" in _one_line(stderr)


async def test_missing_config_file_is_named(tmp_path: Path) -> None:
    code, _, stderr = await _run(_env(tmp_path, ESAFETY_DEV="1", ESAFETY_CONFIG=str(tmp_path / "nowhere.yaml")))
    assert code != 0
    assert "nowhere.yaml" in _one_line(stderr)


async def test_starts_in_dev_mode_answers_health_and_stops_cleanly(tmp_path: Path) -> None:
    env = _env(tmp_path, ESAFETY_DEV="1")
    process = await asyncio.create_subprocess_exec(
        PYTHON, "app.py", cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        while line and b"listening" not in line:
            line = await asyncio.wait_for(process.stdout.readline(), 60)
        assert f"http://127.0.0.1:{env['PORT']}/api/messages".encode() in line
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{env['PORT']}/healthz") as response:
                assert response.status == 200
            async with http.get(f"http://127.0.0.1:{env['PORT']}/readyz") as response:
                assert response.status == 200
        assert (tmp_path / "var" / "data.key").exists(), "dev mode makes its own data key under var/"
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 60) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


# --- graceful shutdown -----------------------------------------------------------------------------------------


class _Gate:
    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()


@pytest.fixture
def gate() -> _Gate:
    return _Gate()


def _slow_feature(gate: _Gate):  # noqa: ANN202
    def install(wiring: Wiring) -> None:
        async def run(turn: Turn, _args: str) -> None:
            gate.entered.set()
            await gate.release.wait()
            await turn.say("Finished the slow job.")

        wiring.services.add_command(Command("slow", "Slow", "Test only.", run))

    return install


@pytest.fixture
async def slow_app(database_url: str, clock: SettableClock, tmp_path: Path, gate: _Gate) -> AsyncIterator:
    async with start_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", features=[_slow_feature(gate)]
    ) as running:
        yield running


async def test_a_turn_in_flight_finishes_when_the_app_stops(slow_app, gate: _Gate) -> None:  # noqa: ANN001
    leah = slow_app.user("Leah Brooks")
    turn = asyncio.create_task(leah.says("slow"))
    await asyncio.wait_for(gate.entered.wait(), 30)

    runner = slow_app.runner
    stopping = asyncio.create_task(slow_app.stop())

    async def listener_closed() -> None:
        while runner.sites:  # noqa: ASYNC110 - shutdown has begun once the listening socket is gone
            await asyncio.sleep(0)  # a bare yield to the shutdown task, not a timed wait

    await asyncio.wait_for(listener_closed(), 30)
    assert not stopping.done(), "the app must wait for the turn in flight"
    gate.release.set()

    reply = await asyncio.wait_for(turn, 30)
    await asyncio.wait_for(stopping, 30)
    assert reply.status == 200
    assert reply.texts == ["Finished the slow job."]
