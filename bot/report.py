"""The report's answers, declared once.

Each answer is a field of ReportDraft, and its metadata (a Spec) says how it is asked: its label, its line on the
summary, its kind of input, which card asks it, whether it is required and how long it may be. The chat's two cards,
the typed questions, the summary, the "Report a concern" form on a Teams message and the domain input
(IncidentService's ReportInput) are all built from these fields, and every answer is checked by `check` here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from bot.incident_service import ReportInput
from bot.incidents import LOCATIONS, MAX_ANSWER_CHARS, SUBJECT_KINDS
from bot.policy import Category, Policy

CHOICE, SHORT_TEXT, LONG_TEXT = "choice", "text", "long_text"
ABOUT, DETAILS = 1, 2  # the card that asks it: 1 who, danger and what; 2 that category's details
DANGER_YES, DANGER_NO = "yes", "no"
DANGER_CHOICES = {DANGER_YES: "Yes, someone is in danger now", DANGER_NO: "No"}
MAX_WHEN_CHARS = 200
NAMED_KINDS = ("staff", "staff_low_level")  # the reporter may name the member of staff from the directory
URL = re.compile(r"(https?://|www\.)\S+", re.IGNORECASE)
NO_LINKS = "Please do not add links to the images. Say only which device they are on and where that device is now."
IMAGES_WARNING = (
    "Important: never view, copy, forward, print, screenshot or save the images, and do not send them "
    "to me or anyone else. Secure the device and leave it as it is."
)


@dataclass(frozen=True)
class Spec:
    key: str
    label: str  # the card's label and the typed question
    summary: str  # its line on the summary
    kind: str  # CHOICE, SHORT_TEXT or LONG_TEXT
    card: int  # ABOUT or DETAILS
    problem: str | None  # what to say when it is missing; None when it may be left blank
    max_chars: int = MAX_ANSWER_CHARS
    placeholder: str | None = None

    @property
    def required(self) -> bool:
        return self.problem is not None


def _answer(
    label: str,
    summary: str,
    kind: str,
    card: int,
    problem: str | None,
    max_chars: int = MAX_ANSWER_CHARS,
    placeholder: str | None = None,
) -> Any:
    """A ReportDraft field, unanswered (None) until the reporter answers it."""
    return field(default=None, metadata={"spec": (label, summary, kind, card, problem, max_chars, placeholder)})


@dataclass
class ReportDraft:
    """The reporter's answers so far; None is not answered yet ("" is an optional answer left blank)."""

    subject_kind: str | None = _answer(
        "Who is the concern about?", "About", CHOICE, ABOUT, "Please choose who the concern is about."
    )
    immediate_danger: bool | None = _answer(
        "Is anyone in immediate danger right now?",
        "Danger now",
        CHOICE,
        ABOUT,
        "Please say whether anyone is in danger now.",
    )
    category: str | None = _answer(
        "What kind of concern is it? Pick the closest; it does not need to be exact.",
        "What",
        CHOICE,
        ABOUT,
        "Please choose the kind of concern from the list.",
    )
    location: str | None = _answer("Where did it happen?", "Where", CHOICE, DETAILS, "Please choose where it happened.")
    occurred: str | None = _answer(
        "When did it happen?",
        "When",
        SHORT_TEXT,
        DETAILS,
        "Please say when it happened.",
        MAX_WHEN_CHARS,
        "For example today at lunch, or last night",
    )
    subjects: str | None = _answer(
        "Who is involved?",
        "Who is involved",
        SHORT_TEXT,
        DETAILS,
        'Please say who is involved, or write "not known".',
        placeholder="Initials and year group are enough",
    )
    narrative: str | None = _answer(
        "What happened?",
        "What happened",
        LONG_TEXT,
        DETAILS,
        "Please say what happened.",
        placeholder="Your own words, and the child's words where you have them. Facts are more useful than opinions.",
    )
    evidence: str | None = _answer(
        "What evidence is there, and where is it now?",
        "Evidence and device",
        LONG_TEXT,
        DETAILS,
        None,
        placeholder="Any links, which device it is on and where that device is. Leave blank if there is none.",
    )
    actions_taken: str | None = _answer(
        "What have you done so far?",
        "Already done",
        SHORT_TEXT,
        DETAILS,
        'Please say what you have done so far, or write "nothing yet".',
        placeholder="Nothing yet",
    )
    subject_person: str | None = None  # the member of staff's directory id; "" when not named or not staff
    subject_name: str | None = None


FIELDS: tuple[Spec, ...] = tuple(Spec(f.name, *f.metadata["spec"]) for f in fields(ReportDraft) if "spec" in f.metadata)
ABOUT_FIELDS = tuple(s for s in FIELDS if s.card == ABOUT)
DETAIL_FIELDS = tuple(s for s in FIELDS if s.card == DETAILS)
SPEC = {s.key: s for s in FIELDS}


