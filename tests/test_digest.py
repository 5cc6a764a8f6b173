"""The weekly SLT digest and the governors' report: charts, counts only, on schedule, and once after downtime."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy import text as sql

from storage.incidents import IncidentRow
from tests.support.harness import Harness
from tests.test_incidents import submit_report

SLT_CHANNEL = "19:oakfield-slt@thread.tacv2"
SECRET_WORDS = ("JS, Year 8", "Mean messages", "Screenshots", "Year 8")


def at(year: int, month: int, day: int, hour: int = 10, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)


def elements(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if "type" in node:
            found.append(node)
        for value in node.values():
            found += elements(value)
    elif isinstance(node, list):
        for value in node:
            found += elements(value)
    return found


def chart(card: dict[str, Any], kind: str) -> dict[str, Any]:
    charts = [e for e in elements(card) if e["type"] == kind]
    assert len(charts) == 1, f"expected one {kind}"
    return charts[0]


def digest_card(cards: list[dict[str, Any]], title: str = "Weekly online-safety digest") -> dict[str, Any]:
    found = [c for c in cards if c["body"] and c["body"][0].get("text") == title]
    assert found, f"no {title} card"
    return found[-1]


def posted_digests(harness: Harness) -> list[dict[str, Any]]:
    """Digest cards the bot posted to the SLT channel (the channel also got a welcome card on install)."""
    return [
        s.card
        for s in harness.connector.to(SLT_CHANNEL)
        if s.op == "send" and s.card and s.card["body"][0].get("text") == "Weekly online-safety digest"
    ]


async def digests_posted(harness: Harness, count: int) -> list[dict[str, Any]]:
    """Run what is due and wait for exactly `count` digests in the channel (the app's own worker may post)."""
    await harness.run_due_work()
    await harness.connector.wait_for(lambda _sent: len(posted_digests(harness)) >= count)
    await harness.run_due_work()
    posts = posted_digests(harness)
    assert len(posts) == count
    return posts


def assert_no_names(harness: Harness, card: dict[str, Any]) -> None:
    body = json.dumps(card)
    for person in harness.school.people:
        assert person.name not in body and person.name.split()[0] not in body, person.name
    for secret in SECRET_WORDS:
        assert secret not in body


async def old_incidents(harness: Harness, weeks_ago: list[int]) -> None:
    """Earlier closed incidents, one for each of these weeks ago, for the 12-week trend."""
    now = harness.clock.now()
    moments = [now - dt.timedelta(weeks=w, hours=1) for w in weeks_ago]
    await incidents_reported(harness, moments, copies=1, status="closed", outcome="resolved_in_school")


async def test_digest_now_shows_charts_of_this_weeks_figures_and_no_names(harness: Harness) -> None:
    await submit_report(harness.user("Leah Brooks"))
    await submit_report(harness.user("Leah Brooks"), group="commerce", category="gambling", what="Betting site")
    await old_incidents(harness, [1] * 6 + [3, 11])
    reply = await harness.user("Priya Shah").says("digest now")
    card = digest_card(reply.cards)
    assert len(json.dumps(card).encode()) < 40 * 1024
    bars = chart(card, "Chart.HorizontalBar")
    assert bars["displayMode"] == "AbsoluteNoAxis"  # every label on its own line, and no axis to tick in halves
    by_group = {point["x"]: point["y"] for point in bars["data"]}
    assert by_group["Illegal"] == 0 and "Conduct" not in by_group and "Commerce" not in by_group  # 1 each: hidden
    assert bars["fallback"]["type"] == "FactSet"
    assert {f["title"]: f["value"] for f in bars["fallback"]["facts"]}["Conduct"] == "fewer than 5"
    assert "Chart.Donut" not in json.dumps(card)  # every status is a small number: just the figures, no empty chart
    line = chart(card, "Chart.Line")
    trend = line["data"][0]["values"]
    assert len(line["fallback"]["facts"]) == 12 and line["fallback"]["facts"][-1]["value"] == "fewer than 5"
    assert len(trend) == 9 and trend[-1]["y"] == 6 and sum(p["y"] for p in trend) == 6  # 6 last week: shown
    assert (line["yMin"], line["yMax"]) == (0, 8)  # four steps of 2, where 0 to 6 would tick at 1.5
    body = json.dumps(card)
    assert "fewer than 5 incidents reported" in body and "Web filter changes" in body and "Reviews due" in body
    assert "Not in the chart, too few to show: Conduct (fewer than 5), Commerce (fewer than 5)." in body
    assert_no_names(harness, card)


async def test_the_digest_is_for_senior_staff_only(harness: Harness) -> None:
    reply = await harness.user("Leah Brooks").says("digest now")
    assert "not available to you" in " ".join(reply.texts)


async def incidents_reported(harness: Harness, at_times: list[dt.datetime], copies: int = 5, **fields: Any) -> None:
    """Incidents (five unless told) at each of these moments, straight into the table (open, about a pupil, unless
    told): reporting them through the app would take minutes."""
    row = dict(
        school_id=harness.school.id,
        reporter_id="x",
        reporter_name="Leah Brooks",
        subject_kind="pupil",
        category="gambling",
        category_group="commerce",
        illegal=False,
        urgent=False,
        immediate_danger=False,
        severity="low",
        status="new",
        outcome=None,
        recorded_actions=[],
        case_roles=[],
        viewer_ids=[],
        excluded_ids=[],
        sla_breached=False,
        version=1,
        complete=True,
    )
    async with harness.parts.engine.begin() as connection:
        count = len((await connection.execute(select(IncidentRow.id))).all())
        rows = [{**row, **fields, "reported_at": when} for when in at_times for _ in range(copies)]
        for i, values in enumerate(rows):
            values["reference"] = f"ES-2026-8{count + i:03d}"
        await connection.execute(insert(IncidentRow), rows)


async def test_an_incident_reported_on_the_edge_of_an_age_band_or_week_counts_once_in_the_later_one(
    harness: Harness,
) -> None:
    now = harness.clock.now()
    await incidents_reported(harness, [now - dt.timedelta(days=1), now - dt.timedelta(days=7)])
    await incidents_reported(harness, [now - dt.timedelta(days=30)], sla_breached=True)
    await incidents_reported(harness, [now - dt.timedelta(days=2)], subject_kind="staff")  # never in these figures
    twelve_weeks_ago = now - dt.timedelta(weeks=12)
    await incidents_reported(harness, [twelve_weeks_ago], status="closed", sla_breached=True)
    await incidents_reported(harness, [twelve_weeks_ago - dt.timedelta(microseconds=1)], status="closed")
    card = digest_card((await harness.user("Priya Shah").says("digest now")).cards)
    facts = {f["title"]: f["value"] for e in elements(card) if e["type"] == "FactSet" for f in e["facts"]}
    ages = ["Under 1 day", "1 to 7 days", "8 to 30 days", "Over 30 days", "Missed the acknowledgement deadline"]
    assert [facts[age] for age in ages] == ["0", "5", "5", "5", "5"]  # the closed late ones are not open
    weeks = [f["value"] for f in chart(card, "Chart.Line")["fallback"]["facts"]]
    assert weeks == ["5", *["0"] * 6, "5", *["0"] * 3, "10"]  # 30 days ago is in the week from 35 days ago


async def test_an_open_incident_older_than_the_trend_counts_as_open_but_in_no_week(harness: Harness) -> None:
    now = harness.clock.now()
    long_ago = now - dt.timedelta(weeks=40)
    await incidents_reported(harness, [long_ago], sla_breached=True)
    await incidents_reported(harness, [long_ago], status="closed", sla_breached=True)  # closed: in neither
    await incidents_reported(harness, [long_ago], subject_kind="headteacher", sla_breached=True)  # never here
    await incidents_reported(harness, [now - dt.timedelta(weeks=12, microseconds=1)])  # just before the trend
    await incidents_reported(harness, [now - dt.timedelta(weeks=2, hours=1)], status="closed")
    card = digest_card((await harness.user("Priya Shah").says("digest now")).cards)
    facts = {f["title"]: f["value"] for e in elements(card) if e["type"] == "FactSet" for f in e["facts"]}
    ages = ["Under 1 day", "1 to 7 days", "8 to 30 days", "Over 30 days", "Missed the acknowledgement deadline"]
    assert [facts[age] for age in ages] == ["0", "0", "0", "10", "5"]
    weeks = [f["value"] for f in chart(card, "Chart.Line")["fallback"]["facts"]]
    assert weeks == [*["0"] * 9, "5", "0", "0"]


async def test_a_feature_whose_table_is_not_there_yet_reads_no_data_yet_and_the_rest_still_shows(
    harness: Harness,
) -> None:
    await incidents_reported(harness, [harness.clock.now() - dt.timedelta(days=2)])
    async with harness.parts.engine.begin() as connection:
        await connection.execute(sql("DROP TABLE filter_log"))  # as before the web-filter feature is installed
    card = digest_card((await harness.user("Priya Shah").says("digest now")).cards)
    blocks = [e.get("text") for e in elements(card) if e["type"] == "TextBlock"]
    assert blocks[blocks.index("Web filter changes") + 1] == "No data yet."
    facts = {f["title"]: f["value"] for e in elements(card) if e["type"] == "FactSet" for f in e["facts"]}
    assert facts["1 to 7 days"] == "5" and "Requested" not in facts
    assert "5 incidents reported; 5 open in total." in blocks
    # The next one finds the same, so the failed query did not spoil the unit of work it ran in (the audit entry).
    card = digest_card((await harness.user("Priya Shah").says("digest now")).cards)
    assert "5 incidents reported; 5 open in total." in [e.get("text") for e in elements(card)]


async def test_weekly_digest_posts_to_the_slt_channel_on_monday_at_0730_then_every_week(harness: Harness) -> None:
    await harness.channel("slt").bot_added(by=harness.user("Priya Shah"))
    await submit_report(harness.user("Leah Brooks"))
    harness.clock.set(at(2026, 11, 30, 7, 29))
    await harness.run_due_work()
    assert posted_digests(harness) == []
    harness.clock.set(at(2026, 11, 30, 7, 30))
    posts = await digests_posted(harness, 1)
    card = digest_card(posts)
    assert chart(card, "Chart.HorizontalBar") and chart(card, "Chart.Line")
    assert "fewer than 5 incidents reported" in json.dumps(card)
    assert_no_names(harness, card)
    harness.clock.set(at(2026, 12, 7, 7, 30))
    posts = await digests_posted(harness, 2)
    assert "0 incidents reported" in json.dumps(posts[1])


async def test_a_digest_missed_while_the_bot_was_down_is_posted_once_when_it_is_back(harness: Harness) -> None:
    await harness.channel("slt").bot_added(by=harness.user("Priya Shah"))
    await harness.stop()
    harness.clock.set(at(2026, 12, 1, 9))  # Tuesday: Monday's 07:30 slot passed while we were down
    await harness.start()
    await digests_posted(harness, 1)
    await harness.restart()
    await digests_posted(harness, 1)
    harness.clock.set(at(2026, 12, 7, 7, 30))  # and the schedule carries on from there
    await digests_posted(harness, 2)


async def test_governors_report_card_csv_and_markdown_carry_counts_not_names(harness: Harness) -> None:
    await submit_report(harness.user("Leah Brooks"))
    await old_incidents(harness, [4, 30])  # one this term, one from before it began
    ruth = harness.user("Ruth Evans")
    card = digest_card((await ruth.says("governors report")).cards, "Governors' termly online-safety report")
    body = json.dumps(card)
    assert "Autumn 2026" in body and "Resolved in school" in body and "Still open" in body
    bars = chart(card, "Chart.HorizontalBar")
    assert "Commerce" not in {p["x"] for p in bars["data"]}  # one case: too few to draw
    assert {f["title"]: f["value"] for f in bars["fallback"]["facts"]}["Commerce"] == "fewer than 5"
    assert "Chart.Line" not in body
    assert_no_names(harness, card)
    csv_reply = " ".join((await ruth.says("governors report csv")).texts)
    assert "section,item,count" in csv_reply and "Incidents by category group,Conduct,fewer than 5" in csv_reply
    markdown = " ".join((await ruth.says("governors report markdown")).texts)
    assert "# Governors' termly online-safety report" in markdown and "| Commerce | fewer than 5 |" in markdown
    for text in (csv_reply, markdown):
        assert "Leah" not in text and "JS, Year 8" not in text


async def test_filter_changes_and_aup_figures_appear_as_counts(harness: Harness) -> None:
    from tests.test_filtering import ask

    await ask(harness.user("Leah Brooks"))
    card = digest_card((await harness.user("Priya Shah").says("digest now")).cards)
    facts = {f["title"]: f["value"] for e in elements(card) if e["type"] == "FactSet" for f in e["facts"]}
    assert facts["Requested"] == "fewer than 5" and facts["Approved"] == "0"
    assert facts["Staff"] == "0 of 8 (0%)"
    assert_no_names(harness, card)

    await acknowledge_aup(harness.user("Tom Reed"))
    card = digest_card((await harness.user("Priya Shah").says("digest now")).cards)
    facts = {f["title"]: f["value"] for e in elements(card) if e["type"] == "FactSet" for f in e["facts"]}
    assert facts["Staff"] == "fewer than 5 of 8"  # and no percentage, which would give the count away
    assert_no_names(harness, card)


async def acknowledge_aup(user: Any) -> None:
    """The person types `aup`, ticks both boxes and submits, as the AUP card asks."""
    cards = [c for c in (await user.says("aup")).cards if "aup.acknowledge" in json.dumps(c)]
    data = dict(cards[0]["actions"][0]["data"])
    reply = await user.executes("aup.acknowledge", {**data, "read_kcsie": "true", "agree": "true"})
    assert "recorded" in json.dumps(reply.invoke_card)
