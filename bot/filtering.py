"""Web-filter change requests: sites, the school's rules, the change log and the backend protocol.

Plain dataclasses and functions only; storage, Teams and the filter itself sit behind protocols.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit

import idna

from bot.people import Person, Role

# --- sites ---------------------------------------------------------------------------------------------------

# Public suffixes with more than one label, plus the wildcard rules that matter for schools. A small list kept in
# the repo (rather than tldextract's 200 KB snapshot) because the filter needs the registrable domain of sites
# teachers ask about, and any suffix missing here falls back to "the last label is the suffix", which only ever
# makes the domain *shorter* for an unlisted multi-label suffix: the request then names a broader site, which
# the approver sees on the card before anything is changed.
MULTI_LABEL_SUFFIXES = frozenset({
    # United Kingdom
    "co.uk", "org.uk", "me.uk", "ltd.uk", "plc.uk", "net.uk", "ac.uk", "gov.uk", "nhs.uk", "police.uk", "mod.uk",
    "nic.uk", "sch.uk", "parliament.uk", "judiciary.uk",
    # Ireland, Australia, New Zealand, South Africa, India, Japan, Brazil, others often seen in lessons
    "gov.ie", "com.au", "net.au", "org.au", "edu.au", "gov.au", "co.nz", "org.nz", "govt.nz", "ac.nz", "co.za",
    "org.za", "gov.za", "ac.za", "co.in", "org.in", "gov.in", "ac.in", "co.jp", "ac.jp", "or.jp", "com.br",
    "org.br", "gov.br", "com.cn", "edu.cn", "com.sg", "edu.sg", "com.hk", "co.kr", "com.mx", "com.tr", "co.il",
    "com.ar", "europa.eu",
    # Hosting platforms where each customer has their own site (private section of the Public Suffix List)
    "github.io", "gitlab.io", "blogspot.com", "herokuapp.com", "azurewebsites.net", "cloudfront.net",
    "appspot.com", "pages.dev", "netlify.app", "vercel.app", "web.app", "firebaseapp.com", "glitch.me",
    "neocities.org", "wixsite.com", "weebly.com", "substack.com", "translate.goog", "repl.co", "onrender.com",
})
# "*.sch.uk": English schools sit one level further down, e.g. oakfield.kent.sch.uk.
WILDCARD_SUFFIXES = frozenset({"sch.uk"})
_LABEL = re.compile(r"^(xn--)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_TLD = re.compile(r"^([a-z]{2,63}|xn--[a-z0-9-]{1,59})$")


class BadSite(ValueError):
    """The text is not a web address the filter can act on; the message says why, kindly."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Site:
    url: str  # normalised: scheme, IDNA host, path kept
    host: str  # ASCII (punycode) host name
    domain: str  # registrable domain, ASCII

    @property
    def display_domain(self) -> str:
        """The domain as people read it (Unicode for international names)."""
        return domain_display(self.domain)

    @property
    def display_host(self) -> str:
        return domain_display(self.host)


def domain_display(domain: str) -> str:
    """An ASCII (punycode) domain as people read it."""
    try:
        return idna.decode(domain) if domain else domain
    except idna.IDNAError:
        return domain


def registrable_domain(host: str) -> str:
    """The part of a host name someone can register: one label more than its public suffix."""
    labels = host.split(".")
    for size in range(min(len(labels), 4), 0, -1):
        candidate = ".".join(labels[-size:])
        parent = ".".join(labels[-size + 1:]) if size > 1 else ""
        if parent in WILDCARD_SUFFIXES and size >= 2:
            suffix_size = size
            break
        if candidate in MULTI_LABEL_SUFFIXES:
            suffix_size = size
            break
    else:
        suffix_size = 1
    if len(labels) <= suffix_size:
        raise BadSite(f"\"{host}\" is only the end of a web address. Please give the whole site name, for example "
                      f"bbc.co.uk.")
    return ".".join(labels[-(suffix_size + 1):])


