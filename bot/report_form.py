"""The report form opened from a Teams message: what it offers, and its answers checked into a ReportInput."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from bot.cards.report_form import FORM_VERB, TRUE, MessageRef, ReportFormView
from bot.incident_service import ReportInput
from bot.incidents import MAX_ANSWER_CHARS
from bot.policy import Policy
from bot.report import FIELDS, MAX_WHEN_CHARS, NAMED_KINDS, ReportDraft, above_threshold, check, choices, fill, to_input

_TOKEN = re.compile(r"^[0-9a-f]{32}$")
MAX_NAME_CHARS, MAX_LINK_CHARS = 120, 1000
UNKNOWN_AUTHOR = "Someone (name not shown)"
# The message is the evidence here: anything else is optional.
_LABELS = {
    "evidence": "Any other evidence, and where is it now?",
    "evidence.placeholder": "Which device it is on and where that device is. Leave blank if the message is "
    "all there is.",
}


@dataclass(frozen=True)
class FormOutcome:
    """A report ready to file, or the problems to show on the form again."""

    report: ReportInput | None
    problems: list[str] = field(default_factory=list)
    about_author: str | None = None  # the author's directory id, when the reporter says it is about them


def new_form_token() -> str:
    return uuid.uuid4().hex


def form_key(person_id: str, data: dict[str, Any]) -> str | None:
    """The report's idempotency key: one form, submitted by one person, files one report however often it arrives.
    None when the form carries no token this app issued (an old or altered card)."""
    token = data.get("form")
    if data.get("verb") != FORM_VERB or not isinstance(token, str) or not _TOKEN.match(token):
        return None
    return hashlib.sha256(f"message-action:{person_id}:{token}".encode()).hexdigest()


def message_from_payload(payload: Any, tz: ZoneInfo, author_id: str | None = None) -> MessageRef:
    """Only who wrote the message, when and its link: its body, images and attachments are never read."""
    payload = payload if isinstance(payload, dict) else {}
    sender = _dict(payload.get("from"))
    account: dict[str, Any] = next((sender[k] for k in ("user", "application") if isinstance(sender.get(k), dict)), {})
    author = _short(account.get("displayName"), MAX_NAME_CHARS) or UNKNOWN_AUTHOR
    return MessageRef(
        author=author,
        sent=_when(payload.get("createdDateTime"), tz),
        link=_link(payload.get("linkToMessage")),
        author_id=author_id,
    )


def author_of(payload: Any) -> str | None:
    """The Entra id of the person who wrote the message, for a directory look-up; None for apps and guests."""
    sender = _dict(payload.get("from")) if isinstance(payload, dict) else {}
    found = _dict(sender.get("user")).get("id")
    return found if isinstance(found, str) and 0 < len(found) <= 64 else None


def message_from_data(data: dict[str, Any]) -> MessageRef:
    """The message as the form carried it back, for showing the form again."""
    return MessageRef(
        author=_short(data.get("message_author"), MAX_NAME_CHARS) or UNKNOWN_AUTHOR,
        sent=_short(data.get("message_sent"), MAX_WHEN_CHARS) or "Not known",
        link=_link(data.get("message_link")),
        author_id=_short(data.get("message_author_id"), 64) or None,
    )


def form_view(
    policy: Policy,
    token: str,
    message: MessageRef,
    values: dict[str, Any] | None = None,
    problems: list[str] | None = None,
) -> ReportFormView:
    # A Teams message happened online, and when it was sent is the best first guess at when: both can be changed.
    shown = (
        {"location": "online", "occurred": message.sent}
        if values is None
        else {k: v for k, v in values.items() if isinstance(v, str)}
    )
    return ReportFormView(
        token=token,
        message=message,
        specs=FIELDS,
        choices=choices(policy),
        values=shown,
        problems=problems or [],
        labels=_LABELS,
    )


def parse_report_form(data: dict[str, Any], policy: Policy) -> FormOutcome:
    """Check the answers as the chat checks its cards; the card checks them too, but a client may not."""
    checked = check(data, FIELDS, policy)
    if checked.problems:
        return FormOutcome(None, checked.problems)
    draft = ReportDraft()
    fill(draft, checked.values)
    above_threshold(draft, policy)  # an illegal category or danger now: an allegation, as the chat treats it
    author_id = _short(data.get("message_author_id"), 64)
    about_author = (
        author_id if data.get("about_author") == TRUE and draft.subject_kind in NAMED_KINDS and author_id else None
    )
    draft.subject_person = about_author or ""
    message = message_from_data(data)
    assert draft.category is not None  # checked above
    # The link would lead to the images themselves, which must not be shared: the author and time find it.
    link = f": {message.link}" if message.link and not policy.category(draft.category).no_imagery else ""
    source = f"From a Teams message by {message.author}, sent {message.sent}{link}"
    evidence = f"{draft.evidence}\n{source}" if draft.evidence else source
    draft.evidence = evidence[:MAX_ANSWER_CHARS]
    return FormOutcome(to_input(draft), about_author=about_author)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _short(value: Any, limit: int) -> str:
    return " ".join(value.split())[:limit] if isinstance(value, str) else ""


def _link(value: Any) -> str | None:
    link = value.strip() if isinstance(value, str) else ""
    return link if link.startswith("https://") and len(link) <= MAX_LINK_CHARS and " " not in link else None


def _when(value: Any, tz: ZoneInfo) -> str:
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        return "Not known"
    local = moment.astimezone(tz)
    return f"{local:%A} {local.day} {local:%B %Y} at {local:%H:%M}"
