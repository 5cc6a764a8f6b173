"""Examples in prompts that fit the school's phase: a primary school has no Year 8, a secondary school no Reception."""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import Phase


@dataclass(frozen=True)
class Examples:
    pupil: str  # who is involved, as initials and a year group
    years: str  # year groups a filter change could be for, as the reader would type them
    year_range: str


EXAMPLES = {
    Phase.PRIMARY: Examples(pupil="JS, Year 5", years="`Year 5, Year 6`, `Reception`", year_range="`3-4`"),
    Phase.SECONDARY: Examples(pupil="JS, Year 9", years="`Year 9, Year 10`", year_range="`7-9`"),
}


def examples(phase: Phase) -> Examples:
    return EXAMPLES[phase]
