"""The termly filtering check (DfE filtering and monitoring standards): a recorded test that the filter works.

Decisions:
- A check is recorded from one card: each of the policy's tests as blocked, not blocked or not tried, the device and
  network it was run on, and notes. Who ran it and when are taken from the directory and the clock, never the card.
- A check in which every test was tried and blocked completes the open "Termly filtering check" review and opens the
  next one. Any other check is kept, but the review stays open (with its reminders) until a full, clean one.
- Any test that was not blocked means the filter is failing pupils now: the policy's alert roles (online-safety
  lead, DSL, technicians) are told at once, not at a quiet moment, and the person who ran it is told they were.
- One card records one check: the card carries a random token, so a double click or a redelivery finds the first.
- The governors' report shows each check of the term: its date, the role of who ran it and the result, no names.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from bot.actor import Actor, CardReply, Refused
from bot.people import ROLE_LABELS, Role
from bot.permissions import may
from bot.policy import FilterTest, Policy
from bot.protocols import Directory

RECORD_VERB = "filtering.check.record"
BLOCKED, NOT_BLOCKED, NOT_TRIED = "blocked", "not_blocked", "not_tried"
OUTCOMES = {BLOCKED: "Blocked", NOT_BLOCKED: "Not blocked", NOT_TRIED: "Not tried"}
MAX_DEVICE_CHARS, MAX_NOTES_CHARS = 200, 2000
_TOKEN = re.compile(r"^[0-9a-f]{32}$")
# The role named on the record and in the governors' report, most specific first.
_RUN_BY = (Role.TECHNICIAN, Role.ONLINE_SAFETY_LEAD, Role.DSL, Role.DEPUTY_DSL, Role.HEADTEACHER, Role.SLT)


@dataclass(frozen=True)
class TestResult:
    key: str
    label: str
    outcome: str


@dataclass(frozen=True)
class FilteringCheck:
    id: int
    school_id: str
    run_at: dt.datetime
    run_by_id: str
    run_by_name: str
    run_by_role: str  # a label such as "IT technician": the governors' report names no one
    device: str
    results: tuple[TestResult, ...]
    notes: str | None

    @property
    def failures(self) -> list[TestResult]:
        return [r for r in self.results if r.outcome == NOT_BLOCKED]

    @property
    def complete(self) -> bool:
        return all(r.outcome != NOT_TRIED for r in self.results)

    def summary(self) -> str:
        """The result in a few words, for the governors' report and the record."""
        failures, tried = self.failures, [r for r in self.results if r.outcome != NOT_TRIED]
        if failures:
            return f"{len(failures)} of {len(self.results)} not blocked: " + ", ".join(r.label for r in failures)
        if not self.complete:
            return f"{len(tried)} of {len(self.results)} tried, all blocked"
        return f"All {len(self.results)} tests blocked"


@dataclass(frozen=True)
class CheckForm:
    """What the check card shows: the tests, a fresh token, and the answers and problems when it comes back."""

    token: str
    tests: list[FilterTest]
    last: FilteringCheck | None
    values: dict[str, str]
    problems: list[str]


class FilteringCheckStore(Protocol):
    async def add(
        self,
        school_id: str,
        token: str,
        run_by_id: str,
        run_by_name: str,
        run_by_role: str,
        device: str,
        results: list[TestResult],
        notes: str | None,
    ) -> tuple[FilteringCheck, bool]:
        """The check, and False when this token was recorded before (nothing new was written)."""

    async def between(self, school_id: str, start: dt.datetime, end: dt.datetime) -> list[FilteringCheck]: ...

    async def latest(self, school_id: str) -> FilteringCheck | None: ...


class CheckCards(Protocol):
    def form(self, view: CheckForm, tz: dt.tzinfo) -> dict[str, Any]: ...

    def recorded(self, check: FilteringCheck, tz: dt.tzinfo, review_done: bool, told: int) -> dict[str, Any]: ...

    def failing(self, check: FilteringCheck, tz: dt.tzinfo) -> dict[str, Any]: ...


class ReviewCloser(Protocol):
    """The review calendar's part in this: complete the open check review inside the same unit of work."""

    async def close_open(self, uow: Any, actor: Actor, kind_key: str, notes: str) -> bool: ...


