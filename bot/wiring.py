"""What a feature gets when the app factory installs it: plain services and registries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bot.config import AppConfig, SchoolConfig
from bot.policy import Policy
from bot.protocols import Clock, Directory, UnitOfWorkFactory, WorkHandler


class WorkRegistry(Protocol):
    def register(self, kind: str, handler: WorkHandler) -> None:
        """Handle durable work items of this kind."""

    def wake(self) -> None:
        """Look for due work now."""


@dataclass
class Wiring:
    config: AppConfig
    policy: Policy
    directory: Directory
    uow: UnitOfWorkFactory
    clock: Clock
    services: Any  # bot.handler.BotServices: commands, card actions, dialogs
    work: WorkRegistry
    extras: dict[str, Any]
    # The filter backend a school's configuration names (adapters/ builds it; features only call it).
    filter_backend_for: Callable[[SchoolConfig], Any] | None = None
