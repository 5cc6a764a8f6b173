"""The container kit, without a container runtime: the image's own start command and health check are read out of
the Dockerfile and run here as the image would run them, against the real app on loopback and a real PostgreSQL.
Compose must name the same script and check, so the three cannot drift apart unnoticed."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import yaml

from adapters import pdf_export
from bot.settings import Settings
from tests.support import pgserver
from tests.support.harness import DEMO_CONFIG, ROOT, TEST_DATA_KEY

AUDIT_KEY = "audit-key-for-the-container-kit-0123456789abcdef"
APP_ID = "6f1c2d3e-4a5b-4c6d-8e7f-901234567890"
TENANT = "00000000-0000-4000-8000-00000000d000"
# The image's WORKDIR is the repository's root, copied whole (less .dockerignore).
WORKDIR = "/app"


@dataclass(frozen=True)
class Image:
    """What the Dockerfile's last stage says about how the container runs."""

    user: str
    workdir: str
    cmd: list[str]
    healthcheck: list[str]
    env: dict[str, str]
    text: str


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    found = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def read_image() -> Image:
    text = (ROOT / "Dockerfile").read_text()
    steps = _instructions(text)
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    final = steps[last_from:]

    def last(word: str) -> str:
        values = [rest for w, rest in final if w == word]
        assert values, f"the Dockerfile's final stage has no {word}"
        return values[-1]

    health = last("HEALTHCHECK")
    assert " CMD " in f" {health} ", "HEALTHCHECK must run a command"
    env: dict[str, str] = {}
    for word, rest in final:
        if word == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return Image(
        user=last("USER"),
        workdir=last("WORKDIR"),
        cmd=json.loads(last("CMD")),  # exec form: a JSON array, so no shell wraps the one process
        healthcheck=json.loads(health.split(" CMD ", 1)[1]),
        env=env,
        text=text,
    )


def read_compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(port: int, **values: str) -> dict[str, str]:
    """The container's environment: the image's ENV, with `python` the app's interpreter, on loopback."""
    image = read_image()
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/tmp"),
        **{k: v for k, v in image.env.items() if k != "PATH"},
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }
    env.update(values)
    return env


def _production_env(tmp_path: Path, database_url: str, port: int) -> dict[str, str]:
    return _env(
        port,
        MicrosoftAppId=APP_ID,
        MicrosoftAppPassword="not-used-offline",
        MicrosoftAppTenantId=TENANT,
        DATABASE_URL=database_url,
        ESAFETY_DATA_KEY=TEST_DATA_KEY,
        ESAFETY_AUDIT_KEY=AUDIT_KEY,
        ESAFETY_CONFIG=str(DEMO_CONFIG),
        ESAFETY_VAR_DIR=str(tmp_path / "var"),
        ESAFETY_WORKER="0",  # nothing to send offline; the worker has its own tests
    )


async def _exec(argv: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


async def health_check(env: dict[str, str], path: str | None = None) -> tuple[int, str]:
    """The image's HEALTHCHECK command, as the container runtime runs it (optionally for another path)."""
    argv = read_image().healthcheck
    if path is not None:
        argv = [*argv[:-1], path] if argv[-1].startswith("/") else [*argv, path]
    process = await _exec(argv, env)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode() + err.decode()


@pytest.fixture
async def container(tmp_path: Path, postgres_url: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict]]:
    """The image's CMD, started as the container would start it, serving once it says it is listening."""
    env = _production_env(tmp_path, postgres_url, _free_port())
    process = await _exec(read_image().cmd, env)
    assert process.stdout is not None and process.stderr is not None
    log = bytearray()
    drains = [asyncio.create_task(_drain(process.stderr, log))]  # a full pipe would stall the app
    try:
        if not await asyncio.wait_for(_until_listening(process.stdout, log), 120):
            await process.wait()
            await asyncio.gather(*drains)
            pytest.fail(f"the container did not start: {log.decode()[-3000:]}")
        drains.append(asyncio.create_task(_drain(process.stdout, log)))
        yield process, env
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await asyncio.gather(*drains)


