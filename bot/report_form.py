"""The report form opened from a Teams message: what it offers, and its answers checked into a ReportInput."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from bot.cards.incident import Option
from bot.cards.report_form import DANGER_NO, DANGER_YES, FORM_VERB, TRUE, MessageRef, ReportFormView
from bot.incident_service import ReportInput
from bot.incidents import LOCATIONS, MAX_ANSWER_CHARS, SUBJECT_KINDS
from bot.policy import Policy

_TOKEN = re.compile(r"^[0-9a-f]{32}$")
_URL = re.compile(r"(https?://|www\.)\S+", re.IGNORECASE)
MAX_NAME_CHARS, MAX_LINK_CHARS, MAX_WHEN_CHARS = 120, 1000, 200
NAMED_KINDS = ("staff", "staff_low_level")  # the kinds where the author of the message may be the one it is about
UNKNOWN_AUTHOR = "Someone (name not shown)"
_REQUIRED = {
    "occurred": "Please say when it happened.",
    "subjects": "Please say who is involved, or write \"not known\".",
    "narrative": "Please say what happened.",
    "actions_taken": "Please say what you have done so far, or write \"nothing yet\".",
}
_NAMES = {"occurred": "When", "subjects": "Who is involved", "narrative": "What happened",
          "evidence": "Evidence", "actions_taken": "What you have done"}


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
    sender = payload.get("from") if isinstance(payload.get("from"), dict) else {}
    account = next((sender[k] for k in ("user", "application") if isinstance(sender.get(k), dict)), {})
    author = _short(account.get("displayName"), MAX_NAME_CHARS) or UNKNOWN_AUTHOR
    return MessageRef(author=author, sent=_when(payload.get("createdDateTime"), tz), link=_link(
        payload.get("linkToMessage")), author_id=author_id)


def author_of(payload: Any) -> str | None:
    """The Entra id of the person who wrote the message, for a directory look-up; None for apps and guests."""
    sender = payload.get("from") if isinstance(payload, dict) and isinstance(payload.get("from"), dict) else {}
    user = sender.get("user") if isinstance(sender.get("user"), dict) else {}
    found = user.get("id")
    return found if isinstance(found, str) and 0 < len(found) <= 64 else None


def message_from_data(data: dict[str, Any]) -> MessageRef:
    """The message as the form carried it back, for showing the form again."""
    return MessageRef(author=_short(data.get("message_author"), MAX_NAME_CHARS) or UNKNOWN_AUTHOR,
                      sent=_short(data.get("message_sent"), MAX_WHEN_CHARS) or "Not known",
                      link=_link(data.get("message_link")),
                      author_id=_short(data.get("message_author_id"), 64) or None)


def form_view(policy: Policy, token: str, message: MessageRef, values: dict[str, Any] | None = None,
              problems: list[str] | None = None) -> ReportFormView:
    groups = {g.key: g.label for g in policy.category_groups}
    categories = [Option(c.key, f"{groups[c.group]}: {c.label}. {c.description}") for c in policy.categories]
    # A Teams message happened online, and when it was sent is the best first guess at when: both can be changed.
    shown = {"location": "online", "occurred": message.sent} if values is None else \
        {k: v for k, v in values.items() if isinstance(v, str)}
    return ReportFormView(token=token, message=message,
                          subject_kinds=[Option(k, v) for k, v in SUBJECT_KINDS.items()], categories=categories,
                          locations=[Option(k, v) for k, v in LOCATIONS.items()], values=shown,
                          problems=problems or [], max_chars=MAX_ANSWER_CHARS)


def parse_report_form(data: dict[str, Any], policy: Policy) -> FormOutcome:
    """Check the answers as the chat does; the card checks them too, but a client may not."""
    problems: list[str] = []
    subject_kind = _choice(data, "subject_kind", SUBJECT_KINDS, "Please choose who the concern is about.", problems)
    danger = _choice(data, "immediate_danger", (DANGER_YES, DANGER_NO),
                     "Please say whether anyone is in danger now.", problems)
    category_key = _choice(data, "category", {c.key for c in policy.categories},
                           "Please choose the kind of concern from the list.", problems)
    location = _choice(data, "location", LOCATIONS, "Please choose where it happened.", problems)
    answers: dict[str, str | None] = {}
    for key, name in _NAMES.items():
        value = data.get(key).strip() if isinstance(data.get(key), str) else ""
        limit = MAX_WHEN_CHARS if key == "occurred" else MAX_ANSWER_CHARS
        if not value and key in _REQUIRED:
            problems.append(_REQUIRED[key])
        elif len(value) > limit:
            problems.append(f"{name} is a little long. Please keep it under {limit} characters; the DSL will ask "
                            "for more if they need it.")
        answers[key] = value or None
    category = policy.category(category_key) if category_key else None
    if category is not None and category.no_imagery and _URL.search(answers["evidence"] or ""):
        problems.append("Please do not add links to the images. Say only which device they are on and where that "
                        "device is now.")
    if problems or subject_kind is None or category is None:
        return FormOutcome(None, problems)
    immediate_danger = danger == DANGER_YES
    if subject_kind == "staff_low_level" and (category.illegal or immediate_danger):
        subject_kind = "staff"  # above the harm threshold: an allegation, as the chat treats it
    author_id = _short(data.get("message_author_id"), 64)
    about_author = author_id if data.get("about_author") == TRUE and subject_kind in NAMED_KINDS and author_id \
        else None
    message = message_from_data(data)
    # The link would lead to the images themselves, which must not be shared: the author and time find it.
    link = f": {message.link}" if message.link and not category.no_imagery else ""
    source = f"From a Teams message by {message.author}, sent {message.sent}{link}"
    evidence = f"{answers['evidence']}\n{source}" if answers["evidence"] else source
    return FormOutcome(ReportInput(
        subject_kind=subject_kind, category=category.key, immediate_danger=immediate_danger, location=location,
        occurred=answers["occurred"], subjects=answers["subjects"], narrative=answers["narrative"],
        evidence=evidence[:MAX_ANSWER_CHARS], actions_taken=answers["actions_taken"], subject_person_id=about_author,
    ), about_author=about_author)


def _choice(data: dict[str, Any], key: str, allowed: Any, problem: str, problems: list[str]) -> str | None:
    value = data.get(key)
    if isinstance(value, str) and value in allowed:
        return value
    problems.append(problem)
    return None


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
