"""The embedded directory: people and roles from the school configuration file."""

from __future__ import annotations

from bot.config import AppConfig
from bot.people import Person, Role


class StaticDirectory:
    def __init__(self, config: AppConfig) -> None:
        self._people: dict[str, dict[str, Person]] = {}
        self._managers: dict[str, dict[str, str | None]] = {}
        for school in config.schools:
            self._people[school.id] = {
                p.id: Person(id=p.id, name=p.name, email=p.email, roles=frozenset(p.roles), school=school.id)
                for p in school.people
            }
            self._managers[school.id] = {p.id: p.line_manager for p in school.people}

    async def person(self, school_id: str, person_id: str) -> Person | None:
        return self._people.get(school_id, {}).get(person_id)

    async def people_with_role(self, school_id: str, role: Role) -> list[Person]:
        people = self._people.get(school_id, {}).values()
        return sorted((p for p in people if role in p.roles), key=lambda p: (p.name, p.id))

    async def line_manager(self, school_id: str, person_id: str) -> Person | None:
        manager_id = self._managers.get(school_id, {}).get(person_id)
        return await self.person(school_id, manager_id) if manager_id else None

    async def find_by_email(self, school_id: str, email: str) -> Person | None:
        wanted = email.strip().lower()
        return next((p for p in self._people.get(school_id, {}).values() if p.email.lower() == wanted), None)

    async def everyone(self, school_id: str) -> list[Person]:
        return sorted(self._people.get(school_id, {}).values(), key=lambda p: (p.name, p.id))
