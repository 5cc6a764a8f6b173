"""A trust in one deployment, on SQLite and PostgreSQL: two schools share one Teams tenant (a team each) and a third
has its own. Each school is found from tenant, team and, where there is no team (a 1:1 chat, the tab), the person;
a DSL of one school never sees anything of another, on any command, card action, export or the desk tab.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.clock import SettableClock
from adapters.directory_static import StaticDirectory
from bot.config import ConfigError, load_config
from bot.school_lookup import place
from tests.support.auth import IdentityProvider
from tests.support.harness import ROOT, Harness, start_harness
from tests.support.teams import TeamsUser
from tests.test_filtering import ask
from tests.test_incidents import answer, card_titled
from tests.test_tab import APP_ID, RESOURCE, get

TRUST_CONFIG = ROOT / "config" / "trust-demo.yaml"
CONFIG = load_config(TRUST_CONFIG)
BIRCH_WORDS = (
    "Bobby Quinn",
    "Ben Hale",
    "Bella Stone",
    "Beth Lyons",
    "Birch Academy",
    "BIR-",
    "Kestrel chat",
    "kestrel-birds",
)


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[IdentityProvider]:
    provider = IdentityProvider(tmp_path)
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
async def trust(
    database_url: str, clock: SettableClock, tmp_path: Path, idp: IdentityProvider
) -> AsyncIterator[Harness]:
    async with start_harness(
        database_url=database_url,
        clock=clock,
        var_dir=tmp_path / "var",
        config_path=TRUST_CONFIG,
        tab_openid_metadata=idp.tab_metadata_url,
        tab_ca_bundle=idp.cert_path,
        tab_audience=f"{RESOURCE},{APP_ID}",
    ) as running:
        yield running


def person(name: str, school: str | None = None) -> tuple[str, str]:
    """(object id, tenant id) of a person in the trust's configuration, or of a trust person."""
    for s in CONFIG.schools:
        if school in (None, s.id):
            for p in s.people:
                if p.name == name:
                    return p.id, s.tenant_id
    assert CONFIG.trust is not None
    found = next(p for p in CONFIG.trust.people if p.name == name)
    return found.id, CONFIG.trust.tenant_id


def user(harness: Harness, name: str) -> TeamsUser:
    """Someone in a 1:1 chat with the bot: it carries the tenant, never a team."""
    aad_id, tenant_id = person(name)
    key = f"trust:{name}"
    if key not in harness._users:  # noqa: SLF001 - the harness's cache keeps the user's app URL across restarts
        harness._users[key] = TeamsUser(  # noqa: SLF001
            harness.http, harness.url, harness.connector, aad_id=aad_id, name=name, tenant_id=tenant_id
        )
    return harness._users[key]  # noqa: SLF001


async def submit_report(reporter: TeamsUser, **answers: str) -> str:
    """A concern reported in a 1:1 chat; returns its reference (each school has its own prefix)."""
    await answer(reporter, **answers)
    reply = await reporter.says("submit")
    titles = [c["body"][0].get("text", "") for c in reply.cards]
    found = [t for t in titles if t.startswith("Thank you. Your report is ")]
    assert found, reply.everything[:500]
    return found[0].rsplit(" ", 1)[-1]


def channel_sends(harness: Harness, channel_id: str) -> str:
    return json.dumps([s.activity for s in harness.connector.to(channel_id)])


async def a_case_owned_by(harness: Harness, dsl: str, reporter: str, what: str) -> tuple[str, str]:
    """The reporter reports in a 1:1 chat; their DSL opens it and takes it on. Returns (reference, case token)."""
    await user(harness, dsl).says("help")
    reference = await submit_report(user(harness, reporter), what=what, who="BQ, Year 5")
    card = card_titled(await user(harness, dsl).says(f"case {reference}"), reference)
    token = card["refresh"]["action"]["data"]["token"]
    owned = await user(harness, dsl).executes("incident.own", {"token": token, "version": 1})
    assert dsl in json.dumps(owned.invoke_card)
    return reference, token


def sso(idp: IdentityProvider, name: str) -> str:
    aad_id, tenant_id = person(name)
    return idp.tab_token(tenant_id=tenant_id, audience=RESOURCE, object_id=aad_id)


