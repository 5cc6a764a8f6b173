"""Trust roles: people at a multi-academy trust who see figures across its schools, never a school's cases.

Decisions:
- Trust roles are not school roles (bot.people.Role): a school role opens that school's cases, and a trust lead
  must never get that by being at the trust. They hold no school permission at all; the only thing a trust role
  opens is the trust digest.
- A trust person is known by the tenant they sign in from and their Entra object id, both from the configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # bot.config imports TrustRole from here (and bot.actor imports bot.config)
    from bot.actor import CardReply
    from bot.config import AppConfig, SchoolConfig, TrustPersonConfig


class TrustRole(StrEnum):
    TRUST_SAFEGUARDING_LEAD = "trust_safeguarding_lead"
    TRUST_ONLINE_SAFETY_LEAD = "trust_online_safety_lead"


def trust_person(config: AppConfig, tenant_id: str | None, person_id: str | None) -> TrustPersonConfig | None:
    """The trust person signing in from this tenant with this id; None for everyone else."""
    trust = config.trust
    if trust is None or not tenant_id or not person_id or tenant_id != trust.tenant_id:
        return None
    return next((p for p in trust.people if p.id == person_id and p.roles), None)


@dataclass(frozen=True)
class TrustAnswer:
    """The answer to a trust person whom no school places; `home` is the school their chat is kept under."""

    home: SchoolConfig
    reply: CardReply
