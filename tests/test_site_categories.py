"""Site categories that work out of the box: the UT1-layout loader, the shipped lists, and never-unblock over HTTP."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from adapters.clock import SettableClock
from bot.config import ConfigError, FilteringConfig
from bot.filtering import FilterRules, normalise_site
from bot.policy import load_policy
from bot.site_categories import CategoryListError, load_folder
from tests.support.harness import Harness
from tests.support.squid import start_filter_harness

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "config" / "policy_defaults.yaml"
REQUESTER = "Leah Brooks"
LEAD = "Sam Patel"  # online-safety lead and filtering approver
HEAD = "Grace Okafor"  # Headteacher and filtering approver


def write_list(folder: Path, name: str, *lines: str) -> None:
    (folder / name).mkdir(parents=True, exist_ok=True)
    (folder / name / "domains").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_the_loader_reads_the_ut1_layout(tmp_path: Path) -> None:
    write_list(
        tmp_path,
        "gambling",
        "# a comment",
        "bet365.com",
        "*.Casino.example",
        "",
        "  paddypower.com  ",
        "example.org/betting/page",
        "bücher-wetten.de",
    )
    write_list(tmp_path, "adult", "pornhub.com")
    (tmp_path / "porn").symlink_to(tmp_path / "adult")  # UT1 ships aliases as links
    (tmp_path / "README").write_text("not a list", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    lists = load_folder(tmp_path)
    assert set(lists.lists) == {"gambling", "adult", "porn"}
    idn = normalise_site("https://bücher-wetten.de/").domain  # written in Unicode, matched as requests see it
    assert idn.startswith("xn--")
    assert lists.lists["gambling"] == {"bet365.com", "casino.example", "paddypower.com", idn}
    assert lists.lists["porn"] is lists.lists["adult"], "an alias is read once"
    assert set(load_folder(tmp_path, only={"adult"}).lists) == {"adult"}


def test_matching_is_on_the_host_and_its_registrable_domain(tmp_path: Path) -> None:
    write_list(tmp_path, "redirector", "hidemyass.com", "proxy.example.org", "myshopify.com")
    lists = load_folder(tmp_path)

    def listed(typed: str) -> bool:
        site = normalise_site(typed)
        return lists.names_for(site.host, site.domain) == ("redirector",)

    assert listed("https://www.hidemyass.com/en-gb/proxy")  # the registrable domain is listed
    assert listed("a.proxy.example.org") and listed("proxy.example.org")  # a listed host and below it
    assert not listed("example.org") and not listed("other.example.org"), "a listed host does not widen"
    assert not listed("shop.myshopify.com"), "a listed platform is not each of its customers' sites"
    assert not listed("nothidemyass.com")


def test_a_missing_folder_is_a_clear_startup_error(tmp_path: Path) -> None:
    with pytest.raises(CategoryListError, match="does not exist"):
        load_folder(tmp_path / "nowhere")
    raw = yaml.safe_load(POLICY.read_text(encoding="utf-8"))
    raw["filtering"]["category_dirs"] = [str(tmp_path / "ut1")]
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ConfigError, match=f"filtering.category_dirs: .*{tmp_path / 'ut1'}"):
        load_policy(policy_file)
    with pytest.raises(ValidationError, match="no such folder"):
        FilteringConfig(category_dirs=[tmp_path / "ours"])


def test_the_shipped_lists_cover_every_category_they_are_for() -> None:
    policy = load_policy(POLICY)
    rules = FilterRules.from_policy(policy.filtering, None)
    examples = {
        "pornhub.com": "pornography",
        "bet365.com": "gambling",
        "hidemyass.com": "proxy_avoidance",
        "nordvpn.com": "proxy_avoidance",
        "sanctioned-suicide.net": "self_harm_promotion",
        "stormfront.org": "terrorism_extremism",
        "testsafebrowsing.appspot.com": "malware_phishing",
        "smartscreentestratings2.net": "malware_phishing",
    }
    for domain, category in examples.items():
        assert rules.categories(domain) == (category,), domain
        assert category in policy.filtering.never_unblock_categories
        assert rules.never_unblock_reason(domain) is not None
    for name in os.listdir(ROOT / "config" / "categories"):
        if (ROOT / "config" / "categories" / name / "domains").is_file():
            assert policy.filtering.list_categories.get(name, name) in policy.filtering.never_unblock_categories, (
                f"the shipped list {name} counts as a never-unblock category"
            )
    for fine in ("bbc.co.uk", "www.bbc.co.uk", "youtube.com", "wikipedia.org", "gov.uk", "padlet.com"):
        assert rules.never_unblock_reason(fine) is None, fine


# --- over HTTP -------------------------------------------------------------------------------------------------


@pytest.fixture
async def harness(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    """The demo school exactly as shipped: no category settings of its own; due work runs when the test says."""
    async with start_filter_harness(database_url=database_url, clock=clock, var_dir=tmp_path / "var") as running:
        yield running


async def deliver(harness: Harness) -> None:
    while await harness.run_due_work():
        pass


def everything_to(harness: Harness, name: str) -> str:
    return json.dumps([s.activity for s in harness.connector.to(harness.user(name).conversation_id)])


async def test_with_no_school_config_shipped_categories_are_refused_at_once_and_reach_no_approver(
    harness: Harness,
) -> None:
    for name in (REQUESTER, LEAD, HEAD):
        await harness.user(name).installs()
    leah = harness.user(REQUESTER)
    for typed, words in [
        ("https://www.bet365.com/", "gambling"),
        ("pornhub.com", "pornography"),
        ("https://www.hidemyass.com/en-gb/proxy", "tools for getting round the filter"),
    ]:
        await leah.says("filter")
        await leah.submits({"answer": "unblock"})
        reply = await leah.says(typed)
        assert reply.status < 500
        assert any("can't be unblocked" in t and words in t and "nothing has been sent" in t for t in reply.texts), (
            reply.texts
        )
        reply = await leah.says("help")
        assert "Hello Leah" in json.dumps(reply.cards), "the conversation ended with the refusal"
    # A site in no category still goes to the approvers, so the silence above is the refusal, not a broken send.
    await leah.says("filter")
    await leah.submits({"answer": "unblock"})
    await leah.says("https://www.bbc.co.uk/bitesize")
    await leah.submits({"answer": "all_pupils"})
    await leah.says("Year 6 science lesson on the water cycle")
    await leah.says("tomorrow")
    await leah.submits({"answer": "temporary"})
    await leah.says("Tuesday 15:30")
    await leah.submits({"answer": "yes"})
    sent = await leah.submits({"answer": "submit"})
    assert any("FR-0001" in t for t in sent.texts), "the refused ones took no reference"
    await deliver(harness)
    for approver in (LEAD, HEAD):
        seen = everything_to(harness, approver)
        assert "Filter request FR-0001" in seen
        for site in ("bet365", "pornhub", "hidemyass"):
            assert site not in seen, f"{approver} was never asked about {site}"
    log = json.dumps((await harness.user(LEAD).says("filter log")).cards)
    assert log.count("Refused") == 3 and "bet365.com" in log and "hidemyass.com" in log


async def test_a_schools_own_lists_add_to_the_shipped_ones(
    database_url: str, clock: SettableClock, tmp_path: Path
) -> None:
    ours = tmp_path / "oakfield-lists"
    write_list(ours, "gambling", "lucky-casino.example")
    write_list(ours, "social_networks", "classchat.example")  # UT1's name; the policy maps it to social networking
    async with start_filter_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", category_dirs=[ours]
    ) as harness:
        leah = harness.user(REQUESTER)
        await leah.says("filter")
        await leah.submits({"answer": "unblock"})
        reply = await leah.says("https://www.lucky-casino.example/")
        assert any("can't be unblocked" in t and "gambling" in t for t in reply.texts)
        await leah.says("filter")
        await leah.submits({"answer": "unblock"})
        reply = await leah.says("bet365.com")
        assert any("can't be unblocked" in t for t in reply.texts), "the shipped lists still apply"
        await leah.says("filter")
        await leah.submits({"answer": "unblock"})
        await leah.says("https://classchat.example/room/6b")
        await leah.submits({"answer": "all_pupils"})
        await leah.says("Year 6 class discussion")
        await leah.says("tomorrow")
        await leah.submits({"answer": "temporary"})
        await leah.says("Tuesday 15:30")
        summary = await leah.submits({"answer": "yes"})
        assert "the Headteacher must approve it" in json.dumps(summary.cards)
