"""Acceptable Use Policy: versioned documents per audience, who owes an acknowledgement, renewal, reminders.

Plain dataclasses and one service; storage and the Teams front door sit behind the protocols in bot/protocols.py.

Decisions:
- A person owes exactly one AUP, chosen from their roles: staff if they hold the staff role, else the governor
  AUP if they are a governor (or Chair of Governors), else the volunteer AUP if they are a volunteer. A
  governor who also works at the school agrees the staff AUP, which covers everything the governor one does.
- An acknowledgement counts when it is of the audience's current version and was made in the current renewal
  cycle: a cycle starts each year at 00:00 (school time) on the configured month-day, 1 September by default.
- The text a person acknowledges is the stored document text of that version (Markdown, with its `Version:`
  line); its SHA-256 is recorded with the acknowledgement and the full-text page serves exactly that text.
- `aup publish <audience>` re-imports the repository's Markdown file as the next version (or the file's own
  version number when that is higher), after a preview the online-safety lead confirms. The confirmation answers at
  once; the worker then asks the audience in batches (one `aup.sweep` item per version), so a large staff never
  holds up the card action or anyone else's turn.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import functools
import hashlib
import html
import io
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from bot.actor import Actor, CardReply, Refused
from bot.config import AupConfig, SchoolConfig
from bot.people import Person, Role
from bot.protocols import Clock, Directory, PersonMessage, UnitOfWork, UnitOfWorkFactory
from bot.work import Then, WorkItem

log = logging.getLogger(__name__)

SWEEP_KIND = "aup.sweep"
REMIND_KIND = "aup.remind"
ESCALATE_KIND = "aup.escalate"
RENEWAL_KIND = "aup.renewal"
DELIVER_KIND = "aup.deliver"
FIRST_CONTACT_DELAY = dt.timedelta(minutes=1)
ACK_VERB = "aup.acknowledge"
PUBLISH_VERB = "aup.publish"


class Audience(StrEnum):
    STAFF = "staff"
    GOVERNOR = "governor"
    VOLUNTEER = "volunteer"


AUDIENCE_LABELS = {Audience.STAFF: "Staff", Audience.GOVERNOR: "Governors", Audience.VOLUNTEER: "Volunteers"}
# As in "the governors' AUP": staff-facing text never shows the audience's key.
AUDIENCE_NAMES = {Audience.STAFF: "staff", Audience.GOVERNOR: "governors'", Audience.VOLUNTEER: "volunteers'"}


def audience_for(person: Person) -> Audience | None:
    """The one AUP a person owes: staff, else governor, else volunteer; None for anyone else."""
    if person.has(Role.STAFF):
        return Audience.STAFF
    if person.has(Role.GOVERNOR, Role.CHAIR_OF_GOVERNORS):
        return Audience.GOVERNOR
    if person.has(Role.VOLUNTEER):
        return Audience.VOLUNTEER
    return None


def parse_audience(value: str) -> Audience | None:
    cleaned = value.strip().lower().rstrip("s")
    aliases = {
        "staff": Audience.STAFF,
        "governor": Audience.GOVERNOR,
        "volunteer": Audience.VOLUNTEER,
        "visitor": Audience.VOLUNTEER,
    }
    return aliases.get(cleaned)


# --- documents -------------------------------------------------------------------------------------------------


class AupFormatError(ValueError):
    """The Markdown file does not follow the expected shape; the message says where."""


@dataclass(frozen=True)
class Section:
    title: str
    points: tuple[str, ...]


@dataclass(frozen=True)
class ParsedAup:
    title: str
    version: int
    summary: str
    sections: tuple[Section, ...]
    text: str  # normalised Markdown

    @property
    def content_hash(self) -> str:
        """SHA-256 of the text without its Version line: tells whether the wording changed."""
        return sha256(_VERSION_LINE.sub("", self.text, count=1))


@dataclass(frozen=True)
class AupDocument:
    school_id: str
    audience: Audience
    version: int
    title: str
    summary: str
    text: str
    sha256: str
    published_at: dt.datetime
    published_by: str | None = None

    @property
    def sections(self) -> tuple[Section, ...]:
        return parse_markdown(self.text).sections

    @property
    def content_hash(self) -> str:
        return parse_markdown(self.text).content_hash


_VERSION_LINE = re.compile(r"^Version:\s*(\d+)\s*$", re.MULTILINE)


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def normalise(markdown: str) -> str:
    lines = [line.rstrip() for line in markdown.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return "\n".join(lines).strip() + "\n"


def parse_markdown(markdown: str) -> ParsedAup:
    """`# title`, `Version: N`, `Summary: ...`, then `## section` headings each followed by `- ` bullets."""
    text = normalise(markdown)
    title = version = summary = None
    sections: list[Section] = []
    current: tuple[str, list[str]] | None = None
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        if line.startswith("## "):
            if current:
                sections.append(Section(current[0], tuple(current[1])))
            current = (line[3:].strip(), [])
        elif line.startswith("# "):
            title = line[2:].strip()
        elif (match := _VERSION_LINE.match(line)) and current is None:
            version = int(match.group(1))
        elif line.startswith("Summary:") and current is None:
            summary = line[len("Summary:") :].strip()
        elif line.startswith("- ") and current is not None:
            current[1].append(line[2:].strip())
        elif current is not None and current[1]:
            current[1][-1] += " " + line.strip()  # a bullet continued on the next line
        else:
            raise AupFormatError(f"line {number} is not a heading, Version, Summary or bullet: {line[:60]!r}")
    if current:
        sections.append(Section(current[0], tuple(current[1])))
    if not title:
        raise AupFormatError("the file needs a '# Title' line")
    if version is None or version < 1:
        raise AupFormatError("the file needs a 'Version: N' line with N at least 1")
    if not summary:
        raise AupFormatError("the file needs a 'Summary: ...' line")
    if not sections or any(not s.points for s in sections):
        raise AupFormatError("the file needs '## Section' headings, each with at least one '- ' bullet")
    return ParsedAup(title, version, summary, tuple(sections), text)


def with_version(parsed: ParsedAup, version: int) -> ParsedAup:
    """The same document, its Version line set to `version` (the text shown says which version it is)."""
    text = _VERSION_LINE.sub(f"Version: {version}", parsed.text, count=1)
    return replace(parsed, version=version, text=text)


def render_html(document: AupDocument) -> str:
    """The full text as a small, self-contained HTML page."""
    parsed = parse_markdown(document.text)
    parts = [
        "<!doctype html>",
        '<html lang="en-GB"><head><meta charset="utf-8">',
        f"<title>{html.escape(parsed.title)} (version {document.version})</title>",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<style>body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;"
        "line-height:1.5}footer{color:#555;font-size:.9rem}</style></head><body>",
        f"<h1>{html.escape(parsed.title)}</h1>",
        f"<p><strong>Version {document.version}</strong>, published {document.published_at.strftime('%d %B %Y')}</p>",
        f"<p>{html.escape(parsed.summary)}</p>",
    ]
    for section in parsed.sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2><ul>")
        parts.extend(f"<li>{html.escape(point)}</li>" for point in section.points)
        parts.append("</ul>")
    parts.append(f"<footer>SHA-256 of this text: <code>{document.sha256}</code></footer></body></html>")
    return "\n".join(parts)


# --- acknowledgements, requests, renewal -----------------------------------------------------------------------


@dataclass(frozen=True)
class Acknowledgement:
    school_id: str
    person_id: str
    person_name: str
    audience: Audience
    version: int
    cycle: str
    sha256: str
    read_kcsie: bool
    agreed: bool
    at: dt.datetime

    @property
    def receipt(self) -> str:
        """A short number to quote (e.g. "3F9A-C21B"), from the record's identity and the text's SHA-256, which
        stays in the record: anyone holding the record can work the number out again to match a receipt to it."""
        digest = sha256(
            f"{self.school_id}|{self.person_id}|{self.audience.value}|{self.version}|{self.cycle}|{self.sha256}"
        ).upper()
        return f"{digest[:4]}-{digest[4:8]}"


@dataclass(frozen=True)
class AupRequest:
    """One person owing one version in one renewal cycle: when they were first asked, reminders, escalation."""

    id: int
    school_id: str
    person_id: str
    audience: Audience
    version: int
    cycle: str
    owed_since: dt.datetime
    reminders_sent: int = 0
    escalated_at: dt.datetime | None = None
    last_card: str | None = None  # the outbox dedupe key of the latest card sent for this request
    acknowledged_at: dt.datetime | None = None


def _month_day(value: str) -> tuple[int, int]:
    month, day = (int(part) for part in value.split("-"))
    dt.date(2024, month, day)  # validates (2024 allows 29 February)
    return month, day


def _boundary(year: int, month: int, day: int, tz: ZoneInfo) -> dt.datetime:
    if month == 2 and day == 29:
        try:
            dt.date(year, 2, 29)
        except ValueError:
            day = 28
    return dt.datetime(year, month, day, tzinfo=tz).astimezone(dt.UTC)


def cycle_start(now: dt.datetime, renewal_month_day: str, tz: ZoneInfo) -> dt.datetime:
    """The most recent renewal boundary (00:00 school time on the month-day) at or before now, in UTC."""
    month, day = _month_day(renewal_month_day)
    year = now.astimezone(tz).year
    start = _boundary(year, month, day, tz)
    return start if start <= now else _boundary(year - 1, month, day, tz)


def next_renewal(now: dt.datetime, renewal_month_day: str, tz: ZoneInfo) -> dt.datetime:
    month, day = _month_day(renewal_month_day)
    start = cycle_start(now, renewal_month_day, tz)
    return _boundary(start.astimezone(tz).year + 1, month, day, tz)


def cycle_key(now: dt.datetime, renewal_month_day: str, tz: ZoneInfo) -> str:
    return cycle_name(cycle_start(now, renewal_month_day, tz), tz)


def cycle_name(start: dt.datetime, tz: ZoneInfo) -> str:
    """A cycle is named by the school's date it began on."""
    return start.astimezone(tz).date().isoformat()


