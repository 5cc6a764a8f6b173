"""`make bench`: how fast and lean the bot is, side by side with what any bot costs, in one run (issue 17).

Every server under test runs in its own process (tests/bench_server.py) on loopback; the driver and the local Bot
Connector stay here, so "CPU ms/turn" is the server's own utime+stime over the measured turns (tests/bench_turns.py).
Rows, each at concurrency 1 and 10:

- floor:        a bare aiohttp handler, one POST to the connector per activity (the least any bot can do);
- floor + claim: the floor with the app's own inbound claim taken before the reply and finished after it, on SQLite
                and on PostgreSQL (the least a bot can do that answers each delivery once, as issue 17 requires);
- stock echo:   botbuilder's CloudAdapter echo bot as the samples build it;
- project echo: the same echo bot as the app runs a turn: the activity read by the project's JSON reader, then
                adapters.connector.build_adapter + ClientPool;
- app help / app dialog / app card, on SQLite and on PostgreSQL: the bot answering `help`, taking report-dialog
  steps (`report`, the typed fallback `A pupil`, `cancel`), and answering an Action.Execute `desk.cases`
  (tests/bench_turns.py says exactly what each turn is).

Rows run BENCH_REPEATS times (default 3), interleaved: each repeat runs every row once, starting 1/BENCH_REPEATS of
the list further along, so drift hits every row alike; the table shows medians. This machine's speed can double or
halve within a minute, so a row measured in one phase and the floor in another gave ratios that said more about the
machine than the bot. So each sample of a row is flanked by a sample of the floor at the same concurrency, just
before and just after it, and its ratio to the floor is taken against those two (their geometric mean). "vs floor"
is the median of those ratios; "vs stock" compares medians. Then: RSS of the SQLite app before and after
BENCH_RSS_TURNS mixed turns (default 10,000, scaled down with BENCH_TURNS in quick mode), the broadcast
(tests/bench_broadcast.py), the weekly digest over 100,000 incidents against one GROUP BY (tests/bench_digest.py),
a turn's claim and finish on PostgreSQL as the app commits them and waiting for the disk (tests/bench_bookkeeping.py),
and the issue's targets with PASS or MISS. It only prints: a MISS never fails the build.

Its PostgreSQL server flushes every durable commit to disk, as a school's does (the test suite's does not).

BENCH_TURNS (default 300) turns per row; a row also stops taking new turns after BENCH_ROW_SECONDS (default 5), the
RSS phase after BENCH_RSS_SECONDS (default 120), the broadcast after BENCH_BROADCAST_TIMEOUT (default 300) and the
digest after BENCH_DIGEST_TIMEOUT (default 600), so a slow or stuck app cannot make the run endless; the table says
how many turns each row measured. Quick mode: BENCH_TURNS=30 BENCH_REPEATS=1.

On PostgreSQL, the trust row (tests/bench_trust.py, issue 18) follows the broadcast: an AUP publish by every school's
online-safety lead across a generated trust (BENCH_TRUST_SCHOOLS, default 50; BENCH_TRUST_STAFF, default 12,000) on
two replicas sharing the database, bounded by BENCH_TRUST_TIMEOUT (default 900); quick: BENCH_TRUST_SCHOOLS=5
BENCH_TRUST_STAFF=500; left out with BENCH_TRUST=0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests import bench_bookkeeping, bench_digest, bench_trust
from tests.bench_broadcast import REPORT_AFTER, Broadcast, run_broadcast
from tests.bench_procs import ServerProcess, server_process, steady_instrument
from tests.bench_school import staff_of, tenant_of, write_school
from tests.bench_turns import WORKLOADS, Sample, Turns, Workload, introduce, run_row
from tests.support import pgserver
from tests.support.connector import RecordingConnector
from tests.support.teams import TeamsUser

CONCURRENCY = (1, 10)
PEOPLE = 100  # of each kind: plain staff (help, dialog) and deputy DSLs (card actions)
DEPUTIES = {f"Bench Deputy {n:03d}": ["staff", "deputy_dsl"] for n in range(1, PEOPLE + 1)}
DEMO_STAFF = 8
MIXED = Workload(
    "mixed",
    (
        *WORKLOADS["help"].steps,
        *WORKLOADS["dialog"].steps,
        *WORKLOADS["card"].steps,
    ),
)


def _env(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass(frozen=True)
class Row:
    label: str  # what the table shows
    server: str  # which server process
    workload: str
    database: str  # "-" for the echo servers
    concurrency: int

    @property
    def people(self) -> str:
        return "deputies" if self.workload == "card" else "staff"


def rows_for(databases: list[str]) -> list[Row]:
    rows = [
        Row(label, server, "echo", "-", c)
        for label, server in (("floor", "floor"), ("stock echo", "stock"), ("project echo", "pooled"))
        for c in CONCURRENCY
    ]
    for database in databases:
        rows += [Row("floor + claim", f"claimed {database}", "echo", database, c) for c in CONCURRENCY]
        rows += [
            Row(f"app {workload}", f"app {database}", workload, database, c)
            for workload in ("help", "dialog", "card")
            for c in CONCURRENCY
        ]
    return rows


def interleaved(rows: list[Row], repeat: int, repeats: int) -> list[Row]:
    """Every row once, starting a share of the list further along on each repeat."""
    shift = repeat * len(rows) // max(1, repeats)
    return rows[shift:] + rows[:shift]


@dataclass
class Summary:
    """The median of each figure over a row's repeats."""

    row: Row
    rate: float
    p50: float
    p95: float
    p99: float
    cpu_ms: float
    failed: int
    turns: int  # measured in each repeat (median)
    driver_ms: float  # the benchmark's own CPU per turn (driver and connector), to show when the floor is ours
    vs_floor: float | None  # the median of each sample's turns/s against the floor's flanking it; 1 for the floor
    preempted: float  # the server's involuntary context switches a turn

    @classmethod
    def of(cls, row: Row, samples: list[Sample], against_floor: list[float]) -> Summary:
        def median(figure: Callable[[Sample], float]) -> float:
            return statistics.median(figure(s) for s in samples)

        return cls(
            row,
            median(lambda s: s.rate),
            median(lambda s: s.percentile(50)),
            median(lambda s: s.percentile(95)),
            median(lambda s: s.percentile(99)),
            median(lambda s: s.cpu_ms_per_turn),
            sum(s.failed for s in samples),
            int(median(lambda s: s.turns)),
            median(lambda s: s.driver_ms_per_turn),
            statistics.median(against_floor) if against_floor else None,
            median(lambda s: s.preempted_per_turn),
        )


