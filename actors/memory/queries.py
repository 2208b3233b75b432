"""What the memory query endpoint (`actors.memory.http`) needs from the memory actor, so that
the endpoint depends on this interface and the actor on the endpoint, never both ways."""

from __future__ import annotations

from typing import Any, Protocol

from actors.memory.config import MemoryConfig


class QueryError(ValueError):
    """A question that cannot be answered from memory; `status` is the HTTP status to return."""

    def __init__(self, message: str, status: int, outcome: str) -> None:
        super().__init__(message)
        self.status = status
        self.outcome = outcome


class Answers(Protocol):
    """The memory actor as the endpoint sees it."""

    name: str
    config: MemoryConfig

    def ask(self, collection: str, question: str) -> dict[str, Any]: ...

    def progress(self, collection: str) -> dict[str, Any]: ...

    def collections(self) -> list[str]: ...

    def policy_version(self) -> int | None: ...
