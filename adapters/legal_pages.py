"""The privacy notice and terms of use that the Teams app's details link to: /privacy and /terms, and one of each
per school at /privacy/<school> and /terms/<school>; and / (the app's website link), which points to them.

Teams shows these links to anyone, before sign-in, so they answer without a token and hold nothing but what the
configuration already makes public: who the data controller is, and the app's own retention schedule (read from
the policy, so the page and the daily sweep can never disagree). Every value from the configuration is
HTML-escaped: a school's name is typed by a person, and this page is public.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.config import AppConfig, DataController, SchoolConfig
from bot.policy import RetentionPolicy
from bot.retention import INBOUND_NOTE, schedule_lines

HEADERS = {
    # No script runs here; the only style is the page's own inline sheet.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.5}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.4rem;text-align:left;vertical-align:top}"
    "address{font-style:normal}footer{color:#555;font-size:.9rem;margin-top:2rem}"
)

# What the app holds and why, in plain words (the same for every school; the retention periods come from policy).
HOLDINGS = (
    (
        "Your Teams account: name, email address, Microsoft Entra account id and your roles at the school.",
        "To send each report and alert to the people whose role it is, and to show each person only what their role "
        "allows.",
    ),
    (
        "Online-safety concerns: what happened, when and where, who it is about, what was seen (links and device "
        "details, never images), the actions taken, any referral to another agency, and the outcome.",
        "To keep children and staff safe, as the school's safeguarding duties require, and to keep a full record of "
        "what was done.",
    ),
    (
        "Children's records that the safeguarding team links to concerns: name, year group, date of birth, and the "
        "pupil number where the school uses one.",
        "So that every concern about one child reads as one history.",
    ),
    (
        "Website filtering requests and the change log: who asked, for which site, why, and who approved and applied "
        "the change.",
        "Filtering must be managed with two people involved and reviewed by leaders and governors.",
    ),
    (
        "Acceptable use policy agreements: who agreed to which version, and when, with a fingerprint of the exact "
        "text shown.",
        "To show that everyone agreed to the rules in force.",
    ),
    (
        "An audit trail: which account did what to which record, and when (no names and no case text).",
        "To prove that no record was changed or read without trace.",
    ),
    (
        "Messages the bot sent, and reports you started but did not finish.",
        "To make sure alerts arrive, and to let you finish a report where you left off.",
    ),
)
LAWFUL_BASIS = (
    "Public task and legal obligation (UK GDPR Article 6(1)(e) and 6(1)(c)): schools must safeguard and promote the "
    "welfare of children (Education Act 2002, section 175 or section 157, and the statutory guidance Keeping "
    "Children Safe in Education), which includes filtering and monitoring their networks and keeping records of "
    "concerns.",
    "Where a concern includes health, sexual or criminal information, the condition is the safeguarding of children "
    "and of individuals at risk (UK GDPR Article 9(2)(g) and Data Protection Act 2018, Schedule 1, paragraph 18).",
)


@dataclass(frozen=True)
class _Controlled:
    """One data controller and the schools it answers for."""

    controller: DataController
    schools: tuple[str, ...]


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def controllers(config: AppConfig, schools: list[SchoolConfig]) -> tuple[list[_Controlled], list[str]]:
    """Each controller with the schools it covers, and the schools that name none (neither their own nor a trust's)."""
    found: dict[DataController, list[str]] = {}
    missing: list[str] = []
    for school in schools:
        controller = school.data_controller or config.data_controller
        if controller is None:
            missing.append(school.name)
        else:
            found.setdefault(controller, []).append(school.name)
    return [_Controlled(c, tuple(names)) for c, names in found.items()], missing


def _controller_html(entry: _Controlled, *, name_schools: bool) -> str:
    c = entry.controller
    lines = [f"<h3>{_e(c.name)}</h3>", "<address>" + "<br>".join(_e(part) for part in c.address.splitlines())]
    lines.append(f'<br>Email: <a href="mailto:{_e(c.email)}">{_e(c.email)}</a>')
    if c.phone:
        lines.append(f"<br>Telephone: {_e(c.phone)}")
    lines.append("</address>")
    if c.dpo_email:
        lines.append(f'<p>Data protection officer: <a href="mailto:{_e(c.dpo_email)}">{_e(c.dpo_email)}</a></p>')
    if c.ico_registration:
        lines.append(f"<p>Registered with the Information Commissioner's Office: {_e(c.ico_registration)}</p>")
    if name_schools:
        lines.append("<p>Responsible for: " + ", ".join(_e(name) for name in entry.schools) + "</p>")
    return "\n".join(lines)


def _who_html(config: AppConfig, schools: list[SchoolConfig]) -> str:
    found, missing = controllers(config, schools)
    several = len(schools) > 1
    parts = [_controller_html(entry, name_schools=several) for entry in found]
    if missing:
        parts.append(
            "<p>"
            + ", ".join(_e(name) for name in missing)
            + (" has" if len(missing) == 1 else " have")
            + " not yet added its data controller's details here. Ask the school office who to contact.</p>"
        )
    return "\n".join(parts)


def _page(title: str, body: list[str], other: tuple[str, str]) -> str:
    href, label = other
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en-GB"><head><meta charset="utf-8">',
            f"<title>{title}</title>",
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<style>{STYLE}</style></head><body>",
            f"<h1>{title}</h1>",
            *body,
            f'<footer><a href="{_e(href)}">{label}</a></footer>',
            "</body></html>",
        ]
    )