def normalise_site(text: str) -> Site:
    """Validate and normalise what someone typed or pasted: scheme, IDNA host name and registrable domain."""
    raw = (text or "").strip().strip("<>\"'")
    if not raw:
        raise BadSite("Please paste the web address of the site, for example https://www.bbc.co.uk/bitesize.")
    if len(raw) > 2000:
        raise BadSite("That web address is too long. Please paste just the site's main address.")
    if any(ch.isspace() for ch in raw):
        raise BadSite("A web address has no spaces in it. Please paste just the address, for example "
                      "www.bbc.co.uk.")
    other_scheme = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*):(?!\d)", raw)
    if other_scheme and other_scheme.group(1).lower() not in ("http", "https"):
        raise BadSite("Only web sites (addresses starting http or https) can be filtered. Please paste the site's "
                      "web address.")
    if "://" not in raw:
        raw = "https://" + raw.lstrip("/")
    try:
        parts = urlsplit(raw)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        raise BadSite("I couldn't read that as a web address. Please paste it again, for example "
                      "https://www.bbc.co.uk.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise BadSite("Only web sites (addresses starting http or https) can be filtered. Please paste the site's "
                      "web address.")
    host = host.rstrip(".")
    if not host:
        raise BadSite("I couldn't find a site name in that. Please paste the address, for example www.bbc.co.uk.")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        raise BadSite("Please give the site's name rather than a number address (IP address), so the filter can "
                      "match it.")
    try:
        ascii_host = idna.encode(host, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        raise BadSite(f"\"{host[:60]}\" is not a valid site name. Please check the spelling and paste it "
                      f"again.") from None
    labels = ascii_host.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels) or not _TLD.match(labels[-1]):
        raise BadSite(f"\"{host[:60]}\" is not a complete site name. It should look like example.co.uk.")
    domain = registrable_domain(ascii_host)
    netloc = ascii_host if port in (None, 80, 443) else f"{ascii_host}:{port}"
    url = f"{scheme}://{netloc}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")
    return Site(url=url, host=ascii_host, domain=domain)


def domain_matches(domain: str, listed: str) -> bool:
    """True when domain is the listed domain or one of its subdomains."""
    listed = listed.strip().lower().lstrip(".")
    return bool(listed) and (domain == listed or domain.endswith("." + listed))


# --- the request ---------------------------------------------------------------------------------------------


class Kind(StrEnum):
    UNBLOCK = "unblock"
    BLOCK = "block"
    MISSED = "missed"  # something got through that should have been blocked
    OVERBLOCKING = "overblocking"  # a site is blocked that should not be


KIND_LABELS = {
    Kind.UNBLOCK: "Unblock a site",
    Kind.BLOCK: "Block a site",
    Kind.MISSED: "Report something that should have been blocked",
    Kind.OVERBLOCKING: "Report a site blocked by mistake",
}


class Audience(StrEnum):
    ALL_PUPILS = "all_pupils"
    YEAR_GROUPS = "year_groups"
    STAFF = "staff"


AUDIENCE_LABELS = {Audience.ALL_PUPILS: "All pupils", Audience.YEAR_GROUPS: "Chosen year groups",
                   Audience.STAFF: "Staff only"}


def audience_text(audience: str | None, year_groups: tuple[str, ...] | list[str] = ()) -> str:
    """Who a change is for, in words ("Year 5, Year 6", "All pupils"): never the stored key."""
    if audience == Audience.YEAR_GROUPS and year_groups:
        return ", ".join(year_groups)
    if audience in set(Audience):
        return AUDIENCE_LABELS[Audience(audience)]
    return "-" if not audience else audience.replace("_", " ").capitalize()


class Status(StrEnum):
    PENDING = "pending"
    INFO_REQUESTED = "info_requested"
    APPROVED = "approved"  # waiting to be applied
    DECLINED = "declined"
    APPLIED = "applied"
    FAILED = "failed"  # the backend could not apply it after retries
    EXPIRED = "expired"  # a temporary unblock's time is up; a technician is removing it by hand
    REVERTED = "reverted"
    LINKED = "linked"  # the same site was already asked for; follows the first request