# --- the servers ---------------------------------------------------------------------------------------------------


UNBUDGETED = {"pooled": ("--no-budget",)}


async def start_servers(
    stack: contextlib.AsyncExitStack, root: Path, config: Path, connector_url: str, database_urls: dict[str, str]
) -> dict[str, ServerProcess]:
    # The turn rows measure the bot's own cost, so the project's servers send without Teams' per-tenant budget (one
    # school is one tenant: 50 sends/s would cap every row); the broadcast row keeps the budget and a connector
    # that enforces Teams' limits.
    servers = {
        name: await stack.enter_async_context(
            server_process(name, root, name, "--var", str(root / f"var-{name}"), *UNBUDGETED.get(name, ()))
        )
        for name in ("floor", "stock", "pooled")
    }
    for database, url in database_urls.items():
        servers[f"claimed {database}"] = await stack.enter_async_context(
            server_process(
                f"claimed {database}", root, "claimed", "--database", _own(url), "--var", str(root / f"var-c{database}")
            )
        )
        name = f"app {database}"
        args = ("app", "--database", url, "--config", str(config), "--connector", connector_url, "--no-budget")
        servers[name] = await stack.enter_async_context(
            server_process(name, root, *args, "--var", str(root / f"var-{database}"))
        )
    return servers


def database_urls(root: Path, pg: pgserver.PgServer | None) -> dict[str, str]:
    urls = {"SQLite": f"sqlite+aiosqlite:///{root / 'bench.db'}"}
    if pg is not None:
        pg.psql('CREATE DATABASE "bench_app"')
        pg.psql('CREATE DATABASE "bench_claimed"')
        urls["PostgreSQL"] = pg.url("bench_app")
    return urls


def _own(url: str) -> str:
    """The claimed floor's database: beside the app's, so neither's rows or locks touch the other's."""
    return url.replace("bench.db", "claimed.db").replace("/bench_app", "/bench_claimed")


def start_postgres() -> pgserver.PgServer | None:
    try:
        return pgserver.start(durable=True)  # what a school's server pays: every durable commit waits for the disk
    except (RuntimeError, OSError) as exc:
        print(f"PostgreSQL rows skipped: {exc}", file=sys.stderr)
        return None


