"""Unit tests (no I/O but a temp dir): site normalisation, parsing, the filtering rules, CSV and list files."""

from __future__ import annotations

import datetime as dt
import stat
from zoneinfo import ZoneInfo

import pytest

from adapters.filter_backends import SquidBackend
from bot.filtering import (
    BadSite,
    FilterBackendError,
    FilterChange,
    FilterRules,
    LogEntry,
    normalise_site,
    parse_day,
    parse_until,
    parse_year_groups,
)
from bot.filtering_service import log_csv

LONDON = ZoneInfo("Europe/London")
NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)  # a Monday


@pytest.mark.parametrize(
    ("typed", "host", "domain"),
    [
        ("https://www.BBC.co.uk/bitesize", "www.bbc.co.uk", "bbc.co.uk"),
        ("bbc.co.uk", "bbc.co.uk", "bbc.co.uk"),
        ("http://maths.oakfield.kent.sch.uk/games", "maths.oakfield.kent.sch.uk", "oakfield.kent.sch.uk"),
        ("www.ucl.ac.uk", "www.ucl.ac.uk", "ucl.ac.uk"),
        ("someone.github.io/project", "someone.github.io", "someone.github.io"),
        ("https://münchen.de/", "xn--mnchen-3ya.de", "xn--mnchen-3ya.de"),
        ("<https://docs.python.org/3/>", "docs.python.org", "python.org"),
        ("WWW.Example.COM.", "www.example.com", "example.com"),
    ],
)
def test_sites_are_normalised_to_their_registrable_domain(typed: str, host: str, domain: str) -> None:
    site = normalise_site(typed)
    assert (site.host, site.domain) == (host, domain)
    assert site.url.startswith(("http://", "https://"))


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("", "paste the web address"),
        ("just words", "no spaces"),
        ("co.uk", "only the end"),
        ("sch.uk", "only the end"),
        ("kent.sch.uk", "only the end"),
        ("192.168.1.10", "number address"),
        ("javascript:alert(1)", "Only web sites"),
        ("localhost", "not a complete site name"),
        ("exa_mple.com", "not a valid site name"),
        ("http://", "couldn't find a site name"),
    ],
)
def test_garbage_gets_a_clear_message(typed: str, says: str) -> None:
    with pytest.raises(BadSite) as bad:
        normalise_site(typed)
    assert says in bad.value.message


def test_days_times_and_year_groups() -> None:
    today = NOW.date()
    assert parse_day("Tuesday", today) == dt.date(2026, 11, 24)
    assert parse_day("24/11/2026", today) == dt.date(2026, 11, 24)
    assert parse_day("3 Jan", today) == dt.date(2027, 1, 3)
    assert parse_day("31/02/2027", today) is None
    summer = dt.datetime(2027, 6, 1, 9, tzinfo=dt.UTC)
    assert parse_until("1/6/2027 3:30pm", summer, LONDON, dt.time(17)) == dt.datetime(
        2027, 6, 1, 14, 30, tzinfo=dt.UTC
    )  # BST
    assert parse_until("Friday", NOW, LONDON, dt.time(17, 30)) == dt.datetime(2026, 11, 27, 17, 30, tzinfo=dt.UTC)
    assert parse_until("Friday 25:00", NOW, LONDON, dt.time(17)) is None
    assert parse_year_groups("Reception, Year 1 and Y2") == ("Reception", "Year 1", "Year 2")
    assert parse_year_groups("Year 14") == ()


def test_rules_never_unblock_and_headteacher() -> None:
    rules = FilterRules(
        never_unblock_domains=("proxy.example",),
        never_unblock_categories=("gambling",),
        headteacher_categories=("social_networking",),
        social_networking_domains=("tiktok.com",),
        domain_categories={"bet365.com": "gambling"},
    )
    assert "never unblocked" in rules.never_unblock_reason("www.proxy.example")
    assert "gambling" in rules.never_unblock_reason("bet365.com")
    assert rules.never_unblock_reason("bbc.co.uk") is None
    assert rules.needs_headteacher("tiktok.com") and not rules.needs_headteacher("nottiktok.com")


def test_csv_export_is_oldest_first_and_safe_for_spreadsheets() -> None:
    entries = [
        LogEntry(
            NOW + dt.timedelta(minutes=5),
            "approved",
            "p2",
            "Sam Patel",
            "bbc.co.uk",
            "FR-0001",
            '=HYPERLINK("http://evil")',
        ),
        LogEntry(NOW, "requested", "p1", "Leah Brooks", "bbc.co.uk", "FR-0001", "for all pupils"),
    ]
    text, count = log_csv(entries, LONDON)
    lines = text.splitlines()
    assert count == 2
    many = entries * 500
    text, count = log_csv(many, LONDON, max_chars=5000)
    assert len(text) <= 5000 and 0 < count < 1000 and text.count("\n") == count + 1
    assert lines[0] == "when,reference,action,site,by,detail"
    assert lines[1].startswith("2026-11-23 10:00,FR-0001,Requested,bbc.co.uk,Leah Brooks")
    assert "'=HYPERLINK" in lines[2]


async def test_squid_lists_are_written_whole_and_readable_by_squid(tmp_path) -> None:  # noqa: ANN001
    allow, block = tmp_path / "allow.txt", tmp_path / "block.txt"
    backend = SquidBackend(allow, block, ["true"])
    await backend.apply(FilterChange("FR-0001", "allow", "bbc.co.uk", "all_pupils"))
    await backend.apply(FilterChange("FR-0001", "allow", "bbc.co.uk", "all_pupils"))  # a retry changes nothing
    await backend.apply(FilterChange("FR-0002", "block", "games.example", "all_pupils"))
    assert allow.read_text() == ".bbc.co.uk\n"
    assert block.read_text() == ".games.example\n"
    assert stat.S_IMODE(allow.stat().st_mode) == 0o644
    await backend.apply(FilterChange("FR-0003", "allow", "games.example", "staff"))
    assert (tmp_path / "allow.staff.txt").read_text() == ".games.example\n"
    assert block.read_text() == ".games.example\n", "a staff-only unblock leaves everyone else's block in place"
    await backend.apply(FilterChange("FR-0004", "allow", "maths.example", "year_groups", ("Year 5", "Reception")))
    assert (tmp_path / "allow.year-5.txt").read_text() == ".maths.example\n"
    assert (tmp_path / "allow.reception.txt").read_text() == ".maths.example\n"
    await backend.apply(FilterChange("FR-0005", "block", "maths.example", "all_pupils"))
    assert (tmp_path / "allow.year-5.txt").read_text() == "", "a block takes the site off every allow list"
    await backend.apply(FilterChange("FR-0006", "allow", "games.example", "all_pupils"))
    assert block.read_text() == ".maths.example\n" and allow.read_text() == ".bbc.co.uk\n.games.example\n"
    await backend.revert(FilterChange("FR-0001", "allow", "bbc.co.uk", "all_pupils"))
    assert allow.read_text() == ".games.example\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    failing = SquidBackend(allow, block, ["false"])
    with pytest.raises(FilterBackendError, match="Squid reload failed"):
        await failing.apply(FilterChange("FR-0004", "allow", "x.example", "all_pupils"))
