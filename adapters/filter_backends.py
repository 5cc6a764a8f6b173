"""Filter backends: `manual` (a technician makes the change), `squid` (domain lists read by a Squid ACL) and
`dnsmasq` (DNS filtering: the same lists rendered for dnsmasq)."""

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
    # A technician works in the vendor's console, which sees whole addresses: one page can be allowed.
    scopes: tuple[str, ...] = ("url", "host", "domain")
    host_below: bool = False

    async def apply(self, change: FilterChange) -> str:
        return f"sent to technicians to {change.action} {change.target or change.domain} by hand"

    async def revert(self, change: FilterChange) -> str:
        return f"sent to technicians to remove the {change.action} rule for {change.target or change.domain} by hand"


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
    # dstdomain `www.example.com` is that host only, `.example.com` the domain and every subdomain; Squid sees no
    # paths of HTTPS addresses, so a page cannot be allowed on its own.
    scopes: tuple[str, ...] = ("host", "domain")
    host_below: bool = False

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
        entry = _squid_entry(change)
        async with self._lock():
            if change.action == "allow":
                targets = self.allow_files(change)
                for path in targets:
                    await asyncio.to_thread(self._edit, path, add=entry)
                if targets == [self._allow]:
                    await asyncio.to_thread(self._edit, self._block, remove=entry)
                where = ", ".join(p.name for p in targets)
            else:
                await asyncio.to_thread(self._edit, self._block, add=entry)
                for path in await asyncio.to_thread(self._all_allow_files):
                    await asyncio.to_thread(self._edit, path, remove=entry)
                where = self._block.name
            await self._reload_squid()
        return f"squid: {entry} added to {where} and Squid reloaded"

    async def revert(self, change: FilterChange) -> str:
        entry = _squid_entry(change)
        async with self._lock():
            targets = self.allow_files(change) if change.action == "allow" else [self._block]
            for path in targets:
                await asyncio.to_thread(self._edit, path, remove=entry)
            await self._reload_squid()
        return f"squid: {entry} removed from {', '.join(p.name for p in targets)} and Squid reloaded"

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
        """Add or remove one dstdomain entry: `.domain` (with the bare domain too) or exactly `host`."""
        if remove and not path.exists():
            return
        entries = self._read(path)
        target = (add or remove or "").lower()
        if target.startswith("."):
            kept = [e for e in entries if e.lstrip(".").lower() != target.lstrip(".")]
        else:  # a host rule touches only that host's own line, never the domain rule around it
            kept = [e for e in entries if e.lower() != target]
        if add:
            kept.append(target)
        if kept != entries or not path.exists():
            _write_atomically(path, "".join(f"{line}\n" for line in kept))

    async def _reload_squid(self) -> None:
        await _run_reload(self._reload, "Squid")


class DnsmasqBackend:
    """DNS filtering: keeps allow and block lists and renders them into the file dnsmasq's --servers-file reads.

    The lists hold one `.domain` per line, as for Squid (allow.txt for everyone, allow.staff.txt, allow.year-5.txt
    for one audience, block.txt). dnsmasq reads them rendered in its own syntax, re-read on SIGHUP:
        server=/bet365.com/      a block: NXDOMAIN for the domain and all its subdomains;
        server=/youtube.com/#    an unblock: answered by the upstream servers, even where a less specific block
                                 or the school's base block list (`server=/domain/` lines in dnsmasq.conf) says no.
    A resolver cannot tell who is asking, so servers.conf (the pupils' resolver) holds the blocks and the unblocks for
    everyone; servers.staff.conf (and servers.year-5.conf ...) add that audience's unblocks, for a second dnsmasq
    that only those devices use. An audience unblock therefore never opens a site on the pupils' resolver.
    """

    name = "dnsmasq"
    automatic = True
    # server=/www.example.com/ covers that name and every name below it; a resolver never sees paths.
    scopes: tuple[str, ...] = ("host", "domain")
    host_below: bool = True

    def __init__(self, allow_file: Path, block_file: Path, servers_file: Path, reload_command: list[str]) -> None:
        self._allow = Path(allow_file)
        self._block = Path(block_file)
        self._servers = Path(servers_file)
        self._reload = list(reload_command)
        self._edits = asyncio.Lock()  # one edit-and-reload at a time in this process

    def allow_files(self, change: FilterChange) -> list[Path]:
        """The allow lists a change belongs in, by its audience."""
        if change.audience == "staff":
            return [_sibling(self._allow, "staff")]
        if change.audience == "year_groups" and change.year_groups:
            return [_sibling(self._allow, _slug(group)) for group in change.year_groups]
        return [self._allow]

    def servers_file(self, audience: str | None = None) -> Path:
        """The rendered file for the pupils' resolver, or for one audience's resolver ('staff', 'year-5')."""
        return self._servers if audience is None else _sibling(self._servers, audience)

    async def apply(self, change: FilterChange) -> str:
        domain = _dns_name(change.site_rule()[1])  # a host rule is that name and the names below it
        async with self._edits:
            if change.action == "allow":
                targets = self.allow_files(change)
                for path in targets:
                    await asyncio.to_thread(_edit_list, path, add=domain)
                if targets == [self._allow]:
                    await asyncio.to_thread(_edit_list, self._block, remove=domain)
            else:
                targets = [self._block]
                await asyncio.to_thread(_edit_list, self._block, add=domain)
                for path in await asyncio.to_thread(self._audience_lists):
                    await asyncio.to_thread(_edit_list, path, remove=domain)
                await asyncio.to_thread(_edit_list, self._allow, remove=domain)
            await asyncio.to_thread(self._render)
            await _run_reload(self._reload, "dnsmasq")
        return f"dnsmasq: {domain} added to {', '.join(p.name for p in targets)} and dnsmasq reloaded"

    async def revert(self, change: FilterChange) -> str:
        domain = _dns_name(change.site_rule()[1])
        async with self._edits:
            targets = self.allow_files(change) if change.action == "allow" else [self._block]
            for path in targets:
                await asyncio.to_thread(_edit_list, path, remove=domain)
            await asyncio.to_thread(self._render)
            await _run_reload(self._reload, "dnsmasq")
        return f"dnsmasq: {domain} removed from {', '.join(p.name for p in targets)} and dnsmasq reloaded"

    def _audience_lists(self) -> list[Path]:
        pattern = f"{self._allow.stem}.*{self._allow.suffix}"
        return sorted(p for p in self._allow.parent.glob(pattern) if not p.name.startswith("."))

    def _render(self) -> None:
        """Write every resolver's servers file from the lists; the staff one always exists, so it can be started."""
        blocks = _read_list(self._block)
        everyone = _read_list(self._allow)
        prefix = f"{self._allow.stem}."
        audiences = {"staff": _read_list(_sibling(self._allow, "staff"))}
        for path in self._audience_lists():
            audiences[path.name[len(prefix) : -len(self._allow.suffix) or None]] = _read_list(path)
        _write_atomically(self._servers, _servers_text(blocks, everyone))
        for audience, allowed in sorted(audiences.items()):
            _write_atomically(self.servers_file(audience), _servers_text(blocks, everyone + allowed))


