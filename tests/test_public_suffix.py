"""Registrable domains from the real Public Suffix List: a request names one site, never a whole country or platform."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.clock import SettableClock
from bot.filtering import BadSite, normalise_site, registrable_domain
from tests.support.harness import Harness
from tests.support.squid import start_filter_harness
from tests.support.teams import Reply, TeamsUser

REQUESTER = "Leah Brooks"
LEAD = "Sam Patel"  # a filtering approver

NARROW = [
    # (what a teacher pastes, the site the request names)
    ("https://www.kcb.co.ke/personal-banking", "kcb.co.ke"),  # ICANN suffix co.ke: not the whole of .co.ke
    ("shop.myshopify.com/x", "shop.myshopify.com"),  # private suffix: one shop, not every Shopify shop
    ("https://x.sharepoint.com/sites/Year6", "x.sharepoint.com"),  # one school's SharePoint, not Microsoft's
    ("y.github.io/project", "y.github.io"),
    ("https://www.lincoln.k12.ca.us/", "lincoln.k12.ca.us"),  # a Californian school district
]


@pytest.mark.parametrize(
    ("typed", "domain"),
    [
        *NARROW,
        ("https://www.bbc.co.uk/bitesize", "bbc.co.uk"),
        ("http://maths.oakfield.kent.sch.uk/games", "oakfield.kent.sch.uk"),  # *.sch.uk: each school is a site
        ("https://docs.python.org/3/", "python.org"),
        ("https://www.gov.uk/", "www.gov.uk"),  # gov.uk is a suffix: allowing GOV.UK is not allowing every council
        ("https://parliament.uk/", "parliament.uk"),  # not a suffix at all (the old hand-written list said it was)
        ("https://münchen.de/", "xn--mnchen-3ya.de"),
        ("https://пример.рф/", "xn--e1afmkfd.xn--p1ai"),  # an internationalised top-level domain
        ("sharepoint.com", "sharepoint.com"),  # a platform added to the list is still its own site
    ],
)
def test_the_registrable_domain_comes_from_the_public_suffix_list(typed: str, domain: str) -> None:
    assert normalise_site(typed).domain == domain


@pytest.mark.parametrize("typed", ["co.ke", "k12.ca.us", "github.io", "myshopify.com", "sch.uk", "kent.sch.uk"])
def test_a_bare_public_suffix_is_not_a_site(typed: str) -> None:
    with pytest.raises(BadSite) as bad:
        normalise_site(typed)
    assert "only the end of a web address" in bad.value.message


def test_an_unknown_top_level_domain_names_one_site() -> None:
    # The Public Suffix List's default rule: an unlisted TLD is a suffix, so an intranet name stays one site.
    assert registrable_domain("portal.oakfield-intranet") == "portal.oakfield-intranet"
    assert registrable_domain("WWW.Example.COM.") == "example.com"


# --- over HTTP: what the teacher and the approver read ----------------------------------------------------------


@pytest.fixture
async def harness(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    """The demo school with no filtering settings of its own; due work runs when the test says."""
    async with start_filter_harness(database_url=database_url, clock=clock, var_dir=tmp_path / "var") as running:
        yield running


def labelled(cards: list[dict[str, Any]], label: str) -> list[str]:
    """The values shown beside `label` on these cards (typed-facts rows and FactSets)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            inlines = node.get("inlines")
            if (
                node.get("type") == "RichTextBlock"
                and isinstance(inlines, list)
                and len(inlines) >= 2
                and inlines[0].get("text") == f"{label}: "
            ):
                found.append(inlines[1].get("text", ""))
            if node.get("type") == "FactSet":
                found.extend(f["value"] for f in node.get("facts", []) if f.get("title") == label)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(cards)
    return found


async def ask_until_summary(user: TeamsUser, site: str) -> Reply:
    """Walk the `filter` conversation for an unblock of `site` up to the summary card."""
    await user.says("filter")
    await user.submits({"answer": "unblock"})
    await user.says(site)
    await user.submits({"answer": "all_pupils"})
    await user.says("Year 6 geography lesson on trade with Kenya")
    await user.says("tomorrow")
    await user.submits({"answer": "temporary"})
    await user.says("Tuesday 15:30")
    return await user.submits({"answer": "yes"})


async def test_requests_name_the_narrowest_site_to_the_teacher_and_the_approver(harness: Harness) -> None:
    for name in (REQUESTER, LEAD):
        await harness.user(name).installs()
    leah = harness.user(REQUESTER)
    references = {}
    for typed, domain in NARROW:
        summary = await ask_until_summary(leah, typed)
        assert labelled(summary.cards, "Site") == [domain], f"{typed} is summarised as {domain}"
        sent = await leah.submits({"answer": "submit"})
        [reference] = [word.strip(".,") for t in sent.texts for word in t.split() if word.startswith("FR-")][:1]
        references[reference] = domain
    assert len(references) == len(NARROW), "different sites are different requests, none linked to another"
    while await harness.run_due_work():
        pass
    to_sam = [c for s in harness.connector.to(harness.user(LEAD).conversation_id) for c in s.cards]
    for reference, domain in references.items():
        [card] = [c for c in to_sam if f"Filter request {reference}" in json.dumps(c) and c.get("actions")]
        assert labelled([card], "Site") == [domain], "the approver reads the same narrow site, not its suffix"


async def test_an_international_name_is_shown_as_typed_and_a_number_address_gets_a_kind_answer(
    harness: Harness,
) -> None:
    leah = harness.user(REQUESTER)
    await leah.says("filter")
    await leah.submits({"answer": "unblock"})
    reply = await leah.says("http://203.0.113.9/login")
    assert reply.status < 500
    assert any("site's name rather than a number address" in t for t in reply.texts)
    assert any("Which site?" in t for t in reply.texts), "the question is asked again"
    reply = await leah.says("https://[2001:db8::1]/")
    assert any("number address" in t for t in reply.texts)
    reply = await leah.says("https://www.bücher.de/kinderbuch")
    assert reply.status < 500 and "Who is it for?" in json.dumps(reply.cards)
    await leah.submits({"answer": "all_pupils"})
    await leah.says("Year 6 German lesson on children's books")
    await leah.says("tomorrow")
    await leah.submits({"answer": "temporary"})
    await leah.says("Tuesday 15:30")
    summary = await leah.submits({"answer": "yes"})
    assert labelled(summary.cards, "Site") == ["bücher.de"], "people read the name as they wrote it"
