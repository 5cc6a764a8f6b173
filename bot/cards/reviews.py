"""Cards for the review calendar: the list, the completion form, reminders and overdue notices."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from bot.cards.common import card, execute, facts, heading, submit, text, typed
from bot.reviews import COMPLETE_VERB, OPEN_VERB, ReviewView


def _action(
    title: str, verb: str, data: dict[str, Any], *, style: str | None = None, inputs: bool = False
) -> dict[str, Any]:
    """Action.Execute with an Action.Submit fallback carrying the verb, for clients without Universal Actions."""
    action = execute(title, verb, data, style=style, associated_inputs="auto" if inputs else None)
    action["fallback"] = submit(title, {"verb": verb, **data}, style=style)
    return action


def _when(view: ReviewView) -> str:
    due = f"{view.item.due_on:%-d %B %Y}"
    if not view.item.is_open:
        return f"was due {due}"
    if view.days_left < 0:
        days = -view.days_left
        return f"overdue by {days} day{'s' if days != 1 else ''} (due {due})"
    if view.days_left == 0:
        return f"due today ({due})"
    return f"due {due}, in {view.days_left} day{'s' if view.days_left != 1 else ''}"


def _upper_first(value: str) -> str:
    return value[:1].upper() + value[1:]


def _owner(view: ReviewView) -> str:
    return view.kind.owner_role.value.replace("_", " ")


def build_reviews_card(open_views: list[ReviewView], done: list[ReviewView], tz: ZoneInfo) -> dict[str, Any]:
    body: list[dict[str, Any]] = [heading("Review calendar")]
    if not open_views:
        body.append(text("There are no reviews in the calendar yet."))
    for view in open_views:
        container: dict[str, Any] = {
            "type": "Container",
            "separator": True,
            "style": "attention" if view.overdue else "default",
            "items": [
                text(view.kind.label, weight="Bolder"),
                text(f"{_upper_first(_when(view))}. Led by the {_owner(view)}.", subtle=True),
            ],
        }
        if view.can_complete:
            container["items"].append(
                {"type": "ActionSet", "actions": [_action("Mark as done", OPEN_VERB, {"review_id": view.item.id})]}
            )
        body.append(container)
    if done:
        body.append(text("Recently completed", weight="Bolder", spacing="Large"))
        body.append(
            facts(
                [(v.kind.label, f"{v.item.completed_at.astimezone(tz):%-d %b %Y}") for v in done if v.item.completed_at]
            )
        )
    return card(body, fallback_text="Review calendar")


def build_review_card(view: ReviewView, tz: ZoneInfo, *, problem: str | None = None) -> dict[str, Any]:
    """The completion form: the checklist, notes and the next due date."""
    body: list[dict[str, Any]] = [heading(view.kind.label), text(f"{_upper_first(_when(view))}.", subtle=True)]
    if problem:
        body.append(text(problem, color="Attention", weight="Bolder"))
    if view.kind.checklist:
        body.append(text("What this review covers:", weight="Bolder"))
        body.append(text("\n".join(f"- {point}" for point in view.kind.checklist)))
    if not view.can_complete:
        return card(body, fallback_text=view.kind.label)
    body += [
        {
            "type": "Input.Text",
            "id": "notes",
            "label": "What did the review find, and what will happen next?",
            "isMultiline": True,
            "maxLength": 2000,
            "isRequired": True,
            "errorMessage": "Please add a short note of the findings.",
        },
        {
            "type": "Input.Date",
            "id": "next_due",
            "label": "Next review due",
            "value": view.default_next_due.isoformat(),
        },
        text(f"By default the next one is due {view.kind.every_months} months after this one.", subtle=True),
    ]
    return card(
        body,
        [_action("Mark as done", COMPLETE_VERB, {"review_id": view.item.id}, style="positive", inputs=True)],
        fallback_text=f"Mark the {view.kind.label.lower()} as done",
    )


def build_review_done_card(view: ReviewView, next_due: dt.date, tz: ZoneInfo) -> dict[str, Any]:
    item = view.item
    done_at = item.completed_at.astimezone(tz) if item.completed_at else None
    body = [
        heading(f"{view.kind.label}: done"),
        facts([("Completed", f"{done_at:%-d %B %Y}" if done_at else "-"), ("Next due", f"{next_due:%-d %B %Y}")]),
        typed(item.completed_by or "-", label="By", spacing="None"),
        text("I will remind the right people 30, 7 and 1 days before the next one.", subtle=True),
    ]
    return card(body, fallback_text=f"{view.kind.label} recorded as done")


def build_reminder_card(view: ReviewView, tz: ZoneInfo) -> dict[str, Any]:
    days = view.days_left
    when = "tomorrow" if days == 1 else ("today" if days == 0 else f"in {days} days")
    body = [
        heading(f"Reminder: {view.kind.label} is due {when}"),
        text(
            f"It is due on {view.item.due_on:%A %-d %B %Y}. When it is done, record the findings here and I "
            "will set the next date."
        ),
    ]
    return card(
        body,
        [_action("Open the review", OPEN_VERB, {"review_id": view.item.id})],
        fallback_text=f"Reminder: {view.kind.label} is due {when}.",
    )


def build_overdue_card(view: ReviewView, tz: ZoneInfo) -> dict[str, Any]:
    late = max(-view.days_left, 1)
    body = [
        heading(f"Overdue: {view.kind.label}"),
        text(
            f"This review was due on {view.item.due_on:%-d %B %Y} and is {late} day{'s' if late != 1 else ''} "
            f"late. It is led by the {_owner(view)}. Please check it is under way; I will tell you again each "
            "week until it is recorded as done."
        ),
    ]
    return card(
        body,
        [_action("Open the review", OPEN_VERB, {"review_id": view.item.id})],
        fallback_text=f"Overdue: {view.kind.label}",
    )
