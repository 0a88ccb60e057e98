"""What only the PostgreSQL store has to prove: concurrent claimers, NOTIFY, errors, schema."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from backbeat import PostgresJobStoreConfig
from backbeat.errors import StoreError, StoreUnavailableError
from backbeat.model.overlap import Overlap
from backbeat.model.records import Task, TaskOptions
from backbeat.stores import store_from_url
from backbeat.stores.postgresql import PostgreSQLStore, connection, queries
from backbeat.stores.postgresql import store as store_module
from backbeat.stores.postgresql.migrations import MIGRATIONS
from backbeat.stores.sql.migrations import latest
from tests.integration import jobs
from tests.scheduling import SchedulerFactory, wait_for

pytestmark = pytest.mark.postgresql

URL = os.environ.get("BACKBEAT_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test")
T0 = datetime(2024, 1, 1, 12, tzinfo=UTC)
LEASE = timedelta(minutes=5)


def _task(task_id: str) -> Task:
    return Task(
        id=task_id, trigger={"type": "interval", "seconds": 60}, next_run_time=T0, name=task_id, job="m:f"
    )


def _due_first(task_id: str, seconds_before: int) -> Task:
    """A task due before every earlier one of these tests: its add sends a wake-up."""
    task = _task(task_id)
    task.next_run_time = T0 - timedelta(seconds=seconds_before)
    return task


async def _sql(sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(URL)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    try:
        await _sql("SELECT 1")
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"no PostgreSQL server at {URL}: {exc}")
    name = f"bb_{uuid.uuid4().hex[:10]}"
    yield name
    tables = ", ".join(f"{name}_{table}" for table in queries.TABLES)
    await _sql(f"DROP TABLE IF EXISTS {tables} CASCADE")


@pytest.fixture
def recorded_retries(monkeypatch: pytest.MonkeyPatch) -> list[BaseException]:
    """The errors the store asks about running a transaction again (a lost deadlock among them)."""
    asked: list[BaseException] = []

    def retryable(exc: BaseException) -> bool:
        asked.append(exc)
        return connection.is_retryable(exc)

    monkeypatch.setattr(store_module, "is_retryable", retryable)
    return asked


def hold_before(
    monkeypatch: pytest.MonkeyPatch, method: str, template: str
) -> tuple[asyncio.Event, asyncio.Event]:
    """Make the store's ``Db.<method>`` of ``template`` wait: set the first event when one is
    reached, go on once the second is set (later calls go straight through)."""
    reached, go = asyncio.Event(), asyncio.Event()
    original = getattr(connection.Db, method)

    async def held(self: Any, sql: str, *args: Any) -> Any:
        if sql == template and not go.is_set():
            reached.set()
            await go.wait()
        return await original(self, sql, *args)

    monkeypatch.setattr(connection.Db, method, held)
    return reached, go


async def until_waiting_for_lock(prefix: str, statement: str) -> None:
    """Return once a statement on ``prefix``'s tables containing ``statement`` waits for a lock."""
    async with asyncio.timeout(10):
        while True:
            rows = await _sql(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
                f"%{prefix}{statement}%",
            )
            if rows[0][0]:
                return
            await asyncio.sleep(0.01)


OpenStore = Callable[[], Awaitable[PostgreSQLStore]]


@pytest.fixture
async def stores(prefix: str) -> AsyncIterator[OpenStore]:
    opened: list[PostgreSQLStore] = []

    async def open_store() -> PostgreSQLStore:
        store = PostgreSQLStore(URL, table_prefix=prefix)
        await store.open()
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        await store.close()


async def test_concurrent_claimers_never_get_the_same_task(stores: OpenStore) -> None:
    first, second = await stores(), await stores()
    await first.add([_task(f"t{i:04}") for i in range(300)])
    taken: list[str] = []
    for _ in range(20):
        claims = await asyncio.gather(
            *(s.claim_due(f"w{i}", now=T0, lease=LEASE, limit=7) for i, s in enumerate([first, second] * 4))
        )
        taken += [t.id for claim in claims for t in claim.tasks]
    assert len(taken) == len(set(taken)) == 300


