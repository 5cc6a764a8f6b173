"""Puts an accepted export into the person's OneDrive: one PUT to the upload session URL Teams handed the bot."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from adapters.connector_http import is_loopback_host
from bot.exports import UploadFailed, UploadRefused

DEFAULT_UPLOAD_HOSTS = ("*.sharepoint.com",)


def _matches(host: str, pattern: str) -> bool:
    pattern = pattern.lower().strip().rstrip(".")
    return host.endswith(pattern[1:]) if pattern.startswith("*.") else host == pattern


@dataclass(frozen=True)
class UploadPolicy:
    """The upload URL comes in an invoke's body, so it decides where the file goes: only OneDrive and SharePoint
    hosts over https, plus loopback for local dev and the test rig."""

    hosts: tuple[str, ...] = DEFAULT_UPLOAD_HOSTS
    allow_loopback: bool = False

    def check(self, url: str) -> None:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise UploadRefused("not a valid URL") from None
        host = (parts.hostname or "").lower().rstrip(".")
        if parts.username is not None or parts.password is not None:
            raise UploadRefused("credentials in the URL")
        if self.allow_loopback and is_loopback_host(host) and parts.scheme in ("http", "https"):
            return
        if parts.scheme != "https" or port not in (None, 443):
            raise UploadRefused("not https on the standard port")
        if not any(_matches(host, pattern) for pattern in self.hosts):
            raise UploadRefused(f"{host} is not an allowed upload host")


class FileUploader:
    """One pooled aiohttp session for every upload, made on first use; a timeout on the whole call."""

    def __init__(self, policy: UploadPolicy, *, timeout: float = 30.0, connect_timeout: float = 5.0) -> None:
        self.policy = policy
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=connect_timeout)
        self._session: aiohttp.ClientSession | None = None

    def check(self, url: str) -> None:
        self.policy.check(url)

    async def put(self, url: str, body: bytes) -> None:
        """The whole file in one request, as Teams' bot file flow does for files this size."""
        self.policy.check(url)
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(limit_per_host=8)
            )
        headers = {"Content-Length": str(len(body)), "Content-Range": f"bytes 0-{len(body) - 1}/{len(body)}"}
        try:
            async with self._session.put(url, data=body, headers=headers, allow_redirects=False) as response:
                if response.status in (200, 201):
                    return
                raise UploadFailed(
                    f"the upload answered {response.status}",
                    retryable=response.status in (408, 429, 500, 502, 503, 504),
                )
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise UploadFailed(f"the upload did not finish: {exc.__class__.__name__}", retryable=True) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
