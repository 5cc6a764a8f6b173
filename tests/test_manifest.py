"""The Teams app package a school's admin uploads: valid against Microsoft's manifest schema, with the right icons.

The schema is the newest official one shipped in the npm package @microsoft/app-manifest (tools/validators, installed
by scripts/system-deps.sh): upgrading the package makes these tests ask for the manifest to move up with it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import struct
import zipfile
import zlib
from pathlib import Path

import jsonschema
import pytest
from jsonschema import Draft4Validator, Draft7Validator, FormatChecker

from bot.settings import Settings
from dialogs.message_action import COMMAND_ID
from manifest.commands import MAX_COMMANDS, command_lists, registered_commands, sync_manifest
from manifest.package import PackageError, build_manifest, project_version, write_package

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "tools" / "validators" / "node_modules" / "@microsoft" / "app-manifest" / "build" / "json-schemas"
APP_ID = "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f"


def _settings(**values: str) -> Settings:
    return Settings(
        **{
            "MicrosoftAppId": APP_ID,
            "MicrosoftAppTenantId": "00000000-0000-4000-8000-00000000d000",
            "ESAFETY_PUBLIC_URL": "https://esafety.oakfield.example",
            **values,
        }
    )


def newest_schema_version() -> str:
    """The highest released manifest version in the package, compared as numbers (v1.30 > v1.4; no vDevPreview)."""
    versions = [
        tuple(int(n) for n in folder.name[1:].split("."))
        for folder in (SCHEMAS / "teams").glob("v*")
        if re.fullmatch(r"v\d+(\.\d+)+", folder.name) and (folder / "MicrosoftTeams.schema.json").exists()
    ]
    if not versions:
        pytest.fail(f"no official manifest schemas under {SCHEMAS}: run `make system-deps`")
    return ".".join(map(str, max(versions)))


def _validator(manifest: dict) -> jsonschema.protocols.Validator:
    version = newest_schema_version()
    assert manifest["manifestVersion"] == version, f"move manifest.json to the newest schema, v{version}"
    path = SCHEMAS / "teams" / f"v{version}" / "MicrosoftTeams.schema.json"
    schema = json.loads(path.read_text(encoding="utf-8"))
    assert manifest["$schema"].endswith(f"/teams/v{version}/MicrosoftTeams.schema.json")
    # The schema declares draft-04 but uses `const` (draft-06+); enforce it too rather than silently ignoring it.
    validator_class = jsonschema.validators.extend(Draft4Validator, {"const": Draft7Validator.VALIDATORS["const"]})
    return validator_class(schema, format_checker=FormatChecker())


def schema_errors(manifest: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator(manifest).iter_errors(manifest)]


def read_png(data: bytes) -> tuple[int, int, int, list[list[tuple[int, ...]]]]:
    """(width, height, colour type, rows of pixels) for an 8-bit non-interlaced PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert header is not None
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and interlace == 0, "only 8-bit, non-interlaced icons are expected"
    channels = {2: 3, 6: 4, 0: 1, 4: 2}[colour]
    raw, stride, rows, previous = zlib.decompress(idat), width * channels, [], bytearray(width * channels)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = previous[i], previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x * channels : (x + 1) * channels]) for x in range(width)])
        previous = line
    return width, height, colour, rows


def test_the_package_is_valid_against_microsofts_manifest_schema(tmp_path: Path) -> None:
    zip_path = write_package(_settings(), tmp_path / "esafety-teams-app.zip")
    with zipfile.ZipFile(zip_path) as archive:
        assert sorted(archive.namelist()) == ["color.png", "manifest.json", "outline.png"]
        manifest = json.loads(archive.read("manifest.json"))
        icons = {name: archive.read(name) for name in ("color.png", "outline.png")}
    assert schema_errors(manifest) == []
    assert manifest["version"] == project_version()
    # The links in the app's details go to the app's own privacy and terms pages (tests/test_package.py fetches them).
    assert manifest["developer"]["privacyUrl"] == "https://esafety.oakfield.example/privacy"
    assert manifest["developer"]["termsOfUseUrl"] == "https://esafety.oakfield.example/terms"
    assert manifest["id"] == APP_ID and manifest["webApplicationInfo"]["id"] == APP_ID
    # Teams SSO for the desk tab: the resource is the app's API on the tab's own domain, and the server accepts
    # exactly the tokens Teams issues for it.
    assert manifest["webApplicationInfo"]["resource"] == f"api://esafety.oakfield.example/{APP_ID}"
    assert manifest["webApplicationInfo"]["resource"] in _settings().tab_audiences
    tabs = {tab["entityId"]: tab for tab in manifest["staticTabs"]}
    assert tabs["desk"]["name"] == "Safeguarding desk" and tabs["desk"]["scopes"] == ["personal"]
    assert tabs["desk"]["contentUrl"] == "https://esafety.oakfield.example/tab"
    assert tabs["conversations"]["scopes"] == ["personal"], "a static tab must not hide the bot's chat"
    assert manifest["validDomains"] == ["esafety.oakfield.example"]
    assert manifest["developer"]["name"] == "Oakfield Primary School"
    (bot,) = manifest["bots"]
    assert bot["botId"] == APP_ID and sorted(bot["scopes"]) == ["personal", "team"]
    by_scope = {scope: [c["title"] for c in lst["commands"]] for lst in bot["commandLists"] for scope in lst["scopes"]}
    assert {"report", "my reports", "filter", "aup", "help"} <= set(by_scope["personal"])
    # Only commands that work in a channel are offered there; the rest ask people to message privately.
    assert set(by_scope["team"]) == {"digest now", "help"}
    # "Report a concern" on any message's menu: a message action the bot answers with a task module.
    (extension,) = manifest["composeExtensions"]
    assert extension["botId"] == APP_ID
    (command,) = extension["commands"]
    assert command["id"] == COMMAND_ID and command["title"] == "Report a concern"
    assert command["type"] == "action" and command["context"] == ["message"] and command["fetchTask"] is True
    assert manifest["authorization"]["permissions"]["resourceSpecific"] == []  # see docs/graph.md
    assert icons["color.png"] == (ROOT / "manifest" / "color.png").read_bytes()


