"""Filter backends: `manual` (a technician makes the change) and `squid` (domain lists read by a Squid ACL)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path

from bot.config import SchoolConfig
from bot.filtering import FilterBackend, FilterBackendError, FilterChange

RELOAD_TIMEOUT_SECONDS = 30.0


class ManualBackend:
    """The school's filter is changed by hand: technicians get an Apply card and mark it done."""

    name = "manual"
    automatic = False

    async def apply(self, change: FilterChange) -> str:
        return f"sent to technicians to {change.action} {change.domain} by hand"

    async def revert(self, change: FilterChange) -> str:
        return f"sent to technicians to remove the {change.action} rule for {change.domain} by hand"


class SquidBackend:
    """Keeps dstdomain lists that squid.conf reads, and asks Squid to reload them.

    Each list holds one `.domain` per line (the domain and all its subdomains):
      allow.txt            unblocked for everyone (all pupils);
      allow.staff.txt      unblocked for staff only;  allow.year-5.txt ... for one year group;
      block.txt            blocked for everyone.
    The audience lists sit next to allow.txt and open nothing unless squid.conf pairs them with who is asking
    (a `src` or proxy-auth ACL), so an unblock for staff can never open a site to pupils by mistake. Blocks are
    always for everyone: over-blocking fails safe. A squid.conf using them, before its other http_access rules:
        acl esafety_allow dstdomain "/etc/squid/esafety/allow.txt"
        acl esafety_allow_staff dstdomain "/etc/squid/esafety/allow.staff.txt"
        acl esafety_block dstdomain "/etc/squid/esafety/block.txt"
        acl staff_devices src 10.0.10.0/24
        http_access allow staff_devices esafety_allow_staff
        http_access allow esafety_allow
        http_access deny esafety_block
    """

    name = "squid"
    automatic = True

    def __init__(self, allow_file: Path, block_file: Path, reload_command: list[str]) -> None:
        self._allow = Path(allow_file)
        self._block = Path(block_file)
        self._reload = list(reload_command)
        self._edits = asyncio.Lock()  # one edit-and-reload at a time in this process

    def _lock(self) -> asyncio.Lock:
        return self._edits

    def allow_files(self, change: FilterChange) -> list[Path]:
        """The allow lists a change belongs in, by its audience."""
        if change.audience == "staff":
            return [self._audience_file("staff")]
        if change.audience == "year_groups" and change.year_groups:
            return [self._audience_file(_slug(group)) for group in change.year_groups]
        return [self._allow]

    def _audience_file(self, slug: str) -> Path:
        return self._allow.with_name(f"{self._allow.stem}.{slug}{self._allow.suffix}")

    def _all_allow_files(self) -> list[Path]:
        pattern = f"{self._allow.stem}.*{self._allow.suffix}"
        return [self._allow] + sorted(p for p in self._allow.parent.glob(pattern) if not p.name.startswith("."))

    async def apply(self, change: FilterChange) -> str:
        async with self._lock():
            if change.action == "allow":
                targets = self.allow_files(change)
                for path in targets:
                    await asyncio.to_thread(self._edit, path, add=change.domain)
                if targets == [self._allow]:
                    await asyncio.to_thread(self._edit, self._block, remove=change.domain)
                where = ", ".join(p.name for p in targets)
            else:
                await asyncio.to_thread(self._edit, self._block, add=change.domain)
                for path in await asyncio.to_thread(self._all_allow_files):
                    await asyncio.to_thread(self._edit, path, remove=change.domain)
                where = self._block.name
            await self._reload_squid()
        return f"squid: {change.domain} added to {where} and Squid reloaded"

    async def revert(self, change: FilterChange) -> str:
        async with self._lock():
            targets = self.allow_files(change) if change.action == "allow" else [self._block]
            for path in targets:
                await asyncio.to_thread(self._edit, path, remove=change.domain)
            await self._reload_squid()
        return f"squid: {change.domain} removed from {', '.join(p.name for p in targets)} and Squid reloaded"

    @staticmethod
    def _read(path: Path) -> list[str]:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise FilterBackendError(f"cannot read {path}: {exc.strerror or exc}") from exc
        return [line.strip() for line in lines if line.strip()]

    def _edit(self, path: Path, *, add: str | None = None, remove: str | None = None) -> None:
        if remove and not path.exists():
            return
        entries = self._read(path)
        target = (add or remove or "").lower()
        kept = [e for e in entries if e.lstrip(".").lower() != target]
        if add:
            kept.append(f".{target}")
        if kept != entries or not path.exists():
            _write_atomically(path, "".join(f"{line}\n" for line in kept))

    async def _reload_squid(self) -> None:
        try:
            process = await asyncio.create_subprocess_exec(
                *self._reload, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise FilterBackendError(f"cannot run the Squid reload command: {exc.strerror or exc}") from exc
        try:
            _out, err = await asyncio.wait_for(process.communicate(), RELOAD_TIMEOUT_SECONDS)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise FilterBackendError("the Squid reload command did not finish in time") from None
        if process.returncode != 0:
            detail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
            raise FilterBackendError(f"Squid reload failed (exit {process.returncode}): {detail[0][:200]}")


def _slug(group: str) -> str:
    """'Year 5' -> 'year-5', 'Reception' -> 'reception'."""
    return "-".join("".join(ch if ch.isalnum() else " " for ch in group.lower()).split())


def _write_atomically(path: Path, content: str) -> None:
    """Write to a temp file in the same directory, then rename over the list, so Squid never reads half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(content)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temp, 0o644)  # Squid runs as its own user and must be able to read the list
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
    except OSError as exc:
        raise FilterBackendError(f"cannot write {path}: {exc.strerror or exc}") from exc


def backend_for(school: SchoolConfig) -> FilterBackend:
    """The backend a school's configuration names."""
    settings = school.filtering
    if settings.backend == "squid":
        return SquidBackend(settings.squid.allow_file, settings.squid.block_file, settings.squid.reload_command)
    if settings.backend == "manual":
        return ManualBackend()
    raise ValueError(f"unknown filter backend {settings.backend!r}")
