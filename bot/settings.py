"""Process settings: the only place that reads the environment."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SQLITE_URL = "sqlite+aiosqlite:///var/esafety.db"


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """Everything the app needs from its environment, read once at start-up."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, populate_by_name=True)

    app_id: str = Field("", validation_alias=_env("MicrosoftAppId", "MICROSOFT_APP_ID"))
    app_password: SecretStr = Field(SecretStr(""), validation_alias=_env("MicrosoftAppPassword"))
    app_type: Literal["SingleTenant", "MultiTenant", "UserAssignedMSI"] = Field(
        "SingleTenant", validation_alias=_env("MicrosoftAppType")
    )
    app_tenant_id: str = Field("", validation_alias=_env("MicrosoftAppTenantId"))

    host: str = Field("127.0.0.1", validation_alias=_env("HOST"))
    port: int = Field(3978, validation_alias=_env("PORT"))
    database_url: str = Field(DEFAULT_SQLITE_URL, validation_alias=_env("DATABASE_URL"))
    dev: bool = Field(False, validation_alias=_env("ESAFETY_DEV"))
    config_path: Path = Field(Path("config/demo.yaml"), validation_alias=_env("ESAFETY_CONFIG"))
    policy_path: Path = Field(Path("config/policy_defaults.yaml"), validation_alias=_env("ESAFETY_POLICY"))
    data_key: SecretStr | None = Field(None, validation_alias=_env("ESAFETY_DATA_KEY"))
    # The audit trail's HMAC key: separate from the data key, so whoever can decrypt fields cannot forge the trail.
    audit_key: SecretStr | None = Field(None, validation_alias=_env("ESAFETY_AUDIT_KEY"))
    # Retired audit keys, comma-separated: kept only so entries written before a rotation still verify.
    audit_keys_old: SecretStr | None = Field(None, validation_alias=_env("ESAFETY_AUDIT_KEYS_OLD"))
    # Keys replaced by ESAFETY_DATA_KEY, comma-separated: they only decrypt, until `python app.py rotate-key` is done.
    data_keys_old: SecretStr | None = Field(None, validation_alias=_env("ESAFETY_DATA_KEYS_OLD"))
    var_dir: Path = Field(Path("var"), validation_alias=_env("ESAFETY_VAR_DIR"))
    log_level: str = Field("INFO", validation_alias=_env("ESAFETY_LOG_LEVEL"))

    # Inbound token validation: botframework-connector reads these names; tests point them at loopback.
    openid_metadata_url: str | None = Field(None, validation_alias=_env("TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL"))
    token_issuer: str | None = Field(None, validation_alias=_env("TO_BOT_FROM_CHANNEL_TOKEN_ISSUER"))
    # Outbound token acquisition (login authority and scope) for sovereign clouds and offline tests.
    login_url: str | None = Field(None, validation_alias=_env("TO_CHANNEL_FROM_BOT_LOGIN_URL"))
    oauth_scope: str | None = Field(None, validation_alias=_env("TO_CHANNEL_FROM_BOT_OAUTH_SCOPE"))
    validate_authority: bool = Field(True, validation_alias=_env("VALIDATE_AUTHORITY"))

    max_body_bytes: int = Field(256 * 1024, validation_alias=_env("ESAFETY_MAX_BODY_BYTES"))
    worker_poll_seconds: float = Field(2.0, validation_alias=_env("ESAFETY_WORKER_POLL_SECONDS"))
    worker_enabled: bool = Field(True, validation_alias=_env("ESAFETY_WORKER"))
    replica_name: str = Field("", validation_alias=_env("ESAFETY_REPLICA"))
    # Local dev and tests only: the app's clock stands still at this instant (ISO 8601 with an offset), so several
    # processes can share one "now". Ignored unless ESAFETY_DEV is set.
    fake_now: dt.datetime | None = Field(None, validation_alias=_env("ESAFETY_FAKE_NOW"))
    # The app's public https address, for links in cards (e.g. the AUP full text); empty means http://host:port.
    public_url: str = Field("", validation_alias=_env("ESAFETY_PUBLIC_URL"))

    # Cards that are not urgent (AUP, reminders, the digest) wait until nobody has spoken in the conversation for
    # this long, and never arrive during a guided conversation unless it was left untouched for the hold.
    quiet_idle_minutes: float = Field(3.0, ge=0, validation_alias=_env("ESAFETY_QUIET_IDLE_MINUTES"))
    quiet_hold_hours: float = Field(24.0, gt=0, validation_alias=_env("ESAFETY_QUIET_HOLD_HOURS"))
    # A guided conversation (a report, a filter request) left this long ends, and its half-written answers go.
    conversation_timeout_hours: float = Field(24.0, gt=0, validation_alias=_env("ESAFETY_CONVERSATION_TIMEOUT_HOURS"))

    # Directory: the static YAML people, or Microsoft Graph (roles from Entra groups; see docs/graph.md).
    directory: Literal["static", "graph"] = Field("static", validation_alias=_env("ESAFETY_DIRECTORY"))
    graph_base_url: str = Field("https://graph.microsoft.com/v1.0", validation_alias=_env("GRAPH_BASE_URL"))
    graph_authority: str = Field("https://login.microsoftonline.com", validation_alias=_env("GRAPH_AUTHORITY"))
    graph_client_id: str = Field("", validation_alias=_env("GRAPH_CLIENT_ID"))  # defaults to MicrosoftAppId
    graph_client_secret: SecretStr | None = Field(None, validation_alias=_env("GRAPH_CLIENT_SECRET"))
    graph_certificate_path: Path | None = Field(None, validation_alias=_env("GRAPH_CERTIFICATE_PATH"))
    graph_managed_identity: bool = Field(False, validation_alias=_env("GRAPH_MANAGED_IDENTITY"))
    graph_ca_bundle: Path | None = Field(None, validation_alias=_env("GRAPH_CA_BUNDLE"))  # e.g. a TLS-inspecting proxy
    graph_cache_seconds: int = Field(600, ge=0, validation_alias=_env("GRAPH_CACHE_SECONDS"))
    graph_stale_seconds: int = Field(24 * 3600, ge=0, validation_alias=_env("GRAPH_STALE_SECONDS"))
    graph_timeout_seconds: float = Field(0.9, gt=0, validation_alias=_env("GRAPH_TIMEOUT_SECONDS"))
    graph_bulk_timeout_seconds: float = Field(20.0, gt=0, validation_alias=_env("GRAPH_BULK_TIMEOUT_SECONDS"))
    graph_delta_minutes: int = Field(60, ge=1, validation_alias=_env("GRAPH_DELTA_MINUTES"))
    teams_app_catalog_id: str = Field("", validation_alias=_env("TEAMS_APP_CATALOG_ID"))
    teams_service_url: str = Field("https://smba.trafficmanager.net/teams/", validation_alias=_env("TEAMS_SERVICE_URL"))

    # Outbound Bot Connector calls (replies and proactive sends). Replies retry 408/429/5xx a few times within
    # seconds; the outbox's bulk sends retry durably instead.
    connector_connect_timeout: float = Field(5.0, gt=0, validation_alias=_env("ESAFETY_CONNECTOR_CONNECT_TIMEOUT"))
    connector_timeout: float = Field(15.0, gt=0, validation_alias=_env("ESAFETY_CONNECTOR_TIMEOUT"))
    connector_connections_per_host: int = Field(
        32, ge=1, validation_alias=_env("ESAFETY_CONNECTOR_CONNECTIONS_PER_HOST")
    )
    connector_clients: int = Field(256, ge=1, validation_alias=_env("ESAFETY_CONNECTOR_CLIENTS"))
    connector_retries: int = Field(3, ge=0, le=10, validation_alias=_env("ESAFETY_CONNECTOR_RETRIES"))
    # Teams' limits per bot: requests a second per tenant and per conversation; bulk (proactive) sends may use only
    # connector_bulk_rate of the tenant's, so replies to people's own messages never queue behind a broadcast (the
    # 2/s left is theirs alone, replies waiting go before bulk sends waiting, and all of it is theirs when no
    # broadcast runs).
    connector_tenant_rate: float = Field(50.0, ge=1, validation_alias=_env("ESAFETY_CONNECTOR_TENANT_RATE"))
    connector_bulk_rate: float = Field(48.0, ge=1, validation_alias=_env("ESAFETY_CONNECTOR_BULK_RATE"))
    connector_conversation_rate: float = Field(7.0, ge=1, validation_alias=_env("ESAFETY_CONNECTOR_CONVERSATION_RATE"))
    # Hosts beyond Microsoft's documented Bot Connector ones that may receive replies, comma-separated; "*.x.y"
    # matches subdomains of x.y. For a sovereign cloud or a new Microsoft host; https only.
    connector_hosts: str = Field("", validation_alias=_env("ESAFETY_CONNECTOR_HOSTS"))
    # Where an accepted export may be uploaded (Teams hands the bot a OneDrive upload URL), comma-separated; "*.x.y"
    # matches subdomains. https only; loopback too in local dev mode and the offline test rig.
    export_upload_hosts: str = Field("*.sharepoint.com", validation_alias=_env("ESAFETY_EXPORT_UPLOAD_HOSTS"))

    # The desk tab's Teams single sign-on. Entra's OpenID metadata gives the issuer template and the signing keys.
    tab_openid_metadata: str = Field(
        "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration",
        validation_alias=_env("ESAFETY_TAB_OPENID_METADATA"),
    )
    # Token audiences the tab accepts, comma-separated; empty means api://<public host>/<app id> and the app id.
    tab_audience: str = Field("", validation_alias=_env("ESAFETY_TAB_AUDIENCE"))
    tab_scope: str = Field("access_as_user", validation_alias=_env("ESAFETY_TAB_SCOPE"))  # the app's exposed scope
    tab_ca_bundle: Path | None = Field(None, validation_alias=_env("ESAFETY_TAB_CA_BUNDLE"))
    tab_timeout_seconds: float = Field(5.0, gt=0, validation_alias=_env("ESAFETY_TAB_TIMEOUT_SECONDS"))
    # Teams JS, served from the app's own origin (no CDN); installed by scripts/system-deps.sh.
    tab_teams_js: Path = Field(
        Path("tools/tab/node_modules/@microsoft/teams-js/dist/umd/MicrosoftTeams.min.js"),
        validation_alias=_env("ESAFETY_TAB_TEAMS_JS"),
    )

    # Observability. Logs: "json" (one object a line, for a log collector) or "text"; empty means text in local dev
    # mode and json otherwise. GET /metrics answers only "Authorization: Bearer <token>"; empty turns it off (404).
    log_format: Literal["", "json", "text"] = Field("", validation_alias=_env("ESAFETY_LOG_FORMAT"))
    metrics_token: SecretStr = Field(SecretStr(""), validation_alias=_env("ESAFETY_METRICS_TOKEN"))

    def startup_problem(self) -> str | None:
        """Say in one line why the app must not start, or None when it may."""
        if not self.dev and not self.app_id.strip():
            return (
                "MicrosoftAppId is not set. Without it botframework-connector silently turns off "
                "authentication, so the bot will not start. Set MicrosoftAppId (and MicrosoftAppPassword or a "
                "managed identity), or set ESAFETY_DEV=1 for local development only."
            )
        if not self.dev and self.data_key is None:
            return "ESAFETY_DATA_KEY is not set. Sensitive fields are encrypted at rest, so a key is required."
        if self.app_type == "SingleTenant" and self.app_id and not self.app_tenant_id:
            return "MicrosoftAppTenantId is required when MicrosoftAppType is SingleTenant."
        if (
            self.directory == "graph"
            and not self.dev
            and not (
                self.graph_client_secret
                or self.graph_certificate_path
                or self.graph_managed_identity
                or self.app_password.get_secret_value()
            )
        ):
            return (
                "ESAFETY_DIRECTORY is graph but no Graph credential is set: set GRAPH_CLIENT_SECRET, "
                "GRAPH_CERTIFICATE_PATH or GRAPH_MANAGED_IDENTITY=1."
            )
        if not self.dev and self.audit_key is None:
            return "ESAFETY_AUDIT_KEY is not set. The audit trail is sealed with its own key, so a key is required."
        if self.audit_key is not None and len(self.audit_key.get_secret_value().strip()) < 32:
            return "ESAFETY_AUDIT_KEY is too short: use at least 32 random characters."
        return None

    @property
    def connector_extra_hosts(self) -> tuple[str, ...]:
        return tuple(host.strip() for host in self.connector_hosts.split(",") if host.strip())

    @property
    def export_upload_host_list(self) -> tuple[str, ...]:
        return tuple(host.strip() for host in self.export_upload_hosts.split(",") if host.strip())

    @property
    def audit_keys_retired(self) -> tuple[str, ...]:
        text = self.audit_keys_old.get_secret_value() if self.audit_keys_old else ""
        return tuple(key.strip() for key in text.split(",") if key.strip())

    @property
    def tab_audiences(self) -> tuple[str, ...]:
        listed = tuple(a.strip() for a in self.tab_audience.split(",") if a.strip())
        app_id = self.app_id.strip()
        if listed or not app_id:
            return listed  # no app id and nothing listed: no token can be for this app, so the tab admits nobody
        host = urlsplit(self.public_url.strip()).hostname
        return (f"api://{host}/{app_id}", app_id) if host else (app_id,)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
