"""What members of staff were sent of the AUP, read from the local connector (for the AUP publish and sweep tests)."""

from __future__ import annotations

import json

from bot.people import Role
from tests.support.harness import Harness
from tests.support.teams import TeamsUser

SUBMIT = "aup.acknowledge"


def staff_of(harness: Harness) -> list[TeamsUser]:
    return [harness.user(p.name) for p in harness.school.people if Role.STAFF in p.roles]


def aup_cards(harness: Harness, user: TeamsUser, version: int) -> list[dict]:
    """The AUP cards of `version` in the person's 1:1 chat."""
    return [
        card
        for sent in harness.connector.to(user.conversation_id)
        for card in sent.cards
        if SUBMIT in json.dumps(card) and card["actions"][0]["data"]["version"] == version
    ]
