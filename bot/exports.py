"""Exports of a case or a child's file: names, the JSON form, and Teams' file cards, as plain data."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from bot.case_record import CaseRecord, ChildFile, case_record_json, child_file_json

CASE = "case"
CHILD = "child"
KINDS = (CASE, CHILD)
FORMATS = ("pdf", "json")
MEDIA_TYPES = {"pdf": "application/pdf", "json": "application/json"}
FORMAT_LABELS = {"pdf": "PDF", "json": "JSON"}
PURPOSE = "Transfer of a safeguarding record to a new school, or a subject access request"
FILE_CONSENT = "application/vnd.microsoft.teams.card.file.consent"
FILE_INFO = "application/vnd.microsoft.teams.card.file.info"


class UploadRefused(Exception):  # noqa: N818 - a decision, not a fault
    """The upload URL is not one this app sends files to."""


class UploadFailed(Exception):
    """The upload did not complete; `retryable` when trying again later may work."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


@dataclass(frozen=True)
class ExportFile:
    name: str
    media_type: str
    body: bytes


@dataclass(frozen=True)
class ExportHeader:
    """Who exported what, when and why: on the first page of a PDF and at the top of the JSON."""

    school: str
    exported_at: dt.datetime
    exported_by: str
    purpose: str = PURPOSE


@dataclass(frozen=True)
class ExportRequest:
    """A file offered to one person in their 1:1 chat, waiting for them to accept or decline it."""

    school_id: str
    token: str
    person_id: str
    kind: str
    subject: str  # the case's or child's opaque token
    format: str
    status: str
    created_at: dt.datetime


@dataclass(frozen=True)
class UploadInfo:
    """Where Teams asks the bot to put an accepted file (from the fileConsent invoke's uploadInfo)."""

    upload_url: str
    content_url: str
    name: str
    unique_id: str
    file_type: str

    @classmethod
    def from_invoke(cls, value: Any) -> UploadInfo | None:
        info = value.get("uploadInfo") if isinstance(value, dict) else None
        if not isinstance(info, dict):
            return None
        fields = [info.get(key) for key in ("uploadUrl", "contentUrl", "name", "uniqueId", "fileType")]
        values = [v for v in fields if isinstance(v, str) and v and len(v) <= 4096]
        if len(values) != len(fields):
            return None
        return cls(*values)

    def as_json(self) -> dict[str, str]:
        return {
            "uploadUrl": self.upload_url,
            "contentUrl": self.content_url,
            "name": self.name,
            "uniqueId": self.unique_id,
            "fileType": self.file_type,
        }


def file_name(kind: str, label: str, fmt: str) -> str:
    """A case's reference, or a child's opaque short id: never a name, because file names show in lists, previews
    and sync logs that are not access-controlled like the record is."""
    if kind == CASE:
        return f"{label} chronology.{fmt}"
    return f"Child record {label} chronology.{fmt}"


def child_label(child_token: str) -> str:
    return child_token[:8]


def header_json(header: ExportHeader) -> dict[str, Any]:
    return {
        "school": header.school,
        "exported_at": header.exported_at.isoformat(),
        "exported_by": header.exported_by,
        "purpose": header.purpose,
    }


def case_json(header: ExportHeader, record: CaseRecord) -> bytes:
    return _dump({"export": header_json(header), "case": case_record_json(record)})


def child_json(header: ExportHeader, file: ChildFile) -> bytes:
    return _dump({"export": header_json(header), "child_file": child_file_json(file)})


def _dump(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8")


def consent_attachment(name: str, size: int, request_token: str, description: str) -> dict[str, Any]:
    """Teams' FileConsentCard: the person chooses Allow (the file goes to their OneDrive) or Decline. Its contexts
    carry only the request's random token; who may accept is decided on the server."""
    context = {"export": request_token}
    return {
        "contentType": FILE_CONSENT,
        "name": name,
        "content": {
            "description": description,
            "sizeInBytes": size,
            "acceptContext": context,
            "declineContext": context,
        },
    }


def file_info_attachment(upload: UploadInfo) -> dict[str, Any]:
    """Teams' FileInfoCard: a link to the file now in the person's OneDrive."""
    return {
        "contentType": FILE_INFO,
        "contentUrl": upload.content_url,
        "name": upload.name,
        "content": {"uniqueId": upload.unique_id, "fileType": upload.file_type},
    }


def request_token_from(value: Any) -> str | None:
    context = value.get("context") if isinstance(value, dict) else None
    token = context.get("export") if isinstance(context, dict) else None
    return token if isinstance(token, str) and 0 < len(token) <= 64 else None
