"""The weekly digest and the governors' report as Adaptive Cards: charts, each with a FactSet fallback.

Teams renders Chart.HorizontalBar, Chart.Donut and Chart.Line; a client that does not know them shows the element's
`fallback` (a FactSet with the same numbers) instead. Only counts and labels appear: no names, no narratives.

How each chart is drawn (read from the Teams chart renderer that the Agents Playground ships):
- Charts do not show their own `title`, so a TextBlock above each one names it (the title stays, for screen readers).
- Categories: Chart.HorizontalBar with displayMode AbsoluteNoAxis. A vertical bar chart squeezes its labels under
  the bars; here each label has its own line, the count is written at the end of its bar, and there is no value axis
  (with an axis the renderer splits the range into six, so 3 incidents would tick at 0.5).
- The weekly trend: Chart.Line splits its y axis from yMin to yMax into four steps, so yMax is set to a multiple of 4.
- Status: a ring only with two or more slices; one slice is a sentence, and a ring with hidden slices left out of it
  becomes the table, so it never looks as if one status were everything.
"""

from __future__ import annotations

import json
from typing import Any

from bot import small_numbers
from bot.cards.common import MAX_CARD_BYTES, card, facts, heading, text
from bot.digest import Figures, adults_row, aup_text
from bot.small_numbers import Cell, each, protect, shown

NO_DATA = "No data yet."
LINE_STEPS = 4  # the renderer's five y-axis ticks: 0 and four equal steps up to yMax


def _fallback(cells: list[Cell]) -> dict[str, Any]:
    return facts([(c.label, c.text) for c in cells]) if cells else text(NO_DATA, subtle=True)


def _left_out_note(cells: list[Cell]) -> list[dict[str, Any]]:
    """A chart cannot say "fewer than 5": hidden values are left out of it, and this says which."""
    missing = [f"{c.label} ({c.text})" for c in cells if c.value is None]
    return [text(f"Not in the chart, too few to show: {', '.join(missing)}.", subtle=True)] if missing else []


def _charted(chart: dict[str, Any], cells: list[Cell]) -> list[dict[str, Any]]:
    """The chart and a note of what it leaves out; just the figures when nothing is left to draw."""
    points = chart["data"][0]["values"] if chart["type"] == "Chart.Line" else chart["data"]
    if not points:
        return _titled_figures(chart["title"], cells)
    return [text(chart["title"], weight="Bolder"), chart, *_left_out_note(cells)]


def _titled_figures(title: str, cells: list[Cell]) -> list[dict[str, Any]]:
    """The figures as a table under the chart's title, where a chart would mislead."""
    return [text(title, weight="Bolder"), _fallback(cells)]


def horizontal_bar(title: str, cells: list[Cell]) -> dict[str, Any]:
    """Bars without a value axis: full labels, and the whole-number count shown at the end of each bar."""
    return {
        "type": "Chart.HorizontalBar",
        "title": title,
        "displayMode": "AbsoluteNoAxis",
        "colorSet": "categorical",
        "data": [{"x": c.label, "y": c.value} for c in cells if c.value is not None],
        "fallback": _fallback(cells),
    }


def donut(title: str, cells: list[Cell]) -> dict[str, Any]:
    return {
        "type": "Chart.Donut",
        "title": title,
        "colorSet": "categorical",
        "data": [{"legend": c.label, "value": c.value} for c in cells if c.value],
        "fallback": _fallback(cells),
    }


def ring(title: str, cells: list[Cell]) -> list[dict[str, Any]]:
    """A donut when at least two slices are drawn; one slice would look like everything, so words or a table."""
    slices = [c for c in cells if c.value]
    if len(slices) >= 2:
        return _charted(donut(title, cells), cells)
    if len(slices) == 1 and all(c.value is not None for c in cells):
        return [text(f"{title}: all {slices[0].value} {slices[0].label.lower()}.")]
    return _titled_figures(title, cells)


