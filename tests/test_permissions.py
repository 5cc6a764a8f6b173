"""Permissions in one place: the policy maps each named permission to roles, a mistake in that mapping stops the app
at start-up, and commands, card actions and services all follow the mapping (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml

from adapters.clock import SettableClock
from app import _load
from bot.actor import Actor, CardAction, Command, Turn, access_key
from bot.cards.incident import build_not_allowed_card
from bot.config import ConfigError, SchoolConfig
from bot.people import Person, Role
from bot.permissions import PERMISSIONS, Permissions, use
from bot.policy import load_policy
from tests.support import harness as support
from tests.support.harness import Harness, start_harness

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = ROOT / "config" / "policy_defaults.yaml"


def _policy_file(tmp_path: Path, **grants: list[str]) -> Path:
    """The default policy with some permissions given to other roles."""
    data = yaml.safe_load(DEFAULTS.read_text(encoding="utf-8"))
    data["permissions"].update(grants)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _default_mapping_afterwards() -> Iterator[None]:
    """Code run outside an app reads the installed mapping; leave the default one for the tests that follow."""
    yield
    use(load_policy(DEFAULTS).permissions)


def test_the_default_policy_maps_every_permission_to_roles() -> None:
    policy = load_policy(DEFAULTS)
    assert set(policy.permissions) == set(PERMISSIONS)
    permissions = Permissions(policy.permissions)
    dsl = Person("p1", "Priya Shah", roles=frozenset({Role.STAFF, Role.DSL}))
    teacher = Person("p2", "Leah Brooks", roles=frozenset({Role.STAFF}))
    assert permissions.may(dsl, "case.desk") and permissions.may(dsl, "child.view")
    assert not permissions.may(teacher, "case.desk") and permissions.may(teacher, "filter.request")
    with pytest.raises(KeyError, match="case.veiw"):
        permissions.may(dsl, "case.veiw")


@pytest.mark.parametrize(
    ("grants", "named"),
    [
        ({"filter.apply": ["technican"]}, ["permissions", "filter.apply", "unknown role 'technican'"]),
        ({"filter.aprove": ["headteacher"]}, ["permissions", "unknown permission 'filter.aprove'"]),
    ],
)
def test_a_typo_in_the_mapping_stops_the_app_with_a_clear_message(
    tmp_path: Path, grants: dict[str, list[str]], named: list[str]
) -> None:
    path = _policy_file(tmp_path, **grants)
    with pytest.raises(ConfigError) as problem:
        load_policy(path)
    for words in named:
        assert words in str(problem.value)
    settings = support.test_settings("sqlite+aiosqlite:///unused.db", tmp_path / "var", policy_path=path)
    with pytest.raises(SystemExit) as stopped:
        _load(settings)
    assert str(stopped.value).startswith("eSafety bot will not start: invalid configuration:")
    assert named[-1] in str(stopped.value)


def test_a_policy_that_leaves_a_permission_out_is_refused(tmp_path: Path) -> None:
    data = yaml.safe_load(DEFAULTS.read_text(encoding="utf-8"))
    del data["permissions"]["retention.hold"]
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"permissions: .*retention.hold is not given"):
        load_policy(path)


def test_a_registration_naming_an_unknown_permission_fails_at_once() -> None:
    async def run(_turn: Turn, _args: str) -> None:
        return None

    with pytest.raises(ValueError, match="unknown permission 'filter.lgo'"):
        Command("filter log", "Filter change log", "see every filter change", run, permission="filter.lgo")
    with pytest.raises(ValueError, match="unknown permission 'case.dsek'"):
        CardAction("desk.cases", lambda actor, data: None, permission="case.dsek")  # type: ignore[arg-type,return-value]


def test_actors_with_one_access_key_are_allowed_the_same_and_anything_allowed_reads_changes_it() -> None:
    """The help menu is kept by access key (bot.handler): a change of roles, school or policy must give a new one."""

    async def run(_turn: Turn, _args: str) -> None:
        return None

    commands = [Command(name, name, name, run, permission=name) for name in PERMISSIONS]
    commands.append(Command("anyone", "anyone", "anyone", run))
    school = SchoolConfig(id="oak", name="Oak", tenant_id="t-oak")
    other_school = SchoolConfig(id="elm", name="Elm", tenant_id="t-oak")
    policy = load_policy(DEFAULTS).permissions
    use(policy, {"oak": {"case.desk": ["staff"]}})

    def actor(roles: set[Role], at: SchoolConfig = school, kind: str = "personal", name: str = "Leah Brooks") -> Actor:
        return Actor(school=at, person=Person("p2", name, roles=frozenset(roles), school=at.id), conversation_kind=kind)

    def menu(of: Actor) -> list[str]:
        return [c.name for c in commands if c.allowed(of)]

    teacher = actor({Role.STAFF})
    same = [actor({Role.STAFF}, kind="channel"), actor({Role.STAFF}, name="Sam Patel")]
    for twin in same:
        assert access_key(twin) == access_key(teacher) and menu(twin) == menu(teacher)
    changed = [actor({Role.STAFF, Role.DSL}), actor({Role.STAFF}, at=other_school), actor(set())]
    for other in changed:
        assert access_key(other) != access_key(teacher)
    # The school's own grant: the desk for its staff, not for the other school's.
    assert "case.desk" in menu(teacher) and "case.desk" not in menu(changed[1])
    before = access_key(teacher)
    use(policy)  # the same roles under another policy
    assert access_key(teacher) != before and "case.desk" not in menu(teacher)


# A school that moves three permissions: the filter log and the desk to every member of staff (and so away from the
# Chair of Governors, who is not staff), child records to the Headteacher only (away from the DSL).
MOVED = {"filter.log": ["staff"], "case.desk": ["staff"], "child.view": ["headteacher"]}


@pytest.fixture
async def moved(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    async with start_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", policy_path=_policy_file(tmp_path, **MOVED)
    ) as running:
        yield running


async def test_a_command_follows_the_policys_mapping(moved: Harness) -> None:
    teacher, chair = moved.user("Leah Brooks"), moved.user("Ruth Evans")

    allowed = await teacher.says("filter log")
    assert allowed.cards and not any("not available" in t for t in allowed.texts)
    refused = await chair.says("filter log")
    assert refused.texts == ["Sorry, that is not available to you. Type `help` to see what you can do."]
    assert not refused.cards
    # The help card offers a command exactly to those who may use it.
    assert "`filter log`" in json.dumps((await teacher.says("help")).card)
    assert "`filter log`" not in json.dumps((await chair.says("help")).card)


async def test_a_card_action_follows_the_policys_mapping(moved: Harness) -> None:
    allowed = await moved.user("Leah Brooks").executes("desk.cases", {})
    assert allowed.invoke_card is not None and "Cases:" in json.dumps(allowed.invoke_card)
    refused = await moved.user("Ruth Evans").executes("desk.cases", {})
    assert refused.invoke_card is None
    assert refused.invoke_message == "Sorry, you are not allowed to do that. It has been recorded."
    async with moved.parts.uow() as uow:
        entries = await uow.audit.entries(moved.school.id)
    assert [(e.actor_id, e.action) for e in entries if e.action == "refused"] == [
        (moved.person_id("Ruth Evans"), "refused")
    ]


async def test_a_service_follows_the_policys_mapping(moved: Harness) -> None:
    # No permission on the child-record buttons themselves: ChildService asks `child.view`.
    details = {"name": "Noah Williams", "year_group": "Year 5"}
    refused = await moved.user("Priya Shah").executes("child.create", details)  # the DSL, without it here
    assert refused.invoke_card == build_not_allowed_card()
    allowed = await moved.user("Grace Okafor").executes("child.create", details)  # the Headteacher, with it
    assert allowed.invoke_card is not None and "Noah Williams" in json.dumps(allowed.invoke_card)
    async with moved.parts.uow() as uow:
        found = await uow.children.search(moved.school.id, "Noah Williams", limit=5)
    assert [c.name for c in found] == ["Noah Williams"]  # one record: the refused press made none
