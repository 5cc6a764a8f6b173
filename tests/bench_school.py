"""Generated schools for `make bench`: the demo school with invented staff added, written as a config file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.support.harness import DEMO_CONFIG


def generated_id(n: int) -> str:
    return f"00000000-0000-4000-9000-{n:012d}"


def write_school(path: Path, staff: int, *, extra_roles: dict[str, list[str]] | None = None) -> Path:
    """The demo school with invented people added until it has `staff` members of staff; `extra_roles` adds
    named people with those roles ({name: roles}) first. Returns the config file's path."""
    config: dict[str, Any] = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    school = config["schools"][0]
    people: list[dict[str, Any]] = school["people"]
    n = 0
    for name, roles in (extra_roles or {}).items():
        n += 1
        people.append(_person(n, name, roles))
    while sum("staff" in p["roles"] for p in people) < staff:
        n += 1
        people.append(_person(n, f"Staff Member {n:04d}", ["staff"]))
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _person(n: int, name: str, roles: list[str]) -> dict[str, Any]:
    return {"id": generated_id(n), "name": name, "email": f"staff{n:04d}@oakfield.example", "roles": roles}


def people_of(path: Path) -> list[dict[str, Any]]:
    """Everyone in the file's first school."""
    return list(yaml.safe_load(path.read_text(encoding="utf-8"))["schools"][0]["people"])


def staff_of(path: Path) -> list[dict[str, Any]]:
    """Every person in the file's first school who holds the staff role (they owe the staff AUP)."""
    return [p for p in people_of(path) if "staff" in p["roles"]]


def tenant_of(path: Path) -> str:
    return str(yaml.safe_load(path.read_text(encoding="utf-8"))["schools"][0]["tenant_id"])


def dsl_channel_of(path: Path) -> tuple[str, str]:
    """The first school's team and its DSL channel (where a concern's alert is posted)."""
    school = yaml.safe_load(path.read_text(encoding="utf-8"))["schools"][0]
    return str(school["team_id"]), str(school["channels"]["dsl"])
