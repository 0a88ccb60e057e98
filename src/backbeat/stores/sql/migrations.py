"""Schema migrations of the SQL stores: each dialect's ordered list, applied at open.

A dialect lists its :class:`Migration` s in order: migration 1 creates the first schema and
migration N turns version N-1 into N. A store reads the recorded version without a lock;
only when it is older than the newest migration does it run :func:`migrate`, in one
transaction under the dialect's lock, which reads the version again (another process may
have migrated meanwhile), applies the missing migrations and records the new version. A
version newer than the code knows is refused.

Migrations 1 and 2 use ``IF NOT EXISTS`` because released code ran them on every open; a
later one runs exactly once per database and need not be idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from backbeat.errors import StoreError
from backbeat.stores.sql.steps import Txn, execute, fetch_one


@dataclass(frozen=True, slots=True)
class Migration:
    """The statements that turn schema version ``version - 1`` into ``version`` (0: no schema)."""

    version: int
    description: str
    statements: tuple[str, ...]


Migrations: TypeAlias = tuple[Migration, ...]


@dataclass(frozen=True, slots=True)
class VersionStatements:
    """How a dialect reads, records and guards its schema version."""

    table_exists: str
    """One row when the table holding the version exists (before migration 1 it does not)."""
    get: str
    """The version's row (one text column)."""
    put: str
    """Record the version (its one parameter, as text)."""
    lock: str | None = None
    """Taken first in the migrating transaction (``None``: the transaction's own lock suffices)."""


def ordered(*migrations: Migration) -> Migrations:
    """``migrations``, checked to be versions 1, 2, ... in order.

    Raises:
        ValueError: a gap, a repeat or a wrong order.
    """
    versions = [migration.version for migration in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations must be versions 1, 2, ... in order, not {versions}")
    return migrations


def latest(migrations: Sequence[Migration]) -> int:
    """The version the last migration makes."""
    return migrations[-1].version if migrations else 0


def refuse_newer(version: int, migrations: Sequence[Migration], where: str) -> None:
    """Raise :class:`StoreError` if ``version`` was made by code that knows more migrations."""
    if version > latest(migrations):
        raise StoreError(
            f"{where} has schema version {version}, made by a newer backbeat "
            f"(this one knows version {latest(migrations)})"
        )


def read_version(sql: VersionStatements) -> Txn[int]:
    """The recorded schema version; 0 before migration 1 ran."""
    if (yield from fetch_one(sql.table_exists)) is None:
        return 0
    row = yield from fetch_one(sql.get)
    return 0 if row is None else int(row[0])


def migrate(migrations: Sequence[Migration], sql: VersionStatements, where: str) -> Txn[int]:
    """Apply the migrations the schema lacks and record its new version, which is returned.

    The driver runs this in one transaction; it takes ``sql.lock`` first and then reads the
    version, so concurrent openers apply each migration once.

    Raises:
        StoreError: the schema is newer than ``migrations`` (nothing is changed).
    """
    if sql.lock is not None:
        yield from execute(sql.lock)
    version = yield from read_version(sql)
    refuse_newer(version, migrations, where)
    missing = [migration for migration in migrations if migration.version > version]
    for migration in missing:
        for statement in migration.statements:
            yield from execute(statement)
    if missing:
        yield from execute(sql.put, str(missing[-1].version))
    return max(version, latest(migrations))


__all__ = [
    "Migration",
    "Migrations",
    "VersionStatements",
    "latest",
    "migrate",
    "ordered",
    "read_version",
    "refuse_newer",
]
