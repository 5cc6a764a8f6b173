"""Exports of a case or a child's file: rendered for someone allowed to see it, audited, and in chat sent only to
the person who asked, through Teams' file consent flow (the file goes to their own OneDrive)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from bot.actor import Actor, CardReply
from bot.case_record import CaseRecord, ChildFile
from bot.config import AppConfig
from bot.exports import (
    CASE,
    CHILD,
    FORMAT_LABELS,
    FORMATS,
    KINDS,
    MEDIA_TYPES,
    ExportFile,
    ExportHeader,
    ExportRequest,
    UploadFailed,
    UploadInfo,
    UploadRefused,
    case_json,
    child_json,
    child_label,
    consent_attachment,
    file_info_attachment,
    file_name,
    request_token_from,
)
from bot.protocols import Clock, Directory, UnitOfWorkFactory
from bot.wiring import Features
from bot.work import RetryLater, WorkItem

log = logging.getLogger(__name__)

UPLOAD_KIND = "export.upload"
OFFER_LIFETIME = dt.timedelta(days=1)  # an old card in someone's chat should not export today's record unasked
UPLOAD_ATTEMPTS = 4  # an upload session URL does not last long: a few tries, then ask the person to start again
NOT_ALLOWED = (
    "I can't export that. It may not exist, or it may not be one you handle. If you think you should "
    "have access, speak to your DSL."
)
NOT_YOURS = "That file was offered to someone else, so I have not sent it to you."
NOT_SENT = "OK, I have not sent the file. Nothing was saved to your OneDrive."
EXPIRED = "That file offer has expired, so I have not sent it. Please ask for the export again."
ALREADY_ANSWERED = "You have already answered that file offer. Ask for the export again if you need another copy."
UPLOAD_FAILED = "Sorry, I could not save the export to your OneDrive. Please ask for it again."
NO_LONGER_ALLOWED = (
    "I did not send the export: you can no longer see that record. If you think you should, speak to your DSL."
)


class PdfRenderer(Protocol):
    async def case(self, header: ExportHeader, record: CaseRecord, zone: ZoneInfo) -> bytes: ...

    async def child(self, header: ExportHeader, file: ChildFile, zone: ZoneInfo) -> bytes: ...


class Uploader(Protocol):
    def check(self, url: str) -> None:
        """Raise UploadRefused unless files may be sent to this URL."""

    async def put(self, url: str, body: bytes) -> None:
        """Upload the whole file; raise UploadRefused or UploadFailed."""


@dataclass(frozen=True)
class _Built:
    kind: str
    subject: str  # the case's or child's opaque token
    label: str  # what the person reads: a reference, or "the child's file"
    cases: tuple[CaseRecord, ...]  # each gets an "exported" chronology entry
    file: ExportFile


class ExportService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        directory: Directory,
        config: AppConfig,
        clock: Clock,
        features: Features,
        *,
        pdf: PdfRenderer,
        uploader: Uploader,
    ) -> None:
        self._uow = uow
        self._directory = directory
        self._config = config
        self._clock = clock
        self._features = features  # the case and child services, looked up when used (features install in any order)
        self._pdf = pdf
        self._uploader = uploader

    # --- rendering (the tab's download, and each upload) ---------------------------------------------------

    async def render(self, actor: Actor, kind: str, token: Any, fmt: str) -> ExportFile | None:
        """The file for someone allowed to see the record (audited, and on each case's chronology); None when
        refused (that refusal is audited by the service that refused)."""
        built = await self._build(actor, kind, token, fmt)
        if built is None:
            return None
        async with self._uow() as uow:
            await self._record(uow, actor, built, fmt)
        return built.file

    async def _build(
        self, actor: Actor, kind: str, token: Any, fmt: str, *, reference: str | None = None
    ) -> _Built | None:
        if kind not in KINDS or fmt not in FORMATS:
            return None
        token = token if isinstance(token, str) and token else None
        header = ExportHeader(school=actor.school.name, exported_at=self._clock.now(), exported_by=actor.person.name)
        if kind == CASE:
            if token is None and reference is None:
                return None
            incidents = self._features.incidents
            assert incidents is not None, "the exports feature needs the incidents feature"
            record = await incidents.record_for(actor, token=token, reference=reference, path="export")
            if record is None:
                return None
            body = case_json(header, record) if fmt == "json" else await self._pdf.case(header, record, actor.school.tz)
            return _Built(
                CASE,
                record.token,
                record.reference,
                (record,),
                ExportFile(file_name(CASE, record.reference, fmt), MEDIA_TYPES[fmt], body),
            )
        children = self._features.children
        if children is None or token is None:
            return None
        file = await children.file(actor, token)
        if file is None:
            return None
        body = child_json(header, file) if fmt == "json" else await self._pdf.child(header, file, actor.school.tz)
        name = file_name(CHILD, child_label(file.child.token), fmt)
        return _Built(CHILD, file.child.token, "the child's file", file.cases, ExportFile(name, MEDIA_TYPES[fmt], body))

    async def _record(self, uow: Any, actor: Actor, built: _Built, fmt: str) -> None:
        detail = FORMAT_LABELS[fmt] if built.kind == CASE else f"{FORMAT_LABELS[fmt]}, in a child's file"
        for record in built.cases:
            incident = await uow.incidents.by_token(actor.school_id, record.token)
            if incident is not None:
                await uow.incidents.append_event(
                    actor.school_id, incident.id, actor.person.id, actor.person.name, "exported", detail
                )
        if built.kind == CASE:
            await uow.audit.record(
                actor.school_id, actor.person.id, "incident.exported", "incident", built.label, {"format": fmt}
            )
        else:
            await uow.audit.record(
                actor.school_id,
                actor.person.id,
                "child.exported",
                "child",
                built.subject,
                {"format": fmt, "cases": [c.reference for c in built.cases]},
            )

    # --- chat: offer the file in the asker's 1:1 chat --------------------------------------------------------

    async def request(self, actor: Actor, kind: str, token: Any, fmt: str, *, reference: str | None = None) -> str:
        """Authorise, then queue a file consent card to the asker's own 1:1 chat (wherever they asked from)."""
        if fmt not in FORMATS:
            return "Please choose PDF or JSON."
        built = await self._build(actor, kind, token, fmt, reference=reference)
        if built is None:
            return NOT_ALLOWED
        description = f"{built.label}: safeguarding chronology ({FORMAT_LABELS[fmt]}). Confidential."
        async with self._uow() as uow:
            offer = await uow.exports.add(actor.school_id, actor.person.id, kind, built.subject, fmt)
            await uow.notify.to_person(
                actor.school_id,
                actor.person.id,
                dedupe_key=f"export:{offer.token}:offer",
                attachment=consent_attachment(built.file.name, len(built.file.body), offer.token, description),
            )
            await uow.audit.record(
                actor.school_id,
                actor.person.id,
                "export.offered",
                kind,
                built.label if kind == CASE else built.subject,
                {"format": fmt},
            )
        return (
            f"The {FORMAT_LABELS[fmt]} export of {built.label} is on its way to your 1:1 chat with me. Choose "
            "Allow there to save it to your OneDrive."
        )

    async def consent(self, actor: Actor, value: dict[str, Any]) -> CardReply:
        """Teams' fileConsent/invoke: only the person who asked may accept, and only once."""
        token = request_token_from(value)
        action = value.get("action")
        if token is None or action not in ("accept", "decline"):
            return CardReply(message="Sorry, that file offer is not one I recognise. Please ask for the export again.")
        async with self._uow() as uow:
            offer = await uow.exports.get(actor.school_id, token)
            if offer is None or offer.person_id != actor.person.id:
                await uow.audit.record(
                    actor.school_id,
                    actor.person.id,
                    "export.refused",
                    "export",
                    None,
                    {"action": action, "found": offer is not None},
                )
                return CardReply(message=NOT_YOURS)
            if action == "decline":
                if await uow.exports.move(actor.school_id, token, "offered", "declined"):
                    await self._audit_offer(uow, actor, offer, "export.declined")
                return CardReply(message=NOT_SENT)
            if self._clock.now() - offer.created_at > OFFER_LIFETIME:
                if await uow.exports.move(actor.school_id, token, "offered", "failed"):
                    await self._audit_offer(uow, actor, offer, "export.failed", "offer expired")
                return CardReply(message=EXPIRED)
            upload = UploadInfo.from_invoke(value)
            if upload is None:
                return CardReply(message="Teams did not say where to save the file. Please ask for the export again.")
            try:
                self._uploader.check(upload.upload_url)
            except UploadRefused as refused:
                log.warning("export upload refused before starting: %s", refused)
                if await uow.exports.move(actor.school_id, token, "offered", "failed"):
                    await self._audit_offer(uow, actor, offer, "export.failed", str(refused))
                return CardReply(message=UPLOAD_FAILED)
            if not await uow.exports.move(actor.school_id, token, "offered", "accepted"):
                return CardReply(message=ALREADY_ANSWERED)
            # The upload is durable work: it survives a restart, and a slow OneDrive never holds Teams' invoke.
            await uow.work.schedule(
                actor.school_id,
                UPLOAD_KIND,
                self._clock.now(),
                {"request": token, "upload": upload.as_json()},
                dedupe_key=f"export:{token}:upload",
            )
            await self._audit_offer(uow, actor, offer, "export.accepted")
        return CardReply()

    async def _audit_offer(
        self, uow: Any, actor: Actor, offer: ExportRequest, action: str, reason: str | None = None
    ) -> None:
        detail = {"format": offer.format, **({"reason": reason} if reason else {})}
        await uow.audit.record(actor.school_id, actor.person.id, action, offer.kind, offer.subject, detail)

    async def upload(self, item: WorkItem) -> None:
        """Regenerate the file as the directory sees the person now, put it in their OneDrive, then tell them."""
        token = item.payload["request"]
        info = item.payload["upload"]
        upload = UploadInfo(info["uploadUrl"], info["contentUrl"], info["name"], info["uniqueId"], info["fileType"])
        async with self._uow() as uow:
            offer = await uow.exports.get(item.school_id, token)
        if offer is None or offer.status != "accepted":
            return
        school = self._config.school(item.school_id)
        person = await self._directory.person(item.school_id, offer.person_id)
        if school is None or person is None or not person.roles:
            await self._fail(offer, NO_LONGER_ALLOWED, "no longer in the directory")
            return
        actor = Actor(school=school, person=person, conversation_kind="personal")
        built = await self._build(actor, offer.kind, offer.subject, offer.format)
        if built is None:
            await self._fail(offer, NO_LONGER_ALLOWED, "no longer allowed to see it")
            return
        try:
            await self._uploader.put(upload.upload_url, built.file.body)
        except UploadRefused as refused:
            await self._fail(offer, UPLOAD_FAILED, str(refused))
            return
        except UploadFailed as failed:
            if failed.retryable and item.attempts < UPLOAD_ATTEMPTS:
                raise RetryLater(failed.reason) from failed
            await self._fail(offer, UPLOAD_FAILED, failed.reason)
            return
        async with self._uow() as uow:
            if not await uow.exports.move(item.school_id, token, "accepted", "sent"):
                return
            await self._record(uow, actor, built, offer.format)
            await uow.notify.to_person(
                item.school_id,
                person.id,
                text=f"Here is the export of {built.label}.",
                attachment=file_info_attachment(upload),
                dedupe_key=f"export:{token}:sent",
            )

    async def _fail(self, offer: ExportRequest, message: str, reason: str) -> None:
        log.warning("export %s… not sent: %s", offer.token[:6], reason)
        async with self._uow() as uow:
            if not await uow.exports.move(offer.school_id, offer.token, "accepted", "failed"):
                return
            await uow.audit.record(
                offer.school_id,
                offer.person_id,
                "export.failed",
                offer.kind,
                offer.subject,
                {"format": offer.format, "reason": reason},
            )
            await uow.notify.to_person(
                offer.school_id, offer.person_id, text=message, dedupe_key=f"export:{offer.token}:failed"
            )
