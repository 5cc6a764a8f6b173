"""The plain-JSON converter gives exactly what msrest's .serialize() gives, for what this bot sends and more."""

from __future__ import annotations

import datetime as dt
import json
from enum import Enum
from typing import Any

import pytest
from botbuilder.core import CardFactory, MessageFactory
from botbuilder.schema import (
    Activity,
    ActivityTypes,
    Attachment,
    CardAction,
    CardImage,
    ChannelAccount,
    ConversationAccount,
    ConversationParameters,
    ConversationReference,
    ConversationResourceResponse,
    Entity,
    HeroCard,
    Mention,
    ResourceResponse,
    SuggestedActions,
    TextHighlight,
)
from botbuilder.schema.teams import (
    ChannelInfo,
    NotificationInfo,
    TaskModuleContinueResponse,
    TaskModuleResponse,
    TaskModuleTaskInfo,
    TeamInfo,
    TeamsChannelData,
    TenantInfo,
)
from msrest.serialization import Model

from adapters.connector_json import from_json, to_json

CARD = {
    "type": "AdaptiveCard",
    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
    "version": "1.5",
    "body": [
        {"type": "TextBlock", "text": "Report a concern", "wrap": True, "weight": "Bolder"},
        {"type": "Input.Text", "id": "detail", "isMultiline": True, "maxLength": 2000, "value": None},
        {"type": "Input.ChoiceSet", "id": "who", "choices": [{"title": "A pupil", "value": "pupil"}]},
    ],
    "actions": [{"type": "Action.Execute", "verb": "report.next", "data": {"step": 2, "ok": True, "ratio": 0.5}}],
    "refresh": {"userIds": ["29:abc", "29:def"]},
}
WHEN = dt.datetime(2026, 12, 2, 9, 30, 15, 123456, tzinfo=dt.UTC)
LOCAL = dt.datetime(2026, 12, 2, 9, 30, 15, tzinfo=dt.timezone(dt.timedelta(hours=1)))


def _reply_base() -> Activity:
    return Activity(
        type=ActivityTypes.message,
        service_url="https://smba.trafficmanager.net/uk/",
        channel_id="msteams",
        from_property=ChannelAccount(id="28:bot", name="eSafety"),
        recipient=ChannelAccount(id="29:leah", name="Leah Brooks", aad_object_id="0000-aaa", role="user"),
        conversation=ConversationAccount(id="a:1xyz", tenant_id="tenant-1", conversation_type="personal"),
        reply_to_id="1701",
        locale="en-GB",
    )


def _with(**fields: Any) -> Activity:
    activity = _reply_base()
    for name, value in fields.items():
        setattr(activity, name, value)
    return activity


