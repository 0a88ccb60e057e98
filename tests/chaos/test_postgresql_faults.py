"""A worker process on a private PostgreSQL that faults: a crash and restart mid-run, no server,
a server that never answers, and the NOTIFY listener coming back after a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from backbeat import SchedulerConfig, StoreUnavailableError
from backbeat.stores.postgresql import PostgreSQLStore, queries
from backbeat.stores.postgresql.connection import render
from backbeat.stores.postgresql.migrations import MIGRATIONS
from tests.chaos.records import executions, overlaps
from tests.chaos.scenarios import (
    labels,
    run_keys_seen_twice,
    start_fails_on_a_silent_server,
    worker_fails_to_start,
    worker_survives_a_restart,
)
from tests.integration import jobs
from tests.postgresql_server import PostgresServerHandle, fresh_prefix, usable_postgres_url
from tests.redis_server import free_port
from tests.scheduling import SchedulerFactory, Worker, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgresql]


async def test_a_worker_survives_a_postgresql_restart_and_resumes(
    private_postgres: PostgresServerHandle,
    make_scheduler: SchedulerFactory,
    record_file: Path,
    workers: Callable[..., Worker],
    tmp_path: Path,
) -> None:
    log = await worker_survives_a_restart(
        private_postgres.url,
        crash=private_postgres.crash,  # immediate stop: every backend quits at once
        restart=private_postgres.start,  # crash recovery replays the WAL
        make_scheduler=make_scheduler,
        record_file=record_file,
        workers=workers,
        log=tmp_path / "worker.log",
    )
    assert "StoreUnavailableError" in log, log


async def test_a_scheduler_on_an_unreachable_postgresql_fails_promptly_with_a_clear_error(
    make_scheduler: SchedulerFactory,
) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://postgres:s3cret-pw@127.0.0.1:{port}/test"
    scheduler = make_scheduler(url)
    started = time.monotonic()
    with pytest.raises(
        StoreUnavailableError, match=rf"PostgreSQL store at 127\.0\.0\.1:{port}/test"
    ) as raised:
        await scheduler.start()
    assert time.monotonic() - started < 5
    assert "s3cret-pw" not in str(raised.value)
    assert not scheduler.running

    # a worker process started there exits at once, saying why
    stderr = await worker_fails_to_start(url)
    assert f"StoreUnavailableError: PostgreSQL store at 127.0.0.1:{port}/test" in stderr
    assert "s3cret-pw" not in stderr


async def test_a_postgresql_that_accepts_but_never_answers_fails_the_start_instead_of_hanging(
    make_scheduler: SchedulerFactory,
) -> None:
    def store_at(port: int) -> PostgreSQLStore:
        return PostgreSQLStore(f"postgresql://postgres@127.0.0.1:{port}/test", connect_timeout=1)

    await start_fails_on_a_silent_server(make_scheduler, store_at)


async def listening(url: str, channel: str) -> bool:
    """Whether a session LISTENs on ``channel`` (the store's wake-up listener is connected)."""
    conn = await asyncpg.connect(url, timeout=5)
    try:
        found = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE query ILIKE $1 AND pid <> pg_backend_pid()",
            f"%LISTEN%{channel}%",
        )
        return bool(found)
    finally:
        await conn.close()


