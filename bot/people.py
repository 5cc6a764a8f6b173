"""People and the roles the policies give them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    STAFF = "staff"
    DSL = "dsl"
    DEPUTY_DSL = "deputy_dsl"
    HEADTEACHER = "headteacher"
    ONLINE_SAFETY_LEAD = "online_safety_lead"
    SLT = "slt"
    FILTERING_APPROVER = "filtering_approver"
    TECHNICIAN = "technician"
    DPO = "dpo"
    CHAIR_OF_GOVERNORS = "chair_of_governors"
    VICE_CHAIR_OF_GOVERNORS = "vice_chair_of_governors"  # stands in when the Chair is absent or unreachable
    GOVERNOR = "governor"
    VOLUNTEER = "volunteer"


ROLE_LABELS = {
    Role.STAFF: "staff",
    Role.DSL: "DSL",
    Role.DEPUTY_DSL: "deputy DSL",
    Role.HEADTEACHER: "Headteacher",
    Role.ONLINE_SAFETY_LEAD: "online-safety lead",
    Role.SLT: "SLT",
    Role.FILTERING_APPROVER: "filtering approver",
    Role.TECHNICIAN: "IT technician",
    Role.DPO: "DPO",
    Role.CHAIR_OF_GOVERNORS: "Chair of Governors",
    Role.VICE_CHAIR_OF_GOVERNORS: "Vice-Chair of Governors",
    Role.GOVERNOR: "governor",
    Role.VOLUNTEER: "volunteer",
}

SAFEGUARDING_TEAM = frozenset({Role.DSL, Role.DEPUTY_DSL})


@dataclass(frozen=True)
class Person:
    """Someone the directory knows, with the roles it resolved for them."""

    id: str
    name: str
    email: str = ""
    roles: frozenset[Role] = field(default_factory=frozenset)
    # The school whose directory resolved them: a school may give a permission to other roles (bot.permissions).
    school: str = field(default="", compare=False)

    def has(self, *roles: Role) -> bool:
        return any(role in self.roles for role in roles)

    @property
    def is_safeguarding_team(self) -> bool:
        return bool(self.roles & SAFEGUARDING_TEAM)

    @property
    def first_name(self) -> str:
        return self.name.split()[0] if self.name else "there"


UNKNOWN_PERSON_NAME = "Unknown user"


def stranger(person_id: str, name: str | None) -> Person:
    """Someone in the school's tenant the directory does not know: no roles at all."""
    return Person(id=person_id, name=name or UNKNOWN_PERSON_NAME, roles=frozenset())
