"""The school's online-safety policy as data: categories, actions matrix, filtering rules, review cycles."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.config import load_yaml_model
from bot.people import Role


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


class ReviewKind(_Frozen):
    key: str
    label: str
    every_months: int = Field(ge=1)
    owner_role: Role
    checklist: list[str] = Field(default_factory=list)


class Policy(_Frozen):
    category_groups: list[CategoryGroup]
    categories: list[Category]
    actions: list[Labelled]
    outcomes: list[Labelled]
    escalation_targets: list[EscalationTarget]
    sexting_referral_criteria: list[str] = Field(default_factory=list)
    filtering: FilteringPolicy = FilteringPolicy()
    reviews: list[ReviewKind] = Field(default_factory=list)
    # Any aggregate sent to a channel or a group shows a count from 1 to this minus one as "fewer than N".
    small_number_threshold: int = Field(5, ge=2)

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

    def suggested_actions(self, category_key: str, subject_kind: str) -> list[str]:
        """Suggested actions for a category and subject kind; staff rows serve staff and the Headteacher."""
        column = "staff" if subject_kind in ("staff", "headteacher") else "pupil"
        return list(self.category(category_key).actions.get(column, []))


def load_policy(path: Path) -> Policy:
    """Read and validate the policy file."""
    return load_yaml_model(path, Policy, "policy")
