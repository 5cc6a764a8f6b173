"""Builds the Teams app package: `python -m manifest.package` (or `make package`) writes dist/esafety-teams-app.zip.

The app id and bot id are the bot's MicrosoftAppId; the valid domain and the developer links come from
ESAFETY_PUBLIC_URL; the developer name from the first school in the config. All are read through bot.settings.
The command menus are first brought in step with the registered commands (manifest.commands).
"""

from __future__ import annotations

import json
import re
import sys
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bot.config import load_config
from bot.settings import Settings
from manifest.commands import sync_manifest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_OUTPUT = ROOT / "dist" / "esafety-teams-app.zip"
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
ICONS = ("color.png", "outline.png")


class PackageError(ValueError):
    """The settings cannot make a valid package; the message says which setting to fix."""


def _developer_name(settings: Settings) -> str:
    try:
        schools = load_config(
            ROOT / settings.config_path if not settings.config_path.is_absolute() else settings.config_path
        ).schools
    except Exception:  # the name is cosmetic; a broken config is reported by the app itself
        return "Your school"
    name = schools[0].name if len(schools) == 1 else "Your trust"
    return name if len(name) <= 32 else name[:31].rstrip() + "…"


def build_manifest(settings: Settings, *, developer_name: str | None = None) -> dict[str, Any]:
    """The manifest for these settings, or PackageError naming the setting that is missing or wrong."""
    app_id = settings.app_id.strip()
    if not GUID.match(app_id):
        raise PackageError(f"MicrosoftAppId must be the bot's Entra application (client) id, a GUID; it is {app_id!r}.")
    public = urlsplit(settings.public_url.strip())
    if public.scheme != "https" or not public.hostname:
        raise PackageError(
            "ESAFETY_PUBLIC_URL must be the bot's public https address, for example https://esafety.oakfield.example"
        )
    base = f"https://{public.netloc}{public.path.rstrip('/')}"
    text = (HERE / "manifest.json").read_text(encoding="utf-8")
    values = {
        "APP_ID": app_id.lower(),
        "BOT_ID": app_id.lower(),
        "DOMAIN": public.hostname,
        "PUBLIC_URL": base,
        "SCHOOL_NAME_SHORT": developer_name or _developer_name(settings),
    }
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", json.dumps(value)[1:-1])
    if "{{" in text:
        left = text[text.index("{{") :][:40]
        raise PackageError(f"manifest.json has a placeholder this packager does not fill: {left}")
    manifest: dict[str, Any] = json.loads(text)
    return manifest


def write_package(settings: Settings, output: Path = DEFAULT_OUTPUT, *, developer_name: str | None = None) -> Path:
    """Write the zip Teams expects: manifest.json and the two icons at the root of the archive."""
    manifest = build_manifest(settings, developer_name=developer_name)
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        for icon in ICONS:
            archive.write(HERE / icon, icon)
    return output


def main() -> int:
    try:
        if sync_manifest():
            print("manifest.json: the command menus now match the registered commands (commit the change)")
        path = write_package(Settings())
    except PackageError as problem:
        print(f"package: {problem}", file=sys.stderr)
        return 1
    print(
        f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: upload it in the Teams admin "
        "centre (Teams apps > Manage apps > Upload new app)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
