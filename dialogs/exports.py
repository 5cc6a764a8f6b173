"""Wiring for exports: the case and child-file export buttons, `export case REF`, Teams' file consent invoke and
the upload work."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from adapters.connector_http import is_loopback_host
from adapters.file_upload import FileUploader, UploadPolicy
from adapters.pdf_export import PdfExporter
from bot.actor import Actor, CardAction, CardReply, Command, Turn
from bot.export_service import UPLOAD_KIND, ExportService
from bot.exports import CASE, CHILD, FORMATS
from bot.settings import Settings
from bot.wiring import Wiring
from dialogs.incidents import REFERENCE

FILE_CONSENT_INVOKE = "fileConsent/invoke"
USAGE = "Please give the case reference, for example `export case ES-2026-0001` (add `json` for JSON)."


def upload_policy(settings: Settings | None) -> UploadPolicy:
    """OneDrive hosts from ESAFETY_EXPORT_UPLOAD_HOSTS; loopback only in dev mode or against a loopback identity
    provider (the offline test rig), as for the Bot Connector."""
    if settings is None:
        return UploadPolicy()
    local_signer = bool(settings.openid_metadata_url) and is_loopback_host(
        urlsplit(settings.openid_metadata_url or "").hostname
    )
    return UploadPolicy(hosts=settings.export_upload_host_list, allow_loopback=settings.dev or local_signer)


def install(wiring: Wiring) -> None:
    uploader = FileUploader(upload_policy(wiring.features.settings))
    service = ExportService(
        wiring.uow, wiring.directory, wiring.config, wiring.clock, wiring.features, pdf=PdfExporter(), uploader=uploader
    )
    wiring.features.exports = service
    wiring.features.shutdown.append(uploader.close)
    services = wiring.services

    async def export_case(actor: Actor, data: dict[str, Any]) -> CardReply:
        # No roles here: the case's own access rule decides, and refuses with one message that names nothing.
        return CardReply(message=await service.request(actor, CASE, data.get("token"), _format(data)))

    async def export_child(actor: Actor, data: dict[str, Any]) -> CardReply:
        return CardReply(message=await service.request(actor, CHILD, data.get("child"), _format(data)))

    services.add_card_action(CardAction("case.export", export_case))
    services.add_card_action(CardAction("child.export", export_child))

    async def export_command(turn: Turn, args: str) -> None:
        words = args.split()
        if not words or words[0].lower() != "case" or len(words) > 3:
            await turn.say(USAGE)
            return
        reference = words[1].upper() if len(words) > 1 else ""
        fmt = words[2].lower() if len(words) > 2 else "pdf"
        if not REFERENCE.match(reference) or fmt not in FORMATS:
            await turn.say(USAGE)
            return
        await turn.say(await service.request(turn.actor, CASE, None, fmt, reference=reference))

    services.add_command(
        Command(
            "export",
            "Export a case",
            "a case's chronology as PDF or JSON, sent to your 1:1 chat",
            export_command,
            permission="case.export",
            in_help=False,
            channel_ok=True,
        )
    )
    services.add_invoke(FILE_CONSENT_INVOKE, service.consent)

    async def upload(item: Any) -> None:
        await service.upload(item)

    wiring.work.register(UPLOAD_KIND, upload)


def _format(data: dict[str, Any]) -> str:
    fmt = data.get("format", "pdf")
    return fmt if isinstance(fmt, str) else ""  # anything else is answered "Please choose PDF or JSON."
