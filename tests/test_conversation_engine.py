"""The conversation engine, as people meet it through the `filter` conversation, plus its choice matching.

Over HTTP on SQLite and PostgreSQL: a wrong answer is explained and the same question asked again; a command in the
middle stops the conversation and says so; Cancel on a card stops it as typing `cancel` does; nothing is sent.
"""

from __future__ import annotations

import json

from sqlalchemy import text

from bot.conversation import match_choice, numbered
from tests.support.harness import Harness

STOPPED_FILTER = "I have stopped your unfinished filter request. Nothing was sent."
TEACHER_COMMANDS = ("help", "report", "my reports", "filter", "aup")


async def _count_requests(harness: Harness) -> int:
    async with harness.parts.engine.connect() as connection:
        return (await connection.execute(text("SELECT count(*) FROM filter_requests"))).scalar_one()


async def test_a_wrong_answer_is_explained_and_the_same_question_asked_again(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    await leah.says("filter")
    await leah.submits({"answer": "unblock"})
    reply = await leah.says("not a web address")
    [again] = reply.texts  # one message: what was wrong, then the question again beneath it
    problem, question = again.split("\n\n")
    assert "web address" in problem and "Which site?" not in problem and question.startswith("Which site?")
    moved_on = await leah.says("https://www.bbc.co.uk/bitesize")
    assert "Who is it for?" in json.dumps(moved_on.cards)


async def test_a_conversation_with_an_intro_says_it_once_with_its_first_question(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    opened = await leah.says("report")
    assert len(opened.replies) == 1 and opened.texts[0].startswith("Two short cards"), opened.everything[:300]
    typed = await leah.says("A pupil said something worrying")  # typed instead of the card: the typed questions
    assert typed.replies and not any("Two short cards" in t for t in typed.texts), typed.texts
    await leah.says("cancel")
    again = await leah.says("report")  # a new conversation has it again
    assert again.texts[0].startswith("Two short cards")


async def test_every_command_a_teacher_has_interrupts_a_filter_request(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    for command in TEACHER_COMMANDS:
        await leah.says("filter")
        await leah.submits({"answer": "unblock"})
        reply = await leah.says(command)
        assert STOPPED_FILTER in reply.texts[0], (command, reply.everything[:300])
        assert len(reply.texts) + len(reply.cards) >= 2, (command, reply.everything[:300])  # and it ran
        if command in ("report", "filter"):
            await leah.says("cancel")  # the conversation the command started
    assert await _count_requests(harness) == 0


async def test_cancel_on_the_summary_card_stops_and_sends_nothing(harness: Harness) -> None:
    leah = harness.user("Leah Brooks")
    await leah.says("filter")
    await leah.submits({"answer": "block"})
    await leah.says("https://games.example.com")
    await leah.submits({"answer": "all_pupils"})
    summary = await leah.says("Pupils are playing it in lessons instead of working")
    assert "Send request" in summary.everything
    stopped = await leah.submits({"answer": "cancel"})
    assert stopped.texts == ["Stopped. Nothing was sent. Type `filter` to start again."]
    after = await leah.says("hello")  # the conversation is over: this is an ordinary message again
    assert "What would you like to do?" in after.everything
    assert await _count_requests(harness) == 0


def test_a_typed_choice_is_matched_by_number_title_or_a_word_only_one_option_has() -> None:
    options = ["A pupil", "A member of staff", "The Headteacher", "Something technical"]
    assert match_choice("2", options) == 1
    assert match_choice("pupil", options) == 0
    assert match_choice("  The headteacher. ", options) == 2
    assert match_choice("staff", options) == 1
    assert match_choice("a", options) is None  # two options start with it: ask again rather than guess
    assert match_choice("9", options) is None
    assert match_choice("governor", options) is None


def test_typed_choices_are_shown_in_full_with_their_numbers() -> None:
    long = "Grooming concern: early signs such as gifts, secrecy or an adult befriending a child online"
    prompt = numbered("Which of these is closest?", ["Bullying", long])
    assert prompt.text is not None and "2. " + long in prompt.text and "1. Bullying" in prompt.text
