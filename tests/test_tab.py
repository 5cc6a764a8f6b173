"""The safeguarding desk as a Teams tab, over HTTP on SQLite and PostgreSQL: Teams SSO tokens checked against the
(loopback) Entra metadata, the desk's permission from the directory, and nothing served without both.

Cases are made by driving the real bot: a member of staff reports a concern and the DSL takes it on.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.clock import SettableClock
from adapters.tab_auth import REFRESHES_PER_MINUTE
from tests.support.auth import IdentityProvider, SigningKey
from tests.support.harness import ROOT, Harness, start_harness
from tests.test_incidents import card_titled, submit_report

APP_ID = "6f1c2d3e-4a5b-4c6d-8e7f-901234567890"
RESOURCE = f"api://esafety.oakfield.example/{APP_ID}"
OTHER_TENANT = "00000000-0000-4000-8000-00000000e000"
STRANGER = "00000000-0000-4000-8000-0000000000ff"


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[IdentityProvider]:
    provider = IdentityProvider(tmp_path)
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


def tab_settings(idp: IdentityProvider) -> dict[str, Any]:
    """The tab pointed at the loopback Entra; the audiences are what Teams puts in a token for this app."""
    return dict(
        tab_openid_metadata=idp.tab_metadata_url, tab_ca_bundle=idp.cert_path, tab_audience=f"{RESOURCE},{APP_ID}"
    )


@pytest.fixture
async def desk(
    database_url: str, clock: SettableClock, tmp_path: Path, idp: IdentityProvider
) -> AsyncIterator[Harness]:
    async with start_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", **tab_settings(idp)
    ) as running:
        yield running


def sso(harness: Harness, idp: IdentityProvider, name: str | None = None, **overrides: Any) -> str:
    values: dict[str, Any] = dict(tenant_id=harness.school.tenant_id, audience=RESOURCE)
    if name is not None:
        values["object_id"] = harness.person_id(name)
    values.update(overrides)
    return idp.tab_token(**values)


async def get(harness: Harness, path: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with harness.http.get(f"{harness.url}{path}", headers=headers) as response:
        return response.status, dict(response.headers), await response.read()


async def a_case_priya_owns(harness: Harness, what: str = "Threats in a group chat") -> tuple[str, str]:
    """Leah reports; Priya (the DSL) opens it from chat and takes it on. Returns (reference, case token)."""
    priya = harness.user("Priya Shah")
    await priya.says("help")
    reference = await submit_report(harness.user("Leah Brooks"), what=what)
    card = card_titled(await priya.says(f"case {reference}"), reference)
    token = card["refresh"]["action"]["data"]["token"]
    owned = await priya.executes("incident.own", {"token": token, "version": 1})
    assert "Priya Shah" in json.dumps(owned.invoke_card)
    return reference, token


async def test_the_page_needs_no_token_but_holds_no_data_and_may_only_be_framed_by_teams(desk: Harness) -> None:
    status, headers, body = await get(desk, "/tab")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert "Safeguarding desk" in page and "/tab/static/desk.js" in page and "ES-" not in page
    policy = headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert (
        "frame-ancestors 'self' https://teams.microsoft.com https://*.teams.microsoft.com https://*.office.com"
        in policy
    )
    assert "X-Frame-Options" not in headers  # it would stop Teams framing the tab at all
    status, headers, script = await get(desk, "/tab/static/teams.js")
    assert status == 200 and b"getAuthToken" in script, "Teams JS must come from the app's own origin"
    assert headers["Content-Type"].startswith("application/javascript")
    status, _, script = await get(desk, "/tab/static/desk.js")
    assert status == 200 and b"'/tab/static/teams.js'" in script
    for risky in (b"innerHTML", b"outerHTML", b"insertAdjacentHTML", b"document.write", b"eval("):
        assert risky not in script, risky
    assert (await get(desk, "/tab/static/..%2F..%2Fapp.py"))[0] == 404
    assert (await get(desk, "/tab/static/index.html"))[0] == 404


async def test_no_token_or_a_bad_one_gets_a_401_and_nothing_else(desk: Harness, idp: IdentityProvider) -> None:
    reference, token = await a_case_priya_owns(desk)
    assert (await get(desk, "/tab/api/cases", sso(desk, idp, "Priya Shah")))[0] == 200  # the good one works
    unpublished = SigningKey("entra-not-published")
    refused = {
        "no token": None,
        "not a token": "not-a-jwt",
        "expired": sso(desk, idp, "Priya Shah", expires_in=-600),
        "not yet valid": sso(desk, idp, "Priya Shah", nbf=2_000_000_000),
        "another app's audience": sso(desk, idp, "Priya Shah", audience="api://elsewhere.example/other-app"),
        "another tenant's issuer": sso(desk, idp, "Priya Shah", issuer=f"{idp.base}/{OTHER_TENANT}/v2.0"),
        "signed by a key Entra does not publish": sso(desk, idp, "Priya Shah", key=unpublished),
        "HS256 forgery": sso(desk, idp, "Priya Shah", algorithm="HS256"),
        "an ID token (no scope)": sso(desk, idp, "Priya Shah", scope=""),
        "a tenant that is not a school": sso(desk, idp, object_id=desk.person_id("Priya Shah"), tenant_id=OTHER_TENANT),
        "a person the directory does not know": sso(desk, idp, object_id=STRANGER),
    }
    paths = [
        "/tab/api/cases",
        f"/tab/api/cases/{token}",
        f"/tab/api/export/case/{token}?format=json",
        "/tab/api/children?q=Jamie",
    ]
    for why, bad in refused.items():
        for path in paths:
            status, headers, body = await get(desk, path, bad)
            assert status == 401, (why, path, status)
            assert headers["Content-Type"].startswith("application/json") and "WWW-Authenticate" in headers
            assert json.loads(body) == {"error": "Please open the safeguarding desk in Teams to sign in."}, why
            assert headers["Cache-Control"] == "no-store"
    # The bearer scheme is required as such: a token pasted without it is not read.
    status, _, _ = await get_raw(desk, "/tab/api/cases", sso(desk, idp, "Priya Shah"))
    assert status == 401


async def get_raw(harness: Harness, path: str, authorization: str) -> tuple[int, dict[str, str], bytes]:
    async with harness.http.get(f"{harness.url}{path}", headers={"Authorization": authorization}) as response:
        return response.status, dict(response.headers), await response.read()


async def test_staff_without_the_desk_role_get_403_and_an_empty_body(desk: Harness, idp: IdentityProvider) -> None:
    reference, token = await a_case_priya_owns(desk)
    leah = sso(desk, idp, "Leah Brooks")  # she reported it, but reporting gives no desk
    for path in (
        "/tab/api/cases",
        f"/tab/api/cases/{token}",
        f"/tab/api/export/case/{token}?format=pdf",
        "/tab/api/children?q=Jamie",
        "/tab/api/cases?view=nonsense",
    ):
        status, headers, body = await get(desk, path, leah)
        assert (status, body) == (403, b""), path
        assert headers["Cache-Control"] == "no-store"


async def test_a_dsl_lists_filters_and_opens_a_case_with_its_chronology(desk: Harness, idp: IdentityProvider) -> None:
    reference, token = await a_case_priya_owns(desk, what="Threats in a group chat")
    other = await submit_report(desk.user("Leah Brooks"), what="A second worry")
    priya = sso(desk, idp, "Priya Shah")

    status, headers, body = await get(desk, "/tab/api/cases", priya)
    assert status == 200 and headers["Cache-Control"] == "no-store"
    listed = json.loads(body)
    assert {row["reference"] for row in listed["rows"]} == {reference, other}
    assert [v["key"] for v in listed["views"]][:2] == ["open", "unowned"] and listed["groups"]
    row = next(r for r in listed["rows"] if r["reference"] == reference)
    assert row["owner"] == "Priya Shah" and row["token"] == token

    unowned = json.loads((await get(desk, "/tab/api/cases?view=unowned", priya))[2])
    assert [r["reference"] for r in unowned["rows"]] == [other]
    mine = json.loads((await get(desk, "/tab/api/cases?view=mine&group=conduct&page=1", priya))[2])
    assert [r["reference"] for r in mine["rows"]] == [reference]
    assert mine["filter"] == {"view": "mine", "group": "conduct", "page": 1}

    status, _, body = await get(desk, f"/tab/api/cases/{token}", priya)
    assert status == 200
    record = json.loads(body)
    assert record["reference"] == reference and record["what_happened"] == "Threats in a group chat"
    chronology = [entry["text"] for entry in record["chronology"]]
    assert chronology[0].startswith("Reported by Leah Brooks") and "Taken on by Priya Shah" in chronology

    async with desk.parts.uow() as uow:
        entries = await uow.audit.entries("oakfield")
    assert any(
        e.action == "incident.viewed"
        and e.actor_id == desk.person_id("Priya Shah")
        and (e.detail or {}).get("path") == "tab"
        for e in entries
    ), "reads from the tab are audited"


async def test_a_dsl_exports_a_case_as_a_pdf_and_json_download(desk: Harness, idp: IdentityProvider) -> None:
    reference, token = await a_case_priya_owns(desk)
    priya = sso(desk, idp, "Priya Shah")
    status, headers, body = await get(desk, f"/tab/api/export/case/{token}?format=pdf", priya)
    assert status == 200 and body.startswith(b"%PDF")
    assert headers["Content-Type"] == "application/pdf"
    assert (
        headers["Content-Disposition"].startswith("attachment; filename=")
        and reference in headers["Content-Disposition"]
    )
    assert headers["Cache-Control"] == "no-store"
    status, headers, body = await get(desk, f"/tab/api/export/case/{token}?format=json", priya)
    assert status == 200 and reference in body.decode()


async def test_a_case_the_dsl_may_not_see_and_unknown_tokens_are_the_same_404(
    desk: Harness, idp: IdentityProvider
) -> None:
    await desk.user("Grace Okafor").says("help")
    reference = await submit_report(
        desk.user("Leah Brooks"),
        subject="A member of staff",
        group="contact",
        category="staff_personal_channels",
        who="Mr X",
        what="Shouted at a pupil",
    )
    # An allegation about staff goes to the Headteacher only: the DSL's tab neither lists nor opens it.
    priya = sso(desk, idp, "Priya Shah")
    listed = json.loads((await get(desk, "/tab/api/cases", priya))[2])
    assert reference not in json.dumps(listed)
    async with desk.parts.uow() as uow:
        incident = await uow.incidents.by_reference("oakfield", reference)
    hidden = await get(desk, f"/tab/api/cases/{incident.token}", priya)
    unknown = await get(desk, "/tab/api/cases/no-such-case-token", priya)
    assert hidden[0] == unknown[0] == 404 and json.loads(hidden[2]) == json.loads(unknown[2])
    assert "Shouted" not in hidden[2].decode()
    status, _, body = await get(desk, f"/tab/api/export/case/{incident.token}?format=pdf", priya)
    assert status == 404 and not body.startswith(b"%PDF")


async def test_a_dsl_finds_a_child_and_reads_every_linked_concern_as_one_chronology(
    desk: Harness, idp: IdentityProvider
) -> None:
    first, first_token = await a_case_priya_owns(desk, what="Threats in a group chat")
    second = await submit_report(desk.user("Leah Brooks"), what="Upset after a game chat")
    priya = desk.user("Priya Shah")
    second_token = card_titled(await priya.says(f"case {second}"), second)["refresh"]["action"]["data"]["token"]
    await priya.executes(
        "child.create",
        {"token": first_token, "name": "Jamie Smith", "year_group": "Year 8", "date_of_birth": "2013-04-02"},
    )
    dsl = sso(desk, idp, "Priya Shah")

    status, _, body = await get(desk, "/tab/api/children?q=jamie", dsl)
    assert status == 200
    (match,) = json.loads(body)["children"]
    assert match["name"] == "Jamie Smith" and match["year_group"] == "Year 8"
    await priya.executes("child.link", {"token": second_token, "child": match["token"]})

    status, _, body = await get(desk, f"/tab/api/children/{match['token']}", dsl)
    assert status == 200
    file = json.loads(body)
    assert [c["reference"] for c in file["cases"]] == [first, second]
    assert {entry["case"] for entry in file["chronology"]} == {first, second}
    times = [entry["happened_at"] for entry in file["chronology"]]
    assert times == sorted(times), "one chronology, in the order things happened"

    status, headers, body = await get(desk, f"/tab/api/export/child/{match['token']}?format=json", dsl)
    assert status == 200 and headers["Content-Disposition"].startswith("attachment;")
    assert first in body.decode() and second in body.decode()
    # Staff without the desk get nothing about the child either.
    leah = sso(desk, idp, "Leah Brooks")
    assert (await get(desk, f"/tab/api/children/{match['token']}", leah))[:3:2] == (403, b"")


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/tab/api/cases?view=everything", "There is no view called 'everything'"),
        ("/tab/api/cases?page=0", "The page must be a whole number"),
        ("/tab/api/cases?page=two", "The page must be a whole number"),
        ("/tab/api/cases?page=99999999999999999999", "The page must be a whole number"),
        ("/tab/api/cases?group=%00%FF", "There is no category group called"),
        ("/tab/api/children?q=J", "Type at least 2 letters"),
        ("/tab/api/children?q=" + "x" * 81, "too long for a name"),
        ("/tab/api/export/case/abc?format=docx", "Choose PDF or JSON"),
    ],
)
async def test_bad_query_values_get_a_kind_400(desk: Harness, idp: IdentityProvider, path: str, says: str) -> None:
    status, headers, body = await get(desk, path, sso(desk, idp, "Priya Shah"))
    assert status == 400, body
    assert says in json.loads(body)["error"]


async def test_odd_tokens_in_the_path_are_a_404_never_a_5xx(desk: Harness, idp: IdentityProvider) -> None:
    priya = sso(desk, idp, "Priya Shah")
    for path in (
        "/tab/api/cases/%27%3B--",
        "/tab/api/cases/" + "a" * 500,
        "/tab/api/children/%E2%80%AE",
        "/tab/api/export/pupil/abc",
        "/tab/api/export/child/%00?format=pdf",
    ):
        status, _, body = await get(desk, path, priya)
        assert status == 404 and "error" in json.loads(body), path


async def test_entra_metadata_is_cached_and_a_newly_published_key_is_picked_up(
    desk: Harness, idp: IdentityProvider
) -> None:
    for _ in range(3):
        assert (await get(desk, "/tab/api/cases", sso(desk, idp, "Priya Shah")))[0] == 200
    assert len(idp.tab_fetches) == 2, "metadata and keys are fetched once, not on every request"
    # Entra rolls its keys over: a token signed with the new key is accepted once the app re-reads the keys.
    rotated = idp.rotate_tab_key()
    assert (await get(desk, "/tab/api/cases", sso(desk, idp, "Priya Shah", key=rotated)))[0] == 200
    assert len(idp.tab_fetches) == 4
    # A forged key id cannot make the app fetch again and again.
    for n in range(20):
        forged = sso(desk, idp, "Priya Shah", key=SigningKey(f"entra-forged-{n}"))
        assert (await get(desk, "/tab/api/cases", forged))[0] == 401
    # The first read is free; re-reads for unknown keys (the rollover's included) are capped per minute.
    assert len(idp.tab_fetches) == 2 * (1 + REFRESHES_PER_MINUTE), "refreshes for unknown keys are limited"
    assert (await get(desk, "/tab/api/cases", sso(desk, idp, "Priya Shah", key=rotated)))[0] == 200


async def test_when_entra_cannot_be_reached_the_tab_says_so_without_a_crash(
    database_url: str, clock: SettableClock, tmp_path: Path, idp: IdentityProvider
) -> None:
    settings = {**tab_settings(idp), "tab_openid_metadata": f"{idp.base}/missing/nowhere"}
    async with start_harness(database_url=database_url, clock=clock, var_dir=tmp_path / "var", **settings) as harness:
        status, _, body = await get(harness, "/tab/api/cases", sso(harness, idp, "Priya Shah"))
    assert status == 503 and "Sign-in cannot be checked just now" in json.loads(body)["error"]


# --- in Chromium -------------------------------------------------------------------------------------------------

TAB_TOOLS = ROOT / "tools" / "tab"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "docs" / "tab"


def _require_browser() -> None:
    """Fail, never skip, when the browser cannot run: the suite must say what to install."""
    if shutil.which("node") is None:
        pytest.fail("node is not installed: run `make system-deps` (scripts/system-deps.sh)")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not at {CHROMIUM}: run `make system-deps` (scripts/system-deps.sh)")
    for package in ("playwright-core", "axe-core", "@microsoft/teams-js"):
        if not (TAB_TOOLS / "node_modules" / package).exists():
            pytest.fail(f"tools/tab is missing {package}: run `make system-deps` (scripts/system-deps.sh)")


async def run_in_chromium(scenario: dict[str, Any], workdir: Path) -> dict[str, Any]:
    path = workdir / "scenario.json"
    path.write_text(json.dumps(scenario), encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        "node",
        str(TAB_TOOLS / "check.mjs"),
        str(path),
        cwd=str(TAB_TOOLS),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "CHROMIUM_PATH": CHROMIUM},
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 300)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    lines = out.decode("utf-8", "replace").strip().splitlines()
    assert process.returncode == 0 and lines, err.decode("utf-8", "replace")[-3000:]
    seen = json.loads(lines[-1])
    if seen.get("failure"):
        seen["failure"] += "\n" + err.decode("utf-8", "replace")[-3000:]
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the browser adds nothing per database
async def test_in_chromium_a_dsl_lists_filters_opens_and_exports_and_others_see_nothing(
    desk: Harness, idp: IdentityProvider, tmp_path: Path
) -> None:
    """The page in headless Chromium. The Agents Playground cannot host it (it reads no app manifest, so no static
    tabs, and has no SSO), so the page is loaded on its own with the test identity provider's SSO token as the
    Authorization header; and once more framed by a stand-in for Teams at Teams' origin that answers Teams JS's
    initialize and getAuthToken, so the in-Teams sign-in path runs too."""
    _require_browser()
    typed = 'Threats in a group chat <img src=x onerror="document.title=1">'  # typed text is shown, never run
    reference, token = await a_case_priya_owns(desk, what=typed)
    other = await submit_report(desk.user("Leah Brooks"), what="A second worry")
    linked = await desk.user("Priya Shah").executes(
        "child.create", {"token": token, "name": "Jamie Smith", "year_group": "Year 8", "date_of_birth": "2013-04-02"}
    )
    assert "Jamie Smith is now linked" in json.dumps(linked.body)

    seen = await run_in_chromium(
        {
            "url": desk.url,
            "dslToken": sso(desk, idp, "Priya Shah"),
            "staffToken": sso(desk, idp, "Leah Brooks"),
            "reference": reference,
            "otherReference": other,
            "child": {"name": "Jamie Smith"},
            "screenshots": str(SCREENSHOTS),
            "timeout": 30000,
        },
        tmp_path,
    )
    assert seen["failure"] is None, seen["failure"]
    assert seen["errors"] == [] and seen["serverErrors"] == []
    assert seen["blocked"] == [], "the tab loads nothing from outside its own origin"
    # The only policy violations: Teams JS's attempt to fetch from Microsoft's CDN (stopped: no CDN), and framing
    # by a site that is not Teams.
    for violation in seen["csp"]:
        assert (
            violation.startswith("teams: ")
            and "res.cdn.office.net" in violation
            or violation.startswith("not-teams: ")
            and "frame-ancestors" in violation
        ), violation

    # A DSL lists, filters, opens (chronology visible) and exports.
    assert sorted(seen["caseload"]["rows"]) == sorted([reference, other])
    assert seen["unowned"]["rows"] == [other]
    assert seen["case"]["title"] == f"Case {reference}"
    assert any("Taken on by Priya Shah" in entry for entry in seen["case"]["chronology"])
    assert typed in seen["case"]["details"] and "Jamie Smith" in seen["case"]["details"]
    assert seen["case"]["documentTitle"] == "Safeguarding desk"
    assert seen["download"]["head"] == "%PDF-" and reference in seen["download"]["name"]
    # Search by child, and the child's chronology.
    assert "Jamie Smith" in seen["search"]
    assert any(reference in case for case in seen["child"]["cases"])
    assert any("Linked to a child's record by Priya Shah" in entry for entry in seen["child"]["chronology"])

    # Keyboard only: Tab reaches the case's link, Enter opens it, focus lands on its heading, focus is visible.
    keyboard = seen["keyboard"]
    assert keyboard["reached"], keyboard["visited"]
    assert keyboard["opened"] == "case-title" and keyboard["chronology"] >= 2
    assert all(stop["outline"].startswith("solid") for stop in keyboard["visited"]), keyboard["visited"]

    # Staff without the role, and no token at all: a calm message and no case data.
    assert seen["staff"]["heading"] == "This desk is for the safeguarding team"
    assert seen["staff"]["api"] and set(seen["staff"]["api"]) == {403}
    assert seen["anonymous"]["heading"] == "Open this in Teams" and set(seen["anonymous"]["api"]) == {401}
    for who in ("staff", "anonymous"):
        assert "ES-" not in seen[who]["text"] and "Threats" not in seen[who]["text"]

    # Framed by a stand-in for Teams: the page takes its token from Teams JS (getAuthToken) and lists the cases;
    # framed by any other site it does not load at all.
    assert seen["teams"]["asked"][:2] == ["initialize", "authentication.getAuthToken"], seen["teams"]["asked"]
    assert sorted(seen["teams"]["rows"]) == sorted([reference, other])
    assert "ES-" not in seen["framedElsewhere"] and "Safeguarding" not in seen["framedElsewhere"]

    assert seen["violations"] == [], json.dumps(seen["violations"], indent=1)
    for name in ("caseload", "case", "child-chronology", "refused", "sign-in"):
        assert (SCREENSHOTS / f"{name}.png").stat().st_size > 5000
