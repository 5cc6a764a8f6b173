"""Child record cards: linking a case to a child (or a member of staff), search results, and a child's file."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from bot.cards.common import card, execute, heading, text, typed, typed_facts
from bot.case_record import ChildFile, ChronologyEntry
from bot.child_service import LinkView
from bot.children import MAX_MIS_ID, MAX_NAME, MAX_YEAR_GROUP, ChildMatch

FIND_VERB = "child.find"
SEARCH_VERB = "child.search"
LINK_VERB = "child.link"
CREATE_VERB = "child.create"
UNLINK_VERB = "child.unlink"
LINK_STAFF_VERB = "child.link_staff"
VIEW_VERB = "child.view"
CASE_VERB = "incident.view"
PAGE_SIZE = 15  # chronology entries per page of a child's file
MAX_ENTRY_CHARS = 1000  # per entry on a card; the case card and the export hold the full text
MAX_CASES_SHOWN = 10


@dataclass(frozen=True)
class SearchView:
    query: str
    matches: list[ChildMatch] = field(default_factory=list)
    directory_failed: bool = False


@dataclass(frozen=True)
class ChildFileView:
    file: ChildFile
    timezone: Any
    page: int | None = None  # None: the latest entries


def _date(day: dt.date | None) -> str | None:
    return f"{day.day} {day:%b %Y}" if day else None


def _local(when: dt.datetime, timezone: Any) -> str:
    return when.astimezone(timezone).strftime("%a %d %b %Y, %H:%M")


def _about(match: ChildMatch) -> str:
    """Year group, date of birth and classes: what tells two children of the same name apart."""
    parts = [
        match.year_group,
        f"born {_date(match.date_of_birth)}" if match.date_of_birth else None,
        ", ".join(match.classes) or None,
    ]
    return " · ".join(p for p in parts if p) or "No other details"


def _action_set(*actions: dict[str, Any]) -> dict[str, Any]:
    return {"type": "ActionSet", "actions": list(actions)}


def _match_block(match: ChildMatch, action: dict[str, Any]) -> dict[str, Any]:
    source = "Record already here" if match.is_record else "From the school's pupil list"
    return {
        "type": "Container",
        "separator": True,
        "items": [
            typed(match.name, weight="Bolder"),
            typed(_about(match), subtle=True, spacing="None"),
            text(source, subtle=True, spacing="None"),
            _action_set(action),
        ],
    }


def _input(
    input_id: str,
    label: str,
    *,
    max_length: int,
    value: str = "",
    required: bool = False,
    placeholder: str | None = None,
) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "Input.Text", "id": input_id, "label": label, "maxLength": max_length}
    if value:
        block["value"] = value
    if placeholder:
        block["placeholder"] = placeholder
    if required:
        block.update(isRequired=True, errorMessage="Please fill this in.")
    return block


def _new_record_form(case_token: str) -> dict[str, Any]:
    inputs = [
        _input("name", "Child's full name", max_length=MAX_NAME, required=True),
        _input("year_group", "Year group (optional)", max_length=MAX_YEAR_GROUP, placeholder="For example: Year 4"),
        {"type": "Input.Date", "id": "date_of_birth", "label": "Date of birth (optional)"},
        _input("upn", "UPN (optional)", max_length=13, placeholder="A letter and 12 digits"),
        _input("mis_id", "MIS id (optional)", max_length=MAX_MIS_ID),
    ]
    return {
        "type": "Action.ShowCard",
        "title": "New child record",
        "card": {
            "type": "AdaptiveCard",
            "body": inputs,
            "actions": [execute("Create and link", CREATE_VERB, {"token": case_token}, style="positive")],
        },
    }


def build_child_link_card(view: LinkView) -> dict[str, Any]:
    """Who a case is about: the children linked, a search, and a form for a child with no record yet."""
    token = view.case_token
    body: list[dict[str, Any]] = []
    if view.notice:
        body.append(typed(view.notice, weight="Bolder"))
    body.extend(text(problem, color="Attention", weight="Bolder") for problem in view.problems)
    body.append(heading(f"Who is {view.reference} about?"))
    if view.may_link_children:
        if view.children:
            body.append(text("**Linked children**", spacing="Medium"))
            for child in view.children:
                body.append(
                    {
                        "type": "Container",
                        "items": [
                            typed(child.name + (f" ({child.year_group})" if child.year_group else "")),
                            _action_set(
                                execute("Open file", VIEW_VERB, {"child": child.token}),
                                execute("Unlink", UNLINK_VERB, {"token": token, "child": child.token}),
                            ),
                        ],
                    }
                )
        else:
            body.append(text("No child is linked to this case yet.", subtle=True))
    if view.may_link_staff:
        body.append(typed(view.staff_member or "Not named yet", label="Member of staff", spacing="Medium"))
    what = (
        "a child or a member of staff"
        if view.may_link_children and view.may_link_staff
        else ("a child" if view.may_link_children else "the member of staff")
    )
    body.append(
        _input(
            "query",
            f"Search for {what} by name",
            max_length=80,
            value=view.query,
            placeholder="For example: Jamie Smith",
        )
    )
    body.append(_action_set(execute("Search", SEARCH_VERB, {"token": token})))
    if view.directory_failed:
        body.append(
            text(
                "The school's pupil list did not answer just now, so only records already here are "
                "shown. Try again in a minute, or add the child yourself.",
                color="Warning",
            )
        )
    for match in view.matches:
        choice = {"child": match.token} if match.is_record else {"pupil": match.pupil_id}
        body.append(_match_block(match, execute("Link", LINK_VERB, {"token": token, **choice})))
    for person in view.staff_matches:
        body.append(
            {
                "type": "Container",
                "separator": True,
                "items": [
                    typed(person.name, weight="Bolder"),
                    text("Member of staff", subtle=True, spacing="None"),
                    _action_set(
                        execute("Name on this case", LINK_STAFF_VERB, {"token": token, "person": person.person_id})
                    ),
                ],
            }
        )
    if view.query and not view.matches and not view.staff_matches:
        body.append(
            text("Nobody found with that name. Check the spelling, or add a new child record below.", subtle=True)
        )
    actions = [_new_record_form(token)] if view.may_link_children else []
    actions.append(execute("Back to the case", CASE_VERB, {"token": token}))
    return card(body, actions, fallback_text=f"Who is {view.reference} about?")


def build_child_search_card(view: SearchView) -> dict[str, Any]:
    """The `child NAME` command's answer: records open the child's file; pupils without one can get one."""
    body: list[dict[str, Any]] = [heading("Children found"), typed(view.query, label="Searched for")]
    if view.directory_failed:
        body.append(
            text(
                "The school's pupil list did not answer just now, so only records already here are shown.",
                color="Warning",
            )
        )
    for match in view.matches:
        action = (
            execute("Open file", VIEW_VERB, {"child": match.token})
            if match.is_record
            else execute("Create record", CREATE_VERB, {"pupil": match.pupil_id})
        )
        body.append(_match_block(match, action))
    if not view.matches:
        body.append(
            text(
                "No child found with that name. Check the spelling. To add a child, open a case and "
                "choose Link a child.",
                subtle=True,
            )
        )
    return card(body, fallback_text="Children found")


def _entry_block(entry: ChronologyEntry, timezone: Any) -> dict[str, Any]:
    when = _local(entry.happened_at, timezone)
    if abs((entry.recorded_at - entry.happened_at).total_seconds()) >= 60:
        when += f" (recorded {_local(entry.recorded_at, timezone)})"
    words = entry.text if len(entry.text) <= MAX_ENTRY_CHARS else entry.text[: MAX_ENTRY_CHARS - 1] + "…"
    return {
        "type": "Container",
        "spacing": "Small",
        "items": [
            text(f"{entry.reference} · {when}", subtle=True, size="Small"),
            typed(words, spacing="None"),  # partly typed by people: shown as text, never Markdown
        ],
    }


def pages(file: ChildFile) -> int:
    return max(1, -(-len(file.entries) // PAGE_SIZE))


def build_child_file_card(view: ChildFileView) -> dict[str, Any]:
    """One child's details and every entry of the cases the reader may see, in the order things happened."""
    file, child = view.file, view.file.child
    body: list[dict[str, Any]] = [typed(child.name, weight="Bolder", size="Medium")]
    details = [
        ("Year group", child.year_group),
        ("Date of birth", _date(child.date_of_birth)),
        ("UPN", child.upn),
        ("MIS id", child.mis_id),
    ]
    body.append(typed_facts([(label, value) for label, value in details if value] or [("Details", "None recorded")]))
    body.append(text("**Linked cases**", spacing="Medium"))
    for record in file.cases[:MAX_CASES_SHOWN]:
        state = "open" if record.is_open else "closed"
        body.append(
            {
                "type": "ColumnSet",
                "columns": [
                    {
                        "type": "Column",
                        "width": "stretch",
                        "verticalContentAlignment": "Center",
                        "items": [text(f"{record.reference}: {record.category} ({state})")],
                    },
                    {
                        "type": "Column",
                        "width": "auto",
                        "items": [_action_set(execute("Open case", CASE_VERB, {"token": record.token}))],
                    },
                ],
            }
        )
    if len(file.cases) > MAX_CASES_SHOWN:
        body.append(text(f"And {len(file.cases) - MAX_CASES_SHOWN} more; the export has them all.", subtle=True))
    if not file.cases:
        body.append(text("None that you can see.", subtle=True))
    if file.hidden_cases:
        plural = "case is" if file.hidden_cases == 1 else "cases are"
        body.append(
            text(
                f"{file.hidden_cases} more linked {plural} handled by other case managers and not shown to you.",
                subtle=True,
            )
        )
    total = pages(file)
    page = min(max(view.page or total, 1), total)
    shown = file.entries[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    body.append(text("**Chronology**", spacing="Medium"))
    if total > 1:
        body.append(text(f"Page {page} of {total}, earliest first.", subtle=True, spacing="None"))
    body.extend(_entry_block(entry, view.timezone) for entry in shown)
    if not shown:
        body.append(text("Nothing recorded yet.", subtle=True))
    actions = []
    if page > 1:
        actions.append(execute("Earlier entries", VIEW_VERB, {"child": child.token, "page": page - 1}))
    if page < total:
        actions.append(execute("Later entries", VIEW_VERB, {"child": child.token, "page": page + 1}))
    return card(body, actions, fallback_text="A child's file")