def _corpus() -> dict[str, Model]:
    mention = Mention(mentioned=ChannelAccount(id="29:tom", name="Tom Reed"), text="<at>Tom Reed</at>", type="mention")
    return {
        "plain text": _with(text="Thanks, Leah. Your report is on its way.", text_format="plain"),
        "empty activity": Activity(),
        "typing": Activity(type=ActivityTypes.typing),
        "adaptive card": _with(attachments=[CardFactory.adaptive_card(CARD)]),
        "card and text via MessageFactory": MessageFactory.attachment(
            CardFactory.adaptive_card(CARD), text="Here it is", input_hint="acceptingInput"
        ),
        "hero card model inside content": _with(
            attachments=[
                CardFactory.hero_card(
                    HeroCard(
                        title="Policy",
                        images=[CardImage(url="https://example.org/i.png", alt="logo")],
                        buttons=[CardAction(type="openUrl", title="Open", value="https://example.org")],
                    )
                )
            ]
        ),
        "mentions and entities": _with(
            text="<at>Tom Reed</at> has a new report",
            entities=[mention, Entity(type="clientInfo")],
        ),
        "channel data dict": _with(
            channel_data={
                "tenant": {"id": "tenant-1"},
                "notification": {"alert": True},
                "list": [1, None, "x", {"a": None}],
                7: "int key",
            },
        ),
        "channel data model": _with(
            channel_data=TeamsChannelData(
                tenant=TenantInfo(id="tenant-1"),
                team=TeamInfo(id="19:team", name="Safeguarding"),
                channel=ChannelInfo(id="19:chan"),
                notification=NotificationInfo(alert=True),
            )
        ),
        "invoke response": Activity(
            type="invokeResponse",
            value={"status": 200, "body": {"statusCode": 200, "type": "application/vnd.microsoft.card.adaptive"}},
        ),
        "task module response value": Activity(
            type="invokeResponse",
            value=TaskModuleResponse(
                task=TaskModuleContinueResponse(value=TaskModuleTaskInfo(title="Report", height=500, card=None))
            ),
        ),
        "timestamps": _with(timestamp=WHEN, local_timestamp=LOCAL, expiration=WHEN, local_timezone="Europe/London"),
        "naive timestamp": _with(timestamp=dt.datetime(2026, 1, 1, 12, 0)),
        "suggested actions": _with(
            text="Pick one",
            suggested_actions=SuggestedActions(
                to=["29:leah"],
                actions=[
                    CardAction(type="imBack", title="Help", value="help"),
                    CardAction(
                        type="messageBack", title="Report", text="report", display_text="Report", value={"a": 1}
                    ),
                ],
            ),
        ),
        "enum-valued str fields": _with(
            delivery_mode="notification", importance="high", text_format=None, attachment_layout="carousel"
        ),
        "numbers and highlights": _with(
            text_highlights=[TextHighlight(text="x", occurrence=1)], listen_for=["help", "report"]
        ),
        "relates to reference": _with(
            relates_to=ConversationReference(
                activity_id="1",
                user=ChannelAccount(id="29:leah"),
                bot=ChannelAccount(id="28:bot"),
                conversation=ConversationAccount(id="a:1", is_group=False),
                channel_id="msteams",
                service_url="https://smba.trafficmanager.net/uk/",
            )
        ),
        "none inside lists": _with(attachments=[None, Attachment(content_type="text/plain", content="hi")]),
        "conversation parameters": ConversationParameters(
            is_group=False,
            bot=ChannelAccount(id="28:bot", name="eSafety"),
            members=[ChannelAccount(id="29:leah")],
            tenant_id="tenant-1",
            channel_data={"tenant": {"id": "tenant-1"}},
            activity=_with(text="Hello"),
        ),
        "conversation parameters, channel": ConversationParameters(
            is_group=True,
            bot=ChannelAccount(id="28:bot"),
            channel_data={"channel": {"id": "19:chan"}, "tenant": {"id": "t"}},
            activity=MessageFactory.attachment(CardFactory.adaptive_card(CARD)),
        ),
    }


CORPUS = _corpus()


@pytest.mark.parametrize("name", list(CORPUS))
def test_matches_msrest_serialize(name: str) -> None:
    model = CORPUS[name]
    expected = model.serialize()
    got = to_json(model)
    assert got == expected
    # Same JSON on the wire, not just equal dicts (True vs 1, "1" vs 1 compare differently there).
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_activity_enum_types_become_their_values() -> None:
    got = to_json(Activity(type=ActivityTypes.message, text="x"))
    assert got == {"type": "message", "text": "x"}
    assert type(got["type"]) is str


class Colour(str, Enum):
    RED = "red"


