"""Private dnsmasq resolvers on loopback high ports: a stand-in for the internet's DNS, the pupils' filtering resolver
and the staff devices' one. No root, no DHCP, nothing leaves the machine. The bot maintains their lists through the
dnsmasq backend; tests ask them real DNS questions."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

from bot.config import DnsmasqConfig
from tests.support.squid import free_port

UPSTREAM_ADDRESS = "127.0.0.2"  # what the stand-in for the internet answers for every *.test name
NXDOMAIN = "NXDOMAIN"

# The reload command the bot runs in these tests: SIGHUP (what Debian's `systemctl reload dnsmasq` sends), then wait
# until each dnsmasq has logged that it re-read its lists, so a test's next question gets the new answer.
RELOAD_SCRIPT = """\
import os, signal, sys, time
pairs = list(zip(sys.argv[1::2], sys.argv[2::2]))
def reloads(log):
    with open(log, errors="replace") as handle:
        return handle.read().count("cleared cache")
before = [reloads(log) for _pid, log in pairs]
for pid, _log in pairs:
    os.kill(int(pid), signal.SIGHUP)
deadline = time.monotonic() + 10
for (pid, log), seen in zip(pairs, before):
    while reloads(log) <= seen:
        if time.monotonic() > deadline:
            sys.exit(f"dnsmasq {pid} did not reload")
        time.sleep(0.02)
"""


def dnsmasq_binary() -> str | None:
    return shutil.which("dnsmasq") or ("/usr/sbin/dnsmasq" if os.path.exists("/usr/sbin/dnsmasq") else None)


@dataclass
class Dnsmasq:
    """The running resolvers; `baseline` (the school's base block list) is in their static configuration."""

    directory: Path
    upstream_port: int
    port: int  # the pupils' resolver
    staff_port: int  # the staff devices' resolver
    processes: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)

    @property
    def allow_file(self) -> Path:
        return self.directory / "allow.txt"

    @property
    def block_file(self) -> Path:
        return self.directory / "block.txt"

    @property
    def servers_file(self) -> Path:
        return self.directory / "servers.conf"

    @property
    def staff_servers_file(self) -> Path:
        return self.directory / "servers.staff.conf"

    def log(self, name: str) -> Path:
        return self.directory / f"{name}.log"

    def reload_command(self, *, log_of_pupils: Path | None = None) -> list[str]:
        pupils, staff = self.processes["pupils"], self.processes["staff"]
        return [
            sys.executable,
            "-c",
            RELOAD_SCRIPT,
            str(pupils.pid),
            str(log_of_pupils or self.log("pupils")),
            str(staff.pid),
            str(self.log("staff")),
        ]

    def dnsmasq_config(self, reload_command: list[str] | None = None) -> DnsmasqConfig:
        return DnsmasqConfig(
            allow_file=self.allow_file,
            block_file=self.block_file,
            servers_file=self.servers_file,
            reload_command=reload_command or self.reload_command(),
        )

    async def answer(self, name: str, *, staff: bool = False) -> str:
        """Ask the pupils' (or the staff devices') resolver for the name's address: the address, or NXDOMAIN."""
        query = dns.message.make_query(name, dns.rdatatype.A)
        port = self.staff_port if staff else self.port
        response = await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=5)
        if response.rcode() == dns.rcode.NXDOMAIN:
            return NXDOMAIN
        addresses = [item.to_text() for rrset in response.answer for item in rrset if rrset.rdtype == dns.rdatatype.A]
        return addresses[0] if addresses else f"no address ({dns.rcode.to_text(response.rcode())})"


def _write_conf(dnsmasq: Dnsmasq, baseline: list[str]) -> dict[str, list[str]]:
    """Each resolver's command line, after writing the configuration files they read."""
    d = dnsmasq.directory
    (d / "upstream.conf").write_text("address=/test/{}\n".format(UPSTREAM_ADDRESS))
    # What a school writes in its dnsmasq.conf: the real upstream servers and its base block list. Base blocks use
    # `server=/domain/` (NXDOMAIN), so an approved unblock in the servers file can win over them.
    (d / "filter.conf").write_text(
        f"server=127.0.0.1#{dnsmasq.upstream_port}\n" + "".join(f"server=/{name}/\n" for name in baseline)
    )
    for path in (dnsmasq.servers_file, dnsmasq.staff_servers_file):
        path.write_text("")
    common = [
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--pid-file=",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
    ]

    def resolver(name: str, port: int, conf: str, *extra: str) -> list[str]:
        return [*common, f"--port={port}", f"--conf-file={d / conf}", f"--log-facility={dnsmasq.log(name)}", *extra]

    commands = {
        "upstream": resolver("upstream", dnsmasq.upstream_port, "upstream.conf"),
        "pupils": resolver("pupils", dnsmasq.port, "filter.conf", f"--servers-file={dnsmasq.servers_file}"),
        "staff": resolver("staff", dnsmasq.staff_port, "filter.conf", f"--servers-file={dnsmasq.staff_servers_file}"),
    }
    for path in d.iterdir():
        path.chmod(0o644)
    d.chmod(0o755)  # started as root, dnsmasq drops to `nobody`, which must still read the lists on SIGHUP
    return commands


async def _wait_answering(dnsmasq: Dnsmasq, name: str, port: int) -> None:
    process = dnsmasq.processes[name]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    query = dns.message.make_query("ready.test", dns.rdatatype.A)
    while loop.time() < deadline:
        if process.returncode is not None:
            log = dnsmasq.log(name)
            raise RuntimeError(f"dnsmasq ({name}) exited: {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError, dns.exception.Timeout):
            await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=0.5)
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"dnsmasq ({name}) did not start answering in time")


@contextlib.asynccontextmanager
async def running_dnsmasq(baseline: list[str]) -> AsyncIterator[Dnsmasq]:
    """Start the three resolvers in the foreground with their own configuration in a temp dir; stop them after."""
    binary = dnsmasq_binary()
    if binary is None:
        raise RuntimeError("dnsmasq is not installed: run `bash scripts/system-deps.sh`")
    directory = Path(tempfile.mkdtemp(prefix="esafety-dnsmasq-"))
    dnsmasq = Dnsmasq(directory, free_port(), free_port(), free_port())
    commands = _write_conf(dnsmasq, baseline)
    try:
        for name, arguments in commands.items():
            dnsmasq.processes[name] = await asyncio.create_subprocess_exec(
                binary, *arguments, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
            )
        for name, port in (
            ("upstream", dnsmasq.upstream_port),
            ("pupils", dnsmasq.port),
            ("staff", dnsmasq.staff_port),
        ):
            await _wait_answering(dnsmasq, name, port)
        yield dnsmasq
    finally:
        for process in dnsmasq.processes.values():
            if process.returncode is None:
                process.terminate()
        for process in dnsmasq.processes.values():
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()
        shutil.rmtree(directory, ignore_errors=True)
