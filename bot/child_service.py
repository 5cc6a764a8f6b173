"""Child records on the DSL's desk: find or create a child, link cases to them, and read one child's whole file.

Every path asks the same two questions: may this person use child records at all (DSL and deputies), and, for a
link, may they act on that case (the one access rule in bot.incidents). Anyone refused gets the same answer whether
or not the case or child exists, and the refusal is audited.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.actor import Actor
from bot.case_record import ChildDetails, ChildFile, ChildRef, case_record, child_file
from bot.children import (
    Child,
    ChildMatch,
    Pupil,
    PupilsUnavailable,
    check_child,
    from_pupil,
    may_use_child_records,
    name_matches,
    query_words,
)
from bot.incidents import Incident, VersionConflict, may_act_on_case, may_view_case
from bot.policy import Policy
from bot.protocols import Clock, Directory, PupilDirectory, UnitOfWork, UnitOfWorkFactory

MAX_MATCHES = 8
# Concerns about a member of staff, allegations and low-level (the Headteacher has their own route).
STAFF_KINDS = frozenset({"staff", "staff_low_level"})
UNAVAILABLE = "The school's pupil list did not answer just now, so only records already here are shown."


@dataclass(frozen=True)
class StaffMatch:
    person_id: str
    name: str


@dataclass(frozen=True)
class SearchResult:
    matches: list[ChildMatch]
    directory_failed: bool = False


@dataclass(frozen=True)
class LinkView:
    """What the link card shows for one case and one person."""

    reference: str
    case_token: str
    children: tuple[ChildRef, ...]
    staff_member: str | None
    may_link_children: bool
    may_link_staff: bool
    query: str = ""
    matches: list[ChildMatch] = field(default_factory=list)
    staff_matches: list[StaffMatch] = field(default_factory=list)
    notice: str | None = None
    problems: list[str] = field(default_factory=list)
    directory_failed: bool = False


@dataclass(frozen=True)
class Outcome:
    """A change's result: refused (None view), or a notice and problems to show on the card."""

    refused: bool = False
    notice: str | None = None
    problems: list[str] = field(default_factory=list)
    child: Child | None = None


REFUSED = Outcome(refused=True)


