"""botbuilder's msrest models as the JSON their .serialize() gives, without msrest's per-call machinery.

Model.serialize() builds a Serializer (scanning the model's module for classes) on every call and walks each value
through several layers of type dispatch (with requests, a fifth of a dialog step's CPU). This walks each class's
`_attribute_map` once, keeps a plan per class, and applies msrest's own rules: None attributes are left out, None
items in lists and dicts stay, `str` attributes take an enum's value, "object" values are copied by exact type (a
model inside is serialised as one; one that holds only plain JSON types, such as a card, goes as it is, since the copy
would be equal and the output is written out at once), `additional_properties` is merged in place and a key keeps its
first value. Anything it does not cover exactly (XML models, flattened keys, enum-typed attributes, odd types inside
"object") is handed to .serialize() itself.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import re
from collections.abc import Callable
from enum import Enum
from typing import Any

from msrest.exceptions import DeserializationError
from msrest.serialization import Deserializer, Model, Serializer


class _NotCovered(Exception):  # noqa: N818 - a signal to use msrest itself
    pass


Convert = Callable[[Any], Any]
_Plan = tuple[tuple[str, str, Convert | None], ...]  # (attribute, JSON key, converter; None = additional_properties)
_plans: dict[type, _Plan | None] = {}
_UNPLANNED = object()


def to_json(model: Any) -> Any:
    """What model.serialize() returns, computed faster where it can be."""
    try:
        return _model(model)
    except _NotCovered:
        return model.serialize()
    except Exception:  # noqa: BLE001 - bad data: let msrest raise its own error for it
        return model.serialize()


def _model(value: Any) -> dict[str, Any]:
    if not isinstance(value, Model):
        raise _NotCovered
    cls = type(value)
    found = _plans.get(cls, _UNPLANNED)
    if found is _UNPLANNED:
        found = _plans[cls] = _plan_for(cls)
    if found is None:
        raise _NotCovered
    plan: _Plan = found  # type: ignore[assignment]
    out: dict[str, Any] = {}
    for attr, key, convert in plan:
        item = getattr(value, attr)
        if item is None:
            continue
        if convert is None:
            out.update(item)
        elif key not in out:  # msrest keeps the first value a key gets (additional_properties can come first)
            out[key] = convert(item)
    return out


def _plan_for(cls: type) -> _Plan | None:
    if cls.serialize is not Model.serialize or cls.is_xml_model():  # type: ignore[attr-defined]
        return None
    enums = {name: kind for name, kind in cls._infer_class_models().items() if isinstance(kind, type)}  # type: ignore[attr-defined]
    steps: list[tuple[str, str, Convert | None]] = []
    for attr, desc in cls._attribute_map.items():  # type: ignore[attr-defined]
        if cls._validation.get(attr, {}).get("readonly", False):  # type: ignore[attr-defined]
            continue  # serialize() leaves read-only attributes out
        key, kind = desc["key"], desc["type"]
        if attr == "additional_properties" and key == "":
            steps.append((attr, key, None))
            continue
        if not isinstance(kind, str) or "." in key:  # flattened keys and class-typed entries: msrest's business
            return None
        convert = _converter(kind, enums)
        if convert is None:
            return None
        steps.append((attr, key, convert))
    return tuple(steps)


def _converter(kind: str, enums: dict[str, type]) -> Convert | None:
    if kind == "str":
        return _str
    if kind in ("int", "long"):
        return int
    if kind == "float":
        return float
    if kind == "bool":
        return bool
    if kind == "object":
        return _object
    if kind in _SCALARS:
        return _SCALARS[kind]
    if len(kind) > 2 and kind[0] + kind[-1] in ("[]", "{}"):
        inner = _converter(kind[1:-1], enums)
        if inner is None:
            return None
        return _list_of(inner) if kind[0] == "[" else _dict_of(inner)
    known = enums.get(kind)
    if known is not None and issubclass(known, Enum):
        return None
    return _model  # a model type: serialised by the value's own class, as msrest does (a Mention in [Entity])


def _str(value: Any) -> Any:
    if type(value) is str:
        return value
    try:
        return value.value  # an enum
    except AttributeError:
        return str(value)


def _list_of(inner: Convert) -> Convert:
    def convert(value: Any) -> list[Any]:
        if isinstance(value, str):
            raise _NotCovered  # msrest refuses a string as a list
        return [None if item is None else inner(item) for item in value]

    return convert


def _dict_of(inner: Convert) -> Convert:
    def convert(value: Any) -> dict[Any, Any]:
        return {_str(key): None if item is None else inner(item) for key, item in value.items()}

    return convert


_PLAIN = (str, int, float, bool)


def _object(value: Any) -> Any:
    kind = type(value)
    if kind in _PLAIN or value is None:
        return value
    if _plain(value):
        # All of it is what a copy would hold (a card, as the cards module builds one), so it goes as it is: the same
        # JSON, without rebuilding every node of the card. The caller's activity and this output share it, and
        # neither is changed after a send.
        return value
    if kind is dict:
        return {_str(key): _object(item) for key, item in value.items()}
    if kind is list:
        return [_object(item) for item in value]
    if isinstance(value, Model):
        return _model(value)
    special = _OBJECT_SCALARS.get(kind)
    if special is None:
        raise _NotCovered  # enums, str subclasses, tuples, ...: msrest has its own answer for each
    return special(value)


def _plain(value: Any) -> bool:
    """Whether `value` holds only dicts with str keys, lists, str, int, float, bool and None, all the way down."""
    stack = [value]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is dict:
            for key, item in node.items():
                if type(key) is not str:
                    return False
                if type(item) in _CONTAINERS:
                    stack.append(item)
                elif not (item is None or type(item) in _PLAIN):
                    return False
        elif kind is list:
            for item in node:
                if type(item) in _CONTAINERS:
                    stack.append(item)
                elif not (item is None or type(item) in _PLAIN):
                    return False
        else:
            return False
    return True


_CONTAINERS = (dict, list)


_SCALARS: dict[str, Convert] = {
    "iso-8601": Serializer.serialize_iso,
    "rfc-1123": Serializer.serialize_rfc,
    "unix-time": Serializer.serialize_unix,
    "duration": Serializer.serialize_duration,
    "date": Serializer.serialize_date,
    "time": Serializer.serialize_time,
    "decimal": Serializer.serialize_decimal,
    "bytearray": Serializer.serialize_bytearray,
    "base64": Serializer.serialize_base64,
}
_OBJECT_SCALARS: dict[type, Convert] = {
    dt.datetime: Serializer.serialize_iso,
    dt.date: Serializer.serialize_date,
    dt.time: Serializer.serialize_time,
    dt.timedelta: Serializer.serialize_duration,
    decimal.Decimal: Serializer.serialize_decimal,
}


# --- inbound: JSON to models, as Model.deserialize() builds them ---------------------------------------------------
#
# Model.deserialize() builds a Deserializer (scanning the model's module) on every call and walks every attribute
# through msrest's type dispatch: about a tenth of a turn's CPU on the event loop. This follows the same
# `_attribute_map` with a plan per class and applies msrest's rules for the JSON a channel sends: each attribute
# present or None, nested models by their declared class (msrest has no polymorphism in these models), "object"
# values as a copy, ISO 8601 times as msrest reads them (`_iso`), and the keys no attribute claims kept in
# `additional_properties`. A value of any other shape (a number where a string belongs, a string for a list, an
# enum-typed attribute, a time in another format) goes to Model.deserialize() itself, whose answer, or error, stands.

_Reader = Callable[[Any], Any]
# (class, JSON key -> (attribute, reader), the attributes of one built with no arguments)
_ReadPlan = tuple[type, dict[str, tuple[str, _Reader]], dict[str, Any]]
_read_plans: dict[type, _ReadPlan | None] = {}


def from_json(cls: type, data: Any) -> Any:
    """What cls.deserialize(data) returns, computed faster where it can be."""
    try:
        return _read_model(cls, cls, data)
    except _NotCovered:
        return cls.deserialize(data)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - bad data: let msrest raise its own error for it
        return cls.deserialize(data)  # type: ignore[attr-defined]


def _read_model(root: type, cls: type, data: Any) -> Any:
    if type(data) is not dict:
        raise _NotCovered
    if cls in _read_plans:
        plan = _read_plans[cls]
    else:
        plan = _read_plans[cls] = _read_plan_for(root, cls)
    if plan is None:
        raise _NotCovered
    model, by_key, blank = plan
    # What model(**values) builds, without calling it: an Activity's constructor takes and assigns all of its forty-odd
    # attributes, where a channel sends a dozen. `blank` is what the constructor leaves (every attribute None).
    built: Any = object.__new__(model)
    attributes = built.__dict__
    attributes.update(blank)
    extra = {}
    for key, raw in data.items():
        step = by_key.get(key)
        if step is None:
            extra[key] = raw
        elif raw is not None:
            attributes[step[0]] = step[1](raw)
    attributes["additional_properties"] = extra
    return built


def _read_plan_for(root: type, cls: type) -> _ReadPlan | None:
    if not issubclass(cls, Model) or cls.is_xml_model() or getattr(cls, "_subtype_map", {}):  # type: ignore[attr-defined]
        return None
    if cls.deserialize.__func__ is not Model.deserialize.__func__:  # type: ignore[attr-defined]
        return None
    models = root._infer_class_models()  # type: ignore[attr-defined]  # msrest resolves every name from the root's module
    validation = cls._validation  # type: ignore[attr-defined]
    if any(rule.get("constant") for rule in validation.values()):
        return None
    steps: list[tuple[str, str, _Reader]] = []
    has_extra = False
    for attr, desc in cls._attribute_map.items():  # type: ignore[attr-defined]
        key, kind = desc["key"], desc["type"]
        if attr == "additional_properties" and key == "":
            has_extra = True
            continue
        if not isinstance(kind, str) or "." in key:
            return None
        read = _reader(root, kind, models)
        if read is None:
            return None
        steps.append((attr, key, read))
    if "additional_properties" in cls._attribute_map and not has_extra:  # type: ignore[attr-defined]
        return None  # a real "additionalProperties" key: msrest's business
    blank = _blank(cls)
    if blank is None:
        return None
    return cls, {key: (attr, read) for attr, key, read in steps}, blank


def _blank(cls: type) -> dict[str, Any] | None:
    """The attributes the constructor gives a model built with no arguments, when building one without calling it
    is the same: each attribute a plain instance attribute, None, and a fresh `additional_properties` dict."""
    if cls.__setattr__ is not object.__setattr__ or cls.__new__ is not object.__new__:  # type: ignore[comparison-overlap]
        return None
    try:
        attributes = dict(vars(cls()))
    except Exception:  # noqa: BLE001 - a constructor that needs arguments: msrest's business
        return None
    if attributes.pop("additional_properties", None) != {}:
        return None
    names = set(cls._attribute_map) - {"additional_properties"}  # type: ignore[attr-defined]
    if set(attributes) != names:
        return None
    if any(value is not None for value in attributes.values()) or any(hasattr(cls, name) for name in names):
        return None  # a default the constructor computes, or a descriptor that assignment would go through
    return attributes


def _reader(root: type, kind: str, models: dict[str, Any]) -> _Reader | None:
    exact = _EXACT.get(kind)
    if exact is not None:
        return _exactly(exact)
    if kind == "object":
        return _copy
    if kind == "iso-8601":
        return _iso
    if len(kind) > 2 and kind[0] + kind[-1] in ("[]", "{}"):
        inner = _reader(root, kind[1:-1], models)
        if inner is None:
            return None
        return _read_list(inner) if kind[0] == "[" else _read_dict(inner)
    found = models.get(kind)
    if isinstance(found, type) and issubclass(found, Model):
        return lambda value: _read_model(root, found, value)
    return None  # enums and the rarer scalars: msrest's business


_EXACT: dict[str, type] = {"str": str, "int": int, "long": int, "bool": bool, "float": float}


def _exactly(kind: type) -> _Reader:
    def read(value: Any) -> Any:
        if type(value) is not kind:
            raise _NotCovered  # msrest converts (str(5), float(1)); let it
        return value

    return read


def _copy(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return {key: _copy(item) for key, item in value.items()}
    if kind is list:
        return [_copy(item) for item in value]
    if kind in _PLAIN or value is None:
        return value
    raise _NotCovered


# The shape channels send (`2026-12-01T10:00:00.1234567Z`, or with an offset). msrest parses it with isodate, at
# about fifty times the cost of the standard library's own parser. This gives the same value: the first six
# fractional digits, and isodate's own zone objects. Any other shape, and any time msrest refuses, is msrest's.
_ISO_SHAPE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)(Z|[+-]\d\d:\d\d)?")


@functools.lru_cache(maxsize=64)
def _zone(suffix: str) -> dt.tzinfo | None:
    """The zone msrest gives a time with this suffix (`Z`, `+01:00`), from msrest itself."""
    zone: dt.tzinfo | None = Deserializer.deserialize_iso(f"2000-01-01T00:00:00{suffix}").tzinfo
    return zone


def _iso(value: Any) -> Any:
    if type(value) is not str:
        raise _NotCovered
    shape = _ISO_SHAPE.fullmatch(value)
    if shape is not None:
        local, suffix = shape.groups()
        try:
            parsed = dt.datetime.fromisoformat(local).replace(tzinfo=_zone(suffix or ""))
            if 1 <= parsed.utctimetuple().tm_year <= 9999:
                return parsed
        except (ValueError, OverflowError, DeserializationError):
            pass  # msrest's own answer or error, below
    return Deserializer.deserialize_iso(value)


def _read_list(inner: _Reader) -> _Reader:
    def read(value: Any) -> list[Any]:
        if type(value) is not list:
            raise _NotCovered
        return [None if item is None else inner(item) for item in value]

    return read


def _read_dict(inner: _Reader) -> _Reader:
    def read(value: Any) -> dict[str, Any]:
        if type(value) is not dict:
            raise _NotCovered
        return {key: None if item is None else inner(item) for key, item in value.items()}

    return read
