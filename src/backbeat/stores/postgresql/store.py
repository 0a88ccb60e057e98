"""The PostgreSQL store: many processes on many machines sharing one database.

An asyncpg pool; every store operation is one transaction on one connection. Leases are
judged by the server's ``clock_timestamp()``, read once per operation. Claims lock
what they take with ``FOR UPDATE SKIP LOCKED``, so concurrent claimers never wait on each
other nor share a task or a run. Writing transactions that add or move due work send
``NOTIFY <prefix>_wakeup``, which ``wakeups`` hears on a dedicated connection. Every table
is named ``<prefix>_<table>`` (``table_prefix``, or ``?prefix=`` in the URL; default
``backbeat``), so several schedulers (or tests) can share one database.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any, ClassVar, TypeVar

import asyncpg
import orjson

from backbeat.abc import Store
from backbeat.errors import StoreClosedError, StoreError, TaskExistsError
from backbeat.model.records import Task
from backbeat.model.stored_text import refuse_unstorable_ids
from backbeat.stores.postgresql import queries as q
from backbeat.stores.postgresql.connection import (
    Db,
    Listener,
    drive,
    is_retryable,
    parse_url,
    render,
    translate,
)
from backbeat.stores.postgresql.migrations import MIGRATIONS
from backbeat.stores.sql import migrations
from backbeat.stores.sql.migrations import Migrations
from backbeat.stores.sql.records import task_row
from backbeat.stores.sql.steps import Dialect, Txn, fetch, fetch_one
from backbeat.stores.sql.store import SqlStore

T = TypeVar("T")
_ATTEMPTS = 5
"""Tries of an operation that lost a deadlock or a serialization conflict."""
_MIN_POOL_FOR_ADDS = 4
"""The fewest connections a pool needs before adds keep one of them."""
CLOSE_TIMEOUT = 5.0
"""Seconds ``close`` waits for the calls in flight before it closes the pool under them."""


def _server_clock() -> Txn[int]:
    """The server's clock, read in the operation's transaction (see ``queries.STORE_NOW``)."""
    row = yield from fetch_one(q.STORE_NOW)
    assert row is not None
    return int(row[0])


def _sequence_tokens(n: int) -> Txn[list[int]]:
    """``n`` values of the store's fencing sequence (see ``queries.NEXT_TOKENS``)."""
    rows = yield from fetch(q.NEXT_TOKENS, n)
    return [int(row[0]) for row in rows]


DIALECT = Dialect(
    sql=q,
    array=list,
    duplicate=(asyncpg.exceptions.UniqueViolationError,),
    clock=_server_clock,
    tokens=_sequence_tokens,
)