async def test_a_dsl_of_the_second_school_in_a_shared_tenant_is_placed_at_her_own_school(trust: Harness) -> None:
    """The bug: a 1:1 chat carries no team, and the tenant's first school (Ashby) was taken, so Birch's DSL was a
    stranger there and Ben's concern went to Ashby's DSLs."""
    bella = user(trust, "Bella Stone")
    reply = await bella.says("cases")
    assert "not available to you" not in reply.everything, reply.everything[:300]
    reference = await submit_report(user(trust, "Ben Hale"), what="Kestrel chat at lunch")
    assert reference.startswith("BIR-")
    await trust.connector.wait_for(
        lambda _sent: reference in channel_sends(trust, "19:birch-safeguarding@thread.tacv2")
    )
    assert reference not in channel_sends(trust, "19:ashby-safeguarding@thread.tacv2")
    assert "Kestrel" not in channel_sends(trust, "19:ashby-safeguarding@thread.tacv2")
    assert reference in (await bella.says("cases")).everything


async def test_a_dsl_of_one_school_never_sees_anything_of_another(trust: Harness, idp: IdentityProvider) -> None:
    birch_ref, birch_token = await a_case_owned_by(trust, "Bella Stone", "Ben Hale", "Kestrel chat at lunch")
    ashby_ref, _ = await a_case_owned_by(trust, "Asha Khan", "Adam Price", "Heron game after school")
    cedar_ref, _ = await a_case_owned_by(trust, "Cara Lowe", "Carl Nye", "Osprey forum post")
    assert ashby_ref.startswith("ASH-") and cedar_ref.startswith("CED-")
    await ask(user(trust, "Ben Hale"), site="https://kestrel-birds.example/nest")
    assert "kestrel-birds" in (await user(trust, "Bella Stone").says("filter log")).everything  # Birch's own log
    asha = user(trust, "Asha Khan")

    seen: dict[str, str] = {}
    for command in (
        "cases",
        f"case {birch_ref}",
        "child Bobby",
        f"export {birch_ref}",
        "digest now",
        "aup status",
        "filter log",
        "undelivered",
    ):
        reply = await asha.says(command)
        seen[command] = reply.everything
        for word in BIRCH_WORDS:
            assert word not in reply.everything, (command, word)
        assert cedar_ref not in reply.everything and "Osprey" not in reply.everything, command
    assert ashby_ref in seen["cases"]  # her own desk works: she is placed at Ashby, not refused
    assert "not available to you" not in seen["digest now"] and "Ashby Primary School" in seen["digest now"]

    # A card action carrying Birch's case token: refused, and Birch's case is as Bella left it.
    taken = await asha.executes("incident.own", {"token": birch_token, "version": 2})
    assert "Asha Khan" not in json.dumps(taken.invoke_card or {})
    for word in BIRCH_WORDS:
        assert word not in json.dumps(taken.invoke_card or {}) + (taken.invoke_message or "")
    still = card_titled(await user(trust, "Bella Stone").says(f"case {birch_ref}"), birch_ref)
    assert "Bella Stone" in json.dumps(still) and "Asha Khan" not in json.dumps(still)

    # The desk tab: no team there either; each DSL is placed by who she is, and sees only her school.
    status, _, body = await get(trust, "/tab/api/cases", sso(idp, "Asha Khan"))
    assert status == 200 and ashby_ref in body.decode()
    assert not any(word in body.decode() for word in BIRCH_WORDS) and cedar_ref not in body.decode()
    status, _, body = await get(trust, "/tab/api/cases", sso(idp, "Bella Stone"))
    assert status == 200 and birch_ref in body.decode() and ashby_ref not in body.decode()
    assert (await get(trust, f"/tab/api/cases/{birch_token}", sso(idp, "Asha Khan")))[0] == 404
    status, _, body = await get(trust, f"/tab/api/export/case/{birch_token}?format=json", sso(idp, "Asha Khan"))
    assert status == 404 and "Kestrel" not in body.decode()
    status, _, body = await get(trust, "/tab/api/children?q=Bobby", sso(idp, "Asha Khan"))
    assert status == 200 and "Bobby Quinn" not in body.decode(), body
    # The same search by Birch's own DSL finds him: the searches above could have found something.
    assert "Bobby Quinn" in (await user(trust, "Bella Stone").says("child Bobby")).everything