class FilteringCheckService:
    def __init__(
        self, uow: Any, directory: Directory, policy: Policy, cards: CheckCards, reviews: ReviewCloser
    ) -> None:
        self._uow = uow
        self._directory = directory
        self._policy = policy.filtering_check
        self._cards = cards
        self._reviews = reviews

    async def form(self, actor: Actor) -> dict[str, Any]:
        self._allowed(actor)
        async with self._uow() as uow:
            last: FilteringCheck | None = await uow.filtering_checks.latest(actor.school_id)
        return self._cards.form(CheckForm(uuid.uuid4().hex, list(self._policy.tests), last, {}, []), actor.school.tz)

    async def record(self, actor: Actor, data: dict[str, Any]) -> CardReply:
        self._allowed(actor)
        token = data.get("form")
        if not isinstance(token, str) or not _TOKEN.match(token):
            raise Refused("That card is out of date. Type `filter check` for a new one.")
        results, device, notes, problems = self._read(data)
        if problems:
            values = {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}
            form = CheckForm(token, list(self._policy.tests), None, values, problems)
            return CardReply(card=self._cards.form(form, actor.school.tz), message="Please check the card.")
        tz = actor.school.tz
        async with self._uow() as uow:
            check, new = await uow.filtering_checks.add(
                actor.school_id, token, actor.person.id, actor.person.name, _role_label(actor), device, results, notes
            )
            review_done, told = False, 0
            if new:
                await uow.audit.record(
                    actor.school_id,
                    actor.person.id,
                    "recorded",
                    "filtering_check",
                    str(check.id),
                    {"failures": len(check.failures), "complete": check.complete},
                )
                if check.complete and not check.failures:
                    review_done = await self._reviews.close_open(
                        uow, actor, self._policy.review, f"Filtering check: {check.summary()}."
                    )
                if check.failures:
                    told = await self._alert(uow, actor, check)
            elif check.failures:  # pressed again: the same answer as the first time, and nothing sent twice
                told = len(await self._alert_recipients(actor))
        return CardReply(
            card=self._cards.recorded(check, tz, review_done, told), message=_reply_text(check, review_done, told)
        )

    def _allowed(self, actor: Actor) -> None:
        if not may(actor.person, "filter.check"):
            raise Refused("Only the online-safety lead, the DSL team and the technicians record filtering checks.")

    def _read(self, data: dict[str, Any]) -> tuple[list[TestResult], str, str | None, list[str]]:
        problems: list[str] = []
        results: list[TestResult] = []
        for test in self._policy.tests:
            outcome = data.get(f"test_{test.key}")
            if outcome not in OUTCOMES:
                problems.append(f'Please choose a result for "{test.label}".')
                continue
            results.append(TestResult(test.key, test.label, str(outcome)))
        device = " ".join(str(data.get("device") or "").split())
        if not device:
            problems.append("Please say which device and network you tested on.")
        elif len(device) > MAX_DEVICE_CHARS:
            problems.append(f"Please keep the device and network under {MAX_DEVICE_CHARS} characters.")
        notes = str(data.get("notes") or "").strip() or None
        if notes is not None and len(notes) > MAX_NOTES_CHARS:
            problems.append(f"Please keep the notes under {MAX_NOTES_CHARS} characters.")
        if results and all(r.outcome == NOT_TRIED for r in results):
            problems.append("Please try at least one test before recording the check.")
        return results, device, notes, problems

    async def _alert(self, uow: Any, actor: Actor, check: FilteringCheck) -> int:
        """Tell the alert roles now: a failing filter cannot wait for a quiet moment."""
        people = await self._alert_recipients(actor)
        card = self._cards.failing(check, actor.school.tz)
        for person_id in people:
            await uow.notify.to_person(
                actor.school_id, person_id, card=card, dedupe_key=f"filtering_check:{check.id}:alert:{person_id}"
            )
        return len(people)

    async def _alert_recipients(self, actor: Actor) -> list[str]:
        people: list[str] = []
        for role in self._policy.alert_roles:
            found = await self._directory.people_with_role(actor.school_id, role)
            people += [p.id for p in found if p.id not in people]
        return people


def report_rows(checks: list[FilteringCheck], tz: dt.tzinfo) -> list[tuple[str, str]]:
    """The period's checks as (when and by whom, result) rows for the governors' report: roles, never names."""
    return [
        (f"{check.run_at.astimezone(tz):%-d %b %Y}, by the {check.run_by_role}", check.summary()) for check in checks
    ]


def _role_label(actor: Actor) -> str:
    role = next((r for r in _RUN_BY if actor.has(r)), None)
    return ROLE_LABELS[role] if role is not None else "member of staff"


def _reply_text(check: FilteringCheck, review_done: bool, told: int) -> str:
    if check.failures:
        count = len(check.failures)
        got = f"{count} test got through" if count == 1 else f"{count} tests got through"
        who = (
            "I am sending this to the online-safety lead, DSL and technicians now"
            if told
            else "I could not find the online-safety lead, DSL or technicians in the directory: please tell them "
            "in person"
        )
        return f"Recorded. {got}, so the filter is not working as it should. {who}. Check again once it is fixed."
    if not check.complete:
        return "Recorded. The termly check stays open until every test has been tried."
    return "Recorded. Every test was blocked." + (" The termly check is done." if review_done else "")
