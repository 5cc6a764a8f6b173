"""A local Bot Connector: records everything the bot sends and can fail on demand."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Sent:
    """One call the bot made to the connector."""

    op: str  # send | reply | update | delete | create_conversation
    conversation_id: str
    activity: dict[str, Any]
    activity_id: str | None = None

    @property
    def text(self) -> str:
        return self.activity.get("text") or ""

    @property
    def cards(self) -> list[dict[str, Any]]:
        return [
            a["content"]
            for a in self.activity.get("attachments") or []
            if a.get("contentType") == "application/vnd.microsoft.card.adaptive"
        ]

    @property
    def card(self) -> dict[str, Any] | None:
        cards = self.cards
        return cards[0] if cards else None


@dataclass
class Hang:
    """Calls matching `predicate` are held, unanswered, until `release()`: a process stuck on the connector."""

    predicate: Callable[[Sent], bool]
    held: list[Sent] = field(default_factory=list)
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def arrived(self, count: int = 1, within: float = 30.0) -> list[Sent]:
        """Wait until `count` matching calls are being held; fails the test after `within` seconds."""

        async def _wait() -> list[Sent]:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.held) >= count)
                return list(self.held)

        try:
            return await asyncio.wait_for(_wait(), within)
        except TimeoutError:
            raise AssertionError(f"only {len(self.held)} of {count} expected calls reached the connector") from None

    def release(self) -> None:
        """Answer the held calls (and any later match) as usual."""
        self._released.set()

    def matches(self, sent: Sent) -> bool:
        return not self._released.is_set() and self.predicate(sent)

    async def hold(self, sent: Sent) -> None:
        async with self._changed:
            self.held.append(sent)
            self._changed.notify_all()
        await self._released.wait()


@dataclass
class Upload:
    """One file the bot PUT to an upload session URL (as OneDrive's upload session answers a Teams bot)."""

    session: str
    content_range: str | None
    body: bytes


@dataclass
class Fault:
    status: int
    times: int
    headers: dict[str, str] = field(default_factory=dict)
    conversation_id: str | None = None


class RecordingConnector:
    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.faults: list[Fault] = []
        self.hangs: list[Hang] = []
        self.failed: list[tuple[int, str]] = []
        self.created: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []  # the Authorization header of every call, in order
        self.uploads: list[Upload] = []
        self._changed = asyncio.Condition()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application(middlewares=[self._note_authorization])
        app.router.add_post("/v3/conversations", self._create_conversation)
        app.router.add_post("/v3/conversations/{cid}/activities", self._send)
        app.router.add_post("/v3/conversations/{cid}/activities/{aid}", self._reply)
        app.router.add_put("/v3/conversations/{cid}/activities/{aid}", self._update)
        app.router.add_delete("/v3/conversations/{cid}/activities/{aid}", self._delete)
        app.router.add_put("/upload/{session}", self._upload)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001
        self.url = f"http://127.0.0.1:{port}/"

    @web.middleware
    async def _note_authorization(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.authorizations.append(request.headers.get("Authorization"))
        return await handler(request)

    async def stop(self) -> None:
        for hang in self.hangs:
            hang.release()  # a held handler would otherwise keep the server's shutdown waiting
        if self._runner:
            await self._runner.cleanup()

    def fail_next(
        self, status: int, times: int = 1, *, headers: dict[str, str] | None = None, conversation_id: str | None = None
    ) -> None:
        """The next `times` sends (to one conversation, or any) get this status instead of success."""
        self.faults.append(Fault(status, times, headers or {}, conversation_id))

    def hang_when(self, predicate: Callable[[Sent], bool]) -> Hang:
        """Accept matching calls but do not answer them until the returned Hang is released."""
        hang = Hang(predicate)
        self.hangs.append(hang)
        return hang

    def to(self, conversation_id: str) -> list[Sent]:
        return [s for s in self.sent if s.conversation_id == conversation_id]

    async def wait_for(self, predicate: Callable[[list[Sent]], Any], within: float = 10.0) -> Any:
        """Wait until predicate(sent) is truthy; fails the test after `within` seconds with what was sent."""

        async def _wait() -> Any:
            async with self._changed:
                while not (result := predicate(self.sent)):
                    await self._changed.wait()
                return result

        try:
            return await asyncio.wait_for(_wait(), within)
        except TimeoutError:
            summary = [(s.op, s.conversation_id, s.text[:60]) for s in self.sent]
            raise AssertionError(f"connector never saw what was expected; it saw {summary}") from None

    async def _record(self, sent: Sent) -> web.Response:
        for hang in self.hangs:
            if hang.matches(sent):
                await hang.hold(sent)
        for fault in self.faults:
            if fault.times > 0 and fault.conversation_id in (None, sent.conversation_id):
                fault.times -= 1
                self.failed.append((fault.status, sent.conversation_id))
                return web.json_response(
                    {"error": {"code": "Injected", "message": "injected fault"}},
                    status=fault.status,
                    headers=fault.headers,
                )
        sent.activity_id = sent.activity_id or f"act-{next(self._ids)}"
        async with self._changed:
            self.sent.append(sent)
            self._changed.notify_all()
        return web.json_response({"id": sent.activity_id})

    async def _send(self, request: web.Request) -> web.Response:
        return await self._record(Sent("send", request.match_info["cid"], await request.json()))

    async def _reply(self, request: web.Request) -> web.Response:
        return await self._record(Sent("reply", request.match_info["cid"], await request.json()))

    async def _update(self, request: web.Request) -> web.Response:
        sent = Sent("update", request.match_info["cid"], await request.json(), request.match_info["aid"])
        return await self._record(sent)

    async def _delete(self, request: web.Request) -> web.Response:
        return await self._record(Sent("delete", request.match_info["cid"], {}, request.match_info["aid"]))

    def upload_url(self, session: str) -> str:
        """An upload session URL as Teams puts in a fileConsent invoke's uploadInfo, served here."""
        return f"{self.url}upload/{session}"

    async def _upload(self, request: web.Request) -> web.Response:
        body = await request.read()
        upload = Upload(request.match_info["session"], request.headers.get("Content-Range"), body)
        async with self._changed:
            self.uploads.append(upload)
            self._changed.notify_all()
        # OneDrive answers the last range of an upload session with the new driveItem.
        return web.json_response(
            {"id": f"item-{upload.session}", "name": upload.session, "size": len(body)}, status=201
        )

    async def _create_conversation(self, request: web.Request) -> web.Response:
        body = await request.json()
        conversation_id = f"a:created-{next(self._ids)}"
        self.created.append(body)
        return web.json_response({"id": conversation_id, "activityId": None})
