"""A case or a child's file as a PDF (fpdf2). Everything people typed is drawn as plain text, never markup."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterable
from pathlib import Path
from zoneinfo import ZoneInfo

from fpdf import FPDF
from fpdf.fonts import FontFace

from bot.case_record import CaseRecord, ChildFile, ChronologyEntry
from bot.exports import ExportHeader

log = logging.getLogger(__name__)

# Debian's fonts-dejavu-core (scripts/system-deps.sh): fpdf2's built-in fonts are Latin-1 only, and names and notes
# are often not.
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
REGULAR = FONT_DIR / "DejaVuSans.ttf"
BOLD = FONT_DIR / "DejaVuSans-Bold.ttf"
LINE = 5.5
NOT_GIVEN = "Not given"


class _Pdf(FPDF):
    def __init__(self, title: str, font_dir: Path | None) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self._title = title
        regular, bold = (font_dir / REGULAR.name, font_dir / BOLD.name) if font_dir else (REGULAR, BOLD)
        if regular.exists():
            self.add_font("Body", "", str(regular))
            self.add_font("Body", "B", str(bold if bold.exists() else regular))
            self.body_font = "Body"
            self.unicode_ok = True
        else:
            log.warning(
                "%s is missing (install fonts-dejavu-core): the export uses a Latin-1 font, and characters "
                "outside it are shown as '?'",
                regular,
            )
            self.body_font = "Helvetica"
            self.unicode_ok = False
        self.set_title(title)
        self.set_creator("eSafety for Microsoft Teams")
        self.set_auto_page_break(auto=True, margin=15)
        self.alias_nb_pages()

    def text_of(self, value: object) -> str:
        text = "" if value is None else str(value)
        return text if self.unicode_ok else text.encode("latin-1", "replace").decode("latin-1")

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(self.body_font, "", 8)
        self.cell(
            0,
            6,
            self.text_of(f"{self._title}. Confidential: safeguarding record. Page {self.page_no()} of {{nb}}"),
            align="C",
        )

    def heading(self, text: str, size: int = 16) -> None:
        self.set_font(self.body_font, "B", size)
        self.multi_cell(0, size * 0.5, self.text_of(text), new_x="LMARGIN", new_y="NEXT")
        self.ln(1)

    def line_of(self, text: str, size: int = 10) -> None:
        self.set_font(self.body_font, "", size)
        self.multi_cell(0, LINE, self.text_of(text), new_x="LMARGIN", new_y="NEXT")

    def fields(self, rows: Iterable[tuple[str, str | None]]) -> None:
        self.set_font(self.body_font, "", 10)
        with self.table(
            col_widths=(45, 135),
            first_row_as_headings=False,
            text_align="LEFT",
            line_height=LINE,
            borders_layout="HORIZONTAL_LINES",
        ) as table:
            for label, value in rows:
                row = table.row()
                row.cell(self.text_of(label), style=FontFace(emphasis="BOLD"))
                row.cell(self.text_of(value if value not in (None, "") else NOT_GIVEN))
        self.ln(3)

    def chronology(self, entries: tuple[ChronologyEntry, ...], zone: ZoneInfo) -> None:
        self.heading("Chronology", 13)
        if not entries:
            self.line_of("Nothing has been recorded yet.")
            return
        self.set_font(self.body_font, "", 9)
        with self.table(
            col_widths=(30, 30, 28, 92),
            text_align="LEFT",
            line_height=LINE - 0.5,
            headings_style=FontFace(emphasis="BOLD", fill_color=(230, 230, 230)),
        ) as table:
            heading = table.row()
            for title in ("Happened at", "Recorded at", "Case", "Entry"):
                heading.cell(title)
            for entry in entries:
                row = table.row()
                row.cell(self.text_of(_when(entry.happened_at, zone)))
                row.cell(self.text_of(_when(entry.recorded_at, zone)))
                row.cell(self.text_of(entry.reference))
                row.cell(self.text_of(entry.text))


def _when(value: dt.datetime | None, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%d %b %Y %H:%M") if value is not None else NOT_GIVEN


def _front(pdf: _Pdf, title: str, header: ExportHeader, zone: ZoneInfo) -> None:
    pdf.add_page()
    pdf.heading(title)
    pdf.line_of(header.school, 12)
    pdf.line_of(f"Exported on {_when(header.exported_at, zone)} by {header.exported_by}", 10)
    pdf.line_of(f"Purpose: {header.purpose}", 10)
    pdf.line_of("Confidential: a safeguarding record. Keep it only where your school's policy allows.", 9)
    pdf.ln(4)


def _case_fields(record: CaseRecord, zone: ZoneInfo) -> list[tuple[str, str | None]]:
    children = ", ".join(c.name + (f" ({c.year_group})" if c.year_group else "") for c in record.children)
    return [
        ("Reference", record.reference),
        ("Status", record.status),
        ("Type", f"{record.category} ({record.group})"),
        ("Severity", record.severity),
        ("About", record.about),
        ("Where", record.where),
        ("Reported", f"{_when(record.reported_at, zone)} by {record.reported_by}"),
        ("Owner", record.owner),
        ("When it happened", record.when),
        ("Who is involved", record.who_is_involved),
        ("What happened", record.what_happened),
        ("Evidence", record.evidence),
        ("Already done", record.already_done),
        ("Actions recorded", "; ".join(record.actions) or None),
        ("Children", children or None),
        ("Member of staff", record.staff_member),
        ("Outcome", record.outcome),
    ]


def case_pdf(header: ExportHeader, record: CaseRecord, zone: ZoneInfo, *, font_dir: Path | None = None) -> bytes:
    title = f"Case {record.reference}: chronology"
    pdf = _Pdf(title, font_dir)
    _front(pdf, title, header, zone)
    pdf.heading("Case details", 13)
    pdf.fields(_case_fields(record, zone))
    pdf.chronology(record.entries, zone)
    return bytes(pdf.output())


def child_pdf(header: ExportHeader, file: ChildFile, zone: ZoneInfo, *, font_dir: Path | None = None) -> bytes:
    title = "A child's safeguarding file: chronology"
    child = file.child
    pdf = _Pdf(title, font_dir)
    _front(pdf, title, header, zone)
    pdf.heading("Child", 13)
    pdf.fields(
        [
            ("Name", child.name),
            ("Year group", child.year_group),
            ("Date of birth", child.date_of_birth.strftime("%d %b %Y") if child.date_of_birth else None),
            ("UPN", child.upn),
            ("MIS id", child.mis_id),
        ]
    )
    pdf.heading("Cases", 13)
    if not file.cases:
        pdf.line_of("No linked cases you may see.")
    for record in file.cases:
        pdf.fields(_case_fields(record, zone))
    if file.hidden_cases:
        pdf.line_of(f"{file.hidden_cases} more linked case(s) are not included: you do not handle them.")
        pdf.ln(2)
    pdf.chronology(file.entries, zone)
    return bytes(pdf.output())


class PdfExporter:
    """Laying out and compressing pages is CPU work: it runs on a worker thread, never on the event loop."""

    async def case(self, header: ExportHeader, record: CaseRecord, zone: ZoneInfo) -> bytes:
        return await asyncio.to_thread(case_pdf, header, record, zone)

    async def child(self, header: ExportHeader, file: ChildFile, zone: ZoneInfo) -> bytes:
        return await asyncio.to_thread(child_pdf, header, file, zone)