class Flattened(Model):  # a model that msrest flattens ("properties.name" nests): not ours to copy
    _attribute_map = {"name": {"key": "properties.name", "type": "str"}, "kind": {"key": "kind", "type": "str"}}

    def __init__(self, *, name: str | None = None, kind: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.kind = kind


class WithExtras(Model):
    _attribute_map = {
        "additional_properties": {"key": "", "type": "{object}"},
        "id": {"key": "id", "type": "str"},
    }

    def __init__(self, *, additional_properties: dict[str, Any] | None = None, id: str | None = None) -> None:  # noqa: A002
        super().__init__()
        self.additional_properties = additional_properties
        self.id = id


@pytest.mark.parametrize(
    "model",
    [
        Flattened(name="n", kind="k"),
        _with(channel_data={"colour": Colour.RED, "pair": (1, 2)}),  # odd types inside "object"
        _with(value=Colour.RED),
        WithExtras(additional_properties={"extra": 1, "id": "shadowed"}, id="real"),
        WithExtras(id="only"),
    ],
    ids=["flattened keys", "enum and tuple in object", "enum as object", "additional properties", "no extras"],
)
def test_models_not_covered_fall_back_to_serialize(model: Model) -> None:
    assert to_json(model) == model.serialize()


def test_flattened_keys_really_nest() -> None:
    """The fallback is msrest's own answer, not a flat copy of the keys."""
    assert to_json(Flattened(name="n", kind="k")) == {"properties": {"name": "n"}, "kind": "k"}


def test_bad_data_raises_what_msrest_raises() -> None:
    activity = _with(from_property={"id": "not a model"})  # msrest refuses a dict where a model belongs
    with pytest.raises(Exception) as expected:
        activity.serialize()
    with pytest.raises(type(expected.value)):
        to_json(activity)


@pytest.mark.parametrize("name", list(CORPUS))
def test_the_corpus_takes_the_fast_path(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """None of what the bot sends needs msrest at send time (else the converter would be only a detour)."""
    expected = CORPUS[name].serialize()

    def refuse(self: Model, **_: Any) -> Any:
        raise AssertionError(f"{type(self).__name__} went through msrest")

    monkeypatch.setattr(Model, "serialize", refuse)
    assert to_json(CORPUS[name]) == expected


# Inbound: JSON to an Activity, as Activity.deserialize() builds it


def _snapshot(value: Any) -> Any:
    """A model as its class and every attribute (additional_properties included), all the way down."""
    if isinstance(value, Model):
        return (type(value).__name__, {k: _snapshot(v) for k, v in sorted(vars(value).items())})
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snapshot(v) for v in value]
    if isinstance(value, dt.datetime):
        return ("datetime", value.isoformat(), str(value.tzinfo))
    return (type(value).__name__, value)


TEAM = {"id": "19:team@thread.tacv2", "name": "Staff", "aadGroupId": "g-1"}
BASE = {
    "id": "1701",
    "timestamp": "2026-11-23T10:00:00.1234567Z",
    "localTimestamp": "2026-11-23T10:00:00.123+00:00",
    "serviceUrl": "https://smba.trafficmanager.net/uk/",
    "channelId": "msteams",
    "from": {"id": "29:leah", "name": "Leah Brooks", "aadObjectId": "aad-leah", "userPrincipalName": "l@s.uk"},
    "conversation": {"id": "a:personal", "conversationType": "personal", "tenantId": "t-1", "isGroup": False},
    "recipient": {"id": "28:bot", "name": "eSafety"},
    "channelData": {"tenant": {"id": "t-1"}, "team": TEAM, "channel": {"id": "19:chan"}, "settings": None},
    "locale": "en-GB",
    "entities": [
        {"type": "clientInfo", "locale": "en-GB", "country": "GB", "platform": "Web", "timezone": "Europe/London"}
    ],
}
INBOUND = {
    "message": {**BASE, "type": "message", "text": "report", "textFormat": "plain"},
    "mention in a channel": {
        **BASE,
        "type": "message",
        "text": "<at>eSafety</at> help",
        "entities": [
            {"type": "mention", "text": "<at>eSafety</at>", "mentioned": {"id": "28:bot", "name": "eSafety"}},
            None,
        ],
        "attachments": [{"contentType": "text/html", "content": "<div>help</div>"}],
    },
    "card action": {
        **BASE,
        "type": "invoke",
        "name": "adaptiveCard/action",
        "value": {"action": {"type": "Action.Execute", "verb": "desk.cases", "data": {"n": 1, "ok": True, "x": 1.5}}},
        "replyToId": "1699",
    },
    "members added": {
        **BASE,
        "type": "conversationUpdate",
        "membersAdded": [{"id": "28:bot"}, {"id": "29:tom", "aadObjectId": "aad-tom"}],
        "membersRemoved": [],
        "extraTopLevel": {"kept": [1, "two", None]},
    },
    "reaction": {**BASE, "type": "messageReaction", "reactionsAdded": [{"type": "like"}], "replyToId": "1"},
    "nulls": {**BASE, "type": "message", "text": None, "attachments": None, "value": None},
    "times in every shape a channel uses": {
        **BASE,
        "type": "message",
        "timestamp": "2026-11-23T10:00:00Z",
        "localTimestamp": "2026-11-23T05:00:00.1234567-05:00",
        "expiration": "2026-11-23T10:00:00",
    },
    "file consent": {
        **BASE,
        "type": "invoke",
        "name": "fileConsent/invoke",
        "value": {"type": "fileUpload", "action": "accept", "context": {"k": "v"}, "uploadInfo": {"name": "a.pdf"}},
    },
}
ODD = {
    "a number for text": {**BASE, "type": "message", "text": 5},
    "a string for a list": {**BASE, "type": "conversationUpdate", "membersAdded": "29:tom"},
    "a bad timestamp": {**BASE, "type": "message", "timestamp": "yesterday"},
    "a day that does not exist": {**BASE, "type": "message", "timestamp": "2026-02-30T10:00:00Z"},
    "a time before year 1 in UTC": {**BASE, "type": "message", "timestamp": "0001-01-01T00:30:00+01:00"},
    "an offset of 99 hours": {**BASE, "type": "message", "timestamp": "2026-11-23T10:00:00+99:99"},
    "a lower-case zone": {**BASE, "type": "message", "timestamp": "2026-11-23t10:00:00z"},
    "a string for a model": {**BASE, "type": "message", "from": "29:leah"},
    "a 0/1 flag": {**BASE, "type": "message", "conversation": {"id": "a:x", "isGroup": 1}},
}


def _msrest(body: dict[str, Any]) -> Any:
    return Activity.deserialize(json.loads(json.dumps(body)))


@pytest.mark.parametrize("name", [*INBOUND, *(f"sent: {n}" for n in CORPUS)])
def test_inbound_json_builds_what_msrest_builds(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    body = INBOUND[name] if name in INBOUND else to_json(CORPUS[name.removeprefix("sent: ")])
    if not isinstance(CORPUS.get(name.removeprefix("sent: ")), Activity) and name not in INBOUND:
        pytest.skip("not an activity")
    expected = _snapshot(_msrest(body))

    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("went through msrest")

    monkeypatch.setattr(Model, "deserialize", classmethod(refuse))
    assert _snapshot(from_json(Activity, json.loads(json.dumps(body)))) == expected


@pytest.mark.parametrize("name", list(ODD))
def test_odd_inbound_shapes_get_msrests_own_answer_or_error(name: str) -> None:
    body = ODD[name]
    try:
        expected = _snapshot(_msrest(body))
    except Exception as error:  # noqa: BLE001 - whatever msrest raises, the fast path raises too
        with pytest.raises(type(error)):
            from_json(Activity, json.loads(json.dumps(body)))
        return
    assert _snapshot(from_json(Activity, json.loads(json.dumps(body)))) == expected


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (ResourceResponse, {"id": "1:act"}),
        (ConversationResourceResponse, {"id": "a:new", "activityId": "1:act", "serviceUrl": "https://smba/uk/"}),
        (ChannelAccount, {"id": "29:tom", "name": "Tom Reed", "aadObjectId": "aad", "email": "t@s.uk", "role": "user"}),
    ],
    ids=["resource", "conversation resource", "member"],
)
def test_connector_answers_build_what_msrest_builds(kind: type, body: dict[str, Any]) -> None:
    assert _snapshot(from_json(kind, dict(body))) == _snapshot(kind.deserialize(dict(body)))  # type: ignore[attr-defined]
