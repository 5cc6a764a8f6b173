"""Runs durable work: claims due rows, calls the handler for their kind, retries with backoff."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
from typing import Any, Protocol

from bot.protocols import Clock, WorkHandler
from bot.work import MAX_ATTEMPTS, Done, GiveUp, NotYet, RetryLater, Then, WorkItem, backoff_delay, quiet_work
from storage.repos import WorkClaims
from storage.writer_queue import background

log = logging.getLogger(__name__)


class WorkObserver(Protocol):
    """Where the runner reports for the metrics endpoint (adapters.metrics.Metrics)."""

    def work_started(self, kind: str, late: dt.timedelta) -> None: ...

    def work_retried(self, kind: str) -> None: ...

    def work_gave_up(self, kind: str) -> None: ...


def default_worker_name(replica: str = "") -> str:
    return replica or f"{socket.gethostname()}:{os.getpid()}"


class WorkRunner:
    def __init__(
        self,
        claims: WorkClaims,
        clock: Clock,
        name: str,
        *,
        batch: int = 20,
        concurrency: int = 8,
        lease: dt.timedelta = dt.timedelta(minutes=2),
    ) -> None:
        self._claims = claims
        self._clock = clock
        self.name = name
        self._handlers: dict[str, WorkHandler] = {}
        self._leases: dict[str, dt.timedelta] = {}
        self._batch = batch
        self._lease = lease
        # Quiet sends (a broadcast's cards) run in slots of their own, apart from everything else: a concern's alert
        # never waits for a place behind cards, nor behind cards held up by a slow endpoint.
        self._slots = {True: asyncio.Semaphore(concurrency), False: asyncio.Semaphore(concurrency)}
        self._wake = asyncio.Event()
        self._urgent_queued = False
        self._in_hand = 0
        self._settled = asyncio.Condition()
        self._stopping = False
        self.observer: WorkObserver | None = None

    def register(self, kind: str, handler: WorkHandler, *, lease: dt.timedelta | None = None) -> None:
        """Handle items of this kind; `lease` is how long a claim lasts before another replica may retake it."""
        self._handlers[kind] = handler
        if lease is not None:
            self._leases[kind] = lease

    def wake(self, urgent: bool = True) -> None:
        """Look for due work now rather than at the next poll; `urgent`: some of it is not a quiet send, so look even
        with hands full of those."""
        self._urgent_queued = self._urgent_queued or urgent
        self._wake.set()

    async def run_once(self) -> int:
        """Claim and run every item due now, and any that fall due or are queued while these run; returns how many
        ran.

        Claiming goes on while items run (up to `batch` in hand), so a long item, such as a sweep that queues two
        thousand cards, does not hold back the sends it queues: each commit of work wakes this loop. With the hands
        full of quiet sends, urgent work is still claimed (up to another `batch` of it) as soon as it is queued.
        """
        with background():  # each item starts a task of its own here: they wait behind turns for SQLite's writer
            return await self._run_claimed()

    async def _run_claimed(self) -> int:
        total = 0
        running: dict[asyncio.Future[Any], bool] = {}  # each item's task, and whether it is a quiet send
        try:
            while not self._stopping:
                room = self._batch - len(running)
                urgent_room = self._batch - sum(not quiet for quiet in running.values())
                items: list[WorkItem] = []
                if room > 0:
                    self._urgent_queued = False  # this claim takes urgent work first
                    items = await self._claim(room)
                elif self._urgent_queued and urgent_room > 0:
                    # Hands full of quiet sends: urgent work queued since is taken as well (up to a batch of it), not
                    # left until a card has gone.
                    self._urgent_queued = False
                    items = await self._claim(urgent_room, urgent_only=True)
                running.update((asyncio.ensure_future(self._run(item)), item.quiet) for item in items)
                total += len(items)
                if not running:
                    return total
                if room > 0 and len(items) == room:
                    continue  # there may be more due: claim again while these run
                self._wake.clear()
                woken: asyncio.Future[Any] = asyncio.ensure_future(self._wake.wait())
                done, _ = await asyncio.wait({*running, woken}, return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
                for future in done:
                    running.pop(future, None)
        except asyncio.CancelledError:
            for future in running:  # shutdown's grace ran out: as before, the items in hand stop here
                future.cancel()
            raise
        # Stopping: what was claimed is finished, not left to wait out its lease.
        await asyncio.gather(*running, return_exceptions=True)
        return total

    async def _claim(self, room: int, *, urgent_only: bool = False) -> list[WorkItem]:
        self._in_hand += 1  # a claim under way counts as work in hand: it may be taking items right now
        try:
            items = await self._claims.claim(
                self.name, list(self._handlers), room, self._lease, self._leases, urgent_only=urgent_only
            )
            self._in_hand += len(items)
        finally:
            await self._release()
        return items

    async def _release(self) -> None:
        self._in_hand -= 1
        async with self._settled:
            self._settled.notify_all()

    async def run_until_settled(self) -> int:
        """Run what is due, and wait for anything this process already has in hand, until nothing is left."""
        total = 0
        while True:
            ran = await self.run_once()
            total += ran
            async with self._settled:
                in_hand = self._in_hand
                await self._settled.wait_for(lambda: self._in_hand == 0)
            if ran == 0 and in_hand == 0:
                return total

    async def run_forever(self, poll_seconds: float, grace_seconds: float = 20.0) -> None:
        """Poll for due work until cancelled; on cancel, claim nothing more but let items in hand finish."""
        while True:
            current = asyncio.ensure_future(self.run_once())
            try:
                await asyncio.shield(current)
            except asyncio.CancelledError:
                self._stopping = True
                if not current.done():
                    # Shutting down mid-pass: a half-finished item would wait out its lease; finish it instead.
                    await asyncio.wait({current}, timeout=grace_seconds)
                    current.cancel()
                raise
            except Exception:
                log.exception("work runner pass failed; trying again at the next poll")
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=poll_seconds)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _run(self, item: WorkItem) -> None:
        try:
            await self._run_one(item)
        finally:
            await self._release()

    async def _run_one(self, item: WorkItem) -> None:
        handler = self._handlers[item.kind]
        # A handler never outlives its claim: past the lease another replica may take the item, and two runs of one
        # send would be a duplicate. The margin leaves time to record the outcome.
        budget = self._leases.get(item.kind, self._lease).total_seconds() * 0.8
        async with self._slots[item.quiet]:
            if self.observer is not None:
                # Against the item's due time by the app's clock: how far behind the runner is, not how long it ran.
                self.observer.work_started(item.kind, self._clock.now() - item.run_at)
            try:
                async with asyncio.timeout(budget):
                    result = await handler(item)
            except NotYet as wait:
                await self._claims.retry(item, self.name, self._clock.now() + wait.after, wait.reason, counted=False)
            except RetryLater as retry:
                await self._retry(item, retry.reason, retry.after)
            except GiveUp as give_up:
                log.warning("work %s (%s) given up: %s", item.id, item.kind, give_up.reason)
                if self.observer is not None:
                    self.observer.work_gave_up(item.kind)
                await self._claims.finish(item, self.name, "failed", error=give_up.reason, then=give_up.then)
                self._queued(give_up.then)
            except TimeoutError:
                log.warning("work %s (%s) ran past its lease budget of %.0f s", item.id, item.kind, budget)
                await self._retry(item, f"took longer than {budget:.0f} s", None)
            except Exception as exc:  # noqa: BLE001 - any fault is retried, never lost
                log.exception("work %s (%s) failed", item.id, item.kind)
                await self._retry(item, f"{exc.__class__.__name__}: {exc}", None)
            else:
                if isinstance(result, Done):
                    await self._claims.finish(item, self.name, "done", result=result.result, then=result.then)
                    self._queued(result.then)
                else:
                    await self._claims.finish(
                        item, self.name, "done", result=result if isinstance(result, str) else None
                    )

    def _queued(self, then: tuple[Then, ...]) -> None:
        """Follow-up work (a send re-routed to the next people in line) is looked for at once, as any other queued."""
        if then:
            self.wake(urgent=any(not quiet_work(follow.kind, follow.payload) for follow in then))

    async def _retry(self, item: WorkItem, reason: str, after: dt.timedelta | None) -> None:
        if item.attempts >= MAX_ATTEMPTS:
            await self._claims.finish(item, self.name, "failed", error=f"gave up after {item.attempts} tries: {reason}")
            if self.observer is not None:
                self.observer.work_gave_up(item.kind)
            return
        if self.observer is not None:
            self.observer.work_retried(item.kind)
        delay = after if after is not None else backoff_delay(item.attempts)
        await self._claims.retry(item, self.name, self._clock.now() + delay, reason)