# --- the phases ----------------------------------------------------------------------------------------------------


async def measure_rows(
    http: aiohttp.ClientSession,
    servers: dict[str, ServerProcess],
    connector: RecordingConnector,
    people: dict[str, list[TeamsUser]],
    rows: list[Row],
) -> list[Summary]:
    turns = int(_env("BENCH_TURNS", 300))
    repeats = int(_env("BENCH_REPEATS", 3))
    max_seconds = _env("BENCH_ROW_SECONDS", 5)
    samples: dict[Row, list[Sample]] = {row: [] for row in rows}
    against_floor: dict[Row, list[float]] = {row: [] for row in rows}
    floors = {row.concurrency: row for row in rows if row.label == "floor"}

    async def sample_of(row: Row) -> Sample:
        driver = Turns(http, servers[row.server], connector)
        steady_instrument()
        return await run_row(driver, people[row.people], WORKLOADS[row.workload], turns, row.concurrency, max_seconds)

    for repeat in range(repeats):
        for row in interleaved(rows, repeat, repeats):
            floor = floors.get(row.concurrency)
            if floor is None or floor == row:
                sample = await sample_of(row)
                if floor == row:
                    against_floor[row].append(1.0)
            else:
                before, sample, after = await sample_of(floor), await sample_of(row), await sample_of(floor)
                if before.rate and after.rate:
                    against_floor[row].append(sample.rate / math.sqrt(before.rate * after.rate))
            samples[row].append(sample)
            print(
                f"  repeat {repeat + 1}/{repeats} {row.label:<13} {row.database:<10} c={row.concurrency:<3}"
                f"{sample.rate:8.1f} turns/s",
                file=sys.stderr,
                flush=True,
            )
    return [Summary.of(row, samples[row], against_floor[row]) for row in rows]


@dataclass
class Memory:
    turns: int
    seconds: float
    before_kb: int
    after_kb: int

    @property
    def growth(self) -> float:
        return (self.after_kb - self.before_kb) / self.before_kb * 100 if self.before_kb else 0.0


async def measure_memory(
    http: aiohttp.ClientSession, server: ServerProcess, connector: RecordingConnector, people: list[TeamsUser]
) -> Memory:
    """RSS of the app before and after mixed turns (help, dialog steps, card actions) at concurrency 10."""
    count = int(_env("BENCH_RSS_TURNS", 10_000 * _env("BENCH_TURNS", 300) / 300))
    before = server.rss_kb()
    driver = Turns(http, server, connector)
    steady_instrument()
    sample = await run_row(driver, people, MIXED, count, 10, _env("BENCH_RSS_SECONDS", 120))
    return Memory(sample.turns, sample.seconds, before, server.rss_kb())


async def measure_digest(root: Path, pg: pgserver.PgServer | None) -> list[tuple[str, float, float, int]]:
    results = [await bench_digest.bench(f"sqlite+aiosqlite:///{root / 'digest.db'}", "SQLite")]
    if pg is not None:
        pg.psql('CREATE DATABASE "bench_digest"')
        results.append(await bench_digest.bench(pg.url("bench_digest"), "PostgreSQL"))
    return results


# --- printing ------------------------------------------------------------------------------------------------------


def rows_table(summaries: list[Summary]) -> str:
    base = {(s.row.label, s.row.concurrency): s for s in summaries}  # the stock echo, for "vs stock"
    lines = [
        f"{'row':<14}{'database':<12}{'c':>3}{'turns':>7}{'turns/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
        f"{'CPU ms/turn':>13}{'vs floor':>10}{'vs stock':>10}{'failed':>8}{'driver ms':>11}{'pre-empted':>12}"
    ]
    for s in sorted(summaries, key=lambda s: (s.row.concurrency, s.row.database != "-", s.row.database)):
        stock = base.get(("stock echo", s.row.concurrency))
        vs_floor = f"{s.vs_floor:.2f}x" if s.vs_floor is not None else "-"
        vs_stock = f"{s.rate / stock.rate:.2f}x" if stock and stock.rate else "-"
        lines.append(
            f"{s.row.label:<14}{s.row.database:<12}{s.row.concurrency:>3}{s.turns:>7}{s.rate:>9.1f}{s.p50:>9.1f}{s.p95:>9.1f}"
            f"{s.p99:>9.1f}{s.cpu_ms:>13.2f}{vs_floor:>10}{vs_stock:>10}{s.failed:>8}{s.driver_ms:>11.2f}"
            f"{s.preempted:>12.2f}"
        )
    return "\n".join(lines)


