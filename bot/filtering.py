"""Web-filter change requests: sites, the school's rules, the change log and the backend protocol.

Plain dataclasses and functions only; storage, Teams and the filter itself sit behind protocols.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import idna
from publicsuffixlist import PSLFILE, PublicSuffixList

from bot.people import Person, Role
from bot.permissions import may
from bot.site_categories import SiteLists, cached_folder, lists_used

# --- sites ---------------------------------------------------------------------------------------------------

# Registrable domains come from the Public Suffix List that `publicsuffixlist` bundles (ICANN and private
# suffixes: github.io, myshopify.com, *.sch.uk, ...). It is read once, at import, so no turn waits for it and
# nothing is fetched at run time; a newer list arrives with a newer release of the package.
# Platforms where each customer has a site of their own but which are not on the list: without these, one
# school's SharePoint or one blog would become the whole platform. A bare platform name is its own site.
EXTRA_PRIVATE_SUFFIXES = ("sharepoint.com", "substack.com", "weebly.com", "glitch.me", "neocities.org")


def _public_suffix_list() -> PublicSuffixList:
    with open(PSLFILE, "rb") as bundled:
        return PublicSuffixList([*bundled, *(suffix.encode() for suffix in EXTRA_PRIVATE_SUFFIXES)])


_PSL = _public_suffix_list()
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
    """The part of a host name someone can register: one label more than its public suffix.

    An unknown top-level domain counts as a suffix (the Public Suffix List's default rule), so an intranet name
    like portal.school-intranet still names one site.
    """
    host = host.lower().rstrip(".")
    domain = _PSL.privatesuffix(host)
    if domain is None and host in EXTRA_PRIVATE_SUFFIXES:
        return host
    if domain is None:
        raise BadSite(
            f'"{host}" is only the end of a web address. Please give the whole site name, for example bbc.co.uk.'
        )
    return domain


def normalise_site(text: str) -> Site:
    """Validate and normalise what someone typed or pasted: scheme, IDNA host name and registrable domain."""
    raw = (text or "").strip().strip("<>\"'")
    if not raw:
        raise BadSite("Please paste the web address of the site, for example https://www.bbc.co.uk/bitesize.")
    if len(raw) > 2000:
        raise BadSite("That web address is too long. Please paste just the site's main address.")
    if any(ch.isspace() for ch in raw):
        raise BadSite("A web address has no spaces in it. Please paste just the address, for example www.bbc.co.uk.")
    other_scheme = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*):(?!\d)", raw)
    if other_scheme and other_scheme.group(1).lower() not in ("http", "https"):
        raise BadSite(
            "Only web sites (addresses starting http or https) can be filtered. Please paste the site's web address."
        )
    if "://" not in raw:
        raw = "https://" + raw.lstrip("/")
    try:
        parts = urlsplit(raw)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        raise BadSite(
            "I couldn't read that as a web address. Please paste it again, for example https://www.bbc.co.uk."
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise BadSite(
            "Only web sites (addresses starting http or https) can be filtered. Please paste the site's web address."
        )
    host = host.rstrip(".")
    if not host:
        raise BadSite("I couldn't find a site name in that. Please paste the address, for example www.bbc.co.uk.")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        raise BadSite(
            "Please give the site's name rather than a number address (IP address), so the filter can match it."
        )
    try:
        ascii_host = idna.encode(host, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError):
        raise BadSite(
            f'"{host[:60]}" is not a valid site name. Please check the spelling and paste it again.'
        ) from None
    labels = ascii_host.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels) or not _TLD.match(labels[-1]):
        raise BadSite(f'"{host[:60]}" is not a complete site name. It should look like example.co.uk.')
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


AUDIENCE_LABELS = {
    Audience.ALL_PUPILS: "All pupils",
    Audience.YEAR_GROUPS: "Chosen year groups",
    Audience.STAFF: "Staff only",
}


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
    Status.PENDING: "Waiting for approval",
    Status.INFO_REQUESTED: "More information asked for",
    Status.APPROVED: "Approved, being applied",
    Status.DECLINED: "Declined",
    Status.APPLIED: "In place",
    Status.FAILED: "Approved, but the filter change failed",
    Status.EXPIRED: "Time is up, being removed",
    Status.REVERTED: "Ended",
    Status.LINKED: "Linked to an earlier request",
}
OPEN_STATUSES = frozenset({Status.PENDING, Status.INFO_REQUESTED, Status.APPROVED})
DECIDABLE = frozenset({Status.PENDING, Status.INFO_REQUESTED})
RELATED_STATUSES = OPEN_STATUSES | {Status.APPLIED}  # what an approver should see beside a new request


class Scope(StrEnum):
    """How much of a site a change covers; each backend says which of these it can enforce."""

    URL = "url"  # that exact address: only where the filter sees paths (a technician doing it by hand)
    HOST = "host"  # that host name (for DNS, also the names below it)
    DOMAIN = "domain"  # the registrable domain and every subdomain: what every request meant before scopes


NARROWEST_FIRST = (Scope.URL, Scope.HOST, Scope.DOMAIN)


def host_of(url: str) -> str:
    """The host name of a normalised address ("" when there is none)."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def narrowest_scope(url: str, domain: str, scopes: tuple[str, ...], *, host_below: bool = False) -> tuple[str, str]:
    """The narrowest (scope, target) a backend enforcing `scopes` can give a request for `url`; nobody is asked.

    A bare site address (no path) asks for the site, not its home page, so it never becomes a URL rule. Where a
    host rule also covers the names below it (DNS) and the host is the domain, the two are the same rule: domain.
    """
    host = host_of(url) or domain
    parts = urlsplit(url) if url else None
    bare = parts is None or (parts.path in ("", "/") and not parts.query)
    for scope in NARROWEST_FIRST:
        if scope not in scopes:
            continue
        if scope == Scope.URL and not bare:
            return Scope.URL.value, url
        if scope == Scope.HOST and not (host_below and host == domain):
            return Scope.HOST.value, host
        if scope == Scope.DOMAIN:
            return Scope.DOMAIN.value, domain
    return Scope.DOMAIN.value, domain


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def audience_words(audience: str | None, year_groups: tuple[str, ...] | list[str] = ()) -> str:
    """Who a change is for, inside a sentence: "all pupils", "staff only", "Years 5 and 6"."""
    if audience == Audience.YEAR_GROUPS and year_groups:
        groups = list(year_groups)
        years = [g.removeprefix("Year ") for g in groups if g.startswith("Year ")]
        if len(years) == len(groups):
            return ("Year " if len(years) == 1 else "Years ") + _and(years)
        return _and(groups)
    if audience == Audience.STAFF:
        return "staff only"
    return "all pupils"


def effect_words(
    action: str,
    scope: str | None,
    target: str | None,
    domain: str,
    audience: str | None,
    year_groups: tuple[str, ...] | list[str],
    until: dt.datetime | None,
    tz: dt.tzinfo,
    *,
    host_below: bool = False,
) -> str:
    """The real effect of a change in one sentence, as the requester, the approver and the technician read it.

    host_below: the backend's host rule also covers the names below the host (DNS), so the words say so.
    """
    site = domain_display(domain)
    if scope == Scope.URL and target:
        what = f"only the page {target} (not the rest of {site})"
    elif scope == Scope.HOST and target:
        host = domain_display(target)
        if target == domain:
            what = f"{host} (that address only, not its subdomains such as www.{site})"
        elif host_below:
            what = f"{host} and any address under it (not the rest of {site})"
        else:
            what = f"{host} (that address only, not the rest of {site})"
    else:
        what = f"all of {site} and its subdomains"
    if action != "allow":  # a block is never narrower than the whole school: over-blocking fails safe
        return f"This blocks {what} for everyone, permanently."
    verb = "allows"
    if until is None:
        period = ", permanently"
    else:
        local = until.astimezone(tz)
        period = f" until {local.day} {local:%B} at {local:%H:%M}"
    return f"This {verb} {what} for {audience_words(audience, year_groups)}{period}."


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
    scope: str | None = None  # set from the school's backend for the summary: see narrowest_scope
    target: str | None = None

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "url": self.url,
            "domain": self.domain,
            "audience": self.audience,
            "year_groups": list(self.year_groups),
            "reason": self.reason,
            "lesson_date": self.lesson_date.isoformat() if self.lesson_date else None,
            "until": self.until.isoformat() if self.until else None,
            "previewed": self.previewed,
            "scope": self.scope,
            "target": self.target,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> Draft:
        state = state or {}
        return cls(
            kind=state.get("kind"),
            url=state.get("url"),
            domain=state.get("domain"),
            audience=state.get("audience"),
            year_groups=tuple(state.get("year_groups") or ()),
            reason=state.get("reason"),
            lesson_date=dt.date.fromisoformat(state["lesson_date"]) if state.get("lesson_date") else None,
            until=dt.datetime.fromisoformat(state["until"]) if state.get("until") else None,
            previewed=bool(state.get("previewed")),
            scope=state.get("scope"),
            target=state.get("target"),
        )

    def with_(self, **changes: Any) -> Draft:
        return replace(self, **changes)

    @property
    def allows(self) -> bool:
        """True when approving this would let the site through."""
        return self.kind in (Kind.UNBLOCK, Kind.OVERBLOCKING)

    @property
    def host(self) -> str:
        return host_of(self.url or "") or (self.domain or "")


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
    scope: str = Scope.DOMAIN.value  # requests stored before scopes covered the whole domain
    target: str = ""  # the URL, host or domain the scope names; "" reads as the domain

    @property
    def allows(self) -> bool:
        return self.kind in (Kind.UNBLOCK, Kind.OVERBLOCKING)

    @property
    def rule_target(self) -> str:
        return self.target or self.domain

    def same_change(self, other: FilterRequest) -> bool:
        """Only the same rule for the same people for the same time is a duplicate; anything else is separate."""
        return (
            self.allows == other.allows
            and self.domain == other.domain
            and self.scope == other.scope
            and self.rule_target == other.rule_target
            and self.audience == other.audience
            and sorted(self.year_groups) == sorted(other.year_groups)
            and self.until == other.until
        )

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


# How a never-unblock category reads in a sentence, where its key alone would not.
CATEGORY_WORDS = {
    "malware_phishing": "malware or phishing",
    "proxy_avoidance": "tools for getting round the filter",
    "self_harm_promotion": "promoting self-harm or suicide",
    "terrorism_extremism": "terrorism or extremism",
    "criminal_hate": "criminal hate material",
}


def category_words(category: str) -> str:
    return CATEGORY_WORDS.get(category, category.replace("_", " "))


@dataclass(frozen=True)
class FilterRules:
    """The policy's filtering rules for one school: never-unblock lists and the Headteacher categories."""

    never_unblock_domains: tuple[str, ...] = ()
    never_unblock_categories: tuple[str, ...] = ()
    headteacher_categories: tuple[str, ...] = ()
    social_networking_domains: tuple[str, ...] = ()
    domain_categories: dict[str, str] = field(default_factory=dict)  # the school's own known sites -> category
    site_lists: tuple[SiteLists, ...] = ()  # category lists (UT1 layout): the shipped set, then the school's own
    list_categories: Mapping[str, str] = field(default_factory=dict)  # a list's name -> the policy's category

    @classmethod
    def from_policy(cls, policy_filtering: Any, school_filtering: Any) -> FilterRules:
        never = tuple(policy_filtering.never_unblock_categories)
        head = tuple(policy_filtering.headteacher_approval_categories)
        mapping = dict(getattr(policy_filtering, "list_categories", {}) or {})
        wanted = lists_used(mapping, (*never, *head))
        folders = [
            *(getattr(policy_filtering, "category_dirs", ()) or ()),
            *(getattr(school_filtering, "category_dirs", ()) or ()),
        ]
        return cls(
            never_unblock_domains=tuple(policy_filtering.never_unblock_domains)
            + tuple(getattr(school_filtering, "never_unblock_domains", ()) or ()),
            never_unblock_categories=never,
            headteacher_categories=head,
            social_networking_domains=tuple(policy_filtering.social_networking_domains),
            domain_categories=dict(getattr(school_filtering, "domain_categories", {}) or {}),
            site_lists=tuple(cached_folder(Path(folder), wanted) for folder in folders),
            list_categories=mapping,
        )

    def categories(self, domain: str) -> tuple[str, ...]:
        """Categories known for a host or domain: the school's own sites, the category lists, social networking."""
        found = [category for listed, category in self.domain_categories.items() if domain_matches(domain, listed)]
        try:
            registrable = registrable_domain(domain)
        except BadSite:
            registrable = domain
        for lists in self.site_lists:
            found.extend(self.list_categories.get(name, name) for name in lists.names_for(domain, registrable))
        if any(domain_matches(domain, listed) for listed in self.social_networking_domains):
            found.append("social_networking")
        return tuple(dict.fromkeys(found))

    def never_unblock_reason(self, domain: str) -> str | None:
        """Why this site may never be unblocked, or None when it may be asked for."""
        if any(domain_matches(domain, listed) for listed in self.never_unblock_domains):
            return "it is on the school's list of sites that are never unblocked"
        banned = [c for c in self.categories(domain) if c in self.never_unblock_categories]
        if banned:
            return f"it is in a category the school never unblocks ({category_words(banned[0])})"
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


def can_view(request: FilterRequest, person: Person) -> bool:
    """The requester, and the people who decide, apply or oversee filter changes."""
    return person.id == request.requester_id or may(person, "filter.view")


def check_can_decide(request: FilterRequest, person: Person) -> None:
    """Raise FilterRefused unless this person may approve, decline or question the request now."""
    if person.id == request.requester_id:
        raise FilterRefused("You can't decide on your own request. Another filtering approver will look at it.")
    if not may(person, "filter.approve"):
        raise FilterRefused("Only the school's filtering approvers can decide on filter requests.")
    if request.needs_headteacher and not person.has(Role.HEADTEACHER):
        raise FilterRefused(
            "Unblocking social networking, messaging or chat sites needs the Headteacher's "
            "approval, so this one is waiting for them."
        )
    if request.status not in DECIDABLE:
        who = f" by {request.approver_name}" if request.approver_name else ""
        raise FilterRefused(
            f"{request.reference} has already been decided{who}: "
            f"{STATUS_LABELS.get(Status(request.status), request.status).lower()}."
        )


def check_can_apply(request: FilterRequest, person: Person, technicians: list[Person]) -> None:
    """The approver does not also apply the change when the school has someone else who can."""
    if not may(person, "filter.apply"):
        raise FilterRefused("Only the school's technicians can mark filter changes as applied.")
    others = [t for t in technicians if t.id != request.approver_id]
    if person.id == request.approver_id and others:
        raise FilterRefused(
            "You approved this change, so someone else must apply it. Please ask another technician if it is urgent."
        )


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
    scope: str = Scope.DOMAIN.value
    target: str = ""  # "" reads as the domain

    @classmethod
    def of(cls, request: FilterRequest) -> FilterChange:
        return cls(
            request.reference,
            request.action,
            request.domain,
            request.audience,
            request.year_groups,
            request.until,
            request.scope,
            request.rule_target,
        )

    def same_lines(self, other: FilterChange) -> bool:
        """Whether the two put exactly the same rules on the filter (their end times aside)."""
        return (self.action, self.site_rule(), self.audience, sorted(self.year_groups)) == (
            other.action,
            other.site_rule(),
            other.audience,
            sorted(other.year_groups),
        )

    def shares_rule(self, other: FilterChange) -> bool:
        """Whether removing this change could take away a rule the other one still needs."""
        return self.action == other.action and self.site_rule() == other.site_rule()

    def site_rule(self) -> tuple[str, str]:
        """(scope, name) for a filter that sees only host names: a URL rule falls back to its host."""
        if self.scope == Scope.URL:
            return Scope.HOST.value, host_of(self.target) or self.domain
        if self.scope == Scope.HOST and self.target:
            return Scope.HOST.value, self.target
        return Scope.DOMAIN.value, self.domain


class FilterBackendError(Exception):
    """The filter could not make the change; the message is safe to show to technicians."""


class FilterBackend(Protocol):
    name: str
    automatic: bool  # False: a technician makes the change by hand and marks it done

    @property
    def scopes(self) -> tuple[str, ...]:
        """The Scope values it can enforce; each request takes the narrowest."""

    host_below: bool  # its host rule also covers the names below the host (DNS), so the words say so

    async def apply(self, change: FilterChange) -> str:
        """Make the change; return a short note of what was done. Raise FilterBackendError when it fails."""

    async def revert(self, change: FilterChange) -> str:
        """Undo a change (a temporary unblock ending). Raise FilterBackendError when it fails."""


class IncidentFiler(Protocol):
    """The incident flow, as the filtering feature needs it: file a technical concern, get its reference."""

    async def file_technical_concern(
        self, actor: Any, category_key: str, summary_text: str, *, key: str | None = None
    ) -> str:
        """Record a technical concern (e.g. a filter failure) once per `key` and return its reference."""


async def report_missed_content(
    filer: IncidentFiler, actor: Any, site: Site, what_happened: str, *, key: str | None = None
) -> str:
    """Something got through the filter: file it as a filter-failure concern through the incident flow."""
    summary = f"Filter failure reported: {site.display_host} ({site.url}) was reachable. {what_happened}".strip()
    return await filer.file_technical_concern(actor, "filter_failure", summary[:2000], key=key)
