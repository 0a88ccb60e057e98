"""Older Redis key layouts, made from a current store: what a test opens to see it migrated.

``downgrade_history_to_6`` rewrites the run history as layouts 4-6 kept it: a document per entry
in a hash by id, the ids in a sorted set by end, per-task members without a batch.
``downgrade_to_4`` moves the list of recent ids into the id index's buckets.
``downgrade_history_to_3`` rewrites the run history as layout 3 kept it: a sorted set of entry
ids by end time per task and the set of the tasks that have one.
``downgrade_to_2`` rewrites a layout-3 store's keys as layout 2 wrote them: a document hash
and a live-fields hash, one sorted set of every id, claimed tasks in the schedule scored by
their claim's end, waiting runs among the leased ones, the documents as layout 2's lean JSON
objects (or kept as they are).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

import orjson
import redis.asyncio

from backbeat.model.history import HistoryEntry
from backbeat.model.records import Task
from backbeat.stores.redis import codec, lualib
from backbeat.stores.redis.history import WINDOW
from backbeat.stores.redis.keys import Keys

_LIVE_DEFAULTS = ("", "0", "0", "0", "0", "", "1", "", "")
_DEFAULTS = Task(id="", name="", job="", trigger={}, next_run_time=None).to_document()
_REQUIRED = frozenset(("name", "job", "trigger", "created_at"))
_LIVE_FIELDS = frozenset(
    ("id", "next_run_time", "version", "running", "runs", "failures", "last_outcome", "last_run_at")
)


def lean_document(task: Task) -> bytes:
    """A task's document as layout 2 wrote it: an object without its id, live fields or defaults."""
    doc = task.to_document()
    lean: dict[str, Any] = {
        key: value
        for key, value in doc.items()
        if key not in _LIVE_FIELDS and (key in _REQUIRED or value != _DEFAULTS[key])
    }
    if "options" in lean:
        defaults = _DEFAULTS["options"]
        assert isinstance(defaults, dict)
        lean["options"] = {key: value for key, value in lean["options"].items() if value != defaults[key]}
    return orjson.dumps(lean)


async def downgrade_to_4(client: redis.asyncio.Redis, keys: Keys) -> None:
    """Move the ids of the list of recent ids (key layout 5) into the id index's buckets, as key
    layout 4 kept every id, by the scripts' own ``index_add``."""
    lib = resources.files("backbeat.stores.redis").joinpath("scripts", "_lib.lua").read_text("utf-8")
    body = """
local ids = redis.call('LRANGE', K_RECENT, 0, -1)
local kept, seen = {}, {}
for i, found in ipairs(get_many(K_TASKS, ids)) do
  if found and not seen[ids[i]] then
    seen[ids[i]] = true
    kept[#kept + 1] = ids[i]
  end
end
index_add(kept)
redis.call('DEL', K_RECENT)
"""
    await client.eval(lualib.needed(lib, body) + body, 1, keys.tasks, keys.base)
    await client.set(keys.layout, "4")


async def downgrade_history_to_6(
    client: redis.asyncio.Redis, keys: Keys, *, which: Callable[[bytes], bool] | None = None
) -> None:
    """Rewrite the run history's entries written in batches (key layout 7) as layouts 4-6 kept
    them, whole documents in a hash by id: those whose entry ids ``which`` picks, or all (the
    layout version is left alone when ``which`` is given: a store with entries of both)."""
    indexed: list[Any] = await client.zrange(keys.history_by_task, 0, -1)
    members = [member for member in indexed if member.count(b"\0") == 3]
    if which is not None:
        members = [member for member in members if which(member.split(b"\0")[2])]
    for member in members:
        task_id, end, entry_id, ref = member.split(b"\0")
        batch, _, line = ref.partition(b".")
        batch_key = keys.history_batch(batch.decode())
        docs: Any = await client.hget(batch_key, "d")
        header, *lines = docs.split(b"\n")
        owner = orjson.loads(header).get("owner")
        entry = HistoryEntry.from_bytes(lines[int(line) - 1], entry_id.decode(), int(end), owner)
        await client.hset(keys.history_docs, entry.id, entry.to_bytes())
        await client.zadd(keys.history, {entry.id: int(end)})
        await client.zadd(keys.history_by_task, {b"\0".join((task_id, end, entry_id)): 0})
        await client.zrem(keys.history_by_task, member)
        if await client.hincrby(keys.history_live, batch, -1) == 0:
            listed: Any = await client.hget(batch_key, "m")
            ends = listed.split(b"\0")[1::4]
            await client.zrem(keys.history_at, *{b"%b.%d" % (batch, int(e) // WINDOW) for e in ends})
            await client.hdel(keys.history_live, batch)
            await client.delete(batch_key)
    if which is None:
        await client.delete(keys.history_at, keys.history_live, keys.history_batch_seq)
        await client.set(keys.layout, "6")


async def downgrade_history_to_3(client: redis.asyncio.Redis, keys: Keys) -> None:
    """Rewrite the run history's per-task index as key layout 3 had it, a key per task."""
    await downgrade_history_to_6(client, keys)
    members: list[Any] = await client.zrange(keys.history_by_task, 0, -1)
    by_task: dict[str, dict[bytes, int]] = {}
    for member in members:
        task_id, end, entry_id = member.rsplit(b"\0", 2)
        by_task.setdefault(task_id.decode(), {})[entry_id] = int(end)
    await client.delete(keys.history_by_task)
    for task_id, entries in by_task.items():
        await client.zadd(keys.task_history(task_id), entries)
        await client.sadd(keys.history_tasks, task_id)
    await client.set(keys.layout, "3")


async def downgrade_to_2(client: redis.asyncio.Redis, keys: Keys, *, lean: bool = True) -> None:
    """Rewrite the store's keys as key layout 2 had them (``lean``: its documents too)."""
    await downgrade_to_4(client, keys)
    await downgrade_history_to_3(client, keys)
    records: dict[Any, Any] = await client.hgetall(keys.tasks)
    docs: dict[Any, Any] = {}
    lives: dict[Any, Any] = {}
    for task_id, record in records.items():
        *head, doc = record.split(b"|", 9)
        fields = zip([value.decode() for value in head], _LIVE_DEFAULTS, strict=True)
        live = "|".join(value or default for value, default in fields)
        lives[task_id] = live
        if lean:
            task = codec.task_from(task_id, live.encode(), doc)
            assert task is not None
            doc = lean_document(task)
        docs[task_id] = doc
    bounds: list[Any] = await client.zrange(keys.id_index, 0, -1)
    buckets = [keys.id_bucket(bound.decode()) for bound in bounds]
    ids: list[Any] = [member for bucket in buckets for member in await client.zrange(bucket, 0, -1)]
    claims: list[Any] = await client.zrange(keys.claims, 0, -1, withscores=True)
    waiting: list[Any] = await client.zrange(keys.waiting, 0, -1, withscores=True)
    await client.delete(keys.tasks, keys.id_index, keys.claims, keys.waiting, *buckets)
    if docs:
        await client.hset(keys.tasks, mapping=docs)
        await client.hset(keys.live, mapping=lives)
        await client.zadd(keys.ids, dict.fromkeys(ids, 0))
    if claims:
        await client.zadd(keys.schedule, {member: score for member, score in claims})
    if waiting:
        await client.zadd(keys.leases, {member: score for member, score in waiting})
    await client.set(keys.layout, "2")