def privacy_html(config: AppConfig, retention: RetentionPolicy, school: SchoolConfig | None = None) -> str:
    """The privacy notice for one school, or for the whole deployment when school is None."""
    schools = [school] if school else config.schools
    where = f" at {_e(school.name)}" if school else ""
    body = [
        f"<p>eSafety{where} is a Microsoft Teams app that helps staff, governors and volunteers follow the school's "
        "online-safety policy: reporting concerns to the safeguarding team, handling them, asking for website "
        "filtering changes, agreeing to the acceptable use policy, and reminders for policy reviews.</p>",
        "<h2>Who is responsible for your information</h2>",
        _who_html(config, schools),
        "<h2>What the app holds, and why</h2>",
        "<table><tr><th>Information</th><th>Why</th></tr>",
        *(f"<tr><td>{what}</td><td>{why}</td></tr>" for what, why in HOLDINGS),
        "</table>",
        "<h2>The law that allows it</h2>",
        "<ul>" + "".join(f"<li>{line}</li>" for line in LAWFUL_BASIS) + "</ul>",
        "<h2>How long it is kept</h2>",
        "<p>A daily check deletes or anonymises each record when its time comes. Anonymising removes every name, "
        "account, typed word and link to a child, and keeps only dates, types and outcomes for the figures leaders "
        "see. A record under a legal hold is kept until the hold ends.</p>",
        "<table><tr><th>Record</th><th>What happens</th></tr>",
        *(f"<tr><td>{_e(label)}</td><td>{_e(words)}</td></tr>" for label, words in schedule_lines(retention)),
        "</table>",
        f"<p>{_e(INBOUND_NOTE)}</p>",
        "<h2>Who can see it</h2>",
        "<p>Only people whose role needs it. Concerns about pupils go to the safeguarding team; concerns about a "
        "member of staff go to the Headteacher; concerns about the Headteacher go to the Chair of Governors. Leaders "
        "and governors see figures without names. The sensitive parts of every record are encrypted in the database. "
        "Information is shared with other agencies, such as the police or children's social care, only when keeping "
        "someone safe requires it.</p>",
        "<h2>Where it is kept</h2>",
        "<p>In the controller's own database. Messages reach you through Microsoft Teams, which Microsoft runs for the "
        "school. The app shows no advertising, sets no cookies and does not track you.</p>",
        "<h2>Your rights</h2>",
        "<p>You can ask to see the information held about you, and ask for it to be corrected, deleted or used less. "
        "Some safeguarding records must be kept even if you ask for them to be deleted; the controller will tell you "
        "if that applies. Contact the controller above. If you are unhappy with their answer, you can complain to "
        "the Information Commissioner's Office: ico.org.uk, telephone 0303 123 1113.</p>",
    ]
    terms = f"../terms/{school.id}" if school else "terms"
    return _page(f"Privacy notice: eSafety{where}", body, (terms, "Terms of use"))


