"""What only the SQLite store has to prove: several processes on one file, schema, locking."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backbeat.errors import StoreError, StoreUnavailableError
from backbeat.model.records import Task, TaskOptions, run_id_for
from backbeat.stores.sqlite import queries as sqlite_queries
from backbeat.stores.sqlite.store import SQLiteStore
from tests.integration.test_sqlite_migrations import CURRENT, DOWNGRADES
from tests.integration.upgrades import check_downgrades

pytestmark = pytest.mark.sqlite

T0 = datetime(2024, 1, 1, 12, tzinfo=UTC)
STEP = timedelta(minutes=1)
FIRES_PER_TASK = 3

# One process of the hammer test: claim, fire and complete until the store is empty, then
# write the ids of the runs it completed. Its clock stands still after every fire time, with
# leases far longer than the test, so only a broken claim could run a fire time twice.
HAMMER = """
import asyncio, json, sys
from datetime import UTC, datetime, timedelta
from backbeat.model.records import FireDecision, RunOutcome, RunResult
from backbeat.stores.sqlite.store import SQLiteStore

path, owner, out, last = sys.argv[1], sys.argv[2], sys.argv[3], datetime.fromisoformat(sys.argv[4])
NOW, LEASE, STEP = last + timedelta(hours=1), timedelta(hours=1), timedelta(minutes=1)

async def main() -> None:
    store = SQLiteStore(path)
    await store.open()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    done = []
    while (await store.list(limit=1))[0]:
        claim = await store.claim_due(owner, now=NOW, lease=LEASE, limit=25)
        decisions = [
            FireDecision(task_id=t.id, claimed_version=t.version, fire_times=[t.next_run_time],
                         next_run_time=t.next_run_time + STEP if t.next_run_time + STEP <= last else None)
            for t in claim.tasks
        ]
        fired = await store.fire(owner, decisions, now=NOW, lease=LEASE)
        runs = claim.runs + [run for result in fired for run in result.runs]
        results = [RunResult(run=run, outcome=RunOutcome.SUCCESS, finished_at=NOW) for run in runs]
        lost = await store.complete(owner, results)
        done += [run.id for run in runs if run.id not in lost]
        if not claim:
            await asyncio.sleep(0.005)
    await store.close()
    with open(out, "w") as file:
        json.dump(done, file)

asyncio.run(main())
"""

# Adds one task to the store when a line arrives on stdin.
ADDER = """
import asyncio, sys
from datetime import UTC, datetime
from backbeat.model.records import Task
from backbeat.stores.sqlite.store import SQLiteStore

async def main() -> None:
    store = SQLiteStore(sys.argv[1])
    await store.open()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await store.add([Task(id="from-another-process", name="x", job="x", trigger={},
                          next_run_time=datetime.now(UTC))])
    await store.close()

asyncio.run(main())
"""


def task(task_id: str, at: datetime | None = T0) -> Task:
    # Several fire times of one task may be in flight in the two processes at once; with the
    # default max_instances=1 the later ones would be skipped (correctly) and look lost.
    options = TaskOptions(max_instances=FIRES_PER_TASK)
    return Task(
        id=task_id,
        name=task_id,
        job="tests:job",
        trigger={},
        next_run_time=at,
        created_at=T0,
        options=options,
    )


async def spawn(script: str, *args: str) -> asyncio.subprocess.Process:
    """A Python process running ``script``, once it printed ``ready``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
    assert line == b"ready\n", line
    return process


def go(process: asyncio.subprocess.Process) -> None:
    assert process.stdin is not None
    process.stdin.write(b"go\n")


async def finish(process: asyncio.subprocess.Process, timeout: float = 10) -> int:
    """The exit code of ``process``, killed if it is not done within ``timeout``."""
    try:
        return await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(db_path)
    await store.open()
    yield store
    await store.close()


@pytest.mark.slow
async def test_two_processes_run_every_fire_time_exactly_once(store: SQLiteStore, tmp_path: Path) -> None:
    ids = [f"t{i:03}" for i in range(500)]
    await store.add([task(task_id) for task_id in ids])
    last = T0 + (FIRES_PER_TASK - 1) * STEP
    outputs = [tmp_path / f"done-{owner}.json" for owner in ("p1", "p2")]
    processes = [await spawn(HAMMER, store.path, out.stem, str(out), last.isoformat()) for out in outputs]
    for process in processes:
        go(process)  # both start together, so their claims interleave
    codes = await asyncio.gather(*(finish(process, timeout=60) for process in processes))
    assert codes == [0, 0]

    per_process = [json.loads(out.read_text()) for out in outputs]
    counts = Counter(run_id for done in per_process for run_id in done)
    expected = {run_id_for(task_id, T0 + i * STEP) for task_id in ids for i in range(FIRES_PER_TASK)}
    assert set(counts) == expected
    assert max(counts.values()) == 1, "a fire time ran twice"
    assert all(per_process), "both processes did part of the work"
    assert await store.list() == ([], None)
    assert await store.list_runs() == []


