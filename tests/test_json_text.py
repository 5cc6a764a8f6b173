"""A reply's JSON body says what the standard library's would, and fails where it would fail."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from enum import Enum
from typing import Any

import pytest

from bot import json_text


class Tone(str, Enum):
    CALM = "calm"


class Plain(Enum):
    ONE = 1


class Label(str):
    pass


@dataclasses.dataclass
class Point:
    x: int


def _nested(depth: int) -> list[Any]:
    outer: list[Any] = []
    inner = outer
    for _ in range(depth):
        inner.append([])
        inner = inner[0]
    return outer


READ_THE_SAME = [
    pytest.param({"text": "Diolch, Siân. Your concern is with the DSL 👍", "n": 3}, id="Welsh and emoji"),
    pytest.param({"text": 'line\u2028separator\u0000nul "quoted" \\ back'}, id="escapes"),
    pytest.param({"big": 2**70, "small": -(2**63), "float": 0.1, "neg_zero": -0.0}, id="numbers"),
    pytest.param({1: "a", None: "b", 2.5: "c", False: "d"}, id="keys that are not strings"),
    pytest.param({"tone": Tone.CALM, "label": Label("x")}, id="subclasses of str"),
    pytest.param({"pair": (1, 2), "nested": _nested(300)}, id="tuples, deep nesting"),
    pytest.param("\ud800 an unpaired surrogate", id="unpaired surrogate"),
]


@pytest.mark.parametrize("value", READ_THE_SAME)
def test_a_body_reads_back_as_the_standard_librarys_would(value: Any) -> None:  # noqa: ANN401
    expected = json.loads(json.dumps(value))
    assert json.loads(json_text.dumps_bytes(value)) == expected
    assert json.loads(json_text.dumps(value)) == expected


def test_text_goes_as_utf8_not_escapes() -> None:
    body = json_text.dumps_bytes({"text": "Siân 👍"})
    assert "Siân 👍".encode() in body


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"when": dt.date(2026, 12, 3)}, id="date"),
        pytest.param({"point": Point(1)}, id="dataclass"),
        pytest.param({"raw": b"bytes"}, id="bytes"),
    ],
)
def test_what_the_standard_library_refuses_is_refused(value: Any) -> None:  # noqa: ANN401
    with pytest.raises(TypeError):
        json.dumps(value)
    with pytest.raises(TypeError):
        json_text.dumps_bytes(value)
    with pytest.raises(TypeError):
        json_text.dumps(value)


def test_the_differences_left_are_the_ones_named() -> None:
    # The standard library refuses these; nothing the app sends holds one.
    assert json.loads(json_text.dumps({"id": uuid.UUID(int=7), "kind": Plain.ONE})) == {
        "id": str(uuid.UUID(int=7)),
        "kind": 1,
    }
    assert json.loads(json_text.dumps({"x": float("nan")})) == {"x": None}
