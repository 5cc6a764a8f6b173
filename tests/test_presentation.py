"""What staff read: digest charts that Teams draws honestly, words instead of stored keys, the KCSIE link beside its
confirmation, and examples that fit the school's phase (primary or secondary)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.clock import SettableClock
from bot.cards.digest import build_digest_card, whole_steps_max
from bot.config import AppConfig, ConfigError, Phase, load_yaml_model
from bot.digest import Figures
from tests.support.harness import DEMO_CONFIG, Harness, start_harness
from tests.test_digest import elements
from tests.test_filtering import ask

NOW = dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.UTC)
LONG_GROUP = "Online behaviour between pupils outside school hours"


def figures(
    *, by_group: list[tuple[str, int]], by_status: list[tuple[str, int]], trend: list[tuple[str, int]]
) -> Figures:
    return Figures(
        "Weekly online-safety digest",
        "Oakfield Primary School",
        "16 to 22 November 2026",
        NOW - dt.timedelta(days=7),
        NOW,
        by_group=by_group,
        by_severity=[("Low", 0)],
        by_status=by_status,
        trend=trend,
        threshold=5,
    )


def charts(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in elements(card) if e["type"].startswith("Chart.")]


def texts(card: dict[str, Any]) -> list[str]:
    return [e["text"] for e in elements(card) if e["type"] == "TextBlock"]


def test_category_bars_keep_full_labels_and_have_no_axis_to_tick_in_halves() -> None:
    card = build_digest_card(
        figures(
            by_group=[(LONG_GROUP, 6), ("Content", 0), ("Contact", 2), ("Commerce", 3)],
            by_status=[("New", 11)],
            trend=[("9 Nov", 0), ("16 Nov", 11)],
        )
    )
    [bars] = [c for c in charts(card) if c["title"] == "By category group"]
    assert bars["type"] == "Chart.HorizontalBar" and bars["displayMode"] == "AbsoluteNoAxis"
    assert bars["data"][0] == {"x": LONG_GROUP, "y": 6}  # the whole label, as a whole number
    assert "Chart.VerticalBar" not in json.dumps(card)
    # Small-number suppression is untouched: 2 and 3 are hidden from the chart and said in words.
    assert {p["x"] for p in bars["data"]} == {LONG_GROUP, "Content"}
    assert "Not in the chart, too few to show: Contact (fewer than 5), Commerce (fewer than 5)." in texts(card)
    assert {f["title"]: f["value"] for f in bars["fallback"]["facts"]}["Contact"] == "fewer than 5"


def test_one_status_is_a_sentence_not_a_one_slice_ring() -> None:
    card = build_digest_card(figures(by_group=[("Conduct", 7)], by_status=[("New", 7), ("Closed", 0)], trend=[]))
    assert not [c for c in charts(card) if c["type"] in ("Chart.Donut", "Chart.Pie")]
    assert "By status: all 7 new." in texts(card)

    two = build_digest_card(figures(by_group=[("Conduct", 12)], by_status=[("New", 7), ("Closed", 5)], trend=[]))
    [ring] = [c for c in charts(two) if c["type"] == "Chart.Donut"]
    assert [s["value"] for s in ring["data"]] == [7, 5]


def test_a_ring_that_would_show_one_slice_beside_hidden_ones_becomes_the_table() -> None:
    card = build_digest_card(
        figures(by_group=[("Conduct", 14)], by_status=[("New", 10), ("Acknowledged", 3), ("Closed", 2)], trend=[])
    )
    assert "Chart.Donut" not in json.dumps(card)
    table = {f["title"]: f["value"] for e in elements(card) if e["type"] == "FactSet" for f in e["facts"]}
    assert table["New"] == "10" and table["Acknowledged"] == "fewer than 5" and table["Closed"] == "fewer than 5"
    assert "By status" in texts(card)


def test_the_trend_axis_steps_in_whole_numbers() -> None:
    weeks = [("2 Nov", 0), ("9 Nov", 6), ("16 Nov", 9), ("23 Nov", 3)]
    card = build_digest_card(figures(by_group=[("Conduct", 15)], by_status=[("New", 15)], trend=weeks))
    [line] = [c for c in charts(card) if c["type"] == "Chart.Line"]
    assert [p["y"] for p in line["data"][0]["values"]] == [0, 6, 9]  # 3 stays hidden
    assert "Not in the chart, too few to show: 23 Nov (fewer than 5)." in texts(card)
    # Teams splits the axis from yMin to yMax into four steps: 0 to 12 ticks at 3, where 0 to 9 would tick at 2.25.
    assert (line["yMin"], line["yMax"]) == (0, 12)
    assert [whole_steps_max(peak) for peak in (0, 1, 4, 5, 8, 10, 37)] == [4, 4, 4, 8, 8, 12, 40]


def test_every_chart_is_named_above_it_because_teams_does_not_draw_chart_titles() -> None:
    card = build_digest_card(
        figures(
            by_group=[("Conduct", 7), ("Content", 6)], by_status=[("New", 7), ("Closed", 6)], trend=[("16 Nov", 13)]
        )
    )
    body = card["body"]
    for kind in ("Chart.HorizontalBar", "Chart.Donut", "Chart.Line"):
        at = next(i for i, b in enumerate(body) if b["type"] == kind)
        assert body[at - 1]["type"] == "TextBlock" and body[at - 1]["text"] == body[at]["title"]


async def test_the_aup_card_links_to_kcsie_part_1_beside_its_confirmation(harness: Harness) -> None:
    reply = await harness.user("Leah Brooks").says("aup")
    card = next(c for c in reply.cards if "aup.acknowledge" in json.dumps(c))
    body = card["body"]
    toggle = next(i for i, b in enumerate(body) if b.get("id") == "read_kcsie")
    [link] = body[toggle + 1]["actions"]
    assert link["type"] == "Action.OpenUrl" and "KCSIE Part 1" in link["title"]
    assert link["url"] == "https://www.gov.uk/government/publications/keeping-children-safe-in-education--2"


async def test_the_filter_log_says_who_a_change_is_for_in_words(harness: Harness) -> None:
    await ask(harness.user("Leah Brooks"))
    await ask(harness.user("Tom Reed"), site="https://www.example.org/", audience="year_groups")
    log = json.dumps((await harness.user("Sam Patel").says("filter log")).cards)
    assert "Unblock a site; for All pupils" in log and "Unblock a site; for Year 5, Year 6" in log
    assert "all_pupils" not in log and "year_groups" not in log
    csv = " ".join((await harness.user("Sam Patel").says("filter log csv")).texts)
    assert "for All pupils" in csv and "all_pupils" not in csv


async def who_is_involved_prompt(harness: Harness) -> str:
    from tests.test_incidents import _choice

    user = harness.user("Leah Brooks")
    group, category = _choice("conduct", "cyberbullying")
    for answer in ("report", "A pupil", group, category, "No", "Online"):
        await user.says(answer)
    return " ".join((await user.says("Today at lunch")).texts)


async def test_a_primary_school_is_asked_for_a_primary_year_group(harness: Harness) -> None:
    assert harness.school.phase == Phase.PRIMARY  # the demo school
    prompt = await who_is_involved_prompt(harness)
    assert "Who is involved?" in prompt and '"JS, Year 5"' in prompt and "Year 8" not in prompt


def secondary_config(tmp_path: Path) -> Path:
    raw = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    raw["schools"][0].update(name="Oakfield Academy", phase="secondary")
    path = tmp_path / "secondary.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.fixture
async def secondary(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    async with start_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", config_path=secondary_config(tmp_path)
    ) as running:
        yield running


async def test_a_secondary_school_is_asked_for_a_secondary_year_group(secondary: Harness) -> None:
    prompt = await who_is_involved_prompt(secondary)
    assert '"JS, Year 9"' in prompt and "Year 5" not in prompt
    user = secondary.user("Leah Brooks")
    await user.says("cancel")
    for step in ("filter", {"answer": "unblock"}, "https://www.bbc.co.uk/bitesize", {"answer": "year_groups"}):
        reply = await (user.says(step) if isinstance(step, str) else user.submits(step))
    asked = " ".join(reply.texts)
    assert "Which year groups?" in asked and "Year 9, Year 10" in asked and "Reception" not in asked


def test_phase_is_primary_unless_the_config_says_otherwise(tmp_path: Path) -> None:
    assert load_yaml_model(DEMO_CONFIG, AppConfig, "config").schools[0].phase == Phase.PRIMARY
    raw = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    del raw["schools"][0]["phase"]
    raw["schools"][0]["name"] = "No phase given"
    path = tmp_path / "default.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert load_yaml_model(path, AppConfig, "config").schools[0].phase == Phase.PRIMARY
    raw["schools"][0]["phase"] = "sixth form"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ConfigError, match="phase"):
        load_yaml_model(path, AppConfig, "config")
