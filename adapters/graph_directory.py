"""The Directory backed by Microsoft Graph: roles from Entra security groups, line managers, new-staff deltas.

Every answer is cached for a while (GRAPH_CACHE_SECONDS). When Graph fails, the last known answer is used and the
failure is logged; with no earlier answer a person simply has no roles, so an outage never grants a role. A 429 is
honoured: nothing is asked of that tenant until Retry-After has passed. 5xx answers are retried briefly with jittered
backoff and then the tenant is left alone for a growing pause. Lookups in a turn are bounded by GRAPH_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from azure.core.exceptions import AzureError
from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from kiota_http.kiota_client_factory import KiotaClientFactory
from kiota_http.middleware import RetryHandler
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.groups.delta.delta_request_builder import DeltaRequestBuilder
from msgraph.generated.groups.item.transitive_members.graph_user.graph_user_request_builder import (
    GraphUserRequestBuilder,
)
from msgraph.generated.models.user_scope_teams_app_installation import UserScopeTeamsAppInstallation
from msgraph.generated.users.item.check_member_groups.check_member_groups_post_request_body import (
    CheckMemberGroupsPostRequestBody,
)
from msgraph.generated.users.item.manager.manager_request_builder import ManagerRequestBuilder
from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder
from msgraph.generated.users.users_request_builder import UsersRequestBuilder
from msgraph_core import GraphClientFactory

from bot.config import AppConfig, SchoolConfig
from bot.people import Person, Role
from bot.protocols import Clock
from bot.settings import Settings
from bot.work import parse_retry_after

log = logging.getLogger(__name__)

T = TypeVar("T")
USER_SELECT = ["id", "displayName", "mail", "userPrincipalName"]
PAGE_SIZE = 999  # the most Graph returns per page for directory objects
TRIES = 3
RETRYABLE = {408, 500, 502, 503, 504}
MAX_PAUSE = dt.timedelta(minutes=10)
FIRST_PAUSE = dt.timedelta(seconds=15)


class GraphUnavailable(Exception):  # noqa: N818 - a condition the caller falls back from
    """Graph could not answer now (throttled, failing, unreachable or too slow)."""

    def __init__(self, reason: str, retry_after: dt.timedelta | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class GraphRefused(Exception):  # noqa: N818 - Graph's definite answer, not a fault
    """Graph answered with a client error (400-499 other than 408 and 429)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class _User:
    id: str
    name: str
    email: str


@dataclass
class _Entry:
    value: Any
    fetched_at: dt.datetime
    expired: bool = False  # known to be out of date: asked again, but still the fallback during an outage


@dataclass(frozen=True)
class StaffChanges:
    """What a delta query said about the staff group since the last one."""

    added: list[str]
    removed: list[str]
    delta_link: str
    baseline: bool  # True when this was a full sync (first run, or Graph asked for one): nobody counts as new


def _retry_after(headers: Any, now: dt.datetime) -> dt.timedelta | None:
    return parse_retry_after(headers.get("retry-after") if headers is not None else None, now)


def _user(obj: Any) -> _User:
    email = getattr(obj, "mail", None) or getattr(obj, "user_principal_name", None) or ""
    return _User(id=obj.id, name=getattr(obj, "display_name", None) or email or obj.id, email=email)


def _odata_quote(value: str) -> str:
    return value.replace("'", "''")


