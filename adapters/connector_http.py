"""The Bot Connector REST API over aiohttp: per-request timeouts, a bounded pool per host, bounded retries.

botframework-connector's msrest client sends with `requests` on the event loop's default thread pool, with a 100 s
timeout and three retries, so one endpoint that never answers held every thread and stalled unrelated replies for
minutes. This client keeps the SDK's types (Activity in, ResourceResponse out) and the SDK's credentials; only the
transport is ours. It keeps the SDK's retries on 408, 429 and 5xx (Retry-After honoured), but bounded in count and
in total time, and only for interactive calls: bulk sends (the outbox) retry durably, at the time Retry-After says.
Every send waits for Teams' per-tenant and per-conversation budget first (adapters.send_budget).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import ipaddress
import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Protocol
from urllib.parse import quote, urlsplit
from urllib.request import getproxies_environment, proxy_bypass

import aiohttp
import yarl
from botbuilder.schema import (
    Activity,
    ChannelAccount,
    ConversationParameters,
    ConversationResourceResponse,
    ErrorResponse,
    ErrorResponseException,
    ResourceResponse,
)
from botframework.connector.about import __version__ as SDK_VERSION
from botframework.connector.auth import AuthenticationConstants
from msrest.exceptions import ClientRequestError

from adapters.connector_json import from_json, to_json
from adapters.send_budget import SendBudget, is_bulk, is_quiet, tenant_of
from bot import json_text
from bot.work import parse_retry_after

log = logging.getLogger(__name__)

USER_AGENT = f"Microsoft-BotFramework/3.1 (BotBuilder Python/{SDK_VERSION})"  # what the SDK's client sends
TOKEN_THREADS = 2
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})  # what msrest's retry policy retried for the SDK
RETRIES = 3
RETRY_AFTER_CAP = 10.0  # a longer Retry-After is not waited out inside a call: the caller hears it at once
RETRY_TOTAL = 12.0  # no retry starts after this long: a reply still lands within the 15 s Teams waits for a turn
RETRY_BACKOFF = 0.5  # first wait when the answer has no Retry-After; doubled per retry, jittered

# Microsoft's documented Bot Connector addresses: Teams (public, GCC, GCC High, DoD) and the Bot Framework channels
# (public cloud and Azure Government). Anything else needs ESAFETY_CONNECTOR_HOSTS.
MICROSOFT_HOSTS = frozenset(
    {
        "smba.trafficmanager.net",
        "smba.infra.gcc.teams.microsoft.com",
        "smba.infra.gov.teams.microsoft.us",
        "smba.infra.dod.teams.microsoft.us",
    }
)
MICROSOFT_DOMAINS = ("*.botframework.com", "*.botframework.azure.us")


class ConnectorObserver(Protocol):
    """Where the transport reports for the metrics endpoint (adapters.metrics.Metrics)."""

    def connector_answered(self, status: int) -> None: ...

    def connector_retrying(self, status: int) -> None: ...


class ConnectorHTTPError(ErrorResponseException):
    """The Bot Connector answered with a status other than 2xx.

    It is also the SDK's ErrorResponseException, so SDK code that reads `error.error.code` (TeamsInfo's
    ConversationNotFound) and callers that read `response.status_code` keep working.
    """

    def __init__(self, status: int, headers: Mapping[str, str], body: str) -> None:
        # Not msrest's __init__: it wants a requests.Response to deserialise from.
        Exception.__init__(self, f"Bot Connector answered {status}")
        self.status = status
        self.headers = headers
        self.body = body
        self.inner_exception = None
        self.response = SimpleNamespace(status_code=status, status=status, headers=headers, text=body)
        self.error = _error_model(body)
        detail = getattr(getattr(self.error, "error", None), "code", None)
        self.message = f"Bot Connector answered {status}" + (f" ({detail})" if detail else "")

    def __str__(self) -> str:
        return self.message


class ConnectorUnavailable(ClientRequestError):
    """No answer: the connection failed or timed out, or no token could be had. Nothing says it was delivered."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ServiceUrlRefused(ValueError):
    """The service URL is not a Bot Connector address this bot sends to; nothing was sent."""

    def __init__(self, service_url: object, reason: str) -> None:
        super().__init__(f"{reason}: {service_url!r}")
        self.service_url = service_url
        self.reason = reason


