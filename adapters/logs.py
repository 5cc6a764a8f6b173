"""Logging: one structured line per inbound turn, JSON or plain text, and nothing from the scheduler's ticks.

A turn's line carries ids and names this app chose (a correlation id, a configured school id, an activity type, an
invoke or card verb the app registered), never anything a person typed or who they are: logs are kept and shipped
far more widely than the database, so they must hold no personal data.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from collections.abc import Callable, Container, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from bot import json_text

TURN_LOGGER = "esafety.turn"
turn_log = logging.getLogger(TURN_LOGGER)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Libraries whose INFO lines are per request or per tick: they drowned the log (the scheduler wrote a line every 2 s).
NOISY = ("apscheduler", "aiohttp.access")
# Invokes Teams or the SDK itself answers, whatever features registered.
STANDARD_INVOKES = frozenset(
    {
        "healthCheck",
        "adaptiveCard/action",
        "composeExtension/query",
        "composeExtension/fetchTask",
        "composeExtension/submitAction",
        "task/fetch",
        "task/submit",
        "fileConsent/invoke",
        "signin/verifyState",
        "signin/tokenExchange",
    }
)
OTHER = "other"

_current: ContextVar[TurnRecord | None] = ContextVar("esafety_turn", default=None)


@dataclass
class TurnRecord:
    """What one POST to /api/messages was and how it ended; filled in as the request goes."""

    correlation_id: str
    activity_type: str = OTHER
    kind: str = OTHER
    school: str | None = None
    outcome: str | None = None  # set by whoever knows better than the HTTP status: "duplicate", "error"
    status: int | None = None
    started: float = field(default_factory=time.perf_counter)

    def final_outcome(self) -> str:
        if self.outcome is not None:
            return self.outcome
        if self.status is None or self.status >= 500:
            return "error"
        return "ok" if self.status < 400 else str(self.status)

    def fields(self, latency_ms: float) -> dict[str, Any]:
        return {
            "correlation_id": self.correlation_id,
            "school": self.school,
            "kind": self.kind,
            "activity_type": self.activity_type,
            "latency_ms": round(latency_ms, 1),
            "outcome": self.final_outcome(),
            "status": self.status,
        }


def current_turn() -> TurnRecord | None:
    """The turn this code runs in, if any (the record is shared, so tasks the turn starts may mark it too)."""
    return _current.get()


def current_correlation_id() -> str | None:
    turn = _current.get()
    return turn.correlation_id if turn is not None else None


@contextmanager
def observed_turn(
    correlation_id: str, on_end: Callable[[TurnRecord, float], None] | None = None
) -> Iterator[TurnRecord]:
    """Make a record current for the request; on the way out, log its one line and hand it to `on_end` with the
    seconds it took (also when the request raised)."""
    record = TurnRecord(correlation_id)
    token = _current.set(record)
    try:
        yield record
    except BaseException:
        record.outcome = record.outcome or "error"
        raise
    finally:
        _current.reset(token)
        seconds = time.perf_counter() - record.started
        latency_ms = seconds * 1000
        line = record.fields(latency_ms)
        turn_log.info(
            "turn %s %s %s %.0f ms school=%s",
            line["correlation_id"],
            line["kind"],
            line["outcome"],
            latency_ms,
            line["school"] or "-",
            extra={"turn": line},
        )
        if on_end is not None:
            on_end(record, seconds)


@dataclass(frozen=True)
class KnownNames:
    """The invoke names and card verbs this app answers: only these appear in logs and metric labels, so a client
    cannot write arbitrary text into either (or grow the metrics without bound)."""

    invokes: tuple[Container[str], ...] = ()
    verbs: tuple[Container[str], ...] = ()

    def invoke(self, name: object) -> str:
        known = isinstance(name, str) and (name in STANDARD_INVOKES or any(name in c for c in self.invokes))
        return f"invoke:{name if known else OTHER}"

    def verb(self, verb: object) -> str:
        known = isinstance(verb, str) and any(verb in c for c in self.verbs)
        return f"card:{verb if known else OTHER}"


def turn_kind(body: Mapping[str, Any], known: KnownNames, activity_types: Container[str]) -> tuple[str, str]:
    """(activity type, kind) of an inbound activity: a message, a card verb, an invoke name; never its text."""
    kind = body.get("type")
    if not isinstance(kind, str) or kind not in activity_types:
        return OTHER, OTHER
    value = body.get("value")
    if kind == "invoke":
        name = body.get("name")
        if name == "adaptiveCard/action":
            action = value.get("action") if isinstance(value, dict) else None
            return kind, known.verb(action.get("verb") if isinstance(action, dict) else None)
        return kind, known.invoke(name)
    if kind == "message" and isinstance(value, dict) and value.get("verb"):
        return kind, known.verb(value.get("verb"))  # an Action.Submit from a card
    return kind, kind


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the current turn's correlation id, and a turn's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        turn = getattr(record, "turn", None)
        if isinstance(turn, dict):
            line["message"] = "turn"
            line.update(turn)
        else:
            line["message"] = record.getMessage()
            correlation = current_correlation_id()
            if correlation is not None:
                line["correlation_id"] = correlation
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        try:
            # Every turn writes a line: orjson where it writes what json would (bot.json_text) halves the time a
            # line takes to format. Spelt without spaces; a collector reads the same values.
            return json_text.dumps(line)
        except (TypeError, ValueError):  # a value JSON has no form for: its text, as ever
            return json.dumps(line, default=str, ensure_ascii=False)


def resolve_format(chosen: str, dev: bool) -> str:
    """ESAFETY_LOG_FORMAT, or its default: text for a person at a terminal in local dev, JSON everywhere else."""
    return chosen or ("text" if dev else "json")


def configure_logging(level: str, log_format: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # At DEBUG an operator is looking for everything, the scheduler's ticks included; otherwise they are noise.
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING)


def quiet_unless_configured(name: str) -> None:
    """Keep a library at WARNING unless logging was configured for it (configure_logging sets a level)."""
    logger = logging.getLogger(name)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)
