"""A generated multi-academy trust, written as an AppConfig YAML file (issue 18: scale).

`write_trust(path, schools=50, staff=12_000, tenants=5)` spreads the schools over the tenants (several schools to
a tenant, each with its own team and channels) and the staff over the schools, unevenly as real schools are. Every
school has a headteacher, a DSL, two deputy DSLs, an online-safety lead, a technician and a DPO among its staff;
the rest are plain staff. Everyone is invented; the same seed always gives the same file, byte for byte.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SEED = 18
LEADERS: tuple[tuple[str, list[str]], ...] = (
    ("headteacher", ["staff", "headteacher", "slt", "filtering_approver"]),
    ("dsl", ["staff", "dsl", "slt"]),
    ("deputy_dsl", ["staff", "deputy_dsl"]),
    ("deputy_dsl", ["staff", "deputy_dsl"]),
    ("online_safety_lead", ["staff", "online_safety_lead", "slt", "filtering_approver"]),
    ("technician", ["staff", "technician"]),
    ("dpo", ["staff", "dpo"]),
)
PLACES = (
    "Ashford", "Beechwood", "Brookside", "Castleton", "Clearwater", "Elmhurst", "Fairfield", "Foxhill", "Greenway",
    "Hawthorn", "Highcliffe", "Hollybank", "Kingsmead", "Larkrise", "Maplewood", "Meadowbank", "Millbrook",
    "Northgate", "Oakridge", "Orchard", "Parkside", "Queensway", "Redbrook", "Riverside", "Rosehill", "Sandford",
    "Southfields", "Stonebridge", "Thornbury", "Westfield", "Whitecross", "Willowdene", "Woodlands", "Yewtree",
)  # fmt: skip
FIRST = (
    "Aisha", "Ben", "Chloe", "Dev", "Ella", "Femi", "Grace", "Harry", "Isla", "Jamal", "Kate", "Liam", "Maya", "Niall",
    "Olu", "Priya", "Rhys", "Sara", "Tom", "Usha", "Zoe", "Amir", "Beth", "Callum", "Deepa", "Ewan", "Fatima", "Gus",
)  # fmt: skip
LAST = (
    "Ahmed", "Baker", "Clarke", "Davies", "Evans", "Fletcher", "Green", "Hussain", "Iqbal", "Jones", "Khan", "Lewis",
    "Morgan", "Nowak", "Owen", "Patel", "Quinn", "Roberts", "Singh", "Taylor", "Walsh", "Wright", "Young", "Zielinski",
)  # fmt: skip
TERMS = [
    {"name": "Autumn 2026", "start": "2026-09-02", "end": "2026-12-18"},
    {"name": "Spring 2027", "start": "2027-01-05", "end": "2027-03-26"},
    {"name": "Summer 2027", "start": "2027-04-12", "end": "2027-07-21"},
]


@dataclass(frozen=True)
class TrustPerson:
    id: str
    name: str
    school_id: str
    tenant_id: str
    roles: tuple[str, ...]
    post: str  # "staff" or the leader post in LEADERS


@dataclass(frozen=True)
class TrustSchool:
    id: str
    name: str
    tenant_id: str
    team_id: str
    slt_channel: str
    people: tuple[TrustPerson, ...]

    def holder(self, post: str) -> TrustPerson:
        return next(p for p in self.people if p.post == post)


def tenant_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{0x7000 + n:012x}"


def person_id(school: int, n: int) -> str:
    return f"00000000-0000-4000-a{school:03d}-{n:012d}"


def school_sizes(schools: int, staff: int, rng: random.Random) -> list[int]:
    """Staff per school, between about half and one and a half times the average, adding up to `staff` exactly."""
    least = len(LEADERS)
    if staff < schools * least:
        raise ValueError(f"{staff} staff cannot fill {schools} schools of at least {least}")
    weights = [rng.uniform(0.5, 1.5) for _ in range(schools)]
    spare = staff - schools * least
    sizes = [least + int(spare * w / sum(weights)) for w in weights]
    for i in range(staff - sum(sizes)):  # what rounding down left over, one each
        sizes[i % schools] += 1
    return sizes


def generate(schools: int = 50, staff: int = 12_000, tenants: int = 5, seed: int = SEED) -> list[TrustSchool]:
    if not 1 <= tenants <= schools or schools > 999:
        raise ValueError("need 1 <= tenants <= schools <= 999")
    rng = random.Random(seed)
    out: list[TrustSchool] = []
    for s, size in enumerate(school_sizes(schools, staff, rng), start=1):
        school_id = f"school-{s:02d}"
        tenant = tenant_id(s % tenants)
        people = []
        for n in range(1, size + 1):
            post, roles = LEADERS[n - 1] if n <= len(LEADERS) else ("staff", ["staff"])
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            people.append(TrustPerson(person_id(s, n), name, school_id, tenant, tuple(roles), post))
        place = PLACES[(s - 1) % len(PLACES)]
        suffix = "" if s <= len(PLACES) else f" {(s - 1) // len(PLACES) + 1}"
        kind = "Primary School" if s % 3 else "Academy"
        out.append(
            TrustSchool(
                school_id,
                f"{place}{suffix} {kind}",
                tenant,
                f"19:{school_id}-staff@thread.tacv2",
                f"19:{school_id}-slt@thread.tacv2",
                tuple(people),
            )
        )
    return out


def _prefix(n: int) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return "T" + letters[(n // 26) % 26] + letters[n % 26]


def as_config(trust: list[TrustSchool]) -> dict[str, Any]:
    """The trust as the YAML structure bot.config.AppConfig validates."""
    schools = []
    for s, school in enumerate(trust, start=1):
        head = school.holder("headteacher").id
        schools.append(
            {
                "id": school.id,
                "name": school.name,
                "phase": "primary" if s % 3 else "secondary",
                "reference_prefix": _prefix(s),
                "tenant_id": school.tenant_id,
                "team_id": school.team_id,
                "timezone": "Europe/London",
                "school_hours": {"start": "08:00", "end": "17:30", "weekdays": [0, 1, 2, 3, 4]},
                "terms": [dict(term) for term in TERMS],
                "channels": {
                    "dsl": f"19:{school.id}-safeguarding@thread.tacv2",
                    "slt": school.slt_channel,
                    "technicians": f"19:{school.id}-it@thread.tacv2",
                },
                "safeguarding_phone": f"01632 960 {s:03d}",
                "digest": {"weekday": 0, "time": "07:30"},
                "aup": {"renewal_month_day": "09-01", "reminder_every_days": 3, "escalate_after_days": 10},
                "filtering": {"backend": "manual"},
                "people": [
                    {
                        "id": p.id,
                        "name": p.name,
                        "email": f"{p.name.lower().replace(' ', '.')}.{p.id[-5:]}@{school.id}.example",
                        **({"roles": list(p.roles)} if p.post != "staff" else {}),  # [staff] is the default
                        **({"line_manager": head} if p.id != head else {}),
                    }
                    for p in school.people
                ],
            }
        )
    return {"schools": schools}


def write_trust(
    path: Path, schools: int = 50, staff: int = 12_000, tenants: int = 5, seed: int = SEED
) -> list[TrustSchool]:
    """Write the generated trust to `path` as a config file; returns what it wrote."""
    trust = generate(schools, staff, tenants, seed)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml writes 12,000 people in a fraction of the time
    path.write_text(
        "# Generated by tests/support/trust_gen.py: an invented multi-academy trust.\n"
        + yaml.dump(as_config(trust), Dumper=dumper, sort_keys=False, width=120),
        encoding="utf-8",
    )
    return trust
