"""Outbound Bot Connector calls: a silent endpoint delays only its own replies, strange addresses get nothing, and
many service URLs share a bounded pool. Over HTTP with the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from botbuilder.schema import Activity, ActivityTypes

from adapters.clock import SettableClock
from adapters.connector import ProactiveSender
from tests.support.auth import IdentityProvider
from tests.support.harness import Harness, start_harness
from tests.support.teams import TeamsUser

# More replies held at once than the SDK's default thread pool had threads (6 on a 2-core box), and more than 8.
STALLED_TURNS = 12
SERVICE_URLS = 500


class LocalConnector:
    """A loopback server in place of a Bot Connector, answering every path; optionally it holds every request
    unanswered until released (it accepted the connection and never replies)."""

    def __init__(self, *, silent: bool = False) -> None:
        self.silent = silent
        self.url = ""
        self.port = 0
        self.sent: list[Any] = []  # what TeamsUser reads for the replies it got; these are never recorded there
        self.requests: list[tuple[str, str, dict[str, Any]]] = []  # (path, client address, body)
        self.peers: set[tuple[str, int]] = set()
        self._released = asyncio.Event()
        self._changed = asyncio.Condition()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001
        self.url = f"http://127.0.0.1:{self.port}/"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        peer = request.transport.get_extra_info("peername")[:2]
        async with self._changed:
            self.requests.append((request.path, f"{peer[0]}:{peer[1]}", body))
            self.peers.add(peer)
            self._changed.notify_all()
        if self.silent:
            await self._released.wait()
        return web.json_response({"id": f"act-{next(self._ids)}"})

    def bodies(self, predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        return [body for _, _, body in self.requests if predicate(body)]

    async def holding(self, count: int, predicate: Callable[[dict[str, Any]], bool], within: float = 60.0) -> None:
        """Wait until `count` matching requests have arrived; fails the test after `within` seconds."""

        async def _wait() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.bodies(predicate)) >= count)

        try:
            await asyncio.wait_for(_wait(), within)
        except TimeoutError:
            found = len(self.bodies(predicate))
            raise AssertionError(f"only {found} of {count} expected requests reached the connector") from None

    def release(self) -> None:
        self._released.set()

    async def stop(self) -> None:
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()


@contextlib.asynccontextmanager
async def local_connector(*, silent: bool = False) -> AsyncIterator[LocalConnector]:
    connector = LocalConnector(silent=silent)
    await connector.start()
    try:
        yield connector
    finally:
        await connector.stop()


class Elsewhere:
    """Stands in for a connector at an address the app must refuse; nothing can be recorded there."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sent: list[Any] = []


def person_at(harness: Harness, name: str, connector: Any, token: str | None = None) -> TeamsUser:
    """A demo person whose Teams activities carry `connector.url` as their serviceUrl."""
    return TeamsUser(
        harness.http,
        harness.url,
        connector,
        aad_id=harness.person_id(name),
        name=name,
        tenant_id=harness.school.tenant_id,
        token=token or harness.token,
    )


def help_card_for(first_name: str) -> Callable[[dict[str, Any]], bool]:
    def matches(activity: dict[str, Any]) -> bool:
        return any(
            a.get("contentType") == "application/vnd.microsoft.card.adaptive"
            and str(((a.get("content") or {}).get("body") or [{}])[0].get("text")).startswith(f"Hello {first_name}")
            for a in activity.get("attachments") or []
        )

    return matches


async def test_a_connector_that_never_answers_delays_only_its_own_replies(harness: Harness) -> None:
    async with local_connector(silent=True) as silent:
        leah = person_at(harness, "Leah Brooks", silent)
        stalled = [asyncio.create_task(leah.says("help")) for _ in range(STALLED_TURNS)]
        leahs_help = help_card_for("Leah")
        await silent.holding(STALLED_TURNS, leahs_help)  # each of Leah's replies is waiting on the silent connector

        tom = asyncio.create_task(harness.user("Tom Reed").says("help"))
        done, _ = await asyncio.wait({tom, *stalled}, return_when=asyncio.FIRST_COMPLETED)

        assert tom in done, "Tom's help waited behind replies to a connector that never answers"
        assert not any(turn.done() for turn in stalled), "Leah's replies were never answered, so none can be done"
        reply = tom.result()
        assert reply.status == 200
        assert any(help_card_for("Tom")(sent.activity) for sent in reply.sent)

        silent.release()  # the connector answers at last: Leah's turns finish as usual
        for leahs in await asyncio.gather(*stalled):
            assert leahs.status == 200
        assert len(silent.bodies(leahs_help)) == STALLED_TURNS


