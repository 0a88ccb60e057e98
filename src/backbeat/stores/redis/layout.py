"""The key layout version of a Redis store, and the migrations that bring old layouts up to it.

``{prefix}:layout`` holds the version the store's keys follow. At open, a store reads it:
when it is current nothing else happens; a newer one is refused; an older one (or none: a
store written before the version key, or a new one) is migrated by the missing
:class:`LayoutMigration` s in order, while ``{prefix}:layout_lock`` is held. Each migration's
version is recorded as soon as it is done, so a migration cut short resumes with the next
open. A migration is a function over the client; it must finish within :data:`LOCK_TTL`
(the lock's expiry, which frees it from a process that died holding it).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from backbeat.errors import StoreError, StoreUnavailableError
from backbeat.stores.redis.codec import text
from backbeat.stores.redis.connection import Client
from backbeat.stores.redis.keys import Keys
from backbeat.stores.redis.scripts import source

LOCK_TTL = 60.0
"""Seconds the layout lock lasts unless released: longer than any migration."""
LOCK_WAIT = 90.0
"""Seconds an open waits for another process's migration before giving up."""
_POLL = 0.05
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class LayoutMigration:
    """Turns key layout version ``version - 1`` into ``version`` (0: keys without a version)."""

    version: int
    description: str
    apply: Callable[[Client, Keys], Awaitable[None]]


async def _index_orphans(client: Client, keys: Keys) -> None:
    """Build the orphaned index of a store written before it existed (once per store)."""
    if await client.exists(keys.orphans_indexed):
        return
    cursor = 0
    while True:
        cursor, lives = await client.hscan(keys.live, cursor, count=1000)
        assert isinstance(lives, dict)
        orphans = [text(task_id) for task_id, live in lives.items() if "o" in text(live).split("|")[7]]
        if orphans:
            await client.zadd(keys.orphaned, dict.fromkeys(orphans, 0))
        if not cursor:
            break
    await client.set(keys.orphans_indexed, b"1")


async def _lean_documents(client: Client, keys: Keys) -> None:
    """Nothing to rewrite: full documents stay readable (:func:`.codec.task_from`); the version
    keeps a backbeat that cannot read lean ones (it needs their id) from opening the store."""


_BATCH = 1000


async def _records(client: Client, keys: Keys) -> None:
    """Live fields into the records, the id index in listpack buckets, claims and waiting runs in
    indexes of their own.

    Documents are kept as they are (layout-2 objects stay readable); each step is a script
    call over one batch, so an interrupted migration goes on where it stopped.
    """
    script = client.register_script(source("migrate3"))

    async def run(*args: str | int) -> Any:
        # a big store takes a while (100,000 tasks: 3.4 s here): the lock lasts while batches go on
        await client.pexpire(keys.layout_lock, int(LOCK_TTL * 1000))
        return await script(keys=[keys.tasks], args=[keys.base, *args])

    while await client.exists(keys.live):
        cursor = 0
        while True:
            cursor, lives = await client.hscan(keys.live, cursor, count=_BATCH)
            assert isinstance(lives, dict)
            if lives:
                await run("merge", *(text(task_id) for task_id in lives))
            if not cursor:
                break
    while await run("index", _BATCH):
        pass
    for step in ("claims", "runs"):
        offset = 0
        while offset >= 0:
            offset = int(await run(step, offset, _BATCH))


async def _history_by_task(client: Client, keys: Keys) -> None:
    """Every task's history sorted set into the one per-task index (see ``migrate4.lua``), a
    batch of tasks per script call, so an interrupted migration goes on where it stopped."""
    script = client.register_script(source("migrate4"))
    while True:
        await client.pexpire(keys.layout_lock, int(LOCK_TTL * 1000))
        if not int(await script(keys=[keys.tasks], args=[keys.base, 100])):
            break


async def _recent_ids(client: Client, keys: Keys) -> None:
    """Nothing to rewrite: a store without the list of recent ids has none; the version keeps a
    backbeat that would not list the ids in it (or clear it) from opening the store."""


