"""The PostgreSQL store: many processes on many machines sharing one database.

An asyncpg pool; every store operation is one transaction on one connection. Claims lock
what they take with ``FOR UPDATE SKIP LOCKED``, so concurrent claimers never wait on each
other nor share a task or a run. Writing transactions that add or move due work send
``NOTIFY <prefix>_wakeup``, which ``wakeups`` hears on a dedicated connection. Every table
is named ``<prefix>_<table>`` (``table_prefix``, or ``?prefix=`` in the URL; default
``backbeat``), so several schedulers (or tests) can share one database.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]

from backbeat.errors import StoreError, TaskNotFoundError
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
from backbeat.stores._common import Signal, check_changes
from backbeat.stores.postgresql import dead_letters as dl
from backbeat.stores.postgresql import queries as q
from backbeat.stores.postgresql import transactions as tx
from backbeat.stores.postgresql.connection import Db, Listener, is_retryable, parse_url, translate
from backbeat.stores.postgresql.records import to_us

T = TypeVar("T")
_ATTEMPTS = 5
"""Tries of an operation that lost a deadlock or a serialization conflict."""


class PostgresStore:
    """A store in a PostgreSQL database (tables created on first use).

    Args:
        url: ``postgresql://user:password@host:port/database`` (or ``postgres://``), with an
            optional ``?prefix=<table prefix>``; other query options go to asyncpg.
        table_prefix: the tables' name prefix (overrides ``?prefix=``; default ``backbeat``).
        min_size: connections the pool keeps open.
        max_size: connections the pool opens at most.
        connect_timeout: seconds to wait for a connection before
            :class:`~backbeat.errors.StoreUnavailableError` is raised.
    """

    def __init__(
        self,
        url: str,
        *,
        table_prefix: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 10.0,
    ) -> None:
        self._target = parse_url(url, table_prefix)
        self.prefix = self._target.prefix
        self.min_size, self.max_size = min_size, max_size
        self.connect_timeout = connect_timeout
        self._pool: Any = None
        self._opening: asyncio.Lock | None = None
        self._listener: Listener | None = None
        self._signal = Signal()
        self._closes = 0

    def __repr__(self) -> str:
        return f"PostgresStore({self._target.where!r}, prefix={self.prefix!r})"

    async def open(self) -> None:
        await self._ensure_pool()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        listener, self._listener = self._listener, None
        self._closes += 1
        self._signal.notify()  # ends the wakeups() iterators
        if listener is not None:
            await listener.close()
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 10)
            except (TimeoutError, OSError, asyncpg.exceptions.InterfaceError):
                pool.terminate()

    # -- tasks -----------------------------------------------------------------------------

    async def add(self, tasks: Sequence[Task], *, replace: bool = False) -> None:
        if tasks:
            await self._run(tx.add, list(tasks), replace)
            self._signal.notify()

    async def get(self, task_id: str) -> Task | None:
        return await self._run(tx.get, task_id)

    async def list(
        self, filter: TaskFilter | None = None, *, cursor: str | None = None, limit: int | None = None
    ) -> tuple[builtins.list[Task], str | None]:
        return await self._run(tx.list_tasks, filter or TaskFilter(), cursor, limit)

    async def update(self, task_id: str, **changes: Any) -> Task:
        task = await self._run(tx.update, task_id, check_changes(changes))
        if task is None:
            raise TaskNotFoundError(task_id)
        self._signal.notify()
        return task

    async def remove(self, task_ids: Collection[str]) -> builtins.list[str]:
        if not task_ids:
            return []
        gone = set(await self._run(_ids, q.REMOVE_TASKS, sorted(set(task_ids))))
        return [task_id for task_id in dict.fromkeys(task_ids) if task_id in gone]

    async def remove_by_tag(self, tag: str) -> builtins.list[str]:
        return sorted(await self._run(_ids, q.REMOVE_TAGGED, tag))

    async def clear(self) -> None:
        await self._run(_clear)
        self._signal.notify()

    # -- claims, runs and leases -----------------------------------------------------------

    async def claim_due(self, owner: str, *, now: datetime, lease: timedelta, limit: int) -> Claim:
        if limit <= 0:
            return Claim()
        return await self._run(tx.claim, owner, now, now + lease, limit)

    async def fire(
        self, owner: str, decisions: Sequence[FireDecision], *, now: datetime, lease: timedelta
    ) -> builtins.list[FireResult]:
        if not decisions:
            return []
        results, rescheduled = await self._run(tx.fire, owner, list(decisions), now + lease)
        if rescheduled:
            self._signal.notify()
        return results

    async def complete(self, owner: str, results: Sequence[RunResult]) -> set[str]:
        if not results:
            return set()
        return await self._run(tx.complete, owner, list(results))

    async def extend(
        self, owner: str, run_ids: Collection[str], *, now: datetime, lease: timedelta
    ) -> set[str]:
        if not run_ids:
            return set()
        until = to_us(now + lease)
        return set(await self._run(_ids, q.EXTEND_RUNS, until, owner, sorted(set(run_ids))))

    async def release(
        self, owner: str, *, run_ids: Collection[str], task_ids: Collection[str], now: datetime
    ) -> None:
        if not run_ids and not task_ids:
            return
        await self._run(tx.release, owner, sorted(set(run_ids)), sorted(set(task_ids)), now)
        self._signal.notify()

    async def enqueue_run(self, task_id: str, *, fire_time: datetime, now: datetime) -> Run | None:
        run = await self._run(tx.enqueue, task_id, fire_time, now)
        if run is not None:
            self._signal.notify()
        return run

    async def list_runs(self, task_id: str | None = None) -> builtins.list[Run]:
        return await self._run(tx.list_runs, task_id)

    async def next_wakeup(self) -> datetime | None:
        return await self._run(tx.next_wakeup)

    async def wakeups(self) -> AsyncIterator[None]:
        if self._pool is None:
            return  # not open: nothing to listen to (and listening must not reopen a closed store)
        closes = self._closes
        event = self._signal.subscribe()
        try:
            if self._listener is None:
                channel = f"{self.prefix}_wakeup"
                self._listener = Listener(self._connect, channel, self._signal.notify)
            self._listener.start()
            while self._closes == closes:
                await event.wait()
                event.clear()
                if self._closes != closes:
                    return
                yield
        finally:
            self._signal.unsubscribe(event)

    async def quarantined(self) -> builtins.list[QuarantinedRecord]:
        return await self._run(tx.quarantined)

    # -- dead letters and shared state -----------------------------------------------------

    async def dead_letters(self, task_id: str | None = None) -> builtins.list[DeadLetter]:
        return await self._run(dl.dead_letters, task_id)

    async def remove_dead_letters(self, ids: Collection[str]) -> builtins.list[str]:
        if not ids:
            return []
        gone = set(await self._run(_ids, q.REMOVE_DEAD_LETTERS, sorted(set(ids))))
        return [i for i in dict.fromkeys(ids) if i in gone]

    async def requeue_dead_letter(self, dead_letter_id: str, *, now: datetime) -> Run | None:
        run = await self._run(tx.requeue_dead_letter, dead_letter_id, now)
        if run is not None:
            self._signal.notify()
        return run

    async def get_state(self, key: str) -> StateRecord | None:
        return await self._run(dl.get_state, key)

    async def put_state(self, key: str, value: dict[str, Any], *, version: int) -> bool:
        return await self._run(dl.put_state, key, value, version)

    # -- plumbing: a pool, one transaction per operation -----------------------------------

    async def _run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``fn(db, *args)`` in one transaction, retried when it lost a deadlock."""
        for attempt in range(1, _ATTEMPTS + 1):
            pool = await self._ensure_pool()
            try:
                async with pool.acquire(timeout=self.connect_timeout) as conn, conn.transaction():
                    return await fn(Db(conn, self.prefix), *args)
            except StoreError:
                raise
            except Exception as exc:
                if is_retryable(exc) and attempt < _ATTEMPTS:
                    await asyncio.sleep(0.005 * attempt)
                    continue
                error = translate(exc, self._target.where)
                if error is None:
                    raise
                raise error from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _ensure_pool(self) -> Any:
        if self._pool is not None:
            return self._pool
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                try:
                    pool = await asyncpg.create_pool(
                        self._target.dsn,
                        min_size=self.min_size,
                        max_size=self.max_size,
                        timeout=self.connect_timeout,
                    )
                except Exception as exc:
                    error = translate(exc, self._target.where)
                    if error is None:
                        raise
                    raise error from None
                try:
                    await self._create_schema(pool)
                except BaseException:
                    pool.terminate()
                    raise
                self._pool = pool
        return self._pool

    async def _create_schema(self, pool: Any) -> None:
        try:
            async with pool.acquire() as conn, conn.transaction():
                db = Db(conn, self.prefix)
                await db.execute(q.SCHEMA_LOCK)
                for statement in q.SCHEMA[:-1]:
                    await db.execute(statement)
                await db.execute(q.SCHEMA[-1], str(q.SCHEMA_VERSION))
                version = await db.fetchval(q.GET_SCHEMA_VERSION)
        except Exception as exc:
            error = translate(exc, self._target.where)
            if error is None:
                raise
            raise error from exc
        if int(version) > q.SCHEMA_VERSION:
            raise StoreError(
                f"PostgreSQL store at {self._target.where} (prefix {self.prefix!r}) has schema version "
                f"{version}, made by a newer backbeat (this one knows version {q.SCHEMA_VERSION})"
            )

    async def _connect(self) -> Any:
        return await asyncpg.connect(self._target.dsn, timeout=self.connect_timeout)


async def _ids(db: Db, template: str, *args: Any) -> builtins.list[str]:
    return await db.ids(template, *args)


async def _clear(db: Db) -> None:
    await db.execute(q.CLEAR)
    await db.notify()


__all__ = ["PostgresStore"]
