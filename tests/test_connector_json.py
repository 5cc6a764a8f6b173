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
    Entity,
    HeroCard,
    Mention,
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

from adapters.connector_json import to_json

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
