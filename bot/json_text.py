"""JSON written on every turn (a reply's body, an invoke's kept answer), by orjson where it writes what the standard
library would mean, and by the standard library wherever it might not.

Encoding a reply with a card was about 40 µs of a 2 ms turn with `json`, and is about 4 µs with orjson. Both write the
same JSON values, spelt differently (orjson writes UTF-8 where `json` writes \\u escapes, and no spaces). Here orjson
refuses what it would write differently or `json` would refuse (unpaired surrogates, integers beyond 64 bits, keys
that are not strings, subclasses of str, int, dict and list, dataclasses, datetimes, deep nesting), and each of those
goes to `json`, whose text or error stands. Two differences are left, neither in anything this app sends: orjson
writes a float NaN or infinity as null (`json` writes NaN, which no JSON reader takes), and an Enum or a UUID inside a
list or dict as its value (`json` raises). Reading stays with `json`: orjson reads integers beyond 64 bits as floats.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_AS_JSON_WOULD = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def dumps_bytes(value: Any) -> bytes:  # noqa: ANN401 - any JSON value
    """`value` as UTF-8 JSON text; TypeError or ValueError as json.dumps raises them."""
    try:
        return orjson.dumps(value, option=_AS_JSON_WOULD)
    except orjson.JSONEncodeError:
        return json.dumps(value).encode("utf-8")


def dumps(value: Any) -> str:  # noqa: ANN401 - any JSON value
    """`value` as JSON text; TypeError or ValueError as json.dumps raises them."""
    try:
        return orjson.dumps(value, option=_AS_JSON_WOULD).decode("utf-8")
    except orjson.JSONEncodeError:
        return json.dumps(value)
