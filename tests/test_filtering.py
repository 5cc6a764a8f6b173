"""Web-filter change requests over HTTP: the dialog, the two-person rules, decisions, the manual backend, the log."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.clock import SettableClock
from tests.support.harness import Harness
from tests.support.squid import start_filter_harness
from tests.support.teams import TeamsUser

REQUESTER = "Leah Brooks"
LEAD = "Sam Patel"  # online-safety lead and filtering approver
HEAD = "Grace Okafor"  # Headteacher and filtering approver
TECH = "Alex Morgan"


@pytest.fixture
async def harness(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    """The demo school (manual backend), with one site its filter vendor files under gambling."""
    async with start_filter_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", domain_categories={"bet365.com": "gambling"}
    ) as running:
        yield running


async def everyone_opens_the_app(harness: Harness) -> None:
    for name in (REQUESTER, LEAD, HEAD, TECH, "Priya Shah", "Ben Carter"):
        await harness.user(name).installs()


async def ask(
    user: TeamsUser,
    kind: str = "unblock",
    site: str = "https://www.bbc.co.uk/bitesize/topics/water",
    audience: str = "all_pupils",
    until: str | None = "Tuesday 15:30",
):
    """Walk the `filter` dialog the way a teacher would, pressing the card buttons, and send it."""
    await user.says("filter")
    await user.submits({"answer": kind})
    await user.says(site)
    await user.submits({"answer": audience})
    if audience == "year_groups":
        await user.says("Year 5, Year 6")
    await user.says("Year 6 science lesson on the water cycle")
    if kind in ("unblock", "overblocking"):
        await user.says("tomorrow")
        await user.submits({"answer": "temporary" if until else "permanent"})
        if until:
            await user.says(until)
        await user.submits({"answer": "yes"})
    return await user.submits({"answer": "submit"})


def cards_to(harness: Harness, name: str) -> list[dict]:
    conversation = harness.user(name).conversation_id
    return [c for s in harness.connector.to(conversation) for c in s.cards]


def texts_to(harness: Harness, name: str) -> list[str]:
    return [s.text for s in harness.connector.to(harness.user(name).conversation_id) if s.text]


async def deliver(harness: Harness) -> None:
    """Run what is due now (sends, filter work) until nothing is left."""
    while await harness.run_due_work():
        pass


async def approval_card_reaches(harness: Harness, name: str, reference: str) -> dict:
    await deliver(harness)
    return await harness.connector.wait_for(
        lambda sent: next(
            (
                c
                for s in sent
                if s.conversation_id == harness.user(name).conversation_id
                for c in s.cards
                if f"Filter request {reference}" in json.dumps(c) and c.get("actions")
            ),
            None,
        )
    )


async def test_dialog_validates_the_address_and_reprompts_kindly(harness: Harness) -> None:
    leah = harness.user(REQUESTER)
    reply = await leah.says("filter")
    assert "What would you like to do?" in json.dumps(reply.cards)
    await leah.submits({"answer": "unblock"})
    reply = await leah.says("not a website")
    assert any("no spaces" in t for t in reply.texts)
    assert any("Which site?" in t for t in reply.texts), "the question is asked again"
    reply = await leah.says("ftp://files.example.com")
    assert any("Only web sites" in t for t in reply.texts)
    reply = await leah.says("co.uk")
    assert any("only the end of a web address" in t for t in reply.texts)
    reply = await leah.says("https://WWW.BBC.co.uk/bitesize")
    assert "Who is it for?" in json.dumps(reply.cards)
    await leah.submits({"answer": "year_groups"})
    reply = await leah.says("Year 99")
    assert any("couldn't read those year groups" in t for t in reply.texts)
    await leah.says("Y5-6")
    await leah.says("Fractions lesson with the BBC games")
    reply = await leah.says("the day after never")
    assert any("couldn't read that date" in t for t in reply.texts)
    await leah.says("tomorrow")
    await leah.submits({"answer": "temporary"})
    reply = await leah.says("today 09:00")
    assert any("already passed" in t for t in reply.texts)
    await leah.says("Tuesday 15:30")
    reply = await leah.says("no")
    assert any("preview the site" in t for t in reply.texts)
    reply = await leah.submits({"answer": "yes"})
    summary = json.dumps(reply.cards)
    assert "bbc.co.uk" in summary and "Year 5, Year 6" in summary and "Tue 24 Nov 2026, 15:30" in summary
    reply = await leah.says("cancel")
    assert any("Nothing was saved" in t or "Nothing was sent" in t for t in reply.texts)


async def test_unblock_is_approved_applied_by_a_technician_and_ends_by_itself(harness: Harness) -> None:
    await everyone_opens_the_app(harness)
    leah, sam, alex = harness.user(REQUESTER), harness.user(LEAD), harness.user(TECH)
    reply = await ask(leah)
    assert any("FR-0001" in t and "filtering approvers" in t for t in reply.texts)
    card = await approval_card_reaches(harness, LEAD, "FR-0001")
    assert "Leah Brooks" in json.dumps(card)
    verbs = [a["verb"] for a in card["actions"]]
    assert verbs == ["filter.approve", "filter.decline", "filter.ask"]
    assert card["actions"][0]["fallback"]["data"]["verb"] == "filter.approve"
    assert not any(
        "FR-0001" in json.dumps(c)
        for c in cards_to(harness, REQUESTER)[1:]
        if c.get("actions") and c["actions"][0].get("verb") == "filter.approve"
    ), "the requester gets no approval card"

    reply = await sam.executes("filter.approve", {"reference": "FR-0001"})
    assert "Approved" in json.dumps(reply.invoke_card)
    await deliver(harness)
    await harness.connector.wait_for(lambda sent: any("was approved by Sam Patel" in s.text for s in sent))
    apply_card = await harness.connector.wait_for(
        lambda sent: next(
            (
                c
                for s in sent
                if s.conversation_id == alex.conversation_id
                for c in s.cards
                if "Please apply filter change FR-0001" in json.dumps(c)
            ),
            None,
        )
    )
    assert "Leah" not in json.dumps(apply_card), "technician cards carry no names"

    # The approver is not the one who applies it while the school has a technician.
    reply = await sam.executes("filter.applied", {"reference": "FR-0001"})
    assert "not allowed" in reply.invoke_message
    reply = await alex.executes("filter.applied", {"reference": "FR-0001"})
    assert "In place" in json.dumps(reply.invoke_card)
    await deliver(harness)
    await harness.connector.wait_for(lambda sent: any("bbc.co.uk is now unblocked" in s.text for s in sent))

    harness.clock.advance(days=1, hours=5, minutes=31)  # Tuesday 15:31
    await deliver(harness)
    remove = await harness.connector.wait_for(
        lambda sent: next(
            (
                c
                for s in sent
                if s.conversation_id == alex.conversation_id
                for c in s.cards
                if "Time is up for FR-0001" in json.dumps(c)
            ),
            None,
        )
    )
    assert remove["actions"][0]["verb"] == "filter.removed"
    await harness.connector.wait_for(lambda sent: any("reached its end time" in s.text for s in sent))
    reply = await alex.executes("filter.removed", {"reference": "FR-0001"})
    assert "Ended" in json.dumps(reply.invoke_card)
    await deliver(harness)
    await harness.connector.wait_for(
        lambda sent: any("has been removed; the site is blocked again" in s.text for s in sent)
    )


async def test_nobody_approves_their_own_request(harness: Harness) -> None:
    await everyone_opens_the_app(harness)
    sam = harness.user(LEAD)
    await ask(sam)
    await deliver(harness)
    reply = await sam.executes("filter.approve", {"reference": "FR-0001"})
    assert "can't decide on your own request" in reply.invoke_message
    assert not any(
        c.get("actions") and c["actions"][0].get("verb") == "filter.approve" for c in cards_to(harness, LEAD)
    ), "the requester is not sent an approval card"
    await approval_card_reaches(harness, HEAD, "FR-0001")


async def test_the_approver_does_not_also_apply_when_the_school_has_a_second_filtering_person(
    database_url: str, clock: SettableClock, tmp_path: Path
) -> None:
    # Alex is a technician and a filtering approver; Priya is a second technician.
    roles = {TECH: ["staff", "technician", "filtering_approver"], "Priya Shah": ["staff", "dsl", "slt", "technician"]}
    async with start_filter_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", roles=roles
    ) as harness:
        await everyone_opens_the_app(harness)
        await ask(harness.user(REQUESTER), until=None)
        alex, priya = harness.user(TECH), harness.user("Priya Shah")
        await alex.executes("filter.approve", {"reference": "FR-0001"})
        await deliver(harness)
        reply = await alex.executes("filter.applied", {"reference": "FR-0001"})
        assert "You approved this change, so someone else must apply it" in reply.invoke_message
        reply = await priya.executes("filter.applied", {"reference": "FR-0001"})
        assert "In place" in json.dumps(reply.invoke_card)


async def test_people_without_the_role_cannot_approve_even_with_a_forged_card(harness: Harness) -> None:
    await everyone_opens_the_app(harness)
    await ask(harness.user(REQUESTER))
    reply = await harness.user(TECH).executes("filter.approve", {"reference": "FR-0001"})
    assert "not allowed" in reply.invoke_message
    reply = await harness.user(REQUESTER).submits({"verb": "filter.approve", "reference": "FR-0001"})
    assert any("not allowed" in t for t in reply.texts)


async def test_social_networking_unblock_needs_the_headteacher(harness: Harness) -> None:
    await everyone_opens_the_app(harness)
    reply = await ask(harness.user(REQUESTER), site="https://www.instagram.com/natgeo", until=None)
    assert any("the Headteacher" in t for t in reply.texts)
    card = await approval_card_reaches(harness, HEAD, "FR-0001")
    assert "only the Headteacher can approve" in json.dumps(card)
    assert not any("FR-0001" in json.dumps(c) for c in cards_to(harness, LEAD))
    reply = await harness.user(LEAD).executes("filter.approve", {"reference": "FR-0001"})
    assert "needs the Headteacher's approval" in reply.invoke_message
    reply = await harness.user(HEAD).executes("filter.approve", {"reference": "FR-0001"})
    assert "Approved" in json.dumps(reply.invoke_card)


async def test_never_unblock_categories_are_refused_at_once_with_the_reason(harness: Harness) -> None:
    # The demo school lists a gambling site; gambling is on the policy's never-unblock list.
    leah = harness.user(REQUESTER)
    await leah.says("filter")
    await leah.submits({"answer": "unblock"})
    reply = await leah.says("https://www.bet365.com/")
    assert any("can't be unblocked" in t and "gambling" in t for t in reply.texts)
    reply = await leah.says("help")
    assert "Hello Leah" in json.dumps(reply.cards), "the dialog has ended"
    log = await harness.user(LEAD).says("filter log")
    assert "Refused" in json.dumps(log.cards)


async def test_a_second_request_for_the_same_site_is_linked_not_duplicated(harness: Harness) -> None:
    await everyone_opens_the_app(harness)
    await ask(harness.user(REQUESTER))
    reply = await ask(harness.user("Priya Shah"))  # the same page, for the same pupils and time: the same change
    assert any("FR-0002 is linked to it" in t and "FR-0001" in t for t in reply.texts)
    await deliver(harness)
    assert not any("Filter request FR-0002" in json.dumps(c) for c in cards_to(harness, LEAD))
    reply = await ask(harness.user("Priya Shah"), kind="block", site="bbc.co.uk")
    assert any("FR-0003" in t and "sending it to the filtering approvers" in t for t in reply.texts), (
        "the opposite change is not folded into the first"
    )
    await harness.user(LEAD).executes("filter.decline", {"reference": "FR-0001", "note": "Use the school's copy"})
    await deliver(harness)
    await harness.connector.wait_for(
        lambda sent: any(
            s.conversation_id == harness.user("Priya Shah").conversation_id
            and "FR-0002" in s.text
            and "declined" in s.text
            for s in sent
        )
    )


async def test_decline_needs_a_reason_and_the_requester_hears_it(harness: Harness) -> None:
    await everyone_opens_the_app(harness)
    await ask(harness.user(REQUESTER))
    sam = harness.user(LEAD)
    reply = await sam.executes("filter.decline", {"reference": "FR-0001"})
    assert "Please write why you are declining" in reply.invoke_message
    reply = await sam.executes(
        "filter.decline",
        {"reference": "FR-0001", "note": "Bitesize is already **allowed**, see [here](https://x.example)"},
    )
    assert "Declined" in json.dumps(reply.invoke_card)
    await deliver(harness)
    [told] = await harness.connector.wait_for(
        lambda sent: [
            s for s in sent if "declined by Sam Patel" in s.text and "Bitesize is already **allowed**" in s.text
        ]
    )
    assert told.activity.get("textFormat") == "plain", "the approver's typed reason is shown as typed, not as Markdown"
    reply = await harness.user(HEAD).executes("filter.approve", {"reference": "FR-0001"})
    assert "already been decided by Sam Patel" in reply.invoke_message
    # Grace's copy of the approval card refreshes to show the decision, without buttons.
    card = await approval_card_reaches(harness, HEAD, "FR-0001")
    assert card["refresh"]["action"]["verb"] == "filter.card"
    assert set(card["refresh"]["userIds"]) == {harness.person_id(LEAD), harness.person_id(HEAD)}
    refreshed = (await harness.user(HEAD).executes("filter.card", {"reference": "FR-0001"})).invoke_card
    assert "Declined" in json.dumps(refreshed) and not refreshed.get("actions")


async def test_ask_for_more_information_then_answer_then_approve(harness: Harness) -> None:
    await everyone_opens_the_app(harness)
    await ask(harness.user(REQUESTER), kind="block", site="https://games.example.net/play")
    sam, leah = harness.user(LEAD), harness.user(REQUESTER)
    await sam.executes("filter.ask", {"reference": "FR-0001", "note": "Which part of the site?"})
    await deliver(harness)
    question = await harness.connector.wait_for(
        lambda sent: next(
            (
                c
                for s in sent
                if s.conversation_id == leah.conversation_id
                for c in s.cards
                if "Which part of the site?" in json.dumps(c)
            ),
            None,
        )
    )
    assert question["actions"][0]["verb"] == "filter.reply"
    reply = await harness.user(HEAD).executes("filter.reply", {"reference": "FR-0001", "answer": "All of it"})
    assert "Only the person who asked" in reply.invoke_message
    reply = await leah.executes("filter.reply", {"reference": "FR-0001", "answer": "All of it, pupils play games"})
    assert "sending your answer to the approvers" in reply.invoke_message
    await deliver(harness)
    card = await harness.connector.wait_for(
        lambda sent: next(
            (
                c
                for s in sent
                if s.conversation_id == sam.conversation_id
                for c in s.cards
                if "pupils play games" in json.dumps(c) and c.get("actions")
            ),
            None,
        )
    )
    assert card["actions"][0]["verb"] == "filter.approve"
    reply = await sam.executes("filter.approve", {"reference": "FR-0001"})
    assert "Approved" in json.dumps(reply.invoke_card)


async def test_reporting_something_that_got_through_tells_technicians_and_the_lead(harness: Harness) -> None:
    """Filed through the incident flow when it is installed (a filter-failure concern), else told directly."""
    await everyone_opens_the_app(harness)
    leah = harness.user(REQUESTER)
    await leah.says("filter")
    await leah.submits({"answer": "missed"})
    await leah.says("http://bad-content.example.org/page")
    reply = await leah.says("Violent video came up in a search on the class laptop")
    confirmation = next(t for t in reply.texts if "telling the technicians and the online-safety lead" in t)
    concern = re.search(r"\(([A-Z]{2,4}-\d{4}-\d{4,})\)", confirmation)
    marker = concern.group(1) if concern else "bad-content.example.org"
    await deliver(harness)
    for name in (TECH, LEAD):
        conversation = harness.user(name).conversation_id
        await harness.connector.wait_for(
            lambda sent, conversation=conversation: any(
                s.conversation_id == conversation and marker in s.text + json.dumps(s.cards) for s in sent
            )
        )
    log = json.dumps((await harness.user(LEAD).says("filter log")).cards)
    assert "Filter failure reported" in log and "Leah Brooks" in log


async def test_without_the_incident_flow_a_missed_site_goes_straight_to_technicians_and_the_lead(
    database_url: str, clock: SettableClock, tmp_path: Path
) -> None:
    from dialogs import filtering

    async with start_filter_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", features=[filtering.install]
    ) as harness:
        await everyone_opens_the_app(harness)
        leah = harness.user(REQUESTER)
        await leah.says("filter")
        await leah.submits({"answer": "missed"})
        await leah.says("bad-content.example.org")
        reply = await leah.says("Violent video came up in a search")
        assert any("telling the technicians and the online-safety lead" in t for t in reply.texts)
        await deliver(harness)
        tech = harness.user(TECH).conversation_id
        assert any("bad-content.example.org" in json.dumps(s.cards) for s in harness.connector.to(tech))
        assert any("Violent video" in s.text for s in harness.connector.to(harness.user(LEAD).conversation_id))
        assert not any("Leah" in json.dumps(s.cards) for s in harness.connector.to(tech))


async def test_filter_log_shows_who_did_what_and_exports_csv_for_governors_only(harness: Harness) -> None:
    await everyone_opens_the_app(harness)
    await ask(harness.user(REQUESTER))
    await harness.user(LEAD).executes("filter.approve", {"reference": "FR-0001"})
    reply = await harness.user("Ben Carter").says("filter log")
    body = json.dumps(reply.cards)
    assert "Requested" in body and "Approved" in body and "Sam Patel" in body and "Leah Brooks" in body
    reply = await harness.user("Ben Carter").says("filter log csv")
    csv_text = reply.texts[-1]
    assert "when,reference,action,site,by,detail" in csv_text
    assert "FR-0001,Approved,bbc.co.uk,Sam Patel" in csv_text
    reply = await harness.user(REQUESTER).says("filter log")
    assert any("not available to you" in t for t in reply.texts)


async def test_over_blocking_report_goes_to_approvers_as_an_unblock(harness: Harness) -> None:
    await everyone_opens_the_app(harness)
    reply = await ask(
        harness.user(REQUESTER), kind="overblocking", site="https://www.nationalgeographic.com/kids", until=None
    )
    assert any("FR-0001" in t for t in reply.texts)
    card = await approval_card_reaches(harness, LEAD, "FR-0001")
    assert "Report a site blocked by mistake" in json.dumps(card)
    reply = await harness.user(LEAD).executes("filter.approve", {"reference": "FR-0001"})
    await deliver(harness)
    assert any(
        "Please apply filter change FR-0001" in json.dumps(c)
        and "Allow the page https://www.nationalgeographic.com/kids only" in json.dumps(c)
        for c in cards_to(harness, TECH)
    ), "the manual backend allows the page asked for, not the domain"


async def test_a_temporary_unblock_whose_end_has_passed_cannot_be_approved(harness: Harness) -> None:
    await everyone_opens_the_app(harness)
    await ask(harness.user(REQUESTER), until="today 15:00")
    harness.clock.advance(hours=6)
    reply = await harness.user(LEAD).executes("filter.approve", {"reference": "FR-0001"})
    assert "end time for FR-0001 has already passed" in reply.invoke_message


async def test_filter_is_in_help_for_staff(harness: Harness) -> None:
    reply = await harness.user(REQUESTER).says("help")
    assert "`filter`" in json.dumps(reply.cards)


async def test_the_dsl_team_and_technicians_read_the_filter_log(harness: Harness) -> None:
    """KCSIE: the DSL takes lead responsibility for understanding the filtering and monitoring in place."""
    await everyone_opens_the_app(harness)
    await ask(harness.user(REQUESTER))
    await harness.user(LEAD).executes("filter.approve", {"reference": "FR-0001"})
    for name in ("Priya Shah", "Tom Reed", "Alex Morgan"):  # the DSL, a deputy DSL and a technician
        body = json.dumps((await harness.user(name).says("filter log")).cards)
        assert "FR-0001" in body and "Approved" in body, name
    csv_reply = await harness.user("Tom Reed").says("filter log csv")
    assert "FR-0001,Approved" in csv_reply.texts[-1]