async def test_wakeups_reach_another_process(store: SQLiteStore) -> None:
    adder = await spawn(ADDER, store.path)
    iterator = store.wakeups()
    pending = asyncio.ensure_future(anext(iterator))
    try:
        await asyncio.sleep(0.1)  # the iterator reads the data version it starts from
        assert not pending.done()
        go(adder)
        await asyncio.wait_for(pending, timeout=10)
        assert await store.get("from-another-process") is not None
    finally:
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pending
        await iterator.aclose()
        go(adder)
        assert await finish(adder) == 0


async def test_the_schema_has_a_version_row_wal_a_claim_index_and_history_indexes(store: SQLiteStore) -> None:
    await store.close()
    with contextlib.closing(sqlite3.connect(store.path)) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(CURRENT),)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        numbered = {"1": 0, "2": 1, "3": 0}  # ?1-style placeholders are bound by number (Python 3.12)
        plan = " ".join(
            row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sqlite_queries.DUE_TASKS}", numbered)
        )
        assert "USING INDEX tasks_due" in plan
        plan = " ".join(
            row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sqlite_queries.CLAIMABLE_RUNS}", numbered)
        )
        assert "USING INDEX runs_lease" in plan
        plan = " ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sqlite_queries.NEXT_WAKEUP}"))
        assert "USING INDEX tasks_claims" in plan  # the earliest claim end reads one entry
        params = (None, None, None, None, 10, "t")
        plan = " ".join(
            row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sqlite_queries.TASK_HISTORY}", params)
        )
        # the (task, end, id) index gives the order, ties of one end time included
        assert "USING INDEX history_task_end_id (task_id=?" in plan and "TEMP B-TREE" not in plan
        plan = " ".join(
            row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sqlite_queries.HISTORY}", params[:5])
        )
        assert "history_end" in plan and "TEMP B-TREE FOR ORDER BY" not in plan  # the end index, backwards


async def test_a_version_1_file_is_migrated_and_keeps_its_tasks(db_path: Path) -> None:
    first = SQLiteStore(db_path)
    await first.add(
        [Task(id="kept", name="kept", job="tests:job", trigger={"type": "date"}, next_run_time=None)]
    )
    await first.close()
    with contextlib.closing(sqlite3.connect(db_path)) as db, db:  # what version 1 of the schema was
        for statements in check_downgrades(DOWNGRADES, CURRENT):
            for sql in statements:
                db.execute(sql)
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    again = SQLiteStore(db_path)
    try:
        assert await again.get("kept") is not None
        assert await again.dead_letters() == []
        assert await again.put_state("breaker:x", {"state": "open"}, version=0)
    finally:
        await again.close()
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(CURRENT),)


async def test_a_file_of_a_newer_schema_is_refused(db_path: Path) -> None:
    first = SQLiteStore(db_path)
    await first.open()
    await first.close()
    with contextlib.closing(sqlite3.connect(db_path)) as db, db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    store = SQLiteStore(db_path)
    with pytest.raises(StoreError, match="schema version 99"):
        await store.open()
    await store.close()


async def test_a_lock_held_past_busy_timeout_is_unavailable_and_the_loop_runs_meanwhile(
    db_path: Path,
) -> None:
    store = SQLiteStore(db_path, busy_timeout=0.3)
    await store.open()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.ensure_future(tick())
    with contextlib.closing(sqlite3.connect(db_path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="locked"):
            await store.add([task("a")])
        assert time.monotonic() - started >= 0.25
        assert await store.get("a") is None, "reads go on while another process writes"
        other.execute("ROLLBACK")
    ticker.cancel()
    assert ticks >= 10, "the event loop kept running while the store waited for the lock"
    await store.add([task("a")])  # and the store works again once the lock is gone
    assert await store.get("a") is not None
    await store.close()


async def test_a_closed_store_ends_its_wakeups_and_opens_again(store: SQLiteStore) -> None:
    iterator = store.wakeups()
    pending = asyncio.ensure_future(anext(iterator))
    await asyncio.sleep(0.05)
    await store.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, timeout=5)
    await store.open()
    await store.add([task("a")])
    assert [t.id for t in (await store.list())[0]] == ["a"]
    await store.close()


async def test_an_invalid_live_column_quarantines_the_task(store: SQLiteStore) -> None:
    await store.add([task("bad"), task("good")])
    with contextlib.closing(sqlite3.connect(store.path)) as db, db:
        db.execute("UPDATE tasks SET last_run_at = 'yesterday' WHERE id = 'bad'")
    claim = await store.claim_due("w1", now=T0, lease=timedelta(seconds=10), limit=10)
    assert [t.id for t in claim.tasks] == ["good"]
    [record] = await store.quarantined()
    assert record.key == "bad" and "invalid columns" in record.error


async def test_close_lets_the_adds_in_flight_end_first(db_path: Path) -> None:
    # the store's one thread runs its calls in order: the close's disconnect comes after them
    store = SQLiteStore(db_path)
    await store.open()
    adds = [asyncio.ensure_future(store.add([task(f"t{i}")])) for i in range(20)]
    await asyncio.sleep(0)  # each handed to the store's thread
    await store.close()
    assert all(add.done() for add in adds)
    await asyncio.gather(*adds)
    reopened = SQLiteStore(db_path)
    try:
        assert all([await reopened.get(f"t{i}") is not None for i in range(20)])
    finally:
        await reopened.close()
