"""Named permissions: what each one lets a person do. Which roles hold each is policy data (`permissions:` in the
policy file), so a school changes who may do what there, and commands, card actions and services all ask `may`.

Who a case is routed to (bot.routing) and who may see one case (bot.incidents.may_view_case) are not permissions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from bot.people import Person, Role

# Every permission the code asks about, with what it allows: the policy must give each one its roles.
PERMISSIONS: dict[str, str] = {
    "case.desk": "list the open cases they handle (`cases` and the desk tab)",
    "case.open": "open one case by its reference (`case`)",
    "case.export": "export a case's chronology (`export`)",
    "child.view": "find children, open their files and link them to cases (`child`)",
    "filter.request": "ask for a filter change (`filter`)",
    "filter.view": "see filter requests other people made",
    "filter.log": "read and export the filter change log (`filter log`)",
    "filter.approve": "approve, decline or question filter requests",
    "filter.apply": "mark filter changes as applied or removed",
    "filter.retry": "retry a filter change that could not be applied",
    "filter.check": "record the termly filtering check (`filter check`)",
    "aup.status": "see who has acknowledged the AUP (`aup status`)",
    "aup.publish": "publish a new AUP version (`aup publish`)",
    "reviews.view": "see the review calendar and open reviews (`reviews`)",
    "reviews.complete": "mark any review done (besides the review's own owner role)",
    "digest.view": "see this week's anonymised figures (`digest now`)",
    "governors.report": "see the governors' termly report (`governors report`)",
    "lowlevel.register": "read the register of low-level concerns about staff (`low-level`)",
    "deliveries.view": "see alerts for their team that never reached a person (`undelivered`)",
    "retention.view": "see the retention schedule and the last sweep (`retention`)",
    "retention.hold": "place a legal hold on a case by command (`hold`)",
}

_ROLES = {role.value for role in Role}
_DEFAULTS = Path(__file__).resolve().parents[1] / "config" / "policy_defaults.yaml"


def check_grants(grants: Mapping[str, Iterable[str]]) -> dict[str, frozenset[Role]]:
    """The policy's mapping as role sets, or ValueError naming the unknown permission or role, or the missing one."""
    unknown = sorted(set(grants) - set(PERMISSIONS))
    if unknown:
        raise ValueError(f"unknown permission {unknown[0]!r}; the permissions are: {', '.join(PERMISSIONS)}")
    missing = [name for name in PERMISSIONS if name not in grants]
    if missing:
        raise ValueError(
            f"{missing[0]} is not given: list the roles that hold it ([] for nobody); see config/policy_defaults.yaml"
        )
    resolved: dict[str, frozenset[Role]] = {}
    for name, given in grants.items():
        roles = list(given)
        wrong = [r for r in roles if r not in _ROLES]
        if wrong:
            raise ValueError(f"{name}: unknown role {wrong[0]!r}; the roles are: {', '.join(sorted(_ROLES))}")
        resolved[name] = frozenset(Role(r) for r in roles)
    return resolved


def check_overrides(grants: Mapping[str, Iterable[str]]) -> dict[str, frozenset[Role]]:
    """A school's own grants for some permissions, as role sets, or ValueError naming the unknown name."""
    unknown = sorted(set(grants) - set(PERMISSIONS))
    if unknown:
        raise ValueError(f"unknown permission {unknown[0]!r}; the permissions are: {', '.join(PERMISSIONS)}")
    resolved: dict[str, frozenset[Role]] = {}
    for name, given in grants.items():
        wrong = [r for r in given if r not in _ROLES]
        if wrong:
            raise ValueError(f"{name}: unknown role {wrong[0]!r}; the roles are: {', '.join(sorted(_ROLES))}")
        resolved[name] = frozenset(Role(r) for r in given)
    return resolved


class Permissions:
    """Who may do what, from one policy's mapping, with each school's own grants for the permissions it sets."""

    def __init__(
        self,
        grants: Mapping[str, Iterable[str]],
        schools: Mapping[str, Mapping[str, Iterable[str]]] | None = None,
    ) -> None:
        self._grants = check_grants(grants)
        self._schools = {school: check_overrides(own) for school, own in (schools or {}).items() if own}

    def may(self, person: Person, permission: str) -> bool:
        if permission not in self._grants:  # a typo in code must fail loudly, never quietly refuse everyone
            raise KeyError(f"unknown permission {permission!r}")
        # The school that resolved the person decides first; a person no directory resolved has no roles anyway.
        own = self._schools.get(person.school, {}).get(permission)
        return bool(person.roles & (own if own is not None else self._grants[permission]))


# The app factory installs the loaded policy's mapping once at start-up (`use`); code run outside the app (a script,
# a unit of a test) gets the default policy's, read on first use.
_active: Permissions | None = None


def use(grants: Mapping[str, Iterable[str]], schools: Mapping[str, Mapping[str, Iterable[str]]] | None = None) -> None:
    """Make this policy mapping (and these schools' own grants) the one `may` reads."""
    global _active
    _active = Permissions(grants, schools)


def active() -> Permissions:
    global _active
    if _active is None:
        from bot.policy import load_policy  # bot.policy validates its mapping here, so it imports this module

        _active = Permissions(load_policy(_DEFAULTS).permissions)
    return _active


def may(person: Person, permission: str) -> bool:
    """Whether this person's roles hold the permission under the school's policy."""
    return active().may(person, permission)
