"""The PostgreSQL store's schema migrations: an older schema is brought up to date once, under
the prefix's advisory lock, and then behaves as a fresh one; a newer one is refused untouched;
a current one is opened without any lock but its read of the version."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest

from backbeat.errors import StoreError
from backbeat.stores.postgresql import PostgreSQLStore, queries
from backbeat.stores.postgresql.connection import render
from backbeat.stores.postgresql.migrations import MIGRATIONS
from backbeat.stores.sql.migrations import Migration, latest
from tests.integration.upgrades import check_downgrades, observe, write_history

pytestmark = pytest.mark.postgresql

URL = os.environ.get("BACKBEAT_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test")
NEXT = latest(MIGRATIONS) + 1
DOWNGRADES = {
    6: (),
    5: ("ALTER TABLE {p}_runs DROP COLUMN detached",),
    4: ("DROP TABLE {p}_history",),
    3: ("ALTER TABLE {p}_runs DROP COLUMN fencing_token",),  # and its sequence, owned by the column
    2: ("DROP INDEX {p}_tasks_claims",),
}
"""What undoes each migration after version 1 (see ``tests.integration.upgrades``)."""


class NextStore(PostgreSQLStore):
    """A store of a later release, with one more migration; it fails if run twice."""

    migrations = (
        *MIGRATIONS,
        Migration(
            NEXT,
            "a note on tasks",
            ("ALTER TABLE {p}_tasks ADD COLUMN note TEXT", "CREATE INDEX {p}_tasks_note ON {p}_tasks (note)"),
        ),
    )


async def _sql(sql: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(URL)
    try:
        rows: list[Any] = await conn.fetch(sql, *args)
        return rows
    finally:
        await conn.close()


@pytest.fixture
async def prefixes() -> AsyncIterator[Callable[[], str]]:
    """Fresh table prefixes; their tables are dropped after the test."""
    try:
        await _sql("SELECT 1")
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"no PostgreSQL server at {URL}: {exc}")
    made: list[str] = []

    def make() -> str:
        made.append(f"bb_{uuid.uuid4().hex[:10]}")
        return made[-1]

    yield make
    for prefix in made:
        tables = ", ".join(f"{prefix}_{table}" for table in queries.TABLES)
        await _sql(f"DROP TABLE IF EXISTS {tables} CASCADE")


async def written(store: PostgreSQLStore) -> None:
    await store.open()
    try:
        await write_history(store)
    finally:
        await store.close()


async def written_as_version_1(prefix: str) -> None:
    """The history in tables as the first release left them."""
    await written(PostgreSQLStore(URL, table_prefix=prefix))
    for statements in check_downgrades(DOWNGRADES, NEXT - 1):
        for sql in statements:
            await _sql(render(sql, prefix))
    await _sql(f"UPDATE {prefix}_meta SET value = '1' WHERE key = 'schema_version'")


async def observed(store: PostgreSQLStore) -> list[object]:
    await store.open()
    try:
        return await observe(store)
    finally:
        await store.close()


async def schema_version(prefix: str) -> str | None:
    rows = await _sql(f"SELECT value FROM {prefix}_meta WHERE key = 'schema_version'")
    return str(rows[0][0]) if rows else None


async def schema(prefix: str) -> list[tuple[str, ...]]:
    """Every column and index of the prefix's tables, the prefix left out."""
    columns = await _sql(
        "SELECT table_name, column_name, data_type, coalesce(column_default, ''), is_nullable "
        "FROM information_schema.columns WHERE table_name LIKE $1 ORDER BY 1, 2",
        f"{prefix}\\_%",
    )
    indexes = await _sql(
        "SELECT indexdef FROM pg_indexes WHERE tablename LIKE $1 ORDER BY 1", f"{prefix}\\_%"
    )
    return [tuple(str(value).replace(prefix, "P") for value in row) for row in [*columns, *indexes]]


async def contents(prefix: str) -> list[tuple[str, list[Any]]]:
    return [
        (table, [tuple(row) for row in await _sql(f"SELECT * FROM {prefix}_{table} ORDER BY 1")])
        for table in queries.TABLES
    ]