async def test_a_reply_is_addressed_to_its_conversation_and_one_that_expects_replies_gets_them_in_its_answer(
    harness: Harness,
) -> None:
    """What the bot sends is addressed from the activity it answers (adapters.connector's TurnContext copies each
    activity shallowly, where the SDK deep-copied it). An activity sent with deliveryMode expectReplies gets its
    replies in the HTTP answer, and the connector gets none of them."""
    tom = harness.user("Tom Reed")
    asked = tom.message("help")
    reply = await tom.post(asked, tom.conversation_id)
    [card] = [sent for sent in reply.sent if help_card_for("Tom")(sent.activity)]
    assert (card.op, card.conversation_id) == ("reply", tom.conversation_id)
    sent = card.activity
    assert sent["replyToId"] == asked["id"] and sent["conversation"]["id"] == tom.conversation_id
    assert sent["from"]["id"] == asked["recipient"]["id"] and sent["recipient"]["id"] == asked["from"]["id"]
    assert (sent["type"], sent["inputHint"], sent["channelId"]) == ("message", "acceptingInput", "msteams")
    assert (sent.get("locale"), sent["serviceUrl"]) == (asked.get("locale"), asked["serviceUrl"])
    assert sent["recipient"] == asked["from"] and sent["from"] == asked["recipient"]
    # As the SDK sends it: its model reads a conversation's tenant from "tenantID", so Teams' "tenantId" stays behind.
    assert sent["conversation"] == {k: v for k, v in asked["conversation"].items() if k != "tenantId"}

    expecting = {**tom.message("help"), "deliveryMode": "expectReplies"}
    answer = await tom.post(expecting, tom.conversation_id)
    # Only replies: the outbox may post Tom a card of its own meanwhile (the AUP he owes), as it would anyway.
    assert answer.status == 200 and [sent for sent in answer.sent if sent.op == "reply"] == []
    [buffered] = [a for a in answer.body["activities"] if help_card_for("Tom")(a)]
    assert buffered["replyToId"] == expecting["id"] and buffered["inputHint"] == "acceptingInput"
    assert buffered["attachments"] == sent["attachments"]


async def test_a_connector_error_on_a_reply_reaches_the_turn_error_handler(harness: Harness) -> None:
    tom = harness.user("Tom Reed")
    # The help card draws 502 on its first try and on each of its three retries; then the apology goes through.
    attempts = 1 + harness.settings.connector_retries
    harness.connector.fail_next(502, times=attempts, headers={"Retry-After": "0"}, conversation_id=tom.conversation_id)
    reply = await tom.says("help")
    assert reply.status == 200
    assert harness.connector.failed == [(502, tom.conversation_id)] * attempts
    assert any(text.startswith("Sorry, something went wrong on my side") for text in reply.texts)


async def test_a_service_url_outside_the_bot_connector_gets_no_request_and_no_5xx(harness: Harness) -> None:
    async with local_connector() as trap:
        addresses = [
            "https://evil.example/",
            "https://smba.trafficmanager.net.evil.example/teams/",
            "http://smba.trafficmanager.net/teams/",  # Microsoft's host, but not over https
            f"http://0.0.0.0:{trap.port}/",  # reaches this machine's loopback, but is not a loopback address
        ]
        for address in addresses:
            reply = await person_at(harness, "Leah Brooks", Elsewhere(address)).says("help")
            assert reply.status == 400, address
            assert "'serviceUrl' is not a Bot Connector address" in reply.body["error"]
        assert harness.connector.sent == [] and harness.connector.failed == []
        assert trap.requests == []
        saved = await harness.parts.refs.get(harness.school.id, "person", harness.person_id("Leah Brooks"))
        assert saved is None, "a refused activity must not be processed at all"

        # A stored conversation reference with such an address: the queued message is not sent there either.
        leah = harness.person_id("Leah Brooks")
        await harness.parts.refs.save(
            harness.school.id,
            "person",
            leah,
            {
                "bot": {"id": "28:esafety-bot"},
                "user": {"id": f"29:{leah}", "aadObjectId": leah},
                "conversation": {"id": f"a:personal-{leah}", "tenantId": harness.school.tenant_id},
                "channelId": "msteams",
                "serviceUrl": f"http://0.0.0.0:{trap.port}/",
            },
        )
        async with harness.parts.uow() as uow:
            await uow.notify.to_person(harness.school.id, leah, text="Checked and closed.")
        await harness.run_due_work()
        assert trap.requests == []
        assert harness.connector.sent == []