class GraphDirectory:
    """Implements bot.protocols.Directory over Microsoft Graph with msgraph-sdk and azure-identity."""

    def __init__(
        self,
        settings: Settings,
        config: AppConfig,
        clock: Clock,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._config = config
        self._clock = clock
        self._sleep = sleep
        self._clients: dict[str, GraphServiceClient] = {}
        self._closers: list[Any] = []
        self._cache: dict[tuple[str, ...], _Entry] = {}
        self._not_before: dict[str, dt.datetime] = {}
        self._failures: dict[str, int] = {}
        self._ttl = dt.timedelta(seconds=settings.graph_cache_seconds)
        self._stale = dt.timedelta(seconds=settings.graph_stale_seconds)
        for school in config.schools:
            if not school.role_groups:
                log.warning(
                    "school %s maps no roles to Entra groups (role_groups): nobody there will hold a role", school.id
                )
        for tenant in dict.fromkeys(school.tenant_id for school in config.schools):
            # Built now (no network yet) so that an unusable credential stops start-up rather than a turn.
            self._clients[tenant] = self._build_client(tenant)

    # --- the Directory protocol ---------------------------------------------------------------------------------

    async def person(self, school_id: str, person_id: str) -> Person | None:
        school = self._config.school(school_id)
        if school is None or not person_id:
            return None
        user, roles = await asyncio.gather(self._user_by_id(school, person_id), self._roles(school, person_id))
        if user is None:
            return None
        return Person(id=user.id, name=user.name, email=user.email, roles=roles, school=school.id)

    async def people_with_role(self, school_id: str, role: Role) -> list[Person]:
        school = self._config.school(school_id)
        if school is None or role not in school.role_groups:
            return []
        people = await self._people_by_role(school)
        return sorted((p for p in people.values() if role in p.roles), key=lambda p: (p.name, p.id))

    async def line_manager(self, school_id: str, person_id: str) -> Person | None:
        school = self._config.school(school_id)
        if school is None:
            return None

        async def fetch(client: GraphServiceClient) -> _User | None:
            query = ManagerRequestBuilder.ManagerRequestBuilderGetQueryParameters(select=USER_SELECT)
            config = RequestConfiguration(query_parameters=query)
            try:
                manager = await client.users.by_user_id(person_id).manager.get(request_configuration=config)
            except APIError as refused:
                if refused.response_status_code == 404:
                    return None  # having no manager is a normal answer
                raise
            return _user(manager) if manager is not None and manager.id else None

        try:
            manager = await self._cached(school, ("manager", person_id), fetch)
        except GraphUnavailable:
            return None
        if manager is None:
            return None
        return Person(
            id=manager.id,
            name=manager.name,
            email=manager.email,
            roles=await self._roles(school, manager.id),
            school=school.id,
        )

    async def find_by_email(self, school_id: str, email: str) -> Person | None:
        school = self._config.school(school_id)
        wanted = email.strip().lower()
        if school is None or not wanted:
            return None

        async def fetch(client: GraphServiceClient) -> _User | None:
            quoted = _odata_quote(wanted)
            query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
                filter=f"mail eq '{quoted}' or userPrincipalName eq '{quoted}'", select=USER_SELECT, top=2
            )
            found = await client.users.get(request_configuration=RequestConfiguration(query_parameters=query))
            users = [u for u in (found.value if found else None) or [] if u.id]
            return _user(users[0]) if users else None

        try:
            user = await self._cached(school, ("email", wanted), fetch)
        except GraphUnavailable:
            return None
        if user is None:
            return None
        roles = await self._roles(school, user.id)
        return Person(id=user.id, name=user.name, email=user.email, roles=roles, school=school.id)

    async def everyone(self, school_id: str) -> list[Person]:
        school = self._config.school(school_id)
        if school is None:
            return []
        people = await self._people_by_role(school)
        return sorted(people.values(), key=lambda p: (p.name, p.id))

    # --- new staff ----------------------------------------------------------------------------------------------

    async def staff_changes(self, school_id: str, delta_link: str | None) -> StaffChanges | None:
        """Members added to and removed from the staff group since `delta_link` (a full sync when None).

        None when the school maps no group to the staff role. Raises GraphUnavailable when Graph cannot answer.
        """
        school = self._config.school(school_id)
        group_id = school.role_groups.get(Role.STAFF) if school else None
        if school is None or not group_id:
            return None

        async def fetch(client: GraphServiceClient) -> StaffChanges:
            delta = client.groups.delta
            if delta_link:
                try:
                    page = await delta.with_url(delta_link).get()
                except APIError as refused:
                    if refused.response_status_code not in (400, 410):  # the token expired: Graph wants a full sync
                        raise
                    log.warning(
                        "staff delta link for %s was refused (%s); starting a full sync",
                        school_id,
                        refused.response_status_code,
                    )
                    return await fetch_full(client)
                return await collect(page, baseline=False)
            return await fetch_full(client)

        async def fetch_full(client: GraphServiceClient) -> StaffChanges:
            query = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
                filter=f"id eq '{_odata_quote(group_id)}'", select=["members"]
            )
            page = await client.groups.delta.get(request_configuration=RequestConfiguration(query_parameters=query))
            return await collect(page, baseline=True)

        async def collect(page: Any, *, baseline: bool) -> StaffChanges:
            added: list[str] = []
            removed: list[str] = []
            client = await self._client(school)
            while True:
                for group in (page.value if page else None) or []:
                    if group.id != group_id:
                        continue
                    for member in (group.additional_data or {}).get("members@delta") or []:
                        if not isinstance(member, dict) or not member.get("id"):
                            continue
                        if "#microsoft.graph.user" not in (member.get("@odata.type") or "#microsoft.graph.user"):
                            continue
                        (removed if member.get("@removed") else added).append(member["id"])
                if page is not None and page.odata_next_link:
                    page = await client.groups.delta.with_url(page.odata_next_link).get()
                    continue
                link = page.odata_delta_link if page is not None else None
                if not link:
                    raise GraphUnavailable("Graph's delta answer had no delta link")
                return StaffChanges(
                    added=list(dict.fromkeys(added)),
                    removed=list(dict.fromkeys(removed)),
                    delta_link=link,
                    baseline=baseline,
                )

        return await self._call(school, "staff delta", fetch, bulk=True)

    def forget(self, school_id: str) -> None:
        """Treat a school's cached answers as out of date (the directory is known to have changed); they remain
        the fallback if Graph then fails."""
        for key, entry in self._cache.items():
            if key[0] == school_id:
                entry.expired = True

    # --- Teams app installation (used by adapters.graph_install) ------------------------------------------------

    async def install_app_for_user(self, school_id: str, person_id: str, catalog_app_id: str) -> str:
        """Install the Teams app for a user: 'installed', or 'already installed' when Graph answers 409."""
        school = self._config.school(school_id)
        if school is None:
            raise GraphRefused(404, "unknown school")
        bind = f"{self._settings.graph_base_url.rstrip('/')}/appCatalogs/teamsApps/{catalog_app_id}"

        async def install(client: GraphServiceClient) -> str:
            body = UserScopeTeamsAppInstallation(additional_data={"teamsApp@odata.bind": bind})
            try:
                await client.users.by_user_id(person_id).teamwork.installed_apps.post(body)
            except APIError as refused:
                if refused.response_status_code == 409:
                    return "already installed"
                raise
            return "installed"

        return await self._call(school, "install app", install, bulk=True)

    async def close(self) -> None:
        for closer in self._closers:
            try:
                await closer()
            except Exception:  # noqa: BLE001 - closing is best effort at shutdown
                log.debug("graph client close failed", exc_info=True)
        self._closers.clear()
        self._clients.clear()

    # --- lookups behind the cache -------------------------------------------------------------------------------

    async def _user_by_id(self, school: SchoolConfig, person_id: str) -> _User | None:
        async def fetch(client: GraphServiceClient) -> _User | None:
            query = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(select=USER_SELECT)
            try:
                user = await client.users.by_user_id(person_id).get(
                    request_configuration=RequestConfiguration(query_parameters=query)
                )
            except APIError as refused:
                if refused.response_status_code == 404:
                    return None
                raise
            return _user(user) if user is not None and user.id else None

        try:
            return await self._cached(school, ("user", person_id), fetch)
        except GraphUnavailable:
            return None

    async def _roles(self, school: SchoolConfig, person_id: str) -> frozenset[Role]:
        """The person's roles from checkMemberGroups; none at all when Graph cannot say."""
        groups = sorted(set(school.role_groups.values()))
        if not groups:
            return frozenset()

        async def fetch(client: GraphServiceClient) -> frozenset[Role]:
            found: set[str] = set()
            for start in range(0, len(groups), 20):  # checkMemberGroups takes at most 20 ids
                body = CheckMemberGroupsPostRequestBody(group_ids=groups[start : start + 20])
                try:
                    answer = await client.users.by_user_id(person_id).check_member_groups.post(body)
                except APIError as refused:
                    if refused.response_status_code == 404:
                        return frozenset()
                    raise
                found.update((answer.value if answer else None) or [])
            return frozenset(role for role, group in school.role_groups.items() if group in found)

        try:
            return await self._cached(school, ("roles", person_id), fetch)
        except GraphUnavailable:
            return frozenset()

    async def _group_members(self, school: SchoolConfig, group_id: str) -> list[_User]:
        async def fetch(client: GraphServiceClient) -> list[_User]:
            query = GraphUserRequestBuilder.GraphUserRequestBuilderGetQueryParameters(select=USER_SELECT, top=PAGE_SIZE)
            builder = client.groups.by_group_id(group_id).transitive_members.graph_user
            page = await builder.get(request_configuration=RequestConfiguration(query_parameters=query))
            members: dict[str, _User] = {}
            while page is not None:
                for user in page.value or []:
                    if user.id:
                        members[user.id] = _user(user)
                if not page.odata_next_link:
                    break
                page = await builder.with_url(page.odata_next_link).get()
            return list(members.values())

        try:
            return await self._cached(school, ("members", group_id), fetch, bulk=True)
        except GraphUnavailable:
            return []

    async def _people_by_role(self, school: SchoolConfig) -> dict[str, Person]:
        """Everyone in any role group, each with exactly the roles whose group membership Graph confirmed."""
        groups = sorted(set(school.role_groups.values()))
        memberships = dict(
            zip(groups, await asyncio.gather(*(self._group_members(school, g) for g in groups)), strict=True)
        )
        users: dict[str, _User] = {}
        roles: dict[str, set[Role]] = {}
        for role, group in school.role_groups.items():
            for user in memberships[group]:
                users[user.id] = user
                roles.setdefault(user.id, set()).add(role)
        return {
            uid: Person(id=uid, name=u.name, email=u.email, roles=frozenset(roles[uid]), school=school.id)
            for uid, u in users.items()
        }

    # --- cache, throttling and retries --------------------------------------------------------------------------

    async def _cached(
        self,
        school: SchoolConfig,
        key: tuple[str, ...],
        fetch: Callable[[GraphServiceClient], Awaitable[T]],
        *,
        bulk: bool = False,
    ) -> T:
        full_key = (school.id, *key)
        entry = self._cache.get(full_key)
        now = self._clock.now()
        if entry is not None and not entry.expired and now - entry.fetched_at < self._ttl:
            return entry.value
        try:
            value = await self._call(school, key[0], fetch, bulk=bulk)
        except GraphUnavailable as exc:
            if entry is not None and now - entry.fetched_at < self._stale:
                log.warning(
                    "Graph unavailable for %s lookup in %s (%s); using the answer from %s",
                    key[0],
                    school.id,
                    exc.reason,
                    entry.fetched_at.isoformat(),
                )
                return entry.value
            log.warning(
                "Graph unavailable for %s lookup in %s (%s) and there is no earlier answer",
                key[0],
                school.id,
                exc.reason,
            )
            raise
        self._cache[full_key] = _Entry(value, self._clock.now())
        return value

    async def _call(
        self,
        school: SchoolConfig,
        what: str,
        operation: Callable[[GraphServiceClient], Awaitable[T]],
        *,
        bulk: bool = False,
    ) -> T:
        """Run one Graph operation within the time budget, honouring Retry-After and backing off on 5xx."""
        tenant = school.tenant_id
        gate = self._not_before.get(tenant)
        if gate is not None and self._clock.now() < gate:
            raise GraphUnavailable(f"waiting until {gate.isoformat()} as Graph asked")
        budget = self._settings.graph_bulk_timeout_seconds if bulk else self._settings.graph_timeout_seconds
        deadline = time.monotonic() + budget
        try:
            async with asyncio.timeout(budget):
                return await self._attempts(school, operation, deadline)
        except TimeoutError:
            self._pause(tenant, None)
            raise GraphUnavailable(f"Graph did not answer the {what} lookup within {budget:g}s") from None

    async def _attempts(
        self, school: SchoolConfig, operation: Callable[[GraphServiceClient], Awaitable[T]], deadline: float
    ) -> T:
        tenant = school.tenant_id
        client = await self._client(school)
        for attempt in range(1, TRIES + 1):
            try:
                result = await self._translated(operation, client)
            except GraphUnavailable as exc:
                wait = exc.retry_after
                if wait is None:
                    wait = dt.timedelta(seconds=random.uniform(0.05, 0.1) * 2 ** (attempt - 1))  # noqa: S311
                if attempt < TRIES and time.monotonic() + wait.total_seconds() < deadline:
                    await self._sleep(wait.total_seconds())
                    continue
                self._pause(tenant, exc.retry_after)
                raise
            self._failures.pop(tenant, None)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def _translated(
        self, operation: Callable[[GraphServiceClient], Awaitable[T]], client: GraphServiceClient
    ) -> T:
        """Turn SDK and transport errors into GraphUnavailable (try again later) or GraphRefused (definite)."""
        try:
            return await operation(client)
        except APIError as exc:
            status = exc.response_status_code or 0
            message = getattr(getattr(exc, "error", None), "message", None) or str(exc.message or "")
            if status == 429:
                after = _retry_after(exc.response_headers, self._clock.now())
                raise GraphUnavailable(
                    "throttled by Graph (429)", after if after is not None else dt.timedelta(seconds=5)
                ) from exc
            if status in RETRYABLE or status >= 500:
                raise GraphUnavailable(
                    f"Graph answered {status}", _retry_after(exc.response_headers, self._clock.now())
                ) from exc
            raise GraphRefused(status, message) from exc
        except (httpx.HTTPError, AzureError, OSError) as exc:
            raise GraphUnavailable(f"Graph unreachable ({exc.__class__.__name__})") from exc

    def _pause(self, tenant: str, retry_after: dt.timedelta | None) -> None:
        """Leave the tenant alone: until Retry-After when given, else for a pause that grows with each failure."""
        failures = self._failures.get(tenant, 0) + 1
        self._failures[tenant] = failures
        pause = retry_after if retry_after is not None else min(MAX_PAUSE, FIRST_PAUSE * 2 ** (failures - 1))
        self._not_before[tenant] = self._clock.now() + pause

    # --- clients ------------------------------------------------------------------------------------------------

    async def _client(self, school: SchoolConfig) -> GraphServiceClient:
        tenant = school.tenant_id
        client = self._clients.get(tenant)
        if client is None:
            client = self._build_client(tenant)
            self._clients[tenant] = client
        return client

    def _build_client(self, tenant_id: str) -> GraphServiceClient:
        settings = self._settings
        base = urlsplit(settings.graph_base_url)
        credential = self._credential(tenant_id)
        self._closers.append(credential.close)
        auth = AzureIdentityAuthenticationProvider(
            credential, scopes=[f"{base.scheme}://{base.netloc}/.default"], allowed_hosts=[base.hostname or ""]
        )
        verify: ssl.SSLContext | bool = True
        if settings.graph_ca_bundle:
            verify = ssl.create_default_context(cafile=str(settings.graph_ca_bundle))
        timeout = httpx.Timeout(settings.graph_bulk_timeout_seconds, connect=min(5.0, settings.graph_timeout_seconds))
        http = httpx.AsyncClient(verify=verify, timeout=timeout)
        self._closers.append(http.aclose)
        # Kiota's retry middleware would sleep up to 180 s inside a turn; this class owns retries instead.
        middleware = [m for m in KiotaClientFactory.get_default_middleware(None) if not isinstance(m, RetryHandler)]
        http = GraphClientFactory.create_with_custom_middleware(middleware=middleware, client=http)
        adapter = GraphRequestAdapter(auth, client=http)
        adapter.base_url = settings.graph_base_url.rstrip("/")
        return GraphServiceClient(request_adapter=adapter)

    def _credential(self, tenant_id: str) -> Any:
        from azure.identity.aio import CertificateCredential, ClientSecretCredential, ManagedIdentityCredential

        settings = self._settings
        options: dict[str, Any] = {}
        if settings.graph_ca_bundle:
            options["connection_verify"] = str(settings.graph_ca_bundle)
        client_id = settings.graph_client_id or settings.app_id
        if settings.graph_certificate_path:
            return CertificateCredential(
                tenant_id,
                client_id,
                certificate_path=str(settings.graph_certificate_path),
                authority=settings.graph_authority,
                **options,
            )
        if settings.graph_managed_identity:
            return ManagedIdentityCredential(client_id=client_id or None, **options)
        secret = settings.graph_client_secret or settings.app_password
        return ClientSecretCredential(
            tenant_id, client_id, secret.get_secret_value(), authority=settings.graph_authority, **options
        )