STATUS_LABELS = {
    Status.PENDING: "Waiting for approval", Status.INFO_REQUESTED: "More information asked for",
    Status.APPROVED: "Approved, being applied", Status.DECLINED: "Declined", Status.APPLIED: "In place",
    Status.FAILED: "Approved, but the filter change failed", Status.EXPIRED: "Time is up, being removed",
    Status.REVERTED: "Ended", Status.LINKED: "Linked to an earlier request",
}
OPEN_STATUSES = frozenset({Status.PENDING, Status.INFO_REQUESTED, Status.APPROVED})
DECIDABLE = frozenset({Status.PENDING, Status.INFO_REQUESTED})


@dataclass(frozen=True)
class Draft:
    """What the requester has told the dialog so far; everything is optional until the summary."""

    kind: str | None = None
    url: str | None = None
    domain: str | None = None
    audience: str | None = None
    year_groups: tuple[str, ...] = ()
    reason: str | None = None
    lesson_date: dt.date | None = None
    until: dt.datetime | None = None  # None: permanent
    previewed: bool = False

    def to_state(self) -> dict[str, Any]:
        return {"kind": self.kind, "url": self.url, "domain": self.domain, "audience": self.audience,
                "year_groups": list(self.year_groups), "reason": self.reason,
                "lesson_date": self.lesson_date.isoformat() if self.lesson_date else None,
                "until": self.until.isoformat() if self.until else None, "previewed": self.previewed}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> Draft:
        state = state or {}
        return cls(
            kind=state.get("kind"), url=state.get("url"), domain=state.get("domain"), audience=state.get("audience"),
            year_groups=tuple(state.get("year_groups") or ()), reason=state.get("reason"),
            lesson_date=dt.date.fromisoformat(state["lesson_date"]) if state.get("lesson_date") else None,
            until=dt.datetime.fromisoformat(state["until"]) if state.get("until") else None,
            previewed=bool(state.get("previewed")),
        )

    def with_(self, **changes: Any) -> Draft:
        return replace(self, **changes)

    @property
    def allows(self) -> bool:
        """True when approving this would let the site through."""
        return self.kind in (Kind.UNBLOCK, Kind.OVERBLOCKING)


@dataclass(frozen=True)
class FilterRequest:
    id: int
    school_id: str
    reference: str
    kind: str
    url: str
    domain: str
    audience: str
    year_groups: tuple[str, ...]
    reason: str
    lesson_date: dt.date | None
    until: dt.datetime | None
    previewed: bool
    categories: tuple[str, ...]
    needs_headteacher: bool
    status: str
    requester_id: str
    requester_name: str
    created_at: dt.datetime
    approver_id: str | None = None
    approver_name: str | None = None
    decided_at: dt.datetime | None = None
    decision_note: str | None = None
    applier_id: str | None = None
    applier_name: str | None = None
    applied_at: dt.datetime | None = None
    backend_result: str | None = None
    reverted_at: dt.datetime | None = None
    linked_to: str | None = None
    version: int = 1

    @property
    def allows(self) -> bool:
        return self.kind in (Kind.UNBLOCK, Kind.OVERBLOCKING)

    @property
    def action(self) -> str:
        """What the filter must do: 'allow' or 'block'."""
        return "allow" if self.allows else "block"

    def with_(self, **changes: Any) -> FilterRequest:
        return replace(self, **changes)


@dataclass(frozen=True)
class LogEntry:
    """One line of the change log governors review: what happened to which request, who and when."""

    at: dt.datetime
    action: str  # requested, refused, linked, approved, declined, info_requested, info_given, applied, apply_failed,
    # expired, reverted, concern_reported
    actor_id: str | None
    actor_name: str
    domain: str
    reference: str | None = None
    detail: str = ""