async def test_someone_at_two_schools_of_the_tenant_is_asked_not_guessed_for(
    trust: Harness, idp: IdentityProvider
) -> None:
    kim = user(trust, "Kim Walsh")
    reply = await kim.says("report")
    text = reply.everything
    assert "Ashby Primary School and Birch Academy" in text and "your school's team" in text
    # Nothing started: her next words are not taken as answers to a report at either school.
    again = await kim.says("A pupil")
    assert "Ashby Primary School and Birch Academy" in again.everything
    for school in ("ashby", "birch"):
        assert channel_sends(trust, f"19:{school}-safeguarding@thread.tacv2") == "[]"
    # A card action from her chat is answered the same way, and the tab does not guess either.
    pressed = await kim.executes("incident.own", {"token": "x", "version": 1})
    assert "Ashby Primary School and Birch Academy" in (pressed.invoke_message or "")
    assert (await get(trust, "/tab/api/cases", sso(idp, "Kim Walsh")))[0] == 401


async def test_a_stranger_in_the_shared_tenant_reaches_no_school(trust: Harness) -> None:
    stranger = TeamsUser(
        trust.http,
        trust.url,
        trust.connector,
        aad_id="00000000-0000-4000-8000-00000000a0ff",
        name="Pat Unknown",
        tenant_id=CONFIG.schools[0].tenant_id,
    )
    reply = await stranger.says("report")
    assert "cannot find you at any school here" in reply.everything
    assert "speak to your DSL in person" in reply.everything


async def test_the_person_decides_only_where_tenant_and_team_cannot() -> None:
    directory = StaticDirectory(CONFIG)
    shared, own = CONFIG.schools[0].tenant_id, CONFIG.schools[2].tenant_id
    bella, _ = person("Bella Stone")
    placed = await place(CONFIG, directory, shared, None, bella)
    assert placed.school is not None and placed.school.id == "birch"
    by_team = await place(CONFIG, directory, shared, "19:ashby-staff@thread.tacv2", bella)
    assert by_team.school is not None and by_team.school.id == "ashby"  # her chat in Ashby's team is Ashby's
    alone = await place(CONFIG, directory, own, None, "someone-cedar-does-not-know")
    assert alone.school is not None and alone.school.id == "cedar"  # a tenant with one school decides
    kim = await place(CONFIG, directory, shared, None, person("Kim Walsh")[0])
    assert kim.school is None and [s.id for s in kim.choices] == ["ashby", "birch"] and kim.message
    nobody = await place(CONFIG, directory, shared, None, "00000000-0000-4000-8000-00000000a0ff")
    assert nobody.school is None and nobody.shared and "cannot find you" in (nobody.message or "")
    unknown = await place(CONFIG, directory, "00000000-0000-4000-8000-00000000e000", None, bella)
    assert unknown.school is None and not unknown.shared and unknown.message is None


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda raw: raw["trust"].update(schools=["ashby", "elm"]), "trust.schools: no school with id 'elm'"),
        (lambda raw: raw["trust"].update(schools=["cedar"]), "no school of the trust is in this tenant"),
        (lambda raw: raw["schools"][1].update(team_id=raw["schools"][0]["team_id"]), "share a team_id"),
        (lambda raw: raw["trust"]["people"][0].update(roles=["dsl"]), "trust.people.0.roles.0"),
    ],
)
def test_a_trust_config_mistake_names_the_key(tmp_path: Path, change: Any, problem: str) -> None:
    raw = yaml.safe_load(TRUST_CONFIG.read_text(encoding="utf-8"))
    change(raw)
    path = tmp_path / "trust.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_config(path)


async def test_a_school_varies_the_trusts_policy_for_its_own_people_only(trust: Harness) -> None:
    """Cedar's own grant for `aup status` (its online-safety lead only) binds Cedar's headteacher, not Ashby's."""
    ashby_head = await user(trust, "Alice Webb").says("aup status")
    assert "not available to you" not in ashby_head.everything and "Ashby Primary School" in ashby_head.everything
    cedar_head = await user(trust, "Cleo Marsh").says("aup status")
    assert "not available to you" in cedar_head.everything and "Cedar High School" not in cedar_head.everything
    cedar_lead = await user(trust, "Cara Lowe").says("aup status")
    assert "not available to you" not in cedar_lead.everything


def test_a_schools_own_grant_must_name_a_real_permission_and_role(tmp_path: Path) -> None:
    raw = yaml.safe_load(TRUST_CONFIG.read_text())
    raw["schools"][2]["permissions"] = {"aup.stauts": ["online_safety_lead"]}
    broken = tmp_path / "trust.yaml"
    broken.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="aup.stauts"):
        load_config(broken)
    raw["schools"][2]["permissions"] = {"aup.status": ["caretaker"]}
    broken.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"permissions\.aup\.status.*online_safety_lead"):
        load_config(broken)
