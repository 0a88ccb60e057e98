"""The SQLite store: the embedded default, safe for several processes sharing one file.

One ``sqlite3`` connection lives in one worker thread; every store operation is one
function (one transaction) run there, so the event loop never waits on the database and
pays one thread hop per operation. Writes take the write lock up front (``BEGIN
IMMEDIATE``): two processes never deadlock upgrading a read lock. The SQL is in
:mod:`backbeat.stores.sqlite_queries`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, TypeVar

from backbeat.errors import StoreError, StoreUnavailableError, TaskNotFoundError
from backbeat.model import (
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
from backbeat.stores import sqlite_dead_letters as dl
from backbeat.stores import sqlite_queries as q
from backbeat.stores import sqlite_transactions as tx
from backbeat.stores._common import Signal, check_changes

T = TypeVar("T")
_UNAVAILABLE = ("locked", "busy", "unable to open", "disk i/o")


class SQLiteStore:
    """A store in one SQLite file (WAL mode), shared safely by every process that opens it.

    Args:
        path: the database file (created if missing).
        busy_timeout: seconds to wait for another process's write lock before
            :class:`~backbeat.errors.StoreUnavailableError` is raised.
        poll_interval: seconds between checks for other processes' commits (``wakeups``).
    """

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout: float = 10.0, poll_interval: float = 0.005
    ) -> None:
        self.path = os.fspath(path)
        self.busy_timeout = busy_timeout
        self.poll_interval = poll_interval
        self._db: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._signal = Signal()
        self._closes = 0

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    async def open(self) -> None:
        await self._call(lambda db: None)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        self._closes += 1
        self._signal.notify()  # ends the wakeups() iterators
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._disconnect)
        finally:
            executor.shutdown(wait=False)

    # -- tasks -----------------------------------------------------------------------------

    async def add(self, tasks: Sequence[Task], *, replace: bool = False) -> None:
        if tasks:
            await self._write(tx.add, list(tasks), replace)
            self._signal.notify()

    async def get(self, task_id: str) -> Task | None:
        return await self._read(tx.get, task_id)

    async def list(
        self, filter: TaskFilter | None = None, *, cursor: str | None = None, limit: int | None = None
    ) -> tuple[builtins.list[Task], str | None]:
        return await self._read(tx.list_tasks, filter or TaskFilter(), cursor, limit)

    async def update(self, task_id: str, **changes: Any) -> Task:
        task = await self._write(tx.update, task_id, check_changes(changes))
        if task is None:
            raise TaskNotFoundError(task_id)
        self._signal.notify()
        return task

    async def remove(self, task_ids: Collection[str]) -> builtins.list[str]:
        if not task_ids:
            return []
        gone = set(await self._write(tx.returned, q.REMOVE_TASKS, (tx.ids_param(task_ids),)))
        if gone:
            self._signal.notify()
        return [task_id for task_id in dict.fromkeys(task_ids) if task_id in gone]

    async def remove_by_tag(self, tag: str) -> builtins.list[str]:
        removed = sorted(await self._write(tx.returned, q.REMOVE_TAGGED, (tag,)))
        if removed:
            self._signal.notify()
        return removed

    async def clear(self) -> None:
        await self._write(tx.clear)
        self._signal.notify()

    # -- claims, runs and leases -----------------------------------------------------------

    async def claim_due(self, owner: str, *, now: datetime, lease: timedelta, limit: int) -> Claim:
        if limit <= 0:
            return Claim()

        def claim(db: tx.Db) -> Claim:
            # a read first: idle pollers in many processes then never queue for the write lock
            earliest = tx.next_wakeup(db)
            if earliest is None or earliest > now:
                return Claim()
            return self._transaction(db, tx.claim, owner, now, now + lease, limit)

        return await self._call(claim)

    async def fire(
        self, owner: str, decisions: Sequence[FireDecision], *, now: datetime, lease: timedelta
    ) -> builtins.list[FireResult]:
        if not decisions:
            return []
        results, rescheduled = await self._write(tx.fire, owner, list(decisions), now + lease)
        if rescheduled:
            self._signal.notify()
        return results

    async def complete(self, owner: str, results: Sequence[RunResult]) -> set[str]:
        if not results:
            return set()
        lost, retried = await self._write(tx.complete, owner, list(results))
        if retried:
            self._signal.notify()
        return lost

    async def extend(
        self, owner: str, run_ids: Collection[str], *, now: datetime, lease: timedelta
    ) -> set[str]:
        if not run_ids:
            return set()
        until = tx.to_us(now + lease)
        return set(await self._write(tx.returned, q.EXTEND_RUNS, (until, owner, tx.ids_param(run_ids))))

    async def release(
        self, owner: str, *, run_ids: Collection[str], task_ids: Collection[str], now: datetime
    ) -> None:
        if not run_ids and not task_ids:
            return
        if await self._write(tx.release, owner, list(run_ids), list(task_ids), now):
            self._signal.notify()

    async def enqueue_run(self, task_id: str, *, fire_time: datetime, now: datetime) -> Run | None:
        run = await self._write(tx.enqueue, task_id, fire_time, now)
        if run is not None:
            self._signal.notify()
        return run

    async def list_runs(self, task_id: str | None = None) -> builtins.list[Run]:
        return await self._call(tx.list_runs, task_id)

    async def next_wakeup(self) -> datetime | None:
        return await self._call(tx.next_wakeup)

    async def wakeups(self) -> AsyncIterator[None]:
        if self._executor is None:
            return  # not open: nothing to listen to (and listening must not reopen a closed store)
        closes = self._closes
        event = self._signal.subscribe()
        try:
            seen = await self._call(tx.data_version)
            while self._closes == closes:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), self.poll_interval)
                if self._closes != closes:
                    return
                if event.is_set():
                    event.clear()
                    yield
                    continue
                # data_version changes only when another connection (process) commits
                version = await self._call(tx.data_version)
                if version != seen:
                    seen = version
                    yield
        finally:
            self._signal.unsubscribe(event)

    async def quarantined(self) -> builtins.list[QuarantinedRecord]:
        return await self._call(tx.quarantined)

    # -- dead letters and shared state -----------------------------------------------------

    async def dead_letters(self, task_id: str | None = None) -> builtins.list[DeadLetter]:
        return await self._call(dl.dead_letters, task_id)

    async def remove_dead_letters(self, ids: Collection[str]) -> builtins.list[str]:
        if not ids:
            return []
        gone = set(await self._write(dl.remove_dead_letters, tx.ids_param(ids)))
        return [i for i in dict.fromkeys(ids) if i in gone]

    async def requeue_dead_letter(self, dead_letter_id: str, *, now: datetime) -> Run | None:
        run = await self._write(tx.requeue_dead_letter, dead_letter_id, now)
        if run is not None:
            self._signal.notify()
        return run

    async def get_state(self, key: str) -> StateRecord | None:
        return await self._call(dl.get_state, key)

    async def put_state(self, key: str, value: dict[str, Any], *, version: int) -> bool:
        return await self._write(dl.put_state, key, value, version)

    # -- plumbing: one thread, one connection, one transaction per operation ---------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backbeat-sqlite")
        # If the caller is cancelled the operation still finishes (or not) as a whole: a claim
        # nobody receives then expires with its lease.
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._in_thread, fn, args)

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._call(self._transaction, fn, *args)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        def read(db: tx.Db) -> T:
            corrupt: tx.Corrupt = []
            result = fn(db, corrupt, *args)
            if corrupt:
                self._transaction(db, tx.quarantine, corrupt)
            return result

        return await self._call(read)

    def _in_thread(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        try:
            if self._db is None:
                self._db = self._connect()
            return fn(self._db, *args)
        except sqlite3.Error as exc:
            message = f"SQLite store {self.path}: {exc}"
            if isinstance(exc, sqlite3.OperationalError) and any(s in str(exc).lower() for s in _UNAVAILABLE):
                raise StoreUnavailableError(message) from exc
            raise StoreError(message) from exc

    @staticmethod
    def _transaction(db: tx.Db, fn: Callable[..., T], *args: Any) -> T:
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(db, *args)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return result

    def _connect(self) -> tx.Db:
        db = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        try:
            deadline = time.monotonic() + self.busy_timeout
            while True:
                # switching to WAL needs a moment alone with the file: retry while others hold it
                try:
                    db.execute("PRAGMA journal_mode = WAL").fetchone()
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
            db.executescript(f"BEGIN IMMEDIATE; {q.SCHEMA} COMMIT;")
            (version,) = db.execute(q.GET_SCHEMA_VERSION).fetchone()
            if int(version) > q.SCHEMA_VERSION:
                raise StoreError(
                    f"SQLite store {self.path} has schema version {version}, made by a newer backbeat "
                    f"(this one knows version {q.SCHEMA_VERSION})"
                )
        except BaseException:
            db.close()
            raise
        return db

    def _disconnect(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


__all__ = ["SQLiteStore"]
