"""What an IT lead ships: a package whose version follows pyproject.toml, links to privacy and terms pages the app
really serves (with the data controller from the config, escaped), a README that lists every setting, and a
`make package` that names every missing setting in one go."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import AliasChoices

from adapters.clock import SettableClock
from adapters.legal_pages import privacy_html
from bot.config import load_config
from bot.settings import Settings
from manifest.package import PackageError, build_manifest, controller_note, project_version, write_package
from tests.support.harness import DEMO_CONFIG, Harness, start_harness
from tests.test_manifest import APP_ID, newest_schema_version, schema_errors

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_URL = "https://esafety.oakfield.example"
TRUST_NAME = 'Oak & Elm <script>alert("x")</script> Trust'
SETTING_NAMES = {"MicrosoftAppId", "MICROSOFT_APP_ID", "ESAFETY_PUBLIC_URL"}


def _settings(**values: str) -> Settings:
    return Settings(
        **{
            "MicrosoftAppId": APP_ID,
            "MicrosoftAppTenantId": "00000000-0000-4000-8000-00000000d000",
            "ESAFETY_PUBLIC_URL": PUBLIC_URL,
            **values,
        }
    )


def _pyproject_with_version(tmp_path: Path, version: str) -> Path:
    """A copy of the real pyproject.toml with only its [project] version changed, as a release would."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    changed, count = re.subn(r'(?m)^version = "[^"]*"$', f'version = "{version}"', text, count=1)
    assert count == 1
    path = tmp_path / "pyproject.toml"
    path.write_text(changed, encoding="utf-8")
    return path


def _next_minor(version: str) -> str:
    major, minor, _ = (int(n) for n in version.split("."))
    return f"{major}.{minor + 1}.0"


# --- the version --------------------------------------------------------------------------------------------------


def test_the_package_carries_pyprojects_version_so_a_new_build_replaces_the_last(tmp_path: Path) -> None:
    with (ROOT / "pyproject.toml").open("rb") as file:
        released = tomllib.load(file)["project"]["version"]
    assert build_manifest(_settings(), developer_name="Oakfield")["version"] == released == project_version()

    bumped = _next_minor(released)
    pyproject = _pyproject_with_version(tmp_path, bumped)
    zip_path = write_package(_settings(), tmp_path / "app.zip", developer_name="Oakfield", pyproject=pyproject)
    with zipfile.ZipFile(zip_path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["version"] == bumped != released
    # The bumped package is still one Teams accepts: valid against the newest schema Microsoft's package ships.
    assert manifest["manifestVersion"] == newest_schema_version()
    assert schema_errors(manifest) == []


@pytest.mark.parametrize("version", ["0.3.0.dev1", "1.0", "1.0.0-beta", "01.2.3"])
def test_a_version_teams_would_refuse_is_named_before_upload(tmp_path: Path, version: str) -> None:
    pyproject = _pyproject_with_version(tmp_path, version)
    wanted = re.escape("pyproject.toml's [project] version") + ".*" + re.escape(repr(version))
    with pytest.raises(PackageError, match=wanted):
        build_manifest(_settings(), developer_name="Oakfield", pyproject=pyproject)


# --- make package: every problem in one message ----------------------------------------------------------------


def _package_command(**env: str) -> subprocess.CompletedProcess[str]:
    """`make package`'s command, in an environment without the app id or public address unless given here."""
    clean = {k: v for k, v in os.environ.items() if k.upper() not in {n.upper() for n in SETTING_NAMES}}
    return subprocess.run(
        [sys.executable, "-m", "manifest.package"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_make_package_names_every_missing_setting_in_one_message() -> None:
    both = _package_command()
    assert both.returncode == 1
    assert "MicrosoftAppId" in both.stderr and "ESAFETY_PUBLIC_URL" in both.stderr, both.stderr
    assert both.stderr.count("package:") == 1, "one message, not one failure per run"
    assert "Traceback" not in both.stderr

    # The message lists what is wrong, not a fixed list: with the app id set, only the address is named.
    one = _package_command(MicrosoftAppId=APP_ID)
    assert one.returncode == 1
    assert "ESAFETY_PUBLIC_URL" in one.stderr and "MicrosoftAppId" not in one.stderr, one.stderr


def test_settings_the_environment_cannot_read_are_named_together_too() -> None:
    result = _package_command(PORT="eighty", ESAFETY_QUIET_HOLD_HOURS="-1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "PORT" in result.stderr and "ESAFETY_QUIET_HOLD_HOURS" in result.stderr, result.stderr


def test_packaging_reminds_when_the_privacy_page_could_name_no_controller(tmp_path: Path) -> None:
    assert controller_note(_settings(ESAFETY_CONFIG=str(DEMO_CONFIG))) is None  # the demo school names its own
    raw = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    del raw["schools"][0]["data_controller"]
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump(raw), encoding="utf-8")
    note = controller_note(_settings(ESAFETY_CONFIG=str(bare)))
    assert note is not None and "oakfield" in note and "data_controller" in note
    # A trust-wide controller covers every school that names none of its own.
    raw["data_controller"] = {"name": "Oak Trust", "address": "Trust House", "email": "office@oak-trust.example"}
    bare.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert controller_note(_settings(ESAFETY_CONFIG=str(bare))) is None


# --- the README's settings table -------------------------------------------------------------------------------


def settings_env_names() -> set[str]:
    """Every environment variable bot/settings.py reads: each field's alias choices."""
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        assert isinstance(alias, AliasChoices), f"Settings.{name} has no environment name"
        names.update(choice for choice in alias.choices if isinstance(choice, str))
    return names


def readme_setting_names(readme: str) -> set[str]:
    """The names in the first column of the table under the README's "## Settings" heading."""
    section = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|") and not line.startswith("|---")]
    return {name for row in rows[1:] for name in re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", row.split("|")[1])}


def test_the_readme_lists_every_setting() -> None:
    in_code = settings_env_names()
    assert {"MicrosoftAppId", "ESAFETY_PUBLIC_URL", "DATABASE_URL"} <= in_code
    missing = sorted(in_code - readme_setting_names((ROOT / "README.md").read_text(encoding="utf-8")))
    assert not missing, f"README.md's Settings table lacks: {', '.join(missing)}"


def test_the_readme_check_can_fail() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith("| `ESAFETY_PUBLIC_URL`"))
    names = readme_setting_names(readme.replace(row + "\n", ""))
    assert "ESAFETY_PUBLIC_URL" in settings_env_names() - names
    # A name mentioned only in another row's explanation does not count as listed.
    assert "ESAFETY_PUBLIC_URL" not in readme_setting_names(readme.replace(row, "| x | y | `ESAFETY_PUBLIC_URL` |"))


# --- privacy and terms pages, served by the app ----------------------------------------------------------------


def _trust_config(tmp_path: Path) -> Path:
    """The demo school (its own controller) and a second school the trust answers for, with markup in its name."""
    raw = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    raw["data_controller"] = {
        "name": TRUST_NAME,
        "address": "Trust House\nHigh Street\nOakfield OK1 9ZZ",
        "email": "dpo@oak-elm.example",
        "phone": "01632 960 999",
        "dpo_email": "governance@oak-elm.example",
        "ico_registration": "ZA123456",
    }
    raw["schools"].append(
        {"id": "elmwood", "name": "Elmwood <Academy>", "tenant_id": "00000000-0000-4000-8000-00000000e000"}
    )
    path = tmp_path / "trust.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.fixture
async def trust_app(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    config_path = _trust_config(tmp_path)
    async with start_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", config_path=config_path
    ) as running:
        yield running


async def _get(app: Harness, path: str) -> tuple[int, str, str]:
    """A public GET, as Teams' app details page makes it: no token, no cookies."""
    async with app.http.get(app.url + path) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


async def test_the_packages_privacy_and_terms_links_open_the_apps_own_pages(trust_app: Harness) -> None:
    manifest = build_manifest(_settings(), developer_name="Oakfield")
    status, _, home = await _get(trust_app, urlsplit(manifest["developer"]["websiteUrl"]).path or "/")
    assert status == 200 and 'href="privacy"' in home and 'href="terms"' in home
    for key, heading in (("privacyUrl", "Privacy notice"), ("termsOfUseUrl", "Terms of use")):
        link = urlsplit(manifest["developer"][key])
        assert f"{link.scheme}://{link.netloc}" == PUBLIC_URL
        status, content_type, body = await _get(trust_app, link.path)
        assert status == 200 and content_type.startswith("text/html"), (key, status)
        assert f"<h1>{heading}: eSafety</h1>" in body
        # The whole deployment's page names each controller and the schools it answers for; markup stays text.
        assert html.escape(TRUST_NAME) in body and TRUST_NAME not in body and "<script>" not in body
        assert "Oakfield Primary School" in body and "office@oakfield.example" in body
        assert "Responsible for: Elmwood &lt;Academy&gt;" in body


async def test_each_school_has_its_own_pages_naming_its_controller(trust_app: Harness) -> None:
    status, _, elmwood = await _get(trust_app, "/privacy/elmwood")
    assert status == 200
    assert html.escape(TRUST_NAME) in elmwood and "<script>" not in elmwood
    assert "Trust House<br>High Street<br>Oakfield OK1 9ZZ" in elmwood
    assert 'href="mailto:dpo@oak-elm.example"' in elmwood and "01632 960 999" in elmwood
    assert "governance@oak-elm.example" in elmwood and "ZA123456" in elmwood
    assert "office@oakfield.example" not in elmwood, "another school's controller is not this school's"
    # What the app holds and for how long: the retention schedule the daily sweep follows.
    assert "Safeguarding case files" in elmwood and "25th birthday" in elmwood
    assert "Article 6(1)(e)" in elmwood

    status, _, oakfield = await _get(trust_app, "/terms/oakfield")
    assert status == 200 and "Terms of use: eSafety at Oakfield Primary School" in oakfield
    assert "office@oakfield.example" in oakfield and html.escape(TRUST_NAME) not in oakfield
    assert "call 999" in oakfield and 'href="../privacy/oakfield"' in oakfield

    status, _, missing = await _get(trust_app, "/privacy/nowhere")
    assert status == 404 and "/privacy" in missing


async def test_a_school_without_controller_details_says_whom_to_ask(harness: Harness, tmp_path: Path) -> None:
    """The plain demo config on the shared fixture: its school names its own controller; without one, the page
    says so plainly rather than showing an empty heading."""
    status, _, body = await _get(harness, "/privacy")
    assert status == 200 and "Oakfield Primary School" in body and "dpo@oakfield.example" in body

    raw = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    del raw["schools"][0]["data_controller"]
    path = tmp_path / "bare.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    page = privacy_html(load_config(path), harness.parts.policy.retention)
    assert "Oakfield Primary School has not yet added its data controller's details here" in page