# --- the rules -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilterRules:
    """The policy's filtering rules for one school: never-unblock lists and the Headteacher categories."""

    never_unblock_domains: tuple[str, ...] = ()
    never_unblock_categories: tuple[str, ...] = ()
    headteacher_categories: tuple[str, ...] = ()
    social_networking_domains: tuple[str, ...] = ()
    domain_categories: dict[str, str] = field(default_factory=dict)  # the school's own known sites -> category

    @classmethod
    def from_policy(cls, policy_filtering: Any, school_filtering: Any) -> FilterRules:
        return cls(
            never_unblock_domains=tuple(policy_filtering.never_unblock_domains)
            + tuple(getattr(school_filtering, "never_unblock_domains", ()) or ()),
            never_unblock_categories=tuple(policy_filtering.never_unblock_categories),
            headteacher_categories=tuple(policy_filtering.headteacher_approval_categories),
            social_networking_domains=tuple(policy_filtering.social_networking_domains),
            domain_categories=dict(getattr(school_filtering, "domain_categories", {}) or {}),
        )

    def categories(self, domain: str) -> tuple[str, ...]:
        """Categories the school knows for a domain (its own list, then the social-networking list)."""
        found = [category for listed, category in self.domain_categories.items() if domain_matches(domain, listed)]
        if any(domain_matches(domain, listed) for listed in self.social_networking_domains):
            found.append("social_networking")
        return tuple(dict.fromkeys(found))

    def never_unblock_reason(self, domain: str) -> str | None:
        """Why this site may never be unblocked, or None when it may be asked for."""
        if any(domain_matches(domain, listed) for listed in self.never_unblock_domains):
            return "it is on the school's list of sites that are never unblocked"
        banned = [c for c in self.categories(domain) if c in self.never_unblock_categories]
        if banned:
            return f"it is in a category the school never unblocks ({banned[0].replace('_', ' ')})"
        return None

    def needs_headteacher(self, domain: str) -> bool:
        return any(c in self.headteacher_categories for c in self.categories(domain))


class ConcurrentChange(Exception):  # noqa: N818 - someone else changed the request first
    """Raised by storage when a request changed between reading and writing it."""


class DuplicateRequest(Exception):  # noqa: N818 - an outcome the service turns into "the same request again"
    """Another transaction committed a request with this idempotency key first."""


class FilterRefused(Exception):  # noqa: N818 - a user-facing outcome
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


VIEWER_ROLES = frozenset({Role.FILTERING_APPROVER, Role.HEADTEACHER, Role.TECHNICIAN, Role.ONLINE_SAFETY_LEAD,
                          Role.SLT, Role.GOVERNOR, Role.CHAIR_OF_GOVERNORS})


def can_view(request: FilterRequest, person: Person) -> bool:
    """The requester, and the people who decide, apply or oversee filter changes."""
    return person.id == request.requester_id or bool(person.roles & VIEWER_ROLES)


def check_can_decide(request: FilterRequest, person: Person) -> None:
    """Raise FilterRefused unless this person may approve, decline or question the request now."""
    if person.id == request.requester_id:
        raise FilterRefused("You can't decide on your own request. Another filtering approver will look at it.")
    if not person.has(Role.FILTERING_APPROVER, Role.HEADTEACHER):
        raise FilterRefused("Only the school's filtering approvers can decide on filter requests.")
    if request.needs_headteacher and not person.has(Role.HEADTEACHER):
        raise FilterRefused("Unblocking social networking, messaging or chat sites needs the Headteacher's "
                            "approval, so this one is waiting for them.")
    if request.status not in DECIDABLE:
        who = f" by {request.approver_name}" if request.approver_name else ""
        raise FilterRefused(f"{request.reference} has already been decided{who}: "
                            f"{STATUS_LABELS.get(Status(request.status), request.status).lower()}.")


