"""The Bot Connector edge: CloudAdapter whose outbound calls go through our aiohttp client (adapters.connector_http).

Authentication of inbound requests, and the credentials outbound calls carry, stay the SDK's own.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from botbuilder.core import CloudAdapterBase, InvokeResponse, TurnContext
from botbuilder.integration.aiohttp import (
    CloudAdapter,
    ConfigurationBotFrameworkAuthentication,
    ConfigurationServiceClientCredentialFactory,
)
from botbuilder.schema import Activity, ActivityTypes, DeliveryModes, ResourceResponse
from botframework.connector import Channels
from botframework.connector.auth import (
    AuthenticateRequestResult,
    AuthenticationConstants,
    BotFrameworkAuthentication,
    ClaimsIdentity,
    ConnectorFactory,
    MicrosoftAppCredentials,
    ServiceClientCredentialsFactory,
    UserTokenClient,
)
from msal import ConfidentialClientApplication
from msrest.authentication import Authentication

from adapters.connector_http import (
    RETRIES,
    BotConnectorClient,
    ConnectorTransport,
    ServiceUrlPolicy,
    ServiceUrlRefused,
    TokenSource,
    is_loopback_host,
)
from adapters.send_budget import SendBudget
from bot.settings import Settings

log = logging.getLogger(__name__)


def sdk_configuration(settings: Settings) -> SimpleNamespace:
    """The attribute bag botbuilder's configuration classes read (names are theirs)."""
    app_type = settings.app_type if settings.app_id else "MultiTenant"  # empty id: dev mode, auth off
    values: dict[str, Any] = {
        "APP_ID": settings.app_id,
        "APP_PASSWORD": settings.app_password.get_secret_value(),
        "APP_TYPE": app_type,
        "APP_TENANTID": settings.app_tenant_id,
        "VALIDATE_AUTHORITY": settings.validate_authority,
    }
    if settings.openid_metadata_url:
        values["TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL"] = settings.openid_metadata_url
    if settings.token_issuer:
        values["TO_BOT_FROM_CHANNEL_TOKEN_ISSUER"] = settings.token_issuer
    if settings.login_url:
        values["TO_CHANNEL_FROM_BOT_LOGIN_URL"] = settings.login_url
    if settings.oauth_scope:
        values["TO_CHANNEL_FROM_BOT_OAUTH_SCOPE"] = settings.oauth_scope
    return SimpleNamespace(**values)