# --- status report ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusLine:
    person: Person
    acknowledged_at: dt.datetime | None
    owed_since: dt.datetime | None
    reminders_sent: int
    escalated: bool
    sha256: str | None


@dataclass(frozen=True)
class AudienceStatus:
    audience: Audience
    document: AupDocument | None
    lines: list[StatusLine]

    @property
    def total(self) -> int:
        return len(self.lines)

    @property
    def done(self) -> int:
        return sum(1 for line in self.lines if line.acknowledged_at)

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 100

    @property
    def outstanding(self) -> list[StatusLine]:
        return [line for line in self.lines if not line.acknowledged_at]


@dataclass(frozen=True)
class StatusReport:
    school_name: str
    cycle: str
    at: dt.datetime
    audiences: list[AudienceStatus]


def status_csv(report: StatusReport, tz: ZoneInfo) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "audience",
            "version",
            "name",
            "email",
            "status",
            "acknowledged_at",
            "asked_since",
            "reminders_sent",
            "escalated",
            "sha256",
        ]
    )
    for group in report.audiences:
        for line in group.lines:
            writer.writerow(
                [
                    group.audience.value,
                    group.document.version if group.document else "",
                    _csv_safe(line.person.name),
                    _csv_safe(line.person.email),
                    "acknowledged" if line.acknowledged_at else "outstanding",
                    _local(line.acknowledged_at, tz),
                    _local(line.owed_since, tz),
                    line.reminders_sent,
                    "yes" if line.escalated else "no",
                    line.sha256 or "",
                ]
            )
    return out.getvalue()


CSV_MAX_CHARS = 20_000  # a Teams message holds about 28 KB; leave room for the words around the CSV


def csv_parts(body: str, max_chars: int = CSV_MAX_CHARS) -> list[str]:
    """Split a CSV into pieces that each fit one Teams message, each starting with the header row."""
    header, *rows = body.splitlines(keepends=True)
    parts: list[str] = []
    current = header
    for row in rows:
        if len(current) + len(row) > max_chars and current != header:
            parts.append(current)
            current = header
        current += row
    parts.append(current)
    return parts


