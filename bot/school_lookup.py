"""Which school an activity or a tab request belongs to: tenant, then team, then the person.

Decisions:
- A team the configuration names decides. A tenant with one school decides. Otherwise (a tenant hosting several
  schools, and a 1:1 chat, a group chat or the tab, which carry no team) the person decides: the school whose
  directory gives them at least one role. Graph's directory knows every user of a shared tenant, so "knows" means
  "holds a role there", which is what the school's own groups say.
- Never the order of the configuration file: that once made a DSL of one school the stranger (or worse) of another.
- Someone with roles at several schools of the tenant and no team on the request is not guessed for: a guess could
  put one school's safeguarding information in front of the other's. They are told which schools, how to settle it
  (listed at one school; meanwhile a channel of the school's team, where the team decides) and where to go if a
  child is at risk now; nothing else happens.
- Someone with roles at none of them is told so; nothing they type reaches any school.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bot.config import AppConfig, SchoolConfig
from bot.protocols import Directory


@dataclass(frozen=True)
class Placement:
    """The school, or why there is none. `shared` is True when the tenant hosts several schools and the person
    could not be placed at exactly one."""

    school: SchoolConfig | None
    choices: tuple[SchoolConfig, ...] = ()
    shared: bool = False

    @property
    def message(self) -> str | None:
        """What the person is told when they could not be placed; None when placed (or the tenant is unknown)."""
        if self.school is not None or not self.shared:
            return None
        if self.choices:
            names = _names([s.name for s in self.choices])
            return (
                f"You are listed at {names}, so I cannot tell which school this chat is for, and I will not guess "
                "with safeguarding information. Please ask your IT team to list you at one school only. Until "
                "then, mention me in a channel of your school's team for what can be done there. If a child is "
                "at risk now, speak to your DSL in person."
            )
        return (
            "I cannot find you at any school here, so I cannot tell which school you are from. Please ask your IT "
            "team to add you to your school's staff list. If a child is at risk now, speak to your DSL in person."
        )


async def place(
    config: AppConfig, directory: Directory, tenant_id: str | None, team_id: str | None, person_id: str | None
) -> Placement:
    school = config.school_for_tenant(tenant_id, team_id)
    if school is not None:
        return Placement(school)
    candidates = config.schools_in_tenant(tenant_id)
    if not candidates:
        return Placement(None)
    if not person_id:
        return Placement(None, shared=True)
    people = await asyncio.gather(*(directory.person(s.id, person_id) for s in candidates))
    known = tuple(s for s, person in zip(candidates, people, strict=True) if person is not None and person.roles)
    if len(known) == 1:
        return Placement(known[0])
    return Placement(None, choices=known, shared=True)


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
