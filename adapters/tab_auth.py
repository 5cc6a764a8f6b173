"""Teams single sign-on for the desk tab: the token Teams JS hands the page, checked on the server.

The token is an Entra access token for the app's own API (Teams' getAuthToken). It is trusted only when it is signed
(RS256) by a key Entra publishes, is current, is for this app and carries the app's scope, and was issued by the
token's own tenant; the tenant must be a configured school and the person one its directory knows. Roles come from
the directory, never from the token.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt

from bot.actor import Actor
from bot.config import AppConfig
from bot.protocols import Directory
from bot.school_lookup import place

log = logging.getLogger("esafety.tab")

ALGORITHM = "RS256"
LEEWAY_SECONDS = 60  # clock skew between Entra and this server
METADATA_MAX_AGE = 24 * 3600.0  # Entra rotates keys every few weeks and publishes new ones well ahead
REFRESHES_PER_MINUTE = 6  # unknown key ids trigger a refresh; forged ones must not make us hammer Entra
TENANT_ID = re.compile(r"^[0-9a-fA-F-]{36}$")


class NotSignedIn(Exception):  # noqa: N818 - an outcome for the caller, not a fault
    """No usable token: the reason is for the log; the person only ever sees a calm 401."""


class SignInUnavailable(Exception):  # noqa: N818
    """Entra's metadata or keys could not be fetched, and none are cached: the server's problem, not the caller's."""


@dataclass
class _Keys:
    issuer: str
    keys: dict[str, jwt.PyJWK]
    fetched: float


class OpenIdKeys:
    """Entra's OpenID metadata and signing keys: fetched with aiohttp, cached, refreshed when a token names a key id
    we have not seen (Entra has rotated), and never fetched by more than one request at a time."""

    def __init__(
        self, metadata_url: str, *, timeout: float, ca_bundle: Path | None = None, max_age: float = METADATA_MAX_AGE
    ) -> None:
        self._url = metadata_url
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=timeout)
        self._ssl: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle else True
        self._max_age = max_age
        self._cached: _Keys | None = None
        self._lock = asyncio.Lock()
        self._refreshes: deque[float] = deque()
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def issuer_and_key(self, kid: str) -> tuple[str, jwt.PyJWK | None]:
        cached = self._cached
        if cached is None or time.monotonic() - cached.fetched > self._max_age:
            cached = await self._refresh(stale=cached, wanted=None)
        elif kid not in cached.keys:
            cached = await self._refresh(stale=cached, wanted=kid)
        return cached.issuer, cached.keys.get(kid)

    async def _refresh(self, *, stale: _Keys | None, wanted: str | None) -> _Keys:
        async with self._lock:
            current = self._cached
            if current is not None and current is not stale:
                return current  # someone else refreshed while we waited
            if wanted is not None and not self._may_refresh():
                return current  # type: ignore[return-value]  # budget spent: the key stays unknown for now
            try:
                self._cached = await self._fetch()
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, jwt.PyJWKError) as problem:
                log.warning("could not fetch Entra's sign-in metadata from %s: %r", self._url, problem)
                if current is None:
                    raise SignInUnavailable(str(problem)) from problem
                return current  # keep signing people in with the keys we have
            return self._cached

    def _may_refresh(self) -> bool:
        now = time.monotonic()
        while self._refreshes and now - self._refreshes[0] > 60:
            self._refreshes.popleft()
        if len(self._refreshes) >= REFRESHES_PER_MINUTE:
            return False
        self._refreshes.append(now)
        return True

    async def _fetch(self) -> _Keys:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        metadata = await self._get_json(self._url)
        issuer, jwks_uri = metadata["issuer"], metadata["jwks_uri"]
        if not isinstance(issuer, str) or not isinstance(jwks_uri, str):
            raise ValueError("metadata without issuer or jwks_uri")
        jwks = await self._get_json(jwks_uri)
        keys: dict[str, jwt.PyJWK] = {}
        for entry in jwks.get("keys", []):
            if (
                isinstance(entry, dict)
                and entry.get("kty") == "RSA"
                and isinstance(entry.get("kid"), str)
                and entry.get("use", "sig") == "sig"
            ):
                try:
                    keys[entry["kid"]] = jwt.PyJWK(entry, algorithm=ALGORITHM)
                except (jwt.PyJWKError, ValueError, TypeError):
                    log.warning("ignoring a signing key Entra published that cannot be read: %s", entry["kid"])
        return _Keys(issuer=issuer, keys=keys, fetched=time.monotonic())

    async def _get_json(self, url: str) -> dict[str, Any]:
        assert self._http is not None
        async with self._http.get(url, ssl=self._ssl) as response:
            response.raise_for_status()
            body = await response.json(content_type=None)
        if not isinstance(body, dict):
            raise ValueError(f"{url} did not answer a JSON object")
        return body


class TabAuth:
    """Who is asking: an Actor for a valid token, NotSignedIn for anything else."""

    def __init__(
        self, keys: OpenIdKeys, *, audiences: tuple[str, ...], scope: str, config: AppConfig, directory: Directory
    ) -> None:
        self._keys = keys
        self._audiences = list(audiences)
        self._scope = scope
        self._config = config
        self._directory = directory

    async def close(self) -> None:
        await self._keys.close()

    async def actor(self, authorization: str | None) -> Actor:
        token = _bearer(authorization)
        claims = await self._claims(token)
        # The tab carries no team: tenant, then the person, exactly as a 1:1 chat (bot.school_lookup).
        placement = await place(self._config, self._directory, claims["tid"], None, claims["oid"])
        school = placement.school
        if school is None:
            reason = "person is at several schools of the tenant, or none" if placement.shared else "unknown tenant"
            raise NotSignedIn(reason)
        person = await self._directory.person(school.id, claims["oid"])
        if person is None:
            raise NotSignedIn("person unknown to the school's directory")
        return Actor(school=school, person=person, conversation_kind="personal")

    async def _claims(self, token: str) -> dict[str, Any]:
        if not self._audiences:
            raise NotSignedIn("no audience configured (MicrosoftAppId or ESAFETY_TAB_AUDIENCE)")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as problem:
            raise NotSignedIn(f"malformed token: {problem}") from problem
        kid, tenant = header.get("kid"), unverified.get("tid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str) or not kid:
            raise NotSignedIn("token is not RS256 with a key id")
        if not isinstance(tenant, str) or not TENANT_ID.match(tenant):
            raise NotSignedIn("token has no tenant id")
        template, key = await self._keys.issuer_and_key(kid)
        if key is None:
            raise NotSignedIn("token is signed with a key Entra does not publish")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[ALGORITHM],
                audience=self._audiences,
                issuer=template.replace("{tenantid}", tenant),
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "nbf", "iss", "aud", "tid", "oid"]},
            )
        except jwt.PyJWTError as problem:
            raise NotSignedIn(f"invalid token: {problem}") from problem
        scopes = str(claims.get("scp") or "").split()
        if self._scope and self._scope not in scopes:
            raise NotSignedIn("token lacks the app's scope (an ID token, or for another API)")
        if not isinstance(claims.get("oid"), str):
            raise NotSignedIn("token has no object id")
        return claims


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotSignedIn("no bearer token")
    return token.strip()
