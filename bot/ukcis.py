"""The UKCIS initial review for nudes and semi-nudes: the five questions that decide an immediate referral, the
decision about telling parents and why, and the confirmation that nobody viewed the images. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

UKCIS_CATEGORIES = frozenset({"nudes_sharing"})
# Where a "yes" is referred at once, as the review form offers it (keys as the referrals feature knows them).
REFERRAL_AGENCIES = {"police": "the police", "social_care": "children's social care"}
PREFIX = "ukcis_"  # card input ids are unique on the whole case card
MAX_REASON = 2000


@dataclass(frozen=True)
class UkcisReview:
    answers: tuple[bool, ...]  # one per criterion, in the policy's order: True is "yes"
    parents_told: bool
    parents_reason: str
    no_image_viewed: bool
    agency: str | None = None  # where it is referred, when any answer is "yes"

    @property
    def needs_referral(self) -> bool:
        return any(self.answers)

    def stored(self) -> dict[str, Any]:
        """What is kept in the review's row: answers only (the typed reason goes on the encrypted chronology)."""
        return {
            "answers": list(self.answers),
            "parents_told": self.parents_told,
            "no_image_viewed": self.no_image_viewed,
            "agency": self.agency,
        }


def applies(category: str) -> bool:
    return category in UKCIS_CATEGORIES


def question_id(index: int) -> str:
    return f"{PREFIX}q{index + 1}"


def parse(data: dict[str, Any], criteria: list[str]) -> tuple[UkcisReview | None, str | None]:
    """The review from the card's inputs, or the one thing the reviewer needs to fix."""
    answers: list[bool] = []
    for index in range(len(criteria)):
        value = _choice(data.get(question_id(index)))
        if value is None:
            return None, f"Please answer question {index + 1} with Yes or No."
        answers.append(value)
    parents = _choice(data.get(f"{PREFIX}parents"))
    if parents is None:
        return None, "Please say whether parents or carers will be told."
    reason = _text(data.get(f"{PREFIX}parents_reason"))
    if not reason:
        return None, "Please give the reason for the decision about telling parents or carers."
    if _text(data.get(f"{PREFIX}no_image_viewed")).lower() != "true":
        return None, "Please confirm that nobody viewed the images for this review."
    agency = _text(data.get(f"{PREFIX}agency")) or None
    if any(answers) and agency not in REFERRAL_AGENCIES:
        return None, (
            'A "yes" means an immediate referral. Please choose the police or children\'s social care for it.'
        )
    return UkcisReview(tuple(answers), parents, reason[:MAX_REASON], True, agency if any(answers) else None), None


def chronology_text(review: UkcisReview) -> str:
    """The review as the case's chronology shows it (the reason was typed: shown as text, never Markdown)."""
    yes = [str(i + 1) for i, answer in enumerate(review.answers) if answer]
    found = (
        f"yes to question {', '.join(yes)}: referred at once to {REFERRAL_AGENCIES[review.agency]}"
        if yes and review.agency
        else "no to all five questions: handled in school"
    )
    parents = "Parents or carers will be told" if review.parents_told else "Parents or carers will not be told"
    return f"{found.capitalize()}. {parents}: {review.parents_reason}. No image was viewed."


def outcome_text(stored: dict[str, Any]) -> str:
    """One line for the case card once the review is done."""
    answers = stored.get("answers") or []
    yes = [str(i + 1) for i, answer in enumerate(answers) if answer]
    agency = REFERRAL_AGENCIES.get(stored.get("agency") or "", "another agency")
    found = (
        f"Immediate referral to {agency} (yes to question {', '.join(yes)})."
        if yes
        else "No immediate referral: no to all five questions."
    )
    parents = (
        "Parents or carers will be told."
        if stored.get("parents_told")
        else "Parents or carers will not be told (the reason is on the chronology)."
    )
    return f"{found} {parents} No image was viewed."


def _choice(value: Any) -> bool | None:
    text = _text(value).lower()
    return {"yes": True, "no": False}.get(text)


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""