class PostgreSQLStore(SqlStore):
    """A store in a PostgreSQL database (tables created, or migrated, on first use).

    Args:
        url: ``postgresql://user:password@host:port/database`` (or ``postgres://``), with an
            optional ``?prefix=<table prefix>``; other query options go to asyncpg.
        table_prefix: the tables' name prefix (overrides ``?prefix=``; default ``backbeat``).
        min_size: connections the pool keeps open.
        max_size: connections the pool opens at most.
        connect_timeout: seconds to wait for a connection before
            :class:`~backbeat.errors.StoreUnavailableError` is raised.

    :meth:`close` lets the calls in flight end for :data:`CLOSE_TIMEOUT` (5 s) at most, then
    closes the pool under those left, which fail with :class:`~backbeat.errors.StoreClosedError`
    (as do calls made meanwhile: they would open a pool of their own); a call after it opens the
    store again.
    """

    dialect = DIALECT
    migrations: ClassVar[Migrations] = MIGRATIONS
    """The schema this store knows, oldest first: the tables are brought up to the last one at open."""

    def __init__(
        self,
        url: str,
        *,
        table_prefix: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 10.0,
    ) -> None:
        super().__init__()
        self._target = parse_url(url, table_prefix)
        self.prefix = self._target.prefix
        self.min_size, self.max_size = min_size, max_size
        self.connect_timeout = connect_timeout
        self._pool: Any = None
        self._opening: asyncio.Lock | None = None
        self._listener: Listener | None = None
        self._closes = 0
        self._adds_conn: Any = None
        """A pooled connection kept for adds (see ``_adding``)."""
        self._adds_busy = False
        self._calls = 0
        """Calls in flight (:meth:`_retrying`)."""
        self._closing = False
        self._drained: asyncio.Future[None] | None = None
        """Answered when the last call in flight ends while the store closes."""

    def __repr__(self) -> str:
        return f"PostgreSQLStore({self._target.where!r}, prefix={self.prefix!r})"

    async def open(self) -> None:
        await self._ensure_pool()

    async def close(self) -> None:
        self._closing = True
        try:
            drained = True
            if self._calls and self._pool is not None:
                self._drained = asyncio.get_running_loop().create_future()
                done, _ = await asyncio.wait([self._drained], timeout=CLOSE_TIMEOUT)
                drained = bool(done)
            await self._close(drained)
        finally:
            self._closing, self._drained = False, None

    async def _close(self, drained: bool) -> None:
        """Close the pool: gracefully if the calls in flight ended (``drained``), else at once."""
        pool, self._pool = self._pool, None
        if not self._adds_busy:  # else the add in flight gives it back when it ends
            held, self._adds_conn = self._adds_conn, None
            if held is not None and pool is not None:
                with contextlib.suppress(Exception):
                    await pool.release(held)
        listener, self._listener = self._listener, None
        self._closes += 1
        self._signal.notify()  # ends the wakeups() iterators
        if listener is not None:
            await listener.close()
        if pool is not None and not drained:
            pool.terminate()
        elif pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 10)
            except (TimeoutError, OSError, asyncpg.exceptions.InterfaceError):
                pool.terminate()

    async def wakeups(self) -> AsyncGenerator[None, None]:
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

    async def add(self, tasks: Sequence[Task], *, replace: bool = False) -> None:
        if not tasks or replace:
            await super().add(tasks, replace=replace)
            return
        refuse_unstorable_ids(tasks)
        if len(tasks) == 1:
            task = tasks[0]
            args: tuple[Any, ...] = (*task_row(task), list(task.tags))
            statement = q.ADD_ONE_TASK
        else:
            # rows in id order: two concurrent adds then lock rows in the same order (no deadlock)
            rows = sorted((task_row(task) for task in tasks), key=lambda row: str(row[0]))
            pairs = [(task.id, tag) for task in tasks for tag in task.tags]
            args = (orjson.dumps(rows).decode(), [p[0] for p in pairs], [p[1] for p in pairs])
            statement = q.ADD_TASKS

        sql = render(statement, self.prefix)
        if await self._retrying(lambda: self._adding(sql, args)):
            self._signal.notify()
        elif len(tasks) == 1:
            raise TaskExistsError([tasks[0].id])
        else:  # the transaction that looks the ids up first says which are taken
            await super().add(tasks, replace=replace)

    async def _adding(self, sql: str, args: tuple[Any, ...]) -> bool:
        """Run an add statement; ``False`` if an id is taken. Adds that come one after another
        keep one connection (checking one out of asyncpg's pool and back costs a task and two
        timers per call); an add that finds it busy checks one out."""
        pool = await self._ensure_pool()
        if not self._adds_busy and self.max_size >= _MIN_POOL_FOR_ADDS:
            added = await self._adding_on_kept(pool, sql, args)
            if added is not None:
                return added
        async with pool.acquire(timeout=self.connect_timeout) as conn:
            return await _execute_add(conn, sql, args)

    async def _adding_on_kept(self, pool: Any, sql: str, args: tuple[Any, ...]) -> bool | None:
        """``_adding`` on the kept connection; ``None`` if the server had closed it unseen."""
        self._adds_busy = True
        conn = self._adds_conn
        try:
            if conn is None or _lost(conn):
                conn = self._adds_conn = await pool.acquire(timeout=self.connect_timeout)
            return await _execute_add(conn, sql, args)
        except asyncpg.exceptions.InternalClientError:
            # closed by the server while idle, its farewell read as an operation in progress:
            # asyncpg refused to start this one, so nothing was sent
            self._adds_conn = None
            if conn is not None:
                conn.terminate()  # the pool takes it back and opens another
            return None
        except BaseException:
            self._adds_conn = None
            if conn is not None:
                await pool.release(conn)  # the pool resets a connection left mid-statement
            raise
        finally:
            self._adds_busy = False
            if self._pool is not pool and self._adds_conn is not None:  # closed meanwhile
                conn, self._adds_conn = self._adds_conn, None
                await pool.release(conn)

    # -- plumbing: a pool, one transaction per operation -----------------------------------

    async def _run(
        self, operation: Callable[..., Txn[T]], args: tuple[Any, ...], *, write: bool
    ) -> tuple[T, bool]:
        """A write in one transaction, a read in autocommit."""

        async def attempt() -> tuple[T, bool]:
            pool = await self._ensure_pool()
            async with pool.acquire(timeout=self.connect_timeout) as conn:
                db = Db(conn, self.prefix)
                if not write:
                    return await drive(db, operation(DIALECT, *args))
                async with conn.transaction():
                    return await drive(db, operation(DIALECT, *args))

        return await self._retrying(attempt)

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()``, again when it lost a deadlock; driver errors as store errors.

        Raises:
            StoreClosedError: the store was closing when the call began (it was not made), or
                closed the pool under it.
        """
        if self._closing:
            raise self._closed_error("closing when this call began")
        closes = self._closes
        self._calls += 1
        try:
            for tries in range(1, _ATTEMPTS + 1):
                try:
                    return await attempt()
                except StoreError:
                    raise
                except Exception as exc:
                    if self._closing or self._closes != closes:
                        raise self._closed_error("closed with this call in flight") from exc
                    if is_retryable(exc) and tries < _ATTEMPTS:
                        await asyncio.sleep(0.005 * tries)
                        continue
                    error = translate(exc, self._target.where)
                    if error is None:
                        raise
                    raise error from exc
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            self._calls -= 1
            drained = self._drained
            if not self._calls and drained is not None and not drained.done():
                drained.set_result(None)

    def _closed_error(self, when: str) -> StoreClosedError:
        return StoreClosedError(
            f"PostgreSQL store at {self._target.where} (prefix {self.prefix!r}) was {when}"
        )

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
                        reset=_keep_session,
                    )
                except Exception as exc:
                    error = translate(exc, self._target.where)
                    if error is None:
                        raise
                    raise error from None
                try:
                    await self._migrate(pool)
                except BaseException:
                    pool.terminate()
                    raise
                self._pool = pool
        return self._pool

    async def _migrate(self, pool: Any) -> None:
        """Bring the schema up to :attr:`migrations`. A current one is only read: DDL such as
        ``CREATE INDEX IF NOT EXISTS`` locks tables even when it does nothing, which would stall
        (and can deadlock with) the other processes' work at every start."""
        where = f"PostgreSQL store at {self._target.where} (prefix {self.prefix!r})"

        async def attempt() -> None:
            async with pool.acquire() as conn:
                db = Db(conn, self.prefix)
                version, _ = await drive(db, migrations.read_version(q.VERSION))
                migrations.refuse_newer(version, self.migrations, where)
                if version < migrations.latest(self.migrations):
                    async with conn.transaction():
                        await drive(db, migrations.migrate(self.migrations, q.VERSION, where))

        await self._retrying(attempt)

    async def _connect(self) -> Any:
        return await asyncpg.connect(self._target.dsn, timeout=self.connect_timeout)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset: nothing. asyncpg's default sends UNLISTEN, RESET ALL, ... on every
    release, a round trip per store call; pooled connections keep no session state here (the
    listener has a connection of its own, migrations take transaction-scoped locks only)."""


def _lost(conn: Any) -> bool:
    """Whether a kept pool connection closed while idle (the pool then took it back)."""
    try:
        return bool(conn.is_closed())
    except asyncpg.exceptions.InterfaceError:  # released to the pool when it closed
        return True


async def _execute_add(conn: Any, sql: str, args: tuple[Any, ...]) -> bool:
    try:
        await conn.execute(sql, *args)
    except asyncpg.exceptions.UniqueViolationError:
        return False
    return True


_: type[Store] = PostgreSQLStore
"""mypy checks here that ``PostgreSQLStore`` satisfies the ``Store`` protocol."""


__all__ = ["PostgreSQLStore"]
