"""The collections of a MongoDB store and the indexes created on first use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from backbeat.errors import ConfigurationError

Collection = AsyncCollection[dict[str, Any]]

_INDEX_OPTIONS_CONFLICT = 85
HISTORY_TTL = timedelta(days=7)
"""How long after its end MongoDB itself deletes a history entry (its TTL index), by default."""


@dataclass(frozen=True, slots=True)
class Names:
    """Collection names: tasks under ``collection``, the rest derived from it."""

    collection: str

    def __post_init__(self) -> None:
        name = self.collection
        if not name or "$" in name or "\0" in name or name.startswith(("system.", ".")) or name.endswith("."):
            raise ConfigurationError(f"{name!r} is not a usable MongoDB collection name")

    @property
    def tasks(self) -> str:
        return self.collection

    @property
    def runs(self) -> str:
        return f"{self.collection}.runs"

    @property
    def dead_letters(self) -> str:
        return f"{self.collection}.dead_letters"

    @property
    def state(self) -> str:
        return f"{self.collection}.state"

    @property
    def history(self) -> str:
        return f"{self.collection}.history"


INDEXES: dict[str, list[IndexModel]] = {
    "tasks": [
        IndexModel([("next", ASCENDING)], name="backbeat_next"),
        IndexModel([("claim_until", ASCENDING)], name="backbeat_claim_until"),
        IndexModel([("token", ASCENDING)], name="backbeat_token"),
        IndexModel([("tags", ASCENDING)], name="backbeat_tags"),
        IndexModel([("quarantine", ASCENDING)], name="backbeat_quarantine"),
    ],
    "runs": [
        IndexModel([("lease_until", ASCENDING)], name="backbeat_lease_until"),
        IndexModel([("task_id", ASCENDING)], name="backbeat_task_id"),
        IndexModel([("token", ASCENDING)], name="backbeat_token"),
    ],
    "dead_letters": [
        IndexModel([("failed_at", ASCENDING), ("_id", ASCENDING)], name="backbeat_failed_at"),
        IndexModel([("task_id", ASCENDING)], name="backbeat_task_id"),
    ],
    "state": [],
    "history": [
        IndexModel(
            [("task_id", ASCENDING), ("ended_us", ASCENDING), ("_id", ASCENDING)], name="backbeat_task_end"
        ),
        IndexModel([("ended_us", ASCENDING), ("_id", ASCENDING)], name="backbeat_end"),
    ],
}
"""Per collection role; ``create_indexes`` is idempotent, so every process may run it."""


@dataclass(frozen=True, slots=True)
class Collections:
    """The five collections of one store."""

    tasks: Collection
    runs: Collection
    dead_letters: Collection
    state: Collection
    history: Collection

    @classmethod
    def of(cls, database: AsyncDatabase[dict[str, Any]], names: Names) -> Collections:
        return cls(
            tasks=database[names.tasks],
            runs=database[names.runs],
            dead_letters=database[names.dead_letters],
            state=database[names.state],
            history=database[names.history],
        )

    def all(self) -> list[Collection]:
        return [self.tasks, self.runs, self.dead_letters, self.state, self.history]


async def ensure_indexes(collections: Collections, history_ttl: timedelta = HISTORY_TTL) -> None:
    """Create every index the store's queries use (nothing is done for existing ones), and the
    TTL index that expires history entries ``history_ttl`` after they ended."""
    for role, models in INDEXES.items():
        if models:
            await getattr(collections, role).create_indexes(models)
    seconds = int(history_ttl.total_seconds())
    ttl = IndexModel([("ended", ASCENDING)], name="backbeat_ttl", expireAfterSeconds=seconds)
    try:
        await collections.history.create_indexes([ttl])
    except OperationFailure as exc:
        if exc.code != _INDEX_OPTIONS_CONFLICT:
            raise
        # made with another history_ttl: change it in place (creating it again is refused)
        change = {"name": "backbeat_ttl", "expireAfterSeconds": seconds}
        await collections.history.database.command({"collMod": collections.history.name, "index": change})


__all__ = ["HISTORY_TTL", "INDEXES", "Collection", "Collections", "Names", "ensure_indexes"]
