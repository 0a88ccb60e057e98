"""The Store protocol for SQL databases, written once over the shared operations.

A concrete store (:class:`~backbeat.stores.sqlite.SQLiteStore`,
:class:`~backbeat.stores.postgresql.PostgreSQLStore`) owns its connections and supplies
:meth:`SqlStore._run`, which drives one operation on one connection; it also opens, closes
and listens for other processes' changes (``wakeups``) in its own way.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from backbeat.errors import TaskNotFoundError
from backbeat.model.history import HistoryEntry, HistoryQuery, HistorySettings, refuse_ends_before_1970
from backbeat.model.records import (
    Claim,
    DeadLetter,
    FireDecision,
    FireResult,
    QuarantinedRecord,
    Run,
    RunResult,
    StateRecord,
    Task,
    TaskFilter,
)
from backbeat.model.stored_text import refuse_unstorable_ids
from backbeat.stores._common import Signal, check_changes, host_clock
from backbeat.stores.sql import dead_letters, history, runs
from backbeat.stores.sql import tasks as task_ops  # ``add(tasks=...)`` would shadow ``tasks``
from backbeat.stores.sql.steps import Dialect, Txn

T = TypeVar("T")


class SqlStore(ABC):
    """What every SQL store shares: the operations, their transactions and local wake-ups."""

    dialect: Dialect

    def __init__(self) -> None:
        self._signal = Signal()

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    def wakeups(self) -> AsyncIterator[None]: ...

    @abstractmethod
    async def _run(
        self, operation: Callable[..., Txn[T]], args: tuple[Any, ...], *, write: bool
    ) -> tuple[T, bool]:
        """Drive ``operation(self.dialect, *args)`` on one connection, in one transaction if
        ``write``; return its result and whether it asked to notify (after the commit)."""

    async def _write(self, operation: Callable[..., Txn[T]], *args: Any) -> T:
        result, notified = await self._run(operation, args, write=True)
        if notified:
            self._signal.notify()
        return result

    async def _read(self, operation: Callable[..., Txn[T]], *args: Any) -> T:
        result, _ = await self._run(operation, args, write=False)
        return result

    # -- tasks -----------------------------------------------------------------------------

    async def add(self, tasks: Sequence[Task], *, replace: bool = False) -> None:
        if tasks:
            refuse_unstorable_ids(tasks)
            await self._write(task_ops.add, list(tasks), replace)

    async def get(self, task_id: str) -> Task | None:
        return await self._read(task_ops.get, task_id)

    async def list(
        self, filter: TaskFilter | None = None, *, cursor: str | None = None, limit: int | None = None
    ) -> tuple[builtins.list[Task], str | None]:
        return await self._read(task_ops.list_tasks, filter or TaskFilter(), cursor, limit)

    async def update(self, task_id: str, **changes: Any) -> Task:
        task = await self._write(task_ops.update, task_id, check_changes(changes))
        if task is None:
            raise TaskNotFoundError(task_id)
        return task

    async def remove(self, task_ids: Collection[str]) -> builtins.list[str]:
        if not task_ids:
            return []
        gone = set(await self._write(task_ops.remove, builtins.list(task_ids)))
        return [task_id for task_id in dict.fromkeys(task_ids) if task_id in gone]

    async def remove_by_tag(self, tag: str) -> builtins.list[str]:
        return await self._write(task_ops.remove_by_tag, tag)

    async def clear(self) -> None:
        await self._write(task_ops.clear)

    async def quarantined(self) -> builtins.list[QuarantinedRecord]:
        return await self._read(task_ops.quarantined)

    async def quarantine(self, task_id: str, error: str) -> bool:
        return await self._write(task_ops.quarantine_task, task_id, error)

    # -- claims, runs and leases -----------------------------------------------------------

    async def claim_due(
        self, owner: str, *, now: datetime, lease: timedelta, limit: int, horizon: datetime | None = None
    ) -> Claim:
        if limit <= 0:
            return Claim()
        return await self._write(runs.claim, owner, now, horizon or now, lease, limit)

    async def fire(
        self, owner: str, decisions: Sequence[FireDecision], *, now: datetime, lease: timedelta
    ) -> builtins.list[FireResult]:
        if not decisions:
            return []
        return await self._write(runs.fire, owner, builtins.list(decisions), lease)

    async def complete(
        self, owner: str, results: Sequence[RunResult], *, history: HistorySettings | None = None
    ) -> set[str]:
        if not results:
            return set()
        return await self._write(runs.complete, owner, builtins.list(results), history)

    async def extend(
        self, owner: str, leases: Mapping[str, int], *, now: datetime | None = None, lease: timedelta
    ) -> set[str]:
        if not leases:
            return set()
        return await self._write(runs.extend, owner, dict(leases), lease)

    async def release(
        self, owner: str, *, leases: Mapping[str, int], task_ids: Collection[str], now: datetime
    ) -> None:
        if leases or task_ids:
            await self._write(runs.release, owner, dict(leases), builtins.list(task_ids), now)

    async def enqueue_run(self, task_id: str, *, fire_time: datetime, now: datetime) -> Run | None:
        return await self._write(runs.enqueue, task_id, fire_time, now)

    async def list_runs(self, task_id: str | None = None) -> builtins.list[Run]:
        return await self._read(runs.list_runs, task_id)

    async def next_wakeup(self, *, now: datetime | None = None) -> datetime | None:
        return await self._read(runs.next_wakeup, self._caller_now(now))

    def _caller_now(self, now: datetime | None) -> datetime | None:
        """The clock lease ends are told in: the caller's ``now``, else this host's."""
        return now if now is not None else host_clock()

    # -- dead letters and shared state -----------------------------------------------------

    async def dead_letters(self, task_id: str | None = None) -> builtins.list[DeadLetter]:
        return await self._read(dead_letters.dead_letters, task_id)

    async def remove_dead_letters(self, ids: Collection[str]) -> builtins.list[str]:
        if not ids:
            return []
        gone = set(await self._write(dead_letters.remove, builtins.list(ids)))
        return [i for i in dict.fromkeys(ids) if i in gone]

    async def requeue_dead_letter(self, dead_letter_id: str, *, now: datetime) -> Run | None:
        return await self._write(runs.requeue_dead_letter, dead_letter_id, now)

    async def get_state(self, key: str) -> StateRecord | None:
        return await self._read(dead_letters.get_state, key)

    async def put_state(self, key: str, value: dict[str, Any], *, version: int, wake: bool = False) -> bool:
        return await self._write(dead_letters.put_state, key, value, version, wake)

    # -- run history -----------------------------------------------------------------------

    async def record_history(self, entries: Sequence[HistoryEntry]) -> None:
        refuse_ends_before_1970(entries)
        if entries:
            await self._write(history.record, builtins.list(entries))

    async def prune_history(self, task_ids: Collection[str], *, before: datetime, keep: int) -> int:
        return await self._write(history.prune, builtins.list(task_ids), before, keep)

    async def run_history(self, query: HistoryQuery) -> tuple[builtins.list[HistoryEntry], str | None]:
        return await self._read(history.query, query)


__all__ = ["SqlStore"]