class ChildService:
    def __init__(
        self, uow: UnitOfWorkFactory, directory: Directory, pupils: PupilDirectory | None, policy: Policy, clock: Clock
    ) -> None:
        self._uow = uow
        self._directory = directory
        self._pupils = pupils
        self._policy = policy
        self._clock = clock
        # async (uow, school_id, incident_id): rewrite cards already posted to people who lost access (the
        # incidents feature sets it; naming a member of staff on an allegation removes them from it).
        self.access_narrowed: Any = None

    # --- finding a child ------------------------------------------------------------------------------------

    async def search(self, actor: Actor, query: str) -> list[ChildMatch]:
        return (await self.search_result(actor, query)).matches

    async def search_result(self, actor: Actor, query: str) -> SearchResult:
        """Records already here first, then directory pupils who have no record yet; nothing for anyone else."""
        if not may_use_child_records(actor.person):
            async with self._uow() as uow:
                await self._refused(uow, actor, "child.search")
            return SearchResult([])
        if not query_words(query):
            return SearchResult([])
        async with self._uow() as uow:
            records = await uow.children.search(actor.school_id, query, limit=MAX_MATCHES)
            await uow.audit.record(
                actor.school_id, actor.person.id, "child.searched", "child", None, {"found": len(records)}
            )  # never the query: it is a child's name
        matches = [
            ChildMatch(name=c.name, year_group=c.year_group, date_of_birth=c.date_of_birth, token=c.token)
            for c in records
        ]
        failed = False
        pupils: list[Pupil] = []
        if self._pupils is not None:
            try:
                pupils = await self._pupils.search_pupils(actor.school_id, query)
            except PupilsUnavailable:
                failed = True
        known = {c.directory_id for c in records if c.directory_id}
        if pupils:
            async with self._uow() as uow:  # a pupil whose record did not match by name is still one record
                for pupil in pupils:
                    if pupil.id not in known and await uow.children.by_directory_id(actor.school_id, pupil.id):
                        known.add(pupil.id)
        matches += [
            ChildMatch(
                name=p.name, year_group=p.year_group, date_of_birth=p.date_of_birth, pupil_id=p.id, classes=p.classes
            )
            for p in pupils
            if p.id not in known
        ]
        return SearchResult(matches[:MAX_MATCHES], failed)

    async def create(self, actor: Actor, fields: dict[str, Any], *, case_token: Any = None) -> Outcome:
        """A record from typed details, or from a directory pupil (`fields['pupil']`); linked to the case if one
        is given. A pupil who already has a record gets that record, never a second one."""
        async with self._uow() as uow:
            incident = None
            if case_token is not None:
                incident = await self._case(uow, actor, case_token)
                if incident is None or not may_use_child_records(actor.person):
                    return await self._refused(uow, actor, "child.create", case_token)
            elif not may_use_child_records(actor.person):
                return await self._refused(uow, actor, "child.create")
            child, problems = await self._make(uow, actor, fields)
            if child is None:
                return Outcome(problems=problems)
            notice = f"{child.name}'s record is ready."
            if incident is not None:
                await self._link(uow, actor, incident, child)
                notice = f"{child.name} is now linked to {incident.reference}."
        return Outcome(notice=notice, child=child)

    async def _make(self, uow: Any, actor: Actor, fields: dict[str, Any]) -> tuple[Child | None, list[str]]:
        pupil_id = fields.get("pupil")
        if isinstance(pupil_id, str) and pupil_id:
            existing = await uow.children.by_directory_id(actor.school_id, pupil_id)
            if existing is not None:
                return existing, []
            try:
                pupil = await self._pupils.pupil(actor.school_id, pupil_id) if self._pupils else None
            except PupilsUnavailable:
                return None, [
                    "The school's pupil list did not answer just now. Please try again in a minute, "
                    "or add the child's details yourself."
                ]
            if pupil is None:
                return None, ["That pupil is no longer in the school's pupil list. Please search again."]
            child = await uow.children.add(
                actor.school_id,
                from_pupil(pupil),
                source="directory",
                directory_id=pupil.id,
                created_by=actor.person.id,
            )
        else:
            checked = check_child(fields, self._clock.now().astimezone(actor.school.tz).date())
            if checked.value is None:
                return None, checked.problems
            child = await uow.children.add(actor.school_id, checked.value, source="local", created_by=actor.person.id)
        await uow.audit.record(
            actor.school_id, actor.person.id, "child.created", "child", child.token, {"source": child.source}
        )
        return child, []

    # --- links ----------------------------------------------------------------------------------------------

    async def link(self, actor: Actor, case_token: Any, choice: dict[str, Any]) -> Outcome:
        """Link a case to an existing record (`choice['child']`) or a directory pupil (`choice['pupil']`)."""
        async with self._uow() as uow:
            incident = await self._case(uow, actor, case_token)
            if incident is None or not may_use_child_records(actor.person):
                return await self._refused(uow, actor, "child.link", case_token)
            child_token = choice.get("child")
            if isinstance(child_token, str) and child_token:
                child = await uow.children.by_token(actor.school_id, child_token)
                if child is None:
                    return await self._refused(uow, actor, "child.link", case_token)
            else:
                pupil_id = choice.get("pupil")
                if not isinstance(pupil_id, str) or not pupil_id:
                    return Outcome(problems=["Please choose a child from the list."])
                child, problems = await self._make(uow, actor, {"pupil": pupil_id})
                if child is None:
                    return Outcome(problems=problems)
            if not await self._link(uow, actor, incident, child):
                return Outcome(notice=f"{child.name} was already linked to {incident.reference}.", child=child)
        return Outcome(notice=f"{child.name} is now linked to {incident.reference}.", child=child)

    async def _link(self, uow: Any, actor: Actor, incident: Incident, child: Child) -> bool:
        if not await uow.children.link_child(actor.school_id, incident.id, child.id, actor.person.id):
            return False
        # The chronology is read by the whole case team and exported: the name stays in the child's record.
        await uow.incidents.append_event(
            actor.school_id, incident.id, actor.person.id, actor.person.name, "child_linked", child.year_group
        )
        await uow.audit.record(
            actor.school_id, actor.person.id, "child.linked", "incident", incident.reference, {"child": child.token}
        )
        return True

    async def unlink(self, actor: Actor, case_token: Any, child_token: Any) -> Outcome:
        async with self._uow() as uow:
            incident = await self._case(uow, actor, case_token)
            if incident is None or not may_use_child_records(actor.person):
                return await self._refused(uow, actor, "child.unlink", case_token)
            child = await uow.children.by_token(actor.school_id, child_token) if isinstance(child_token, str) else None
            if child is None or not await uow.children.unlink_child(actor.school_id, incident.id, child.id):
                return Outcome(notice="That child is not linked to this case.")
            await uow.incidents.append_event(
                actor.school_id, incident.id, actor.person.id, actor.person.name, "child_unlinked", child.year_group
            )
            await uow.audit.record(
                actor.school_id,
                actor.person.id,
                "child.unlinked",
                "incident",
                incident.reference,
                {"child": child.token},
            )
        return Outcome(notice=f"{child.name} is no longer linked to {incident.reference}.")

    async def link_staff(self, actor: Actor, case_token: Any, person_id: Any) -> Outcome:
        """Name the member of staff an allegation is about, from the directory; they are then excluded from the
        case by who they are, whatever roles they hold later."""
        try:
            return await self._link_staff(actor, case_token, person_id)
        except _Retry:
            return Outcome(notice="Someone else updated this case a moment ago. Please choose again.")

    async def _link_staff(self, actor: Actor, case_token: Any, person_id: Any) -> Outcome:
        async with self._uow() as uow:
            incident = await self._case(uow, actor, case_token)
            if incident is None or incident.subject_kind not in STAFF_KINDS:
                return await self._refused(uow, actor, "case.link_staff", case_token)
            person = await self._directory.person(actor.school_id, person_id) if isinstance(person_id, str) else None
            if person is None:
                return Outcome(problems=["Please choose a member of staff from the list."])
            if person.id == actor.person.id:
                return Outcome(
                    problems=[
                        "You can't name yourself here. If this concern is about you, please tell "
                        "the Chair of Governors."
                    ]
                )
            if not await uow.children.link_staff(actor.school_id, incident.id, person.id, person.name, actor.person.id):
                return Outcome(notice=f"{person.name} was already named on {incident.reference}.")
            try:
                await uow.incidents.change(
                    actor.school_id,
                    incident.id,
                    incident.version,
                    excluded_ids=sorted({*incident.excluded_ids, person.id}),
                    viewer_ids=[i for i in incident.viewer_ids if i != person.id],
                )
            except VersionConflict:
                raise _Retry from None
            await uow.incidents.append_event(
                actor.school_id, incident.id, actor.person.id, actor.person.name, "staff_linked", None
            )
            if self.access_narrowed is not None:
                await self.access_narrowed(uow, actor.school_id, incident.id)
            await uow.audit.record(
                actor.school_id,
                actor.person.id,
                "case.staff_linked",
                "incident",
                incident.reference,
                {"staff": person.id},
            )
        return Outcome(notice=f"{person.name} is now named on {incident.reference} and cannot see it.")

    async def linked(self, uow: Any, school_id: str, incident_id: int) -> tuple[tuple[ChildRef, ...], str | None]:
        """The children and the member of staff linked to a case, for its card and record (the caller has already
        decided the reader may see the case)."""
        children = await uow.children.children_of(school_id, incident_id)
        staff = await uow.children.staff_of(school_id, incident_id)
        return (
            tuple(ChildRef(token=c.token, name=c.name, year_group=c.year_group) for c in children),
            staff[1] if staff else None,
        )

    # --- the link card's data ---------------------------------------------------------------------------------

    async def link_view(
        self, actor: Actor, case_token: Any, *, query: str = "", outcome: Outcome | None = None
    ) -> LinkView | None:
        """None when the person may not link anything to this case (the caller shows the one refusal)."""
        async with self._uow() as uow:
            incident = await self._case(uow, actor, case_token)
            children_ok = incident is not None and may_use_child_records(actor.person)
            staff_ok = incident is not None and incident.subject_kind in STAFF_KINDS
            if not (children_ok or staff_ok):
                await self._refused(uow, actor, "child.find", case_token)
                return None
            assert incident is not None  # either way above needs the case
            children, staff = await self.linked(uow, actor.school_id, incident.id)
        result = await self.search_result(actor, query) if children_ok and query_words(query) else SearchResult([])
        linked_tokens = {c.token for c in children}
        staff_matches = await self._staff_matches(actor, query) if staff_ok and query_words(query) else []
        outcome = outcome or Outcome()
        return LinkView(
            reference=incident.reference,
            case_token=incident.token,
            children=children,
            staff_member=staff,
            may_link_children=children_ok,
            may_link_staff=staff_ok,
            query=query,
            matches=[m for m in result.matches if m.token not in linked_tokens],
            staff_matches=staff_matches,
            notice=outcome.notice,
            problems=outcome.problems,
            directory_failed=result.directory_failed,
        )

    async def _staff_matches(self, actor: Actor, query: str) -> list[StaffMatch]:
        words = query_words(query)
        people = await self._directory.everyone(actor.school_id)
        return [StaffMatch(p.id, p.name) for p in people if p.id != actor.person.id and name_matches(words, p.name)][
            :MAX_MATCHES
        ]

    # --- a child's file ---------------------------------------------------------------------------------------

    async def file(self, actor: Actor, child_token: Any) -> ChildFile | None:
        """Every linked case the person may see, as one chronology; the rest are counted, never described."""
        async with self._uow() as uow:
            child = (
                await uow.children.by_token(actor.school_id, child_token)
                if isinstance(child_token, str) and child_token
                else None
            )
            if child is None or not may_use_child_records(actor.person):
                await self._refused(uow, actor, "child.view", child_token, record_type="child")
                return None
            records, hidden = [], 0
            for incident_id in await uow.children.cases_of(actor.school_id, child.id):
                incident = await uow.incidents.get(actor.school_id, incident_id)
                if incident is None or not may_view_case(actor.person, incident):
                    hidden += 1
                    continue
                children, staff = await self.linked(uow, actor.school_id, incident.id)
                records.append(
                    case_record(
                        incident,
                        category=self._policy.category(incident.category).label,
                        group=self._policy.group(incident.category_group).label,
                        children=children,
                        staff_member=staff,
                    )
                )
            await uow.audit.record(
                actor.school_id,
                actor.person.id,
                "child.viewed",
                "child",
                child.token,
                {"cases": len(records), "hidden": hidden},
            )
        details = ChildDetails(
            token=child.token,
            name=child.name,
            year_group=child.year_group,
            date_of_birth=child.date_of_birth,
            upn=child.upn,
            mis_id=child.mis_id,
        )
        return child_file(details, records, hidden)

    # --- shared -----------------------------------------------------------------------------------------------

    async def _case(self, uow: UnitOfWork, actor: Actor, token: Any) -> Incident | None:
        """The case a card points at, if this person may act on it; None otherwise (the caller refuses)."""
        if not isinstance(token, str) or not token:
            return None
        incident = await uow.incidents.by_token(actor.school_id, token)
        if incident is None or not may_act_on_case(actor.person, incident):
            return None
        return incident

    async def _refused(
        self, uow: Any, actor: Actor, path: str, tried: Any = None, *, record_type: str = "incident"
    ) -> Outcome:
        await uow.audit.record(
            actor.school_id,
            actor.person.id,
            "child.access_refused",
            record_type,
            None,
            {"path": path, "tried": str(tried)[:120] if tried is not None else None},
        )
        return REFUSED


class _Retry(Exception):  # noqa: N818 - rolls the unit back: someone changed the case as the staff link was made
    """Raised inside a unit of work so that nothing of a half-made staff link is kept."""
