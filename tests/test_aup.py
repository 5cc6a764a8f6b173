"""Acceptable Use Policy: documents, the card, acknowledgements, reminders, escalation, renewal and the report."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from urllib.parse import urlparse

from tests.support.harness import Harness

SUBMIT = "aup.acknowledge"


def _aup_cards(sent) -> list[dict]:  # noqa: ANN001
    return [c for s in sent for c in s.cards if SUBMIT in json.dumps(c)]


def _submit_data(card: dict) -> dict:
    action = card["actions"][0]
    assert action["type"] == "Action.Execute" and action["verb"] == SUBMIT
    return dict(action["data"])


async def test_first_contact_shows_the_card_with_sections_link_and_required_confirmations(harness: Harness) -> None:
    reply = await harness.user("Leah Brooks").installs()
    cards = _aup_cards(reply.sent)
    assert len(cards) == 1
    card = cards[0]
    body = json.dumps(card)
    assert "Staff Acceptable Use Policy" in body and "Version 1" in body
    toggles = [b for b in card["body"] if b["type"] == "Input.Toggle"]
    assert {t["id"] for t in toggles} == {"read_kcsie", "agree"}
    assert all(t["isRequired"] and t["errorMessage"] for t in toggles)
    show_cards = [a for b in card["body"] if b["type"] == "ActionSet" for a in b["actions"]
                  if a["type"] == "Action.ShowCard"]
    assert "Passwords and accounts" in [a["title"] for a in show_cards]
    fallback = card["actions"][0]["fallback"]
    assert fallback["type"] == "Action.Submit" and fallback["data"]["verb"] == SUBMIT
    assert len(json.dumps(card).encode()) < 40 * 1024
