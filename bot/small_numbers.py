"""Small-number suppression for figures sent to a channel or a group.

A count from 1 to threshold - 1 could point to one child or one adult, so it is shown as "fewer than N"; 0 is shown.
Totals: the same incidents are broken down several ways (by group, severity, status), so a total is always known to
the reader, and one hidden cell in a breakdown could be worked out by subtraction. The rule, kept simple: in each
breakdown, when anything is hidden, the next smallest counts are hidden too ("not shown") until at least two are
hidden and the hidden ones add up to at least the threshold. Charts cannot say "fewer than N", so they leave hidden
values out and a note under the chart says which.
"""

from __future__ import annotations

from dataclasses import dataclass

NOT_SHOWN = "not shown"


@dataclass(frozen=True)
class Cell:
    """One labelled count as shown: `value` is None when hidden, `text` is what a reader sees."""

    label: str
    value: int | None
    text: str


def fewer_than(threshold: int) -> str:
    return f"fewer than {threshold}"


def is_small(n: int, threshold: int) -> bool:
    return 0 < n < threshold


def shown(n: int, threshold: int) -> str:
    """A lone count (no breakdown to protect) as a reader may see it."""
    return fewer_than(threshold) if is_small(n, threshold) else str(n)


def protect(rows: list[tuple[str, int]], threshold: int) -> list[Cell]:
    """A breakdown whose total is known elsewhere: small counts and enough others hidden that none can be derived."""
    hidden = {i for i, (_, n) in enumerate(rows) if is_small(n, threshold)}
    if hidden:
        others = sorted((n, i) for i, (_, n) in enumerate(rows) if n and i not in hidden)
        while others and (len(hidden) < 2 or sum(rows[i][1] for i in hidden) < threshold):
            hidden.add(others.pop(0)[1])
    return [
        Cell(label, None, fewer_than(threshold) if is_small(n, threshold) else NOT_SHOWN)
        if i in hidden
        else Cell(label, n, str(n))
        for i, (label, n) in enumerate(rows)
    ]


def each(rows: list[tuple[str, int]], threshold: int) -> list[Cell]:
    """Counts that do not add up to a shown total (e.g. weeks of a trend): each is hidden on its own merits."""
    return [
        Cell(label, None, fewer_than(threshold)) if is_small(n, threshold) else Cell(label, n, str(n))
        for label, n in rows
    ]


def note(threshold: int) -> str:
    """The rule in one sentence, for the foot of every card and export that applies it."""
    return (
        f'Counts from 1 to {threshold - 1} show as "{fewer_than(threshold)}". Where a list hides one, the '
        f'next smallest is "{NOT_SHOWN}" too, so no total can reveal it; charts leave hidden values out.'
    )
