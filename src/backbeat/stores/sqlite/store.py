"""The SQLite store: the embedded default, safe for several processes sharing one file.

One ``sqlite3`` connection lives in one worker thread; every store operation is one
function (one transaction) run there, so the event loop never waits on the database and
pays one thread hop per operation. Writes take the write lock up front (``BEGIN
IMMEDIATE``): two processes never deadlock upgrading a read lock. Opening reads the schema
version; only an older file is migrated, inside one such transaction. The SQL is in
:mod:`backbeat.stores.sqlite.queries`, its schema in :mod:`backbeat.stores.sqlite.migrations`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from functools import cache
from typing import Any, ClassVar, TypeVar

import orjson

from backbeat.abc import Store
from backbeat.errors import StoreError, StoreUnavailableError
from backbeat.model.records import Claim
from backbeat.stores._common import LeaseClock, host_clock
from backbeat.stores.sql import migrations, runs
from backbeat.stores.sql.migrations import Migrations
from backbeat.stores.sql.steps import Dialect, Execute, ExecuteMany, Fetch, Stepper, Txn, fetch_one, to_us
from backbeat.stores.sql.store import SqlStore
from backbeat.stores.sqlite import queries as q
from backbeat.stores.sqlite.migrations import MIGRATIONS

T = TypeVar("T")
_UNAVAILABLE = ("locked", "busy", "unable to open", "disk i/o")


def _json_array(values: Iterable[Any]) -> str:
    """A list as the JSON array that ``json_each(?)`` reads."""
    return orjson.dumps(list(values)).decode()


def _lease_clock(clock: LeaseClock) -> Callable[[], Txn[int]]:
    def now() -> Txn[int]:
        yield from ()
        return to_us(clock())

    return now


def _counter_tokens(n: int) -> Txn[list[int]]:
    """``n`` new fencing tokens from the ``counters`` row (see ``queries.NEXT_TOKENS``)."""
    row = yield from fetch_one(q.NEXT_TOKENS, n)
    assert row is not None
    last = int(row[0])
    return list(range(last - n + 1, last + 1))


DIALECT = Dialect(
    sql=q,
    array=_json_array,
    duplicate=(sqlite3.IntegrityError,),
    clock=_lease_clock(host_clock),
    tokens=_counter_tokens,
)


class SQLiteStore(SqlStore):
    """A store in one SQLite file (WAL mode), shared safely by every process that opens it.

    Args:
        path: the database file (created if missing).
        busy_timeout: seconds to wait for another process's write lock before
            :class:`~backbeat.errors.StoreUnavailableError` is raised.
        poll_interval: seconds between checks for other processes' commits (``wakeups``).
        lease_clock: the clock claims and run leases are judged by (default: this host's).
            Every process sharing the file runs on one host (SQLite needs a local file
            system's locks), so all read the same OS clock; tests pass a fake one.
    """

    dialect = DIALECT
    migrations: ClassVar[Migrations] = MIGRATIONS
    """The schema this store knows, oldest first: a file is brought up to the last one at open."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 10.0,
        poll_interval: float = 0.005,
        lease_clock: LeaseClock = host_clock,
    ) -> None:
        super().__init__()
        self.lease_clock = lease_clock
        self.dialect = replace(DIALECT, clock=_lease_clock(lease_clock))
        self.path = os.fspath(path)
        self.busy_timeout = busy_timeout
        self.poll_interval = poll_interval
        self._db: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
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

    async def claim_due(
        self, owner: str, *, now: datetime, lease: timedelta, limit: int, horizon: datetime | None = None
    ) -> Claim:
        if limit <= 0:
            return Claim()

        def claim(db: sqlite3.Connection) -> Claim:
            # a read first: idle pollers in many processes then never queue for the write lock
            (scheduled, ended), _ = _drive(db, runs.earliest(self.dialect))
            if (scheduled is None or scheduled > (horizon or now)) and (
                ended is None or ended > self.lease_clock()
            ):
                return Claim()
            claimed, _ = self._transaction(
                db, runs.claim(self.dialect, owner, now, horizon or now, lease, limit)
            )
            return claimed

        return await self._call(claim)

    async def wakeups(self) -> AsyncGenerator[None, None]:
        if self._executor is None:
            return  # not open: nothing to listen to (and listening must not reopen a closed store)
        closes = self._closes
        event = self._signal.subscribe()
        try:
            seen = await self._call(_data_version)
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
                version = await self._call(_data_version)
                if version != seen:
                    seen = version
                    yield
        finally:
            self._signal.unsubscribe(event)

    def _caller_now(self, now: datetime | None) -> datetime | None:
        return now  # lease ends by this host's clock are already in the callers' (unless given)

    # -- plumbing: one thread, one connection, one transaction per operation ---------------

    async def _run(
        self, operation: Callable[..., Txn[T]], args: tuple[Any, ...], *, write: bool
    ) -> tuple[T, bool]:
        def run(db: sqlite3.Connection) -> tuple[T, bool]:
            txn = operation(self.dialect, *args)
            # a read runs in autocommit mode: the quarantine of a corrupt row it found commits alone
            return self._transaction(db, txn) if write else _drive(db, txn)

        return await self._call(run)

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backbeat-sqlite")
        # If the caller is cancelled the operation still finishes (or not) as a whole: a claim
        # nobody receives then expires with its lease.
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._in_thread, fn)

    def _in_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            if self._db is None:
                self._db = self._connect()
            return fn(self._db)
        except sqlite3.Error as exc:
            message = f"SQLite store {self.path}: {exc}"
            if isinstance(exc, sqlite3.OperationalError) and any(s in str(exc).lower() for s in _UNAVAILABLE):
                raise StoreUnavailableError(message) from exc
            raise StoreError(message) from exc

    @staticmethod
    def _transaction(db: sqlite3.Connection, txn: Txn[T]) -> tuple[T, bool]:
        db.execute("BEGIN IMMEDIATE")
        try:
            result = _drive(db, txn)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return result

    def _connect(self) -> sqlite3.Connection:
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
            self._migrate(db)
        except BaseException:
            db.close()
            raise
        return db

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Bring the file's schema up to :attr:`migrations`; a current one costs one read and no lock."""
        where = f"SQLite store {self.path}"
        version, _ = _drive(db, migrations.read_version(q.VERSION))
        migrations.refuse_newer(version, self.migrations, where)
        if version < migrations.latest(self.migrations):
            self._transaction(db, migrations.migrate(self.migrations, q.VERSION, where))

    def _disconnect(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _drive(db: sqlite3.Connection, txn: Txn[T]) -> tuple[T, bool]:
    """Run an operation's statements on ``db``; its result, and whether it asked to notify."""
    stepper = Stepper(txn)
    for step in stepper:
        try:
            if isinstance(step, Fetch):
                stepper.answer(db.execute(step.sql, _bound(step.sql, step.params)).fetchall())
            elif isinstance(step, Execute):
                stepper.answer(db.execute(step.sql, _bound(step.sql, step.params)).rowcount)
            elif isinstance(step, ExecuteMany):
                db.executemany(step.sql, [_bound(step.sql, row) for row in step.rows])
            # NOTIFY: the store wakes its own listeners after the commit; others poll data_version
        except sqlite3.Error as exc:
            stepper.fail(exc)
    return stepper.result, stepper.notified


@cache
def _numbered(sql: str) -> bool:
    return re.search(r"\?\d", sql) is not None


def _bound(sql: str, params: Sequence[Any]) -> Sequence[Any] | dict[str, Any]:
    """``params`` as ``sql`` binds them: ``?1``-style placeholders by number, since Python 3.12
    deprecates binding them from a sequence (an error from 3.14)."""
    return {str(number): value for number, value in enumerate(params, 1)} if _numbered(sql) else params


def _data_version(db: sqlite3.Connection) -> int:
    """Changes whenever *another* connection committed to the file."""
    version: int = db.execute(q.DATA_VERSION).fetchone()[0]
    return version


_: type[Store] = SQLiteStore
"""mypy checks here that ``SQLiteStore`` satisfies the ``Store`` protocol."""


__all__ = ["SQLiteStore"]
