"""SQLite's one writer goes to people's turns before background work.

On SQLite every write transaction of a process borrows the one writer connection (storage.db.create_engine). Its
pool lent it first come, first served, so a wave of background work (two hundred AUP deliveries falling due
together, each a handful of short transactions, eight at once) queued ahead of every turn's claim and finish: at ten
`help` turns at once, a turn's median went from about 7 ms to 89 ms while the wave lasted (16 ms with this queue;
the README's performance section has the figures).

Here the pool's queue hands the writer, when it comes back, to a waiting turn before any waiting background work.
Background work is whatever runs under `background()` (the work runner marks its tasks so); everything else is a
turn. A background waiter is passed over only while it is younger than PATIENCE_SECONDS: after that it takes its
turn in order of arrival, so background work, an urgent alert's send among it, always goes on under any load.
PostgreSQL has a pool of connections and no single writer; it keeps SQLAlchemy's own queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.util import await_only
from sqlalchemy.util.queue import AsyncAdaptedQueue, Empty, Full

PATIENCE_SECONDS = 0.5  # the longest background work gives way to turns before it is served in its place in line

_background: ContextVar[bool] = ContextVar("esafety_background_writes", default=False)


@contextlib.contextmanager
def background(on: bool = True) -> Iterator[None]:
    """Writes in this block, and in any task it starts, wait for the writer behind people's turns (or, `on` False,
    as a turn's do)."""
    token = _background.set(on)
    try:
        yield
    finally:
        _background.reset(token)


def is_background() -> bool:
    return _background.get()


class TurnsFirstQueue(AsyncAdaptedQueue[Any]):
    """The pool's queue of idle connections, handing a returned one straight to the waiter who should have it next.

    A direct hand-over, rather than waking a waiter to take it from the queue, means nobody can take a connection
    from under the one it was meant for. Used on the event loop's thread only, as SQLAlchemy's asyncio queue is.
    """

    patience = PATIENCE_SECONDS
    clock: Callable[[], float] = staticmethod(time.monotonic)

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        super().__init__(maxsize, use_lifo)
        self._idle: deque[Any] = deque()
        self._turns: deque[asyncio.Future[Any]] = deque()
        self._background: deque[tuple[float, asyncio.Future[Any]]] = deque()

    def empty(self) -> bool:
        return not self._idle

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._idle)

    def qsize(self) -> int:
        return len(self._idle)

    def waiting(self) -> tuple[int, int]:
        """How many turns and how many pieces of background work are waiting for a connection."""
        return (
            sum(not f.done() for f in self._turns),
            sum(not f.done() for _, f in self._background),
        )

    def put_nowait(self, item: Any) -> None:  # noqa: ANN401 - the pool's connection record
        waiter = self._next()
        if waiter is not None:
            waiter.set_result(item)
            return
        if self.full():
            raise Full()
        self._idle.append(item)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:  # noqa: ANN401
        self.put_nowait(item)  # the pool never holds more than it lent, so a put never has to wait for room

    def get_nowait(self) -> Any:  # noqa: ANN401
        if not self._idle:
            raise Empty()
        return self._idle.popleft() if not self.use_lifo else self._idle.pop()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:  # noqa: ANN401
        if self._idle or not block:
            return self.get_nowait()
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if is_background():
            self._background.append((self.clock(), waiter))
        else:
            self._turns.append(waiter)
        try:
            return await_only(self._wait(waiter, timeout))
        except TimeoutError as exc:
            raise Empty() from exc

    async def _wait(self, waiter: asyncio.Future[Any], seconds: float | None) -> Any:  # noqa: ANN401
        try:
            async with asyncio.timeout(seconds):
                return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.put_nowait(waiter.result())  # handed over just as its waiter gave up: to the next one
            else:
                waiter.cancel()  # passed over from now on
            raise

    def _next(self) -> asyncio.Future[Any] | None:
        while self._turns and self._turns[0].done():
            self._turns.popleft()
        while self._background and self._background[0][1].done():
            self._background.popleft()
        if self._background and (not self._turns or self.clock() - self._background[0][0] >= self.patience):
            return self._background.popleft()[1]
        if self._turns:
            return self._turns.popleft()
        return None


class TurnsFirstPool(AsyncAdaptedQueuePool):
    """SQLite's writer pool (storage.db.create_engine): SQLAlchemy's asyncio pool with the queue above."""

    _queue_class = TurnsFirstQueue


def writer_queue(pool: Any) -> TurnsFirstQueue | None:  # noqa: ANN401 - any SQLAlchemy pool
    """The writer pool's queue (the tests watch who waits on it); None for a pool of another kind."""
    queue = getattr(pool, "_pool", None)
    return queue if isinstance(queue, TurnsFirstQueue) else None
