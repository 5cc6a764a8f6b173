"""The school's online-safety policy as data: categories, actions matrix, filtering rules, review cycles."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.config import load_yaml_model
from bot.people import Role
from bot.permissions import check_grants
from bot.site_categories import CategoryListError, cached_folder, lists_used


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CategoryGroup(_Frozen):
    key: str
    label: str
    description: str


class Category(_Frozen):
    key: str
    group: str
    label: str
    description: str
    illegal: bool = False
    urgent: bool = False
    no_imagery: bool = False
    routing: str = Field("safeguarding", pattern="^(safeguarding|technical|data_protection)$")
    guidance: str = ""
    actions: dict[str, list[str]] = Field(default_factory=dict)


class Labelled(_Frozen):
    key: str
    label: str


class EscalationTarget(_Frozen):
    key: str
    label: str
    role: Role | None = None


class FilteringPolicy(_Frozen):
    never_unblock_categories: list[str] = Field(default_factory=list)
    never_unblock_domains: list[str] = Field(default_factory=list)
    headteacher_approval_categories: list[str] = Field(default_factory=list)
    social_networking_domains: list[str] = Field(default_factory=list)
    # Site category lists in the UT1 layout (<folder>/<list>/domains), e.g. config/categories; relative folders
    # are read from where the bot runs, like its other paths. Only the lists the rules above use are read.
    category_dirs: list[Path] = Field(default_factory=list)
    # A list's folder name -> the category it counts as (UT1 names its lists in French and English); a list
    # named after a category (e.g. gambling) needs no line here.
    list_categories: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _category_lists_readable(self) -> FilteringPolicy:
        # Read at start-up, so a missing folder stops the bot with its name and no turn waits for the disk.
        wanted = lists_used(
            self.list_categories, [*self.never_unblock_categories, *self.headteacher_approval_categories]
        )
        for folder in self.category_dirs:
            try:
                cached_folder(folder, wanted)
            except (CategoryListError, OSError) as exc:
                raise ValueError(f"filtering.category_dirs: {exc}") from exc
        return self


class ReviewKind(_Frozen):
    key: str
    label: str
    every_months: int = Field(ge=1)
    owner_role: Role
    checklist: list[str] = Field(default_factory=list)
    termly: bool = False  # first due at the end of the current term, not on 1 September


class FilterTest(_Frozen):
    """One test of the termly filtering check: what to try, and how, on a pupil device."""

    key: str = Field(pattern="^[a-z][a-z0-9_]{0,39}$")
    label: str
    how: str


class FilteringCheckPolicy(_Frozen):
    """DfE filtering and monitoring standards: a recorded check that the filter works, at least termly."""

    review: str = "filtering_check"  # the review kind that a recorded check completes
    tests: list[FilterTest] = Field(default_factory=list)
    # Who hears at once when a test was not blocked: the filter is failing pupils until someone acts.
    alert_roles: list[Role] = Field(default_factory=lambda: [Role.ONLINE_SAFETY_LEAD, Role.DSL, Role.TECHNICIAN])


class AllegationPolicy(_Frozen):
    """KCSIE Part 4: which cases are allegations, how they may end, and the case manager's recorded decisions."""

    subject_kinds: list[str] = Field(default_factory=lambda: ["staff", "headteacher"])
    outcomes: list[Labelled] = Field(default_factory=list)
    not_for_other_cases: list[str] = Field(default_factory=list)
    decisions: list[Labelled] = Field(default_factory=list)


CASE_MANAGERS = "case_managers"  # in a referral's `missed` list: the case's own case managers


class ReferralClock(_Frozen):
    """How long an agency's referral may take: `hours` on the calendar, or school `working_days` (due at the end
    of the last school day); `at_once` marks the urgent ones (the card says "now", the clock is a short `hours`)."""

    at_once: bool = False
    hours: float | None = Field(None, gt=0)
    working_days: int | None = Field(None, ge=1)
    remind_before_minutes: int = Field(60, ge=0)  # 0: no reminder

    @model_validator(mode="after")
    def _one_measure(self) -> ReferralClock:
        if (self.hours is None) == (self.working_days is None):
            raise ValueError("a referral clock needs either hours or working_days")
        if self.at_once and self.hours is None:
            raise ValueError("an at_once referral clock counts hours")
        return self


