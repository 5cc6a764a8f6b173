"""The safeguarding desk as a Teams personal tab: a static page, and a JSON API that answers only a valid SSO token.

The page itself holds no data, so it needs no token; every /tab/api/ route checks the token (401), then that the
person may use the desk (403, empty), then the query (400, a kind message), and reads through the same services as
the chat: the one access rule, and the audit of every read, live there.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from aiohttp import web

from adapters.tab_auth import NotSignedIn, OpenIdKeys, SignInUnavailable, TabAuth
from bot.actor import Actor, Refused
from bot.case_record import case_record_json, child_file_json
from bot.desk import VIEWS, CaseFilter, CasePage
from bot.incidents import SEVERITY_LABELS
from bot.wiring import Features

log = logging.getLogger("esafety.tab")

ROOT = Path(__file__).resolve().parents[1]
STATIC = Path(__file__).resolve().parent / "tab_static"
TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # opaque case and child tokens; anything else cannot be one
MAX_PAGE = 10_000
SEARCH_MIN, SEARCH_MAX = 2, 80

FRAME_ANCESTORS = "'self' https://teams.microsoft.com https://*.teams.microsoft.com https://*.office.com"
SECURITY_HEADERS = {
    "Content-Security-Policy": f"default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    f"frame-ancestors {FRAME_ANCESTORS}",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
STATIC_FILES = {"desk.js": "application/javascript", "desk.css": "text/css"}


@dataclass
class _Tab:
    parts: Any  # app.Components; typed loosely so this module does not import the composition root
    auth: TabAuth
    teams_js: Path


TAB = web.AppKey("esafety_tab", _Tab)


def add_tab_routes(app: web.Application, parts: Any) -> None:
    """Mount the tab on the app; its HTTP client for Entra's metadata closes with the app."""
    settings = parts.settings
    keys = OpenIdKeys(
        settings.tab_openid_metadata, timeout=settings.tab_timeout_seconds, ca_bundle=settings.tab_ca_bundle
    )
    auth = TabAuth(
        keys, audiences=settings.tab_audiences, scope=settings.tab_scope, config=parts.config, directory=parts.directory
    )
    teams_js = settings.tab_teams_js if settings.tab_teams_js.is_absolute() else ROOT / settings.tab_teams_js
    if not teams_js.exists():
        log.warning(
            "the desk tab cannot sign anyone in from Teams: %s is missing (run scripts/system-deps.sh)", teams_js
        )
    if not settings.tab_audiences:
        log.warning("the desk tab will sign nobody in: set MicrosoftAppId (or ESAFETY_TAB_AUDIENCE)")
    app[TAB] = _Tab(parts=parts, auth=auth, teams_js=teams_js)

    async def close(_app: web.Application) -> None:
        await auth.close()

    app.on_cleanup.append(close)
    app.router.add_get("/tab", _page)
    app.router.add_get("/tab/static/{name}", _static)
    app.router.add_get("/tab/api/cases", _cases)
    app.router.add_get("/tab/api/cases/{token}", _case)
    app.router.add_get("/tab/api/children", _search)
    app.router.add_get("/tab/api/children/{token}", _child)
    app.router.add_get("/tab/api/export/{kind}/{token}", _export)


# --- the page -----------------------------------------------------------------------------------------------------


async def _page(_request: web.Request) -> web.StreamResponse:
    return _secured(web.FileResponse(STATIC / "index.html", headers={"Content-Type": "text/html; charset=utf-8"}))


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name == "teams.js":
        path, media = request.app[TAB].teams_js, "application/javascript"
    elif name in STATIC_FILES:
        path, media = STATIC / name, STATIC_FILES[name]
    else:
        return _secured(web.Response(status=404, text="There is no such file."))
    if not path.exists():
        return _secured(web.Response(status=404, text="There is no such file."))
    return _secured(
        web.FileResponse(path, headers={"Content-Type": f"{media}; charset=utf-8", "Cache-Control": "no-cache"})
    )


Secured = TypeVar("Secured", bound=web.StreamResponse)


def _secured(response: Secured) -> Secured:
    response.headers.update(SECURITY_HEADERS)
    return response


# --- the API ------------------------------------------------------------------------------------------------------


class _Answer(Exception):  # noqa: N818 - a finished response, raised out of the checks
    def __init__(self, response: web.Response) -> None:
        self.response = response


def _json(body: Any, status: int = 200) -> web.Response:
    response = web.json_response(body, status=status, headers=NO_STORE)
    _secured(response)
    return response


def _error(status: int, message: str) -> _Answer:
    return _Answer(_json({"error": message}, status))


async def _desk_user(request: web.Request) -> tuple[Actor, Features]:
    """The signed-in person who may use the desk, and the services; or the 401/403/503 to answer instead."""
    tab = request.app[TAB]
    try:
        actor = await tab.auth.actor(request.headers.get("Authorization"))
    except NotSignedIn as reason:
        log.info("tab request refused: %s", reason)
        response = _json({"error": "Please open the safeguarding desk in Teams to sign in."}, 401)
        response.headers["WWW-Authenticate"] = "Bearer"
        raise _Answer(response) from None
    except SignInUnavailable:
        raise _error(503, "Sign-in cannot be checked just now. Please try again in a minute.") from None
    features: Features = tab.parts.features
    desk = features.desk
    if desk is None:
        raise _error(503, "The safeguarding desk is not available just now.")
    if not desk.may_use_desk(actor.person):
        raise _Answer(_secured(web.Response(status=403, headers=NO_STORE)))  # nothing at all about any case
    return actor, features


