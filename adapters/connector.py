"""The Bot Connector edge: CloudAdapter with connector and token clients reused across turns."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

from botbuilder.core import CloudAdapterBase
from botbuilder.integration.aiohttp import (
    CloudAdapter,
    ConfigurationBotFrameworkAuthentication,
    ConfigurationServiceClientCredentialFactory,
)
from botframework.connector.aio import ConnectorClient
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
    """Connector and user-token clients keyed by (app id, service URL, audience), built once each."""

    def __init__(self) -> None:
        self._connectors: dict[tuple[str | None, str, str | None], ConnectorClient] = {}
        self._token_clients: dict[tuple[str | None, str | None], UserTokenClient] = {}

    async def connector(self, inner: ConnectorFactory, service_url: str, audience: str | None) -> ConnectorClient:
        key = (getattr(inner, "_app_id", None), service_url, audience)
        client = self._connectors.get(key)
        if client is None:
            client = await inner.create(service_url, audience)
            self._connectors[key] = client
        return client

    async def token_client(self, inner: BotFrameworkAuthentication, claims: ClaimsIdentity) -> UserTokenClient:
        key = (claims.get_claim_value(AuthenticationConstants.AUDIENCE_CLAIM),
               claims.get_claim_value(AuthenticationConstants.APP_ID_CLAIM))
        client = self._token_clients.get(key)
        if client is None:
            client = await inner.create_user_token_client(claims)
            self._token_clients[key] = client
        return client

    async def close(self) -> None:
        for client in self._connectors.values():
            try:
                await client.close()
            except Exception:  # noqa: BLE001 - closing is best effort at shutdown
                log.debug("connector client close failed", exc_info=True)
        self._connectors.clear()
        self._token_clients.clear()


class _PooledConnectorFactory(ConnectorFactory):
    def __init__(self, inner: ConnectorFactory, pool: ClientPool) -> None:
        self._inner = inner
        self._pool = pool

    async def create(self, service_url: str, audience: str = None) -> ConnectorClient:  # noqa: RUF013 - SDK signature
        return await self._pool.connector(self._inner, service_url, audience)


class PooledBotFrameworkAuthentication(BotFrameworkAuthentication):
    """Delegates authentication unchanged; only the construction of outbound clients is shared."""

    def __init__(self, inner: BotFrameworkAuthentication, pool: ClientPool) -> None:
        self._inner = inner
        self._pool = pool

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
            result.connector_factory = _PooledConnectorFactory(result.connector_factory, self._pool)
        return result

    async def authenticate_streaming_request(self, auth_header: str, channel_id_header: str):  # noqa: ANN201
        return await self._inner.authenticate_streaming_request(auth_header, channel_id_header)

    def create_connector_factory(self, claims_identity: ClaimsIdentity) -> ConnectorFactory:
        return _PooledConnectorFactory(self._inner.create_connector_factory(claims_identity), self._pool)

    async def create_user_token_client(self, claims_identity: ClaimsIdentity) -> UserTokenClient:
        return await self._pool.token_client(self._inner, claims_identity)

    def create_bot_framework_client(self):  # noqa: ANN201
        return self._inner.create_bot_framework_client()

    def get_originating_audience(self) -> str:
        return self._inner.get_originating_audience()

    async def authenticate_channel_request(self, auth_header: str) -> ClaimsIdentity:
        return await self._inner.authenticate_channel_request(auth_header)


class AuthorityAwareCredentialFactory(ServiceClientCredentialsFactory):
    """The SDK's credential factory, except that VALIDATE_AUTHORITY=False actually reaches msal.

    botframework-connector stores validate_authority on private-cloud credentials but builds its msal app without
    it, so msal still asks login.microsoftonline.com to vouch for the login host. With validation on (the default)
    nothing here changes.
    """

    def __init__(self, inner: ServiceClientCredentialsFactory) -> None:
        self._inner = inner

    async def is_valid_app_id(self, app_id: str) -> bool:
        return await self._inner.is_valid_app_id(app_id)

    async def is_authentication_disabled(self) -> bool:
        return await self._inner.is_authentication_disabled()

    async def create_credentials(self, app_id: str, oauth_scope: str, login_endpoint: str,
                                 validate_authority: bool) -> Authentication:
        credentials = await self._inner.create_credentials(app_id, oauth_scope, login_endpoint, validate_authority)
        if (not validate_authority and login_endpoint and isinstance(credentials, MicrosoftAppCredentials)
                and credentials.microsoft_app_id and getattr(credentials, "app", None) is None):
            credentials.app = ConfidentialClientApplication(
                client_id=credentials.microsoft_app_id, client_credential=credentials.microsoft_app_password,
                authority=credentials.oauth_endpoint, validate_authority=False, instance_discovery=False,
            )
        return credentials


def build_adapter(settings: Settings, pool: ClientPool) -> CloudAdapter:
    """CloudAdapter with ConfigurationBotFrameworkAuthentication, sharing clients through the pool."""
    configuration = sdk_configuration(settings)
    credentials = AuthorityAwareCredentialFactory(ConfigurationServiceClientCredentialFactory(configuration))
    auth = ConfigurationBotFrameworkAuthentication(configuration, credentials_factory=credentials)
    return CloudAdapter(PooledBotFrameworkAuthentication(auth, pool))


class ProactiveSender:
    """Sends activities outside a turn through the same pooled connector clients."""

    def __init__(self, adapter: CloudAdapterBase, app_id: str) -> None:
        self._adapter = adapter
        self._app_id = app_id

    async def connector_for(self, service_url: str) -> ConnectorClient:
        claims = self._adapter.create_claims_identity(self._app_id)
        claims.claims[AuthenticationConstants.SERVICE_URL_CLAIM] = service_url
        auth = self._adapter.bot_framework_authentication
        factory = auth.create_connector_factory(claims)
        # The audience a turn's client is built for, so proactive sends share that client (and its token).
        return await factory.create(service_url, auth.get_originating_audience())