def check_can_apply(request: FilterRequest, person: Person, technicians: list[Person]) -> None:
    """The approver does not also apply the change when the school has someone else who can."""
    if not person.has(Role.TECHNICIAN):
        raise FilterRefused("Only the school's technicians can mark filter changes as applied.")
    others = [t for t in technicians if t.id != request.approver_id]
    if person.id == request.approver_id and others:
        raise FilterRefused("You approved this change, so someone else must apply it. Please ask another "
                            "technician if it is urgent.")


# --- parsing what people type ------------------------------------------------------------------------------------

_KIND_WORDS = {
    Kind.UNBLOCK: {"1", "unblock", "unblock a site", "allow"},
    Kind.BLOCK: {"2", "block", "block a site"},
    Kind.MISSED: {"3", "missed", "report", "should have been blocked", "got through", "report something"},
    Kind.OVERBLOCKING: {"4", "overblocking", "over-blocking", "over blocking", "blocked by mistake"},
}
_AUDIENCE_WORDS = {
    Audience.ALL_PUPILS: {"1", "all", "all pupils", "pupils", "everyone"},
    Audience.YEAR_GROUPS: {"2", "year groups", "years", "chosen year groups", "some year groups", "year group"},
    Audience.STAFF: {"3", "staff", "staff only", "teachers"},
}


def _pick(text: str, table: dict[Any, set[str]]) -> Any | None:
    cleaned = " ".join((text or "").lower().replace("_", " ").split()).strip(".!")
    for key, words in table.items():
        if cleaned in words or cleaned == str(key).replace("_", " "):
            return key
    return None


def parse_kind(text: str) -> Kind | None:
    return _pick(text, _KIND_WORDS)


def parse_audience(text: str) -> Audience | None:
    return _pick(text, _AUDIENCE_WORDS)


def parse_year_groups(text: str) -> tuple[str, ...]:
    """'Year 5, 6', 'Y7-9', 'Reception and 1' -> ('Reception', 'Year 1', ...); empty when it can't be read."""
    cleaned = (text or "").lower().replace("years", " ").replace("year", " ").replace("and", ",").replace("&", ",")
    cleaned = re.sub(r"\by(?=\d)", " ", cleaned)
    found: set[int] = set()
    for part in re.split(r"[,/;]+|\s+(?=\d)|\s+(?=r)", cleaned):
        part = part.strip()
        if not part:
            continue
        if part in ("r", "reception", "rec"):
            found.add(0)
            continue
        match = re.fullmatch(r"(\d{1,2})\s*(?:-|to)\s*(\d{1,2})", part)
        if match:
            low, high = sorted((int(match.group(1)), int(match.group(2))))
            if high > 13:
                return ()
            found.update(range(low, high + 1))
            continue
        if part.isdigit() and 1 <= int(part) <= 13:
            found.add(int(part))
            continue
        return ()
    return tuple("Reception" if n == 0 else f"Year {n}" for n in sorted(found))


_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]


def parse_day(text: str, today: dt.date) -> dt.date | None:
    """today, tomorrow, a weekday name (the next one), 24/11/2026, 24/11, 24 Nov, 2026-11-24."""
    cleaned = " ".join((text or "").lower().replace(",", " ").split()).removeprefix("on ").removeprefix("next ")
    if cleaned == "today":
        return today
    if cleaned == "tomorrow":
        return today + dt.timedelta(days=1)
    for index, name in enumerate(_WEEKDAYS):
        if cleaned in (name, name[:3]):
            return today + dt.timedelta(days=(index - today.weekday()) % 7)
    try:
        return dt.date.fromisoformat(cleaned)
    except ValueError:
        pass
    match = re.fullmatch(r"(\d{1,2})[/.-](\d{1,2})(?:[/.-](\d{2,4}))?", cleaned)
    if match:
        day, month = int(match.group(1)), int(match.group(2))
        year = int(match.group(3)) if match.group(3) else None
        return _dated(day, month, year, today)
    match = re.fullmatch(r"(\d{1,2})(?:st|nd|rd|th)? ([a-z]{3,9})(?: (\d{4}))?", cleaned)
    if match and match.group(2)[:3] in _MONTHS:
        year = int(match.group(3)) if match.group(3) else None
        return _dated(int(match.group(1)), _MONTHS.index(match.group(2)[:3]) + 1, year, today)
    return None


