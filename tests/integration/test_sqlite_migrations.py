"""The SQLite store's schema migrations: an older file is brought up to date once, under the
write lock, and then behaves as a fresh one; a newer one is refused untouched; a current one
is opened without the write lock."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from backbeat.errors import StoreError, StoreUnavailableError
from backbeat.model.history import HistoryQuery
from backbeat.stores.sql.migrations import Migration, latest
from backbeat.stores.sqlite.migrations import MIGRATIONS
from backbeat.stores.sqlite.store import SQLiteStore
from tests.contract.helpers import T0
from tests.contract.test_history import entry
from tests.integration.upgrades import check_downgrades, observe, write_history

pytestmark = pytest.mark.sqlite


class NextStore(SQLiteStore):
    """A store of a later release, with one more migration; it fails if run twice."""

    migrations = (
        *MIGRATIONS,
        Migration(latest(MIGRATIONS) + 1, "a note on tasks", ("ALTER TABLE tasks ADD COLUMN note TEXT",)),
    )


CURRENT = latest(MIGRATIONS)
NEWER = CURRENT + 1
DOWNGRADES = {
    7: ("DROP INDEX history_task_end_id", "CREATE INDEX history_task_end ON history (task_id, ended_at)"),
    6: ("ALTER TABLE runs DROP COLUMN detached",),
    5: ("DROP TABLE history",),
    4: ("ALTER TABLE runs DROP COLUMN fencing_token", "DROP TABLE counters"),
    3: ("DROP INDEX tasks_claims",),
    2: ("DROP TABLE dead_letters", "DROP TABLE state"),
}
"""What undoes each migration after version 1 (see ``tests.integration.upgrades``)."""


def schema_version(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as db:
        (version,) = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return str(version)


def schema(path: Path) -> list[tuple[str, str]]:
    """Every table and index of the file, with the SQL that created it."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
        return [(str(name), str(sql)) for name, sql in rows]


def dump(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return list(db.iterdump())


@contextlib.contextmanager
def write_locked(path: Path) -> Iterator[None]:
    """Another process's write transaction on the file, held inside the block."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            db.execute("ROLLBACK")


async def written(store: SQLiteStore) -> None:
    await store.open()
    try:
        await write_history(store)
    finally:
        await store.close()


async def written_as_version_1(path: Path) -> None:
    """The history in a file as the first release left it."""
    await written(SQLiteStore(path))
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        for statements in check_downgrades(DOWNGRADES, CURRENT):
            for sql in statements:
                db.execute(sql)
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")


async def observed(store: SQLiteStore) -> list[object]:
    await store.open()
    try:
        return await observe(store)
    finally:
        await store.close()


async def test_a_version_1_file_is_migrated_and_then_behaves_as_a_fresh_one(tmp_path: Path) -> None:
    old, fresh = tmp_path / "old.db", tmp_path / "fresh.db"
    await written_as_version_1(old)
    assert schema_version(old) == "1"
    assert "dead_letters" not in dict(schema(old))
    await written(SQLiteStore(fresh))

    migrated = await observed(SQLiteStore(old))

    assert schema_version(old) == str(latest(MIGRATIONS)) == "7"
    assert schema(old) == schema(fresh)
    assert migrated == await observed(SQLiteStore(fresh))
    assert migrated[0] != ([], None)  # the history's tasks were there to compare


async def test_a_newer_schema_is_refused_naming_both_versions_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    await written(SQLiteStore(path))
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(NEWER),))
    before = dump(path)

    store = SQLiteStore(path)
    with pytest.raises(
        StoreError,
        match=rf"schema version {NEWER}, made by a newer backbeat \(this one knows version {CURRENT}\)",
    ):
        await store.open()
    await store.close()

    assert dump(path) == before


async def test_opening_a_current_file_takes_no_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "current.db"
    await written(SQLiteStore(path))
    with write_locked(path):
        current = SQLiteStore(path, busy_timeout=0.3)
        await current.open()  # while another process writes
        assert len((await current.list())[0]) == 4
        await current.close()
        # what the check would see if opening took the lock: a file to migrate waits for it
        migrating = NextStore(path, busy_timeout=0.3)
        with pytest.raises(StoreUnavailableError):
            await migrating.open()
        await migrating.close()
    assert schema_version(path) == str(CURRENT)


async def test_concurrent_opens_of_an_old_file_migrate_it_once(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    await written(SQLiteStore(path))
    stores = [NextStore(path) for _ in range(4)]
    try:
        with write_locked(path):
            # each reads the current version, then waits for the write lock held here
            opening = asyncio.gather(*(store.open() for store in stores))
            await asyncio.sleep(0.5)
        await asyncio.wait_for(opening, 10)  # a second ALTER TABLE would fail one of them
        assert schema_version(path) == str(NEWER)
        with contextlib.closing(sqlite3.connect(path)) as db:
            columns = [row[1] for row in db.execute("PRAGMA table_info(tasks)")]
        assert columns.count("note") == 1
        assert [len((await store.list())[0]) for store in stores] == [4] * 4
    finally:
        for store in stores:
            await store.close()


async def test_a_version_5_run_history_is_migrated_to_the_unique_index_keeping_one_copy_of_each_entry(
    tmp_path: Path,
) -> None:
    old, fresh = tmp_path / "old.db", tmp_path / "fresh.db"
    entries = [entry(f"task-{i % 3}", T0 + timedelta(seconds=i // 2)) for i in range(40)]
    for path in (old, fresh):
        store = SQLiteStore(path)
        await store.open()
        try:
            await store.record_history(entries)
        finally:
            await store.close()
    with contextlib.closing(sqlite3.connect(old)) as db, db:
        for sql in (*DOWNGRADES[7], *DOWNGRADES[6]):
            db.execute(sql)
        # a copy version 5 could not have written, but a migration must not fail on
        db.execute("INSERT INTO history SELECT * FROM history WHERE task_id = 'task-1' LIMIT 2")
        db.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")

    async def read(path: Path) -> list[object]:
        store = SQLiteStore(path)
        await store.open()
        try:
            seen: list[object] = [await store.run_history(HistoryQuery(limit=100))]
            seen += [await store.run_history(HistoryQuery(task_id=f"task-{i}", limit=5)) for i in range(3)]
            await store.record_history(entries[:5])  # recorded already: ignored
            seen.append(await store.run_history(HistoryQuery(limit=100)))
            return seen
        finally:
            await store.close()

    migrated = await read(old)

    assert schema_version(old) == str(latest(MIGRATIONS))
    assert migrated == await read(fresh)
    assert len(migrated[0][0]) == len(migrated[-1][0]) == 40  # type: ignore[index]
    assert schema(old) == schema(fresh)
