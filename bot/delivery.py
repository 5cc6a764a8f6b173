"""Deliveries: every alert knows whether it reached a person, and nobody is told what did not happen.

A send that belongs to a delivery group carries a `Delivery` in its queued payload. The group's `Watch` is the
promise made to its owner (the reporter, the requester): once a send to the people who must act succeeds, the
owner is told exactly who has it; if none succeeds by the deadline, the owner is told to go in person, with names
and a phone number, and the rest of the team hears that an alert did not arrive. A send that cannot reach its
person moves to the next holder of the same role, then to the escalation, before it is given up.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass
from typing import Any

from bot.people import Person
from bot.protocols import Clock, UnitOfWorkFactory
from bot.work import SEND_KIND, Done, Then, WorkItem

log = logging.getLogger(__name__)

CONFIRM_KIND = "delivery.confirm"
DEADLINE_KIND = "delivery.deadline"
UNDELIVERED_DAYS = 14


@dataclass(frozen=True)
class Contact:
    id: str
    label: str  # "Priya Shah (DSL)"


@dataclass(frozen=True)
class Delivery:
    """What one queued send belongs to; it travels (encrypted) in the send's payload."""

    group: str
    label: str  # who the send is for, as a person reads it: "Priya Shah (DSL)", "the safeguarding channel"
    about: str  # what it is about, without details: "ES-2026-0001"
    case_team: bool = True  # reaching this recipient means the people who must act have it
    team_roles: tuple[str, ...] = ()  # who may see it in the `undelivered` list
    fallbacks: tuple[tuple[Contact, ...], ...] = ()  # stages: other holders of the role, then the escalation
    reroute_kind: str | None = None  # work that gives a fallback person access to the record

    def as_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "label": self.label,
            "about": self.about,
            "case_team": self.case_team,
            "team_roles": list(self.team_roles),
            "reroute_kind": self.reroute_kind,
            "fallbacks": [[{"id": c.id, "label": c.label} for c in stage] for stage in self.fallbacks],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Delivery:
        return cls(
            group=data["group"],
            label=data["label"],
            about=data.get("about", ""),
            case_team=bool(data.get("case_team", True)),
            team_roles=tuple(data.get("team_roles") or ()),
            reroute_kind=data.get("reroute_kind"),
            fallbacks=tuple(
                tuple(Contact(c["id"], c["label"]) for c in stage) for stage in data.get("fallbacks") or ()
            ),
        )

    def rerouted(self, contact: Contact, rest: tuple[tuple[Contact, ...], ...]) -> Delivery:
        return Delivery(self.group, contact.label, self.about, self.case_team, self.team_roles, rest, self.reroute_kind)


@dataclass(frozen=True)
class Watch:
    """The promise a delivery group makes to its owner; the payload of its confirm and deadline work."""

    school_id: str
    group: str
    about: str  # "ES-2026-0001"
    what: str  # "Your report ES-2026-0001", as the start of a sentence
    team: str  # "the safeguarding team"
    owner_id: str | None  # who is told the outcome
    in_person: tuple[str, ...]  # whom to find in person when nothing arrives, with roles
    phone: str | None
    notify: tuple[Contact, ...]  # told when nothing arrives
    team_roles: tuple[str, ...]
    record_type: str
    record_id: str
    next_step: str = "They will pick it up from here."

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Watch:
        return cls(
            **{
                **data,
                "in_person": tuple(data["in_person"]),
                "team_roles": tuple(data["team_roles"]),
                "notify": tuple(Contact(**c) for c in data["notify"]),
            }
        )


@dataclass(frozen=True)
class Outcome:
    """One send of a group as it stands now."""

    id: int
    target: str  # "person:<id>" or "channel:<purpose>"
    delivery: Delivery
    status: str  # pending | running | done | failed | cancelled
    error: str | None
    at: dt.datetime | None


def target_key(target: dict[str, str]) -> str:
    return f"person:{target['id']}" if target["kind"] == "person" else f"channel:{target['purpose']}"


def labelled(person: Person, role_label: str) -> Contact:
    return Contact(person.id, f"{person.name} ({role_label})")


def next_stage(delivery: Delivery, targeted: set[str]) -> tuple[list[Contact], tuple[tuple[Contact, ...], ...]]:
    """The first fallback stage with someone not yet sent this group's message, and the stages after it."""
    stages = delivery.fallbacks
    for index, stage in enumerate(stages):
        fresh = [c for c in stage if f"person:{c.id}" not in targeted]
        if fresh:
            return fresh, stages[index + 1 :]
    return [], ()


def fallback_sends(
    item_payload: dict[str, Any], targeted: set[str], school_id: str, failed_label: str, reason: str
) -> tuple[Then, ...]:
    """What to queue when a send cannot reach its recipient: the same message to the next people in line."""
    raw = item_payload.get("delivery")
    if not raw:
        return ()
    delivery = Delivery.from_json(raw)
    contacts, rest = next_stage(delivery, targeted)
    then: list[Then] = []
    for contact in contacts:
        payload = {
            **item_payload,
            "target": {"kind": "person", "id": contact.id},
            "delivery": delivery.rerouted(contact, rest).as_json(),
        }
        then.append(
            Then(SEND_KIND, payload, dedupe_key=f"{delivery.group}:person:{contact.id}", delivery_group=delivery.group)
        )
    if contacts and delivery.reroute_kind:
        then.append(
            Then(
                delivery.reroute_kind,
                {
                    "group": delivery.group,
                    "about": delivery.about,
                    "failed": failed_label,
                    "reason": reason,
                    "to": [{"id": c.id, "label": c.label} for c in contacts],
                },
                dedupe_key=f"{delivery.group}:reroute:{','.join(sorted(c.id for c in contacts))}",
            )
        )
    return tuple(then)