def test_the_command_menus_are_made_from_the_registered_commands(tmp_path: Path) -> None:
    """The menus Teams shows and the help card come from the same registrations; manifest.json must match them."""
    commands = registered_commands()
    path = ROOT / "manifest" / "manifest.json"
    in_file = json.loads(path.read_text(encoding="utf-8"))["bots"][0]["commandLists"]
    assert in_file == command_lists(commands), "manifest.json's command menus are stale: run `make package`"
    by_name = {c.name: c for c in commands}
    for menu in in_file:
        titles = [c["title"] for c in menu["commands"]]
        assert len(titles) <= MAX_COMMANDS and titles[-1] == "help"
        for title in titles[:-1]:
            assert menu["scopes"][0] in by_name[title].menu and by_name[title].in_help
            if menu["scopes"] == ["team"]:
                assert by_name[title].channel_ok, f"{title} asks people to message privately, so not in a channel"
    # A registration that changes its menu makes the file stale, and `make package` puts it back in step.
    changed = [dataclasses.replace(c, menu=()) if c.name == "reviews" else c for c in commands]
    assert command_lists(changed) != in_file
    stale = tmp_path / "manifest.json"
    original = path.read_text(encoding="utf-8")
    stale.write_text(
        original.replace('"description": "See and export every filter change"', '"description": "Old words"'),
        encoding="utf-8",
    )
    assert sync_manifest(stale) is True and stale.read_text(encoding="utf-8") == original
    assert sync_manifest(stale) is False


def test_a_menu_longer_than_teams_allows_is_refused() -> None:
    (report,) = [c for c in registered_commands() if c.name == "report"]
    eleven = [dataclasses.replace(report, name=f"command {n}") for n in range(MAX_COMMANDS)]
    with pytest.raises(ValueError, match="Teams allows 10"):
        command_lists(eleven)


def test_the_schema_check_can_fail() -> None:
    manifest = build_manifest(_settings(), developer_name="Oakfield Primary School")
    manifest["bots"][0]["scopes"] = ["personal", "staffroom"]
    manifest["name"]["short"] = "x" * 31
    del manifest["accentColor"]
    manifest["composeExtensions"][0]["commands"][0]["context"] = ["message", "chatBubble"]
    errors = " | ".join(schema_errors(manifest))
    assert "staffroom" in errors and "too long" in errors and "accentColor" in errors and "chatBubble" in errors


def test_the_icons_are_the_sizes_teams_requires() -> None:
    width, height, colour, _ = read_png((ROOT / "manifest" / "color.png").read_bytes())
    assert (width, height) == (192, 192)
    width, height, colour, rows = read_png((ROOT / "manifest" / "outline.png").read_bytes())
    assert (width, height) == (32, 32) and colour == 6, "the outline icon must be 32x32 RGBA"
    pixels = [px for row in rows for px in row]
    assert all(a == 0 or (r, g, b) == (255, 255, 255) for r, g, b, a in pixels), "outline: white on transparent"
    transparent = sum(1 for px in pixels if px[3] == 0)
    assert transparent > len(pixels) // 2 and transparent < len(pixels), "outline: a visible shape, mostly clear"
    corners = [rows[0][0], rows[0][-1], rows[-1][0], rows[-1][-1]]
    assert all(px[3] == 0 for px in corners), "outline: the background must be transparent"


@pytest.mark.parametrize(
    ("values", "setting"),
    [
        ({"MicrosoftAppId": ""}, "MicrosoftAppId"),
        ({"MicrosoftAppId": "not-a-guid"}, "MicrosoftAppId"),
        ({"ESAFETY_PUBLIC_URL": ""}, "ESAFETY_PUBLIC_URL"),
        ({"ESAFETY_PUBLIC_URL": "http://esafety.oakfield.example"}, "ESAFETY_PUBLIC_URL"),
    ],
)
def test_packaging_names_the_setting_to_fix(values: dict[str, str], setting: str) -> None:
    with pytest.raises(PackageError, match=setting):
        build_manifest(_settings(**values), developer_name="Oakfield Primary School")