async def test_a_notify_wakes_the_other_instance(stores: OpenStore) -> None:
    listening, writing = await stores(), await stores()
    iterator = listening.wakeups()
    pending = asyncio.ensure_future(anext(iterator))
    try:
        for i in range(100):
            # only the other instance writes: the wake-up can only come through NOTIFY (each add
            # comes before those stored, else it would send none)
            await writing.add([_due_first(f"n{i}", i)])
            done, _ = await asyncio.wait([pending], timeout=0.05)
            if done:
                break
        assert pending.done() and pending.exception() is None
        # closing the store ends its iterators
        later = asyncio.ensure_future(anext(iterator))
        await listening.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(later, 5)
    finally:
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await pending
        await iterator.aclose()


@pytest.mark.parametrize("batch", [1, 3])
async def test_only_an_add_due_before_every_stored_task_sends_a_wakeup(
    stores: OpenStore, prefix: str, batch: int
) -> None:
    writing = await stores()
    await writing.add([_task("first")])  # due at T0
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(URL)
    try:
        await listener.add_listener(f"{prefix}_wakeup", lambda *_: heard.put_nowait("wake"))

        def tasks(name: str, due: datetime) -> list[Task]:
            made = [_task(f"{name}{i}") for i in range(batch)]
            for task in made:
                task.next_run_time = due
            return made

        await writing.add(tasks("later", T0 + timedelta(seconds=1)))
        await writing.add(tasks("same", T0))
        await writing.add(tasks("earlier", T0 - timedelta(seconds=1)))
        # notifications come in commit order: once the last add's is here, any other would be too
        await asyncio.wait_for(heard.get(), 10)
        assert heard.empty()
    finally:
        await listener.close()


async def test_the_listener_reconnects_after_losing_its_connection(stores: OpenStore) -> None:
    listening, writing = await stores(), await stores()
    channel = f"{listening.prefix}_wakeup"
    iterator = listening.wakeups()
    try:
        first = asyncio.ensure_future(anext(iterator))
        for i in range(100):
            await writing.add([_due_first(f"a{i}", i)])
            if (await asyncio.wait([first], timeout=0.05))[0]:
                break
        assert first.done()
        killed = await _sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query ILIKE $1 AND pid <> pg_backend_pid()",
            f"%LISTEN%{channel}%",
        )
        assert [row[0] for row in killed] == [True]
        await asyncio.sleep(0.3)  # the reconnect yields once; drain it, then prove NOTIFY again
        second = asyncio.ensure_future(anext(iterator))
        for i in range(100):
            await writing.add([_due_first(f"b{i}", 1000 + i)])
            if (await asyncio.wait([second], timeout=0.05))[0]:
                break
        assert second.done() and second.exception() is None
    finally:
        await iterator.aclose()


async def test_an_unreachable_server_raises_store_unavailable_promptly_without_the_password() -> None:
    store = PostgreSQLStore("postgresql://postgres:s3cret-pw@127.0.0.1:1/test", connect_timeout=3)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as raised:
        await store.open()
    assert time.monotonic() - started < 5
    assert "127.0.0.1:1" in str(raised.value) and "s3cret-pw" not in str(raised.value)
    with pytest.raises(StoreUnavailableError):
        await store.get("x")
    await store.close()


async def test_the_schema_records_its_version_and_a_newer_one_is_refused(
    stores: OpenStore, prefix: str
) -> None:
    await stores()
    rows = await _sql(f"SELECT value FROM {prefix}_meta WHERE key = 'schema_version'")
    assert [row[0] for row in rows] == [str(latest(MIGRATIONS))]
    await _sql(f"UPDATE {prefix}_meta SET value = '99' WHERE key = 'schema_version'")
    newer = PostgreSQLStore(URL, table_prefix=prefix)
    with pytest.raises(StoreError, match="schema version 99"):
        await newer.open()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
async def test_store_from_url_takes_the_prefix_from_the_query(scheme: str, prefix: str) -> None:
    url = URL.replace("postgresql://", f"{scheme}://", 1) + f"?prefix={prefix}"
    store = store_from_url(url)
    assert isinstance(store, PostgreSQLStore) and store.prefix == prefix
    await store.open()
    try:
        await store.add([_task("a")])
        rows = await _sql(f"SELECT id FROM {prefix}_tasks")
        assert [row[0] for row in rows] == ["a"]
    finally:
        await store.close()