def broadcast_lines(b: Broadcast) -> str:
    invoke = f"{b.invoke_seconds:.2f} s" if b.invoke_seconds is not None else "no answer by the end"
    alert = b.alert.line()
    helps = b.help_latencies
    p50 = f"{statistics.median(helps) * 1000:.0f}" if helps else "-"
    p99 = f"{helps[min(len(helps) - 1, int(0.99 * len(helps)))] * 1000:.0f}" if helps else "-"
    return "\n".join(
        [
            f"AUP publish to {b.staff:,} staff, connector at 50 requests/s per tenant and 7/s per conversation:",
            f"  delivery ended: {b.ended}",
            f"  {b.cards:,} cards, {b.rate:.1f} msg/s first to last card ({b.first_to_last:.1f} s), "
            f"{b.throttled:,} 429s answered",
            f"  lost (no card) {b.lost:,}; duplicated (more than one card) {b.duplicated:,}",
            f"  publish invoke answered in {invoke}: {b.invoke_answer!r}",
            f"  other people's `help` meanwhile: {b.help_sent} sent, reply p50 {p50} ms, p99 {p99} ms, "
            f"{b.help_unanswered} got no reply",
            f"  a concern reported {REPORT_AFTER:.0f} s after the first card: {alert}",
        ]
    )


@dataclass
class Target:
    what: str
    measured: str
    ok: bool | None  # None: not measured

    def line(self) -> str:
        verdict = "-" if self.ok is None else ("PASS" if self.ok else "MISS")
        return f"  {verdict:<5} {self.what:<52} {self.measured}"


def targets(
    summaries: list[Summary], memory: Memory | None, broadcast: Broadcast | None, digest: list[Any]
) -> list[Target]:
    found = {(s.row.label, s.row.database, s.row.concurrency): s for s in summaries}
    out: list[Target] = []
    for database in sorted({s.row.database for s in summaries} - {"-"}):
        help_, dialog = found.get(("app help", database, 1)), found.get(("app dialog", database, 1))
        if help_ and help_.vs_floor is not None:
            out.append(_ratio(f"help >= 0.5x floor ({database}, c=1)", help_.vs_floor, 0.5))
        if dialog and dialog.vs_floor is not None:
            out.append(_ratio(f"dialog step >= 0.25x floor ({database}, c=1)", dialog.vs_floor, 0.25))
        if dialog:
            out.append(
                Target(f"<= 2 CPU ms per dialog step ({database}, c=1)", f"{dialog.cpu_ms:.2f} ms", dialog.cpu_ms <= 2)
            )
        for workload in ("help", "dialog", "card"):
            row = found.get((f"app {workload}", database, 10))
            if row:
                out.append(Target(f"p99 <= 50 ms at c=10: {workload} ({database})", f"{row.p99:.1f} ms", row.p99 <= 50))
    out += _broadcast_targets(broadcast)
    if memory:
        out.append(
            Target(
                f"RSS growth <= 10% over {memory.turns:,} mixed turns",
                f"{memory.growth:+.1f}% ({memory.before_kb / 1024:.0f} -> {memory.after_kb / 1024:.0f} MiB)",
                memory.growth <= 10,
            )
        )
    for label, plain_ms, digest_ms, _trend in digest:
        out.append(_ratio(f"digest <= 2x one GROUP BY ({label})", digest_ms / plain_ms, 2, at_most=True))
    return out


