"""A private Squid on a loopback port, a tiny origin server with several host names, and a harness whose school
uses them. Nothing leaves the machine: Squid resolves the test host names from its own hosts_file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from adapters.clock import SettableClock
from bot.config import AppConfig, SquidConfig, load_config
from bot.people import Role
from tests.support.connector import RecordingConnector
from tests.support.harness import DEMO_CONFIG, Harness, test_settings

SITES = ("pupils-blocked.test", "games.test", "news.test", "broken.test")
STAFF_ADDRESS = "127.0.0.2"  # the "staff devices" network in the test squid.conf; pupils come from 127.0.0.1


def squid_binary() -> str | None:
    return shutil.which("squid") or ("/usr/sbin/squid" if os.path.exists("/usr/sbin/squid") else None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Squid:
    """A running Squid whose allow and block lists the bot maintains; `baseline` stands for the vendor's list."""

    directory: Path
    port: int
    origin_port: int
    process: asyncio.subprocess.Process | None = None

    @property
    def conf(self) -> Path:
        return self.directory / "squid.conf"

    @property
    def allow_file(self) -> Path:
        return self.directory / "allow.txt"

    @property
    def block_file(self) -> Path:
        return self.directory / "block.txt"

    def reload_command(self) -> list[str]:
        return [squid_binary(), "-f", str(self.conf), "-k", "reconfigure"]

    def squid_config(self) -> SquidConfig:
        return SquidConfig(allow_file=self.allow_file, block_file=self.block_file, reload_command=self.reload_command())

    def url(self, host: str) -> str:
        return f"http://{host}:{self.origin_port}/"

    async def status(self, http: aiohttp.ClientSession, host: str, *, staff: bool = False) -> int:
        """Fetch a page through the proxy: 200 when the filter lets it through, 403 when it blocks it.
        With staff=True the request comes from the staff device address (127.0.0.2)."""
        if staff:
            connector = aiohttp.TCPConnector(local_addr=(STAFF_ADDRESS, 0))
            async with aiohttp.ClientSession(connector=connector) as staff_http:
                return await self.status(staff_http, host)
        async with http.get(
            self.url(host), proxy=f"http://127.0.0.1:{self.port}", timeout=aiohttp.ClientTimeout(total=10)
        ) as response:
            await response.read()
            return response.status

    async def wait_for_status(
        self, http: aiohttp.ClientSession, host: str, expected: int, within: float = 15.0, *, staff: bool = False
    ) -> None:
        """Squid applies `-k reconfigure` shortly after the signal: wait until it answers as expected."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        seen = None
        while loop.time() < deadline:
            try:
                seen = await self.status(http, host, staff=staff)
            except (aiohttp.ClientError, OSError) as exc:
                # While it reconfigures, Squid closes and reopens its port: a refused connection means "not yet".
                seen = f"unreachable ({exc.__class__.__name__})"
            if seen == expected:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{host} through Squid: expected {expected}, still {seen} after {within}s")


def _write_conf(squid: Squid, baseline: list[str]) -> None:
    d = squid.directory
    (d / "hosts").write_text("".join(f"127.0.0.1 {name}\n" for name in SITES))
    (d / "baseline.txt").write_text("".join(f".{name}\n" for name in baseline))
    staff_allow = squid.allow_file.with_name("allow.staff.txt")
    for path in (squid.allow_file, staff_allow, squid.block_file):
        path.write_text("")
    lines = [
        f"http_port 127.0.0.1:{squid.port}",
        f"pid_filename {d / 'squid.pid'}",
        f"cache_log {d / 'cache.log'}",
        "access_log none",
        "cache deny all",
        "cache_mem 4 MB",
        f"hosts_file {d / 'hosts'}",
        "dns_nameservers 127.0.0.1",
        f"coredump_dir {d}",
        "shutdown_lifetime 0 seconds",
        f'acl esafety_allow dstdomain "{squid.allow_file}"',
        f'acl esafety_allow_staff dstdomain "{staff_allow}"',
        f'acl esafety_block dstdomain "{squid.block_file}"',
        f'acl vendor_block dstdomain "{d / "baseline.txt"}"',
        f"acl staff_devices src {STAFF_ADDRESS}/32",
        "acl school_network src 127.0.0.0/8",
        "http_access allow staff_devices esafety_allow_staff",
        "http_access allow esafety_allow",
        "http_access deny esafety_block",
        "http_access deny vendor_block",
        "http_access allow school_network",
        "http_access deny all",
    ]
    if os.geteuid() == 0:
        # Squid refuses to keep running as root; it drops to this user, which must read the lists and write the log.
        lines.append("cache_effective_user proxy")
    squid.conf.write_text("\n".join(lines) + "\n")
    for path in d.iterdir():
        path.chmod(0o644)
    d.chmod(0o777)


async def _origin(port: int) -> web.AppRunner:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=f"hello from {request.host}")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:] if log.exists() else ""


async def _wait_listening(port: int, process: asyncio.subprocess.Process, log: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while loop.time() < deadline:
        if process.returncode is not None:
            raise RuntimeError(f"squid exited: {_tail(log)}")
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError("squid did not start listening in time")


@contextlib.asynccontextmanager
async def running_squid(baseline: list[str]) -> AsyncIterator[Squid]:
    """Start Squid in the foreground (-N) with its own squid.conf in a temp dir; stop it afterwards."""
    binary = squid_binary()
    if binary is None:
        raise RuntimeError("squid is not installed: run `bash scripts/system-deps.sh`")
    directory = Path(tempfile.mkdtemp(prefix="esafety-squid-"))
    squid = Squid(directory, free_port(), free_port())
    _write_conf(squid, baseline)
    origin = await _origin(squid.origin_port)
    log = directory / "squid.out"
    out = os.open(log, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        squid.process = await asyncio.create_subprocess_exec(
            binary, "-N", "-f", str(squid.conf), stdout=out, stderr=out
        )
    finally:
        os.close(out)
    try:
        await _wait_listening(squid.port, squid.process, log)
        yield squid
    finally:
        if squid.process.returncode is None:
            squid.process.terminate()
        try:
            await asyncio.wait_for(squid.process.wait(), 15)
        except TimeoutError:
            squid.process.kill()
            await squid.process.wait()
        await origin.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


def school_config(roles: dict[str, list[str]] | None = None, **filtering: Any) -> AppConfig:
    """The demo configuration with the school's filtering settings (and some people's roles) changed."""
    config = load_config(DEMO_CONFIG)
    school = config.schools[0]
    people = [
        p.model_copy(update={"roles": [Role(r) for r in roles[p.name]]}) if roles and p.name in roles else p
        for p in school.people
    ]
    school = school.model_copy(update={"filtering": school.filtering.model_copy(update=filtering), "people": people})
    return config.model_copy(update={"schools": [school]})


@contextlib.asynccontextmanager
async def start_filter_harness(
    *,
    database_url: str,
    clock: SettableClock,
    var_dir: Path,
    features: list[Any] | None = None,
    roles: dict[str, list[str]] | None = None,
    **filtering: Any,
) -> AsyncIterator[Harness]:
    """Like the shared harness, but the school's filtering settings can be changed (backend, lists), and due work
    runs only when the test calls harness.run_due_work(), so retries and expiries happen exactly when told."""
    settings = test_settings(database_url, var_dir, worker_enabled=False)
    connector = RecordingConnector()
    await connector.start()
    async with aiohttp.ClientSession() as http:
        harness = Harness(settings, school_config(roles, **filtering), clock, connector, http, features=features)
        await harness.start()
        try:
            yield harness
        finally:
            await harness.stop()
            await connector.stop()
