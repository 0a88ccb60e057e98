"""Executors: the event loop, a thread pool, a process pool and a user-defined one, via a real store."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from backbeat import ConfigurationError, CustomTaskExecutor, EventKind, SchedulerConfig, SchedulerEvent
from backbeat.executors import ProcessPoolExecutor, make_executor
from backbeat.executors.processes import ProcessPoolChildError
from tests.integration import jobs
from tests.scheduling import SchedulerFactory, wait_for


class CountingExecutor(CustomTaskExecutor):
    """The seed's shape: ``execute_task`` wraps every run of the tasks that name it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, ...]] = []

    async def execute_task(self, task_func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.calls.append(args)
        return {"status": "completed", "result": await task_func(*args, **kwargs)}


async def test_threadpool_runs_plain_functions_in_its_threads(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    config = SchedulerConfig(
        executors={"default": {"type": "threadpool", "max_workers": 2}}, poll_interval=0.2
    )
    scheduler = make_scheduler(sqlite_url, config=config)
    await scheduler.start()
    await scheduler.schedule_immediate_task("sync", jobs.sync_note, args=[str(record_file)])
    await wait_for(lambda: len(jobs.read_records(record_file)) == 1)
    assert jobs.read_records(record_file)[0]["thread"].startswith("backbeat")


async def test_a_cancelled_processpool_call_kills_its_child_and_the_next_call_gets_a_new_one(
    record_file: Path,
) -> None:
    pool = ProcessPoolExecutor(max_workers=1)
    await pool.start()
    try:
        call = asyncio.ensure_future(pool.submit(jobs.child_pid_then_sleep, (str(record_file), 60.0), {}))
        await wait_for(lambda: record_file.exists() and bool(jobs.read_records(record_file)), timeout=30)
        [record] = jobs.read_records(record_file)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        with pytest.raises(ProcessLookupError):
            os.kill(record["pid"], 0)  # the child was killed, not left working on the call
        second = await pool.submit(jobs.child_pid, (str(record_file),), {})
        assert second != record["pid"]
    finally:
        await pool.shutdown()


async def test_a_processpool_job_error_is_raised_and_its_child_is_reused(record_file: Path) -> None:
    pool = ProcessPoolExecutor(max_workers=1)
    await pool.start()
    try:
        first = await pool.submit(jobs.child_pid, (str(record_file),), {})
        with pytest.raises(ValueError, match="bad input"):
            await pool.submit(jobs.child_fails, ("bad input",), {})
        assert await pool.submit(jobs.child_pid, (str(record_file),), {}) == first
    finally:
        await pool.shutdown()
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)  # shutdown ended (and reaped) the idle child


async def test_a_pool_shut_down_without_waiting_fails_its_busy_call_at_once_and_starts_again(
    record_file: Path,
) -> None:
    pool = ProcessPoolExecutor(max_workers=1)
    await pool.start()
    call = asyncio.ensure_future(pool.submit(jobs.child_pid_then_sleep, (str(record_file), 60.0), {}))
    await wait_for(lambda: record_file.exists() and bool(jobs.read_records(record_file)), timeout=30)
    await pool.shutdown(wait=False)
    async with asyncio.timeout(10):
        with pytest.raises(ProcessPoolChildError, match="ended"):
            await call
    await pool.start()
    try:
        assert isinstance(await pool.submit(jobs.child_pid, (str(record_file),), {}), int)
    finally:
        await pool.shutdown()


async def test_a_processpool_job_that_calls_sys_exit_fails_with_it_and_its_child_is_reused(
    record_file: Path,
) -> None:
    # as in the event loop and the thread pool: the run fails "SystemExit: 5"; before, the child
    # ended and the call failed with ProcessPoolChildError (exit code 5), and a new child started
    pool = ProcessPoolExecutor(max_workers=1)
    await pool.start()
    try:
        first = await pool.submit(jobs.child_pid, (str(record_file),), {})
        with pytest.raises(SystemExit) as exited:
            await pool.submit(jobs.child_exits, (5,), {})
        assert exited.value.code == 5
        assert await pool.submit(jobs.child_pid, (str(record_file),), {}) == first
    finally:
        await pool.shutdown()


def test_a_pool_serves_one_event_loop_after_another(record_file: Path) -> None:
    pool = ProcessPoolExecutor(max_workers=1)

    async def one_call() -> int:
        await pool.start()
        try:
            pid: int = await pool.submit(jobs.child_pid, (str(record_file),), {})
            return pid
        finally:
            await pool.shutdown()

    assert asyncio.run(one_call()) != asyncio.run(one_call())


async def test_processpool_runs_module_functions_in_child_processes(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    config = SchedulerConfig(
        executors={"processpool": {"type": "processpool", "max_workers": 1}}, poll_interval=0.2
    )
    scheduler = make_scheduler(sqlite_url, config=config)
    results: list[SchedulerEvent] = []
    scheduler.add_listener(results.append, [EventKind.RUN_EXECUTED, EventKind.RUN_FAILED])
    await scheduler.start()
    await scheduler.schedule_immediate_task(
        "child", jobs.child_pid, args=[str(record_file)], executor="processpool"
    )
    await wait_for(lambda: bool(results), timeout=30)
    assert results[0].kind is EventKind.RUN_EXECUTED
    assert isinstance(results[0].result, int) and results[0].result != os.getpid()


async def test_a_custom_executor_wraps_the_runs_that_name_it(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    orders = CountingExecutor()
    scheduler = make_scheduler(sqlite_url, executors={"orders": orders})
    results: list[SchedulerEvent] = []
    scheduler.add_listener(results.append, [EventKind.RUN_EXECUTED])
    await scheduler.start()
    await scheduler.schedule_immediate_task(
        "order", jobs.note, args=[str(record_file), "A-1"], executor="orders"
    )
    await scheduler.schedule_immediate_task("plain", jobs.note, args=[str(record_file), "B-2"])
    await wait_for(lambda: len(results) == 2)
    assert orders.calls == [(str(record_file), "A-1")]
    wrapped = next(e for e in results if e.task_name == "order")
    assert wrapped.result == {"status": "completed", "result": None}


async def test_a_task_naming_an_unknown_executor_fails_clearly(
    make_scheduler: SchedulerFactory, sqlite_url: str
) -> None:
    scheduler = make_scheduler(sqlite_url)
    failures: list[SchedulerEvent] = []
    scheduler.add_listener(failures.append, [EventKind.RUN_FAILED])
    await scheduler.start()
    await scheduler.schedule_immediate_task("x", jobs.note, args=["unused"], executor="nowhere")
    await wait_for(lambda: bool(failures))
    assert "executor 'nowhere'" in str(failures[0].error)


def test_executor_specs_are_validated() -> None:
    with pytest.raises(ConfigurationError, match="unknown executor type 'gpu'"):
        make_executor({"type": "gpu"})
    with pytest.raises(ConfigurationError, match="max_workers"):
        make_executor({"type": "threadpool", "max_workers": 0})
    with pytest.raises(ConfigurationError, match="invalid options"):
        make_executor({"type": "threadpool", "workers": 3})


async def test_a_timeout_fails_the_run(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    scheduler = make_scheduler(sqlite_url)
    failures: list[SchedulerEvent] = []
    scheduler.add_listener(failures.append, [EventKind.RUN_FAILED])
    await scheduler.start()
    await scheduler.schedule_immediate_task("slow", jobs.slow, args=[str(record_file), 5], timeout=0.2)
    await wait_for(lambda: bool(failures))
    assert isinstance(failures[0].error, TimeoutError) and "timed out after 0.2s" in str(failures[0].error)
