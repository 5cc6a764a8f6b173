"""Digest and governors' report: allegations about adults stay out of SLT figures, and small numbers are hidden."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from bot.actor import Actor
from bot.config import ConfigError
from bot.incident_service import ReportInput
from bot.policy import load_policy
from bot.small_numbers import protect
from tests.support.harness import ROOT, Harness
from tests.test_digest import at, chart, digest_card, digests_posted, elements
from tests.test_incidents import submit_report

GOVERNORS = "Governors' termly online-safety report"
FEWER = "fewer than 5"


def facts_of(card: dict[str, Any]) -> dict[str, str]:
    """Every figure a reader of the card sees, by its label (charts' FactSet fallbacks included)."""
    return {f["title"]: f["value"] for e in elements(card) if e["type"] == "FactSet" for f in e["facts"]}


def group_figures(card: dict[str, Any]) -> dict[str, str]:
    """Per category group, as a reader sees it: the bar chart's fallback when there is a chart, else the FactSet."""
    bars = [e for e in elements(card) if e["type"] == "Chart.HorizontalBar"]
    found = (
        bars[0]["fallback"]["facts"]
        if bars
        else next(e["facts"] for e in elements(card) if e["type"] == "FactSet" and e["facts"][0]["title"] == "Illegal")
    )
    return {f["title"]: f["value"] for f in found}


def chart_numbers(card: dict[str, Any]) -> list[int]:
    """Every number drawn in any chart of the card."""
    points = [p for e in elements(card) if e["type"].startswith("Chart.") for p in e["data"]]
    points += [v for p in points for v in p.get("values", [])]
    return [p[k] for p in points for k in ("y", "value") if k in p]


async def concerns(harness: Harness, count: int, category: str = "cyberbullying") -> None:
    """File complete pupil concerns through the real service, as the report dialog does on Submit."""
    service = harness.parts.features.incidents
    person = await harness.parts.directory.person(harness.school.id, harness.person_id("Leah Brooks"))
    for i in range(count):
        await service.submit(
            Actor(harness.school, person),
            ReportInput(
                subject_kind="pupil",
                category=category,
                immediate_danger=False,
                location="Online",
                occurred="Today",
                subjects=f"Pupil {i}",
                narrative="Unkind messages",
                evidence="None",
                actions_taken="Nothing yet",
            ),
            key=f"bulk-{uuid.uuid4()}",
        )


async def adult_allegations(harness: Harness) -> None:
    """An urgent illegal concern about the Headteacher and an allegation about a member of staff, over HTTP."""
    await submit_report(
        harness.user("Leah Brooks"),
        subject="The Headteacher",
        group="illegal",
        category="indecent_images",
        who="The head",
        what="Images on a laptop",
    )
    await submit_report(
        harness.user("Leah Brooks"),
        subject="A member of staff",
        group="contact",
        category="staff_personal_channels",
        who="Mr X",
        what="Messaging a pupil",
    )


async def test_allegations_about_adults_never_reach_the_slt_digest(harness: Harness) -> None:
    before = {
        name: group_figures(digest_card((await harness.user(name).says("digest now")).cards))
        for name in ("Grace Okafor", "Priya Shah")
    }
    await adult_allegations(harness)
    for name in ("Grace Okafor", "Priya Shah"):  # the Headteacher, and a DSL on the SLT
        card = digest_card((await harness.user(name).says("digest now")).cards)
        assert group_figures(card) == before[name] and group_figures(card)["Illegal"] == "0"
        assert "0 incidents reported; 0 open in total" in json.dumps(card)
        assert "Allegations about adults" not in json.dumps(card)
    await harness.channel("slt").bot_added(by=harness.user("Priya Shah"))
    harness.clock.set(at(2026, 11, 30, 7, 30))
    posted = (await digests_posted(harness, 1))[0]
    assert group_figures(posted)["Illegal"] == "0" and "0 incidents reported" in json.dumps(posted)


async def test_governors_see_allegations_about_adults_only_as_one_termly_line(harness: Harness) -> None:
    await adult_allegations(harness)
    ruth = harness.user("Ruth Evans")  # Chair of Governors, not staff: cannot be the subject
    card = digest_card((await ruth.says("governors report")).cards, GOVERNORS)
    figures = facts_of(card)
    assert figures["Allegations about adults this term"] == FEWER
    assert group_figures(card)["Illegal"] == "0" and group_figures(card)["Contact"] == "0"
    assert "fewer than 5" in json.dumps(card) and "Critical" in figures and figures["Critical"] == "0"
    csv_reply = " ".join((await ruth.says("governors report csv")).texts)
    assert "Allegations about adults,Allegations about adults this term,fewer than 5" in csv_reply
    assert "Incidents by category group,Illegal,0" in csv_reply
    markdown = " ".join((await ruth.says("governors report markdown")).texts)
    assert "| Allegations about adults this term | fewer than 5 |" in markdown and "| Illegal | 0 |" in markdown
    # The Headteacher may be the subject: no figure that could include a concern about them, in any format.
    grace = harness.user("Grace Okafor")
    head_card = digest_card((await grace.says("governors report")).cards, GOVERNORS)
    assert facts_of(head_card)["Allegations about adults this term"] == "reported to governors only"
    assert group_figures(head_card)["Illegal"] == "0"
    for fmt in ("csv", "markdown"):
        text = " ".join((await grace.says(f"governors report {fmt}")).texts)
        assert "reported to governors only" in text and FEWER not in text.split("Allegations about adults")[1][:80]


async def test_small_numbers_show_as_fewer_than_5_and_charts_leave_them_out(harness: Harness) -> None:
    await concerns(harness, 3)
    card = digest_card((await harness.user("Grace Okafor").says("digest now")).cards)
    assert group_figures(card)["Conduct"] == FEWER
    assert "fewer than 5 incidents reported" in json.dumps(card)
    bars = chart(card, "Chart.HorizontalBar")
    assert "Conduct" not in {p["x"] for p in bars["data"]} and {p["y"] for p in bars["data"]} == {0}
    notes = [e["text"] for e in elements(card) if e["type"] == "TextBlock" and "Not in the chart" in e["text"]]
    assert any("Conduct (fewer than 5)" in n for n in notes)
    assert 3 not in chart_numbers(card)

    await concerns(harness, 3, category="gambling")  # 3 conduct, 3 commerce: each hidden, the total (6) is shown
    card = digest_card((await harness.user("Priya Shah").says("digest now")).cards)
    assert "6 incidents reported" in json.dumps(card)
    groups = group_figures(card)
    assert groups["Conduct"] == FEWER and groups["Commerce"] == FEWER

    await concerns(harness, 3)  # now 6 conduct and 3 commerce, total 9: commerce hidden, so conduct is hidden too
    card = digest_card((await harness.user("Priya Shah").says("digest now")).cards)
    groups = group_figures(card)
    assert groups["Commerce"] == FEWER and groups["Conduct"] == "not shown" and "9 incidents" in json.dumps(card)

    await concerns(harness, 3, category="gambling")  # 6 and 6: nothing small, both shown
    card = digest_card((await harness.user("Priya Shah").says("digest now")).cards)
    bars = {p["x"]: p["y"] for p in chart(card, "Chart.HorizontalBar")["data"]}
    assert bars["Conduct"] == 6 and bars["Commerce"] == 6 and group_figures(card)["Conduct"] == "6"
    assert not [
        e for e in elements(card) if e["type"] == "TextBlock" and "Not in the chart, too few to show: C" in e["text"]
    ]


async def test_six_concerns_in_a_group_are_shown_as_six(harness: Harness) -> None:
    await concerns(harness, 6)
    reply = await harness.user("Priya Shah").says("digest now")
    card = digest_card(reply.cards)
    assert {p["x"]: p["y"] for p in chart(card, "Chart.HorizontalBar")["data"]}["Conduct"] == 6
    assert group_figures(card)["Conduct"] == "6" and "6 incidents reported" in json.dumps(card)
    assert len(json.dumps(card).encode()) < 40 * 1024


def test_one_hidden_count_never_stands_alone_so_a_total_cannot_reveal_it() -> None:
    def texts(rows: list[tuple[str, int]]) -> list[str]:
        return [c.text for c in protect(rows, 5)]

    assert texts([("a", 0), ("b", 7), ("c", 9)]) == ["0", "7", "9"]
    assert texts([("a", 1), ("b", 7), ("c", 9)]) == [FEWER, "not shown", "9"]
    assert texts([("a", 1), ("b", 1), ("c", 9), ("d", 20)]) == [FEWER, FEWER, "not shown", "20"]  # 1 + 1 pins both
    assert texts([("a", 2), ("b", 3), ("c", 9)]) == [FEWER, FEWER, "9"]  # 2 + 3 = 5: could be 1 + 4, 4 + 1...
    assert texts([("a", 3), ("b", 0)]) == [FEWER, "0"]  # the total is small too, so it is hidden as well


def test_the_threshold_is_policy_data_and_must_be_at_least_2(tmp_path: Path) -> None:
    source = (ROOT / "config" / "policy_defaults.yaml").read_text(encoding="utf-8")
    assert load_policy(ROOT / "config" / "policy_defaults.yaml").small_number_threshold == 5
    broken = tmp_path / "policy.yaml"
    broken.write_text(source.replace("small_number_threshold: 5", "small_number_threshold: 1"), encoding="utf-8")
    with pytest.raises(ConfigError, match="small_number_threshold"):
        load_policy(broken)