async def _until_listening(stdout: asyncio.StreamReader, into: bytearray) -> bool:
    """Read the app's output up to its "listening" line; False if it exits first."""
    while line := await stdout.readline():
        into.extend(line)
        if b"eSafety bot listening on" in line:
            return True
    return False


async def _drain(stream: asyncio.StreamReader, into: bytearray) -> None:
    while chunk := await stream.read(65536):
        into.extend(chunk)


async def test_the_image_cmd_starts_the_app_migrated_and_serving_with_authentication_on(container) -> None:  # noqa: ANN001
    process, env = container
    url = f"http://127.0.0.1:{env['PORT']}"
    async with aiohttp.ClientSession() as http:
        ready = await http.get(f"{url}/readyz")
        assert ready.status == 200 and (await ready.json())["status"] == "ready"  # migrations ran at start-up
        anonymous = await http.post(
            f"{url}/api/messages",
            json={
                "type": "message",
                "text": "help",
                "channelId": "msteams",
                "serviceUrl": "https://smba.trafficmanager.net/uk/",
                "conversation": {"id": "a:1"},
                "from": {"id": "29:someone"},
                "recipient": {"id": f"28:{APP_ID}"},
            },
        )
        assert anonymous.status == 401  # not dev mode: a request without a Bot Connector token is refused


async def test_the_health_check_passes_while_up_and_fails_once_the_app_stops(container) -> None:  # noqa: ANN001
    process, env = container
    assert await health_check(env) == (0, "")
    code, _ = await health_check(env, "/readyz")
    assert code == 0
    # The container runtime stops a container with SIGTERM to PID 1: the script exec'd the app, so the app gets it
    # and shuts down cleanly (a shell in between would be killed and leave the app running).
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 120) == 0
    code, output = await health_check(env)
    assert code == 1
    assert "unhealthy" in output and f"127.0.0.1:{env['PORT']}/healthz" in output


async def test_readiness_fails_when_the_database_goes_but_liveness_holds(
    container,  # noqa: ANN001
    pg: pgserver.PgServer,
    postgres_url: str,
) -> None:
    _, env = container
    code, output = await health_check(env, "/no-such-page")
    assert code == 1 and "answered 404" in output
    # The database disappears under the running app: not ready (no traffic), but still alive, so the image's
    # HEALTHCHECK (liveness) does not have the container restarted over a database outage.
    name = postgres_url.rsplit("/", 1)[1]
    await asyncio.to_thread(pg.psql, f'DROP DATABASE "{name}" WITH (FORCE)')
    code, output = await health_check(env, "/readyz")
    assert code == 1 and "answered 503" in output
    assert await health_check(env) == (0, "")


async def test_the_container_refuses_to_start_without_an_app_id_outside_dev_mode(tmp_path: Path) -> None:
    env = _production_env(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'never.db'}", _free_port())
    del env["MicrosoftAppId"]
    process = await _exec(read_image().cmd, env)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode != 0
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert len(lines) == 1, lines  # one clear line in the container's log, not a traceback
    assert "MicrosoftAppId is not set" in lines[0] and "ESAFETY_DEV=1" in lines[0]
    assert b"listening" not in out
    assert not (tmp_path / "never.db").exists()


