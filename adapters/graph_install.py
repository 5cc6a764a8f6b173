"""Reaching people through Microsoft Graph: install the app for someone who never opened it, then start the 1:1 chat;
and the scheduled delta query that notices new members of the staff group.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import aiohttp
from botbuilder.schema import ChannelAccount, ConversationParameters, ErrorResponseException
from msrest.exceptions import ClientRequestError

from adapters.connector import ProactiveSender
from adapters.graph_directory import GraphDirectory, GraphRefused, GraphUnavailable
from adapters.outbox import tenant_route
from bot.config import AppConfig
from bot.people import Person, Role
from bot.protocols import Clock, UnitOfWorkFactory
from bot.settings import Settings
from bot.wiring import NewStaffListener, Wiring
from bot.work import GiveUp, RetryLater, WorkItem
from storage.repos import ConversationRefs, SavedReference

log = logging.getLogger(__name__)

STAFF_DELTA_KIND = "graph.staff_delta"
RETRYABLE = {408, 412, 429, 500, 502, 503, 504}


class GraphInstaller:
    """Installs the Teams app for a user with Graph, then creates the 1:1 conversation through the Bot Connector."""

    def __init__(
        self,
        settings: Settings,
        config: AppConfig,
        directory: GraphDirectory,
        refs: ConversationRefs,
        sender: ProactiveSender,
        uow: UnitOfWorkFactory,
    ) -> None:
        self._settings = settings
        self._config = config
        self._directory = directory
        self._refs = refs
        self._sender = sender
        self._uow = uow
        self._route = tenant_route(refs, settings.teams_service_url, settings.app_id)
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}  # one per person reached: a school's staff, at most

    async def reach(self, school_id: str, person_id: str, *, force: bool = False) -> SavedReference:
        """A saved conversation reference for the person, creating one if needed; raises GiveUp or RetryLater.

        `force` installs again and starts a fresh chat even when a reference is saved: Teams answered 403 there,
        so the app was removed for them or they blocked it.
        """
        lock = self._locks.setdefault((school_id, person_id), asyncio.Lock())
        async with lock:  # two messages for the same newcomer: install once, start one chat
            saved = await self._refs.get(school_id, "person", person_id)
            if saved is not None and not force:
                return saved
            return await self._install_and_start_chat(school_id, person_id)

    async def _install_and_start_chat(self, school_id: str, person_id: str) -> SavedReference:
        school = self._config.school(school_id)
        if school is None:
            raise GiveUp("unknown school")
        catalog_id = self._settings.teams_app_catalog_id
        if not catalog_id:
            raise GiveUp(
                "no conversation with this person yet, and TEAMS_APP_CATALOG_ID is not set, so the app "
                "cannot be installed for them"
            )
        try:
            outcome = await self._directory.install_app_for_user(school_id, person_id, catalog_id)
        except GraphUnavailable as exc:
            raise RetryLater(f"could not install the app for this person yet: {exc.reason}", exc.retry_after) from exc
        except GraphRefused as exc:
            raise GiveUp(f"Graph refused to install the app for this person ({exc.status}): {exc.message}") from exc
        async with self._uow() as uow:
            await uow.audit.record(
                school_id,
                None,
                "teams_app.install_for_user",
                "person",
                person_id,
                {"outcome": outcome, "catalog_app_id": catalog_id},
            )
        service_url, bot = await self._route(school_id)  # the tenant's, as the outbox reaches channels
        parameters = ConversationParameters(
            is_group=False,
            bot=ChannelAccount(id=bot.get("id"), name=bot.get("name")),
            members=[ChannelAccount(id=person_id)],
            tenant_id=school.tenant_id,
            channel_data={"tenant": {"id": school.tenant_id}},
        )
        try:
            client = await self._sender.connector_for(service_url)
            created = await client.conversations.create_conversation(parameters)
            assert created is not None, "the connector did not say which chat it started"
        except ErrorResponseException as exc:
            raise _classify(exc) from exc
        except (ClientRequestError, aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise RetryLater(f"connector unreachable while starting the chat: {exc.__class__.__name__}") from exc
        reference = {
            "bot": bot,
            "user": {"id": person_id, "aadObjectId": person_id},
            "conversation": {
                "id": created.id,
                "tenantId": school.tenant_id,
                "conversationType": "personal",
                "isGroup": False,
            },
            "channelId": "msteams",
            "serviceUrl": created.service_url or service_url,
        }
        await self._refs.save(school_id, "person", person_id, reference)
        log.info("started a 1:1 chat with %s in %s after installing the app (%s)", person_id, school_id, outcome)
        return SavedReference(school_id, "person", person_id, None, None, reference)


def _classify(exc: ErrorResponseException) -> Exception:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    if status in RETRYABLE:
        return RetryLater(f"connector answered {status} while starting the chat")
    return GiveUp(f"connector refused to start a chat with this person ({status})")


def welcome_text(school_name: str) -> str:
    return (
        f"Welcome to {school_name}. I'm the school's online-safety assistant. If anything online ever worries "
        "you, type `report` here and I'll take you through it step by step. Type `help` to see what else I can "
        "do."
    )


class StaffDeltaHandler:
    """Work kind graph.staff_delta: a delta query on the staff group; newcomers are welcomed and announced."""

    def __init__(
        self,
        settings: Settings,
        config: AppConfig,
        directory: GraphDirectory,
        uow: UnitOfWorkFactory,
        clock: Clock,
        listeners: list[NewStaffListener],
    ) -> None:
        self._settings = settings
        self._config = config
        self._directory = directory
        self._uow = uow
        self._clock = clock
        self._listeners = listeners

    async def __call__(self, item: WorkItem) -> str:
        school_id = item.school_id
        school = self._config.school(school_id)
        if school is None or Role.STAFF not in school.role_groups:
            return "no staff group configured"
        async with self._uow() as uow:
            link = await uow.graph.delta_link(school_id, "staff")
        try:
            changes = await self._directory.staff_changes(school_id, link)
        except (GraphUnavailable, GraphRefused) as exc:
            log.warning("staff delta for %s skipped: %s", school_id, exc)
            async with self._uow() as uow:
                await schedule_next(uow, school_id, self._clock.now(), self._settings.graph_delta_minutes)
            return f"skipped: {getattr(exc, 'reason', None) or exc}"
        if changes is None:
            return "no staff group configured"
        if not changes.baseline and (changes.added or changes.removed):
            self._directory.forget(school_id)
        newcomers: list[Person] = []
        if not changes.baseline:
            for person_id in changes.added:
                person = await self._directory.person(school_id, person_id)
                if person is not None:
                    newcomers.append(person)
        async with self._uow() as uow:
            await uow.graph.save_delta_link(school_id, "staff", changes.delta_link)
            for person in newcomers:
                await uow.audit.record(
                    school_id, None, "directory.new_staff", "person", person.id, {"source": "graph delta"}
                )
                await uow.notify.to_person(
                    school_id,
                    person.id,
                    text=welcome_text(school.name),
                    dedupe_key=f"graph.welcome:{school_id}:{person.id}",
                )
                for listener in self._listeners:
                    await listener(uow, school_id, person)
            await schedule_next(uow, school_id, self._clock.now(), self._settings.graph_delta_minutes)
        if changes.baseline:
            return f"baseline: {len(changes.added)} members"
        return f"{len(newcomers)} new, {len(changes.removed)} left"


def _slot(at: dt.datetime, minutes: int) -> int:
    return int(at.timestamp() // (minutes * 60))


async def schedule_next(uow: Any, school_id: str, now: dt.datetime, minutes: int) -> None:
    """The next delta query at the next slot boundary; the slot number in the dedupe key keeps one chain."""
    slot = _slot(now, minutes) + 1
    run_at = dt.datetime.fromtimestamp(slot * minutes * 60, dt.UTC)
    key = f"{STAFF_DELTA_KIND}:{school_id}:{slot}"
    await uow.work.schedule(school_id, STAFF_DELTA_KIND, run_at, {}, dedupe_key=key)


async def start_staff_delta(wiring: Wiring, settings: Settings, directory: GraphDirectory) -> None:
    """Register the delta handler and make sure each school with a staff group has its chain of checks."""
    listeners = wiring.features.new_staff_listeners
    wiring.work.register(
        STAFF_DELTA_KIND, StaffDeltaHandler(settings, wiring.config, directory, wiring.uow, wiring.clock, listeners)
    )
    now = wiring.clock.now()
    slot = _slot(now, settings.graph_delta_minutes)
    async with wiring.uow() as uow:
        for school in wiring.config.schools:
            if Role.STAFF in school.role_groups:
                await uow.work.schedule(
                    school.id, STAFF_DELTA_KIND, now, {}, dedupe_key=f"{STAFF_DELTA_KIND}:{school.id}:{slot}"
                )
