"""A guided conversation declared as data: its questions, what ends it, what it says when stopped.

In the spirit of python-telegram-bot's ConversationHandler: a feature lists its questions in order; the engine
(dialogs/engine.py, the only code that touches botbuilder's dialogs) asks the first one that is neither skipped nor
answered, hands the reply to that question, and saves the state between turns. So "change an answer" is clearing a
field, a card may answer several questions at once, and a typed reply may switch a conversation to typed questions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from bot.actor import Actor

S = TypeVar("S")

STOP_REASONS = ("cancelled", "interrupted", "timed_out")
_WORD = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True)
class Reply:
    """What the person sent: typed text, or a card's submitted data (never both trusted as the other)."""

    text: str
    data: dict[str, Any] | None = None
    has_files: bool = False

    @property
    def typed(self) -> bool:
        return self.data is None


@dataclass(frozen=True)
class Prompt:
    text: str | None = None
    card: dict[str, Any] | None = None


class Say(Protocol):
    async def __call__(self, text: str | None = None, card: dict[str, Any] | None = None) -> None: ...


@dataclass
class Ctx(Generic[S]):
    """One turn of one conversation: who is answering, what they have answered so far, and how to reply."""

    actor: Actor
    state: S
    say: Say


Ask = Callable[[Ctx[S]], Awaitable[Prompt]]
Answer = Callable[[Ctx[S], Reply], Awaitable[str | None]]


def _never(_state: Any) -> bool:
    return False


@dataclass(frozen=True)
class Question(Generic[S]):
    """`answer` stores what it understood in ctx.state; a returned string is a problem, said before asking again."""

    key: str
    ask: Ask[S]
    answer: Answer[S]
    done: Callable[[S], bool] | None = None  # None: answered when the state's field named `key` is set
    skip: Callable[[S], bool] = _never

    def is_done(self, state: S) -> bool:
        return self.done(state) if self.done is not None else getattr(state, self.key) is not None


@dataclass(frozen=True)
class Conversation(Generic[S]):
    name: str
    new_state: Callable[[], S]
    questions: tuple[Question[S], ...]
    finish: Callable[[Ctx[S]], Awaitable[None]]  # every question answered: do it, and say what happened
    stopped: Callable[[S | None, str], str]  # what became of it, for a reason in STOP_REASONS
    timeout: dt.timedelta | None = None  # None: the app's setting
    # Said once, at the start, in the same message as the first question: one message to read, one send to make.
    intro: str | None = None

    def next_question(self, state: S) -> Question[S] | None:
        return next((q for q in self.questions if not q.skip(state) and not q.is_done(state)), None)

    def question(self, key: str | None) -> Question[S] | None:
        return next((q for q in self.questions if q.key == key), None)


def state_to_data(state: Any) -> dict[str, Any]:
    """The state as JSON-friendly data, for the conversation store."""
    data = {}
    kind: type = type(state)
    for name in _field_names(kind):
        value = getattr(state, name)
        if value is not None and type(value) not in _PLAIN:
            # A list or anything nested is copied the long way, so the saved data shares nothing with the state.
            return dataclasses.asdict(state)
        data[name] = value
    return data


_PLAIN = frozenset({str, int, float, bool})


@functools.cache
def _field_names(kind: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(kind))


def state_from_data(conversation: Conversation[S], data: Any) -> S:
    """A fresh state with every saved field it still has: a field added since is left at its default."""
    state = conversation.new_state()
    if isinstance(data, dict):
        names = {f.name for f in dataclasses.fields(state)}  # type: ignore[arg-type]  # S is a dataclass by contract
        for name, value in data.items():
            if name in names:
                setattr(state, name, value)
    return state


def match_choice(text: str, options: Sequence[str]) -> int | None:
    """Which option a typed reply means: its number, its whole title, or a word or phrase only one option has
    ("pupil" for "A pupil"). None when it matches none, or more than one."""
    typed = " ".join(text.casefold().strip().rstrip(".!").split())
    if not typed:
        return None
    if typed.isdigit():
        index = int(typed) - 1
        return index if 0 <= index < len(options) else None
    titles = [" ".join(o.casefold().split()) for o in options]
    if typed in titles:
        return titles.index(typed)
    starts = [i for i, t in enumerate(titles) if t.startswith(typed)]
    if len(starts) == 1:
        return starts[0]
    words = _WORD.findall(typed)
    within = [i for i, t in enumerate(titles) if words and _contains_words(_WORD.findall(t), words)]
    return within[0] if len(within) == 1 else None


def _contains_words(title: list[str], words: list[str]) -> bool:
    return any(title[i : i + len(words)] == words for i in range(len(title) - len(words) + 1))


def numbered(question: str, options: Sequence[str]) -> Prompt:
    """A typed question with its options in full and numbered, for a client that cannot press card buttons."""
    lines = [question, *(f"{i}. {option}" for i, option in enumerate(options, start=1))]
    return Prompt(text="\n\n".join(lines) + "\n\nReply with a number or the words.")