async def _lean_history(client: Client, keys: Keys) -> None:
    """Nothing to rewrite: history documents that hold their end and outcome stay readable; the
    version keeps a backbeat that reads them from the document alone (it would leave out every
    plain success's entry written since, logged as unreadable) from opening the store."""


async def _history_batches(client: Client, keys: Keys) -> None:
    """Nothing to rewrite: entries written before stay in their keys, read and pruned beside the
    batches (:mod:`.redis.history`); the version keeps a backbeat that would not see the entries
    written in batches (nor prune or clear them) from opening the store."""


MIGRATIONS: tuple[LayoutMigration, ...] = (
    LayoutMigration(1, "the first release's layout: build the orphaned index it may lack", _index_orphans),
    LayoutMigration(
        2, "lean task documents, written from now on; full ones stay as they are", _lean_documents
    ),
    LayoutMigration(
        3,
        "one record per task (live fields and document), a bucketed id index, claims and waiting runs "
        "in indexes of their own",
        _records,
    ),
    LayoutMigration(
        4,
        "run history's per-task sorted sets (a key per task) into one index of every task's entries",
        _history_by_task,
    ),
    LayoutMigration(
        5,
        "ids of single adds wait in a short list before joining the id index's buckets; nothing rewritten",
        _recent_ids,
    ),
    LayoutMigration(
        6,
        "a plain success's history document leaves out its end and outcome (the indexes and the id "
        "keep them); nothing rewritten",
        _lean_history,
    ),
    LayoutMigration(
        7,
        "run history written a batch to a hash (its documents and members), each entry one member of "
        "the per-task index, the batch in an end-time index once per 10 ms of its ends; entries "
        "written before stay where they are, nothing rewritten",
        _history_batches,
    ),
)


def latest(migrations: Sequence[LayoutMigration]) -> int:
    """The version the last migration makes."""
    return migrations[-1].version if migrations else 0


async def read_version(client: Client, keys: Keys) -> int:
    """The recorded layout version; 0 when the store has none yet."""
    stored = await client.get(keys.layout)
    return 0 if stored is None else int(stored)


def _refuse_newer(version: int, migrations: Sequence[LayoutMigration], where: str) -> None:
    if version > latest(migrations):
        raise StoreError(
            f"{where} has key layout version {version}, made by a newer backbeat "
            f"(this one knows version {latest(migrations)})"
        )


async def migrate(client: Client, keys: Keys, migrations: Sequence[LayoutMigration], where: str) -> int:
    """Bring the store's keys up to the last of ``migrations``; the version they then follow.

    Raises:
        StoreError: the layout is newer than ``migrations`` (nothing is changed).
        StoreUnavailableError: another process held the layout lock for :data:`LOCK_WAIT`.
    """
    if [m.version for m in migrations] != list(range(1, len(migrations) + 1)):
        raise ValueError("layout migrations must be versions 1, 2, ... in order")
    version = await read_version(client, keys)
    _refuse_newer(version, migrations, where)
    if version == latest(migrations):
        return version
    token = uuid.uuid4().hex
    await _lock(client, keys, token, where)
    try:
        version = await read_version(client, keys)  # another process may have migrated meanwhile
        _refuse_newer(version, migrations, where)
        for migration in migrations:
            if migration.version > version:
                await migration.apply(client, keys)
                await client.set(keys.layout, str(migration.version))
        return max(version, latest(migrations))
    finally:
        await client.register_script(_RELEASE)(keys=[keys.layout_lock], args=[token])


async def _lock(client: Client, keys: Keys, token: str, where: str) -> None:
    deadline = time.monotonic() + LOCK_WAIT
    while not await client.set(keys.layout_lock, token, nx=True, px=int(LOCK_TTL * 1000)):
        if time.monotonic() > deadline:
            raise StoreUnavailableError(
                f"{where}: another process has been migrating the key layout for over {LOCK_WAIT:g} s"
            )
        await asyncio.sleep(_POLL)


__all__ = ["MIGRATIONS", "LayoutMigration", "latest", "migrate", "read_version"]