def confirm_after(item_payload: dict[str, Any]) -> tuple[Then, ...]:
    """A case-team send arrived: the group's owner is told once, by the confirm work."""
    raw = item_payload.get("delivery")
    if not raw or not raw.get("case_team"):
        return ()
    group = raw["group"]
    return (Then(CONFIRM_KIND, {"group": group}, dedupe_key=f"{group}:confirm"),)


# --- what people read ---------------------------------------------------------------------------------------------


def _join(labels: list[str]) -> str:
    if len(labels) <= 1:
        return "".join(labels)
    return ", ".join(labels[:-1]) + " and " + labels[-1]


def reached_text(watch: Watch, reached: list[str], late: bool) -> str:
    if late:
        return (
            f"Update: {watch.what} has now reached {_join(reached)}. Thank you for telling someone in person as well."
        )
    return f"{watch.what} has reached {watch.team}: {_join(reached)}. {watch.next_step}"


def in_person_text(watch: Watch) -> str:
    who = _join(list(watch.in_person)) or "the DSL"
    phone = f" The safeguarding phone is {watch.phone}." if watch.phone else ""
    return (
        f"I could not reach {watch.team} about {watch.about} yet. Please tell {who} in person now.{phone} "
        f"{watch.what} is saved, and I will keep trying to deliver it."
    )


def notice_text(watch: Watch, failed: list[str]) -> str:
    who = _join(failed) or "the people who should have it"
    return (
        f"An alert about {watch.about} has not reached {who}. The person who raised it has been asked to tell "
        f"{watch.team} in person. Type `undelivered` to see what has not arrived."
    )


@dataclass(frozen=True)
class UndeliveredView:
    """One send that could not be delivered, as the DSL team's list shows it."""

    about: str
    to: str
    reason: str
    at: dt.datetime | None


def plain_reason(error: str | None) -> str:
    """The outbox's technical reason in a few words a DSL can act on."""
    text = (error or "").lower()
    if "403" in text or "blocked" in text or "not installed" in text:
        return "the app is not installed for them, or they blocked it"
    if "no conversation" in text or "never" in text:
        return "they have not opened the app yet"
    if "channel" in text:
        return "the app is not in the team or the channel is not set up"
    if "gave up" in text or "unreachable" in text:
        return "Teams did not accept it after several tries"
    return "Teams refused it"


async def keep_watch(uow: Any, watch: Watch, deadline: dt.datetime) -> None:
    """Inside the caller's unit of work, so the promise to the owner commits with the sends it is about."""
    await uow.work.schedule(
        watch.school_id, DEADLINE_KIND, deadline, watch.as_json(), dedupe_key=f"{watch.group}:deadline"
    )


class DeliveryTracker:
    """Handles a group's confirm and deadline work, and lists what did not arrive."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def confirm(self, item: WorkItem) -> Done:
        group = item.payload["group"]
        async with self._uow() as uow:
            watch = await uow.deliveries.watch(item.school_id, group)
            if watch is None or watch.owner_id is None:
                return Done("no owner to tell")
            outcomes = await uow.deliveries.group(item.school_id, group)
            reached = [o.delivery.label for o in outcomes if o.delivery.case_team and o.status == "done"]
            if not reached:
                return Done("nothing reached yet")
            late = await uow.deliveries.deadline_missed(item.school_id, group)
            await uow.notify.to_person(
                watch.school_id,
                watch.owner_id,
                text=reached_text(watch, reached, late),
                dedupe_key=f"{group}:confirmed",
            )
        return Done(f"told the owner: {len(reached)} reached")

    async def deadline(self, item: WorkItem) -> Done:
        watch = Watch.from_json(item.payload)
        async with self._uow() as uow:
            outcomes = await uow.deliveries.group(watch.school_id, watch.group)
            if any(o.delivery.case_team and o.status == "done" for o in outcomes):
                return Done("delivered")
            failed = [o.delivery.label for o in outcomes if o.delivery.case_team]
            if watch.owner_id:
                await uow.notify.to_person(
                    watch.school_id, watch.owner_id, text=in_person_text(watch), dedupe_key=f"{watch.group}:in-person"
                )
            for contact in watch.notify:
                await uow.notify.to_person(
                    watch.school_id,
                    contact.id,
                    text=notice_text(watch, failed),
                    delivery=Delivery(
                        f"{watch.group}:notice",
                        contact.label,
                        watch.about,
                        case_team=False,
                        team_roles=watch.team_roles,
                    ),
                )
            await uow.audit.record(
                watch.school_id,
                None,
                "delivery.undelivered",
                watch.record_type,
                watch.record_id,
                {"not_reached": failed, "told_in_person": bool(watch.owner_id)},
            )
        log.warning("delivery group %s: nothing reached the team by the deadline", watch.group)
        return Done("undelivered")

    async def undelivered(self, school_id: str, viewer: Person) -> list[UndeliveredView]:
        """Sends in the last fortnight that never arrived, for the teams the viewer belongs to."""
        since = self._clock.now() - dt.timedelta(days=UNDELIVERED_DAYS)
        async with self._uow() as uow:
            outcomes = await uow.deliveries.failed(school_id, since)
        roles = {r.value for r in viewer.roles}
        return [
            UndeliveredView(o.delivery.about, o.delivery.label or "a member of the team", plain_reason(o.error), o.at)
            for o in outcomes
            if roles & set(o.delivery.team_roles)
        ]
