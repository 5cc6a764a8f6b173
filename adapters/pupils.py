"""Pupils from the school's directory: the static list in the config, or School Data Sync via Graph's education API.

The Graph version goes through the same GraphDirectory as staff lookups: one client per tenant, one token cache,
the same Retry-After gate and the same per-turn time budget (GRAPH_TIMEOUT_SECONDS), so a slow or throttled Graph
costs a search no more than a role lookup, and never more than that budget.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphServiceClient
from msgraph.generated.education.users.item.classes.classes_request_builder import ClassesRequestBuilder
from msgraph.generated.education.users.item.education_user_item_request_builder import (
    EducationUserItemRequestBuilder,
)
from msgraph.generated.education.users.users_request_builder import UsersRequestBuilder

from adapters.graph_directory import GraphDirectory, GraphRefused, GraphUnavailable
from bot.children import Pupil, PupilsUnavailable, name_matches, query_words
from bot.config import AppConfig
from bot.protocols import Directory, PupilDirectory
from bot.wiring import Wiring

log = logging.getLogger(__name__)

MAX_RESULTS = 8
EDUCATION_SELECT = ["id", "displayName", "givenName", "surname", "primaryRole", "student", "externalSource"]
CLASS_SELECT = ["id", "displayName", "grade"]


class StaticPupils:
    """Pupils listed under `pupils:` in the school configuration."""

    def __init__(self, config: AppConfig) -> None:
        self._pupils = {
            school.id: [
                Pupil(
                    id=p.id,
                    name=p.name,
                    year_group=p.year_group,
                    date_of_birth=p.date_of_birth,
                    upn=p.upn,
                    mis_id=p.mis_id,
                    classes=tuple(p.classes),
                )
                for p in school.pupils
            ]
            for school in config.schools
        }

    async def search_pupils(self, school_id: str, query: str) -> list[Pupil]:
        words = query_words(query)
        found = [p for p in self._pupils.get(school_id, []) if name_matches(words, p.name)]
        return sorted(found, key=lambda p: (p.name.casefold(), p.id))[:MAX_RESULTS]

    async def pupil(self, school_id: str, pupil_id: str) -> Pupil | None:
        return next((p for p in self._pupils.get(school_id, []) if p.id == pupil_id), None)


def _quote(value: str) -> str:
    return value.replace("'", "''")


def _pupil(user: Any, classes: tuple[str, ...] = ()) -> Pupil:
    student = getattr(user, "student", None)
    name = user.display_name or " ".join(p for p in (user.given_name, user.surname) if p) or user.id
    grade = getattr(student, "grade", None) if student else None
    return Pupil(
        id=user.id,
        name=name,
        year_group=grade or (classes[0] if classes else None),
        date_of_birth=getattr(student, "birth_date", None) if student else None,
        # SDS has no UPN field; UK schools commonly sync it as the student number, so it is offered as one and
        # kept only when it has a UPN's shape (bot.children.from_pupil).
        upn=getattr(student, "student_number", None) if student else None,
        mis_id=getattr(student, "external_id", None) if student else None,
        classes=classes,
    )


def _is_student(user: Any) -> bool:
    role = getattr(user, "primary_role", None)
    return str(getattr(role, "value", role) or "").lower() == "student"


class GraphPupils:
    """Students from School Data Sync: GET /education/users (filtered by name) and each one's classes."""

    def __init__(self, graph: GraphDirectory) -> None:
        self._graph = graph

    async def search_pupils(self, school_id: str, query: str) -> list[Pupil]:
        words = query_words(query)
        school = self._graph._config.school(school_id)  # noqa: SLF001 - the same config the directory serves
        if school is None or not words:
            return []
        # Graph filters on one word (the longest narrows most); the rest are checked here, as for local records.
        word = _quote(max(words, key=len))
        name_filter = (
            f"startswith(displayName,'{word}') or startswith(givenName,'{word}') or startswith(surname,'{word}')"
        )

        async def fetch(client: GraphServiceClient) -> list[Any]:
            params = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
                filter=name_filter, select=EDUCATION_SELECT, top=25
            )
            page = await client.education.users.get(request_configuration=RequestConfiguration(query_parameters=params))
            users = [u for u in (page.value if page else None) or [] if u.id and _is_student(u)]
            return [u for u in users if name_matches(words, u.display_name or "")][:MAX_RESULTS]

        users = await self._ask(school, "pupil search", fetch)
        classes = await asyncio.gather(*(self._classes(school, u.id) for u in users))
        return [_pupil(u, c) for u, c in zip(users, classes, strict=True)]

    async def pupil(self, school_id: str, pupil_id: str) -> Pupil | None:
        school = self._graph._config.school(school_id)  # noqa: SLF001
        if school is None or not pupil_id:
            return None

        async def fetch(client: GraphServiceClient) -> Any:
            params = EducationUserItemRequestBuilder.EducationUserItemRequestBuilderGetQueryParameters(
                select=EDUCATION_SELECT
            )
            try:
                return await client.education.users.by_education_user_id(pupil_id).get(
                    request_configuration=RequestConfiguration(query_parameters=params)
                )
            except APIError as refused:
                if refused.response_status_code == 404:
                    return None
                raise

        user = await self._ask(school, "pupil", fetch)
        if user is None or not user.id or not _is_student(user):
            return None
        return _pupil(user, await self._classes(school, user.id))

    async def _classes(self, school: Any, user_id: str) -> tuple[str, ...]:
        """The pupil's class names, to tell two pupils of the same name apart; none if Graph cannot say."""

        async def fetch(client: GraphServiceClient) -> tuple[str, ...]:
            params = ClassesRequestBuilder.ClassesRequestBuilderGetQueryParameters(select=CLASS_SELECT)
            page = await client.education.users.by_education_user_id(user_id).classes.get(
                request_configuration=RequestConfiguration(query_parameters=params)
            )
            return tuple(c.display_name for c in (page.value if page else None) or [] if c.display_name)

        try:
            return await self._ask(school, "pupil classes", fetch)
        except PupilsUnavailable:
            return ()

    async def _ask(self, school: Any, what: str, fetch: Any) -> Any:
        # GraphDirectory._call owns the client, the tenant's throttling gate, retries and the time budget.
        try:
            return await self._graph._call(school, what, fetch)  # noqa: SLF001
        except GraphUnavailable as exc:
            log.warning("Graph could not answer a %s in %s: %s", what, school.id, exc.reason)
            raise PupilsUnavailable(exc.reason) from exc
        except GraphRefused as exc:
            # 403: the app has no EduRoster permission, or the school does not use School Data Sync.
            log.warning(
                "Graph refused a %s in %s (%s); is EduRoster.Read.All granted and SDS in use?",
                what,
                school.id,
                exc.status,
            )
            raise PupilsUnavailable(f"Graph refused ({exc.status})") from exc


def pupil_directory(config: AppConfig, directory: Directory) -> PupilDirectory:
    """School Data Sync where staff come from Graph; otherwise the static list in the configuration."""
    if isinstance(directory, GraphDirectory):
        return GraphPupils(directory)
    return StaticPupils(config)


def install(wiring: Wiring) -> None:
    """A feature step for app._features(), before dialogs.children.install: provides wiring.features.pupils."""
    wiring.features.pupils = pupil_directory(wiring.config, wiring.directory)
