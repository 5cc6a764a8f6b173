"""Small protocols for the outside world; adapters/ and storage/ implement them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Self

from bot.audit import AuditEntry
from bot.people import Person, Role
from bot.work import Then, WorkItem

if TYPE_CHECKING:
    from bot.aup import AupRepository
    from bot.children import Pupil
    from bot.delivery import Delivery
    from bot.desk import CaseloadFacts
    from bot.incidents import IncidentSummary
    from bot.repositories import (
        AllegationRepository,
        ChildRepository,
        DeliveryRepository,
        ExportRepository,
        FilterRepository,
        GraphStateRepository,
        IncidentRepository,
        ReferralRepository,
    )


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware UTC."""


class Directory(Protocol):
    async def person(self, school_id: str, person_id: str) -> Person | None:
        """A person by Entra object id, with their roles; None if unknown."""

    async def people_with_role(self, school_id: str, role: Role) -> list[Person]:
        """Everyone holding a role, in a stable order."""

    async def line_manager(self, school_id: str, person_id: str) -> Person | None:
        """The person's line manager; None when they have none."""

    async def find_by_email(self, school_id: str, email: str) -> Person | None:
        """A person by email address, case-insensitive."""

    async def everyone(self, school_id: str) -> list[Person]:
        """Everyone the directory knows in the school."""


class PupilDirectory(Protocol):
    """Pupils the school's directory knows (the static list, or School Data Sync through Graph's education API).

    Both raise bot.children.PupilsUnavailable when the directory cannot answer now."""

    async def search_pupils(self, school_id: str, query: str) -> list[Pupil]:
        """Pupils whose name has a part starting with every word of the query; a short list."""

    async def pupil(self, school_id: str, pupil_id: str) -> Pupil | None:
        """One pupil by the directory's id; None when the directory does not know them."""


class ConversationStore(Protocol):
    async def save(
        self,
        school_id: str,
        kind: str,
        key: str,
        reference: dict[str, Any],
        *,
        name: str | None = None,
        team_id: str | None = None,
    ) -> None:
        """Remember how to reach a person (kind 'person') or a channel (kind 'channel')."""


@dataclass(frozen=True)
class PersonMessage:
    """One of many 1:1 messages queued together (Notifier.to_people); the fields mean what to_person's do."""

    person_id: str
    text: str | None = None
    card: dict[str, Any] | None = None
    dedupe_key: str | None = None
    quiet: bool = False


class Notifier(Protocol):
    """Queues proactive messages; the outbox worker sends them after the unit of work commits."""

    async def to_person(
        self,
        school_id: str,
        person_id: str,
        *,
        text: str | None = None,
        card: dict[str, Any] | None = None,
        dedupe_key: str | None = None,
        delivery: Delivery | None = None,
        plain: bool = False,
        about: str | None = None,
        update_of: str | None = None,
        attachment: dict[str, Any] | None = None,
        quiet: bool = False,
    ) -> None:
        """Queue a 1:1 message for a person; a `delivery` makes its arrival tracked (bot.delivery); `plain` shows
        the text exactly as written (no Markdown, links or mentions), for text that quotes what someone typed.
        `about` names the case a card shows, so it can be replaced later; `update_of` replaces a posted message.
        `attachment` is a Teams attachment as JSON that is not an Adaptive Card (a file consent card).
        `quiet` marks a message that is not urgent: it waits until the person's chat is quiet (bot.quiet)."""

    async def to_channel(
        self,
        school_id: str,
        purpose: str,
        *,
        text: str | None = None,
        card: dict[str, Any] | None = None,
        dedupe_key: str | None = None,
        delivery: Delivery | None = None,
        about: str | None = None,
        update_of: str | None = None,
        quiet: bool = False,
    ) -> None:
        """Queue a post to the team channel the school configured for a purpose (dsl, slt, technicians)."""

    async def to_people(self, school_id: str, messages: Sequence[PersonMessage]) -> None:
        """Queue many 1:1 messages in a few statements, each as to_person would (a sweep's hundred cards)."""

    async def waiting(self, school_id: str) -> int:
        """How many of the school's queued messages are due and not yet sent."""


class WorkQueue(Protocol):
    async def schedule(
        self, school_id: str, kind: str, run_at: dt.datetime, payload: dict[str, Any], *, dedupe_key: str | None = None
    ) -> None:
        """Add durable work to be done at or after run_at; a repeated dedupe_key is ignored."""

    async def schedule_many(self, school_id: str, items: Sequence[Then]) -> None:
        """schedule for many items in a few statements (run_at None: now); a repeated dedupe_key is ignored."""

    async def cancel(self, dedupe_key: str) -> None:
        """Drop pending work by its dedupe key, if it has not run."""


class AuditAppend(Protocol):
    async def record(
        self,
        school_id: str,
        actor_id: str | None,
        action: str,
        record_type: str,
        record_id: str | None,
        detail: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """Append one hash-chained audit entry."""


class AuditLog(AuditAppend, Protocol):
    """The audit trail inside a unit of work: entries commit with the changes they record."""

    async def record_many(
        self,
        school_id: str,
        actor_id: str | None,
        action: str,
        record_type: str,
        records: Sequence[tuple[str | None, dict[str, Any] | None]],
    ) -> list[AuditEntry]:
        """Append one entry per (record_id, detail), in order, as that many `record` calls would, in a few
        statements."""


class ReadAudit(AuditAppend, Protocol):
    """Audit entries for reads, each written in a transaction of its own: a read changes nothing else that the
    entry must commit with. The entry is committed when `record` returns, so the reader is shown nothing unaudited."""


class UnitOfWork(Protocol):
    """One transaction: everything written through it commits together or not at all."""

    audit: AuditLog
    notify: Notifier
    work: WorkQueue

    # The feature repositories the services reach through the unit (read-only: a unit holds one of each).
    @property
    def incidents(self) -> IncidentRepository: ...

    @property
    def children(self) -> ChildRepository: ...

    @property
    def filtering(self) -> FilterRepository: ...

    @property
    def deliveries(self) -> DeliveryRepository: ...

    @property
    def exports(self) -> ExportRepository: ...

    @property
    def allegations(self) -> AllegationRepository: ...

    @property
    def referrals(self) -> ReferralRepository: ...

    @property
    def aup(self) -> AupRepository: ...

    @property
    def graph(self) -> GraphStateRepository: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]


class CaseloadReads(Protocol):
    async def caseload(
        self,
        school_id: str,
        since: dt.datetime,
        now: dt.datetime,
        visible: Callable[[list[IncidentSummary]], list[IncidentSummary]],
    ) -> CaseloadFacts:
        """A school's open cases that `visible` keeps (the access rule) and, when it keeps any, the tracked sends that
        failed since `since` and the cases whose required referral is late at `now`: read together, in one snapshot
        where the database gives one, without a unit of work. `visible` must only filter (it may run off the event
        loop, on the database's thread)."""


class WorkHandler(Protocol):
    async def __call__(self, item: WorkItem, /) -> object:
        """Do one piece of due work; raise RetryLater or GiveUp to say otherwise. What it returns (a Done, or a
        short note) is kept as the item's result."""
