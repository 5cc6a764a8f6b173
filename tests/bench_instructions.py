"""`make bench-instructions`: the instructions the app executes per turn, counted by valgrind's callgrind.

On a shared 2-core machine a turn's CPU time moves by half between repeats of the same row, more than most changes
left to make on the hot path. The instructions the app executes repeat to within a few per cent, so they show what
one change does. They are not time: a cache miss or a system call costs no more instructions than an add. `make
bench` stays the measure of speed; this is the measure of work, for comparing code with code.

    make bench-instructions                       # this checkout
    make bench-instructions BENCH_BASE=<revision>  # that revision and this checkout, side by side

Each app runs as `make bench` runs it (tests/bench_server.py, dev mode, a 2,000-person school, SQLite, its replies
to a local Bot Connector) under callgrind, with counting switched on only for the measured turns (and their
warm-up), one at a time: `help`, a report-dialog step and a card action (tests/bench_turns.py). Rows repeat
BENCH_REPEATS times (default 3), alternating which app goes first. The AUP cards the bench's people owe are held
back for the run. What else runs on a clock of minutes lands in some rows when the app runs fifty times slower (each
person's AUP check, settled for five minutes, is made again on their next turn; the durable-work runner polls), so
the table shows each row's least count as well as every count. BENCH_TURNS (default 60) turns a row. Under callgrind
the app runs about fifty times slower: a run with a base takes about fifteen minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp

from tests import bench
from tests.bench_procs import ROOT, ServerProcess, server_process
from tests.bench_school import write_school
from tests.bench_turns import WARMUP_TURNS, WORKLOADS, Turns, introduce, run_row
from tests.support.connector import RecordingConnector
from tests.support.teams import TeamsUser

WORKLOADS_COUNTED = ("help", "dialog", "card")
START_TIMEOUT = 1800.0  # importing the school under callgrind
DUMP_TIMEOUT = 120.0


async def main() -> int:
    logging.basicConfig(level=logging.ERROR)
    turns_per_row = int(os.environ.get("BENCH_TURNS", "60"))
    repeats = int(os.environ.get("BENCH_REPEATS", "3"))
    base = os.environ.get("BENCH_BASE", "").strip()
    # The AUP cards the bench's people owe wait for a quiet moment: three idle minutes, which pass within a run when
    # the app runs fifty times slower, and 200 cards sent during a row multiplied its count. Here they wait for the run.
    os.environ.setdefault("ESAFETY_QUIET_IDLE_MINUTES", str(24 * 60))
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        root = Path(tmp)
        with contextlib.ExitStack() as trees:
            sources = {"this checkout": ROOT}
            if base:
                sources = {base: trees.enter_context(_worktree(base, root / "base")), **sources}
            counts = await _count(root, sources, turns_per_row, repeats)
    _print(counts, list(sources), base)
    return 0


@contextlib.contextmanager
def _worktree(revision: str, path: Path) -> Iterator[Path]:
    subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(path), revision], cwd=ROOT, check=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False)


async def _count(
    root: Path, sources: dict[str, Path], turns_per_row: int, repeats: int
) -> dict[tuple[str, str], list[float]]:
    counts: dict[tuple[str, str], list[float]] = {}
    async with aiohttp.ClientSession() as http:
        config = write_school(
            root / "school.yaml",
            staff=len(bench.DEPUTIES) + bench.DEMO_STAFF + bench.PEOPLE,
            extra_roles=bench.DEPUTIES,
        )
        connector = RecordingConnector()
        await connector.start()
        try:
            async with contextlib.AsyncExitStack() as stack:
                apps: dict[str, ServerProcess] = {}
                for n, (label, source) in enumerate(sources.items()):
                    apps[label] = await stack.enter_async_context(
                        _counted_app(root, f"app{n}", source, config, connector)
                    )
                people = bench.people_for(http, connector, config)
                for started in apps.values():
                    await introduce(Turns(http, started, connector), people["staff"] + people["deputies"])
                order = list(apps)
                for repeat in range(repeats):
                    for workload in WORKLOADS_COUNTED:
                        for label in order if repeat % 2 == 0 else order[::-1]:
                            who = people["deputies" if workload == "card" else "staff"]
                            per_turn = await _row(
                                Turns(http, apps[label], connector), who, workload, turns_per_row, root
                            )
                            counts.setdefault((workload, label), []).append(per_turn)
                            print(
                                f"  {workload:<7} {label:<14} {per_turn / 1e6:7.3f} M instructions a turn", flush=True
                            )
        finally:
            await connector.stop()
    return counts


@contextlib.asynccontextmanager
async def _counted_app(
    root: Path, name: str, source: Path, config: Path, connector: RecordingConnector
) -> AsyncIterator[ServerProcess]:
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={root}/{name}.%p"]
    database = f"sqlite+aiosqlite:///{root / (name + '.db')}"
    args = ["app", "--database", database, "--config", str(config), "--connector", connector.url, "--no-budget"]
    async with server_process(
        name,
        root,
        *args,
        "--var",
        str(root / f"var-{name}"),
        prefix=valgrind,
        source=source,
        start_timeout=START_TIMEOUT,
    ) as app:
        yield app


async def _row(turns: Turns, people: list[TeamsUser], workload: str, count: int, root: Path) -> float:
    """Instructions per turn over `count` turns, one at a time, after run_row's own warm-up (counted with them)."""
    pid = turns.server.pid
    await _control(pid, "--instr=on")
    await _control(pid, "--zero")
    sample = await run_row(turns, people, WORKLOADS[workload], count, 1, math.inf)
    await _control(pid, "--dump")
    await _control(pid, "--instr=off")
    if sample.failed:
        raise RuntimeError(f"{sample.failed} of {sample.turns} turns were not answered; see {turns.server.log}")
    per_cycle = len(WORKLOADS[workload].steps)
    warm = max(1, math.ceil(WARMUP_TURNS / per_cycle)) * per_cycle
    return await asyncio.to_thread(_dumped, root, pid) / (sample.turns + warm)


async def _control(pid: int, *args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "callgrind_control", *args, str(pid), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    await process.wait()


def _dumped(root: Path, pid: int) -> int:
    """The instructions in the dump just asked for, once callgrind has written all of it (it writes the dump after
    `callgrind_control --dump` returns, and nothing tells another process when it is done but the file itself)."""
    deadline = time.monotonic() + DUMP_TIMEOUT
    while time.monotonic() < deadline:
        for dump in root.glob(f"*.{pid}.*"):
            found = re.search(rb"^totals: (\d+)", dump.read_bytes()[-4096:], re.MULTILINE)
            if found:
                dump.unlink()
                return int(found.group(1))
        time.sleep(0.5)
    raise RuntimeError(f"callgrind wrote no dump for process {pid} within {DUMP_TIMEOUT:.0f} s")


def _print(counts: dict[tuple[str, str], list[float]], labels: list[str], base: str) -> None:
    print("\nInstructions the app executed per turn (callgrind; SQLite, c=1; the least of the repeats, then each):")
    for workload in WORKLOADS_COUNTED:
        least = {label: min(counts[(workload, label)]) for label in labels}
        for label in labels:
            each = ", ".join(f"{c / 1e6:.3f}" for c in counts[(workload, label)])
            change = ""
            if base and label != base:
                change = f"  {100 * (least[label] / least[base] - 1):+.1f}% against {base}"
            print(f"  {workload:<7} {label:<14} {least[label] / 1e6:7.3f} M   ({each}){change}")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
