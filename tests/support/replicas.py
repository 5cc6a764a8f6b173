"""Real app replicas for tests: `python app.py` in its own process, sharing a database and a fixed fake clock."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from tests.support.harness import ROOT, TEST_DATA_KEY


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def replica(
    name: str, url: str, config: Path, now: dt.datetime, var_dir: Path, *, start_seconds: float = 60
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run `python app.py` as replica `name` until the block ends, then stop it as a deploy would (SIGTERM)."""
    env = {
        **os.environ,
        "ESAFETY_DEV": "1",
        "DATABASE_URL": url,
        "PORT": str(free_port()),
        "HOST": "127.0.0.1",
        "ESAFETY_REPLICA": name,
        "ESAFETY_FAKE_NOW": now.isoformat(),
        "ESAFETY_WORKER_POLL_SECONDS": "0.2",
        "ESAFETY_DATA_KEY": TEST_DATA_KEY,
        "ESAFETY_VAR_DIR": str(var_dir),
        "ESAFETY_CONFIG": str(config),
        "ESAFETY_LOG_LEVEL": "ERROR",
        "PYTHONUNBUFFERED": "1",
    }
    log = os.open(var_dir / f"replica-{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "app.py", cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=log
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), start_seconds)
        assert b"listening" in line, f"replica {name} did not start: {line!r}"
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 60)
        os.close(log)