class Agency(_Frozen):
    key: str = Field(pattern="^[a-z_]{2,32}$")
    label: str  # on the card: "LADO (Local Authority Designated Officer)"
    short: str  # in a sentence: "the LADO"
    clock: ReferralClock


class MissedStage(_Frozen):
    """Who is told once a required referral is overdue, and how long after the deadline."""

    after_minutes: int = Field(0, ge=0)
    roles: list[str]

    @model_validator(mode="after")
    def _known_roles(self) -> MissedStage:
        unknown = {r for r in self.roles if r != CASE_MANAGERS and r not in {role.value for role in Role}}
        if unknown or not self.roles:
            raise ValueError(f"referrals.required.missed: unknown roles {sorted(unknown)}")
        return self


class ReferralRule(_Frozen):
    """A case that matches every condition given here must be referred to `agency`, or closed with a reason."""

    agency: str
    subject_kinds: list[str] = Field(default_factory=list)  # empty: any
    categories: list[str] = Field(default_factory=list)  # empty: any
    illegal: bool | None = None
    immediate_danger: bool | None = None
    why: str  # shown on the card: why the policy needs it
    not_made_prompt: str  # the Close form's question when it has not been made
    missed: list[MissedStage] = Field(min_length=1)

    @model_validator(mode="after")
    def _has_a_condition(self) -> ReferralRule:
        if not (self.subject_kinds or self.categories or self.illegal is not None or self.immediate_danger is not None):
            raise ValueError(f"referrals.required ({self.agency}): give at least one condition")
        return self


