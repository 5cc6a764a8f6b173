"""The Teams command menus (the manifest's commandLists), made from the commands the features register.

`python -m manifest.package` (make package) writes them into manifest.json, and tests/test_manifest.py fails when
the file and the registrations differ, so the menus and the help card never drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from bot.actor import MENU_SCOPES, Command, in_menu_order

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MANIFEST = HERE / "manifest.json"
DEMO_CONFIG = ROOT / "config" / "demo.yaml"
DEFAULT_POLICY = ROOT / "config" / "policy_defaults.yaml"
MAX_COMMANDS = 10  # Teams' limit per command list
MAX_TITLE, MAX_DESCRIPTION = 32, 128
# `help` is the front door's own word (bot.handler), not a feature's command; it ends every menu.
HELP = {"personal": "What you can do here", "team": "What this bot does in this team"}


class _NoWork:
    """Installing features registers work handlers; listing commands runs none."""

    def register(self, kind: str, handler: Any, **_options: Any) -> None:
        pass

    def wake(self) -> None:
        pass


def _no_database() -> Any:
    raise RuntimeError("listing commands touches no database")


def registered_commands(config_path: Path = DEMO_CONFIG) -> list[Command]:
    """Every command the demo wiring registers, in the registry's order; installing touches no database."""

    from adapters.clock import SystemClock
    from adapters.directory_static import StaticDirectory
    from app import _features
    from bot.config import load_config
    from bot.handler import BotServices
    from bot.policy import load_policy
    from bot.wiring import Features, Wiring

    config = load_config(config_path)
    directory = StaticDirectory(config)
    # Installing only registers things: nothing here is called, so no conversation store either.
    services = BotServices(
        config=config,
        directory=directory,
        uow=_no_database,
        refs=cast(Any, None),
    )
    wiring = Wiring(
        config=config,
        policy=load_policy(DEFAULT_POLICY),
        directory=directory,
        uow=_no_database,
        reads=_no_database,
        read_audit=cast(Any, None),
        caseload=cast(Any, None),
        clock=SystemClock(),
        services=services,
        work=_NoWork(),
        features=Features(),
    )
    for install in _features():
        install(wiring)
    return list(services.commands)


def _sentence(text: str) -> str:
    """The help card's description as the menu shows it: plain text, so no Markdown code marks."""
    text = text.replace("`", "")
    return text[:1].upper() + text[1:]


def command_lists(commands: list[Command]) -> list[dict[str, Any]]:
    """One list per scope: the commands offered there, by rank, then `help`; ValueError past Teams' limits."""
    lists = []
    for scope in MENU_SCOPES:
        entries = [
            {"title": c.name, "description": _sentence(c.description)}
            for c in in_menu_order(commands)
            if scope in c.menu
        ]
        entries.append({"title": "help", "description": HELP[scope]})
        if len(entries) > MAX_COMMANDS:
            raise ValueError(
                f"{len(entries)} commands in the {scope} menu; Teams allows {MAX_COMMANDS}: "
                "take `menu` off the least useful"
            )
        for entry in entries:
            if len(entry["title"]) > MAX_TITLE or len(entry["description"]) > MAX_DESCRIPTION:
                raise ValueError(f"the {entry['title']!r} command's name or description is too long for Teams")
        lists.append({"scopes": [scope], "commands": entries})
    return lists


def _lists_json(lists: list[dict[str, Any]], indent: str) -> str:
    """The lists as the file lays them out: one command a line, so a change reads as a one-line diff."""

    def dump(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    blocks = []
    for item in lists:
        commands = f",\n{indent}      ".join(dump(c) for c in item["commands"])
        blocks.append(
            f'{indent}  {{\n{indent}    "scopes": {dump(item["scopes"])},\n{indent}    "commands": [\n'
            f"{indent}      {commands}\n{indent}    ]\n{indent}  }}"
        )
    return "[\n" + ",\n".join(blocks) + f"\n{indent}]"


def sync_manifest(path: Path = MANIFEST) -> bool:
    """Write the registrations' command lists into manifest.json, leaving the rest of the file as it is; True when
    the file changed."""
    text = path.read_text(encoding="utf-8")
    wanted = command_lists(registered_commands())
    if json.loads(text)["bots"][0].get("commandLists") == wanted:
        return False
    key = '"commandLists": '
    start = text.index(key) + len(key)
    indent = text[text.rindex("\n", 0, start) + 1 : start - len(key)]
    _, end = json.JSONDecoder().raw_decode(text, start)
    path.write_text(text[:start] + _lists_json(wanted, indent) + text[end:], encoding="utf-8")
    return True