async def wait_listening(url: str, channel: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await listening(url, channel):
        assert time.monotonic() < deadline, f"nobody LISTENs on {channel} after {timeout}s"
        await asyncio.sleep(0.1)


POLL = 30.0
"""The woken scheduler's poll interval: only a NOTIFY can wake it sooner."""


async def test_the_wakeup_listener_reconnects_after_a_restart_and_wakes_the_worker_promptly(
    private_postgres: PostgresServerHandle, make_scheduler: SchedulerFactory, record_file: Path
) -> None:
    url = private_postgres.url
    channel = "backbeat_wakeup"  # the default prefix's
    # the woken scheduler, on a store instance of its own, polls only every 30 s; the producer's
    # writes reach it through NOTIFY on the server, as another process's would
    config = SchedulerConfig(lease_seconds=2.0, poll_interval=POLL, shutdown_timeout=5.0)
    worker = make_scheduler(url, config=config)
    await worker.start()
    producer = make_scheduler(url, producer_only=True)
    await producer.start()
    path = str(record_file)
    await wait_listening(url, channel)
    await asyncio.sleep(0.3)  # the engine settles into its long sleep
    sent = time.time()
    await producer.schedule_immediate_task("before", jobs.note, args=[path, "before"])
    await wait_for(lambda: labels(record_file, "before") != [], timeout=POLL / 3)
    assert labels(record_file, "before")[0] - sent < POLL / 3

    await asyncio.to_thread(private_postgres.crash)
    await asyncio.sleep(1.5)
    await asyncio.to_thread(private_postgres.start)
    await wait_listening(url, channel)  # the listener's backoff is at most 10 s
    # a canary proves the engine's claim loop is past its error backoff, then sleeping again
    await producer.schedule_immediate_task("canary", jobs.note, args=[path, "canary"])
    await wait_for(lambda: labels(record_file, "canary") != [], timeout=POLL / 2)
    await asyncio.sleep(0.3)
    sent = time.time()
    await producer.schedule_immediate_task("after", jobs.note, args=[path, "after"])
    await wait_for(lambda: labels(record_file, "after") != [], timeout=POLL / 3)
    assert labels(record_file, "after")[0] - sent < POLL / 3, "woken by NOTIFY, not by the poll"
    assert run_keys_seen_twice(record_file) == {}
    assert [len(labels(record_file, name)) for name in ("before", "canary", "after")] == [1, 1, 1]


async def test_a_fire_held_up_longer_than_the_lease_never_lets_two_processes_run_one_key_at_once(
    make_scheduler: SchedulerFactory,
    record_file: Path,
    workers: Callable[..., Worker],
    postgres_prefixes: list[tuple[str, str]],
) -> None:
    base = usable_postgres_url()
    prefix = fresh_prefix()
    postgres_prefixes.append((base, prefix))
    url = f"{base}{'&' if '?' in base else '?'}prefix={prefix}"
    for _ in range(2):
        workers(url, "--lease", "1")
    producer = make_scheduler(url, producer_only=True)
    await producer.start()
    path = str(record_file)
    await producer.schedule_at(
        "charge",
        jobs.slow,
        scheduled_time=datetime.now(UTC) + timedelta(seconds=0.5),
        args=[path, 1.5, "charge"],
    )
    # A schema change elsewhere (a migration, say) holds a SHARE lock on <prefix>_runs for 2.5 s,
    # longer than the lease: the claim goes through, its fire() waits. The run it then creates
    # must be leased from then, not from the claim, or another worker takes it over at once.
    conn = await asyncpg.connect(base, timeout=5)
    try:
        async with conn.transaction():
            await conn.execute(render(queries.SCHEMA_LOCK, prefix))
            for statement in MIGRATIONS[0].statements:
                if "_runs" in statement:
                    await conn.execute(render(statement, prefix))
            held = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND mode = 'ShareLock' "
                "AND relation = $1::regclass",
                f"{prefix}_runs",
            )
            assert held == 1
            await asyncio.sleep(2.5)  # the task falls due meanwhile: claimed, then fired after the wait
    finally:
        await conn.close()
    await wait_for(lambda: any(r["event"] == "end" for r in jobs.read_records(record_file)), timeout=15)
    await asyncio.sleep(1.0)  # time for a second execution to show
    per_key = executions(jobs.read_records(record_file))
    assert overlaps(per_key, {}) == []
    # The run was created with a lease that had lapsed in the wait: the worker that fired it
    # checks it still holds it before starting it, so exactly one worker runs it — attempt 1
    # if the firing worker kept it, attempt 2 if the other one recovered it first.
    [[execution]] = per_key.values()
    assert execution.attempt in (1, 2) and execution.end is not None


async def test_a_store_opens_next_to_busy_instances_without_waiting_for_their_transactions(
    postgres_prefixes: list[tuple[str, str]],
) -> None:
    """Opening a store whose schema exists takes no table lock: DDL such as ``CREATE INDEX IF NOT
    EXISTS`` would wait for (and could deadlock with) every running transaction of the others."""
    base = usable_postgres_url()
    prefix = fresh_prefix()
    postgres_prefixes.append((base, prefix))
    first = PostgreSQLStore(base, table_prefix=prefix)
    await first.open()  # the schema exists from now on
    second = PostgreSQLStore(base, table_prefix=prefix)
    completing = await asyncpg.connect(base, timeout=5)
    try:
        # another instance's complete(), midway: it wrote <prefix>_runs and <prefix>_tasks
        async with completing.transaction():
            await completing.execute(f"UPDATE {prefix}_runs SET attempt = attempt WHERE id = 'none'")
            await completing.execute(f"UPDATE {prefix}_tasks SET running = running WHERE id = 'none'")
            await asyncio.wait_for(second.open(), 5)
            assert await second.get("none") is None
    finally:
        await completing.close()
        await second.close()
        await first.close()