T = TypeVar("T")


def _service(service: T | None) -> T:
    if service is None:
        raise _error(503, "That part of the desk is not available just now.")
    return service


def _token(request: web.Request, what: str) -> str:
    token = request.match_info["token"]
    if not TOKEN.match(token):
        raise _error(404, f"There is no such {what}, or you can't open it.")
    return token


def _api(handler):  # noqa: ANN001, ANN202 - a small decorator for the routes below
    async def run(request: web.Request) -> web.StreamResponse:
        try:
            actor, features = await _desk_user(request)
            return await handler(request, actor, features)
        except _Answer as answer:
            return answer.response
        except Refused as refused:
            return _json({"error": refused.message}, 403)

    return run


@_api
async def _cases(request: web.Request, actor: Actor, features: Features) -> web.Response:
    chosen = _case_filter(request, request.app[TAB].parts.policy)
    page: CasePage = await _service(features.desk).caseload(actor, chosen)
    return _json(_page_json(page))


def _case_filter(request: web.Request, policy: Any) -> CaseFilter:
    query = request.query
    view = query.get("view", "open")
    if view not in VIEWS:
        raise _error(400, f"There is no view called {view[:40]!r}. Choose one of: {', '.join(VIEWS)}.")
    group = query.get("group") or None
    groups = {g.key for g in policy.category_groups}
    if group is not None and group not in groups:
        raise _error(400, f"There is no category group called {group[:40]!r}. Choose one from the list.")
    raw_page = query.get("page", "1")
    if not raw_page.isdigit() or not 1 <= int(raw_page) <= MAX_PAGE:
        raise _error(400, "The page must be a whole number from 1.")
    return CaseFilter(view=view, group=group, page=int(raw_page))


def _page_json(page: CasePage) -> dict[str, Any]:
    return {
        "filter": {"view": page.filter.view, "group": page.filter.group, "page": page.filter.page},
        "total": page.total,
        "pages": page.pages,
        "views": [{"key": key, "label": label} for key, label in VIEWS.items()],
        "groups": [{"key": key, "label": label} for key, label in page.groups],
        "rows": [
            {
                "token": row.token,
                "reference": row.reference,
                "category": row.category,
                "group": row.group,
                "severity": SEVERITY_LABELS.get(row.severity, row.severity),
                "status": row.status,
                "reported_at": row.reported_at.isoformat(),
                "owner": row.owner,
                "urgent": row.urgent,
                "overdue": row.overdue,
                "undelivered": row.undelivered,
            }
            for row in page.rows
        ],
    }


@_api
async def _case(request: web.Request, actor: Actor, features: Features) -> web.Response:
    token = _token(request, "case")
    record = await _service(features.incidents).record_for(actor, token=token, path="tab")
    if record is None:  # refused (and audited) or unknown: the same answer, so tokens cannot be probed
        raise _error(404, "There is no such case, or you can't open it.")
    return _json(case_record_json(record))


@_api
async def _search(request: web.Request, actor: Actor, features: Features) -> web.Response:
    query = " ".join(request.query.get("q", "").split())
    if len(query) < SEARCH_MIN:
        raise _error(400, f"Type at least {SEARCH_MIN} letters of the child's name.")
    if len(query) > SEARCH_MAX:
        raise _error(400, f"That is too long for a name: use up to {SEARCH_MAX} characters.")
    matches = await _service(features.children).search(actor, query)
    return _json(
        {
            "query": query,
            "children": [
                {
                    "token": m.token,
                    "name": m.name,
                    "year_group": m.year_group,
                    "date_of_birth": m.date_of_birth.isoformat() if m.date_of_birth else None,
                }
                for m in matches
                if m.token
            ],
        }
    )  # only existing records have a file; directory pupils are linked from a case


@_api
async def _child(request: web.Request, actor: Actor, features: Features) -> web.Response:
    token = _token(request, "child")
    file = await _service(features.children).file(actor, token)
    if file is None:
        raise _error(404, "There is no such child, or you can't open their file.")
    return _json(child_file_json(file))


@_api
async def _export(request: web.Request, actor: Actor, features: Features) -> web.Response:
    kind = request.match_info["kind"]
    if kind not in ("case", "child"):
        raise _error(404, "You can export a case or a child's file.")
    fmt = request.query.get("format", "pdf")
    if fmt not in ("pdf", "json"):
        raise _error(400, "Choose PDF or JSON for the export.")
    token = _token(request, "case" if kind == "case" else "child")
    exported = await _service(features.exports).render(actor, kind, token, fmt)
    if exported is None:
        raise _error(404, "There is nothing to export there, or you can't export it.")
    response = web.Response(
        body=exported.body,
        headers={**NO_STORE, "Content-Type": exported.media_type, "Content-Disposition": _attachment(exported.name)},
    )
    _secured(response)
    return response


def _attachment(name: str) -> str:
    plain = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:120] or "export"
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(name[:120], safe='')}"
