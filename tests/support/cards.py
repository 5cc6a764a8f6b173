"""Every card the bot sends, built by the pure builders in bot/cards/ from fixture data (no I/O).

`all_cards()` returns {name: card}. `BUILDERS_COVERED` names each builder used, so a test can fail when someone adds
a builder to bot/cards/ without a fixture here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bot.allegations import CaseDecision, RegisterRow
from bot.aup import (
    Acknowledgement,
    Audience,
    AudienceStatus,
    AupDocument,
    Preview,
    StatusLine,
    StatusReport,
    parse_markdown,
    with_version,
)
from bot.cards import allegations as allegation_cards
from bot.cards import aup as aup_cards
from bot.cards import children as child_cards
from bot.cards import delivery as delivery_cards
from bot.cards import desk as desk_cards
from bot.cards import digest as digest_cards
from bot.cards import filtering as filtering_cards
from bot.cards import filtering_check as check_cards
from bot.cards import help as help_cards
from bot.cards import incident as incident_cards
from bot.cards import report as report_cards
from bot.cards import report_form as report_form_cards
from bot.cards import retention as retention_cards
from bot.cards import reviews as review_cards
from bot.cards import trust_digest as trust_digest_cards
from bot.cards.allegations import DecisionsView, UkcisView, build_decisions_part, build_ukcis_part
from bot.cards.help import CommandHelp
from bot.cards.incident import CasePart, CaseView, Labels, Option
from bot.cards.referrals import ClockLine, MadeLine, ReferralView, referral_part
from bot.cards.report_form import MessageRef
from bot.cards.retention import HoldView, RetentionView
from bot.case_record import ChildDetails, ChildFile, ChildRef, ChronologyEntry
from bot.child_service import LinkView
from bot.children import ChildMatch
from bot.delivery import UndeliveredView
from bot.desk import CaseFilter, CasePage, CaseRow
from bot.digest import AupCompliance, Figures, ReviewDue
from bot.filtering import Draft, FilterRequest, LogEntry
from bot.filtering_check import CheckForm, FilteringCheck, TestResult
from bot.incidents import Event, Incident, IncidentSummary, Status
from bot.people import Person, Role
from bot.policy import load_policy
from bot.referrals import ClockStatus, Referral, RequiredReferral
from bot.report import ABOUT_FIELDS, DETAIL_FIELDS, IMAGES_WARNING, ReportDraft, choices, summary_rows
from bot.report_form import form_view
from bot.retention import INBOUND_NOTE, schedule_lines
from bot.reviews import ReviewItem, ReviewView
from bot.trust_digest import build_view as trust_digest_view

ROOT = Path(__file__).resolve().parents[2]
TZ = ZoneInfo("Europe/London")
NOW = dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.UTC)
PRIYA = "00000000-0000-4000-8000-000000000001"
LEAH = "00000000-0000-4000-8000-000000000009"
SAM = "00000000-0000-4000-8000-000000000004"
ALEX = "00000000-0000-4000-8000-000000000005"
COMMANDS = [
    CommandHelp("report", "Report a concern", "Tell the safeguarding team about an online-safety worry."),
    CommandHelp("my reports", "My reports", "See where your reports have got to."),
    CommandHelp("filter", "Ask for a filter change", "Unblock or block a site for a lesson."),
    CommandHelp("aup", "Acceptable use", "Read and agree to the acceptable use policy."),
    CommandHelp("reviews", "Review calendar", "See which reviews fall due next."),
]

BUILDERS_COVERED: set[str] = set()


def _use(module: Any, name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    BUILDERS_COVERED.add(f"{module.__name__}.{name}")
    return getattr(module, name)(*args, **kwargs)


def _incident(status: Status = Status.IN_PROGRESS, *, urgent: bool = False) -> Incident:
    events = [
        Event(NOW - dt.timedelta(minutes=50), LEAH, "Leah Brooks", "reported", None),
        Event(NOW - dt.timedelta(minutes=40), PRIYA, "Priya Shah", "acknowledged", None),
        Event(NOW - dt.timedelta(minutes=20), PRIYA, "Priya Shah", "action", "Spoke to the class teacher"),
        Event(NOW - dt.timedelta(minutes=5), PRIYA, "Priya Shah", "note", "Parents will be called after school"),
    ]
    return Incident(
        id=42,
        school_id="oakfield",
        reference="ES-2026-0042",
        reporter_id=LEAH,
        reporter_name="Leah Brooks",
        reported_at=NOW - dt.timedelta(minutes=50),
        subject_kind="pupil",
        category="cyberbullying",
        category_group="conduct",
        illegal=False,
        urgent=urgent,
        immediate_danger=False,
        severity="high" if not urgent else "critical",
        location="online",
        occurred="Yesterday evening",
        subjects="A Year 6 pupil",
        narrative="Unkind messages in a class group chat, shared with the teacher.",
        evidence="Screenshots on the class teacher's school laptop",
        actions_taken="Told the pupil to save messages",
        complete=True,
        status=status,
        owner_id=PRIYA,
        owner_name="Priya Shah",
        outcome="Resolved with parents" if status == Status.CLOSED else None,
        recorded_actions=["Referred to the class teacher"],
        case_roles=("dsl", "deputy_dsl"),
        viewer_ids=(PRIYA,),
        excluded_ids=(),
        acknowledged_at=NOW - dt.timedelta(minutes=40),
        closed_at=NOW if status == Status.CLOSED else None,
        sla_breached=False,
        version=4,
        events=events,
        token="Qx3vN0pL7aR2sT9uW4yZ1bC6dE8fG5hJ",
    )


def _request(status: str = "pending", **changes: Any) -> FilterRequest:
    values: dict[str, Any] = dict(
        id=1,
        school_id="oakfield",
        reference="FR-0001",
        kind="unblock",
        url="https://www.bbc.co.uk/bitesize",
        domain="bbc.co.uk",
        audience="year_groups",
        year_groups=("Year 5", "Year 6"),
        reason="Year 6 science lesson on the water cycle",
        lesson_date=dt.date(2026, 11, 24),
        until=dt.datetime(2026, 11, 24, 15, 30, tzinfo=dt.UTC),
        previewed=True,
        categories=("education",),
        needs_headteacher=False,
        status=status,
        requester_id=LEAH,
        requester_name="Leah Brooks",
        created_at=NOW - dt.timedelta(hours=1),
    )
    values.update(changes)
    return FilterRequest(**values)


def _aup_document() -> AupDocument:
    text = (ROOT / "config" / "aup" / "staff.md").read_text(encoding="utf-8")
    return AupDocument(
        school_id="oakfield",
        audience=Audience.STAFF,
        version=3,
        title="Staff acceptable use policy",
        summary="How staff use school devices, email and the internet safely.",
        text=text,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        published_at=NOW - dt.timedelta(days=30),
        published_by=SAM,
    )


def _review_view(policy: Any, *, days_left: int = 7, done: bool = False) -> ReviewView:
    kind = policy.reviews[0]
    due = (NOW + dt.timedelta(days=days_left)).date()
    item = ReviewItem(
        id=1,
        school_id="oakfield",
        kind=kind.key,
        due_on=due,
        owner_role=kind.owner_role.value,
        reminders_sent=("30",),
        created_at=NOW - dt.timedelta(days=300),
        completed_at=NOW if done else None,
        completed_by=SAM if done else None,
        notes="Checked with governors" if done else None,
        next_due_on=due.replace(year=due.year + 1) if done else None,
    )
    return ReviewView(item, kind, days_left, due.replace(year=due.year + 1), can_complete=not done)


def _figures(governors: bool = False) -> Figures:
    return Figures(
        title="Termly online-safety figures" if governors else "Weekly online-safety digest",
        school_name="Oakfield Primary School",
        period_label="Autumn 2026" if governors else "16 to 22 November 2026",
        start=NOW - dt.timedelta(days=7),
        end=NOW,
        by_group=[("Conduct", 9), ("Content", 6), ("Contact", 1), ("Technical", 5)],  # Contact is suppressed
        by_severity=[("Low", 3), ("Medium", 3), ("High", 2), ("Critical", 1)],
        by_status=[("New", 1), ("In progress", 3), ("Closed", 5)],
        by_outcome=[("Resolved in school", 4), ("Referred", 1)],
        sla_breaches=1,
        open_by_age=None if governors else [("Under a day", 2), ("1 to 7 days", 1), ("Over a week", 1)],
        open_breached=None if governors else 1,
        trend=[("Sep", 3), ("Oct", 5), ("Nov", 9)],
        filter_changes=[("Unblocked", 3), ("Blocked", 1), ("Declined", 1)],
        aup=[AupCompliance("Staff", 18, 20), AupCompliance("Governors", 5, 6)],
        reviews_due=[ReviewDue("Online-safety policy review", (NOW + dt.timedelta(days=20)).date(), 20)],
        reviews_completed=[("Filtering and monitoring review", 1)],
        threshold=5,
        adult_allegations=2 if governors else None,
        filtering_checks=[
            ("2 Oct 2026, by the IT technician", "1 of 6 not blocked: Gambling"),
            ("9 Oct 2026, by the IT technician", "All 6 tests blocked"),
        ]
        if governors
        else None,
    )


def _trust_view() -> Any:
    """Three schools: the smallest one's column is hidden, as the trust digest hides it."""
    schools = []
    for name, concerns, staff in (("Ashby Primary School", 14, 40), ("Birch Academy", 9, 60), ("Cedar School", 2, 12)):
        figures = _figures()
        figures.school_name = name
        figures.by_group = [("Conduct", concerns // 2), ("Content", concerns - concerns // 2)]
        figures.aup = [AupCompliance("Staff", staff - 3, staff)]
        schools.append(figures)
    return trust_digest_view("Riverside Learning Trust", "16 to 22 November 2026", schools, 5)


def _check(*outcomes: str) -> FilteringCheck:
    labels = [
        "Child sexual abuse content (IWF list)",
        "Terrorist content (CTIRU list)",
        "Adult content",
        "Proxies and VPNs",
        "Gambling",
        "Self-harm and suicide content",
    ]
    results = tuple(
        TestResult(f"t{i}", label, outcomes[i] if i < len(outcomes) else "blocked") for i, label in enumerate(labels)
    )
    return FilteringCheck(
        1,
        "oakfield",
        NOW,
        "tech-1",
        "Alex Morgan",
        "IT technician",
        "Year 5 laptop 12 on pupil Wi-Fi",
        results,
        "Re-tested after the proxy list update.",
    )


def all_cards() -> dict[str, dict[str, Any]]:
    """Every card the bot sends, by a short name that is also its screenshot's file name."""
    policy = load_policy(ROOT / "config" / "policy_defaults.yaml")
    labels = Labels(category="Cyberbullying or harassment", group="Conduct")
    incident = _incident()
    options = [Option(a.key, a.label) for a in policy.actions[:6]]
    outcomes = [Option(o.key, o.label) for o in policy.outcomes[:6]]
    dsl_ids = [PRIYA, "00000000-0000-4000-8000-000000000002", "00000000-0000-4000-8000-000000000011"]
    log = [
        LogEntry(NOW - dt.timedelta(hours=n), action, LEAH, "Leah Brooks", "bbc.co.uk", "FR-0001")
        for n, action in enumerate(["applied", "approved", "requested"])
    ]
    aup_doc = _aup_document()
    ack = Acknowledgement(
        school_id="oakfield",
        person_id=LEAH,
        person_name="Leah Brooks",
        audience=Audience.STAFF,
        version=3,
        cycle="2026-09-01",
        sha256=aup_doc.sha256,
        read_kcsie=True,
        agreed=True,
        at=NOW,
    )
    parsed = with_version(parse_markdown(aup_doc.text), 4)
    leah = Person(LEAH, "Leah Brooks", "leah.brooks@oakfield.example", frozenset({Role.STAFF}))
    alex = Person(ALEX, "Alex Morgan", "alex.morgan@oakfield.example", frozenset({Role.STAFF, Role.TECHNICIAN}))
    status = StatusReport(
        school_name="Oakfield Primary School",
        cycle="2026-09-01",
        at=NOW,
        audiences=[
            AudienceStatus(
                Audience.STAFF,
                aup_doc,
                [
                    StatusLine(leah, NOW - dt.timedelta(days=2), None, 0, False, aup_doc.sha256),
                    StatusLine(alex, None, NOW - dt.timedelta(days=12), 3, True, None),
                ],
            ),
            AudienceStatus(Audience.VOLUNTEER, None, []),
        ],
    )
    review = _review_view(policy)
    draft = ReportDraft(
        subject_kind="pupil",
        immediate_danger=False,
        category="cyberbullying",
        location="online",
        occurred="Yesterday evening",
        subjects="A Year 6 pupil",
        narrative="Unkind messages in a class group chat.",
        evidence="Screenshots on the class teacher's laptop",
        actions_taken="None yet",
    )
    report_options = choices(policy)
    return {
        "help": _use(help_cards, "build_help_card", "Leah", COMMANDS),
        "welcome-personal": _use(
            help_cards, "build_personal_welcome_card", "Leah", "Oakfield Primary School", COMMANDS
        ),
        "welcome-channel": _use(
            help_cards,
            "build_channel_welcome_card",
            "Oakfield Primary School",
            ["safeguarding alerts (reference and status only)"],
        ),
        "incident-channel-alert": _use(incident_cards, "build_channel_alert_card", incident, labels, NOW, TZ, dsl_ids),
        "incident-case-notice": _use(
            incident_cards,
            "build_case_notice_card",
            _incident(Status.NEW, urgent=True),
            labels,
            NOW,
            TZ,
            "Urgent: please acknowledge within 15 minutes.",
        ),
        "incident-case": _use(
            incident_cards,
            "build_case_card",
            CaseView(
                incident=incident,
                labels=labels,
                now=NOW,
                timezone=TZ,
                can_act=True,
                suggested_actions=options,
                outcomes=outcomes,
                escalation_targets=[Option("headteacher", "Headteacher"), Option("police", "Police")],
                refresh_user_ids=dsl_ids,
                notice="Saved.",
                lado_prompt=False,
                children=(ChildRef("c" * 32, "Jamie Smith", "Year 6"),),
                categories=[Option(c.key, c.label) for c in policy.categories],
                can_move=True,
                can_link=True,
            ),
        ),
        "incident-case-referrals": _use(
            incident_cards,
            "build_case_card",
            CaseView(
                incident=incident,
                labels=labels,
                now=NOW,
                timezone=TZ,
                can_act=True,
                outcomes=outcomes,
                refresh_user_ids=dsl_ids,
                parts=[
                    referral_part(
                        ReferralView(
                            token=incident.token,
                            version=incident.version,
                            case_open=True,
                            can_act=True,
                            now=NOW,
                            timezone=TZ,
                            agencies=[Option("lado", "LADO"), Option("police", "Police")],
                            clocks=[
                                ClockLine(
                                    RequiredReferral(
                                        1,
                                        "oakfield",
                                        42,
                                        "lado",
                                        NOW - dt.timedelta(days=2),
                                        NOW - dt.timedelta(hours=3),
                                        ClockStatus.OPEN,
                                    ),
                                    "the LADO",
                                    False,
                                    "An allegation about a member of staff",
                                )
                            ],
                            made=[
                                MadeLine(
                                    Referral(
                                        2,
                                        "oakfield",
                                        42,
                                        "police",
                                        NOW - dt.timedelta(hours=5),
                                        PRIYA,
                                        "Priya Shah",
                                        "CAD 1234",
                                        NOW - dt.timedelta(hours=5),
                                        handle="h" * 32,
                                    ),
                                    "Police",
                                )
                            ],
                            not_made_prompt="Why was the LADO not told?",
                        )
                    )
                ],
            ),
        ),
        "low-level-register": _use(
            allegation_cards,
            "build_low_level_register_card",
            [
                RegisterRow(ALEX, "Alex Morgan", ("ES-2026-0003", "ES-2026-0007"), 2, NOW - dt.timedelta(days=1)),
                RegisterRow(LEAH, "Leah Brooks", ("ES-2026-0005",), 0, NOW - dt.timedelta(days=9)),
                RegisterRow(None, "Not named by the reporter", ("ES-2026-0009",), 1, NOW),
            ],
            TZ,
        ),
        "low-level-register-empty": _use(allegation_cards, "build_low_level_register_card", [], TZ),
        "incident-case-ukcis-form": _use(
            incident_cards,
            "build_case_card",
            CaseView(
                incident=incident,
                labels=labels,
                now=NOW,
                timezone=TZ,
                can_act=True,
                outcomes=outcomes,
                refresh_user_ids=dsl_ids,
                parts=[
                    build_ukcis_part(
                        UkcisView(
                            incident.token, incident.version, list(policy.sexting_referral_criteria), TZ, can_act=True
                        )
                    )
                ],
            ),
        ),
        "incident-case-allegation": _use(
            incident_cards,
            "build_case_card",
            CaseView(
                incident=incident,
                labels=labels,
                now=NOW,
                timezone=TZ,
                can_act=True,
                outcomes=outcomes,
                refresh_user_ids=dsl_ids,
                parts=[
                    build_ukcis_part(
                        UkcisView(
                            incident.token,
                            incident.version,
                            list(policy.sexting_referral_criteria),
                            TZ,
                            done=CaseDecision(
                                "ukcis",
                                {
                                    "answers": [False, True, False, False, False],
                                    "parents_told": True,
                                    "agency": "police",
                                    "no_image_viewed": True,
                                },
                                PRIYA,
                                "Priya Shah",
                                NOW,
                            ),
                            can_act=True,
                        )
                    ),
                    build_decisions_part(
                        DecisionsView(
                            incident.token,
                            incident.version,
                            list(policy.allegations.decisions),
                            TZ,
                            recorded={
                                "suspension": CaseDecision(
                                    "decision.suspension", {"considered": False}, PRIYA, "Grace Okafor", NOW
                                )
                            },
                            can_act=True,
                        )
                    ),
                ],
            ),
        ),
        "retention": _use(
            retention_cards,
            "build_retention_card",
            RetentionView(
                school="Oakfield Primary School",
                schedule=schedule_lines(policy.retention),
                timezone=TZ,
                last_run_at=NOW - dt.timedelta(hours=8),
                last_figures=[("Safeguarding case files", "2 anonymised, 1 kept because of a legal hold")],
                next_run_at=NOW + dt.timedelta(hours=16),
                note=INBOUND_NOTE,
            ),
        ),
        "retention-empty": _use(
            retention_cards,
            "build_retention_card",
            RetentionView(school="Oakfield Primary School", schedule=schedule_lines(policy.retention), timezone=TZ),
        ),
        "incident-case-held": _use(
            incident_cards,
            "build_case_card",
            CaseView(
                incident=_incident(Status.CLOSED),
                labels=labels,
                now=NOW,
                timezone=TZ,
                can_act=True,
                parts=[
                    CasePart(
                        *retention_cards.build_hold_section(
                            HoldView(
                                token="c" * 32,
                                timezone=TZ,
                                held_since=NOW,
                                held_by="Priya Shah",
                                reason="A claim has been made",
                                can_act=True,
                            )
                        )
                    )
                ],
            ),
        ),
        "report-form": _use(
            report_form_cards,
            "build_report_form_card",
            form_view(
                policy,
                "0" * 32,
                MessageRef(
                    "Jo Hughes",
                    "Monday 23 November 2026 at 09:58",
                    "https://teams.microsoft.com/l/message/19:abc@thread.v2/1763891892345",
                    "00000000-0000-4000-8000-000000000010",
                ),
            ),
        ),
        "report-form-problems": _use(
            report_form_cards,
            "build_report_form_card",
            form_view(
                policy,
                "0" * 32,
                MessageRef("Jo Hughes", "Monday 23 November 2026 at 09:58"),
                {"subject_kind": "pupil", "subjects": "JS, Year 6"},
                ["Please say what happened."],
            ),
        ),
        "incident-case-closed": _use(
            incident_cards,
            "build_case_card",
            CaseView(incident=_incident(Status.CLOSED), labels=labels, now=NOW, timezone=TZ, can_act=False),
        ),
        "incident-not-allowed": _use(incident_cards, "build_not_allowed_card"),
        "child-link": _use(
            child_cards,
            "build_child_link_card",
            LinkView(
                reference="ES-2026-0042",
                case_token="t" * 32,
                children=(ChildRef("c" * 32, "Jamie Smith", "Year 6"),),
                staff_member=None,
                may_link_children=True,
                may_link_staff=False,
                query="jamie",
                matches=[
                    ChildMatch("Jamie Smithson", "Year 3", dt.date(2018, 2, 1), pupil_id="pupil-9", classes=("3 Elm",))
                ],
                notice="Jamie Smith is now linked to ES-2026-0042.",
            ),
        ),
        "child-search": _use(
            child_cards,
            "build_child_search_card",
            child_cards.SearchView(
                "jamie", [ChildMatch("Jamie Smith", "Year 6", dt.date(2015, 1, 22), token="c" * 32)]
            ),
        ),
        "child-file": _use(
            child_cards,
            "build_child_file_card",
            child_cards.ChildFileView(
                ChildFile(
                    ChildDetails("c" * 32, "Jamie Smith", "Year 6", dt.date(2015, 1, 22), "B210987654321", None),
                    (),
                    hidden_cases=1,
                    entries=(
                        ChronologyEntry(NOW, NOW, "ES-2026-0042", "note", "Note from Priya Shah: Spoke to his parents"),
                    ),
                ),
                TZ,
            ),
        ),
        "incident-moved": _use(incident_cards, "build_moved_card", "ES-2026-0042", None),
        "desk-caseload": _use(
            desk_cards,
            "build_caseload_card",
            CasePage(
                rows=[
                    CaseRow(
                        "t" * 32,
                        f"ES-2026-00{40 + n}",
                        "Cyberbullying or harassment",
                        "Conduct",
                        ("critical", "high", "medium", "low")[n % 4],
                        "New",
                        NOW - dt.timedelta(hours=n * 5),
                        None if n % 2 else "Priya Shah",
                        n == 0,
                        n < 2,
                        1 if n == 0 else 0,
                    )
                    for n in range(8)
                ],
                filter=CaseFilter("open", None, 2),
                total=20,
                pages=3,
                groups=[(g.key, g.label) for g in policy.category_groups],
            ),
            NOW,
        ),
        "desk-caseload-empty": _use(
            desk_cards,
            "build_caseload_card",
            CasePage(
                rows=[],
                filter=CaseFilter("mine", "conduct", 1),
                total=0,
                pages=1,
                groups=[(g.key, g.label) for g in policy.category_groups],
            ),
            NOW,
        ),
        "incident-confirmation": _use(
            incident_cards,
            "build_confirmation_card",
            "ES-2026-0042",
            ["The safeguarding team has your report.", "Keep any evidence safe."],
            "Do not look for more evidence yourself.",
        ),
        "report-summary": _use(report_cards, "build_report_summary_card", summary_rows(draft, policy)),
        "report-summary-typed": _use(
            report_cards, "build_report_summary_card", summary_rows(draft, policy), typed_replies=True
        ),
        "report-about": _use(
            report_cards, "build_report_about_card", report_cards.AboutView(ABOUT_FIELDS, report_options)
        ),
        "report-about-again": _use(
            report_cards,
            "build_report_about_card",
            report_cards.AboutView(
                ABOUT_FIELDS,
                report_options,
                {"subject_kind": "pupil", "immediate_danger": "no", "category": "cyberbullying"},
            ),
        ),
        "report-details": _use(
            report_cards,
            "build_report_details_card",
            report_cards.DetailsView(
                DETAIL_FIELDS,
                report_options,
                "Conduct: Cyberbullying or harassment. Repeated unkind messages.",
                ["Keep the messages: do not delete them."],
                {"location": "online", "subjects": "JS, Year 6"},
            ),
        ),
        "report-details-images": _use(
            report_cards,
            "build_report_details_card",
            report_cards.DetailsView(
                DETAIL_FIELDS,
                report_options,
                "Illegal: Indecent images of a child.",
                [IMAGES_WARNING, "Secure the device."],
                labels={"evidence": "Which device are the images on, and where is that device now?"},
            ),
        ),
        "report-pick": _use(
            report_cards,
            "build_report_pick_card",
            "Which of these is it?",
            ["Alex Morgan", "Someone else: search again", "I'd rather not say"],
        ),
        "incident-my-reports": _use(
            incident_cards,
            "build_my_reports_card",
            [
                IncidentSummary(
                    42,
                    "ES-2026-0042",
                    "cyberbullying",
                    "conduct",
                    "high",
                    Status.IN_PROGRESS,
                    NOW - dt.timedelta(days=1),
                ),
                IncidentSummary(
                    40, "ES-2026-0040", "phishing", "commerce", "low", Status.CLOSED, NOW - dt.timedelta(days=9)
                ),
            ],
            {"cyberbullying": "Cyberbullying or harassment", "phishing": "Phishing"},
            TZ,
        ),
        "filter-choice": _use(
            filtering_cards,
            "build_choice_card",
            "Is it temporary or permanent?",
            [("Temporary", "temporary"), ("Permanent", "permanent")],
            "You can end it early.",
        ),
        "filter-kind": _use(filtering_cards, "build_kind_card"),
        "filter-audience": _use(filtering_cards, "build_audience_card"),
        "filter-summary": _use(
            filtering_cards,
            "build_summary_card",
            Draft(
                kind="unblock",
                url="https://www.bbc.co.uk/bitesize",
                domain="bbc.co.uk",
                audience="year_groups",
                year_groups=("Year 5", "Year 6"),
                reason="Science lesson",
                lesson_date=dt.date(2026, 11, 24),
                until=dt.datetime(2026, 11, 24, 15, 30, tzinfo=dt.UTC),
                previewed=True,
            ),
            TZ,
            False,
        ),
        "filter-approval": _use(filtering_cards, "build_approval_card", _request(), TZ, [SAM]),
        "filter-request": _use(
            filtering_cards,
            "build_request_card",
            _request("approved", approver_id=SAM, approver_name="Sam Patel", decided_at=NOW),
            TZ,
        ),
        "filter-info-request": _use(filtering_cards, "build_info_request_card", _request(), "Which lesson is it for?"),
        "filter-apply": _use(filtering_cards, "build_apply_card", _request("approved"), TZ),
        "filter-remove": _use(filtering_cards, "build_remove_card", _request("applied"), TZ),
        "filter-failure": _use(
            filtering_cards, "build_failure_card", _request("approved"), TZ, "The filter did not answer", "apply"
        ),
        "filter-log": _use(filtering_cards, "build_log_card", log, TZ),
        "aup": _use(
            aup_cards, "build_aup_card", aup_doc, link="https://esafety.example/aup/staff/3", first_name="Leah"
        ),
        "aup-acknowledged": _use(
            aup_cards, "build_acknowledged_card", aup_doc, ack, link="https://esafety.example/aup/staff/3", tz=TZ
        ),
        "aup-publish-preview": _use(
            aup_cards,
            "build_publish_preview_card",
            Preview(audience=Audience.STAFF, parsed=parsed, new_version=4, current=aup_doc, owing=20, changed=True),
        ),
        "aup-status": _use(aup_cards, "build_status_card", status, tz=TZ),
        "digest": _use(digest_cards, "build_digest_card", _figures()),
        "digest-governors": _use(digest_cards, "build_governors_card", _figures(governors=True)),
        "trust-digest": _use(trust_digest_cards, "build_trust_digest_card", _trust_view()),
        "reviews": _use(review_cards, "build_reviews_card", [review], [_review_view(policy, done=True)], TZ),
        "review": _use(review_cards, "build_review_card", review, TZ),
        "review-done": _use(
            review_cards,
            "build_review_done_card",
            _review_view(policy, done=True),
            (NOW + dt.timedelta(days=365)).date(),
            TZ,
        ),
        "review-reminder": _use(review_cards, "build_reminder_card", review, TZ),
        "review-overdue": _use(review_cards, "build_overdue_card", _review_view(policy, days_left=-3), TZ),
        "undelivered": _use(
            delivery_cards,
            "build_undelivered_card",
            [
                UndeliveredView("ES-2026-0042", "Tom Reed (deputy DSL)", "they have not opened the app yet", NOW),
                UndeliveredView(
                    "ES-2026-0042",
                    "the safeguarding channel",
                    "the app is not in the team or the channel is not set up",
                    NOW,
                ),
            ],
            TZ,
        ),
        "undelivered-none": _use(delivery_cards, "build_undelivered_card", [], TZ),
        "filtering-check": _use(
            check_cards,
            "build_filtering_check_card",
            CheckForm(
                "0" * 32,
                list(policy.filtering_check.tests),
                _check("blocked", "blocked", "blocked", "not_blocked"),
                {},
                ['Please choose a result for "Gambling".'],
            ),
            TZ,
        ),
        "filtering-check-recorded": _use(check_cards, "build_filtering_check_recorded_card", _check(), TZ, True, 0),
        "filtering-check-failed": _use(
            check_cards,
            "build_filtering_check_failed_card",
            _check("blocked", "blocked", "not_blocked", "not_blocked"),
            TZ,
        ),
    }
