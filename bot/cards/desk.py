"""The caseload card: a DSL's open cases, filtered and paged, each opening its case card."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bot.cards.common import card, execute, heading, submit, text, typed
from bot.desk import VIEWS, CasePage, CaseRow
from bot.incidents import SEVERITY_LABELS, age_text

CASES_VERB = "desk.cases"
OPEN_VERB = "incident.view"


def _row(row: CaseRow, now: dt.datetime) -> dict[str, Any]:
    flags = []
    if row.undelivered:
        flags.append("Alert not delivered")
    if row.overdue:
        flags.append("Overdue")
    if row.urgent:
        flags.append("Urgent")
    items: list[dict[str, Any]] = [
        text(f"**{row.reference}** {row.category}", spacing="None"),
        text(
            f"{SEVERITY_LABELS.get(row.severity, row.severity)} · {row.status} · reported "
            f"{age_text(row.reported_at, now)} ago",
            subtle=True,
            spacing="None",
        ),
        typed(row.owner or "Nobody yet", label="Owner", spacing="None"),  # a directory name: shown as text
    ]
    if flags:
        items.append(text(" · ".join(flags), color="Attention", weight="Bolder", spacing="None"))
    return {
        "type": "ColumnSet",
        "separator": True,
        "spacing": "Medium",
        "columns": [
            {"type": "Column", "width": "stretch", "items": items},
            # A Submit answers with a new message, so the list stays in the chat while the case opens below it.
            {
                "type": "Column",
                "width": "auto",
                "verticalContentAlignment": "Center",
                "items": [{"type": "ActionSet", "actions": [submit("Open", {"verb": OPEN_VERB, "token": row.token})]}],
            },
        ],
    }


def build_caseload_card(page: CasePage, now: dt.datetime) -> dict[str, Any]:
    chosen = page.filter
    view_label = VIEWS[chosen.view]
    group_label = next((label for key, label in page.groups if key == chosen.group), None)
    title = f"Cases: {view_label.lower()}" + (f", {group_label}" if group_label else "")
    body: list[dict[str, Any]] = [heading(title)]
    if page.total == 0:
        body.append(text("No open cases match this. Change the filter to see others.", spacing="Small"))
    else:
        body.append(
            text(
                f"{page.total} case{'s' if page.total != 1 else ''}, most pressing first "
                f"(page {chosen.page} of {page.pages}).",
                subtle=True,
                spacing="Small",
            )
        )
        body.extend(_row(row, now) for row in page.rows)
    body.append(
        {
            "type": "ColumnSet",
            "spacing": "Large",
            "columns": [
                {
                    "type": "Column",
                    "width": "stretch",
                    "items": [
                        {
                            "type": "Input.ChoiceSet",
                            "id": "view",
                            "label": "Show",
                            "value": chosen.view,
                            "choices": [{"title": label, "value": key} for key, label in VIEWS.items()],
                        }
                    ],
                },
                {
                    "type": "Column",
                    "width": "stretch",
                    "items": [
                        {
                            "type": "Input.ChoiceSet",
                            "id": "group",
                            "label": "Type",
                            "value": chosen.group or "all",
                            "choices": [{"title": "Every type", "value": "all"}]
                            + [{"title": label, "value": key} for key, label in page.groups],
                        }
                    ],
                },
            ],
        }
    )
    actions = [execute("Apply filter", CASES_VERB, {"page": 1})]
    if chosen.page > 1:
        actions.append(
            execute(
                "Previous page",
                CASES_VERB,
                {"view": chosen.view, "group": chosen.group or "all", "page": chosen.page - 1},
                associated_inputs="none",
            )
        )
    if chosen.page < page.pages:
        actions.append(
            execute(
                "Next page",
                CASES_VERB,
                {"view": chosen.view, "group": chosen.group or "all", "page": chosen.page + 1},
                associated_inputs="none",
            )
        )
    return card(body, actions, fallback_text=title)