async def test_a_signed_activity_addressed_outside_the_bot_connector_is_refused_before_any_token_or_request(
    database_url: str, clock: SettableClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With authentication on, the SDK checks that the token vouches for the serviceUrl, then would reply there."""
    app_id, tenant = "6f1c2d3e-4a5b-4c6d-8e7f-901234567890", "00000000-0000-4000-8000-00000000d000"
    provider = IdentityProvider(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(provider.cert_path))  # msal fetches with `requests`
    provider.start()
    try:
        async with start_harness(
            database_url=database_url,
            clock=clock,
            var_dir=tmp_path / "var",
            features=[],
            dev=False,
            app_id=app_id,
            app_password="not-a-real-secret",
            app_tenant_id=tenant,
            app_type="SingleTenant",
            openid_metadata_url=provider.openid_url,
            token_issuer="https://api.botframework.com",
            login_url=provider.login_url(tenant),
            oauth_scope="https://api.botframework.com",
            validate_authority=False,
        ) as secured:
            evil = "https://evil.example/"
            signed = provider.token(audience=app_id, service_url=evil)
            reply = await person_at(secured, "Leah Brooks", Elsewhere(evil), signed).says("help")
            assert reply.status == 400
            assert provider.token_requests == [], "no token may be fetched for an address the bot will not use"
            assert secured.connector.sent == []

            # The same signer's activity addressed to this rig's (loopback) connector is answered as usual.
            signed = provider.token(audience=app_id, service_url=secured.connector.url)
            reply = await person_at(secured, "Leah Brooks", secured.connector, signed).says("help")
            assert reply.status == 200 and any(help_card_for("Leah")(sent.activity) for sent in reply.sent)
    finally:
        provider.stop()


async def test_many_service_urls_share_a_bounded_pool_of_clients_and_connections(harness: Harness) -> None:
    pool = harness.parts.adapter.client_pool
    sender = ProactiveSender(harness.parts.adapter, harness.settings.app_id)
    async with local_connector() as connector:
        urls = [f"{connector.url}region-{n}/" for n in range(SERVICE_URLS)]
        first = await sender.connector_for(urls[0])

        async def send(n: int) -> None:
            client = await sender.connector_for(urls[n])
            activity = Activity(type=ActivityTypes.message, text=f"message {n}")
            response = await client.conversations.send_to_conversation(f"a:chat-{n}", activity)
            assert response.id

        await asyncio.gather(*(send(n) for n in range(SERVICE_URLS)))

        paths = {path for path, _, _ in connector.requests}
        assert paths == {f"/region-{n}/v3/conversations/a:chat-{n}/activities" for n in range(SERVICE_URLS)}
        assert {body["text"] for _, _, body in connector.requests} == {f"message {n}" for n in range(SERVICE_URLS)}
        # 500 service URLs on one host: at most the per-host bound of sockets, and at most the LRU bound of clients.
        assert 1 <= len(connector.peers) <= harness.settings.connector_connections_per_host
        assert len(pool) == harness.settings.connector_clients < SERVICE_URLS
        # The first URL's client was evicted long ago: a fresh one is built, and the bound still holds. The old one
        # still works, as it must for a turn that was holding it.
        assert await sender.connector_for(urls[0]) is not first
        assert len(pool) == harness.settings.connector_clients
        assert (await first.conversations.send_to_conversation("a:chat-0", Activity(type="message", text="late"))).id
