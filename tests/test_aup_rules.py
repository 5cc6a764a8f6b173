"""AUP rules without I/O: the Markdown format, renewal dates, who owes which policy, cards and the CSV."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.aup import (
    Audience,
    AudienceStatus,
    AupDocument,
    AupFormatError,
    StatusLine,
    StatusReport,
    audience_for,
    csv_parts,
    cycle_key,
    cycle_start,
    next_renewal,
    parse_markdown,
    render_html,
    sha256,
    status_csv,
    with_version,
)
from bot.cards.aup import build_aup_card, build_status_card
from bot.people import Person, Role

LONDON = ZoneInfo("Europe/London")
AUP_DIR = Path(__file__).resolve().parent.parent / "config" / "aup"


def _doc(audience: Audience) -> AupDocument:
    parsed = parse_markdown((AUP_DIR / f"{audience.value}.md").read_text(encoding="utf-8"))
    return AupDocument(
        "oakfield",
        audience,
        parsed.version,
        parsed.title,
        parsed.summary,
        parsed.text,
        sha256(parsed.text),
        dt.datetime(2026, 9, 1, tzinfo=dt.UTC),
    )


@pytest.mark.parametrize("audience", list(Audience))
def test_the_default_texts_parse_and_make_cards_under_40_kb(audience: Audience) -> None:
    document = _doc(audience)
    assert document.version == 1 and len(document.sections) >= 4
    assert all(section.points for section in document.sections)
    card = build_aup_card(document, link="https://esafety.example/aup/oakfield/x/1")
    assert len(json.dumps(card).encode()) < 40 * 1024
    assert "Keeping Children Safe in Education" in json.dumps(card)


def test_a_new_version_changes_the_hash_but_not_the_content_hash() -> None:
    parsed = parse_markdown((AUP_DIR / "staff.md").read_text(encoding="utf-8"))
    bumped = with_version(parsed, 2)
    assert "Version: 2" in bumped.text and bumped.version == 2
    assert sha256(bumped.text) != sha256(parsed.text)
    assert bumped.content_hash == parsed.content_hash


@pytest.mark.parametrize(
    "markdown, problem",
    [
        ("Version: 1\nSummary: s\n## A\n- x\n", "Title"),
        ("# T\nSummary: s\n## A\n- x\n", "Version"),
        ("# T\nVersion: 1\n## A\n- x\n", "Summary"),
        ("# T\nVersion: 1\nSummary: s\n## A\n", "bullet"),
        ("# T\nVersion: 1\nSummary: s\nSome stray prose\n## A\n- x\n", "line 4"),
    ],
)
def test_a_malformed_file_names_its_problem(markdown: str, problem: str) -> None:
    with pytest.raises(AupFormatError, match=problem):
        parse_markdown(markdown)


def test_renewal_starts_at_midnight_school_time_on_the_configured_day() -> None:
    just_before = dt.datetime(2027, 8, 31, 22, 59, tzinfo=dt.UTC)  # 23:59 BST
    just_after = dt.datetime(2027, 8, 31, 23, 0, tzinfo=dt.UTC)  # 00:00 BST on 1 September
    assert cycle_key(just_before, "09-01", LONDON) == "2026-09-01"
    assert cycle_key(just_after, "09-01", LONDON) == "2027-09-01"
    assert next_renewal(just_before, "09-01", LONDON) == just_after
    assert cycle_start(dt.datetime(2027, 3, 1, tzinfo=dt.UTC), "02-29", LONDON).date() == dt.date(2027, 2, 28)


def test_each_person_owes_one_policy_staff_first_then_governor_then_volunteer() -> None:
    def person(*roles: Role) -> Person:
        return Person("p", "Pat Doe", roles=frozenset(roles))

    assert audience_for(person(Role.STAFF, Role.GOVERNOR)) == Audience.STAFF
    assert audience_for(person(Role.CHAIR_OF_GOVERNORS)) == Audience.GOVERNOR
    assert audience_for(person(Role.GOVERNOR, Role.VOLUNTEER)) == Audience.GOVERNOR
    assert audience_for(person(Role.VOLUNTEER)) == Audience.VOLUNTEER
    assert audience_for(person(Role.TECHNICIAN)) is None


def test_the_full_text_page_escapes_the_text() -> None:
    document = _doc(Audience.STAFF)
    risky = document.text.replace("Staff Acceptable Use Policy", "Staff <script>AUP</script>")
    page = render_html(AupDocument(**{**document.__dict__, "text": risky}))
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_csv_and_status_card_keep_names_safe_and_counts_right() -> None:
    at = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)
    lines = [
        StatusLine(Person("1", "=HYPERLINK(x)", "a@b.example"), None, at, 2, True, None),
        StatusLine(Person("2", "Ann Lee", "ann@b.example"), at, at, 0, False, "ab" * 32),
    ]
    report = StatusReport("Oakfield", "2026-09-01", at, [AudienceStatus(Audience.STAFF, _doc(Audience.STAFF), lines)])
    csv_text = status_csv(report, LONDON)
    assert "'=HYPERLINK(x)" in csv_text and "staff,1,Ann Lee,ann@b.example,acknowledged" in csv_text
    card = json.dumps(build_status_card(report, tz=LONDON))
    assert "50% acknowledged, 1 of 2" in card and "escalated" in card


def test_a_long_csv_is_split_into_message_sized_parts_each_with_the_header() -> None:
    body = "a,b\n" + "".join(f"{i},{'x' * 90}\n" for i in range(1000))
    parts = csv_parts(body, max_chars=20_000)
    assert len(parts) > 1 and all(len(p) <= 20_000 and p.startswith("a,b\n") for p in parts)
    assert sum(len(p.splitlines()) - 1 for p in parts) == 1000