def claim_bounds(summaries: list[Summary]) -> list[str]:
    """The least any turn of the app can cost, next to the per-turn targets. Every turn takes the durable inbound
    claim (an activity Teams redelivers takes effect once) and runs through botbuilder's pipeline, whose cheapest
    turn is the project echo's. A turn's time over the floor's is at least the claim's share plus the echo's, so a
    `help` turn can go no faster than the floor with both added; the lines say how near it comes."""
    found = {(s.row.label, s.row.database, s.row.concurrency): s for s in summaries}
    floor, echo = found.get(("floor", "-", 1)), found.get(("project echo", "-", 1))
    lines = []
    for database in sorted({s.row.database for s in summaries} - {"-"}):
        claimed, help_ = found.get(("floor + claim", database, 1)), found.get(("app help", database, 1))
        if not (floor and claimed and claimed.vs_floor):
            continue
        of_claimed = f"; `help` runs at {help_.vs_floor / claimed.vs_floor:.2f}x it" if help_ and help_.vs_floor else ""
        lines.append(
            f"  note  floor + claim alone ({database}, c=1): {claimed.vs_floor:.2f}x floor, "
            f"{claimed.cpu_ms - floor.cpu_ms:.2f} CPU ms more a turn{of_claimed}"
        )
        if echo and echo.vs_floor:
            # In the floor's time per turn: 1 for the floor, 1/ratio for each of the others.
            least = 1 / (1 / echo.vs_floor + 1 / claimed.vs_floor - 1)
            of_least = f"; `help` runs at {help_.vs_floor / least:.2f}x it" if help_ and help_.vs_floor else ""
            lines.append(
                f"  note  floor + claim + botbuilder's echo turn ({database}, c=1): {least:.2f}x floor, as fast "
                f"as a turn of this bot can go{of_least}"
            )
    return lines


def _ratio(what: str, value: float, bound: float, *, at_most: bool = False) -> Target:
    return Target(what, f"{value:.2f}x", value <= bound if at_most else value >= bound)


def _broadcast_targets(b: Broadcast | None) -> list[Target]:
    if b is None:
        return [Target("broadcast", "not measured", None)]
    invoke = b.invoke_seconds
    return [
        Target("broadcast >= 45 msg/s", f"{b.rate:.1f} msg/s", b.rate >= 45),
        Target("broadcast 0 lost", str(b.lost), b.lost == 0),
        Target("broadcast 0 duplicated", str(b.duplicated), b.duplicated == 0),
        Target(
            "publish invoke answered <= 1 s",
            f"{invoke:.2f} s" if invoke is not None else "no answer",
            invoke is not None and invoke <= 1,
        ),
        Target(
            "no other reply lost during the broadcast", f"{b.help_unanswered} of {b.help_sent}", not b.help_unanswered
        ),
    ]


# --- the run -------------------------------------------------------------------------------------------------------


def people_for(http: aiohttp.ClientSession, connector: RecordingConnector, config: Path) -> dict[str, list[TeamsUser]]:
    """PEOPLE plain members of staff, and PEOPLE deputy DSLs (who may open the caseload), each in their own 1:1 chat."""
    tenant = tenant_of(config)
    staff = staff_of(config)

    def users(chosen: list[dict[str, Any]]) -> list[TeamsUser]:
        return [TeamsUser(http, "", connector, aad_id=p["id"], name=p["name"], tenant_id=tenant) for p in chosen]

    plain = [p for p in staff if p["roles"] == ["staff"] and p["name"].startswith("Staff Member")]
    return {"staff": users(plain[:PEOPLE]), "deputies": users([p for p in staff if p["name"] in DEPUTIES])}


async def turn_phases(root: Path, http: aiohttp.ClientSession, pg: pgserver.PgServer | None) -> tuple[Any, Any]:
    config = write_school(root / "school.yaml", staff=len(DEPUTIES) + DEMO_STAFF + PEOPLE, extra_roles=DEPUTIES)
    connector = RecordingConnector()
    await connector.start()
    try:
        async with contextlib.AsyncExitStack() as stack:
            urls = database_urls(root, pg)
            servers = await start_servers(stack, root, config, connector.url, urls)
            people = people_for(http, connector, config)
            everyone = people["staff"] + people["deputies"]
            for name, server in servers.items():
                if name.startswith("app"):
                    await introduce(Turns(http, server, connector), everyone)
            summaries = await measure_rows(http, servers, connector, people, rows_for(list(urls)))
            print("  RSS phase (mixed turns on the SQLite app)", file=sys.stderr, flush=True)
            memory = await _guarded(measure_memory(http, servers["app SQLite"], connector, people["deputies"]))
            return summaries, memory
    finally:
        await connector.stop()