def test_the_image_runs_one_process_as_a_non_root_user_with_the_scripts_it_names() -> None:
    image = read_image()
    user = image.user.split(":")[0]
    assert user not in ("root", "0") and image.user.split(":")[-1] != "0"
    assert image.workdir == WORKDIR
    assert "scripts/container-start.sh" in image.cmd
    assert "scripts/healthcheck.py" in image.healthcheck and image.healthcheck[0] == "python"
    for argv in (image.cmd, image.healthcheck):
        assert (ROOT / next(a for a in argv if a.startswith("scripts/"))).is_file()
    # Dependencies exactly as locked, by hash; no curl in a slim image, so the check is a script.
    assert re.search(r"pip install .*--require-hashes -r \S*requirements\.lock", image.text)
    assert "COPY requirements-runtime.lock " in image.text
    assert "FROM python:3.11-slim" in image.text and "curl" not in image.text
    # What the app reads from disk besides its code is in the image where the app looks for it.
    teams_js = Settings.model_fields["tab_teams_js"].default
    assert f"COPY --from=tab-deps /tab/{teams_js.parent.relative_to('tools/tab')} {teams_js.parent}" in image.text
    assert "fonts-dejavu-core" in image.text and str(pdf_export.FONT_DIR).startswith("/usr/share/fonts/")
    ignored = (ROOT / ".dockerignore").read_text().split()
    for secret_or_state in (".venv", "var", "*.env", ".git"):
        assert secret_or_state in ignored


def _pins(lock: str) -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / lock).read_text(), flags=re.MULTILINE))


def test_the_image_lock_is_the_full_lock_without_the_test_tools() -> None:
    runtime, full = _pins("requirements-runtime.lock"), _pins("requirements.lock")
    assert runtime and all(full.get(name) == version for name, version in runtime.items()), "run `make lock`"
    assert {"pytest", "ruff", "mypy"} <= set(full) - set(runtime)
    assert {"aiohttp", "botbuilder-core", "sqlalchemy", "asyncpg", "prometheus-client"} <= set(runtime)


def test_compose_runs_the_same_script_and_check_and_waits_for_a_healthy_database() -> None:
    image = read_image()
    compose = read_compose()
    app, db = compose["services"]["app"], compose["services"]["db"]
    assert app["command"] == image.cmd
    assert app["healthcheck"]["test"] == ["CMD", *image.healthcheck]
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in db["volumes"])
    assert any(v.split(":")[1] == f"{WORKDIR}/var" for v in app["volumes"])
    # Secrets come from env files that are not in the repository; the examples hold no secret values.
    for service in (app, db):
        example = ROOT / f"{service['env_file']}.example"
        assert example.is_file()
        for line in example.read_text().splitlines():
            name, _, value = line.partition("=")
            if name in ("MicrosoftAppPassword", "ESAFETY_DATA_KEY", "ESAFETY_AUDIT_KEY"):
                assert value == "", f"{example.name} must not carry a value for {name}"
    assert "environment" not in db or "POSTGRES_PASSWORD" not in db["environment"]


# ---- deploy/azure: no Bicep compiler runs here (it ships only as a .NET tool), so the template is read as text ----

BICEP = ROOT / "deploy" / "azure" / "main.bicep"
BICEP_PARAMS = ROOT / "deploy" / "azure" / "main.bicepparam"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
SECRET_SETTINGS = (
    "ESAFETY_DATA_KEY",
    "ESAFETY_AUDIT_KEY",
    "ESAFETY_DATA_KEYS_OLD",
    "ESAFETY_AUDIT_KEYS_OLD",
    "MicrosoftAppPassword",
    "DATABASE_URL",
)


def bicep_params() -> dict[str, list[str]]:
    """Each `param` with the decorators written above it."""
    params: dict[str, list[str]] = {}
    decorators: list[str] = []
    for line in BICEP.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("@"):
            decorators.append(stripped)
        elif stripped.startswith("param "):
            params[stripped.split()[1]] = decorators
            decorators = []
        elif stripped and not decorators_continue(stripped):
            decorators = []
    return params


def decorators_continue(line: str) -> bool:
    # A multi-line decorator such as @allowed([ ... ]) spans lines that are not params.
    return line.startswith("'") or line in ("])", "]")