@dataclass(frozen=True)
class Checked:
    """Every answer that passed its check (trimmed; "" for an optional one left blank), and the problems."""

    values: dict[str, str]
    problems: list[str]


def category_title(category: Category, group_label: str) -> str:
    """The whole of it, never cut short: which group, which category, and what it means."""
    return f"{group_label}: {category.label}. {category.description}"


def choices(policy: Policy) -> dict[str, list[tuple[str, str]]]:
    """The (value, title) options of every choice answer."""
    groups = {g.key: g.label for g in policy.category_groups}
    return {
        "subject_kind": list(SUBJECT_KINDS.items()),
        "immediate_danger": list(DANGER_CHOICES.items()),
        "category": [(c.key, category_title(c, groups[c.group])) for c in policy.categories],
        "location": list(LOCATIONS.items()),
    }


def check(data: Mapping[str, Any], specs: Sequence[Spec], policy: Policy, category: str | None = None) -> Checked:
    """The answers a card (or a client posing as one) sent, checked on the server whatever the card checked.

    `category` is the one already chosen, when these answers do not include it: images must not be linked to.
    """
    options = choices(policy)
    values: dict[str, str] = {}
    problems: list[str] = []
    for spec in specs:
        raw = data.get(spec.key)
        value = raw.strip() if isinstance(raw, str) else ""
        if spec.kind == CHOICE:
            if value in dict(options[spec.key]):
                values[spec.key] = value
            elif spec.problem:
                problems.append(spec.problem)
        elif not value:
            if spec.problem:
                problems.append(spec.problem)
            else:
                values[spec.key] = ""
        elif len(value) > spec.max_chars:
            problems.append(
                f"{spec.summary} is a little long. Please keep it under {spec.max_chars} characters; "
                "the DSL will ask for more if they need it."
            )
        else:
            values[spec.key] = value
    chosen = values.get("category") or category
    if chosen and policy.category(chosen).no_imagery and URL.search(values.get("evidence", "")):
        problems.append(NO_LINKS)
        values.pop("evidence", None)
    return Checked(values, problems)


def fill(draft: ReportDraft, values: Mapping[str, str]) -> None:
    """Store checked answers in the draft."""
    for key, value in values.items():
        if key == "immediate_danger":
            draft.immediate_danger = value == DANGER_YES
        elif key in SPEC:
            setattr(draft, key, value)


def form_values(draft: ReportDraft) -> dict[str, str]:
    """The draft as a card's input values, to show a card again with what was already answered."""
    shown: dict[str, str] = {}
    for spec in FIELDS:
        value = getattr(draft, spec.key)
        if isinstance(value, bool):
            shown[spec.key] = DANGER_YES if value else DANGER_NO
        elif isinstance(value, str) and value:
            shown[spec.key] = value
    return shown


def above_threshold(draft: ReportDraft, policy: Policy) -> bool:
    """A low-level concern is below the harm threshold: illegal material or danger now makes it an allegation.
    True when the draft was changed to one."""
    if draft.subject_kind != "staff_low_level":
        return False
    illegal = draft.category is not None and policy.category(draft.category).illegal
    if not (illegal or draft.immediate_danger):
        return False
    draft.subject_kind = "staff"
    return True


def to_input(draft: ReportDraft) -> ReportInput:
    """The domain input: the answers, with a blank optional answer as None."""
    if draft.subject_kind is None or draft.category is None:
        raise ValueError("a report needs who it is about and its category")
    return ReportInput(
        subject_kind=draft.subject_kind,
        category=draft.category,
        immediate_danger=bool(draft.immediate_danger),
        location=draft.location,
        occurred=draft.occurred or None,
        subjects=draft.subjects or None,
        narrative=draft.narrative or None,
        evidence=draft.evidence or None,
        actions_taken=draft.actions_taken or None,
        subject_person_id=draft.subject_person or None,
    )


@dataclass(frozen=True)
class SummaryRow:
    label: str
    value: str
    typed: bool  # the reporter's own words: shown exactly as typed, never as Markdown


def summary_rows(draft: ReportDraft, policy: Policy) -> list[SummaryRow]:
    """The answers as the reporter checks them, in the schema's order."""
    rows = []
    for spec in FIELDS:
        value = getattr(draft, spec.key)
        if spec.key == "subject_kind":
            shown = SUBJECT_KINDS.get(value or "", "Not given")
            if draft.subject_person and draft.subject_name:
                shown += f" ({draft.subject_name})"
        elif spec.key == "immediate_danger":
            shown = "Yes" if value else "No"
        elif spec.key == "category" and value:
            category = policy.category(value)
            shown = f"{category.label} ({policy.group(category.group).label})"
        elif spec.key == "location":
            shown = LOCATIONS.get(value or "", "Not given")
        else:
            shown = value or "None given"
        rows.append(SummaryRow(spec.summary, shown, spec.kind != CHOICE))
    return rows
