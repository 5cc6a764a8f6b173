"""A server under test in its own process (tests/bench_server.py), with its CPU time and memory from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 120.0  # migrating a fresh database and importing a 2,000-person school takes a while on 2 cores


@dataclass
class ServerProcess:
    name: str
    process: asyncio.subprocess.Process
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User plus system CPU time the server has used so far (fields 14 and 15 of /proc/<pid>/stat)."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces; fields resume after it
        return (int(fields[11]) + int(fields[12])) / TICKS

    def preempted(self) -> int:
        """Times the server's threads were taken off a core while they could still run (involuntary context
        switches, summed over /proc/<pid>/task): a turn that hands work between threads, or waits on another
        process, pays for these in CPU as well as in time."""
        total = 0
        for status in Path(f"/proc/{self.pid}/task").glob("*/status"):
            try:
                lines = status.read_text().splitlines()
            except OSError:  # the thread ended between the listing and the read
                continue
            total += sum(int(line.split()[1]) for line in lines if line.startswith("nonvoluntary_ctxt_switches:"))
        return total

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), 60)
    except TimeoutError:
        process.kill()
        await process.wait()


@contextlib.asynccontextmanager
async def server_process(
    name: str,
    log_dir: Path,
    *args: str,
    prefix: Sequence[str] = (),
    source: Path = ROOT,
    start_timeout: float = START_TIMEOUT,
) -> AsyncIterator[ServerProcess]:
    """Start `python -m tests.bench_server *args`, wait for its READY line, and stop it (SIGTERM) afterwards.

    `prefix` runs it under another program (valgrind); `source` is the checkout whose code it runs."""
    log = log_dir / f"{name.replace(' ', '_').replace('/', '_')}.log"
    with log.open("wb") as errors:
        process = await asyncio.create_subprocess_exec(
            *prefix,
            sys.executable,
            "-m",
            "tests.bench_server",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
            cwd=source,
        )
    try:
        url = await _ready(process, name, log, start_timeout)
        yield ServerProcess(name, process, url, log)
    finally:
        await _stop(process)


async def _ready(process: asyncio.subprocess.Process, name: str, log: Path, within: float) -> str:
    assert process.stdout is not None
    try:
        async with asyncio.timeout(within):
            while line := (await process.stdout.readline()).decode():
                if line.startswith("READY "):
                    return line.split()[1]
    except TimeoutError:
        pass
    raise RuntimeError(f"{name} did not start within {within:.0f} s:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:] if log.exists() else ""


def steady_instrument() -> None:
    """Before a measurement: this process is the instrument (the driver and the local connector that stands in for
    Teams), and a full garbage collection of its heap stopped it for about 300 ms, which showed as the app's
    latency and as gaps in a broadcast. What it holds so far is collected once and frozen (never walked again);
    what the measurement makes is collected as usual."""
    gc.collect()
    gc.freeze()