def test_the_bicep_template_takes_every_secret_as_a_secure_parameter_and_holds_none() -> None:
    params = bicep_params()
    for name in ("name", "image", "botIdentity", "botAppId", "minReplicas", "postgresAdminLogin"):
        assert name in params, f"main.bicep has no parameter {name}"
    for secret in ("dataKey", "auditKey", "dataKeysOld", "auditKeysOld", "botAppPassword", "postgresAdminPassword"):
        assert "@secure()" in params[secret], f"{secret} must be @secure()"
    assert "@minValue(2)" in params["minReplicas"]
    allowed = BICEP.read_text().split("param botIdentity")[0].rsplit("@allowed(", 1)[1]
    assert "'SingleTenant'" in allowed and "'UserAssignedMSI'" in allowed
    # The parameters file names no secret: each is read from the deploying shell.
    assigned = dict(re.findall(r"^param (\w+) = (.+)$", BICEP_PARAMS.read_text(), re.MULTILINE))
    for secret in ("dataKey", "auditKey", "dataKeysOld", "auditKeysOld", "botAppPassword", "postgresAdminPassword"):
        assert assigned[secret].startswith("readEnvironmentVariable("), secret
    assert set(assigned) <= set(params), "main.bicepparam sets a parameter main.bicep does not have"
    for text in (BICEP.read_text(), BICEP_PARAMS.read_text()):
        for literal in re.findall(r"'([^'\n]*)'", text):
            if literal != KEY_VAULT_SECRETS_USER:  # a built-in role's well-known id
                assert not re.fullmatch(r"[A-Za-z0-9_\-+/=]{32,}", literal), f"{literal!r} looks like a key"
        # A secret-ish name given a fixed string (an interpolation of parameters is fine).
        literal = re.search(r"(?i)\b\w*(password|secret|key|keys)\s*[:=]\s*'(?![^']*\$\{)[^']+'", text)
        assert literal is None, f"a secret literal: {literal.group(0) if literal else ''}"


def test_the_bicep_container_app_reads_secrets_from_key_vault_and_probes_both_health_endpoints() -> None:
    text = BICEP.read_text()
    for resource in (
        "Microsoft.BotService/botServices@",
        "Microsoft.BotService/botServices/channels@",
        "Microsoft.App/managedEnvironments@",
        "Microsoft.App/containerApps@",
        "Microsoft.DBforPostgreSQL/flexibleServers@",
        "Microsoft.KeyVault/vaults@",
        "Microsoft.ManagedIdentity/userAssignedIdentities@",
    ):
        assert f"'{resource}" in text, resource
    assert "channelName: 'MsTeamsChannel'" in text
    # Every container secret is a Key Vault reference fetched with the managed identity; none has a value.
    secrets = re.findall(
        r"\{ name: '([\w-]+)', keyVaultUrl: \w+\.properties\.secretUri, identity: identity\.id \}", text
    )
    assert {"data-key", "audit-key", "database-url", "app-password", "data-keys-old", "audit-keys-old"} <= set(secrets)
    assert set(re.findall(r"secretRef: '([\w-]+)'", text)) <= set(secrets), "a secret that is not from Key Vault"
    assert "secrets: keyVaultSecrets" in text
    for setting in SECRET_SETTINGS:
        [entry] = re.findall(rf"\{{ name: '{setting}', (\w+): '[\w-]+' \}}", text)
        assert entry == "secretRef", f"{setting} must come from a secret reference"
    # Probes on the app's own endpoints and port; the share for var/ is writable by the image's user.
    image = read_image()
    port = image.env["PORT"]
    assert f"targetPort: {port}" in text
    assert f"httpGet: {{ path: '/healthz', port: {port} }}" in text
    assert f"httpGet: {{ path: '/readyz', port: {port} }}" in text
    assert f"uid={image.user.split(':')[0]}" in text and f"mountPath: '{WORKDIR}/var'" in text
    assert "msaAppType: botIdentity" in text and "msaAppMSIResourceId: usesPassword ? null : identity.id" in text
