"""Exporting a case as PDF or JSON: only to the asker's own 1:1 chat, through Teams' file consent flow, over HTTP
on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pypdf
import pytest

from adapters.clock import SettableClock
from adapters.file_upload import UploadPolicy
from adapters.pdf_export import case_pdf
from bot.case_record import CaseRecord, ChronologyEntry
from bot.exports import FILE_CONSENT, FILE_INFO, ExportHeader, UploadRefused
from dialogs import exports
from tests.support.harness import Harness, start_harness
from tests.support.teams import TeamsUser
from tests.test_children import _link_card, _press, _presses
from tests.test_children import features as child_features
from tests.test_incidents import DSL_CHANNEL, card_titled, everyone_says_hello, submit_report


@pytest.fixture
async def harness(database_url: str, clock: SettableClock, tmp_path: Path) -> AsyncIterator[Harness]:
    features = child_features()  # the app's, with child records while app.py does not list them yet
    if exports.install not in features:  # until app.py lists it
        features.append(exports.install)
    async with start_harness(
        database_url=database_url, clock=clock, var_dir=tmp_path / "var", features=features
    ) as running:
        yield running


def _attachments(harness: Harness, conversation_id: str, content_type: str) -> list[dict[str, Any]]:
    return [
        a
        for s in harness.connector.to(conversation_id)
        for a in s.activity.get("attachments") or []
        if a.get("contentType") == content_type
    ]


async def _consent_card(harness: Harness, user: TeamsUser, count: int = 1) -> dict[str, Any]:
    """The count-th file consent card the outbox delivered to this person's 1:1 chat."""
    found = await harness.connector.wait_for(
        lambda _sent: len(cards := _attachments(harness, user.conversation_id, FILE_CONSENT)) >= count and cards
    )
    return found[count - 1]


def _answer(user: TeamsUser, consent: dict[str, Any], action: str, session: str, connector: Any) -> dict[str, Any]:
    """The fileConsent/invoke Teams sends when the person chooses Allow or Decline on a file consent card."""
    context = consent["content"]["acceptContext" if action == "accept" else "declineContext"]
    value: dict[str, Any] = {"type": "fileUpload", "action": action, "context": context}
    if action == "accept":
        value["uploadInfo"] = {
            "name": consent["name"],
            "uploadUrl": connector.upload_url(session),
            "contentUrl": f"https://oakfield-my.sharepoint.com/personal/me/Documents/Applications/{session}",
            "uniqueId": f"unique-{session}",
            "fileType": consent["name"].rsplit(".", 1)[-1],
        }
    return user.invoke("fileConsent/invoke", value)


async def _open_case(harness: Harness, dsl: TeamsUser, reference: str) -> str:
    card = card_titled(await dsl.says(f"case {reference}"), reference)
    return card["refresh"]["action"]["data"]["token"]


def _pdf_text(body: bytes) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(body)).pages)


async def test_a_dsl_exports_a_case_as_pdf_and_json_to_their_own_onedrive(harness: Harness) -> None:
    users = await everyone_says_hello(harness, "Priya Shah", "Leah Brooks")
    priya = users["Priya Shah"]
    reference = await submit_report(users["Leah Brooks"], what="Threats in a group chat")
    token = await _open_case(harness, priya, reference)
    await priya.executes("incident.own", {"token": token, "version": 1})
    await priya.executes("incident.note", {"token": token, "version": 2, "note": "Spoke to the pupil <b>today</b>"})

    # Asked from the DSL channel's card: the file still goes only to her own 1:1 chat.
    asked = await priya.executes("case.export", {"token": token, "format": "pdf"}, conversation_id=DSL_CHANNEL)
    assert "1:1 chat" in asked.invoke_message
    consent = await _consent_card(harness, priya)
    assert consent["name"] == f"{reference} chronology.pdf"
    assert consent["content"]["acceptContext"] == consent["content"]["declineContext"]
    assert list(consent["content"]["acceptContext"]) == ["export"]  # only the opaque request token
    assert reference not in json.dumps(consent["content"]["acceptContext"])
    assert not _attachments(harness, DSL_CHANNEL, FILE_CONSENT)

    accepted = await priya.post(_answer(priya, consent, "accept", "pdf-1", harness.connector), priya.conversation_id)
    assert accepted.status == 200
    info = (await harness.connector.wait_for(lambda _s: _attachments(harness, priya.conversation_id, FILE_INFO)))[0]
    assert info["contentUrl"].endswith("/pdf-1") and info["content"] == {"uniqueId": "unique-pdf-1", "fileType": "pdf"}

    upload = harness.connector.uploads[0]
    assert upload.content_range == f"bytes 0-{len(upload.body) - 1}/{len(upload.body)}"
    text = _pdf_text(upload.body)
    for expected in (
        reference,
        "Oakfield Primary School",
        "by Priya Shah",
        "Reported by Leah Brooks",
        "Taken on by Priya Shah",
        "Note from Priya Shah: Spoke to the pupil <b>today</b>",
        "Threats in a group chat",
    ):
        assert expected in text, expected

    # JSON, typed in her 1:1 chat; the first export is now on the case's chronology.
    said = await priya.says(f"export case {reference} json")
    assert "1:1 chat" in said.texts[-1]
    consent = await _consent_card(harness, priya, 2)
    assert consent["name"] == f"{reference} chronology.json"
    await priya.post(_answer(priya, consent, "accept", "json-1", harness.connector), priya.conversation_id)
    await harness.connector.wait_for(lambda _s: len(_attachments(harness, priya.conversation_id, FILE_INFO)) >= 2)
    document = json.loads(harness.connector.uploads[1].body)
    assert document["export"]["exported_by"] == "Priya Shah"
    assert document["export"]["school"] == "Oakfield Primary School"
    assert document["case"]["reference"] == reference
    entries = [e["text"] for e in document["case"]["chronology"]]
    assert "Taken on by Priya Shah" in entries and "Exported by Priya Shah (PDF)" in entries

    async with harness.parts.uow() as uow:
        audit = await uow.audit.entries(harness.school.id)
    exported = [e for e in audit if e.action == "incident.exported" and e.record_id == reference]
    assert [(e.actor_id, e.detail["format"]) for e in exported] == [
        (harness.person_id("Priya Shah"), "pdf"),
        (harness.person_id("Priya Shah"), "json"),
    ]