def _dated(day: int, month: int, year: int | None, today: dt.date) -> dt.date | None:
    if year is not None and year < 100:
        year += 2000
    try:
        when = dt.date(year or today.year, month, day)
    except ValueError:
        return None
    if year is None and when < today:
        try:
            when = when.replace(year=today.year + 1)
        except ValueError:
            return None
    return when


def parse_time(text: str) -> dt.time | None:
    """15:30, 3:30pm, 3pm, 15.30."""
    cleaned = (text or "").lower().replace(" ", "").removeprefix("at")
    match = re.fullmatch(r"(\d{1,2})(?:[:.](\d{2}))?(am|pm)?", cleaned)
    if not match or (match.group(2) is None and match.group(3) is None):
        return None
    hour, minute = int(match.group(1)), int(match.group(2) or 0)
    if match.group(3):
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if match.group(3) == "pm" else 0)
    if hour > 23 or minute > 59:
        return None
    return dt.time(hour, minute)


def parse_until(text: str, now: dt.datetime, tz: dt.tzinfo, end_of_day: dt.time) -> dt.datetime | None:
    """'Friday 15:30', '24/11/2026 at 3pm', or a day alone (the end of the school day), as aware UTC."""
    cleaned = " ".join((text or "").replace(" at ", " ").split())
    local_today = now.astimezone(tz).date()
    words = cleaned.split(" ")
    for split in range(len(words), 0, -1):
        day = parse_day(" ".join(words[:split]), local_today)
        if day is None:
            continue
        rest = " ".join(words[split:])
        clock = parse_time(rest) if rest else end_of_day
        if clock is None:
            return None
        return dt.datetime.combine(day, clock, tzinfo=tz).astimezone(dt.UTC)
    return None


def parse_yes(text: str) -> bool | None:
    cleaned = (text or "").strip().lower().strip(".!")
    if cleaned in {"yes", "y", "yep", "yes i have", "i have", "done", "previewed", "true"}:
        return True
    if cleaned in {"no", "n", "not yet", "no i haven't", "false"}:
        return False
    return None


# --- the outside world ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilterChange:
    """One change for the filter itself."""

    reference: str
    action: str  # allow | block
    domain: str
    audience: str
    year_groups: tuple[str, ...] = ()
    until: dt.datetime | None = None

    @classmethod
    def of(cls, request: FilterRequest) -> FilterChange:
        return cls(request.reference, request.action, request.domain, request.audience, request.year_groups,
                   request.until)


class FilterBackendError(Exception):
    """The filter could not make the change; the message is safe to show to technicians."""


class FilterBackend(Protocol):
    name: str
    automatic: bool  # False: a technician makes the change by hand and marks it done

    async def apply(self, change: FilterChange) -> str:
        """Make the change; return a short note of what was done. Raise FilterBackendError when it fails."""

    async def revert(self, change: FilterChange) -> str:
        """Undo a change (a temporary unblock ending). Raise FilterBackendError when it fails."""


class IncidentFiler(Protocol):
    """The incident flow, as the filtering feature needs it: file a technical concern, get its reference."""

    async def file_technical_concern(self, actor: Any, category_key: str, summary_text: str, *,
                                     key: str | None = None) -> str:
        """Record a technical concern (e.g. a filter failure) once per `key` and return its reference."""


async def report_missed_content(filer: IncidentFiler, actor: Any, site: Site, what_happened: str, *,
                                key: str | None = None) -> str:
    """Something got through the filter: file it as a filter-failure concern through the incident flow."""
    summary = f"Filter failure reported: {site.display_host} ({site.url}) was reachable. {what_happened}".strip()
    return await filer.file_technical_concern(actor, "filter_failure", summary[:2000], key=key)
