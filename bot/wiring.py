"""What a feature gets when the app factory installs it: plain services and registries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from bot.config import AppConfig, SchoolConfig
from bot.policy import Policy
from bot.protocols import (
    CaseloadReads,
    Clock,
    Directory,
    PupilDirectory,
    ReadAudit,
    UnitOfWork,
    UnitOfWorkFactory,
    WorkHandler,
)

if TYPE_CHECKING:  # the services import this module's Wiring; only the type checker needs them here
    from bot.allegation_service import AllegationService
    from bot.audit_watch import AuditWatch
    from bot.aup import AupService, DocumentSource
    from bot.child_service import ChildService
    from bot.desk_service import DeskService
    from bot.digest import DigestService
    from bot.export_service import ExportService
    from bot.filtering import FilterBackend, IncidentFiler
    from bot.filtering_service import FilterService
    from bot.handler import BotServices
    from bot.incident_service import IncidentService
    from bot.people import Person
    from bot.referral_service import ReferralService
    from bot.retention_service import RetentionService
    from bot.reviews import ReviewService
    from bot.settings import Settings

Hook = Callable[[], Awaitable[None]]
# An AUP version's page: (school id, audience, version, format) -> (content type, body), None when there is none.
AupPage = Callable[[str, str, str, str], Awaitable[tuple[str, str] | None]]
# Told of each person the directory's delta query finds new: (unit of work, school id, person).
NewStaffListener = Callable[[UnitOfWork, str, "Person"], Awaitable[None]]


class WorkRegistry(Protocol):
    def register(self, kind: str, handler: WorkHandler) -> None:
        """Handle durable work items of this kind."""

    def wake(self) -> None:
        """Look for due work now."""


@dataclass
class Features:
    """What the app and each installed feature provide to the others; None until the one that provides it is
    installed (features install in order, and some look others up only when used)."""

    # Set by the app factory before any feature installs.
    public_url: str | None = None
    settings: Settings | None = None  # for features that build their own adapters (e.g. the export uploader)
    audit_watch: AuditWatch | None = None
    pupils: PupilDirectory | None = None  # adapters.pupils.install, before the children feature
    # Set by the features.
    incidents: IncidentService | None = None
    referrals: ReferralService | None = None
    desk: DeskService | None = None
    reviews: ReviewService | None = None
    digest: DigestService | None = None
    aup_service: AupService | None = None
    aup_page: AupPage | None = None
    aup_source: DocumentSource | None = None  # where the AUP texts come from (tests edit a copy); default: the files
    allegations: AllegationService | None = None
    filter_service: FilterService | None = None
    incident_filer: IncidentFiler | None = None  # files a filtering concern as a case; default: the incidents service
    children: ChildService | None = None
    retention: RetentionService | None = None
    exports: ExportService | None = None
    new_staff_listeners: list[NewStaffListener] = field(default_factory=list)
    startup: list[Hook] = field(default_factory=list)  # run once every feature is installed, e.g. importing documents
    shutdown: list[Hook] = field(default_factory=list)  # run at shutdown, e.g. closing a feature's HTTP session


@dataclass
class Wiring:
    config: AppConfig
    policy: Policy
    directory: Directory
    uow: UnitOfWorkFactory
    # Units of work that only read: on SQLite a snapshot, without queueing for the one writer; their audit trail
    # refuses entries, which go through read_audit.
    reads: UnitOfWorkFactory
    read_audit: ReadAudit
    caseload: CaseloadReads  # the desk's reads, the same snapshot without a unit of work
    clock: Clock
    services: BotServices  # commands, card actions, dialogs
    work: WorkRegistry
    features: Features
    # The filter backend a school's configuration names (adapters/ builds it; features only call it).
    filter_backend_for: Callable[[SchoolConfig], FilterBackend] | None = None
