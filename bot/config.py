"""School configuration: schools, channels, SLAs and the static directory, validated from YAML."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bot.people import Role
from bot.permissions import check_overrides
from bot.trust import TrustRole

ModelT = TypeVar("ModelT", bound=BaseModel)


class ConfigError(Exception):
    """The configuration file cannot be used; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PersonConfig(_Strict):
    id: str
    name: str
    email: str
    roles: list[Role] = Field(default_factory=lambda: [Role.STAFF])
    line_manager: str | None = None


class PupilConfig(_Strict):
    """A pupil in the static directory (schools without School Data Sync); invented in the demo."""

    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=120)
    year_group: str | None = Field(None, max_length=40)
    date_of_birth: dt.date | None = None
    upn: str | None = Field(None, pattern=r"^[A-Z]\d{12}$")
    mis_id: str | None = Field(None, max_length=64)
    classes: list[str] = Field(default_factory=list)


class SlaConfig(_Strict):
    normal: int = 60
    urgent: int = 15


class DigestConfig(_Strict):
    weekday: int = Field(0, ge=0, le=6)  # Monday is 0
    time: dt.time = dt.time(7, 30)


class SchoolHours(_Strict):
    start: dt.time = dt.time(8, 0)
    end: dt.time = dt.time(17, 0)
    weekdays: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])


class TermConfig(_Strict):
    name: str
    start: dt.date
    end: dt.date


class AupConfig(_Strict):
    renewal_month_day: str = "09-01"
    reminder_every_days: int = Field(3, ge=1)
    escalate_after_days: int = Field(10, ge=1)

    @field_validator("renewal_month_day")
    @classmethod
    def _real_day(cls, value: str) -> str:
        try:
            dt.date.fromisoformat(f"2024-{value}")  # a leap year, so 02-29 is allowed
        except ValueError as exc:
            raise ValueError(f"renewal_month_day must be MM-DD, for example 09-01 (got {value!r})") from exc
        return value


class SquidConfig(_Strict):
    allow_file: Path = Path("var/squid/allow.txt")
    block_file: Path = Path("var/squid/block.txt")
    reload_command: list[str] = Field(default_factory=lambda: ["squid", "-k", "reconfigure"])


class DnsmasqConfig(_Strict):
    """DNS filtering: the bot keeps the lists and renders servers_file, which dnsmasq's --servers-file reads."""

    allow_file: Path = Path("var/dnsmasq/allow.txt")
    block_file: Path = Path("var/dnsmasq/block.txt")
    servers_file: Path = Path("var/dnsmasq/servers.conf")
    # Debian's dnsmasq.service reloads with SIGHUP, which re-reads the servers file without dropping queries.
    reload_command: list[str] = Field(default_factory=lambda: ["systemctl", "reload", "dnsmasq"])


class FilteringConfig(_Strict):
    backend: str = "manual"
    squid: SquidConfig = SquidConfig()
    dnsmasq: DnsmasqConfig = DnsmasqConfig()
    never_unblock_domains: list[str] = Field(default_factory=list)
    # Sites the school's filter vendor has categorised, e.g. {bet365.com: gambling}; checked against the policy's
    # never-unblock and Headteacher-approval categories.
    domain_categories: dict[str, str] = Field(default_factory=dict)
    # The school's own category lists on top of the policy's (UT1 layout: <folder>/<list>/domains, e.g. a
    # gambling/domains file); a list counts as the category the policy maps its name to, or as its own name.
    category_dirs: list[Path] = Field(default_factory=list)

    @field_validator("category_dirs")
    @classmethod
    def _folders_exist(cls, value: list[Path]) -> list[Path]:
        missing = [str(folder) for folder in value if not folder.is_dir()]
        if missing:
            raise ValueError(f"no such folder {missing[0]} (expected <folder>/<list>/domains)")
        return value


class DeliveryConfig(_Strict):
    """How long an alert may take to reach someone before the person who raised it is told to go in person."""

    urgent_seconds: int = Field(30, ge=5, le=3600)
    normal_seconds: int = Field(300, ge=30, le=86400)


class ChannelsConfig(_Strict):
    dsl: str | None = None
    slt: str | None = None
    technicians: str | None = None


class DataController(_Strict):
    """Who decides how the app's personal data is used (the school, or a trust for its schools): on the privacy page."""

    name: str = Field(min_length=1, max_length=200)
    address: str = Field(min_length=1, max_length=500)  # several lines allowed
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)
    phone: str | None = Field(None, max_length=40)
    dpo_email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)
    # The ICO's data protection register: Z and seven digits, or Z, a letter and six digits.
    ico_registration: str | None = Field(None, pattern=r"^Z(\d{7}|[A-Z]\d{6})$")


class Phase(StrEnum):
    """Which pupils the school teaches: examples in prompts name year groups the school has."""

    PRIMARY = "primary"
    SECONDARY = "secondary"