async def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="esafety-bench-") as tmp:
        root = Path(tmp)
        pg = start_postgres()
        try:
            timeout = aiohttp.ClientTimeout(total=120)
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64), timeout=timeout) as http:
                summaries, memory = await turn_phases(root, http, pg)
                print("  broadcast phase", file=sys.stderr, flush=True)
                broadcast = await _guarded(run_broadcast(root, http, _env("BENCH_BROADCAST_TIMEOUT", 300)))
                trust = None
                if pg is not None and _env("BENCH_TRUST", 1):  # two replicas need a database they can share
                    print("  trust phase (tests/bench_trust.py)", file=sys.stderr, flush=True)
                    trust = await _guarded(bench_trust.run_trust(root, http, pg, _env("BENCH_TRUST_TIMEOUT", 900)))
            print("  digest phase", file=sys.stderr, flush=True)
            digest = await _guarded(measure_digest(root, pg), _env("BENCH_DIGEST_TIMEOUT", 600)) or []
            bookkeeping = None
            if pg is not None:
                print("  bookkeeping phase (tests/bench_bookkeeping.py)", file=sys.stderr, flush=True)
                pg.psql('CREATE DATABASE "bench_bookkeeping"')
                bookkeeping = await _guarded(bench_bookkeeping.bench(pg.url("bench_bookkeeping")))
        finally:
            if pg is not None:
                pg.stop()
    report(summaries, memory, broadcast, digest, time.perf_counter() - started, trust=trust, bookkeeping=bookkeeping)


async def _guarded(phase: Any, within: float | None = None) -> Any:
    """A phase that fails (or overruns `within` seconds) says why and lets the rest of the run print."""
    try:
        return await asyncio.wait_for(phase, within)
    except Exception as exc:  # noqa: BLE001 - a benchmark reports what it saw
        print(f"  phase failed: {exc.__class__.__name__}: {exc}", file=sys.stderr, flush=True)
        return None


def report(
    summaries: list[Summary],
    memory: Memory | None,
    broadcast: Broadcast | None,
    digest: list[Any],
    seconds: float,
    *,
    trust: bench_trust.TrustRun | None = None,
    bookkeeping: bench_bookkeeping.Bookkeeping | None = None,
) -> None:
    repeats = int(_env("BENCH_REPEATS", 3))
    print()
    print(
        f"Message turns, median of {repeats} interleaved repeats of up to {int(_env('BENCH_TURNS', 300))} turns per "
        f"row; each server in its own process; loopback connector."
    )
    print(
        "CPU ms/turn: the server process's utime+stime per measured turn; driver ms: this process's (driver and\n"
        "connector); vs floor: the median of each repeat's turns/s against the floor's just before and after\n"
        "it, at the same concurrency; vs stock: against the stock echo's median; failed: answers that were not 2xx\n"
        "(or not a card, for a card action) plus replies that never reached the connector; pre-empted: the\n"
        "server's involuntary context switches a turn, over all its threads (work handed between threads or\n"
        "processes on two cores shows here, and costs CPU as well as time)."
    )
    print(rows_table(summaries))
    print()
    if memory:
        print(
            f"RSS of the SQLite app: {memory.before_kb / 1024:.1f} MiB before, {memory.after_kb / 1024:.1f} MiB after "
            f"{memory.turns:,} mixed turns at c=10 ({memory.seconds:.0f} s): {memory.growth:+.1f}%"
        )
    else:
        print("RSS: not measured (see above)")
    print(broadcast_lines(broadcast) if broadcast else "Broadcast: not measured (see above)")
    print(bench_trust.lines(trust) if trust else "Trust publish: not measured (see above; it needs PostgreSQL)")
    print(f"Weekly digest over {bench_digest.ROWS:,} incidents (median of {bench_digest.RUNS} runs):")
    for label, plain_ms, digest_ms, _trend in digest:
        ratio = digest_ms / plain_ms
        print(f"  {label:<11} one GROUP BY {plain_ms:8.1f} ms, whole digest {digest_ms:8.1f} ms: {ratio:.1f}x")
    print(bench_bookkeeping.lines(bookkeeping) if bookkeeping else "Bookkeeping: not measured (it needs PostgreSQL)")
    print()
    print("Targets (issue 17):")
    for target in targets(summaries, memory, broadcast, digest):
        print(target.line())
    for line in claim_bounds(summaries):
        print(line)
    print("Targets (issue 18):")
    for what, measured, ok in bench_trust.targets(trust):
        print(Target(what, measured, ok).line())
    print(f"\n`make bench` took {seconds / 60:.1f} minutes.")


def run() -> None:
    asyncio.run(main())


if __name__ == "__main__":
    run()