async def test_only_the_asker_who_may_see_the_case_gets_a_file(harness: Harness) -> None:
    users = await everyone_says_hello(harness, "Priya Shah", "Tom Reed", "Alex Morgan", "Leah Brooks")
    priya, tom, alex, leah = (users[n] for n in ("Priya Shah", "Tom Reed", "Alex Morgan", "Leah Brooks"))
    reference = await submit_report(leah)
    token = await _open_case(harness, priya, reference)

    # A technician (on the case team for technical reports, not this one) and the reporter: the one refusal.
    refused = await alex.says(f"export case {reference}")
    assert "can't export that" in refused.texts[-1]
    refused = await leah.executes("case.export", {"token": token, "format": "pdf"})
    assert "can't export that" in refused.invoke_message

    await priya.executes("case.export", {"token": token, "format": "pdf"})
    consent = await _consent_card(harness, priya)
    # Another DSL who may see the case answers Priya's card (the same context): nothing for either of them.
    stolen = await tom.post(_answer(tom, consent, "accept", "tom-1", harness.connector), tom.conversation_id)
    assert stolen.status == 200 and "offered to someone else" in stolen.texts[-1]
    declined = await priya.post(_answer(priya, consent, "decline", "", harness.connector), priya.conversation_id)
    assert "not sent the file" in declined.texts[-1]
    late = await priya.post(_answer(priya, consent, "accept", "late-1", harness.connector), priya.conversation_id)
    assert "already answered" in late.texts[-1]

    await harness.run_due_work()
    assert harness.connector.uploads == []
    for user in (priya, tom, alex, leah):
        assert not _attachments(harness, user.conversation_id, FILE_INFO)
    for user in (tom, alex, leah):
        assert not _attachments(harness, user.conversation_id, FILE_CONSENT)
    async with harness.parts.uow() as uow:
        audit = await uow.audit.entries(harness.school.id)
    assert not [e for e in audit if e.action == "incident.exported"]
    assert [e for e in audit if e.action == "export.refused" and e.actor_id == harness.person_id("Tom Reed")]
    assert [
        e
        for e in audit
        if e.action == "incident.access_refused"
        and e.actor_id == harness.person_id("Alex Morgan")
        and e.detail.get("path") == "export"
    ]