def _error_model(body: str) -> ErrorResponse | None:
    try:
        return ErrorResponse.deserialize(json.loads(body))
    except Exception:  # noqa: BLE001 - an error body is whatever the server chose to send
        return None


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    host = host.lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _matches(host: str, pattern: str) -> bool:
    pattern = pattern.lower().strip().rstrip(".")
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


@dataclass(frozen=True)
class ServiceUrlPolicy:
    """Which service URLs may receive the bot's messages (and its bearer token).

    An activity's serviceUrl is where the SDK would send the reply, with a token for the bot. Authentication checks
    that a signed token vouches for it, but in local dev mode nothing is signed, so the host list is what stops a
    crafted activity from pointing the bot at an internal address.
    """

    extra_hosts: tuple[str, ...] = ()
    allow_loopback: bool = False

    def check(self, service_url: object) -> None:
        """Raise ServiceUrlRefused unless the URL is https to a Bot Connector host (or loopback, when allowed)."""
        if not isinstance(service_url, str) or not service_url:
            raise ServiceUrlRefused(service_url, "no service URL")
        refused = _refusal(self, service_url)
        if refused is not None:
            raise ServiceUrlRefused(service_url, refused)


# Every turn checks its service URL twice (on arrival and for the reply), and a tenant's is nearly always the same
# few; parsing it each time was about 2% of a turn. Bounded, so crafted URLs cannot grow it.
@functools.lru_cache(maxsize=256)
def _refusal(policy: ServiceUrlPolicy, service_url: str) -> str | None:
    """Why the policy refuses this URL, or None."""
    try:
        parts = urlsplit(service_url)
        port = parts.port
    except ValueError:
        return "not a valid URL"
    host = (parts.hostname or "").rstrip(".")
    if parts.username is not None or parts.password is not None:
        return "a service URL with credentials in it"
    if policy.allow_loopback and is_loopback_host(host) and parts.scheme in ("http", "https"):
        return None
    if parts.scheme != "https" or port not in (None, 443):
        return "not https on the standard port"
    if host in MICROSOFT_HOSTS or any(_matches(host, p) for p in (*MICROSOFT_DOMAINS, *policy.extra_hosts)):
        return None
    return "not a Bot Connector host"


_SCHEME_AND_NETLOC = re.compile(r"[^:/?#]*://[^/?#]*")


def _origin(url: str) -> tuple[str, str, str]:
    """(scheme, netloc, hostname) of a URL. A client's calls all go to its one service URL, so the parse is kept per
    origin (urlsplit on every call was about 1% of a turn)."""
    found = _SCHEME_AND_NETLOC.match(url)
    return _origin_of(found.group(0) if found else url)


@functools.lru_cache(maxsize=256)  # bounded: the service URLs a deployment answers are few (ServiceUrlPolicy)
def _origin_of(head: str) -> tuple[str, str, str]:
    parts = urlsplit(head)
    return parts.scheme, parts.netloc, parts.hostname or ""