def whole_steps_max(peak: int) -> int:
    """The smallest yMax at or above the peak that the axis's four steps divide into whole numbers."""
    return max(LINE_STEPS, -(-peak // LINE_STEPS) * LINE_STEPS)


def line(title: str, series: str, cells: list[Cell]) -> dict[str, Any]:
    values: list[dict[str, Any]] = [{"x": c.label, "y": c.value} for c in cells if c.value is not None]
    return {
        "type": "Chart.Line",
        "title": title,
        "xAxisTitle": "Week beginning",
        "yAxisTitle": "Incidents",
        "yMin": 0,
        "yMax": whole_steps_max(max((v["y"] for v in values), default=0)),
        "data": [{"legend": series, "values": values}],
        "fallback": _fallback(cells),
    }


def _facts(cells: list[Cell]) -> dict[str, Any]:
    return facts([(c.label, c.text) for c in cells])


def _section(title: str) -> dict[str, Any]:
    block = text(title, weight="Bolder", spacing="Large")
    block["separator"] = True
    return block


def _summary(figures: Figures) -> str:
    if figures.total is None:
        return "Incident figures: no data yet."
    limit = figures.threshold
    total = shown(figures.total, limit)
    parts = [f"{total} incident{'s' if total != '1' else ''} reported"]
    if figures.open_total is not None:
        parts.append(f"{shown(figures.open_total, limit)} open in total")
    if figures.sla_breaches:
        parts.append(f"{shown(figures.sla_breaches, limit)} not acknowledged in time")
    return "; ".join(parts) + "."


def build_digest_card(figures: Figures) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        heading(figures.title),
        text(f"{figures.school_name}. {figures.period_label}.", subtle=True),
        text(_summary(figures)),
    ]
    limit = figures.threshold
    body.append(_section("Incidents"))
    if figures.by_group is None:
        body.append(text(NO_DATA, subtle=True))
    else:
        groups = protect(figures.by_group, limit)
        statuses = protect(figures.by_status or [], limit)
        body += _charted(horizontal_bar("By category group", groups), groups)
        body += ring("By status", statuses)
        body.append(text("By severity", weight="Bolder"))
        body.append(_facts(protect(figures.by_severity or [], limit)))
        if figures.by_outcome:
            body.append(text("Outcomes", weight="Bolder"))
            body.append(_facts(protect(figures.by_outcome, limit)))
    adults = adults_row(figures)
    if adults is not None:
        body.append(_section("Allegations about adults"))
        body.append(facts([adults]))
    if figures.open_by_age is not None:
        body.append(_section("Open cases by age"))
        rows = [(c.label, c.text) for c in protect(figures.open_by_age, limit)]
        rows.append(("Missed the acknowledgement deadline", shown(figures.open_breached or 0, limit)))
        body.append(facts(rows))
    if figures.trend is not None:
        body.append(_section("Last 12 weeks"))
        weeks = each(figures.trend, limit)
        body += _charted(line("Incidents per week", "Incidents", weeks), weeks)
    body.append(_section("Web filter changes"))
    body.append(
        _facts(each(figures.filter_changes, limit))
        if figures.filter_changes is not None
        else text(NO_DATA, subtle=True)
    )
    body.append(_section("Acceptable use agreements (this year)"))
    if figures.aup is None:
        body.append(text(NO_DATA, subtle=True))
    else:
        body.append(
            facts(
                [
                    (a.audience, f"{count} ({percent})" if percent else count)
                    for a in figures.aup
                    for count, percent in [aup_text(figures, a)]
                ]
                or [("Everyone", "nobody owes one")]
            )
        )
    if figures.reviews_completed is not None:
        body.append(_section("Reviews completed"))
        body.append(facts([(name, str(n)) for name, n in figures.reviews_completed] or [("None", "-")]))
    if figures.filtering_checks is not None:
        body.append(_section("Filtering checks (tested on a pupil device)"))
        body.append(facts(figures.filtering_checks or [("None recorded this term", "Due each term")]))
    body.append(_section("Reviews due in the next 30 days"))
    if figures.reviews_due:
        body.append(
            facts(
                [
                    (r.label, f"{r.due_on:%-d %b %Y}" + (" (overdue)" if r.days_left < 0 else ""))
                    for r in figures.reviews_due
                ]
            )
        )
    else:
        body.append(text("None.", subtle=True))
    body.append(text("Counts only: names and case details stay in each case record.", subtle=True))
    body.append(text(small_numbers.note(limit), subtle=True))
    if figures.checkpoint:
        body.append(text(f"Audit trail: {figures.checkpoint}", subtle=True, size="Small"))
    result = card(body, fallback_text=f"{figures.title}: {_summary(figures)}")
    if len(json.dumps(result).encode()) > MAX_CARD_BYTES:  # never in practice: every list above is bounded
        result = card(body[:3], fallback_text=figures.title)
    return result


def build_governors_card(figures: Figures) -> dict[str, Any]:
    result = build_digest_card(figures)
    result["body"].append(
        text("Type `governors report csv` or `governors report markdown` for a copy to share.", subtle=True)
    )
    return result