class ClientPool:
    """Bot Connector clients by (app id, service URL, audience) in a bounded LRU, over one shared transport.

    Credentials, and so msal's token cache, are shared per (app id, audience): a new service URL costs no new token.
    Clients own no sockets (the transport does), so an evicted client a turn still holds keeps working.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 5.0,
        timeout: float = 15.0,
        connections_per_host: int = 32,
        max_clients: int = 256,
        budget: SendBudget | None = None,
        retries: int = RETRIES,
    ) -> None:
        self.transport = ConnectorTransport(
            connect_timeout=connect_timeout,
            timeout=timeout,
            connections_per_host=connections_per_host,
            budget=budget,
            retries=retries,
        )
        self.max_clients = max_clients
        self._connectors: OrderedDict[tuple[str | None, str, str | None], BotConnectorClient] = OrderedDict()
        self._tokens: dict[tuple[str | None, str | None], TokenSource] = {}  # a few: one app id, few audiences
        self._credentials_lock = asyncio.Lock()
        self._token_clients: dict[tuple[str | None, str | None], UserTokenClient] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientPool:
        return cls(
            connect_timeout=settings.connector_connect_timeout,
            timeout=settings.connector_timeout,
            connections_per_host=settings.connector_connections_per_host,
            max_clients=settings.connector_clients,
            budget=SendBudget(
                tenant_rate=settings.connector_tenant_rate,
                bulk_rate=settings.connector_bulk_rate,
                conversation_rate=settings.connector_conversation_rate,
            ),
            retries=settings.connector_retries,
        )

    def __len__(self) -> int:
        return len(self._connectors)

    async def connector(self, inner: ConnectorFactory, service_url: str, audience: str | None) -> BotConnectorClient:
        key = (getattr(inner, "_app_id", None), service_url, audience)
        client = self._connectors.get(key)
        if client is None:
            tokens = await self._token_source(inner, key[0], service_url, audience)
            client = self._connectors.get(key)  # another turn may have built it meanwhile
            if client is None:
                client = BotConnectorClient(self.transport, service_url, tokens)
                self._connectors[key] = client
                while len(self._connectors) > self.max_clients:
                    _, evicted = self._connectors.popitem(last=False)
                    await evicted.close()
        self._connectors.move_to_end(key)
        return client

    async def _token_source(
        self, inner: ConnectorFactory, app_id: str | None, service_url: str, audience: str | None
    ) -> TokenSource:
        async with self._credentials_lock:  # one credentials object (one msal cache) per key, even on a burst
            tokens = self._tokens.get((app_id, audience))
            if tokens is None:
                # The SDK's factory knows the cloud's login endpoint and default scope; its msrest client is only
                # a carrier for the credentials it builds, and is never used to send.
                sdk_client = await inner.create(service_url, audience)
                tokens = TokenSource(sdk_client.config.credentials, self.transport)
                self._tokens[(app_id, audience)] = tokens
            return tokens

    async def token_client(self, inner: BotFrameworkAuthentication, claims: ClaimsIdentity) -> UserTokenClient:
        key = (
            claims.get_claim_value(AuthenticationConstants.AUDIENCE_CLAIM),
            claims.get_claim_value(AuthenticationConstants.APP_ID_CLAIM),
        )
        client = self._token_clients.get(key)
        if client is None:
            client = await inner.create_user_token_client(claims)
            self._token_clients[key] = client
        return client

    async def close(self) -> None:
        for client in self._connectors.values():
            await client.close()
        self._connectors.clear()
        self._tokens.clear()
        self._token_clients.clear()
        await self.transport.close()


class _PooledConnectorFactory(ConnectorFactory):
    def __init__(self, inner: ConnectorFactory, pool: ClientPool, policy: ServiceUrlPolicy) -> None:
        self._inner = inner
        self._pool = pool
        self._policy = policy

    async def create(self, service_url: str, audience: str | None = None) -> BotConnectorClient:  # the SDK's signature
        try:
            self._policy.check(service_url)
        except ServiceUrlRefused as refused:
            log.warning("refused to send to service URL %r: %s", str(service_url)[:200], refused.reason)
            raise
        return await self._pool.connector(self._inner, service_url, audience)


class PooledBotFrameworkAuthentication(BotFrameworkAuthentication):
    """Delegates authentication unchanged; only the construction of outbound clients is shared."""

    def __init__(self, inner: BotFrameworkAuthentication, pool: ClientPool, policy: ServiceUrlPolicy) -> None:
        self._inner = inner
        self._pool = pool
        self._policy = policy

    async def authenticate_request(self, activity, auth_header: str) -> AuthenticateRequestResult:  # noqa: ANN001
        """Any failure to authenticate is a PermissionError (401), never a crash (500).

        The SDK raises PermissionError for most rejections but lets others escape as whatever they are: an expired
        token (jwt.ExpiredSignatureError), an unknown signing key (IndexError), an unendorsed key (Exception), and
        an absent header on the configured-endpoints path (AttributeError, because it expects None, not "").
        """
        try:
            result = await self._inner.authenticate_request(activity, auth_header or None)
        except PermissionError:
            raise
        except Exception as exc:  # noqa: BLE001 - see the docstring
            log.warning("inbound token rejected: %s: %s", exc.__class__.__name__, exc)
            raise PermissionError(f"Unauthorized: {exc.__class__.__name__}") from exc
        if result.connector_factory is not None:
            result.connector_factory = _PooledConnectorFactory(result.connector_factory, self._pool, self._policy)
        return result

    async def authenticate_streaming_request(self, auth_header: str, channel_id_header: str):  # noqa: ANN201
        return await self._inner.authenticate_streaming_request(auth_header, channel_id_header)

    def create_connector_factory(self, claims_identity: ClaimsIdentity) -> ConnectorFactory:
        return _PooledConnectorFactory(self._inner.create_connector_factory(claims_identity), self._pool, self._policy)

    async def create_user_token_client(self, claims_identity: ClaimsIdentity) -> UserTokenClient:
        return await self._pool.token_client(self._inner, claims_identity)

    def create_bot_framework_client(self):  # noqa: ANN201
        return self._inner.create_bot_framework_client()

    def get_originating_audience(self) -> str:
        return self._inner.get_originating_audience()

    async def authenticate_channel_request(self, auth_header: str) -> ClaimsIdentity:
        return await self._inner.authenticate_channel_request(auth_header)


class _LazyMsalApp:
    """msal's app, built on first use, which is on a token thread: its constructor fetches the authority's metadata
    over HTTP, which must not happen on the event loop."""

    def __init__(self, build: Callable[[], ConfidentialClientApplication]) -> None:
        self._build = build
        self._app: ConfidentialClientApplication | None = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        with self._lock:
            if self._app is None:
                self._app = self._build()
        return getattr(self._app, name)


class AuthorityAwareCredentialFactory(ServiceClientCredentialsFactory):
    """The SDK's credential factory, with msal's HTTP calls bounded by a timeout and VALIDATE_AUTHORITY honoured.

    The SDK builds its msal app without a timeout (a silent login service would hold a token thread for ever), and
    builds private-cloud credentials without validate_authority, so msal would still ask login.microsoftonline.com
    to vouch for the login host. The app is the one the SDK would build, with those two settings added.
    """

    def __init__(self, inner: ServiceClientCredentialsFactory, timeout: float) -> None:
        self._inner = inner
        self._timeout = timeout

    async def is_valid_app_id(self, app_id: str) -> bool:
        return await self._inner.is_valid_app_id(app_id)

    async def is_authentication_disabled(self) -> bool:
        return await self._inner.is_authentication_disabled()

    async def create_credentials(
        self, app_id: str, oauth_scope: str, login_endpoint: str, validate_authority: bool
    ) -> Authentication:
        credentials = await self._inner.create_credentials(app_id, oauth_scope, login_endpoint, validate_authority)
        if (
            isinstance(credentials, MicrosoftAppCredentials)
            and credentials.microsoft_app_id
            and getattr(credentials, "app", None) is None
        ):
            validate = validate_authority or not login_endpoint
            credentials.app = _LazyMsalApp(
                lambda: ConfidentialClientApplication(
                    client_id=credentials.microsoft_app_id,
                    client_credential=credentials.microsoft_app_password,
                    authority=credentials.oauth_endpoint,
                    validate_authority=validate,
                    instance_discovery=None if validate else False,
                    timeout=self._timeout,
                )
            )
        return credentials


def _shallow_copy(value: Any) -> Any:  # noqa: ANN401 - botbuilder's models, which ship no type information
    """copy.copy of a plain object (one that keeps its fields in __dict__, as msrest's models do), without the
    generic protocol copy.copy walks to find that out: a fifth of the time."""
    if value is None:
        return None
    kind = type(value)
    plain = _COPIED_PLAINLY.get(kind)
    if plain is None:
        plain = _COPIED_PLAINLY[kind] = (
            getattr(kind, "__copy__", None) is None
            and kind.__new__ is object.__new__
            and kind.__reduce_ex__ is object.__reduce_ex__
            and kind.__reduce__ is object.__reduce__
            and getattr(kind, "__getstate__", object.__getstate__) is object.__getstate__
            and not hasattr(kind, "__setstate__")
            and not hasattr(kind, "__slots__")
        )
    if not plain:
        return copy.copy(value)
    made = object.__new__(kind)
    made.__dict__.update(value.__dict__)
    return made


_COPIED_PLAINLY: dict[type, bool] = {}


class _TurnContext(TurnContext):  # type: ignore[misc]  # botbuilder ships no type information
    """botbuilder's TurnContext, except that what it sends is copied shallowly.

    TurnContext deep-copies every activity it sends, card and all, so the caller's activity stays as it was. On its
    way out an activity is changed only by assigning its own fields (the conversation reference, type, input hint,
    id), here and in the adapter, so a copy of the activity itself keeps that promise. Without the deep copy, `help`
    (whose card is the largest reply) went from 3.03 to 2.53 CPU ms a turn on PostgreSQL, side by side.

    The reply is addressed as TurnContext.apply_conversation_reference addresses it from the incoming activity's
    reference (copies of its accounts and conversation, the reply-to id where the channel has one), without building
    the reference itself, which cost as much as the rest of the send's preparation.
    """

    async def send_activities(self, activities: list[Activity]) -> list[ResourceResponse]:
        incoming = self.activity
        reply_to = (
            incoming.id
            if incoming.type != ActivityTypes.conversation_update
            and incoming.channel_id != Channels.direct_line
            and incoming.channel_id != Channels.webchat
            else None
        )
        bot, user = _shallow_copy(incoming.recipient), _shallow_copy(incoming.from_property)
        conversation = _shallow_copy(incoming.conversation)
        output = []
        for original in activities:
            activity = _shallow_copy(original)
            activity.channel_id = incoming.channel_id
            activity.locale = incoming.locale
            activity.service_url = incoming.service_url
            activity.conversation = conversation
            activity.from_property = bot
            activity.recipient = user
            if reply_to:
                activity.reply_to_id = reply_to
            activity.type = activity.type or ActivityTypes.message
            activity.input_hint = activity.input_hint or "acceptingInput"  # as the SDK sets it
            activity.id = None
            output.append(activity)
        responds = any(activity.type != ActivityTypes.trace for activity in output)

        async def logic() -> list[ResourceResponse]:
            if self.activity.delivery_mode == DeliveryModes.expect_replies:  # answered in the invoke's response
                for activity in output:
                    self.buffered_reply_activities.append(activity)
                    if activity.type == ActivityTypes.invoke_response:
                        self.turn_state[TurnContext._INVOKE_RESPONSE_KEY] = activity  # noqa: SLF001 - the SDK's slot
                responses = [ResourceResponse() for _ in output]
            else:
                responses = await self.adapter.send_activities(self, output)
            if responds:
                self.responded = True
            return responses

        result: list[ResourceResponse] = await self._emit(self._on_send_activities, output, logic())
        return result

    async def _emit(self, plugins: list[Any], arg: Any, logic: Awaitable[Any]) -> Any:  # noqa: ANN401 - the SDK's
        """As TurnContext._emit: each of `plugins` in turn, each handed the next, then `logic`.

        The SDK's version passes on a closure that refers to itself, and so to the turn's context: every turn that
        sent anything left its context, the activity and all the turn held as a reference cycle, which only the
        garbage collector could free (about 55 objects a turn, and a collection every dozen turns).
        """
        await _Handlers(self, list(plugins), arg).run(0)
        return await logic


class _Handlers:
    """The handlers of one _emit call, each run with the next as its `next_handler`."""

    __slots__ = ("_context", "_handlers", "_arg")

    def __init__(self, context: TurnContext, handlers: list[Any], arg: Any) -> None:  # noqa: ANN401 - the SDK's
        self._context = context
        self._handlers = handlers
        self._arg = arg

    async def run(self, index: int) -> None:
        if index < len(self._handlers):
            await self._handlers[index](self._context, self._arg, functools.partial(self.run, index + 1))


class BotConnectorAdapter(CloudAdapter):
    """CloudAdapter whose connector clients come from the pool; a refused service URL is a 400, not a crash."""

    def __init__(self, auth: BotFrameworkAuthentication, pool: ClientPool) -> None:
        super().__init__(auth)
        self.client_pool = pool

    def _create_turn_context(self, activity: Activity, *args: Any) -> TurnContext:  # noqa: ANN401
        lean = _TurnContext(self, activity)
        lean.turn_state.update(super()._create_turn_context(activity, *args).turn_state)  # what the SDK puts there
        return lean

    async def process_activity(
        self,
        auth_header_or_authenticate_request_result: Any,
        activity: Activity,
        logic: Callable[[TurnContext], Awaitable],
    ) -> InvokeResponse | None:
        try:
            return await super().process_activity(auth_header_or_authenticate_request_result, activity, logic)
        except ServiceUrlRefused:
            # Raised before the turn runs (the SDK builds the turn's client first), so nothing happened and
            # nothing was saved: the bot could not have answered there. The factory has logged it.
            return InvokeResponse(
                status=int(HTTPStatus.BAD_REQUEST),
                body={"error": "Activity field 'serviceUrl' is not a Bot Connector address this bot replies to"},
            )


def service_url_policy(settings: Settings) -> ServiceUrlPolicy:
    """Microsoft's hosts and ESAFETY_CONNECTOR_HOSTS; loopback too in dev mode, or when inbound tokens are checked
    against a loopback identity provider (an offline test rig: the service URLs it signs are on loopback too)."""
    local_signer = bool(settings.openid_metadata_url) and is_loopback_host(
        urlsplit(settings.openid_metadata_url or "").hostname
    )
    return ServiceUrlPolicy(extra_hosts=settings.connector_extra_hosts, allow_loopback=settings.dev or local_signer)


def build_adapter(settings: Settings, pool: ClientPool) -> BotConnectorAdapter:
    """CloudAdapter with ConfigurationBotFrameworkAuthentication, sending through the pool."""
    configuration = sdk_configuration(settings)
    credentials = AuthorityAwareCredentialFactory(
        ConfigurationServiceClientCredentialFactory(configuration), settings.connector_timeout
    )
    auth = ConfigurationBotFrameworkAuthentication(configuration, credentials_factory=credentials)
    return BotConnectorAdapter(PooledBotFrameworkAuthentication(auth, pool, service_url_policy(settings)), pool)


class ProactiveSender:
    """Sends activities outside a turn through the same pooled connector clients."""

    def __init__(self, adapter: CloudAdapterBase, app_id: str) -> None:
        self._adapter = adapter
        self._app_id = app_id

    async def connector_for(self, service_url: str) -> BotConnectorClient:
        """The client for this service URL; raises ServiceUrlRefused (before any request) for a URL not allowed."""
        claims = self._adapter.create_claims_identity(self._app_id)
        claims.claims[AuthenticationConstants.SERVICE_URL_CLAIM] = service_url
        auth = self._adapter.bot_framework_authentication
        factory = auth.create_connector_factory(claims)
        # The audience a turn's client is built for, so proactive sends share that client (and its token).
        return await factory.create(service_url, auth.get_originating_audience())