def terms_html(config: AppConfig, school: SchoolConfig | None = None) -> str:
    """The terms of use for one school, or for the whole deployment when school is None."""
    schools = [school] if school else config.schools
    where = f" at {_e(school.name)}" if school else ""
    body = [
        "<h2>Who provides the app</h2>",
        _who_html(config, schools),
        "<h2>Who may use it</h2>",
        "<p>Staff, governors and volunteers of the school, signed in with the account the school gave them.</p>",
        "<h2>What it is not for</h2>",
        "<ul><li>It is not an emergency service. If a child is in immediate danger, call 999, then tell the "
        "designated safeguarding lead in person.</li>"
        "<li>Never look for, copy, save or forward indecent images of children, not even to report them. Say where "
        "you saw them instead.</li></ul>",
        "<h2>Your part</h2>",
        "<p>Use the app as the school's acceptable use policy sets out. Report what you saw honestly and promptly. "
        "Keep what you learn about a case to yourself and the people handling it.</p>",
        "<h2>If something goes wrong</h2>",
        "<p>The school aims to keep the app running but cannot promise that it always will. If the app tells you "
        "that an alert could not reach anyone, go to the designated safeguarding lead in person.</p>",
        "<h2>Changes</h2>",
        "<p>The school may change these terms; the version at this address is the one in force. They are governed "
        "by the law of the part of the United Kingdom where the school is.</p>",
    ]
    privacy = f"../privacy/{school.id}" if school else "privacy"
    return _page(f"Terms of use: eSafety{where}", body, (privacy, "Privacy notice"))


def home_html() -> str:
    """The app's website link in Teams: what it is, and where the notices are (the app itself lives in Teams)."""
    body = [
        "<p>eSafety is a Microsoft Teams app that helps a school follow its online-safety policy. It works inside "
        "Teams: open it there with your school account. There is nothing to sign in to on this page.</p>",
        '<p><a href="privacy">Privacy notice</a></p>',
    ]
    return _page("eSafety", body, ("terms", "Terms of use"))


def _respond(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html", charset="utf-8", headers=HEADERS)


NOT_FOUND = "There is no school with that name here. The page for every school is at /privacy and /terms."


def add_legal_routes(app: web.Application, parts: Any) -> None:
    """Mount /, /privacy and /terms (and one of each per school); rendered once, since config and policy are fixed."""
    config: AppConfig = parts.config
    retention: RetentionPolicy = parts.policy.retention
    privacy = {school.id: privacy_html(config, retention, school) for school in config.schools}
    terms = {school.id: terms_html(config, school) for school in config.schools}
    everyone = (privacy_html(config, retention), terms_html(config))
    home = home_html()

    async def home_page(request: web.Request) -> web.Response:
        return _respond(home)

    async def privacy_page(request: web.Request) -> web.Response:
        school = request.match_info.get("school")
        if school is None:
            return _respond(everyone[0])
        return _respond(privacy[school]) if school in privacy else web.Response(status=404, text=NOT_FOUND)

    async def terms_page(request: web.Request) -> web.Response:
        school = request.match_info.get("school")
        if school is None:
            return _respond(everyone[1])
        return _respond(terms[school]) if school in terms else web.Response(status=404, text=NOT_FOUND)

    app.router.add_get("/", home_page)  # the app's website link in Teams
    app.router.add_get("/privacy", privacy_page)
    app.router.add_get("/privacy/{school}", privacy_page)
    app.router.add_get("/terms", terms_page)
    app.router.add_get("/terms/{school}", terms_page)