class ConnectorTransport:
    """One aiohttp session for every Bot Connector client, and the threads that fetch tokens.

    The pool is bounded per host, not overall: a host that stops answering holds at most its own connections, and
    the hosts are few because ServiceUrlPolicy admits only Microsoft's. Idle connections close after aiohttp's
    keep-alive timeout.
    """

    def __init__(
        self,
        *,
        connect_timeout: float,
        timeout: float,
        connections_per_host: int,
        budget: SendBudget | None = None,
        retries: int = RETRIES,
        retry_after_cap: float = RETRY_AFTER_CAP,
        retry_total: float = RETRY_TOTAL,
        retry_backoff: float = RETRY_BACKOFF,
        retry_bulk: bool = False,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.connections_per_host = connections_per_host
        self.budget = budget if budget is not None else SendBudget()
        self.retries = retries
        self.retry_after_cap = retry_after_cap
        self.retry_total = retry_total
        self.retry_backoff = retry_backoff
        self.retry_bulk = retry_bulk
        self._session: aiohttp.ClientSession | None = None
        self._token_threads: ThreadPoolExecutor | None = None
        self._closed = False
        self.observer: ConnectorObserver | None = None  # set by the app once its metrics exist
        # Proxies from the environment, as `requests` (and so the SDK) honoured them, read once: aiohttp's
        # trust_env reads them, and ~/.netrc, again on a thread for every request.
        self._proxies = {k: v for k, v in getproxies_environment().items() if k in ("http", "https", "no")}
        self._proxy_by_origin: dict[tuple[str, str], str | None] = {}

    def _http(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ConnectorUnavailable("the app is shutting down")
        if self._session is None:  # built on first use: aiohttp wants a running event loop
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=self.connections_per_host)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": USER_AGENT},
                timeout=aiohttp.ClientTimeout(total=self.timeout, connect=self.connect_timeout),
            )
        return self._session

    def _proxy(self, scheme: str, host: str) -> str | None:
        """The environment's proxy for this origin (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), decided once per origin."""
        origin = (scheme, host)
        if origin not in self._proxy_by_origin:
            proxy = self._proxies.get(scheme)
            bypass = bool(proxy) and bool(proxy_bypass(host))
            self._proxy_by_origin[origin] = None if not proxy or bypass else proxy
        return self._proxy_by_origin[origin]

    async def call(
        self,
        method: str,
        url: str,
        *,
        authorization: str | None,
        payload: Any = None,
        budget: tuple[str, str | None] | None = None,
    ) -> bytes:
        """The response body of a 2xx answer; ConnectorHTTPError for any other status, ConnectorUnavailable for none.

        `budget` is (tenant, conversation) for a call that counts against Teams' send limits. A 408, 429 or 5xx is
        retried (interactive calls only, unless retry_bulk) while retries and time remain; the last error is raised.
        """
        data = None if payload is None else json_text.dumps_bytes(payload)
        bulk, quiet = is_bulk(), is_quiet()
        started = time.monotonic()
        attempt = 0
        while True:
            send = await self.budget.acquire(*budget, bulk=bulk, quiet=quiet) if budget is not None else None
            try:
                return await self._once(method, url, authorization, data)
            except ConnectorHTTPError as exc:
                wait = self._retry_wait(exc, attempt, started, bulk)
                if self.observer is not None:
                    self.observer.connector_answered(exc.status)
                    if wait is not None:
                        self.observer.connector_retrying(exc.status)
                if wait is None:
                    raise
                log.info("Bot Connector answered %s to %s; retrying in %.2f s", exc.status, method, wait)
            finally:
                if send is not None:
                    send.answered()  # answered or not, it has arrived by now if it ever will
            await asyncio.sleep(wait)
            attempt += 1

    def _retry_wait(self, error: ConnectorHTTPError, attempt: int, started: float, bulk: bool) -> float | None:
        """Seconds to wait before retrying, or None when this error is final."""
        if error.status not in RETRY_STATUSES or attempt >= self.retries or (bulk and not self.retry_bulk):
            return None
        after = parse_retry_after(error.headers.get("Retry-After"), dt.datetime.now(dt.UTC))
        if after is not None:
            wait = after.total_seconds()
            if wait > self.retry_after_cap:
                return None  # asked to stay away longer than a call may wait: the caller decides
        else:
            wait = min(self.retry_after_cap, self.retry_backoff * 2**attempt * random.uniform(0.5, 1.0))  # noqa: S311
        if time.monotonic() - started + wait > self.retry_total:
            return None
        return wait

    async def _once(self, method: str, url: str, authorization: str | None, data: bytes | None) -> bytes:
        headers = {"Accept": "application/json"}
        if authorization:
            headers["Authorization"] = authorization
        if data is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
        scheme, host, hostname = _origin(url)
        try:
            # encoded=True: the ids are already quoted as msrest quotes them; ':' and ';' must stay escaped.
            async with self._http().request(
                method,
                yarl.URL(url, encoded=True),
                data=data,
                headers=headers,
                allow_redirects=False,
                proxy=self._proxy(scheme, hostname),
            ) as response:
                body = await response.read()
                if not 200 <= response.status < 300:
                    raise ConnectorHTTPError(response.status, response.headers, body.decode("utf-8", "replace"))
                return body
        except ConnectorHTTPError:
            raise
        except aiohttp.ConnectionTimeoutError:
            raise ConnectorUnavailable(f"could not connect to {host} within {self.connect_timeout:g} s") from None
        except TimeoutError:
            raise ConnectorUnavailable(f"{host} did not answer within {self.timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectorUnavailable(f"could not reach {host}: {exc.__class__.__name__}: {exc}") from exc

    def in_token_thread(self, fetch: Callable[[], str]) -> asyncio.Future[str]:
        if self._closed:
            raise ConnectorUnavailable("the app is shutting down")
        if self._token_threads is None:
            self._token_threads = ThreadPoolExecutor(TOKEN_THREADS, thread_name_prefix="connector-token")
        return asyncio.get_running_loop().run_in_executor(self._token_threads, fetch)

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._token_threads is not None:
            self._token_threads.shutdown(wait=False, cancel_futures=True)
            self._token_threads = None


def signs_requests(credentials: Any) -> bool:
    """Whether the SDK would send a token with these credentials (it sends none with an empty app id: dev mode)."""
    app_id = getattr(credentials, "microsoft_app_id", None)
    return bool(app_id) and app_id != AuthenticationConstants.ANONYMOUS_SKILL_APP_ID


class TokenSource:
    """The bearer token for one set of SDK credentials, shared by every client that uses them.

    get_access_token() is synchronous msal and may do HTTP, so it runs on the transport's token threads. msal keeps
    the token in its cache and refreshes it before it expires; concurrent callers share one fetch, so a slow login
    service occupies one thread, not one per send.
    """

    def __init__(self, credentials: Any, transport: ConnectorTransport) -> None:
        self.credentials = credentials
        self._transport = transport
        self._signs = signs_requests(credentials)
        self._fetching: asyncio.Future[str] | None = None

    async def authorization(self) -> str | None:
        if not self._signs:
            return None
        if self._fetching is None or self._fetching.done():
            self._fetching = self._transport.in_token_thread(self.credentials.get_access_token)
            # Every waiter may have timed out before it ends; its outcome is still consumed, not warned about.
            self._fetching.add_done_callback(lambda done: done.cancelled() or done.exception())
        try:
            token = await asyncio.wait_for(asyncio.shield(self._fetching), self._transport.timeout)
        except TimeoutError:
            raise ConnectorUnavailable(
                f"no token from the login service within {self._transport.timeout:g} s"
            ) from None
        except Exception as exc:  # noqa: BLE001 - msal and requests raise many types; all mean "no token"
            raise ConnectorUnavailable(f"could not get a token: {exc.__class__.__name__}: {exc}") from exc
        return f"Bearer {token}"


@functools.lru_cache(maxsize=4096)  # a turn quotes its conversation's id, which the next turns quote again
def _quoted(value: str) -> str:
    return quote(value, safe="")


class BotConnectorClient:
    """The part of botframework.connector.aio.ConnectorClient that CloudAdapter, TeamsInfo and this app call."""

    def __init__(self, transport: ConnectorTransport, service_url: str, tokens: TokenSource) -> None:
        self._transport = transport
        self._tokens = tokens
        self.service_url = service_url
        # What SDK code reads from a connector client (TeamsInfo builds its Teams client from these).
        self.config = SimpleNamespace(base_url=service_url, credentials=tokens.credentials)
        self.conversations = Conversations(self)

    def url(self, path: str, *ids: str) -> str:
        quoted = path.format(*(_quoted(str(value)) for value in ids))
        return f"{self.service_url.rstrip('/')}/{quoted.lstrip('/')}"

    async def call(
        self, method: str, url: str, payload: Any = None, *, send_to: str | None = None, sends: bool = False
    ) -> Any:
        """The parsed JSON answer, or None for an empty one.

        A call that sends (`sends`, or one to conversation `send_to`) waits for the tenant's send budget first.
        """
        authorization = await self._tokens.authorization()
        budget = None
        if sends or send_to is not None:
            budget = (tenant_of(payload if isinstance(payload, dict) else None, self.service_url), send_to)
        body = await self._transport.call(method, url, authorization=authorization, payload=payload, budget=budget)
        if not body.strip():
            return None
        try:
            return json.loads(body)
        except ValueError:
            log.warning("Bot Connector at %s answered %s with a body that is not JSON", self.service_url, method)
            return None

    async def close(self) -> None:
        """Nothing to release: the sockets belong to the shared transport, and a turn may still hold this client."""


def _model(kind: Any, data: Any) -> Any:  # an msrest model class: botbuilder ships no type information
    return from_json(kind, data) if isinstance(data, dict) else None


def _members(data: Any) -> list[ChannelAccount]:
    return [from_json(ChannelAccount, item) for item in data or [] if isinstance(item, dict)]


class Conversations:
    """Bot Connector v3 conversation operations, with the SDK's signatures and return types."""

    def __init__(self, client: BotConnectorClient) -> None:
        self._client = client

    async def send_to_conversation(self, conversation_id: str, activity: Activity) -> ResourceResponse | None:
        url = self._client.url("v3/conversations/{}/activities", conversation_id)
        return _model(
            ResourceResponse, await self._client.call("POST", url, to_json(activity), send_to=conversation_id)
        )

    async def reply_to_activity(
        self, conversation_id: str, activity_id: str, activity: Activity
    ) -> ResourceResponse | None:
        url = self._client.url("v3/conversations/{}/activities/{}", conversation_id, activity_id)
        return _model(
            ResourceResponse, await self._client.call("POST", url, to_json(activity), send_to=conversation_id)
        )

    async def update_activity(
        self, conversation_id: str, activity_id: str, activity: Activity
    ) -> ResourceResponse | None:
        url = self._client.url("v3/conversations/{}/activities/{}", conversation_id, activity_id)
        return _model(ResourceResponse, await self._client.call("PUT", url, to_json(activity), send_to=conversation_id))

    async def delete_activity(self, conversation_id: str, activity_id: str) -> None:
        await self._client.call(
            "DELETE",
            self._client.url("v3/conversations/{}/activities/{}", conversation_id, activity_id),
            send_to=conversation_id,
        )

    async def create_conversation(self, parameters: ConversationParameters) -> ConversationResourceResponse | None:
        url = self._client.url("v3/conversations")
        answer = await self._client.call("POST", url, to_json(parameters), sends=True)
        return _model(ConversationResourceResponse, answer)

    async def get_conversation_members(self, conversation_id: str) -> list[ChannelAccount]:
        url = self._client.url("v3/conversations/{}/members", conversation_id)
        return _members(await self._client.call("GET", url))

    async def get_conversation_member(self, conversation_id: str, member_id: str) -> ChannelAccount | None:
        url = self._client.url("v3/conversations/{}/members/{}", conversation_id, member_id)
        return _model(ChannelAccount, await self._client.call("GET", url))

    async def get_activity_members(self, conversation_id: str, activity_id: str) -> list[ChannelAccount]:
        url = self._client.url("v3/conversations/{}/activities/{}/members", conversation_id, activity_id)
        return _members(await self._client.call("GET", url))