async def test_a_scheduler_configured_by_postgres_job_store_config_runs_tasks(
    prefix: str, make_scheduler: SchedulerFactory, record_file: Path
) -> None:
    config = PostgresJobStoreConfig(url=URL, table_prefix=prefix, max_connections=4, lease_seconds=3)
    scheduler = make_scheduler(config)
    await scheduler.start()
    await scheduler.schedule_delayed_task("soon", jobs.note, delay_seconds=0.2, args=[str(record_file), "pg"])
    await wait_for(lambda: [r["label"] for r in jobs.read_records(record_file)] == ["pg"])
    tables = await _sql("SELECT tablename FROM pg_tables WHERE tablename LIKE $1", f"{prefix}\\_%")
    assert {row[0] for row in tables} == {f"{prefix}_{table}" for table in queries.TABLES}


async def test_a_run_buffered_by_a_fire_while_a_completion_is_in_flight_is_started(
    stores: OpenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """complete() locks the task row (its count) before it looks for buffered runs, so a fire
    holding that row (it buffers behind the run being completed) cannot slip in between."""
    from tests.contract.helpers import LEASE, MINUTE, T0, decide, finished, task

    store = await stores()
    await store.add([task("a", options=TaskOptions(overlap=Overlap.BUFFER_ONE))])
    [claimed] = (await store.claim_due("w1", now=T0, lease=LEASE, limit=10)).tasks
    decision = replace(decide(claimed, [T0], then=T0 + MINUTE), overlap=Overlap.BUFFER_ONE)
    [running] = (await store.fire("w1", [decision], now=T0, lease=LEASE))[0].runs

    counting, go = hold_before(monkeypatch, "executemany", queries.COUNT_RUNS)
    t1 = T0 + MINUTE
    completing = asyncio.create_task(store.complete("w1", [finished(running, at=t1)]))
    await counting.wait()  # the run is deleted, the task row not yet locked
    [due] = (await store.claim_due("w2", now=t1, lease=LEASE, limit=10)).tasks
    [fired] = await store.fire(
        "w2", [replace(decide(due, [t1], then=t1 + MINUTE), overlap=Overlap.BUFFER_ONE)], now=t1, lease=LEASE
    )
    assert fired.runs == [] and len(fired.buffered) == 1  # it still counted the run being completed
    go.set()
    await completing
    [started] = (await store.claim_due("w3", now=t1, lease=LEASE, limit=10, horizon=T0)).runs
    assert started.id == fired.buffered[0].id


async def test_a_removal_racing_the_completion_of_its_run_waits_for_it_without_a_deadlock(
    stores: OpenStore, prefix: str, monkeypatch: pytest.MonkeyPatch, recorded_retries: list[BaseException]
) -> None:
    """complete() locks a run, then its task; remove() detaches the task's runs before it deletes
    the task row, so it takes the same locks in the same order and simply waits."""
    from tests.contract.helpers import LEASE, MINUTE, T0, decide, finished, task

    store = await stores()
    await store.add([task("a")])
    [claimed] = (await store.claim_due("w1", now=T0, lease=LEASE, limit=10)).tasks
    [running] = (await store.fire("w1", [decide(claimed, [T0], then=T0 + MINUTE)], now=T0, lease=LEASE))[
        0
    ].runs

    counting, go = hold_before(monkeypatch, "executemany", queries.COUNT_RUNS)
    completing = asyncio.create_task(store.complete("w1", [finished(running, at=T0 + MINUTE)]))
    await counting.wait()  # the run row is locked, the task row not yet
    removing = asyncio.create_task(store.remove(["a"]))
    await until_waiting_for_lock(prefix, "_runs SET detached")  # the removal waits for the run's lock
    go.set()
    assert await completing == set() and await removing == ["a"]
    assert recorded_retries == []  # no transaction lost a deadlock and ran again
    assert await store.list_runs() == [] and await store.get("a") is None


async def test_a_removal_racing_a_completion_that_promotes_a_buffered_run_waits_without_a_deadlock(
    stores: OpenStore, prefix: str, monkeypatch: pytest.MonkeyPatch, recorded_retries: list[BaseException]
) -> None:
    """complete() locks the run, its task, then the buffered run it promotes; remove() detaches
    the runs that are not buffered first, in id order, so it never holds the buffered run (whose
    row an extend moved before the running one's in the heap) while it waits for the running one."""
    from tests.contract.helpers import LEASE, MINUTE, T0, decide, finished, held, task

    store = await stores()
    await store.add([task("a", options=TaskOptions(overlap=Overlap.BUFFER_ONE))])
    [claimed] = (await store.claim_due("w1", now=T0, lease=LEASE, limit=10)).tasks
    decision = replace(decide(claimed, [T0], then=T0 + MINUTE), overlap=Overlap.BUFFER_ONE)
    [running] = (await store.fire("w1", [decision], now=T0, lease=LEASE))[0].runs
    [claimed] = (await store.claim_due("w1", now=T0 + MINUTE, lease=LEASE, limit=10)).tasks
    decision = replace(decide(claimed, [T0 + MINUTE], then=T0 + 2 * MINUTE), overlap=Overlap.BUFFER_ONE)
    [buffered] = (await store.fire("w1", [decision], now=T0 + MINUTE, lease=LEASE))[0].buffered
    # the engine renews leases while a run goes on: the leased run's row gets a new version,
    # after the buffered run's in the heap
    assert await store.extend("w1", held(running), lease=LEASE) == {running.id}
    order = await _sql(f"SELECT id FROM {prefix}_runs ORDER BY ctid")
    assert [row[0] for row in order] == [buffered.id, running.id]

    promoting, go = hold_before(monkeypatch, "fetch", queries.PROMOTE_BUFFERED)
    completing = asyncio.create_task(store.complete("w1", [finished(running, at=T0 + MINUTE)]))
    await promoting.wait()  # the run and its task are locked, the buffered run not yet
    removing = asyncio.create_task(store.remove(["a"]))
    await until_waiting_for_lock(prefix, "_runs SET detached")  # the removal waits for a run's lock
    go.set()
    async with asyncio.timeout(30):
        assert await completing == set()
        assert await removing == ["a"]
    assert recorded_retries == []  # no transaction lost a deadlock (40P01) and ran again


async def test_an_add_due_before_a_sleeping_workers_wakeup_notifies_it_whatever_the_clocks(
    stores: OpenStore, prefix: str
) -> None:
    """A claim's end is in the store's clock, a next run time in the caller's: a claimed task
    does not stand for the wake-up of a worker whose clock runs ahead of the server's."""
    store = await stores()
    conn = await asyncpg.connect(URL)
    try:
        (row,) = await conn.fetch("SELECT clock_timestamp()")
        server_now = row[0]
    finally:
        await conn.close()
    caller_now = server_now + timedelta(minutes=5)  # this caller's clock: 5 minutes ahead of the server's
    first = _task("first")
    first.next_run_time = caller_now
    await store.add([first])
    lease = timedelta(seconds=10)
    claim = await store.claim_due("w1", now=caller_now, lease=lease, limit=1, horizon=caller_now)
    assert [t.id for t in claim.tasks] == ["first"]
    # a sleeping worker (caller's clock) would sleep until about caller_now + 10 s (the claim's end)
    wake = await store.next_wakeup(now=caller_now)
    assert wake is not None and wake > caller_now + timedelta(seconds=5)
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(URL)
    try:
        await listener.add_listener(f"{prefix}_wakeup", lambda *_: heard.put_nowait("wake"))
        second = _task("second")
        second.next_run_time = caller_now + timedelta(seconds=2)  # due before that wake-up
        await store.add([second])
        await asyncio.wait_for(heard.get(), 3)
    finally:
        await listener.close()


@pytest.mark.parametrize("setting", ["statement_timeout", "lock_timeout"])
async def test_a_completion_that_times_out_is_the_store_unavailable_not_a_refusal(
    prefix: str, setting: str
) -> None:
    """A statement cancelled by a timeout (a big completion on a loaded server, a lock held too
    long) is the store's trouble: the engine retries it, and never counts it as the store
    refusing that result (which would end the run as a bare failure, then quarantine its task)."""
    from tests.contract.helpers import finished, start_run, task

    store = PostgreSQLStore(f"{URL}?{setting}=100", table_prefix=prefix)
    holder = await asyncpg.connect(URL)
    try:
        await store.add([task("a")])
        [run] = await start_run(store, "w1")
        async with holder.transaction():
            await holder.execute(f"SELECT 1 FROM {prefix}_runs WHERE id = $1 FOR UPDATE", run.id)
            with pytest.raises(StoreUnavailableError, match="canceling statement"):
                await store.complete("w1", [finished(run)])
        assert await store.complete("w1", [finished(run)]) == set()
        assert await store.list_runs() == []
    finally:
        await holder.close()
        await store.close()