class ReferralPolicy(_Frozen):
    agencies: list[Agency] = Field(default_factory=list)
    required: list[ReferralRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _agencies_resolve(self) -> ReferralPolicy:
        keys = [a.key for a in self.agencies]
        if len(keys) != len(set(keys)):
            raise ValueError("referrals.agencies: each key once")
        for rule in self.required:
            if rule.agency not in keys:
                raise ValueError(f"referrals.required: unknown agency {rule.agency!r}")
        return self

    def agency(self, key: str) -> Agency | None:
        return next((a for a in self.agencies if a.key == key), None)


class RetentionRule(_Frozen):
    """How long one type of record is kept, and what happens then (bot.retention reads it)."""

    action: str = Field(pattern="^(delete|anonymise|keep)$")
    after_years: int = Field(0, ge=0, le=100)
    after_days: int = Field(0, ge=0, le=3650)
    after_hours: int = Field(0, ge=0, le=8760)
    # Child protection files: kept until the linked child reaches this age (after_* applies with no date of birth).
    until_child_age: int | None = Field(None, ge=18, le=100)


def _rule(action: str, **period: int) -> RetentionRule:
    return RetentionRule(action=action, **period)


class RetentionPolicy(_Frozen):
    """The retention schedule per record type; the defaults follow the IRMS toolkit for schools and KCSIE."""

    batch_size: int = Field(200, ge=1, le=10000)
    safeguarding_case: RetentionRule = _rule("anonymise", until_child_age=25, after_years=25)
    child_record: RetentionRule = _rule("delete", until_child_age=25, after_years=25)
    allegation: RetentionRule = _rule("anonymise", after_years=10)
    other_incident: RetentionRule = _rule("anonymise", after_years=6)
    filter_request: RetentionRule = _rule("anonymise", after_years=2)
    filter_log: RetentionRule = _rule("delete", after_years=2)
    aup_acknowledgement: RetentionRule = _rule("delete", after_years=6)
    audit_entry: RetentionRule = _rule("keep")
    conversation_state: RetentionRule = _rule("delete", after_hours=24)
    outbox: RetentionRule = _rule("anonymise", after_days=30)

    @model_validator(mode="after")
    def _actions_fit(self) -> RetentionPolicy:
        from bot.retention import ALLOWED_ACTIONS  # the record types' possible actions live with the schedule logic

        for record_type, allowed in ALLOWED_ACTIONS.items():
            rule: RetentionRule = getattr(self, record_type)
            if rule.action not in allowed:
                raise ValueError(
                    f"retention.{record_type}.action: {rule.action!r} is not possible here; use "
                    f"{' or '.join(sorted(allowed))}"
                )
            if rule.action != "keep" and not (
                rule.after_years or rule.after_days or rule.after_hours or rule.until_child_age
            ):
                raise ValueError(f"retention.{record_type}: give how long to keep it")
        return self


class Policy(_Frozen):
    category_groups: list[CategoryGroup]
    categories: list[Category]
    actions: list[Labelled]
    outcomes: list[Labelled]
    escalation_targets: list[EscalationTarget]
    sexting_referral_criteria: list[str] = Field(default_factory=list)
    allegations: AllegationPolicy = AllegationPolicy()
    filtering: FilteringPolicy = FilteringPolicy()
    reviews: list[ReviewKind] = Field(default_factory=list)
    referrals: ReferralPolicy = ReferralPolicy()
    # Any aggregate sent to a channel or a group shows a count from 1 to this minus one as "fewer than N".
    small_number_threshold: int = Field(5, ge=2)
    retention: RetentionPolicy = RetentionPolicy()
    filtering_check: FilteringCheckPolicy = FilteringCheckPolicy()
    # Who may do what: each named permission (bot.permissions) and the roles that hold it.
    permissions: dict[str, list[str]]

    @field_validator("permissions")
    @classmethod
    def _permissions_resolve(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        check_grants(value)
        return value

    @model_validator(mode="after")
    def _references_resolve(self) -> Policy:
        groups = {g.key for g in self.category_groups}
        actions = {a.key for a in self.actions}
        for category in self.categories:
            if category.group not in groups:
                raise ValueError(f"categories.{category.key}.group: unknown group {category.group!r}")
            for subject, keys in category.actions.items():
                unknown = set(keys) - actions
                if unknown:
                    raise ValueError(f"categories.{category.key}.actions.{subject}: unknown {sorted(unknown)}")
        categories = {c.key for c in self.categories}
        for rule in self.referrals.required:
            if set(rule.categories) - categories:
                raise ValueError(
                    f"referrals.required ({rule.agency}): unknown categories "
                    f"{sorted(set(rule.categories) - categories)}"
                )
        return self

    def category(self, key: str) -> Category:
        return next(c for c in self.categories if c.key == key)

    def group(self, key: str) -> CategoryGroup:
        return next(g for g in self.category_groups if g.key == key)

    def in_group(self, group: str) -> list[Category]:
        return [c for c in self.categories if c.group == group]

    def action_label(self, key: str) -> str:
        return next((a.label for a in self.actions if a.key == key), key.replace("_", " "))

    def outcome_label(self, key: str) -> str:
        return next((o.label for o in self.outcomes if o.key == key), key.replace("_", " "))

    def is_allegation(self, subject_kind: str) -> bool:
        return subject_kind in self.allegations.subject_kinds

    def outcomes_for(self, subject_kind: str) -> list[Labelled]:
        """The outcomes a case may close with: the KCSIE ones for an allegation, the school's others otherwise."""
        if self.is_allegation(subject_kind) and self.allegations.outcomes:
            return list(self.allegations.outcomes)
        return [o for o in self.outcomes if o.key not in self.allegations.not_for_other_cases]

    def suggested_actions(self, category_key: str, subject_kind: str) -> list[str]:
        """Suggested actions for a category and subject kind; staff rows serve staff and the Headteacher."""
        column = "staff" if subject_kind in ("staff", "staff_low_level", "headteacher") else "pupil"
        return list(self.category(category_key).actions.get(column, []))


def load_policy(path: Path) -> Policy:
    """Read and validate the policy file."""
    return load_yaml_model(path, Policy, "policy")
