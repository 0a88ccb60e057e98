"""The Redis store keeps a plain success's history document without its end and outcome (the
indexes and the entry id keep them), and reads it back whole beside entries that hold them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import redis.asyncio

from backbeat.errors import CorruptRecordError, StoreError
from backbeat.model.history import HistoryEntry, HistoryOutcome, HistoryQuery, HistorySettings
from backbeat.model.records import RunOutcome, RunResult
from backbeat.stores.redis import RedisStore
from backbeat.stores.redis.layout import MIGRATIONS
from tests.contract.helpers import LEASE, T0, decide, start_run, task
from tests.integration.test_redis_store import delete_keys
from tests.redis_server import usable_redis_url


class Layout5Store(RedisStore):
    """The store of a backbeat before lean history documents (key layout 5), which reads an
    entry's end and outcome from its document alone."""

    layout_migrations = MIGRATIONS[:5]


async def complete_plain(store: RedisStore, name: str) -> dict[str, datetime]:
    """Two tasks named ``name`` run and succeed (a ends at T0 + 2 s, b at T0 + 3 s); their ends."""
    tasks = {t.id: t for t in (task("a", name=name), task("b", name=name))}
    await store.add(list(tasks.values()))
    runs = sorted(await start_run(store, "w"), key=lambda run: run.task_id)
    ends = {"a": T0 + timedelta(seconds=2), "b": T0 + timedelta(seconds=3)}
    for run in runs:
        run.task = tasks[run.task_id]
        result = RunResult(
            run=run,
            outcome=RunOutcome.SUCCESS,
            finished_at=ends[run.task_id],
            started_at=T0 + timedelta(seconds=1),
        )
        assert not await store.complete("w", [result], history=HistorySettings())
    return ends


async def stored_docs(store: RedisStore) -> dict[str, bytes]:
    """The history documents by entry id."""
    client = redis.asyncio.from_url(usable_redis_url())
    try:
        stored: dict[bytes, bytes] = await client.hgetall(store.keys.history_docs)  # type: ignore[assignment]
    finally:
        await client.aclose()
    return {entry_id.decode(): doc for entry_id, doc in stored.items()}


async def test_a_plain_success_is_kept_without_its_end_and_outcome_and_read_back_whole(
    store: RedisStore,
) -> None:
    name = f"plain-{uuid.uuid4().hex}"  # not yet encoded: the first entry takes the general way
    ends = await complete_plain(store, name)

    stored = await stored_docs(store)
    docs = {entry_id.partition("@")[0]: orjson.loads(doc) for entry_id, doc in stored.items()}
    assert {"ended_at", "outcome"} <= docs["a"].keys()
    assert not {"ended_at", "outcome"} & docs["b"].keys()

    for query in (
        HistoryQuery(limit=10),
        HistoryQuery(limit=10, outcomes=frozenset({HistoryOutcome.SUCCESS})),
        HistoryQuery(limit=10, since=T0 + timedelta(seconds=2)),
    ):
        entries, _ = await store.run_history(query)
        assert [(e.task_id, e.ended_at, e.outcome, e.task_name) for e in entries] == [
            ("b", ends["b"], HistoryOutcome.SUCCESS, name),
            ("a", ends["a"], HistoryOutcome.SUCCESS, name),
        ]
    for task_id in ("a", "b"):
        entries, _ = await store.run_history(HistoryQuery(limit=10, task_id=task_id))
        assert [(e.ended_at, e.started_at, e.fire_time) for e in entries] == [
            (ends[task_id], T0 + timedelta(seconds=1), T0)
        ]