def _squid_entry(change: FilterChange) -> str:
    """The dstdomain line for a change: `www.example.com` is that host only, `.example.com` the whole domain."""
    scope, name = change.site_rule()
    name = name.strip().lower().strip(".")
    if not name or any(not (ch.isascii() and (ch.isalnum() or ch in "-.")) for ch in name):
        raise FilterBackendError(f"{name!r} is not a host name Squid can filter")
    return name if scope == "host" else f".{name}"


def _servers_text(blocks: list[str], allowed: list[str]) -> str:
    unblocked = list(dict.fromkeys(allowed))
    # An exact allow beats an exact block for this audience; dnsmasq itself only ranks more specific names first.
    blocked = [domain for domain in dict.fromkeys(blocks) if domain not in unblocked]
    lines = ["# Written by the e-safety bot from its allow and block lists: edits here are overwritten."]
    lines += [f"server=/{domain}/" for domain in blocked]
    lines += [f"server=/{domain}/#" for domain in unblocked]
    return "".join(f"{line}\n" for line in lines)


def _dns_name(domain: str) -> str:
    """The domain as dnsmasq's syntax needs it; anything else could smuggle a directive into its configuration."""
    name = domain.strip().lower().strip(".")
    if not name or len(name) > 253 or any(not (ch.isascii() and (ch.isalnum() or ch in "-.")) for ch in name):
        raise FilterBackendError(f"{domain!r} is not a DNS name dnsmasq can filter")
    return name


def _sibling(path: Path, slug: str) -> Path:
    return path.with_name(f"{path.stem}.{slug}{path.suffix}")


def _read_list(path: Path) -> list[str]:
    """A list's domains without their leading dot."""
    return [entry.lstrip(".").lower() for entry in SquidBackend._read(path)]


def _edit_list(path: Path, *, add: str | None = None, remove: str | None = None) -> None:
    if remove and not path.exists():
        return
    entries = SquidBackend._read(path)
    target = (add or remove or "").lower()
    kept = [e for e in entries if e.lstrip(".").lower() != target]
    if add:
        kept.append(f".{target}")
    if kept != entries or not path.exists():
        _write_atomically(path, "".join(f"{line}\n" for line in kept))


async def _run_reload(command: list[str], program: str) -> None:
    """Run a reload command with a time limit; a failure becomes a FilterBackendError technicians can read."""
    try:
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except OSError as exc:
        raise FilterBackendError(f"cannot run the {program} reload command: {exc.strerror or exc}") from exc
    try:
        _out, err = await asyncio.wait_for(process.communicate(), RELOAD_TIMEOUT_SECONDS)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise FilterBackendError(f"the {program} reload command did not finish in time") from None
    if process.returncode != 0:
        detail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
        raise FilterBackendError(f"{program} reload failed (exit {process.returncode}): {detail[0][:200]}")


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
    if settings.backend == "dnsmasq":
        dns = settings.dnsmasq
        return DnsmasqBackend(dns.allow_file, dns.block_file, dns.servers_file, dns.reload_command)
    if settings.backend == "manual":
        return ManualBackend()
    raise ValueError(f"unknown filter backend {settings.backend!r}")