def _csv_safe(value: str) -> str:
    """Stop a spreadsheet treating a name as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def _local(when: dt.datetime | None, tz: ZoneInfo) -> str:
    return when.astimezone(tz).strftime("%Y-%m-%d %H:%M") if when else ""


# --- the per-turn follow-up cache ------------------------------------------------------------------------------

FOLLOW_UP_TTL = dt.timedelta(minutes=5)
# While their card is still on its way: nothing is sent to this service when that card fails (the outbox sends it), so
# a failure is noticed by looking again, about once a minute while they chat (a quiet card waits for a pause).
IN_FLIGHT_TTL = dt.timedelta(minutes=1)
FOLLOW_UP_MAX_ENTRIES = 20_000  # a few large schools' staff; each entry is a few hundred bytes
# People asked per transaction when a publish, a daily check or a renewal asks. A batch is a handful of multi-row
# statements whatever its size (see _ask_many), so it holds SQLite's one writer and the audit chain for about a
# tenth of a second: a turn waiting for the database waits about that long at most.
SWEEP_BATCH = 100
SWEEP_AHEAD = 2 * SWEEP_BATCH  # messages waiting to be sent before a sweep waits for the outbox
SWEEP_POLL_SECONDS = 0.25
SWEEP_WAIT_SECONDS = 10.0  # the longest a sweep waits between two batches
SWEEP_PACING_SECONDS = 60.0  # the longest a sweep waits in all (its lease is two minutes)
CARD_TEXT = "Please read and acknowledge the Acceptable Use Policy."  # the text beside the card (notifications)


@dataclass(frozen=True)
class _Settled:
    audience: Audience
    cycle: str
    until: dt.datetime


class FollowUpCache:
    """Remembers, per (school, person), that the follow-up after their message has nothing to do.

    An optimisation only, and local to this process: publish, acknowledge and a card queued for the person forget
    entries here. Another replica does not hear of those, and that is harmless: an entry only ever says "nothing to
    do", so the worst a stale one does is hold back a first-contact card until it expires (FOLLOW_UP_TTL); the
    publish's own sweep still sends everyone their card, and anything asked twice is deduplicated by the request's
    unique key and the work's dedupe keys. A renewal needs no forgetting: an entry is for one cycle only. Entries
    are bounded in number (the oldest go first), so the cache never grows with the directory beyond max_entries.
    """

    def __init__(self, ttl: dt.timedelta = FOLLOW_UP_TTL, max_entries: int = FOLLOW_UP_MAX_ENTRIES) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._entries: OrderedDict[tuple[str, str], _Settled] = OrderedDict()
        # Bumped by every forget: a check that began before one must not store its (possibly stale) answer after it.
        self.generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def settled(self, school_id: str, person_id: str, audience: Audience, cycle: str, now: dt.datetime) -> bool:
        entry = self._entries.get((school_id, person_id))
        if entry is None:
            return False
        if entry.audience != audience or entry.cycle != cycle or now >= entry.until:
            del self._entries[(school_id, person_id)]  # their roles changed, a new cycle began, or it is old
            return False
        return True

    def settle(
        self,
        school_id: str,
        person_id: str,
        audience: Audience,
        cycle: str,
        now: dt.datetime,
        generation: int,
        ttl: dt.timedelta | None = None,
    ) -> None:
        """Note "nothing to do" for a while (at most the cache's TTL); ignored if anything was forgotten since the
        check began (`generation`), as its answer may already be out of date."""
        if generation != self.generation:
            return
        key = (school_id, person_id)
        self._entries[key] = _Settled(audience, cycle, now + min(ttl or self._ttl, self._ttl))
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)  # the oldest: it expires first anyway

    def forget(self, school_id: str, person_id: str) -> None:
        self.generation += 1
        self._entries.pop((school_id, person_id), None)

    def forget_school(self, school_id: str) -> None:
        self.generation += 1
        for key in [key for key in self._entries if key[0] == school_id]:
            del self._entries[key]


# --- the service -----------------------------------------------------------------------------------------------


class AupRepository(Protocol):
    async def current(self, school_id: str, audience: Audience) -> AupDocument | None: ...

    async def document(self, school_id: str, audience: Audience, version: int) -> AupDocument | None: ...

    async def add_document(self, document: AupDocument) -> bool: ...

    async def acknowledgement(
        self, school_id: str, person_id: str, audience: Audience, version: int, cycle: str
    ) -> Acknowledgement | None: ...

    async def acknowledgements(
        self, school_id: str, audience: Audience, version: int, cycle: str
    ) -> list[Acknowledgement]: ...

    async def add_acknowledgement(self, ack: Acknowledgement) -> bool: ...

    async def open_request(
        self,
        school_id: str,
        person_id: str,
        audience: Audience,
        version: int,
        cycle: str,
        at: dt.datetime,
        last_card: str | None = None,
    ) -> tuple[AupRequest, bool]: ...

    async def open_requests(
        self,
        school_id: str,
        audience: Audience,
        version: int,
        cycle: str,
        at: dt.datetime,
        last_cards: Mapping[str, str | None],
    ) -> dict[str, AupRequest]: ...

    async def request(
        self, school_id: str, person_id: str, audience: Audience, version: int, cycle: str
    ) -> AupRequest | None: ...

    async def requests(self, school_id: str, audience: Audience, version: int, cycle: str) -> list[AupRequest]: ...

    async def settled_people(
        self, school_id: str, audience: Audience, version: int, cycle: str, among: Collection[str] | None = None
    ) -> set[str]: ...

    async def send_state(self, dedupe_key: str) -> tuple[str, dt.datetime] | None: ...

    async def update_request(self, request_id: int, **changes: Any) -> None: ...


DocumentSource = Callable[[Audience], str | None]  # the Markdown file's text for an audience, None if absent
CardBuilder = Callable[..., dict[str, Any]]


@dataclass
class Cards:
    """Card builders, handed in so this module stays free of presentation details."""

    aup: CardBuilder
    acknowledged: CardBuilder
    preview: CardBuilder
    status: CardBuilder


@dataclass(frozen=True)
class Preview:
    audience: Audience
    parsed: ParsedAup
    new_version: int
    current: AupDocument | None
    owing: int
    changed: bool


@dataclass
class AupService:
    uow: UnitOfWorkFactory
    directory: Directory
    clock: Clock
    school: Callable[[str], SchoolConfig | None]
    source: DocumentSource
    cards: Cards
    link: Callable[[str, Audience, int], str]
    _imported: set[str] = field(default_factory=set)
    follow_ups: FollowUpCache = field(default_factory=FollowUpCache)
    # Each school's current cycle and when it began and ends: every personal message asks for it, and working it out
    # in the school's time zone cost more than the rest of the follow-up check.
    _cycles: dict[tuple[str, str, str], tuple[str, dt.datetime, dt.datetime]] = field(default_factory=dict)

    # --- helpers ---

    def _config(self, school: SchoolConfig) -> AupConfig:
        return school.aup

    def _cycle(self, school: SchoolConfig, now: dt.datetime | None = None) -> str:
        now = now or self.clock.now()
        renewal = school.aup.renewal_month_day
        key = (school.id, renewal, str(school.tz))
        known = self._cycles.get(key)
        if known is not None and known[1] <= now < known[2]:
            return known[0]
        start = cycle_start(now, renewal, school.tz)
        cycle = cycle_name(start, school.tz)
        self._cycles[key] = (cycle, start, next_renewal(now, renewal, school.tz))
        return cycle

    def _card(self, document: AupDocument, **extra: Any) -> dict[str, Any]:
        return self.cards.aup(
            document, link=self.link(document.school_id, document.audience, document.version), **extra
        )

    def _parsed_source(self, audience: Audience) -> ParsedAup | None:
        markdown = self.source(audience)
        return parse_markdown(markdown) if markdown is not None else None

    # --- start-up import ---

    async def import_documents(self, school: SchoolConfig) -> list[AupDocument]:
        """Store each repository document whose version is newer than the stored ones (idempotent)."""
        added: list[AupDocument] = []
        async with self.uow() as uow:
            for audience in Audience:
                try:
                    parsed = self._parsed_source(audience)
                except AupFormatError as exc:  # keep the app up; the stored version stays current
                    log.error("AUP file for %s cannot be imported: %s", audience.value, exc)
                    continue
                if parsed is None:
                    continue
                current = await uow.aup.current(school.id, audience)
                if current is not None and current.version >= parsed.version:
                    continue
                document = self._document(school.id, audience, parsed, None)
                if await uow.aup.add_document(document):
                    await uow.audit.record(
                        school.id,
                        None,
                        "imported",
                        "aup_document",
                        f"{audience.value}:v{parsed.version}",
                        {"sha256": document.sha256},
                    )
                    added.append(document)
        return added

    def _document(self, school_id: str, audience: Audience, parsed: ParsedAup, by: str | None) -> AupDocument:
        return AupDocument(
            school_id,
            audience,
            parsed.version,
            parsed.title,
            parsed.summary,
            parsed.text,
            sha256(parsed.text),
            self.clock.now(),
            by,
        )

    async def start(self, school: SchoolConfig) -> None:
        """At start-up: import documents, then make sure the sweep and the next renewal are scheduled."""
        added = await self.import_documents(school)
        now = self.clock.now()
        async with self.uow() as uow:
            today = now.astimezone(school.tz).date().isoformat()
            await uow.work.schedule(school.id, SWEEP_KIND, now, {}, dedupe_key=f"{SWEEP_KIND}:{school.id}:{today}")
            for document in added:
                await self._schedule_version_sweep(uow, document, now)
            await self._schedule_renewal(uow, school, now)

    async def _schedule_version_sweep(self, uow: UnitOfWork, document: AupDocument, now: dt.datetime) -> None:
        """Ask the version's audience in the background, once per version whoever schedules it (import, publish)."""
        await uow.work.schedule(
            document.school_id,
            SWEEP_KIND,
            now,
            {"audience": document.audience.value},
            dedupe_key=f"{SWEEP_KIND}:{document.school_id}:{document.audience.value}:v{document.version}",
        )

    async def _schedule_renewal(self, uow: Any, school: SchoolConfig, now: dt.datetime) -> None:
        at = next_renewal(now, school.aup.renewal_month_day, school.tz)
        cycle = at.astimezone(school.tz).date().isoformat()
        await uow.work.schedule(
            school.id, RENEWAL_KIND, at, {"cycle": cycle}, dedupe_key=f"{RENEWAL_KIND}:{school.id}:{cycle}"
        )

    # --- who owes ---

    async def _ask(
        self,
        uow: UnitOfWork,
        school: SchoolConfig,
        person: Person,
        document: AupDocument,
        cycle: str,
        *,
        proactive: bool,
        unacknowledged: bool = False,
    ) -> tuple[AupRequest, bool] | None:
        """Open a request for one person who owes (asked in chat); the first time, queue the card (`proactive`) and
        schedule the follow-ups. A sweep asks many at once: _ask_many, which writes the same rows.

        Returns the request and whether this call opened it; None when they have acknowledged already (which the
        caller may have checked in this transaction: `unacknowledged`). The request's unique key makes "the first
        time" hold across replicas and repeated sweeps: only one caller creates it.
        """
        if not unacknowledged and await uow.aup.acknowledgement(
            school.id, person.id, document.audience, document.version, cycle
        ):
            return None
        now = self.clock.now()
        key = f"{school.id}:{person.id}:{document.audience}:v{document.version}:{cycle}"
        card_key = f"aup.card:{key}" if proactive else None
        request, created = await uow.aup.open_request(
            school.id, person.id, document.audience, document.version, cycle, now, last_card=card_key
        )
        if not created:
            return request, False
        if card_key is not None:
            await self._queue_card(uow, person, document, card_key)
        payload = {
            "person_id": person.id,
            "audience": document.audience.value,
            "version": document.version,
            "cycle": cycle,
        }
        config = school.aup
        await uow.work.schedule(
            school.id,
            REMIND_KIND,
            now + dt.timedelta(days=config.reminder_every_days),
            {**payload, "number": 1},
            dedupe_key=f"{REMIND_KIND}:{key}:1",
        )
        await uow.work.schedule(
            school.id,
            ESCALATE_KIND,
            now + dt.timedelta(days=config.escalate_after_days),
            payload,
            dedupe_key=f"{ESCALATE_KIND}:{key}",
        )
        detail = {
            "audience": document.audience.value,
            "version": document.version,
            "cycle": cycle,
            "delivery": "proactive" if proactive else "in chat",
        }
        await uow.audit.record(school.id, None, "requested", "aup_acknowledgement", person.id, detail)
        return request, True

    async def _ask_many(
        self,
        uow: UnitOfWork,
        school: SchoolConfig,
        batch: list[tuple[Person, AupDocument]],
        cycle: str,
        cards: Mapping[str, dict[str, Any]],
    ) -> int:
        """_ask (proactive, unacknowledged) for a sweep's batch, in a handful of multi-row statements however many
        people it holds: their requests, then their cards (`cards`, by person), their reminders and escalations,
        then their audit entries. Only the people whose request this call created get the rest, so a sweep run
        twice, on two replicas or alongside someone's own `aup` asks each person once. Returns how many it asked."""
        now = self.clock.now()
        groups: dict[tuple[Audience, int], tuple[AupDocument, list[Person]]] = {}
        for person, document in batch:
            groups.setdefault((document.audience, document.version), (document, []))[1].append(person)
        created: list[tuple[Person, AupDocument, str]] = []  # with the request's key
        for document, people in groups.values():
            keys = {p.id: f"{school.id}:{p.id}:{document.audience}:v{document.version}:{cycle}" for p in people}
            opened = await uow.aup.open_requests(
                school.id,
                document.audience,
                document.version,
                cycle,
                now,
                {person_id: f"aup.card:{key}" for person_id, key in keys.items()},
            )
            created.extend((p, document, keys[p.id]) for p in people if p.id in opened)
        if not created:
            return 0
        await uow.notify.to_people(
            school.id,
            [
                PersonMessage(p.id, text=CARD_TEXT, card=cards[p.id], dedupe_key=f"aup.card:{key}", quiet=True)
                for p, _, key in created
            ],
        )
        remind_at = now + dt.timedelta(days=school.aup.reminder_every_days)
        escalate_at = now + dt.timedelta(days=school.aup.escalate_after_days)
        follow_ups: list[Then] = []
        audits: list[tuple[str | None, dict[str, Any] | None]] = []
        for person, document, key in created:
            payload = {
                "person_id": person.id,
                "audience": document.audience.value,
                "version": document.version,
                "cycle": cycle,
            }
            follow_ups.append(Then(REMIND_KIND, {**payload, "number": 1}, remind_at, f"{REMIND_KIND}:{key}:1"))
            follow_ups.append(Then(ESCALATE_KIND, payload, escalate_at, f"{ESCALATE_KIND}:{key}"))
            detail = {"audience": document.audience.value, "version": document.version, "cycle": cycle}
            audits.append((person.id, {**detail, "delivery": "proactive"}))  # as _ask records a proactive ask
        await uow.work.schedule_many(school.id, follow_ups)
        # The audit chain's head last, as a single ask takes it after its request row: on PostgreSQL, taking it first
        # and then many request rows could deadlock with someone asked in chat meanwhile.
        await uow.audit.record_many(school.id, None, "requested", "aup_acknowledgement", audits)
        return len(created)

    async def deliver_owed(self, school: SchoolConfig, audience: Audience | None = None) -> int:
        """Ask everyone in the directory who owes an acknowledgement and has not been asked yet.

        Who is already settled is read once, so a repeated sweep (the daily check, a retried item) writes nothing;
        the rest are asked SWEEP_BATCH to a transaction, each batch still checked inside it, so a sweep running twice
        or on two replicas asks each person once (the request's unique key decides; see _ask_many).
        """
        people = await self.directory.everyone(school.id)
        cycle = self._cycle(school)
        wanted = [audience] if audience is not None else list(Audience)
        documents: dict[Audience, AupDocument] = {}
        settled: dict[Audience, set[str]] = {}
        async with self.uow() as uow:
            for each in wanted:
                document = await uow.aup.current(school.id, each)
                if document is not None:
                    documents[each] = _SectionsParsedOnce(**vars(document))
                    settled[each] = await uow.aup.settled_people(school.id, each, document.version, cycle)
        owing: list[tuple[Person, AupDocument]] = []
        for person in people:
            owed = audience_for(person)
            if owed is not None and owed in documents and person.id not in settled[owed]:
                owing.append((person, documents[owed]))
        # A card differs between people only by the first name it greets: one built per document and name serves
        # everyone who shares it (building a card costs more than writing its rows).
        card_for = functools.cache(lambda document, first_name: self._card(document, first_name=first_name))
        asked, paced = 0, 0.0
        for start in range(0, len(owing), SWEEP_BATCH):
            batch = owing[start : start + SWEEP_BATCH]
            # The cards are built before the unit opens: on SQLite the unit holds the one writer, so only the writes
            # happen while others wait. (Each batch is committed: a sweep cut short by a crash carries on from there
            # when the item is retried.)
            cards = {person.id: card_for(document, person.first_name) for person, document in batch}
            async with self.uow() as uow:
                done = await self._settled_among(uow, school, cycle, batch)  # e.g. acknowledged since the read
                asked += await self._ask_many(uow, school, [b for b in batch if b[0].id not in done], cycle, cards)
            # Let a waiting turn have the database before the next batch. On SQLite every unit of work shares one
            # writer connection from a pool of one; closing the unit hands it back and wakes the first waiter, but
            # the waiter only runs at the event loop's next turn, and the pool gives a connection that is already
            # back to whoever asks first without queueing, so opening the next batch straight away would take it
            # again ahead of everyone (as the publish that held every turn for 22 s did). Yielding once lets the
            # woken waiter's task run and take the connection first; this loop then queues behind it like anyone.
            await asyncio.sleep(0)
            if start + SWEEP_BATCH < len(owing) and paced < SWEEP_PACING_SECONDS:
                paced += await self._keep_pace(school)
        return asked

    async def _keep_pace(self, school: SchoolConfig) -> float:
        """Wait while more than SWEEP_AHEAD of the school's messages wait to be sent, up to SWEEP_WAIT; how long.

        Teams lets the outbox send about fifty a second, and queueing two thousand cards as fast as the database
        takes them only crowds out the sending (and everyone's replies) while it runs: the first seconds of a
        broadcast sent at half speed. A little ahead is enough to keep the outbox busy. The wait is bounded, so an
        outbox that cannot send (Teams away) never holds up the asking: the cards wait in the queue either way.
        A sweep paces itself for SWEEP_PACING_SECONDS at most, well within its lease, and then asks the rest.
        """
        waited = 0.0
        while waited < SWEEP_WAIT_SECONDS:
            async with self.uow() as uow:
                if await uow.notify.waiting(school.id) <= SWEEP_AHEAD:
                    break
            await asyncio.sleep(SWEEP_POLL_SECONDS)
            waited += SWEEP_POLL_SECONDS
        return waited

    async def _settled_among(
        self, uow: UnitOfWork, school: SchoolConfig, cycle: str, people: list[tuple[Person, AupDocument]]
    ) -> set[str]:
        by_document: dict[tuple[Audience, int], list[str]] = {}
        for person, document in people:
            by_document.setdefault((document.audience, document.version), []).append(person.id)
        settled: set[str] = set()
        for (audience, version), ids in by_document.items():
            settled |= await uow.aup.settled_people(school.id, audience, version, cycle, ids)
        return settled

    async def _owed(
        self, uow: Any, school: SchoolConfig, person: Person
    ) -> tuple[AupDocument | None, Acknowledgement | None]:
        audience = audience_for(person)
        if audience is None:
            return None, None
        document = await uow.aup.current(school.id, audience)
        if document is None:
            return None, None
        ack = await uow.aup.acknowledgement(school.id, person.id, audience, document.version, self._cycle(school))
        return document, ack

    # --- commands ---

    async def show(self, actor: Actor) -> tuple[str | None, dict[str, Any] | None]:
        """The `aup` command: the card to acknowledge, or a receipt if already done."""
        async with self.uow() as uow:
            document, ack = await self._owed(uow, actor.school, actor.person)
            if document is None:
                return (
                    "There is no Acceptable Use Policy for you to acknowledge here. If you think there should "
                    "be, please speak to the online-safety lead."
                ), None
            if ack is None:
                await self._ask(uow, actor.school, actor.person, document, self._cycle(actor.school), proactive=False)
            # The audit entry last, as everywhere here: the chain's lock is taken after any request row, so this
            # can never wait on a sweep that holds the row while the sweep waits on the chain (a deadlock).
            await uow.audit.record(
                actor.school_id, actor.person.id, "viewed", "aup_document", f"{document.audience}:v{document.version}"
            )
            if ack is not None:
                return None, self.cards.acknowledged(
                    document,
                    ack,
                    link=self.link(actor.school_id, document.audience, document.version),
                    tz=actor.school.tz,
                )
            return None, self._card(document, first_name=actor.person.first_name)

    async def _send_card(
        self,
        uow: Any,
        person: Person,
        document: AupDocument,
        request: AupRequest,
        key: str,
        *,
        notice: str | None = None,
        text: str | None = None,
    ) -> None:
        await self._queue_card(uow, person, document, key, notice=notice, text=text)
        await uow.aup.update_request(request.id, last_card=key)

    async def _queue_card(
        self,
        uow: Any,
        person: Person,
        document: AupDocument,
        key: str,
        *,
        notice: str | None = None,
        text: str | None = None,
    ) -> None:
        """Queue the card (once per key: the outbox's dedupe key); the caller records `key` on the request."""
        await uow.notify.to_person(
            document.school_id,
            person.id,
            card=self._card(document, first_name=person.first_name, notice=notice),
            text=text or CARD_TEXT,
            dedupe_key=key,
            quiet=True,
        )

    async def follow_up(self, actor: Actor) -> dict[str, Any] | None:
        """First contact from someone who owes: their card follows through the outbox a minute after our reply.

        Also when the last card we queued could not be delivered (they had not opened the app then). The card
        comes as its own message rather than inside the reply, so it never hides what they asked for. This runs
        after every personal message, so the answer "nothing to do" is cached (FollowUpCache): most turns open no
        unit of work at all, and a check opens exactly one.
        """
        audience = audience_for(actor.person)
        if actor.conversation_kind != "personal" or audience is None:
            return None
        school, person = actor.school, actor.person
        now = self.clock.now()
        cycle = self._cycle(school, now)
        cache = self.follow_ups
        if cache.settled(school.id, person.id, audience, cycle, now):
            return None
        generation = cache.generation
        trust = await self._check_follow_up(school, person, audience, cycle, now)
        cache.settle(school.id, person.id, audience, cycle, now, generation, trust)
        return None

    async def _check_follow_up(
        self, school: SchoolConfig, person: Person, audience: Audience, cycle: str, now: dt.datetime
    ) -> dt.timedelta:
        """Queue the person's card if they should have it now; returns how long asking again could change nothing."""
        async with self.uow() as uow:
            document = await uow.aup.current(school.id, audience)
            if document is None:
                return FOLLOW_UP_TTL  # until a publish, which forgets the cache
            if await uow.aup.acknowledgement(school.id, person.id, audience, document.version, cycle):
                return FOLLOW_UP_TTL
            request = await uow.aup.request(school.id, person.id, audience, document.version, cycle)
            if request is not None:
                if request.last_card is None:
                    # They opened it with `aup`, or a delivery is on its way (which forgets the cache when it queues
                    # the card, so the card is then watched like any other).
                    return FOLLOW_UP_TTL
                state = await uow.aup.send_state(request.last_card)
                if state is not None and state[0] in ("pending", "running"):
                    return IN_FLIGHT_TTL  # still on its way: if it fails, a later message must notice
                if state is None or state[0] not in ("failed", "cancelled"):
                    return FOLLOW_UP_TTL  # delivered
            else:
                asked = await self._ask(uow, school, person, document, cycle, proactive=False, unacknowledged=True)
                if asked is None:
                    return FOLLOW_UP_TTL
                request = asked[0]
            today = now.astimezone(school.tz).date().isoformat()
            await uow.work.schedule(
                school.id,
                DELIVER_KIND,
                now + FIRST_CONTACT_DELAY,
                {
                    "person_id": person.id,
                    "audience": document.audience.value,
                    "version": document.version,
                    "cycle": cycle,
                },
                dedupe_key=f"{DELIVER_KIND}:{_request_key(request)}:{today}",
            )
        # The delivery is queued (or was already, today: the dedupe key keeps it to one a day); it forgets the cache
        # when it queues the card.
        return FOLLOW_UP_TTL

    async def acknowledge(self, actor: Actor, data: dict[str, Any]) -> CardReply:
        """Record an acknowledgement of the current version, once; anything else gets the right card back."""
        school, person = actor.school, actor.person
        async with self.uow() as uow:
            document, ack = await self._owed(uow, school, person)
            if document is None:
                raise Refused("There is no Acceptable Use Policy for you to acknowledge here.")
            link = self.link(school.id, document.audience, document.version)
            given: Any = data.get("version")
            try:
                version = int(given)
            except (TypeError, ValueError):
                version = None
            if ack is not None:
                return CardReply(
                    card=self.cards.acknowledged(document, ack, link=link, tz=school.tz),
                    message="You have already acknowledged this version. Nothing more to do.",
                )
            if data.get("audience") != document.audience.value or version != document.version:
                return CardReply(
                    card=self._card(
                        document,
                        first_name=person.first_name,
                        notice=(
                            f"This policy has been updated to version {document.version}. Please read this version and "
                            "confirm again."
                        ),
                    ),
                    message="A newer version of the policy is waiting for you.",
                )
            read_kcsie = _ticked(data.get("read_kcsie"))
            agreed = _ticked(data.get("agree"))
            if not (read_kcsie and agreed):
                return CardReply(
                    card=self._card(
                        document,
                        first_name=person.first_name,
                        notice=(
                            "Please tick both boxes to confirm, then press Submit. If you have not read Part 1 of "
                            "Keeping Children Safe in Education yet, please read it first."
                        ),
                    ),
                    message="Please tick both boxes, then press Submit.",
                )
            cycle = self._cycle(school)
            new = Acknowledgement(
                school.id,
                person.id,
                person.name,
                document.audience,
                document.version,
                cycle,
                document.sha256,
                read_kcsie,
                agreed,
                self.clock.now(),
            )
            if await uow.aup.add_acknowledgement(new):
                self.follow_ups.forget(school.id, person.id)
                request = await uow.aup.request(school.id, person.id, document.audience, document.version, cycle)
                if request is not None:  # the request row before the audit chain (see `show`)
                    await uow.aup.update_request(request.id, acknowledged_at=new.at)
                await uow.audit.record(
                    school.id,
                    person.id,
                    "acknowledged",
                    "aup_acknowledgement",
                    person.id,
                    {
                        "audience": document.audience.value,
                        "version": document.version,
                        "cycle": cycle,
                        "sha256": document.sha256,
                        "read_kcsie": read_kcsie,
                        "agreed": agreed,
                    },
                )
            recorded = await uow.aup.acknowledgement(school.id, person.id, document.audience, document.version, cycle)
            return CardReply(
                card=self.cards.acknowledged(document, recorded or new, link=link, tz=school.tz),
                message="Thank you. Your acknowledgement is recorded.",
            )

    async def preview(self, actor: Actor, audience: Audience) -> Preview:
        school = actor.school
        try:
            parsed = self._parsed_source(audience)
        except AupFormatError as exc:
            raise Refused(
                f"The {AUDIENCE_NAMES[audience]} AUP file cannot be used yet: {exc}. Please fix it and try again."
            ) from exc
        if parsed is None:
            raise Refused(f"There is no {AUDIENCE_NAMES[audience]} AUP file in the app's repository (config/aup/).")
        people = [p for p in await self.directory.everyone(school.id) if audience_for(p) == audience]
        async with self.uow() as uow:
            current = await uow.aup.current(school.id, audience)
        new_version = max(parsed.version, current.version + 1 if current else 1)
        changed = current is None or current.content_hash != parsed.content_hash
        return Preview(audience, parsed, new_version, current, len(people), changed)

    async def publish_preview_card(self, actor: Actor, audience: Audience) -> dict[str, Any]:
        return self.cards.preview(await self.preview(actor, audience))

    async def publish(self, actor: Actor, data: dict[str, Any]) -> CardReply:
        audience = parse_audience(str(data.get("audience") or ""))
        if audience is None:
            return CardReply(
                message="Sorry, I could not tell which AUP to publish. Type `aup publish staff`, "
                "`aup publish governor` or `aup publish volunteer`."
            )
        preview = await self.preview(actor, audience)
        if str(data.get("version")) != str(preview.new_version) or data.get("content") != preview.parsed.content_hash:
            if preview.current and str(data.get("version")) == str(preview.current.version):
                return CardReply(
                    message=f"Version {preview.current.version} of the {AUDIENCE_NAMES[audience]} "
                    "AUP is already published. Nothing more to do."
                )
            return CardReply(
                card=self.cards.preview(
                    preview,
                    notice=(
                        "Something changed since you opened this preview. Please check it and press Publish again."
                    ),
                ),
                message="Please check the updated preview.",
            )
        parsed = with_version(preview.parsed, preview.new_version)
        document = self._document(actor.school_id, audience, parsed, actor.person.id)
        async with self.uow() as uow:
            if not await uow.aup.add_document(document):
                return CardReply(
                    message=f"Version {document.version} of the {AUDIENCE_NAMES[audience]} AUP is "
                    "already published. Nothing more to do."
                )
            await uow.audit.record(
                actor.school_id,
                actor.person.id,
                "published",
                "aup_document",
                f"{audience.value}:v{document.version}",
                {"sha256": document.sha256},
            )
            # The cards go from the worker, not this turn: Teams gives a card action a few seconds, and asking a
            # whole staff here held the database for everyone else's turns.
            await self._schedule_version_sweep(uow, document, self.clock.now())
        self.follow_ups.forget_school(actor.school_id)  # after the commit: a check from now on sees the new version
        return CardReply(message=_published_message(document, preview.owing))

    async def status(self, actor: Actor) -> StatusReport:
        school = actor.school
        cycle = self._cycle(school)
        people = await self.directory.everyone(school.id)
        groups: list[AudienceStatus] = []
        async with self.uow() as uow:
            for audience in Audience:
                document = await uow.aup.current(school.id, audience)
                members = [p for p in people if audience_for(p) == audience]
                acks, requests = {}, {}
                if document is not None:
                    acks = {
                        a.person_id: a
                        for a in await uow.aup.acknowledgements(school.id, audience, document.version, cycle)
                    }
                    requests = {
                        r.person_id: r for r in await uow.aup.requests(school.id, audience, document.version, cycle)
                    }
                lines = [
                    StatusLine(
                        p,
                        acks[p.id].at if p.id in acks else None,
                        requests[p.id].owed_since if p.id in requests else None,
                        requests[p.id].reminders_sent if p.id in requests else 0,
                        bool(p.id in requests and requests[p.id].escalated_at),
                        acks[p.id].sha256 if p.id in acks else None,
                    )
                    for p in members
                ]
                if members or document is not None:
                    groups.append(AudienceStatus(audience, document, lines))
            await uow.audit.record(
                school.id,
                actor.person.id,
                "viewed",
                "aup_status",
                cycle,
                {"outstanding": sum(len(g.outstanding) for g in groups)},
            )
        return StatusReport(school.name, cycle, self.clock.now(), groups)

    # --- durable work ---

    async def run_sweep(self, item: WorkItem) -> str:
        school = self.school(item.school_id)
        if school is None:
            return "school no longer configured"
        audience = parse_audience(item.payload.get("audience") or "") if item.payload.get("audience") else None
        asked = await self.deliver_owed(school, audience)
        if audience is None:
            now = self.clock.now()
            tomorrow = now + dt.timedelta(days=1)
            async with self.uow() as uow:
                await uow.work.schedule(
                    school.id,
                    SWEEP_KIND,
                    tomorrow,
                    {},
                    dedupe_key=(f"{SWEEP_KIND}:{school.id}:{tomorrow.astimezone(school.tz).date().isoformat()}"),
                )
        return f"asked {asked}"

    async def run_renewal(self, item: WorkItem) -> str:
        school = self.school(item.school_id)
        if school is None:
            return "school no longer configured"
        async with self.uow() as uow:
            await uow.audit.record(school.id, None, "renewal_started", "aup_cycle", self._cycle(school))
            await self._schedule_renewal(uow, school, self.clock.now())
        asked = await self.deliver_owed(school)
        return f"asked {asked}"

    async def _still_owed(
        self, uow: Any, item: WorkItem
    ) -> tuple[SchoolConfig, Person, AupDocument, AupRequest] | None:
        school = self.school(item.school_id)
        payload = item.payload
        if school is None or payload.get("cycle") != self._cycle(school):
            return None
        person = await self.directory.person(school.id, payload["person_id"])
        audience = parse_audience(payload.get("audience") or "")
        if person is None or audience is None or audience_for(person) != audience:
            return None
        document = await uow.aup.current(school.id, audience)
        if document is None or document.version != payload.get("version"):
            return None
        if await uow.aup.acknowledgement(school.id, person.id, audience, document.version, payload["cycle"]):
            return None
        request = await uow.aup.request(school.id, person.id, audience, document.version, payload["cycle"])
        return (school, person, document, request) if request else None

    async def run_reminder(self, item: WorkItem) -> str:
        async with self.uow() as uow:
            owed = await self._still_owed(uow, item)
            if owed is None:
                return "no longer owed"
            school, person, document, request = owed
            number = int(item.payload.get("number", 1))
            key = f"{school.id}:{person.id}:{document.audience}:v{document.version}:{item.payload['cycle']}"
            since = request.owed_since.astimezone(school.tz).strftime("%d %B")
            await self._send_card(
                uow,
                person,
                document,
                request,
                f"aup.reminder:{key}:{number}",
                notice=f"Reminder: we first asked you on {since}. It takes a few minutes.",
                text="Reminder: please acknowledge the Acceptable Use Policy.",
            )
            await uow.aup.update_request(request.id, reminders_sent=request.reminders_sent + 1)
            await uow.work.schedule(
                school.id,
                REMIND_KIND,
                self.clock.now() + dt.timedelta(days=school.aup.reminder_every_days),
                {**item.payload, "number": number + 1},
                dedupe_key=f"{REMIND_KIND}:{key}:{number + 1}",
            )
            await uow.audit.record(
                school.id,
                None,
                "reminded",
                "aup_acknowledgement",
                person.id,
                {"version": document.version, "number": number},
            )
        self.follow_ups.forget(school.id, person.id)  # a card on its way: their next message watches it again
        return f"reminder {number}"

    async def run_delivery(self, item: WorkItem) -> str:
        """The card for someone who made first contact (or whose earlier card could not be delivered)."""
        async with self.uow() as uow:
            owed = await self._still_owed(uow, item)
            if owed is None:
                return "no longer owed"
            school, person, document, request = owed
            today = self.clock.now().astimezone(school.tz).date().isoformat()
            await self._send_card(uow, person, document, request, f"aup.card:{_request_key(request)}:{today}")
        self.follow_ups.forget(school.id, person.id)  # a card on its way: their next message watches it again
        return "card queued"

    async def run_escalation(self, item: WorkItem) -> str:
        async with self.uow() as uow:
            owed = await self._still_owed(uow, item)
            if owed is None:
                return "no longer owed"
            school, person, document, request = owed
            if request.escalated_at is not None:
                return "already escalated"
            since = request.owed_since.astimezone(school.tz).strftime("%d %B %Y")
            key = f"{school.id}:{person.id}:{document.audience}:v{document.version}:{item.payload['cycle']}"
            told: list[str] = []
            manager = await self.directory.line_manager(school.id, person.id)
            message = (
                f"{person.name} has not yet acknowledged the {AUDIENCE_NAMES[document.audience]} Acceptable "
                f"Use Policy (version {document.version}). We first asked them on {since} and have sent "
                f"{request.reminders_sent} reminder{'' if request.reminders_sent == 1 else 's'}. "
            )
            if manager is not None and manager.id != person.id:
                await uow.notify.to_person(
                    school.id,
                    manager.id,
                    text=message + ("As their line manager, please ask them to open the eSafety app and type `aup`."),
                    dedupe_key=f"aup.escalate.manager:{key}",
                    quiet=True,
                )
                told.append(manager.id)
            for lead in await self.directory.people_with_role(school.id, Role.ONLINE_SAFETY_LEAD):
                if lead.id in told or lead.id == person.id:
                    continue
                follow = (
                    f"I am letting their line manager, {manager.name}, know too."
                    if manager and manager.id in told
                    else "They have no line manager on record, so please follow this up yourself."
                )
                await uow.notify.to_person(
                    school.id,
                    lead.id,
                    text=message + follow + " Type `aup status` to see everyone outstanding.",
                    dedupe_key=f"aup.escalate.lead:{key}:{lead.id}",
                    quiet=True,
                )
                told.append(lead.id)
            await uow.aup.update_request(request.id, escalated_at=self.clock.now())
            await uow.audit.record(
                school.id,
                None,
                "escalated",
                "aup_acknowledgement",
                person.id,
                {"version": document.version, "told": told},
            )
        return f"told {len(told)}"


class _SectionsParsedOnce(AupDocument):
    """The same document, its sections parsed once: a sweep builds a card from it for each of thousands of people,
    and parsing the text again for every card was about a quarter of the sweep's time."""

    @functools.cached_property
    def sections(self) -> tuple[Section, ...]:
        return parse_markdown(self.text).sections


def _published_message(document: AupDocument, owing: int) -> str:
    published = f"Published version {document.version} of the {AUDIENCE_NAMES[document.audience]} AUP."
    if owing == 0:
        return f"{published} Nobody in the directory needs to acknowledge it yet; anyone who joins will be asked."
    who = "the 1 person who needs" if owing == 1 else f"the {owing:,} people who need"
    return (
        f"{published} The card is on its way to {who} to acknowledge it. Type `aup status` to follow progress; "
        "I will remind anyone who has not acknowledged it."
    )


def _request_key(request: AupRequest) -> str:
    return f"{request.school_id}:{request.person_id}:{request.audience}:v{request.version}:{request.cycle}"


def _ticked(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


FollowUp = Callable[[Actor], Awaitable[dict[str, Any] | None]]
