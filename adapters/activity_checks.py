"""What the front door accepts: a JSON body the parser can read, shaped like the Activity fields the bot reads.

Everything here is a client's mistake, answered with 400 and a short reason, never a 5xx.
"""

from __future__ import annotations

import functools
import json
from typing import Any
from urllib.parse import urlsplit


class BodyRejected(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_json(raw: bytes) -> Any:
    """The parsed body; BodyRejected for anything the parser refuses (deep nesting, huge integers, NaN, bad UTF-8)."""
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise BodyRejected(f"Body is nested more than {MAX_NESTING} levels deep") from exc
    except ValueError as exc:  # also an integer of thousands of digits, and NaN or Infinity
        raise BodyRejected(f"Body is not valid JSON ({_json_reason(exc)})") from exc


def activity_problem(body: dict[str, Any], raw: bytes) -> str | None:
    """Why this body (parsed from `raw`) is not an Activity the bot can safely read; None when it is."""
    if not _nothing_to_find(raw):
        problem = _content_problem(body)
        if problem:
            return problem
    return _shape_problem(body)


def _nothing_to_find(raw: bytes) -> bool:
    """Whether a UTF-8 body the parser accepted cannot hold anything _content_problem looks for. Told from its bytes
    for nearly every activity, so only the rest need the walk over every value.

    The parser refuses control characters inside strings, so a NUL can only arrive escaped; a lone surrogate arrives
    escaped, or as the bytes ED A0..BF, which it lets through (surrogatepass); and a value cannot be nested deeper
    than the body has brackets. A raw NUL byte means another encoding (UTF-16 or 32), where none of this holds.
    """
    return (
        b"\\u" not in raw
        and b"\xed" not in raw
        and b"\x00" not in raw
        and raw.count(b"{") + raw.count(b"[") <= MAX_NESTING
    )


# Limits on what an activity may carry. Teams' ids are well under these; anything longer is not from Teams, and
# would otherwise reach columns, caches and logs.
MAX_ID_CHARS = 512
MAX_SERVICE_URL_CHARS = 2048
MAX_NESTING = 64  # Teams' own payloads nest a few levels; Adaptive Card data a few more
_TEXT_FIELDS = (
    "id",
    "channelId",
    "text",
    "textFormat",
    "locale",
    "name",
    "action",
    "replyToId",
    "timestamp",
    "localTimestamp",
    "localTimezone",
    "callerId",
    "summary",
    "inputHint",
    "speak",
    "topicName",
    "deliveryMode",
    "importance",
    "label",
    "valueType",
    "attachmentLayout",
    "expiration",
)
_ACCOUNT_TEXT = ("id", "name", "aadObjectId", "role", "conversationType", "tenantId")
_CHANNEL_DATA_PARTS = ("tenant", "team", "channel", "meeting", "settings", "notification")
_LISTS = ("membersAdded", "membersRemoved", "attachments", "entities", "reactionsAdded", "reactionsRemoved")
_IDS = (
    "id",
    "replyToId",
    "channelId",
    "from.id",
    "from.aadObjectId",
    "recipient.id",
    "conversation.id",
    "conversation.tenantId",
    "channelData.tenant.id",
    "channelData.team.id",
    "channelData.channel.id",
)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _json_reason(error: ValueError) -> str:
    if isinstance(error, UnicodeDecodeError):
        return "it is not UTF-8"
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at line {error.lineno} column {error.colno}"
    return "an integer is too long" if "digits" in str(error) else str(error)[:100]


def _content_problem(body: Any) -> str | None:
    """Nesting, NUL characters and unpaired surrogates, anywhere in the body; None when there are none."""
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_NESTING:
            return f"Body is nested more than {MAX_NESTING} levels deep"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            for text in (key, item):
                if not isinstance(text, str):
                    continue
                if "\x00" in text:  # PostgreSQL cannot store it, and no Teams text contains it
                    return "Body contains a NUL character"
                if not text.isascii():
                    try:
                        text.encode("utf-8")
                    except UnicodeEncodeError:
                        return "Body contains invalid Unicode (an unpaired surrogate)"
            if isinstance(item, dict | list):
                stack.append((item, depth + 1))
    return None


def field_at(body: dict[str, Any], path: str) -> Any:
    value: Any = body
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _shape_problem(body: dict[str, Any]) -> str | None:
    """Why the fields this app reads do not have the types and sizes an Activity's do; None when they do."""
    for name in (*_TEXT_FIELDS, "serviceUrl"):
        if body.get(name) is not None and not isinstance(body[name], str):
            return f"Activity field '{name}' must be a string"
    for name in ("from", "recipient", "conversation"):
        account = body.get(name)
        if account is None:
            continue
        if not isinstance(account, dict):
            return f"Activity field '{name}' must be an object"
        for part in _ACCOUNT_TEXT:
            if account.get(part) is not None and not isinstance(account[part], str):
                return f"Activity field '{name}.{part}' must be a string"
        if account.get("isGroup") is not None and not isinstance(account["isGroup"], bool):
            return f"Activity field '{name}.isGroup' must be true or false"
    channel_data = body.get("channelData")
    if channel_data is not None:
        if not isinstance(channel_data, dict):
            return "Activity field 'channelData' must be an object"
        for part in _CHANNEL_DATA_PARTS:
            inner = channel_data.get(part)
            if inner is not None and not isinstance(inner, dict):
                return f"Activity field 'channelData.{part}' must be an object"
            for text in ("id", "name"):
                if inner and inner.get(text) is not None and not isinstance(inner[text], str):
                    return f"Activity field 'channelData.{part}.{text}' must be a string"
        if channel_data.get("eventType") is not None and not isinstance(channel_data["eventType"], str):
            return "Activity field 'channelData.eventType' must be a string"
    for name in _LISTS:
        items = body.get(name)
        if items is not None and (not isinstance(items, list) or not all(isinstance(i, dict) for i in items)):
            return f"Activity field '{name}' must be a list of objects"
        for item in items or []:
            if item.get("id") is not None and (not isinstance(item["id"], str) or len(item["id"]) > MAX_ID_CHARS):
                return f"Activity field '{name}[].id' must be a string of at most {MAX_ID_CHARS} characters"
    for path, parts in _ID_PATHS:
        value: Any = body
        for part in parts:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, str) and len(value) > MAX_ID_CHARS:
            return f"Activity field '{path}' is longer than {MAX_ID_CHARS} characters"
    url = body.get("serviceUrl")
    if not isinstance(url, str) or not url:
        return "Activity is missing 'serviceUrl'"
    if len(url) > MAX_SERVICE_URL_CHARS:  # before the cache, so what it keeps is small
        return f"Activity field 'serviceUrl' is longer than {MAX_SERVICE_URL_CHARS} characters"
    return _service_url_problem(url)


_ID_PATHS = tuple((path, tuple(path.split("."))) for path in _IDS)


# A tenant's activities all carry the same one or two service URLs, so each is parsed once. Bounded: a client that
# sends a new URL every time only pushes out the oldest.
@functools.lru_cache(maxsize=256)
def _service_url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is what raises for a malformed one
    except ValueError:
        return "Activity field 'serviceUrl' is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() or ord(c) < 32 for c in url):
        return "Activity field 'serviceUrl' must be an http or https URL"
    return None
