"""Cards for the termly filtering check: the form, the record, and the alert when a test got through."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bot.cards.common import card, execute, heading, text, typed, typed_facts
from bot.filtering_check import BLOCKED, NOT_BLOCKED, NOT_TRIED, OUTCOMES, RECORD_VERB, CheckForm, FilteringCheck


def _when(at: dt.datetime, tz: dt.tzinfo) -> str:
    return f"{at.astimezone(tz):%-d %B %Y at %H:%M}"


def build_filtering_check_card(view: CheckForm, tz: dt.tzinfo) -> dict[str, Any]:
    """Each test as a choice, the device and network, and notes; one token so one card records one check."""
    body: list[dict[str, Any]] = [
        heading("Termly filtering check"),
        text(
            "Use a pupil device on the pupils' network. Try each test below and record what happened. Never open "
            "anything a test lets through; stop and record it as not blocked.",
            spacing="Small",
        ),
    ]
    if view.last is not None:
        body.append(
            text(
                f"Last check: {_when(view.last.run_at, tz)}. {view.last.summary()}.",
                subtle=True,
                spacing="Small",
            )
        )
    if view.problems:
        body.append(text("Please check the card:", weight="Bolder", color="Attention", spacing="Medium"))
        body.extend(text(f"- {problem}", color="Attention", spacing="None") for problem in view.problems)
    for test in view.tests:
        input_id = f"test_{test.key}"
        body.append(text(test.label, weight="Bolder", spacing="Medium"))
        body.append(text(test.how, subtle=True, spacing="None"))
        body.append(
            {
                "type": "Input.ChoiceSet",
                "id": input_id,
                "style": "expanded",
                "isRequired": True,
                "errorMessage": f"Choose a result for {test.label}.",
                "label": "Result",
                "value": view.values.get(input_id, ""),
                "choices": [{"title": OUTCOMES[o], "value": o} for o in (BLOCKED, NOT_BLOCKED, NOT_TRIED)],
            }
        )
    body += [
        {
            "type": "Input.Text",
            "id": "device",
            "label": "Device and network",
            "isRequired": True,
            "errorMessage": "Say which device and network you tested on.",
            "maxLength": 200,
            "placeholder": "For example: Year 5 laptop 12 on pupil Wi-Fi",
            "value": view.values.get("device", ""),
        },
        {
            "type": "Input.Text",
            "id": "notes",
            "label": "Notes (optional)",
            "isMultiline": True,
            "maxLength": 2000,
            "value": view.values.get("notes", ""),
        },
    ]
    data = {"form": view.token}
    action = execute("Record the check", RECORD_VERB, data, style="positive", associated_inputs="auto")
    return card(body, [action], fallback_text="Termly filtering check")


def build_filtering_check_recorded_card(
    check: FilteringCheck, tz: dt.tzinfo, review_done: bool, told: int
) -> dict[str, Any]:
    """The record as it was kept; says only what has happened."""
    colour = "Attention" if check.failures else "Good"
    body: list[dict[str, Any]] = [
        heading("Filtering check recorded"),
        text(check.summary() + ".", weight="Bolder", color=colour, spacing="Small"),
        typed_facts(
            [("When", _when(check.run_at, tz)), ("By", check.run_by_name), ("Device and network", check.device)]
        ),
        typed_facts([(r.label, OUTCOMES[r.outcome]) for r in check.results]),
    ]
    if check.notes:
        body.append(typed(check.notes, label="Notes"))
    if check.failures:
        body.append(
            text(
                "Next: the technicians fix the filter for the tests that got through, then someone runs "
                "`filter check` again."
                + (" The online-safety lead, DSL and technicians are being sent this now." if told else ""),
                spacing="Medium",
            )
        )
    elif not check.complete:
        body.append(
            text("The termly check stays open until a check with every test tried is recorded.", spacing="Medium")
        )
    elif review_done:
        body.append(
            text("The termly filtering check is done; the next one is in the review calendar.", spacing="Medium")
        )
    return card(body, fallback_text="Filtering check recorded")


def build_filtering_check_failed_card(check: FilteringCheck, tz: dt.tzinfo) -> dict[str, Any]:
    """To the online-safety lead, DSL and technicians at once: the filter let something through."""
    failed = [r.label for r in check.results if r.outcome == NOT_BLOCKED]
    return card(
        [
            heading("The filter let something through"),
            text(
                f"The filtering check on {_when(check.run_at, tz)} found {len(failed)} test"
                f"{'s' if len(failed) != 1 else ''} not blocked.",
                weight="Bolder",
                color="Attention",
                spacing="Small",
            ),
            typed_facts(
                [
                    ("Not blocked", ", ".join(failed)),
                    ("Checked by", check.run_by_name),
                    ("Device and network", check.device),
                ]
            ),
            text(
                "Technicians: fix the filter for these today and tell the online-safety lead. DSL: consider whether "
                "any pupil may have been exposed. Then run `filter check` again.",
                spacing="Medium",
            ),
        ],
        fallback_text="The filter let something through",
    )


class FilteringCheckCards:
    """The card builders the service calls, by name."""

    def form(self, view: CheckForm, tz: dt.tzinfo) -> dict[str, Any]:
        return build_filtering_check_card(view, tz)

    def recorded(self, check: FilteringCheck, tz: dt.tzinfo, review_done: bool, told: int) -> dict[str, Any]:
        return build_filtering_check_recorded_card(check, tz, review_done, told)

    def failing(self, check: FilteringCheck, tz: dt.tzinfo) -> dict[str, Any]:
        return build_filtering_check_failed_card(check, tz)


__all__ = [
    "NOT_TRIED",
    "FilteringCheckCards",
    "build_filtering_check_card",
    "build_filtering_check_failed_card",
    "build_filtering_check_recorded_card",
]
