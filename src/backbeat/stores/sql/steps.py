"""What a SQL store operation asks of its driver, one statement at a time.

An operation is a generator (:data:`Txn`) that yields :class:`Fetch`, :class:`Execute`,
:class:`ExecuteMany` or :data:`NOTIFY` and is sent each one's result. It never touches a
connection, so the same code runs on a blocking ``sqlite3`` connection and on an asyncpg one.
A driver error is thrown into the generator at the ``yield`` that caused it, where the
operation may handle it (a duplicate key, say); otherwise it ends the transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeAlias, TypeVar

T = TypeVar("T")
Row: TypeAlias = Sequence[Any]


@dataclass(frozen=True, slots=True)
class Fetch:
    """Run ``sql``; the result is the list of rows."""

    sql: str
    params: Sequence[Any] = ()


@dataclass(frozen=True, slots=True)
class Execute:
    """Run ``sql``; the result is the number of rows it changed."""

    sql: str
    params: Sequence[Any] = ()


@dataclass(frozen=True, slots=True)
class ExecuteMany:
    """Run ``sql`` once per row of parameters (nothing if there are none); the result is ``None``."""

    sql: str
    rows: Sequence[Sequence[Any]]


class Notify:
    """Wake other schedulers' ``wakeups`` once this transaction commits: it added or moved due work."""


NOTIFY = Notify()
Step: TypeAlias = Fetch | Execute | ExecuteMany | Notify
Txn: TypeAlias = Generator[Step, Any, T]
"""A store operation: yields steps, is sent their results, returns its own result."""


class Stepper(Generic[T]):
    """Walks a driver through one operation, the generator protocol written once::

    stepper = Stepper(txn)
    for step in stepper:  # the same loop in a sync and in an async driver
        try:
            stepper.answer(run(step))  # or await
        except DriverError as exc:
            stepper.fail(exc)  # thrown into the operation, which may handle it
    return stepper.result, stepper.notified
    """

    def __init__(self, txn: Txn[T]) -> None:
        self._txn = txn
        self._answer: Any = None
        self._error: BaseException | None = None
        self.notified = False
        """Whether the operation asked to notify (after its commit)."""
        self.result: T

    def __iter__(self) -> Stepper[T]:
        return self

    def __next__(self) -> Step:
        error, self._error = self._error, None
        answer, self._answer = self._answer, None
        try:
            step = self._txn.send(answer) if error is None else self._txn.throw(error)
        except StopIteration as stop:
            self.result = stop.value
            raise
        self.notified = self.notified or isinstance(step, Notify)
        return step

    def answer(self, value: Any) -> None:
        self._answer = value

    def fail(self, error: BaseException) -> None:
        self._error = error


class Statements(Protocol):
    """The named statements a SQL dialect provides (a module of string constants).

    Positional parameters are in the same order in every dialect; a list parameter is one
    value made by :attr:`Dialect.array`.
    """

    TASK_COLUMNS: str
    INSERT_TASK: str
    UPSERT_TASK: str
    EXISTING_TASKS: str
    DELETE_TAGS: str
    INSERT_TAGS: str
    GET_TASK: str
    LOCK_TASK: str
    GET_TASKS: str
    UPDATE_TASK: str
    LIST_TASKS: str
    REMOVE_TASKS: str
    REMOVE_TAGGED: str
    CLEAR: tuple[str, ...]
    QUARANTINE: str
    QUARANTINED: str
    QUARANTINE_TASK: str
    CLAIMABLE_RUNS: str
    LEASE_RUN: str
    DUE_TASKS: str
    CLAIM_TASKS: str
    DROP_CLAIM: str
    FIRE_STATE: str
    EXISTING_RUNS: str
    ADOPT_RUNS: str
    INSERT_RUN: str
    FIRED: str
    DELETE_TASK: str
    RUN_OWNERS: str
    NEXT_TOKENS: str
    RETRY_RUN: str
    DELETE_RUNS: str
    COUNT_RUNS: str
    REMOVE_FINISHED: str
    PROMOTE_BUFFERED: str
    DROP_BUFFERED: str
    DETACH_RUNS: str
    DETACH_IN_FLIGHT: str
    DETACH_TAGGED: str
    EXTEND_RUNS: str
    RELEASE_RUNS: str
    RELEASE_TASKS: str
    ENQUEUE_STATE: str
    RUN_EXISTS: str
    ADD_RUNNING: str
    LIST_RUNS: str
    LIST_TASK_RUNS: str
    NEXT_WAKEUP: str
    SAVE_DEAD_LETTER: str
    DEAD_LETTERS: str
    TASK_DEAD_LETTERS: str
    DEAD_LETTER: str
    REMOVE_DEAD_LETTERS: str
    GET_STATE: str
    INSERT_STATE: str
    UPDATE_STATE: str
    INSERT_HISTORY: str
    PRUNE_TASK_OLD: str
    PRUNE_TASK_EXCESS: str
    PRUNE_OLD: str
    HISTORY: str
    TASK_HISTORY: str


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between SQL databases, as the shared operations see it."""

    sql: Statements
    array: Callable[[Iterable[Any]], Any]
    """A list of strings (or of integers) as one statement parameter."""
    duplicate: tuple[type[Exception], ...]
    """What the driver raises when an insert meets an existing key."""
    clock: Callable[[], Txn[int]]
    """The store's clock (epoch microseconds), which leases are judged by: a statement for
    a server, the host's clock for an embedded database."""
    tokens: Callable[[int], Txn[list[int]]]
    """``n`` new fencing tokens, each greater than every one handed out before."""


# -- typed shorthands for ``yield`` ------------------------------------------------------------


def fetch(sql: str, *params: Any) -> Txn[list[Row]]:
    rows: list[Row] = yield Fetch(sql, params)
    return rows


def fetch_one(sql: str, *params: Any) -> Txn[Row | None]:
    rows: list[Row] = yield Fetch(sql, params)
    return rows[0] if rows else None


def fetch_ids(sql: str, *params: Any) -> Txn[list[str]]:
    """The first column of every row (the ids of a ``... RETURNING id``)."""
    rows: list[Row] = yield Fetch(sql, params)
    return [str(row[0]) for row in rows]


def execute(sql: str, *params: Any) -> Txn[int]:
    count: int = yield Execute(sql, params)
    return count


def execute_many(sql: str, rows: Sequence[Sequence[Any]]) -> Txn[None]:
    if rows:
        yield ExecuteMany(sql, rows)


def notify() -> Txn[None]:
    yield NOTIFY


# -- times are integer microseconds since the epoch ---------------------------------------------

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def to_us(value: datetime) -> int:
    return (value - EPOCH) // _US


def opt_us(value: datetime | None) -> int | None:
    return None if value is None else (value - EPOCH) // _US


def from_us(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)