async def hold(conn: Any, prefix: str, *tables: str) -> None:
    """Inside ``conn``'s transaction: the prefix's migration lock, and ``tables`` locked for nobody else."""
    await conn.execute(render(queries.SCHEMA_LOCK, prefix))
    for table in tables:
        await conn.execute(f"LOCK TABLE {prefix}_{table} IN ACCESS EXCLUSIVE MODE")


async def blocked_by(conn: Any) -> int:
    """How many other sessions wait for an advisory lock ``conn`` holds."""
    waiting: int = await conn.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND $1 = ANY(pg_blocking_pids(pid))",
        conn.get_server_pid(),
    )
    return waiting


async def test_a_version_1_schema_is_migrated_and_then_behaves_as_a_fresh_one(
    prefixes: Callable[[], str],
) -> None:
    old, fresh = prefixes(), prefixes()
    await written_as_version_1(old)
    assert await schema_version(old) == "1"
    await written(NextStore(URL, table_prefix=fresh))

    migrated = await observed(NextStore(URL, table_prefix=old))

    assert await schema_version(old) == str(NEXT)
    assert await schema(old) == await schema(fresh)
    assert migrated == await observed(NextStore(URL, table_prefix=fresh))
    assert migrated[0] != ([], None)  # the history's tasks were there to compare


@pytest.mark.parametrize("start", [0, 1], ids=["no-tables", "version-1"])
async def test_concurrent_opens_of_an_old_schema_migrate_it_once(
    prefixes: Callable[[], str], start: int
) -> None:
    prefix = prefixes()
    if start:
        await written_as_version_1(prefix)
    stores = [NextStore(URL, table_prefix=prefix) for _ in range(4)]
    holder = await asyncpg.connect(URL)
    try:
        async with holder.transaction():
            await hold(holder, prefix)
            opening = asyncio.gather(*(store.open() for store in stores))
            # every opener has read the old version and waits for the lock: they all migrate
            # unless each reads the version again once it holds the lock
            for _ in range(200):
                if await blocked_by(holder) == len(stores):
                    break
                await asyncio.sleep(0.025)
            assert await blocked_by(holder) == len(stores)
        await asyncio.wait_for(opening, 10)
        assert await schema_version(prefix) == str(NEXT)
        notes = await _sql(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = $1 AND column_name = 'note'",
            f"{prefix}_tasks",
        )
        assert notes[0][0] == 1
        assert [len((await store.list())[0]) for store in stores] == [4 if start else 0] * len(stores)
    finally:
        await holder.close()
        for store in stores:
            await store.close()


async def test_a_newer_schema_is_refused_naming_both_versions_and_left_as_it_was(
    prefixes: Callable[[], str],
) -> None:
    prefix = prefixes()
    await written(PostgreSQLStore(URL, table_prefix=prefix))
    await _sql(f"UPDATE {prefix}_meta SET value = $1 WHERE key = 'schema_version'", str(NEXT))
    before = (await schema(prefix), await contents(prefix))

    store = PostgreSQLStore(URL, table_prefix=prefix)
    holder = await asyncpg.connect(URL)
    try:
        async with holder.transaction():
            await hold(holder, prefix)  # refused at once, without waiting for the migration lock
            known = rf"schema version {NEXT}, made by a newer backbeat \(this one knows version {NEXT - 1}\)"
            with pytest.raises(StoreError, match=known):
                await asyncio.wait_for(store.open(), 5)
    finally:
        await holder.close()
        await store.close()

    assert (await schema(prefix), await contents(prefix)) == before


async def test_opening_a_current_schema_takes_no_lock_but_its_version_read(
    prefixes: Callable[[], str],
) -> None:
    prefix = prefixes()
    await written(PostgreSQLStore(URL, table_prefix=prefix))
    holder = await asyncpg.connect(URL)
    current = PostgreSQLStore(URL, table_prefix=prefix)
    migrating = NextStore(URL, table_prefix=prefix)
    try:
        async with holder.transaction():
            # every table but the one holding the version, and the migration lock
            await hold(holder, prefix, *(table for table in queries.TABLES if table != "meta"))
            await asyncio.wait_for(current.open(), 5)
            # the check can fail: an open that has a migration to run waits for these locks
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(migrating.open(), 1)
        assert len((await current.list())[0]) == 4
        assert await schema_version(prefix) == str(NEXT - 1)
    finally:
        await holder.close()
        await current.close()
        await migrating.close()