async def test_a_backbeat_that_reads_the_end_from_the_document_cannot_open_a_store_with_lean_ones(
    store: RedisStore,
) -> None:
    await complete_plain(store, f"plain-{uuid.uuid4().hex}")
    lean = [(i, doc) for i, doc in (await stored_docs(store)).items() if i.startswith("b@")]
    assert len(lean) == 1
    with pytest.raises(CorruptRecordError):  # what a backbeat before them makes of one
        HistoryEntry.from_bytes(lean[0][1], lean[0][0])

    older = Layout5Store(usable_redis_url(), prefix=store.keys.prefix)
    with pytest.raises(StoreError, match=r"key layout version 6, made by a newer backbeat"):
        await older.open()
    await older.close()


async def test_pruning_by_age_alone_removes_a_lean_entry_with_its_per_task_member(store: RedisStore) -> None:
    await complete_plain(store, f"plain-{uuid.uuid4().hex}")
    assert len(await stored_docs(store)) == 2

    # no task named: the batch of entries older than the cutoff, found by the end-time index
    assert await store.prune_history([], before=T0 + timedelta(seconds=10), keep=100) == 2

    client = redis.asyncio.from_url(usable_redis_url())
    try:
        assert await client.zcard(store.keys.history_by_task) == 0
        assert await client.zcard(store.keys.history) == 0
    finally:
        await client.aclose()
    assert await stored_docs(store) == {}


async def test_a_batch_records_plain_successes_spelled_by_the_script_beside_other_entries(
    store: RedisStore,
) -> None:
    name = f"plain-{uuid.uuid4().hex}"
    tasks = {t.id: t for t in (task(i, name=name) for i in ("a", "b", "c", "d"))}
    await store.add(list(tasks.values()))
    runs = {run.task_id: run for run in await start_run(store, "w")}
    for run in runs.values():
        run.task = tasks[run.task_id]
    started, ended = T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)

    def done(task_id: str, outcome: RunOutcome = RunOutcome.SUCCESS) -> RunResult:
        error = None if outcome is RunOutcome.SUCCESS else "boom"
        run = runs[task_id]
        return RunResult(run=run, outcome=outcome, finished_at=ended, started_at=started, error=error)

    # the name is encoded by the first (general) entry, so "b" and "d" are plain successes;
    # "c" is no longer held under the token it claims: lost, and no entry
    assert not await store.complete("w", [done("a")], history=HistorySettings())
    runs["c"].fencing_token += 100
    batch = [done("b"), done("c"), done("d", RunOutcome.FAILURE)]
    assert await store.complete("w", batch, history=HistorySettings()) == {runs["c"].id}

    entries, _ = await store.run_history(HistoryQuery(limit=10))
    assert sorted((e.task_id, e.outcome) for e in entries) == [
        ("a", HistoryOutcome.SUCCESS),
        ("b", HistoryOutcome.SUCCESS),
        ("d", HistoryOutcome.FAILURE),
    ]
    b = next(e for e in entries if e.task_id == "b")
    assert b.id == f"{runs['b'].id}#1.{runs['b'].fencing_token}#success"
    assert (b.run_id, b.task_name, b.attempt, b.owner) == (runs["b"].id, name, 1, "w")
    assert (b.fire_time, b.started_at, b.ended_at) == (T0, started, ended)
    # the script completes the document with the fire time as the run id spells it
    assert orjson.loads((await stored_docs(store))[b.id])["fire_time"] == T0.isoformat()
    page, _ = await store.run_history(HistoryQuery(limit=10, task_id="b"))
    assert page == [b]
    assert await store.prune_history(["b"], before=T0, keep=0) == 1
    assert [e.task_id for e in (await store.run_history(HistoryQuery(limit=10)))[0]] == ["d", "a"]


