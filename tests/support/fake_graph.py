"""A loopback Microsoft Graph and Entra token endpoint answering with Graph's documented response shapes.

It serves HTTPS with a throwaway self-signed certificate because azure-identity refuses an authority that is not
TLS-protected; the app trusts it through the GRAPH_CA_BUNDLE setting, so the production code path runs unchanged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import itertools
import re
import ssl
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

USER_FIELDS = ("id", "displayName", "mail", "userPrincipalName")


def make_certificate(directory: Path, *, rsa_key: bool = False) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost; returns (certificate, key) paths."""
    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if rsa_key
        else ec.generate_private_key(ec.SECP256R1())
    )
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-graph.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "fake-graph.pem", directory / "fake-graph.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@dataclass
class GraphFault:
    status: int
    times: int
    path: str | None = None  # a substring of the request path; None matches any Graph request
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # answer this late (status 0: then answer normally)


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int


class FakeGraph:
    """Users, groups, managers and Teams app installations, with paging, delta links and fault injection."""

    def __init__(self, directory: Path, *, page_size: int = 2) -> None:
        self.cert_path, self._key_path = make_certificate(directory)
        self.page_size = page_size
        self.users: dict[str, dict[str, str]] = {}
        self.groups: dict[str, list[str]] = {}
        self.managers: dict[str, str] = {}
        self.installed: dict[str, set[str]] = {}
        self.faults: list[GraphFault] = []
        self.seen: list[Seen] = []
        self.tokens_issued = 0
        self.token_requests: list[dict[str, str]] = []
        self._tokens: set[str] = set()
        self._group_log: dict[str, list[tuple[str, str]]] = {}  # group -> [(added|removed, user id)]
        self._ids = itertools.count(1)
        # School Data Sync: education users (students and teachers), classes and which users are in which class.
        self.education_users: dict[str, dict[str, Any]] = {}
        self.classes: dict[str, dict[str, Any]] = {}
        self.class_members: dict[str, list[str]] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- set-up -------------------------------------------------------------------------------------------------

    def add_user(self, user_id: str, name: str, email: str, *, manager: str | None = None) -> None:
        self.users[user_id] = {"id": user_id, "displayName": name, "mail": email, "userPrincipalName": email}
        if manager:
            self.managers[user_id] = manager

    def add_member(self, group_id: str, user_id: str) -> None:
        members = self.groups.setdefault(group_id, [])
        if user_id not in members:
            members.append(user_id)
            self._group_log.setdefault(group_id, []).append(("added", user_id))

    def remove_member(self, group_id: str, user_id: str) -> None:
        members = self.groups.setdefault(group_id, [])
        if user_id in members:
            members.remove(user_id)
            self._group_log.setdefault(group_id, []).append(("removed", user_id))

    def add_pupil(
        self,
        user_id: str,
        given: str,
        surname: str,
        *,
        birth_date: str | None = None,
        grade: str | None = None,
        external_id: str | None = None,
        student_number: str | None = None,
        classes: tuple[str, ...] = (),
        role: str = "student",
    ) -> None:
        """An educationUser as School Data Sync creates it; `role` 'teacher' makes a teacher instead."""
        self.education_users[user_id] = {
            "id": user_id,
            "displayName": f"{given} {surname}",
            "givenName": given,
            "surname": surname,
            "primaryRole": role,
            "externalSource": "sis",
            "student": {
                "birthDate": birth_date,
                "externalId": external_id,
                "gender": None,
                "grade": grade,
                "graduationYear": None,
                "studentNumber": student_number,
            }
            if role == "student"
            else None,
        }
        for class_id in classes:
            members = self.class_members.setdefault(class_id, [])
            if user_id not in members:
                members.append(user_id)

    def add_class(self, class_id: str, name: str, *, grade: str | None = None) -> None:
        self.classes[class_id] = {"id": class_id, "displayName": name, "grade": grade, "externalSource": "sis"}

    def fail_next(
        self, status: int, times: int = 1, *, path: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        """The next `times` Graph requests (whose path contains `path`, or any) answer `status`."""
        self.faults.append(GraphFault(status, times, path, headers or {}))

    def slow_next(self, seconds: float, times: int = 1, *, path: str | None = None) -> None:
        """The next `times` Graph requests (matching `path`) answer normally, but only after `seconds`."""
        self.faults.append(GraphFault(0, times, path, {}, seconds))

    def requests_to(self, fragment: str, method: str | None = None) -> list[Seen]:
        return [s for s in self.seen if fragment in s.path and (method is None or s.method == method)]

    # --- server -------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_get("/v1.0/users", self._list_users)
        app.router.add_get("/v1.0/users/{uid}", self._get_user)
        app.router.add_post("/v1.0/users/{uid}/checkMemberGroups", self._check_member_groups)
        app.router.add_get("/v1.0/users/{uid}/transitiveMemberOf", self._transitive_member_of)
        app.router.add_get("/v1.0/users/{uid}/manager", self._manager)
        app.router.add_post("/v1.0/users/{uid}/teamwork/installedApps", self._install_app)
        app.router.add_get("/v1.0/groups/delta", self._group_delta)
        app.router.add_get("/v1.0/education/users", self._education_users)
        app.router.add_get("/v1.0/education/users/{uid}", self._education_user)
        app.router.add_get("/v1.0/education/users/{uid}/classes", self._education_user_classes)
        app.router.add_get("/v1.0/groups/delta()", self._group_delta)
        app.router.add_get("/v1.0/groups/{gid}/transitiveMembers", self._transitive_members)
        app.router.add_get("/v1.0/groups/{gid}/transitiveMembers/microsoft.graph.user", self._transitive_members)
        app.router.add_get("/v1.0/groups/{gid}/transitiveMembers/graph.user", self._transitive_members)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_path, self._key_path)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001
        self.url = f"https://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1.0"

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body: Any = None
        if request.can_read_body:
            text = await request.text()
            body = text
            if "json" in (request.content_type or ""):
                try:
                    body = await request.json()
                except ValueError:
                    body = text
        is_graph = request.path.startswith("/v1.0/")
        response = await self._answer(request, handler, is_graph)
        self.seen.append(Seen(request.method, request.path, dict(request.query), body, response.status))
        return response

    async def _answer(self, request: web.Request, handler: Any, is_graph: bool) -> web.StreamResponse:
        if not is_graph:
            return await handler(request)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self._tokens:
            return _error(401, "InvalidAuthenticationToken", "Access token is empty or not valid.")
        for fault in self.faults:
            if fault.times > 0 and (fault.path is None or fault.path in request.path):
                fault.times -= 1
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if not fault.status:
                    break
                code = "TooManyRequests" if fault.status == 429 else "ServiceUnavailable"
                return _error(fault.status, code, "Injected fault.", fault.headers)
        return await handler(request)

    # --- token endpoint -----------------------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.token_requests.append({k: str(v) for k, v in form.items()})
        if form.get("grant_type") != "client_credentials" or not form.get("client_id"):
            return web.json_response({"error": "invalid_request", "error_description": "bad grant"}, status=400)
        token = f"fake-{uuid.uuid4().hex}"
        self._tokens.add(token)
        self.tokens_issued += 1
        return web.json_response(
            {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}
        )

    # --- users --------------------------------------------------------------------------------------------------

    def _user_json(self, user_id: str, request: web.Request) -> dict[str, Any]:
        user = self.users[user_id]
        wanted = _select(request) or list(USER_FIELDS)
        return {"@odata.type": "#microsoft.graph.user", **{k: user.get(k) for k in wanted if k in user}}

    async def _get_user(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        if uid not in self.users:
            return _not_found(uid)
        return web.json_response(
            {"@odata.context": f"{self.base_url}/$metadata#users/$entity", **self._user_json(uid, request)}
        )

    async def _list_users(self, request: web.Request) -> web.Response:
        wanted = _filter_values(request.query.get("$filter", ""))
        if wanted is None:
            return _error(400, "Request_UnsupportedQuery", "Unsupported query.")
        ids = [uid for uid, u in self.users.items() if any(u[f].lower() == v.lower() for f, v in wanted if f in u)]
        return web.json_response(
            {
                "@odata.context": f"{self.base_url}/$metadata#users",
                "value": [self._user_json(uid, request) for uid in ids],
            }
        )

    async def _check_member_groups(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        if uid not in self.users:
            return _not_found(uid)
        body = await request.json()
        asked = body.get("groupIds") or []
        if len(asked) > 20:
            return _error(400, "Request_BadRequest", "At most 20 groups can be checked.")
        found = [g for g in asked if uid in self.groups.get(g, [])]
        return web.json_response(
            {"@odata.context": f"{self.base_url}/$metadata#Collection(Edm.String)", "value": found}
        )

    async def _transitive_member_of(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        if uid not in self.users:
            return _not_found(uid)
        groups = [{"@odata.type": "#microsoft.graph.group", "id": g} for g, m in self.groups.items() if uid in m]
        return web.json_response({"@odata.context": f"{self.base_url}/$metadata#directoryObjects", "value": groups})

    async def _manager(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        manager = self.managers.get(uid)
        if uid not in self.users or manager not in self.users:
            return _error(
                404,
                "Request_ResourceNotFound",
                "Resource 'manager' does not exist or one of its queried reference-property objects are not present.",
            )
        return web.json_response(
            {
                "@odata.context": f"{self.base_url}/$metadata#directoryObjects/$entity",
                **self._user_json(manager, request),
            }
        )

    # --- groups -------------------------------------------------------------------------------------------------

    async def _transitive_members(self, request: web.Request) -> web.Response:
        gid = request.match_info["gid"]
        if gid not in self.groups:
            return _not_found(gid)
        members = [m for m in self.groups[gid] if m in self.users]
        start = int(request.query.get("$skiptoken", "0"))
        page = members[start : start + self.page_size]
        body: dict[str, Any] = {
            "@odata.context": f"{self.base_url}/$metadata#users",
            "value": [self._user_json(m, request) for m in page],
        }
        if start + self.page_size < len(members):
            query = {k: v for k, v in request.query.items() if k != "$skiptoken"}
            query["$skiptoken"] = str(start + self.page_size)
            body["@odata.nextLink"] = str(request.url.with_query(query))
        return web.json_response(body)

    async def _group_delta(self, request: web.Request) -> web.Response:
        """GET /groups/delta?$filter=id eq '{id}'&$select=members, then the @odata.deltaLink it returned."""
        token = request.query.get("$deltatoken")
        if token:
            gid, _, position = token.partition(".")
            changes = self._group_log.get(gid, [])[int(position) :]
            members = [_member_delta(uid, kind == "removed") for kind, uid in changes]
        else:
            wanted = _filter_values(request.query.get("$filter", ""))
            if not wanted or wanted[0][0] != "id":
                return _error(400, "Request_UnsupportedQuery", "Unsupported query.")
            gid = wanted[0][1]
            if gid not in self.groups:
                return _not_found(gid)
            members = [_member_delta(uid, False) for uid in self.groups[gid]]
        next_token = f"{gid}.{len(self._group_log.get(gid, []))}"
        delta_link = str(request.url.with_query({"$deltatoken": next_token}))
        value = [{"@odata.type": "#microsoft.graph.group", "id": gid, "members@delta": members}] if members else []
        return web.json_response(
            {
                "@odata.context": f"{self.base_url}/$metadata#groups(members)",
                "@odata.deltaLink": delta_link,
                "value": value,
            }
        )

    # --- School Data Sync (education) ------------------------------------------------------------------------

    def _education_json(self, user_id: str, request: web.Request) -> dict[str, Any]:
        user = self.education_users[user_id]
        wanted = _select(request)
        return {k: v for k, v in user.items() if not wanted or k in wanted}

    async def _education_users(self, request: web.Request) -> web.Response:
        """GET /education/users?$filter=startswith(displayName,'x') or ... (case-insensitive, as Graph is)."""
        expression = request.query.get("$filter", "")
        clauses = _education_filter(expression) if expression else []
        if clauses is None:
            return _error(400, "BadRequest", "Invalid filter clause.")

        def matches(user: dict[str, Any]) -> bool:
            for op, name, value in clauses:
                have = str(user.get(name) or "").lower()
                if (op == "eq" and have == value.lower()) or (op == "startswith" and have.startswith(value.lower())):
                    return True
            return not clauses

        top = int(request.query.get("$top", "100"))
        found = [uid for uid, user in self.education_users.items() if matches(user)][:top]
        return web.json_response(
            {
                "@odata.context": f"{self.base_url}/$metadata#education/users",
                "value": [self._education_json(uid, request) for uid in found],
            }
        )

    async def _education_user(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        if uid not in self.education_users:
            return _not_found(uid)
        return web.json_response(
            {
                "@odata.context": f"{self.base_url}/$metadata#education/users/$entity",
                **self._education_json(uid, request),
            }
        )

    async def _education_user_classes(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        if uid not in self.education_users:
            return _not_found(uid)
        wanted = _select(request)
        classes = [self.classes[c] for c, members in self.class_members.items() if uid in members and c in self.classes]
        return web.json_response(
            {
                "@odata.context": f"{self.base_url}/$metadata#education/classes",
                "value": [{k: v for k, v in c.items() if not wanted or k in wanted} for c in classes],
            }
        )

    # --- Teams app installation ---------------------------------------------------------------------------------

    async def _install_app(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        if uid not in self.users:
            return _not_found(uid)
        body = await request.json()
        bind = body.get("teamsApp@odata.bind") or ""
        match = re.search(r"/appCatalogs/teamsApps/([^/]+)$", bind)
        if not match:
            return _error(400, "BadRequest", "teamsApp@odata.bind is missing or malformed.")
        apps = self.installed.setdefault(uid, set())
        if match.group(1) in apps:
            return _error(409, "Conflict", "App is already installed for this user.")
        apps.add(match.group(1))
        return web.Response(status=201)


_STARTSWITH = re.compile(r"startswith\((\w+),\s*'((?:[^']|'')*)'\)")


def _education_filter(expression: str) -> list[tuple[str, str, str]] | None:
    """(op, field, value) for clauses `startswith(field,'v')` or `field eq 'v'` joined by `or`; None if other."""
    found = []
    for clause in (c.strip() for c in expression.split(" or ")):
        match = _STARTSWITH.fullmatch(clause)
        if match:
            found.append(("startswith", match.group(1), match.group(2).replace("''", "'")))
            continue
        match = _CLAUSE.fullmatch(clause)
        if not match:
            return None
        found.append(("eq", match.group(1), match.group(2).replace("''", "'")))
    return found


def _member_delta(user_id: str, removed: bool) -> dict[str, Any]:
    item: dict[str, Any] = {"@odata.type": "#microsoft.graph.user", "id": user_id}
    if removed:
        item["@removed"] = {"reason": "deleted"}
    return item


def _select(request: web.Request) -> list[str]:
    return [s for s in request.query.get("$select", "").split(",") if s]


_CLAUSE = re.compile(r"(\w+) eq '((?:[^']|'')*)'")


def _filter_values(expression: str) -> list[tuple[str, str]] | None:
    """The (field, value) pairs of a filter made of `field eq 'value'` clauses joined by `or`."""
    clauses = [c.strip() for c in expression.split(" or ")]
    found = []
    for clause in clauses:
        match = _CLAUSE.fullmatch(clause)
        if not match:
            return None
        found.append((match.group(1), match.group(2).replace("''", "'")))
    return found


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {"date": "2026-11-23T10:00:00", "request-id": str(uuid.uuid4())},
        }
    }
    return web.json_response(body, status=status, headers=headers)


def _not_found(object_id: str) -> web.Response:
    return _error(
        404,
        "Request_ResourceNotFound",
        f"Resource '{object_id}' does not exist or one of its queried reference-property objects are not present.",
    )