class SchoolConfig(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,40}$")
    name: str
    phase: Phase = Phase.PRIMARY
    reference_prefix: str = Field("ES", pattern=r"^[A-Z]{2,4}$")
    tenant_id: str
    team_id: str | None = None
    timezone: str = "Europe/London"
    school_hours: SchoolHours = SchoolHours()
    terms: list[TermConfig] = Field(default_factory=list)
    channels: ChannelsConfig = ChannelsConfig()
    sla_minutes: SlaConfig = SlaConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    # Given to a reporter whose alert could not be delivered, with the DSLs' names.
    safeguarding_phone: str | None = Field(None, max_length=40)
    # The school's own controller details; a school without them shows the trust's (AppConfig.data_controller).
    data_controller: DataController | None = None
    digest: DigestConfig = DigestConfig()
    aup: AupConfig = AupConfig()
    filtering: FilteringConfig = FilteringConfig()
    role_groups: dict[Role, str] = Field(default_factory=dict)
    # This school's own answer to "which roles may do this", for the permissions it names (config/policy_defaults.yaml
    # `permissions:` has the rest): a trust shares one policy, and a school varies it here.
    permissions: dict[str, list[Role]] = Field(default_factory=dict)
    people: list[PersonConfig] = Field(default_factory=list)
    pupils: list[PupilConfig] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _line_managers_exist(self) -> SchoolConfig:
        ids = {p.id for p in self.people}
        for person in self.people:
            if person.line_manager and person.line_manager not in ids:
                raise ValueError(f"people: {person.id} has unknown line_manager {person.line_manager}")
        return self

    @field_validator("permissions")
    @classmethod
    def _known_permissions(cls, value: dict[str, list[Role]]) -> dict[str, list[Role]]:
        check_overrides(value)
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class TrustPersonConfig(_Strict):
    """Someone at the trust (not at a school): their roles are trust roles, which see figures, never cases."""

    id: str
    name: str
    email: str
    roles: list[TrustRole] = Field(min_length=1)


class TrustConfig(_Strict):
    """A multi-academy trust: its people sign in from `tenant_id` and get the weekly trust digest across `schools`
    (every configured school when empty), at `digest` in the timezone of the trust's first school in that tenant."""

    name: str = Field(min_length=1, max_length=120)
    tenant_id: str
    schools: list[str] = Field(default_factory=list)
    digest: DigestConfig = DigestConfig()
    people: list[TrustPersonConfig] = Field(default_factory=list)


class AppConfig(_Strict):
    schools: list[SchoolConfig] = Field(min_length=1)
    dev_default_school: str | None = None
    trust: TrustConfig | None = None
    # The deployment-wide controller, often the trust: shown for every school that does not name its own.
    data_controller: DataController | None = None

    @model_validator(mode="after")
    def _unique_schools(self) -> AppConfig:
        ids = [s.id for s in self.schools]
        if len(ids) != len(set(ids)):
            raise ValueError("schools: school ids must be unique")
        if self.dev_default_school and self.dev_default_school not in ids:
            raise ValueError(f"dev_default_school: no school with id {self.dev_default_school!r}")
        teams = [(s.tenant_id, s.team_id) for s in self.schools if s.team_id]
        if len(teams) != len(set(teams)):
            raise ValueError("schools: two schools in one tenant share a team_id, so neither could be told apart")
        if self.trust is not None:
            unknown = [school_id for school_id in self.trust.schools if school_id not in ids]
            if unknown:
                raise ValueError(f"trust.schools: no school with id {unknown[0]!r}")
            if not any(s.tenant_id == self.trust.tenant_id for s in self.trust_schools()):
                # Work items and the outbox are keyed by school: the digest reaches trust people through one in
                # their own tenant.
                raise ValueError("trust.tenant_id: no school of the trust is in this tenant")
        return self

    def trust_schools(self) -> list[SchoolConfig]:
        """The schools the trust digest covers, in the configuration's order."""
        if self.trust is None:
            return []
        wanted = set(self.trust.schools)
        return [s for s in self.schools if not wanted or s.id in wanted]

    def school(self, school_id: str) -> SchoolConfig | None:
        return next((s for s in self.schools if s.id == school_id), None)

    def schools_in_tenant(self, tenant_id: str | None) -> list[SchoolConfig]:
        return [s for s in self.schools if tenant_id and s.tenant_id == tenant_id]

    def school_for_tenant(self, tenant_id: str | None, team_id: str | None = None) -> SchoolConfig | None:
        """The school that tenant and team alone decide: the team's school, or the tenant's only school. None where
        the tenant hosts several schools and no configured team is given (a 1:1 chat, a group chat, the tab): then
        the person decides (bot.school_lookup), never the order of this file."""
        matches = self.schools_in_tenant(tenant_id)
        if team_id:
            by_team = [s for s in matches if s.team_id == team_id]
            if by_team:
                return by_team[0]
        return matches[0] if len(matches) == 1 else None


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    return f"{where}: {first['msg']}"


_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml_model(path: Path, model: type[ModelT], what: str) -> ModelT:
    """Read a YAML file into a validated model; a mistake names the file and the key."""
    try:
        # libyaml's loader when PyYAML has it: a trust's file of 12,000 staff parses in a quarter of the time.
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from exc
    try:
        return model.model_validate(raw or {})
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from exc


def load_config(path: Path) -> AppConfig:
    """Read and validate the school configuration."""
    return load_yaml_model(path, AppConfig, "config")
