"""Builds the Teams app package: `python -m manifest.package` (or `make package`) writes dist/esafety-teams-app.zip.

The app id and bot id are the bot's MicrosoftAppId; the valid domain and the developer links (the app's own privacy
and terms pages) come from ESAFETY_PUBLIC_URL; the developer name from the first school in the config; the app's
version from pyproject.toml, so each release can be uploaded over the last. Settings are read through bot.settings.
The command menus are first brought in step with the registered commands (manifest.commands).
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from bot.config import AppConfig, load_config
from bot.settings import Settings
from manifest.commands import sync_manifest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_OUTPUT = ROOT / "dist" / "esafety-teams-app.zip"
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
PYPROJECT = ROOT / "pyproject.toml"
ICONS = ("color.png", "outline.png")
# What Teams accepts as an app version (the schema only says "semver"; the store refuses pre-release tags).
TEAMS_VERSION = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")


class PackageError(ValueError):
    """The settings cannot make a valid package; the message names every setting to fix, one per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def project_version(pyproject: Path = PYPROJECT) -> str:
    """The release number in pyproject.toml, which the manifest carries so each build can replace the last."""
    with pyproject.open("rb") as file:
        return str(tomllib.load(file)["project"]["version"])


def _config(settings: Settings) -> AppConfig | None:
    try:
        return load_config(
            ROOT / settings.config_path if not settings.config_path.is_absolute() else settings.config_path
        )
    except Exception:  # what the packager takes from it is cosmetic; a broken config is reported by the app itself
        return None


def _developer_name(settings: Settings) -> str:
    config = _config(settings)
    if config is None:
        return "Your school"
    name = config.schools[0].name if len(config.schools) == 1 else "Your trust"
    return name if len(name) <= 32 else name[:31].rstrip() + "…"


def controller_note(settings: Settings) -> str | None:
    """A reminder (not a failure) when the privacy page the package links to cannot name a data controller."""
    config = _config(settings)
    if config is None:
        return None
    missing = [school.id for school in config.schools if not (school.data_controller or config.data_controller)]
    if not missing:
        return None
    return (
        f"note: no data_controller for {', '.join(missing)} in {settings.config_path}, so the privacy and terms "
        "pages tell people to ask the school office; add one (see config/demo.yaml) before you upload."
    )


def problems(settings: Settings, pyproject: Path = PYPROJECT) -> list[str]:
    """Everything that stops a valid package, all at once: an IT lead fixes them in one go, not one per run."""
    app_id, public_url, version = settings.app_id.strip(), settings.public_url.strip(), project_version(pyproject)
    found = []
    if not GUID.match(app_id):
        found.append(f"MicrosoftAppId must be the bot's Entra application (client) id, a GUID; it is {app_id!r}.")
    public = urlsplit(public_url)
    if public.scheme != "https" or not public.hostname:
        found.append(
            "ESAFETY_PUBLIC_URL must be the bot's public https address, for example https://esafety.oakfield.example"
            f"; it is {public_url!r}."
        )
    if not TEAMS_VERSION.match(version):
        found.append(
            f"pyproject.toml's [project] version must be three numbers, MAJOR.MINOR.PATCH (Teams accepts no "
            f"other form); it is {version!r}."
        )
    return found


def build_manifest(
    settings: Settings, *, developer_name: str | None = None, pyproject: Path = PYPROJECT
) -> dict[str, Any]:
    """The manifest for these settings, or PackageError naming every setting that is missing or wrong."""
    wrong = problems(settings, pyproject)
    if wrong:
        raise PackageError(wrong)
    app_id, public_url, version = settings.app_id.strip(), settings.public_url.strip(), project_version(pyproject)
    public = urlsplit(public_url)
    assert public.hostname is not None  # checked above
    base = f"https://{public.netloc}{public.path.rstrip('/')}"
    text = (HERE / "manifest.json").read_text(encoding="utf-8")
    values = {
        "APP_ID": app_id.lower(),
        "BOT_ID": app_id.lower(),
        "DOMAIN": public.hostname,
        "PUBLIC_URL": base,
        "SCHOOL_NAME_SHORT": developer_name or _developer_name(settings),
        "VERSION": version,
    }
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", json.dumps(value)[1:-1])
    if "{{" in text:
        left = text[text.index("{{") :][:40]
        raise PackageError([f"manifest.json has a placeholder this packager does not fill: {left}"])
    manifest: dict[str, Any] = json.loads(text)
    return manifest


def write_package(
    settings: Settings,
    output: Path = DEFAULT_OUTPUT,
    *,
    developer_name: str | None = None,
    pyproject: Path = PYPROJECT,
) -> Path:
    """Write the zip Teams expects: manifest.json and the two icons at the root of the archive."""
    manifest = build_manifest(settings, developer_name=developer_name, pyproject=pyproject)
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        for icon in ICONS:
            archive.write(HERE / icon, icon)
    return output


def _these(problems: list[str]) -> str:
    return "this" if len(problems) == 1 else f"these {len(problems)} things"


def _settings() -> Settings:
    """The environment's settings; values it cannot read at all are reported together, like the rest."""
    try:
        return Settings()
    except ValidationError as error:
        raise PackageError(
            [f"{'.'.join(map(str, e['loc']))}: {e['msg']} (it is {e.get('input')!r})." for e in error.errors()]
        ) from error


def main() -> int:
    try:
        settings = _settings()
        wrong = problems(settings)
        if wrong:  # before anything is written: a failed run changes no file
            raise PackageError(wrong)
        if sync_manifest():
            print("manifest.json: the command menus now match the registered commands (commit the change)")
        path = write_package(settings)
    except PackageError as error:
        lines = "".join(f"\n  - {problem}" for problem in error.problems)
        print(f"package: fix {_these(error.problems)}, then run `make package` again:{lines}", file=sys.stderr)
        return 1
    print(
        f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} (version {project_version()}): "
        "upload it in the Teams admin centre (Teams apps > Manage apps: Upload new app, or open the app and upload "
        "it as a new version)"
    )
    note = controller_note(settings)
    if note:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
