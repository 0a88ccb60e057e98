"""The Redis store keeps a plain success's history document as its name and start (the indexes,
the entry id and the batch keep the rest), and reads it back whole beside entries that hold more."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import redis.asyncio

from backbeat.errors import CorruptRecordError, StoreError
from backbeat.model.completed_history import NAMES
from backbeat.model.history import EPOCH, HistoryEntry, HistoryOutcome, HistoryQuery, HistorySettings, to_us
from backbeat.model.overlap import BUFFERED_UNTIL
from backbeat.model.records import RunOutcome, RunResult
from backbeat.stores.redis import RedisStore
from backbeat.stores.redis.history import WINDOW, completion_args, pack
from backbeat.stores.redis.layout import MIGRATIONS
from tests.contract.helpers import LEASE, T0, decide, start_run, task
from tests.contract.test_history import entry
from tests.redis_server import delete_keys, usable_redis_url

pytestmark = pytest.mark.redis


class Layout6Store(RedisStore):
    """The store of a backbeat before history batches (key layout 6), which reads an entry's
    document from a hash by its id, with its fire time and owner."""

    layout_migrations = MIGRATIONS[:6]


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
    """The history documents by entry id, each its line of its batch."""
    client = redis.asyncio.from_url(usable_redis_url())
    try:
        members: list[Any] = await client.zrange(store.keys.history_by_task, 0, -1)
        docs: dict[str, bytes] = {}
        for member in members:
            _, _, entry_id, ref = member.split(b"\0")
            batch, _, line = ref.decode().partition(".")
            blob: Any = await client.hget(store.keys.history_batch(batch), "d")
            assert isinstance(blob, bytes)
            docs[entry_id.decode()] = blob.split(b"\n")[int(line)]
    finally:
        await client.aclose()
    return docs


async def history_keys(store: RedisStore) -> set[str]:
    """The names (past the store's prefix) of the store's history keys that exist."""
    client = redis.asyncio.from_url(usable_redis_url())
    try:
        keys = [key async for key in client.scan_iter(match=f"{store.keys.base}history*")]
    finally:
        await client.aclose()
    return {key.decode().removeprefix(store.keys.base) for key in keys}


async def assert_no_history_left(store: RedisStore, *, batches_made: int | None = None) -> None:
    """Every history entry, batch, window and index of ``store`` is gone: only the batch
    counter stays (at ``batches_made``, if given), so no batch number is used twice."""
    assert await history_keys(store) == {"history_batch_seq"}
    if batches_made is not None:
        client = redis.asyncio.from_url(usable_redis_url())
        try:
            assert await client.get(store.keys.history_batch_seq) == str(batches_made).encode()
        finally:
            await client.aclose()


async def test_a_plain_success_is_kept_as_its_name_and_start_and_read_back_whole(
    store: RedisStore,
) -> None:
    name = f"plain-{uuid.uuid4().hex}"  # not yet encoded: the first entry takes the general way
    ends = await complete_plain(store, name)

    stored = await stored_docs(store)
    docs = {entry_id.partition("@")[0]: orjson.loads(doc) for entry_id, doc in stored.items()}
    assert {"ended_at", "outcome", "fire_time"} <= docs["a"].keys()
    assert docs["b"] == {"task_name": name, "started_at": to_us(T0 + timedelta(seconds=1))}
    assert "owner" not in docs["a"]  # the batch's first line names it

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
        assert [(e.ended_at, e.started_at, e.fire_time, e.owner) for e in entries] == [
            (ends[task_id], T0 + timedelta(seconds=1), T0, "w")
        ]


async def test_a_backbeat_that_reads_documents_by_id_cannot_open_a_store_with_batches(
    store: RedisStore,
) -> None:
    await complete_plain(store, f"plain-{uuid.uuid4().hex}")
    lean = [(i, doc) for i, doc in (await stored_docs(store)).items() if i.startswith("b@")]
    assert len(lean) == 1
    with pytest.raises(CorruptRecordError):  # what a backbeat before them makes of one
        HistoryEntry.from_bytes(lean[0][1], lean[0][0])

    older = Layout6Store(usable_redis_url(), prefix=store.keys.prefix)
    with pytest.raises(StoreError, match=r"key layout version 7, made by a newer backbeat"):
        await older.open()
    await older.close()


async def test_pruning_by_age_alone_removes_entries_with_their_members_and_batches(store: RedisStore) -> None:
    await complete_plain(store, f"plain-{uuid.uuid4().hex}")
    assert len(await stored_docs(store)) == 2

    # no task named: the batch of entries older than the cutoff, found by the end-time index
    assert await store.prune_history([], before=T0 + timedelta(seconds=10), keep=100) == 2

    # each entry was its own batch: both batches went with their last entries
    await assert_no_history_left(store, batches_made=2)


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
    # the fire time is read from the run id the entry id spells, the owner from the batch
    assert orjson.loads((await stored_docs(store))[b.id]) == {"task_name": name, "started_at": to_us(started)}
    page, _ = await store.run_history(HistoryQuery(limit=10, task_id="b"))
    assert page == [b]
    assert await store.prune_history(["b"], before=T0, keep=0) == 1
    assert [e.task_id for e in (await store.run_history(HistoryQuery(limit=10)))[0]] == ["d", "a"]
    # the batch of "b" and "d" counted the two (not the lost "c"): it goes with "d"
    assert await store.prune_history([], before=T0 + timedelta(seconds=10), keep=100) == 2
    await assert_no_history_left(store, batches_made=2)


async def test_clear_beside_a_writer_leaves_no_batch_behind_nor_deletes_a_later_ones(
    store: RedisStore,
) -> None:
    writer = RedisStore(usable_redis_url(), prefix=store.keys.prefix)
    await writer.open()
    written = 0

    async def write() -> None:
        nonlocal written
        while written < 400:
            await writer.record_history([entry(f"t{written}", T0 + timedelta(seconds=written))])
            written += 1

    try:
        writing = asyncio.create_task(write())
        while not writing.done():  # a batch may be written between any two of clear's calls
            await store.clear()
            await asyncio.sleep(0)
        await writing
    finally:
        await writer.close()

    client = redis.asyncio.from_url(usable_redis_url())
    try:
        batches = {key async for key in client.scan_iter(match=f"{store.keys.base}history_batch:*")}
        live: dict[bytes, bytes] = await client.hgetall(store.keys.history_live)  # type: ignore[assignment]
        members: list[bytes] = await client.zrange(store.keys.history_at, 0, -1)  # type: ignore[assignment]
    finally:
        await client.aclose()
    # every batch kept is counted, and every entry kept has its batch, readable
    assert batches == {store.keys.history_batch(batch.decode()).encode() for batch in live}
    assert sorted(live) == sorted({member.rpartition(b"\0")[2].partition(b".")[0] for member in members})
    page, _ = await store.run_history(HistoryQuery(limit=1000))
    assert len(page) == len(members)


async def test_clear_deletes_every_history_key_batches_included(store: RedisStore) -> None:
    await complete_plain(store, f"plain-{uuid.uuid4().hex}")
    assert await history_keys(store) == {
        "history_at",
        "history_batch:1",
        "history_batch:2",
        "history_batch_seq",
        "history_by_task",
        "history_live",
    }
    await store.clear()
    await assert_no_history_left(store)


@pytest.mark.parametrize("n", [2, 130])
async def test_a_completion_whose_history_cannot_be_read_completes_its_runs_and_counts_what_it_indexed(
    store: RedisStore, n: int
) -> None:
    tasks = {t.id: t for t in (task(f"t{i:03}") for i in range(n))}
    await store.add(list(tasks.values()))
    runs = sorted([*await start_run(store, "w"), *await start_run(store, "w")], key=lambda run: run.task_id)
    assert len(runs) == n
    ended = to_us(T0 + timedelta(seconds=2))
    results = [
        RunResult(
            run=replace(run, task=tasks[run.task_id]),
            outcome=RunOutcome.FAILURE,
            finished_at=T0 + timedelta(seconds=2),
            started_at=T0 + timedelta(seconds=1),
            error="boom",
        )
        for run in runs
    ]
    tokens = [run.fencing_token for run in runs]
    kinds, docs, ones = completion_args(results, HistorySettings(), tokens, "w", [ended] * n, own_tokens=True)
    assert kinds == "1" * n and isinstance(ones, bytes)
    packed = b"".join(
        b"1|%d||failure|0|%d|%b\xff" % (ended, run.fencing_token, run.id.encode()) for run in runs
    )

    # what store.complete sends, but for the last entry's member, cut short
    args = ("w", to_us(BUFFERED_UNTIL), n, "1", packed, kinds, docs, ones[:-8])
    assert await store._conn.run("complete", *args) == []
    # the runs completed all the same: sent again, they are gone
    assert await store.complete("w", results) == {run.id for run in runs}

    # the entries before the bad one stay, and their batch counts them, no more: it goes with
    # them, nothing kept for ever
    indexed = n - 1
    assert len((await store.run_history(HistoryQuery(limit=1000)))[0]) == indexed
    client = redis.asyncio.from_url(usable_redis_url())
    try:
        live: dict[bytes, bytes] = await client.hgetall(store.keys.history_live)  # type: ignore[assignment]
    finally:
        await client.aclose()
    assert live == {b"1": b"%d" % indexed}
    assert await store.prune_history([], before=T0 + timedelta(seconds=10), keep=100) == indexed
    await assert_no_history_left(store)


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
        by_end = await client.zrange(store.keys.history_at, 0, -1, withscores=True)
        by_task = await client.zrange(store.keys.history_by_task, 0, -1)
        batch = await client.hgetall(store.keys.history_batch(1))
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
        "batch": batch,
        "fire times kept": sum("fire_time" in orjson.loads(doc) for doc in docs.values()),
    }


async def test_the_scripts_plain_successes_are_the_clients_byte_for_byte(store: RedisStore) -> None:
    # 150 results: past complete.lua's chunk of 100 entries, a third of them of names not yet
    # encoded (the general way) in the first store
    fresh = uuid.uuid4().hex
    names = [f"fresh-{fresh}-{k}" if k % 3 == 0 else "odd-batch" for k in range(150)]
    first_odd_batch = 0 if "odd-batch" in NAMES else 1  # its first entry then takes the general way
    peer = RedisStore(usable_redis_url(), prefix=f"{store.keys.prefix}-peer")
    await peer.open()
    try:
        by_script = await complete_odd_batch(store, names, spelled_by_client=False)
        by_client = await complete_odd_batch(peer, names, spelled_by_client=True)
    finally:
        await peer.close()
        await delete_keys(usable_redis_url(), peer.keys.prefix)

    # plain successes keep no fire time (their run ids spell it); failures and entries of names
    # not yet encoded keep theirs (runs no longer held have none); the names are encoded by the
    # time the peer completes its batch
    general = [k for k in range(150) if k % 11 != 5 and (k % 3 == 0 or k % 7 == 3)]
    failures = [k for k in range(150) if k % 11 != 5 and k % 7 == 3]
    assert by_script.pop("fire times kept") == len(general) + first_odd_batch
    assert by_client.pop("fire times kept") == len(failures)
    script_batch, client_batch = by_script.pop("batch"), by_client.pop("batch")
    assert script_batch[b"m"] == client_batch[b"m"]  # the members the script spells are the client's
    assert script_batch[b"d"] != client_batch[b"d"]
    assert len(by_script["by_task"]) > 100
    assert by_script == by_client


async def run_many(store: RedisStore, count: int, gap: timedelta) -> list[RunResult]:
    """``count`` tasks run; their successes, ending ``gap`` apart from T0 on."""
    tasks = [task(f"many-{k}") for k in range(count)]
    by_id = {t.id: t for t in tasks}
    await store.add(tasks)
    claim = await store.claim_due("w", now=T0, lease=LEASE, limit=count)
    fired = await store.fire("w", [decide(t) for t in claim.tasks], now=T0, lease=LEASE)
    runs = sorted((run for result in fired for run in result.runs), key=lambda run: run.task_id)
    assert len(runs) == count
    results = []
    for k, run in enumerate(runs):
        run.task = by_id[run.task_id]
        results.append(
            RunResult(run=run, outcome=RunOutcome.SUCCESS, finished_at=T0 + k * gap, started_at=T0 - gap)
        )
    return results


async def test_a_completion_whose_entries_span_thousands_of_windows_records_them(store: RedisStore) -> None:
    # a completion after an outage: ends 10 ms apart, each its own window of the end-time index,
    # more than one variadic call (Lua's unpack) can take
    results = await run_many(store, 4_500, timedelta(milliseconds=10))
    assert not await store.complete("w", results, history=HistorySettings())
    page, _ = await store.run_history(HistoryQuery(limit=3))
    assert [e.ended_at for e in page] == [r.finished_at for r in results[:-4:-1]]
    assert await store.prune_history([], before=T0 + timedelta(seconds=100), keep=10_000) > 0


async def test_a_record_that_fails_leaves_nothing_of_its_batch(store: RedisStore) -> None:
    # an end before 1970 has no 18-digit member: refused at call time, naming the entry
    before_1970 = entry("old", datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC))
    await store.record_history([entry("first", T0)])  # a batch before it
    with pytest.raises(ValueError, match=rf"history entry {re.escape(repr(before_1970.id))} .* before 1970"):
        await store.record_history([before_1970, entry("new", T0)])
    # the script refuses it as well, before it writes anything: the 18 characters pack spelled
    # it in before it was refused ('-' then 17 digits; b"\0000" is a NUL and one '0', and the
    # 20 characters that put in its place were refused for the id's missing NUL alone)
    docs, members = pack([entry("new", T0)])
    spelled = b"%018d" % to_us(datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert len(spelled) == 18 and spelled.startswith(b"-")
    with pytest.raises(StoreError, match="cannot be read"):
        await store._conn.run("history", docs, members.replace(b"%018d" % to_us(T0), spelled, 1))
    client = redis.asyncio.from_url(usable_redis_url())
    try:
        keys = store.keys
        assert await client.hgetall(keys.history_live) == {b"1": b"1"}  # the first batch's alone
        assert (await client.zcard(keys.history_by_task), await client.zcard(keys.history_at)) == (1, 1)
    finally:
        await client.aclose()


async def test_pruning_by_age_takes_whole_windows_up_to_its_budget_and_a_batch_goes_with_its_windows(
    store: RedisStore,
) -> None:
    # three calls of 600 entries, each call's ends within one 10 ms window, a second apart
    for k in range(3):
        ended = T0 + k * timedelta(seconds=1)
        await store.record_history(
            [entry(f"t{i}", ended, fire=T0 - i * timedelta(seconds=1)) for i in range(600)]
        )
    # a batch of two windows, one past the cutoff below
    await store.record_history(
        [entry("two", T0 + timedelta(seconds=10)), entry("two", T0 + timedelta(seconds=11))]
    )
    client = redis.asyncio.from_url(usable_redis_url())
    try:
        keys = store.keys
        # whole windows until 1,000 entries are removed: two of the three
        assert (
            await store.prune_history([], before=T0 + timedelta(seconds=10, milliseconds=500), keep=10_000)
            == 1200
        )
        assert (
            await store.prune_history([], before=T0 + timedelta(seconds=10, milliseconds=500), keep=10_000)
            == 601
        )
        # the batch's window past its age went; the other stays with the batch's last entry
        windows: list[Any] = await client.zrange(keys.history_at, 0, -1)
        assert windows == [b"4.%d" % (to_us(T0 + timedelta(seconds=11)) // WINDOW)]
        assert await client.hgetall(keys.history_live) == {b"4": b"1"}
        # pruned by its task's count, the batch's last entry takes the batch and its window
        assert await store.prune_history(["two"], before=T0, keep=0) == 1
        assert await client.exists(keys.history_at, keys.history_live, keys.history_batch(4)) == 0
    finally:
        await client.aclose()


async def test_the_scripts_window_of_an_end_is_the_one_python_reads(store: RedisStore) -> None:
    # _lib.lua's HISTORY_WINDOW_DIGITS names the windows the scripts index; history.py's WINDOW
    # the ones a page reads past a cursor: were they apart, pages would skip entries
    ends = [EPOCH + timedelta(microseconds=us) for us in (7, 9_999, 10_000, 123_456_789)] + [T0]
    await store.record_history([entry(f"t{i}", end) for i, end in enumerate(ends)])

    latest: dict[bytes, float] = {}
    for end in map(to_us, ends):
        window = b"1.%d" % (end // WINDOW)
        latest[window] = max(latest.get(window, 0), end)
    client = redis.asyncio.from_url(usable_redis_url())
    try:
        indexed: list[Any] = await client.zrange(store.keys.history_at, 0, -1, withscores=True)
    finally:
        await client.aclose()
    assert dict(indexed) == latest
    assert len(latest) == 4


async def complete_ending_at(store: RedisStore, ends_us: tuple[int, ...], *, spelled_by_client: bool) -> str:
    """Runs of one task completed in one call, each ending ``ends_us`` microseconds after the
    epoch, their members spelled by the client or by ``complete.lua``; the task's id."""
    results = [
        dataclasses.replace(result, finished_at=EPOCH + timedelta(microseconds=us))
        for result, us in zip(await run_many(store, len(ends_us), timedelta(seconds=1)), ends_us, strict=True)
    ]
    tokens = [result.run.fencing_token for result in results] if spelled_by_client else None
    assert not await store.complete("w", results, history=HistorySettings(), entry_tokens=tokens)
    return results[0].run.task_id


@pytest.mark.parametrize("spelled_by_client", [False, True])
async def test_a_completions_window_is_scored_by_its_latest_end_of_any_length(
    store: RedisStore, spelled_by_client: bool
) -> None:
    # ends 5 us and 40 us after the epoch: "5" > "40" as text
    await complete_ending_at(store, (5, 40), spelled_by_client=spelled_by_client)
    found, _ = await store.run_history(HistoryQuery(limit=10, since=EPOCH + timedelta(microseconds=30)))
    assert [e.ended_at for e in found] == [EPOCH + timedelta(microseconds=40)]


@pytest.mark.parametrize("spelled_by_client", [False, True])
async def test_a_completion_across_windows_whose_ends_differ_in_length_indexes_each_window(
    store: RedisStore, spelled_by_client: bool
) -> None:
    # ends 9,999 us and 10,000 us after the epoch, in windows 0 and 1: "10000" < "9999" as text,
    # so the earliest end taken as text would put both in window 1, leaving 9,999 out of it
    task_id = await complete_ending_at(store, (9_999, 10_000), spelled_by_client=spelled_by_client)
    ends = [EPOCH + timedelta(microseconds=us) for us in (10_000, 9_999)]
    for limit in (10, 1):
        found = []
        query: HistoryQuery | None = HistoryQuery(limit=limit)
        while query is not None:
            page, cursor = await store.run_history(query)
            found += page
            query = None if cursor is None else HistoryQuery(limit=limit, cursor=cursor)
        assert [e.ended_at for e in found] == ends
    # pruned by age, both windows go, and the batch with them
    assert await store.prune_history([], before=EPOCH + timedelta(seconds=1), keep=100) == 2
    assert (await store.run_history(HistoryQuery(limit=10, task_id=task_id)))[0] == []


@pytest.mark.parametrize("outcome", [RunOutcome.SUCCESS, RunOutcome.FAILURE])
async def test_a_completion_that_ended_before_1970_keeps_no_entry_and_leaves_history_readable(
    store: RedisStore, outcome: RunOutcome
) -> None:
    tasks = {t.id: t for t in (task("a"), task("b"))}
    await store.add(list(tasks.values()))
    runs = sorted(await start_run(store, "w"), key=lambda run: run.task_id)
    ends = {"a": EPOCH - timedelta(seconds=1), "b": T0 + timedelta(seconds=2)}
    results = [
        RunResult(
            run=replace(run, task=tasks[run.task_id]),
            outcome=outcome,
            finished_at=ends[run.task_id],
            started_at=ends[run.task_id] - timedelta(seconds=1),
            error=None if outcome is RunOutcome.SUCCESS else "boom",
        )
        for run in runs
    ]
    assert not await store.complete("w", results, history=HistorySettings())

    # b's entry is kept, though after a's; a's (its end has no 18-digit member) is not, and
    # poisons no page
    for query in (HistoryQuery(limit=10), HistoryQuery(limit=10, task_id="b")):
        assert [e.task_id for e in (await store.run_history(query))[0]] == ["b"]
    assert (await store.run_history(HistoryQuery(limit=10, task_id="a")))[0] == []
    # nothing is kept for ever: pruning by age removes the batch whole
    assert await store.prune_history([], before=T0 + timedelta(seconds=10), keep=100) == 1
    await assert_no_history_left(store)


@pytest.mark.parametrize("outcome", [RunOutcome.SUCCESS, RunOutcome.FAILURE])
async def test_complete_lua_stops_the_history_at_an_end_before_1970_before_indexing_it(
    store: RedisStore, outcome: RunOutcome
) -> None:
    tasks = {t.id: t for t in (task("a"), task("b"))}
    await store.add(list(tasks.values()))
    runs = sorted(await start_run(store, "w"), key=lambda run: run.task_id, reverse=True)
    ended = to_us(T0 + timedelta(seconds=2))
    results = [
        RunResult(
            run=replace(run, task=tasks[run.task_id]),
            outcome=outcome,
            finished_at=T0 + timedelta(seconds=2),
            started_at=T0 + timedelta(seconds=1),
            error=None if outcome is RunOutcome.SUCCESS else "boom",
        )
        for run in runs
    ]
    tokens = [run.fencing_token for run in runs]
    for _ in range(2):  # the first call keeps the task name, then a success is a plain one ('p')
        kinds, docs, ones = completion_args(
            results, HistorySettings(), tokens, "w", [ended] * 2, own_tokens=True
        )
    assert isinstance(ones, bytes)
    # what store.complete sent before it left out such an entry: a's end (the last) 1 s before 1970
    early = to_us(EPOCH - timedelta(seconds=1))
    ones = ones.replace(
        b"%018d\0%b" % (ended, runs[1].id.encode()), b"%018d\0%b" % (early, runs[1].id.encode())
    )
    assert (kinds == "") if outcome is RunOutcome.SUCCESS else (b"%018d" % early in ones)
    packed = b"".join(
        b"%d|%d||%b|0|%d|%b\xff"
        % (
            outcome is RunOutcome.FAILURE,
            early if run.task_id == "a" else ended,
            outcome.value.encode(),
            run.fencing_token,
            run.id.encode(),
        )
        for run in runs
    )
    args = ("w", to_us(BUFFERED_UNTIL), 2, "1", packed, kinds, docs, ones)
    assert await store._conn.run("complete", *args) == []

    for query in (HistoryQuery(limit=10), HistoryQuery(limit=10, task_id="b")):
        assert [e.task_id for e in (await store.run_history(query))[0]] == ["b"]
    assert await store.prune_history([], before=T0 + timedelta(seconds=10), keep=100) == 1
    await assert_no_history_left(store)
