"""The weekly digest and the governors' report as Adaptive Cards: charts, each with a FactSet fallback.

Teams renders Chart.VerticalBar, Chart.Donut and Chart.Line; a client that does not know them shows the element's
`fallback` (a FactSet with the same numbers) instead. Only counts and labels appear: no names, no narratives.
"""

from __future__ import annotations

import json
from typing import Any

from bot.cards.common import MAX_CARD_BYTES, card, facts, heading, text
from bot.digest import Figures

NO_DATA = "No data yet."


def _fallback(rows: list[tuple[str, Any]]) -> dict[str, Any]:
    return facts([(name, str(value)) for name, value in rows]) if rows else text(NO_DATA, subtle=True)


def vertical_bar(title: str, rows: list[tuple[str, int]], *, x_title: str | None = None) -> dict[str, Any]:
    chart: dict[str, Any] = {"type": "Chart.VerticalBar", "title": title, "colorSet": "categorical",
                             "data": [{"x": name, "y": value} for name, value in rows],
                             "fallback": _fallback(rows)}
    if x_title:
        chart["xAxisTitle"] = x_title
    chart["yAxisTitle"] = "Incidents"
    return chart


def donut(title: str, rows: list[tuple[str, int]]) -> dict[str, Any]:
    return {"type": "Chart.Donut", "title": title, "colorSet": "categorical",
            "data": [{"legend": name, "value": value} for name, value in rows if value],
            "fallback": _fallback(rows)}


def line(title: str, series: str, rows: list[tuple[str, int]]) -> dict[str, Any]:
    return {"type": "Chart.Line", "title": title, "xAxisTitle": "Week beginning", "yAxisTitle": "Incidents",
            "data": [{"legend": series, "values": [{"x": name, "y": value} for name, value in rows]}],
            "fallback": _fallback(rows)}


def _section(title: str) -> dict[str, Any]:
    block = text(title, weight="Bolder", spacing="Large")
    block["separator"] = True
    return block


def _summary(figures: Figures) -> str:
    if figures.total is None:
        return "Incident figures: no data yet."
    parts = [f"{figures.total} incident{'s' if figures.total != 1 else ''} reported"]
    if figures.open_total is not None:
        parts.append(f"{figures.open_total} open in total")
    if figures.sla_breaches:
        parts.append(f"{figures.sla_breaches} not acknowledged in time")
    return "; ".join(parts) + "."


def build_digest_card(figures: Figures) -> dict[str, Any]:
    body: list[dict[str, Any]] = [heading(figures.title), text(f"{figures.school_name}. {figures.period_label}.",
                                                               subtle=True), text(_summary(figures))]
    body.append(_section("Incidents"))
    if figures.by_group is None:
        body.append(text(NO_DATA, subtle=True))
    else:
        body.append(vertical_bar("By category group", figures.by_group, x_title="Category group"))
        body.append(donut("By status", figures.by_status or []))
        body.append(facts([(name, str(n)) for name, n in figures.by_severity or []]))
        if figures.by_outcome:
            body.append(text("Outcomes", weight="Bolder"))
            body.append(facts([(name, str(n)) for name, n in figures.by_outcome]))
    if figures.open_by_age is not None:
        body.append(_section("Open cases by age"))
        rows = [(name, str(n)) for name, n in figures.open_by_age]
        rows.append(("Missed the acknowledgement deadline", str(figures.open_breached or 0)))
        body.append(facts(rows))
    if figures.trend is not None:
        body.append(_section("Last 12 weeks"))
        body.append(line("Incidents per week", "Incidents", figures.trend))
    body.append(_section("Web filter changes"))
    body.append(facts([(name, str(n)) for name, n in figures.filter_changes])
                if figures.filter_changes is not None else text(NO_DATA, subtle=True))
    body.append(_section("Acceptable use agreements (this year)"))
    if figures.aup is None:
        body.append(text(NO_DATA, subtle=True))
    else:
        body.append(facts([(a.audience, f"{a.acknowledged} of {a.expected} ({a.percent}%)") for a in figures.aup]
                          or [("Everyone", "nobody owes one")]))
    if figures.reviews_completed is not None:
        body.append(_section("Reviews completed"))
        body.append(facts([(name, str(n)) for name, n in figures.reviews_completed] or [("None", "-")]))
    body.append(_section("Reviews due in the next 30 days"))
    if figures.reviews_due:
        body.append(facts([(r.label, f"{r.due_on:%-d %b %Y}" + (" (overdue)" if r.days_left < 0 else ""))
                           for r in figures.reviews_due]))
    else:
        body.append(text("None.", subtle=True))
    body.append(text("Counts only: names and case details stay in each case record.", subtle=True))
    result = card(body, fallback_text=f"{figures.title}: {_summary(figures)}")
    if len(json.dumps(result).encode()) > MAX_CARD_BYTES:  # never in practice: every list above is bounded
        result = card(body[:3], fallback_text=figures.title)
    return result


def build_governors_card(figures: Figures) -> dict[str, Any]:
    result = build_digest_card(figures)
    result["body"].append(text("Type `governors report csv` or `governors report markdown` for a copy to share.",
                               subtle=True))
    return result