ODD_IDS = (
    "ünï-任务-🎉",
    "a@b",
    "x|y",
    "p|q@r#s",
    'quote"back\\slash',
    "#1.5#success",
    "ctl\x01\x7f",
    "é" * 500,
)
FIRES = (
    T0,
    T0.replace(microsecond=0),
    datetime(1969, 7, 20, 20, 17, 40, 5, tzinfo=UTC),
    datetime(999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
)


async def complete_odd_batch(
    store: RedisStore, names: list[str], *, spelled_by_client: bool
) -> dict[str, Any]:
    """Run a task per name (odd ids, fire times before 1970, without microseconds) and complete
    them in one batch of successes, failures and runs no longer held; what the store then keeps
    and reads. ``spelled_by_client``: the entries' tokens are given, so the client spells every
    entry whole (as a cluster's shards do)."""
    tasks = [
        task(f"{ODD_IDS[k % len(ODD_IDS)]}-{k}", at=FIRES[k % len(FIRES)], name=name)
        for k, name in enumerate(names)
    ]
    by_id = {t.id: t for t in tasks}
    await store.add(tasks)
    claim = await store.claim_due("w", now=T0, lease=LEASE, limit=len(tasks))
    fired = await store.fire("w", [decide(t) for t in claim.tasks], now=T0, lease=LEASE)
    runs = {run.task_id: run for result in fired for run in result.runs}
    results = []
    for k, t in enumerate(tasks):
        run = runs[t.id]
        run.task = by_id[t.id]
        if k % 11 == 5:
            run.fencing_token += 10_000  # no longer held: lost, no entry
        outcome = RunOutcome.FAILURE if k % 7 == 3 else RunOutcome.SUCCESS
        results.append(
            RunResult(
                run=run,
                outcome=outcome,
                finished_at=T0 + timedelta(seconds=k % 3),
                started_at=T0 - timedelta(seconds=1),
                error=None if outcome is RunOutcome.SUCCESS else "boom",
            )
        )
    tokens = [result.run.fencing_token for result in results] if spelled_by_client else None
    lost = await store.complete("w", results, history=HistorySettings(), entry_tokens=tokens)

    client = redis.asyncio.from_url(usable_redis_url())
    try:
        by_end = await client.zrange(store.keys.history, 0, -1, withscores=True)
        by_task = await client.zrange(store.keys.history_by_task, 0, -1)
    finally:
        await client.aclose()
    docs = await stored_docs(store)
    pages: list[list[HistoryEntry]] = []
    cursor: str | None = None
    while not pages or cursor is not None:
        page, cursor = await store.run_history(HistoryQuery(limit=7, cursor=cursor))
        pages.append(page)
    one_task = tasks[1].id
    mine, _ = await store.run_history(HistoryQuery(limit=10, task_id=one_task))
    pruned = await store.prune_history([t.id for t in tasks[:40]], before=T0 + timedelta(seconds=1), keep=0)
    pruned += await store.prune_history([], before=T0 + timedelta(seconds=2), keep=100)
    left, _ = await store.run_history(HistoryQuery(limit=1000))
    return {
        "lost": lost,
        "by_end": by_end,
        "by_task": by_task,
        "ids": sorted(docs),
        "pages": pages,
        "one task": mine,
        "pruned": pruned,
        "left": left,
        "iso fire times": sum(isinstance(orjson.loads(doc)["fire_time"], str) for doc in docs.values()),
    }


async def test_the_scripts_plain_successes_are_the_clients_byte_for_byte(store: RedisStore) -> None:
    # 150 results: past complete.lua's chunk of 100 entries, a third of them of names not yet
    # encoded (the general way) in the first store
    fresh = uuid.uuid4().hex
    names = [f"fresh-{fresh}-{k}" if k % 3 == 0 else "odd-batch" for k in range(150)]
    peer = RedisStore(usable_redis_url(), prefix=f"{store.keys.prefix}-peer")
    await peer.open()
    try:
        by_script = await complete_odd_batch(store, names, spelled_by_client=False)
        by_client = await complete_odd_batch(peer, names, spelled_by_client=True)
    finally:
        await peer.close()
        await delete_keys(usable_redis_url(), peer.keys.prefix)

    assert by_script.pop("iso fire times") > 50
    assert by_client.pop("iso fire times") == 0
    assert len(by_script["by_task"]) > 100
    assert by_script == by_client