async def test_the_file_is_made_for_who_the_asker_is_when_they_accept_and_old_offers_expire(harness: Harness) -> None:
    users = await everyone_says_hello(harness, "Priya Shah", "Tom Reed", "Leah Brooks")
    priya, tom = users["Priya Shah"], users["Tom Reed"]
    reference = await submit_report(users["Leah Brooks"])
    await tom.says(f"export case {reference}")
    toms = await _consent_card(harness, tom)
    await priya.says(f"export case {reference}")
    priyas = await _consent_card(harness, priya)

    # The school takes Tom off the DSL team (the directory changes and the app restarts), then he accepts.
    school = harness.config.schools[0]
    people = [
        p.model_copy(update={"roles": [r for r in p.roles if r == "staff"]}) if p.name == "Tom Reed" else p
        for p in school.people
    ]
    harness.config = harness.config.model_copy(
        update={"schools": [school.model_copy(update={"people": people}), *harness.config.schools[1:]]}
    )
    await harness.restart()
    accepted = await tom.post(_answer(tom, toms, "accept", "tom-1", harness.connector), tom.conversation_id)
    assert accepted.status == 200
    told = await harness.connector.wait_for(
        lambda _s: [s.text for s in harness.connector.to(tom.conversation_id) if "did not send" in s.text]
    )
    assert "can no longer see that record" in told[0]

    harness.clock.advance(days=2)
    late = await priya.post(_answer(priya, priyas, "accept", "priya-1", harness.connector), priya.conversation_id)
    # Two days on, Priya's AUP reminder may land in the same moment; the turn's own answer is what counts.
    assert [t for t in late.texts if "expired" in t]
    await harness.run_due_work()
    assert harness.connector.uploads == []
    assert not _attachments(harness, tom.conversation_id, FILE_INFO)
    assert not _attachments(harness, priya.conversation_id, FILE_INFO)


async def test_a_childs_file_exports_every_case_in_one_chronology_without_the_name_in_the_file_name(
    harness: Harness,
) -> None:
    users = await everyone_says_hello(harness, "Priya Shah", "Leah Brooks")
    priya = users["Priya Shah"]
    first = await submit_report(users["Leah Brooks"], what="Mean messages in the class chat")
    second = await submit_report(users["Leah Brooks"], what="Asked for photos by a stranger")
    child = None
    for reference in (first, second):
        found = await _presses(priya, await _link_card(priya, reference), "Search", query="amelia")
        linked = await _presses(priya, found, "Link", near="Amelia Hart")
        child = _press(linked, "Open file", near="Amelia Hart")["data"]["child"]

    asked = await priya.executes("child.export", {"child": child, "format": "pdf"})
    assert "1:1 chat" in asked.invoke_message
    consent = await _consent_card(harness, priya)
    assert consent["name"].endswith(" chronology.pdf") and "Amelia" not in json.dumps(consent)
    await priya.post(_answer(priya, consent, "accept", "child-1", harness.connector), priya.conversation_id)
    await harness.connector.wait_for(lambda _s: _attachments(harness, priya.conversation_id, FILE_INFO))
    text = _pdf_text(harness.connector.uploads[0].body)
    for expected in (
        "Amelia Hart",
        first,
        second,
        "Mean messages in the class chat",
        "Asked for photos by a stranger",
        "Linked to a child's record by Priya Shah",
    ):
        assert expected in text, expected

    async with harness.parts.uow() as uow:
        audit = await uow.audit.entries(harness.school.id)
        cases = [await uow.incidents.by_reference(harness.school.id, r) for r in (first, second)]
    assert [(e.record_id, e.detail["cases"]) for e in audit if e.action == "child.exported"] == [
        (child, [first, second])
    ]
    for case in cases:
        assert [e.detail for e in case.events if e.kind == "exported"] == ["PDF, in a child's file"]


def _record(text: str) -> CaseRecord:
    at = dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC)
    entries = (ChronologyEntry(at, at, "ES-2026-0001", "note", text),)
    return CaseRecord(
        "ES-2026-0001",
        "tok",
        "Cyberbullying",
        "Conduct",
        "Medium",
        "Open",
        "A pupil",
        "Online",
        at,
        "Leah Brooks",
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        (),
        (),
        None,
        entries,
    )


def test_names_outside_latin_1_are_drawn_and_a_missing_font_falls_back_with_a_warning(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    header = ExportHeader("Oakfield Primary School", dt.datetime(2026, 11, 23, 10, tzinfo=dt.UTC), "Zoë Łukasz")
    note = "Spoke to Łucja and Zoë **not bold**"
    assert note in _pdf_text(case_pdf(header, _record(note), ZoneInfo("Europe/London")))
    with caplog.at_level(logging.WARNING):
        text = _pdf_text(case_pdf(header, _record(note), ZoneInfo("Europe/London"), font_dir=tmp_path))
    assert "Spoke to ?ucja and Zoë" in text and "fonts-dejavu-core" in caplog.text


def test_uploads_go_only_to_onedrive_hosts_over_https() -> None:
    policy = UploadPolicy()
    policy.check("https://oakfield-my.sharepoint.com/personal/x/_api/upload?token=1")
    for url in (
        "http://oakfield-my.sharepoint.com/u",
        "https://sharepoint.com.evil.example/u",
        "https://127.0.0.1/u",
        "https://user:pw@oakfield.sharepoint.com/u",
    ):
        with pytest.raises(UploadRefused):
            policy.check(url)
    UploadPolicy(allow_loopback=True).check("http://127.0.0.1:8080/upload/1")
