"""The PostgreSQL store's plumbing: its URL, a connection wrapper that renders the table
prefix into statements, driver errors as store errors, and the NOTIFY listener."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from backbeat.errors import ConfigurationError, StoreError, StoreUnavailableError
from backbeat.stores.postgresql import queries as q
from backbeat.stores.sql.steps import Execute, ExecuteMany, Fetch, Stepper, Txn

log = logging.getLogger("backbeat.stores.postgresql")
DEFAULT_PREFIX = "backbeat"
_PREFIX = re.compile(r"[a-z_][a-z0-9_]{0,39}")

Record = Sequence[Any]
T = TypeVar("T")


class Target(NamedTuple):
    """Where the store connects, parsed from its URL."""

    dsn: str
    """The URL without backbeat's own options, for asyncpg."""
    prefix: str
    where: str
    """``host:port/database``, for messages (never the password)."""


def parse_url(url: str, prefix: str | None = None) -> Target:
    """The DSN, the table prefix (``?prefix=`` unless given) and a printable location.

    Raises:
        ConfigurationError: not a PostgreSQL URL, or a prefix that is not a plain identifier.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise ConfigurationError("a PostgreSQL store URL starts with postgresql:// or postgres://")
    query = parse_qsl(parts.query, keep_blank_values=True)
    given = [value for key, value in query if key == "prefix"]
    query = [(key, value) for key, value in query if key != "prefix"]
    chosen = prefix if prefix is not None else (given[-1] if given else DEFAULT_PREFIX)
    if not _PREFIX.fullmatch(chosen):
        raise ConfigurationError(
            f"PostgreSQL table prefix {chosen!r} must be lowercase letters, digits and _ "
            "(at most 40, not starting with a digit)"
        )
    dsn = urlunsplit(parts._replace(query=urlencode(query)))
    try:
        host, port = parts.hostname or "localhost", parts.port or 5432
    except ValueError:
        host, port = parts.hostname or "localhost", 5432
    return Target(dsn, chosen, f"{host}:{port}{parts.path or ''}")


@lru_cache(maxsize=512)
def render(template: str, prefix: str) -> str:
    """A statement template with the table prefix filled in."""
    return template.replace("{p}", prefix)


def count(status: str) -> int:
    """The row count of a command status such as ``UPDATE 3``."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class Db:
    """One connection inside one transaction, speaking in ``queries`` templates."""

    def __init__(self, conn: Any, prefix: str) -> None:
        self.conn = conn
        self.prefix = prefix

    def sql(self, template: str) -> str:
        return render(template, self.prefix)

    async def fetch(self, template: str, *args: Any) -> list[Record]:
        rows: list[Record] = await self.conn.fetch(self.sql(template), *args)
        return rows

    async def fetchval(self, template: str, *args: Any) -> Any:
        return await self.conn.fetchval(self.sql(template), *args)

    async def execute(self, template: str, *args: Any) -> int:
        """The number of rows the statement touched."""
        status: str = await self.conn.execute(self.sql(template), *args)
        return count(status)

    async def executemany(self, template: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            await self.conn.executemany(self.sql(template), rows)

    async def notify(self) -> None:
        """Wake the listeners of this prefix when the transaction commits."""
        await self.conn.execute(self.sql(q.NOTIFY))


async def drive(db: Db, txn: Txn[T]) -> tuple[T, bool]:
    """Run an operation's statements on ``db``; its result, and whether it notified."""
    stepper = Stepper(txn)
    for step in stepper:
        try:
            if isinstance(step, Fetch):
                stepper.answer(await db.fetch(step.sql, *step.params))
            elif isinstance(step, Execute):
                stepper.answer(await db.execute(step.sql, *step.params))
            elif isinstance(step, ExecuteMany):
                bulk = q.BULK.get(step.sql)
                if bulk is not None and len(step.rows) > 1:
                    await db.execute(bulk, *map(list, zip(*step.rows, strict=True)))
                else:
                    await db.executemany(step.sql, step.rows)
            else:
                await db.notify()
        except asyncpg.exceptions.PostgresError as exc:
            stepper.fail(exc)
    return stepper.result, stepper.notified


_RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InternalClientError,  # e.g. a pooled connection the server closed while idle
    # The server's trouble, not the statement's: a timeout (statement, lock, idle transaction)
    # or a cancel under load, no resources left (disk, memory), a standby after a failover. An
    # error taken for a refusal may end a run as a bare failure and quarantine its task.
    asyncpg.exceptions.OperatorInterventionError,  # 57*: query_canceled, admin/crash shutdown
    asyncpg.exceptions.LockNotAvailableError,
    asyncpg.exceptions.IdleInTransactionSessionTimeoutError,
    asyncpg.exceptions.TransactionTimeoutError,
    asyncpg.exceptions.InsufficientResourcesError,  # 53*: disk full, out of memory
    asyncpg.exceptions.ReadOnlySQLTransactionError,
)


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, _RETRYABLE)


def translate(exc: BaseException, where: str) -> StoreError | None:
    """The store error for a driver error, or ``None`` if ``exc`` is not one."""
    message = f"PostgreSQL store at {where}: {type(exc).__name__}: {exc}"
    if isinstance(exc, _UNAVAILABLE):
        return StoreUnavailableError(message)
    if isinstance(exc, asyncpg.exceptions.PostgresError | asyncpg.exceptions.InterfaceError):
        return StoreError(message)
    return None


class Listener:
    """One dedicated connection LISTENing on ``<prefix>_wakeup``; calls ``on_wakeup`` for
    each notification, and once after every reconnection (something may have been missed)."""

    def __init__(self, connect: Callable[[], Any], channel: str, on_wakeup: Callable[[], None]) -> None:
        self._connect = connect
        self._channel = channel
        self._on_wakeup = on_wakeup
        self._conn: Any = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._closed = False

    def start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name=f"backbeat-listen-{self._channel}")

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._disconnect()

    def _notified(self, *_: Any) -> None:
        self._on_wakeup()

    def _terminated(self, *_: Any) -> None:
        self._lost.set()

    async def _run(self) -> None:
        delay, first = 0.1, True
        while not self._closed:
            try:
                self._conn = await self._connect()
                self._conn.add_termination_listener(self._terminated)
                await self._conn.add_listener(self._channel, self._notified)
            except Exception as exc:  # retried with backoff
                log.warning("PostgreSQL wake-up listener cannot connect (retrying in %.1fs): %s", delay, exc)
                await self._disconnect()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            delay = 0.1
            if not first:
                self._on_wakeup()
            first = False
            self._lost.clear()
            await self._lost.wait()
            await self._disconnect()

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)
            if not conn.is_closed():
                conn.terminate()
