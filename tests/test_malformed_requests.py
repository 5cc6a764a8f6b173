"""A client's mistakes get a 4xx with a reason, never a 5xx, and nothing a client sends grows the app's memory.

The fuzz posts twenty thousand malformed activities at the real app over HTTP: JSON the parser refuses (deep
nesting, huge integers, bad UTF-8, lone surrogates), wrong types in every field, missing fields, very long strings,
and a different serviceUrl each time. The harness runs the app in this process, so this process's RSS is the app's.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import yarl
from aiohttp import web

from tests.support.harness import Harness
from tests.support.teams import TeamsUser

TOTAL = 20_000
ACCEPTED_EVERY = 80
CONCURRENCY = 16
LONG = 100_000  # characters: under the 256 KB body limit, far over any field's
SENDER = "00000000-0000-4000-8000-000000000009"  # Leah Brooks in the demo school
WRONG_VALUES: list[Any] = [0, -1, 1.5, True, None, [], {}, [1, "a"], {"x": {"y": 1}}, "", "x"]


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.fixture
async def sink() -> AsyncIterator[Counter]:
    """A Bot Connector at every path that answers every call and keeps only counts (the recording one keeps all)."""
    seen: Counter = Counter()

    async def accept(request: web.Request) -> web.Response:
        body = await request.read()
        seen["calls"] += 1
        seen["went wrong"] += b"something went wrong" in body
        return web.json_response({"id": "fuzz"})

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    seen["port"] = site._server.sockets[0].getsockname()[1]  # noqa: SLF001
    try:
        yield seen
    finally:
        await runner.cleanup()


def _paths(value: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield (*prefix, key)
            yield from _paths(inner, (*prefix, key))


def _set(activity: dict[str, Any], path: tuple[str, ...], value: Any, *, delete: bool = False) -> dict[str, Any]:
    changed = copy.deepcopy(activity)
    target = changed
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return changed


def _nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def _bases(user: TeamsUser) -> list[dict[str, Any]]:
    assert user.aad_id == SENDER
    channel = user.message("help")
    channel["conversation"] = {
        "id": "19:fuzz@thread.tacv2;messageid=1",
        "conversationType": "channel",
        "tenantId": user.tenant_id,
        "isGroup": True,
    }
    channel["channelData"] = {
        "tenant": {"id": user.tenant_id},
        "team": {"id": "19:team@thread.tacv2"},
        "channel": {"id": "19:fuzz@thread.tacv2"},
        "eventType": "teamMemberAdded",
    }
    channel["type"], channel["membersAdded"] = "conversationUpdate", [{"id": "28:esafety-bot"}]
    return [
        user.message("help"),
        user.card_execute("incident.view", {"incident_id": 1}),
        user.card_submit({"verb": "incident.view", "incident_id": 1}),
        channel,
    ]


def corpus(user: TeamsUser) -> list[Any]:
    """Every kind of malformed body: dicts are posted as JSON (with a fresh id and serviceUrl), bytes as they are."""
    bodies: list[Any] = []
    for base in _bases(user):
        for path in _paths(base):
            for wrong in WRONG_VALUES:
                bodies.append(_set(base, path, wrong))
            bodies.append(_set(base, path, None, delete=True))
            bodies.append(_set(base, path, "x" * LONG))
            bodies.append(_set(base, path, "a\ud800b"))
            bodies.append(_set(base, path, "a\x00b"))
            bodies.append(_set(base, path, json.loads(_nested(80))))
        for url in (
            "ftp://example.com/",
            "http://",
            "not a url",
            "http://[::1",
            "http://exa mple.com/",
            "javascript:alert(1)",
            "http://127.0.0.1:99999/",
            "//no-scheme/",
            "http://" + "h" * 3000,
        ):
            bodies.append(_set(base, ("serviceUrl",), url))
    message = json.dumps(user.message("help"))
    bodies += [
        _nested(1_001).encode(),
        _nested(100_000).encode(),
        ('{"a":' * 20_000 + "1" + "}" * 20_000).encode(),
        message.replace('"text": "help"', '"value": ' + _nested(990)).encode(),
        message.replace('"text": "help"', '"value": ' + "9" * 4_301).encode(),
        message.replace('"text": "help"', '"value": -' + "9" * 100_000).encode(),
        message.replace('"text": "help"', '"id2": ' + "1" * 5_000).encode(),
        message.replace('"text": "help"', '"value": NaN').encode(),
        message.replace('"text": "help"', '"value": Infinity').encode(),
        message.replace("help", "\\ud800").encode(),
        message.replace("help", "\\udfff\\ud800").encode(),
        message.replace('"text"', '"\\ud800"').encode(),
        message.replace("help", "\\u0000").encode(),
        message.encode().replace(b"help", b"h\xffp"),
        message.encode().replace(b"help", b"\xc0\xaf"),
        message.encode().replace(b"help", b"\xe2\x82"),
        message.encode()[:-7],
        b"",
        b"null",
        b"[]",
        b'"str"',
        b"123",
        b"{",
        b'{"type": "message"',
        json.dumps({"type": "message", "text": "x" * 300_000}).encode(),
    ]
    return bodies


def _encode(harness: Harness, body: Any) -> bytes:
    """The body as sent, with placeholders that _fuzz fills in differently for every request."""
    if not isinstance(body, dict):
        return body
    body = copy.copy(body)
    if isinstance(body.get("id"), str):
        body["id"] = "@ID@"  # each request its own activity, so none is skipped as a redelivery
    if body.get("serviceUrl") == harness.connector.url:
        body["serviceUrl"] = "@URL@"  # a different one every time
    sender = body.get("from")
    if isinstance(sender, dict) and sender.get("aadObjectId") == SENDER:
        body["from"] = {**sender, "aadObjectId": "@PERSON@"}  # a different person each time: a new reference
    return json.dumps(body).encode("utf-8", "surrogatepass")


class _Connection:
    """One keep-alive HTTP/1.1 connection to the app: plain requests on a socket, so that twenty thousand of them
    cost the app's time rather than a client library's (the app runs in this same process)."""

    def __init__(self, harness: Harness) -> None:
        self._url = yarl.URL(harness.url)
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, data: bytes) -> tuple[int, str]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self._url.host, self._url.port)
        reader, writer = self._streams
        writer.write(
            b"POST /api/messages HTTP/1.1\r\nHost: app\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%b" % (len(data), data)
        )
        status = int((await reader.readline()).split()[1])
        length, closing = 0, False
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            length = int(value) if name.lower() == "content-length" else length
            closing = closing or (name.lower() == "connection" and "close" in value.lower())
        text = (await reader.readexactly(length)).decode("utf-8", "replace")
        if closing:
            await self.close()
        return status, text

    async def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


async def _fuzz(harness: Harness, bodies: list[bytes], start: int, sink_port: int) -> list[int]:
    """Post every body (CONCURRENCY at a time), each with its own id, serviceUrl and sender; their statuses, in
    order. Fails on any 5xx."""
    statuses = [0] * len(bodies)
    failures: list[str] = []

    async def worker(offset: int) -> None:
        connection = _Connection(harness)
        try:
            for position in range(offset, len(bodies), CONCURRENCY):
                index, data = start + position, bodies[position]
                if b'"@' in data:
                    data = (
                        data.replace(b'"@ID@"', b'"fuzz-%d"' % index)
                        .replace(b'"@URL@"', b'"http://127.0.0.1:%d/tenant-%d/"' % (sink_port, index))
                        .replace(b'"@PERSON@"', b'"%b-%d"' % (SENDER.encode(), index))
                    )
                oversized = len(data) > harness.settings.max_body_bytes
                if oversized:  # the app answers 413 without reading the rest: a connection of its own
                    await connection.close()
                status, answer = await connection.post(data)
                if oversized:
                    await connection.close()
                statuses[position] = status
                if status >= 500 and len(failures) < 5:
                    failures.append(f"{status} for {data[:300]!r}: {answer[:200]}")
        finally:
            await connection.close()

    await asyncio.gather(*(worker(offset) for offset in range(CONCURRENCY)))
    assert not failures, failures
    return statuses


async def test_twenty_thousand_malformed_requests_get_no_5xx_and_do_not_grow_memory(
    harness: Harness, sink: Counter
) -> None:
    leah = harness.user("Leah Brooks")
    bodies = [_encode(harness, body) for body in corpus(leah)]
    # Long display names are accepted (and stored shortened): they are what a cache keyed by person could hoard.
    long_names = [
        _encode(harness, _set(leah.message("help"), path, "Leah " + "n" * 150_000))
        for path in (("from", "name"), ("recipient", "name"), ("conversation", "name"))
    ]
    # The warm-up posts each body once; most are refused at the door, with a reason. The measured run repeats those
    # refused bodies, with a turn from a new person with a long name as one request in ACCEPTED_EVERY (a turn costs a
    # few database writes, so there cannot be thousands of them in a bounded time).
    warm = await _fuzz(harness, bodies + long_names, 0, sink["port"])
    refused = [body for body, status in zip(bodies, warm, strict=False) if status != 200]
    assert len(refused) > len(bodies) // 2 and warm[-len(long_names) :] == [200] * len(long_names)
    measured = [
        long_names[(i // ACCEPTED_EVERY) % len(long_names)] if i % ACCEPTED_EVERY == 0 else refused[i % len(refused)]
        for i in range(TOTAL)
    ]
    before = rss_kib()
    statuses = Counter(await _fuzz(harness, measured, len(bodies), sink["port"]))
    after = rss_kib()
    assert sum(statuses.values()) == TOTAL and all(status < 500 for status in statuses), statuses
    assert after <= before * 1.10, f"RSS grew from {before} KiB to {after} KiB over {TOTAL} requests"
    assert sink["calls"] >= TOTAL // ACCEPTED_EVERY, "the turns the door let in were answered"
    assert sink["went wrong"] == 0, "an activity the door let in made a turn fail"
    assert _greets((await harness.user("Leah Brooks").says("help")).cards, "Leah")


def _greets(cards: list[dict[str, Any]], first_name: str) -> bool:
    return any(card["body"][0].get("text", "").startswith(f"Hello {first_name}") for card in cards)


async def _answer(harness: Harness, data: bytes) -> tuple[int, dict[str, Any]]:
    async with harness.http.post(
        f"{harness.url}/api/messages", data=data, headers={"Content-Type": "application/json"}
    ) as response:
        return response.status, await response.json(content_type=None)


async def test_json_the_parser_refuses_is_400_with_a_reason(harness: Harness) -> None:
    message = json.dumps(harness.user("Leah Brooks").message("help"))
    cases = {
        _nested(50_000).encode(): "nested",
        message.replace('"text": "help"', '"value": ' + _nested(200)).encode(): "nested",
        message.replace('"text": "help"', '"value": ' + "7" * 4_400).encode(): "integer is too long",
        message.replace('"text": "help"', '"value": NaN').encode(): "not valid JSON",
        message.encode().replace(b"help", b"h\xffp"): "not valid JSON",
        message.replace("help", "\\ud800").encode(): "invalid Unicode",
        message.encode().replace(b"help", "\ud800".encode("utf-8", "surrogatepass")): "invalid Unicode",
        message.replace('"text": "help"', '"value": ' + _nested(65)).encode(): "nested",
        message.replace("help", "\\u0000").encode(): "NUL",
    }
    for data, reason in cases.items():
        status, answer = await _answer(harness, data)
        assert status == 400 and reason in answer["error"], (data[:80], status, answer)
    assert harness.connector.sent == []


async def test_wrong_types_and_absurd_ids_are_400_naming_the_field(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    cases = [
        (_set(leah.message("help"), ("channelData",), "oops"), "'channelData' must be an object"),
        (_set(leah.message("help"), ("from", "name"), 7), "'from.name' must be a string"),
        (_set(leah.message("help"), ("conversation", "id"), "a:" + "x" * 5_000), "'conversation.id' is longer"),
        (_set(leah.message("help"), ("id",), "x" * 1_000), "'id' is longer"),
        (_set(leah.message("help"), ("serviceUrl",), "http://[::1"), "'serviceUrl' is not a valid URL"),
        (_set(leah.message("help"), ("from",), None, delete=True), "'from.id'"),
    ]
    for body, reason in cases:
        status, answer = await _answer(harness, json.dumps(body).encode())
        assert status == 400 and reason in answer["error"], (reason, status, answer)
    assert harness.connector.sent == []


async def test_a_very_long_display_name_is_answered_and_not_stored(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    long_name = _set(leah.message("help"), ("from", "name"), "Leah " + "B" * 150_000)
    reply = await leah.post(long_name, leah.conversation_id)
    assert reply.status == 200 and _greets(reply.cards, "Leah")
    saved = await harness.parts.refs.get(harness.school.id, "person", harness.person_id("Leah Brooks"))
    assert saved is not None and saved.name is None, "display names are not kept in conversation references"
    assert "BBBB" not in json.dumps(saved.reference) and len(json.dumps(saved.reference)) < 2_000


async def test_an_invoke_this_app_does_not_offer_is_answered_not_a_server_error(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    reply = await leah.post(leah.invoke("composeExtension/query", {}), leah.conversation_id)
    assert reply.status == 200 and "can't do that" in reply.invoke_message


async def test_teams_health_check_invoke_is_answered(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    reply = await leah.post(leah.invoke("healthCheck", {}), leah.conversation_id)
    assert reply.status == 200
    assert reply.body["healthResults"]["success"] is True
    assert harness.connector.sent == []
