"""Turns per second, latency and server CPU per turn for one row of `make bench`.

A row is one workload against one server process at one concurrency. Each worker repeats the workload's cycle of
turns, each cycle by the next of its own share of the people (each in their own 1:1 chat); every turn is timed from
the POST until the server answers it (the reply to the connector is sent inside the turn, so it is included). CPU is
the server process's own utime+stime over the measured turns, read from /proc, so the driver and the local
connector cost nothing here.

Workloads:
- echo:   `help` to an echo server (the floor and the echo bots answer it with one message).
- help:   the app answering `help` with the help card.
- dialog: report-dialog steps, in a cycle of three turns each measured alone: `report` (begins the report and
          answers with its first card), `A pupil` typed in reply to that card (the typed fallback: the report
          switches to typed questions, stores who it is about and asks the next question), and `cancel` (the
          report says what became of it and ends), so the next cycle starts afresh.
- card:   an Action.Execute invoke `adaptiveCard/action` with the verb `desk.cases` (the caseload card a deputy
          DSL opens from the desk, answered in the invoke response), by members of staff with the deputy_dsl role.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from tests.bench_procs import ServerProcess
from tests.support.connector import RecordingConnector
from tests.support.teams import TeamsUser

WARMUP_TURNS = 10
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
CASES_VERB = "desk.cases"


@dataclass(frozen=True)
class Step:
    make: Callable[[TeamsUser], dict[str, Any]]
    invoke: bool = False  # answered in the HTTP response (an Adaptive Card), not by a message to the connector


@dataclass(frozen=True)
class Workload:
    name: str
    steps: tuple[Step, ...]


WORKLOADS = {
    "echo": Workload("echo", (Step(lambda u: u.message("help")),)),
    "help": Workload("help", (Step(lambda u: u.message("help")),)),
    "dialog": Workload(
        "dialog",
        (
            Step(lambda u: u.message("report")),
            Step(lambda u: u.message("A pupil")),
            Step(lambda u: u.message("cancel")),
        ),
    ),
    "card": Workload("card", (Step(lambda u: u.card_execute(CASES_VERB, {}), invoke=True),)),
}


@dataclass
class Sample:
    """One measured run of a row."""

    turns: int
    seconds: float
    latencies: list[float]
    cpu_seconds: float
    failed: int
    driver_seconds: float = 0.0  # this process's CPU (driver and connector): near one core means the row is ours
    preempted: int = 0  # the server's involuntary context switches (ServerProcess.preempted)

    @property
    def driver_ms_per_turn(self) -> float:
        return self.driver_seconds * 1000 / self.turns if self.turns else 0.0

    @property
    def preempted_per_turn(self) -> float:
        return self.preempted / self.turns if self.turns else 0.0

    @property
    def rate(self) -> float:
        return self.turns / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_turn(self) -> float:
        return self.cpu_seconds * 1000 / self.turns if self.turns else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)] * 1000


class Turns:
    """Posts a workload's turns for a set of people and checks each was answered."""

    def __init__(self, http: aiohttp.ClientSession, server: ServerProcess, connector: RecordingConnector) -> None:
        self.http = http
        self.server = server
        self.connector = connector
        self.failed = 0
        self.latencies: list[float] = []

    async def one(self, user: TeamsUser, step: Step) -> None:
        activity = step.make(user)
        started = time.perf_counter()
        try:
            async with self.http.post(self.server.url, json=activity) as response:
                body = await response.read()
                ok = response.status < 300
        except (aiohttp.ClientError, TimeoutError):
            ok, body = False, b""
        self.latencies.append(time.perf_counter() - started)
        if not ok or (step.invoke and ADAPTIVE_CARD.encode() not in body):
            self.failed += 1

    async def cycles(self, users: list[TeamsUser], workload: Workload, units: Any, stop_at: float) -> None:
        """Whole cycles of the workload, each by the next of `users`, while `units` has any left and time allows.

        Taking turns between people keeps each chat within Teams' 7 messages a second per conversation (which the
        app's own send budget enforces), so a row measures the server rather than that limit."""
        for n, _ in enumerate(units):
            if time.perf_counter() > stop_at:
                return
            user = users[n % len(users)]
            for step in workload.steps:
                await self.one(user, step)


async def introduce(turns: Turns, people: list[TeamsUser], concurrency: int = 10) -> None:
    """Everyone says `help` once, unmeasured: the first contact a real school's staff made long ago."""
    units = iter(range(len(people)))
    workers = [people[n::concurrency] for n in range(concurrency)]
    await asyncio.gather(*(turns.cycles(w, WORKLOADS["help"], units, math.inf) for w in workers if w))


async def run_row(
    turns: Turns, people: list[TeamsUser], workload: Workload, count: int, concurrency: int, max_seconds: float
) -> Sample:
    """`count` turns (whole cycles), `concurrency` people at a time, stopped early after `max_seconds`."""
    per_cycle = len(workload.steps)
    workers = [people[n::concurrency] for n in range(concurrency)]
    warm_cycles = max(1, math.ceil(WARMUP_TURNS / per_cycle / concurrency))
    await asyncio.gather(*(turns.cycles(w, workload, range(warm_cycles), math.inf) for w in workers))
    turns.latencies, turns.failed = [], 0
    messages = sum(not s.invoke for s in workload.steps)
    sent_before = len(turns.connector.sent)
    cpu_before, driver_before, preempted_before = (
        turns.server.cpu_seconds(),
        time.process_time(),
        turns.server.preempted(),
    )
    started = time.perf_counter()
    units = iter(range(math.ceil(count / per_cycle)))
    await asyncio.gather(*(turns.cycles(w, workload, units, started + max_seconds) for w in workers))
    seconds = time.perf_counter() - started
    cpu, driver = turns.server.cpu_seconds() - cpu_before, time.process_time() - driver_before
    preempted = turns.server.preempted() - preempted_before
    done = len(turns.latencies)
    expected_sends = done // per_cycle * messages
    missing = max(0, expected_sends - (len(turns.connector.sent) - sent_before))
    return Sample(done, seconds, list(turns.latencies), cpu, turns.failed + missing, driver, preempted)
