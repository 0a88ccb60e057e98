"""Retries, dead letters, circuit breakers, failure handlers, timeouts and cancelling runs,
on a real SQLite file (and across real processes)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from backbeat import (
    BackgroundTaskScheduler,
    CircuitBreakerPolicy,
    CircuitOpenError,
    EventKind,
    RetryPolicy,
    SchedulerEvent,
)
from backbeat.errors import ConfigurationError
from backbeat.model.history import HistoryOutcome, HistoryQuery
from backbeat.stores.redis.keys import Keys
from tests.integration import resilience_jobs as jobs
from tests.integration.conftest import SERVER_STORES
from tests.integration.jobs import read_records, slow
from tests.redis_server import RedisServerHandle
from tests.scheduling import SchedulerFactory, Worker, dead_letters, eventually, wait_for

FAST_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.1, backoff_factor=2.0, jitter=0)


def attempts(path: Path) -> list[dict[str, Any]]:
    return [r for r in read_records(path) if r["event"] == "attempt"]


async def gone(scheduler: BackgroundTaskScheduler, task_id: str) -> None:
    async def check() -> bool:
        return await scheduler.get_task_info(task_id) is None

    await eventually(check)


# -- retries and dead letters -------------------------------------------------------------------


async def test_a_failed_run_is_retried_with_backoff_under_the_same_key(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    scheduler = make_scheduler(sqlite_url)
    await scheduler.start_async()
    task_id = await scheduler.schedule_immediate_task(
        "pay", jobs.flaky, args=[str(record_file), 2], retry=FAST_RETRY
    )
    await wait_for(lambda: len(attempts(record_file)) == 3)
    runs = attempts(record_file)
    assert [r["attempt"] for r in runs] == [1, 2, 3]
    assert len({r["run_id"] for r in runs}) == 1
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(runs)]
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19, f"backoff 0.1 s then 0.2 s, got {gaps}"
    await gone(scheduler, task_id)
    assert await scheduler.list_dead_letters() == []


async def test_the_last_failure_is_a_dead_letter_that_can_be_rerun_and_removed(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    scheduler = make_scheduler(sqlite_url)
    await scheduler.start_async()
    policy = RetryPolicy(max_attempts=2, initial_delay=0.05, jitter=0)
    task_id = await scheduler.schedule_immediate_task(
        "charge", jobs.always_fails, args=[str(record_file)], retry=policy, tags=["order:9"]
    )

    [letter] = await dead_letters(scheduler)
    assert [r["attempt"] for r in attempts(record_file)] == [1, 2]
    assert (letter.task_id, letter.attempt) == (task_id, 2)
    assert letter.error_type == "tests.integration.resilience_jobs.PaymentDeclinedError"
    assert letter.error == "PaymentDeclinedError: card declined"
    assert letter.traceback is not None and "always_fails" in letter.traceback
    assert letter.task is not None and letter.task.tags == ("order:9",)
    await gone(scheduler, task_id)
    assert await scheduler.get_dead_letter(letter.id) == letter

    # re-run it: the task comes back from the dead letter's snapshot, fails twice more, dead again
    assert await scheduler.retry_dead_letter(letter.id) == letter.id
    await wait_for(lambda: len(attempts(record_file)) == 4)
    assert [r["attempt"] for r in attempts(record_file)] == [1, 2, 1, 2]
    await dead_letters(scheduler)
    assert await scheduler.remove_dead_letters([letter.id]) == [letter.id]
    assert await scheduler.list_dead_letters() == []


async def test_a_recurring_task_without_a_retry_policy_leaves_no_dead_letters(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    scheduler = make_scheduler(sqlite_url)
    await scheduler.start_async()
    await scheduler.schedule_recurring_task("tick", jobs.always_fails, interval=0.1, args=[str(record_file)])
    await wait_for(lambda: len(attempts(record_file)) >= 3)
    assert await scheduler.list_dead_letters() == []


async def test_a_retry_survives_the_death_of_the_process_that_failed(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path, workers: Callable[..., Worker]
) -> None:
    first = workers(sqlite_url, "--lease", "1")
    producer = make_scheduler(sqlite_url, producer_only=True)
    slow_retry = RetryPolicy(max_attempts=3, initial_delay=1.5, jitter=0)
    await producer.schedule_immediate_task("pay", jobs.flaky, args=[str(record_file), 1], retry=slow_retry)
    await wait_for(lambda: len(attempts(record_file)) == 1)
    first.kill()  # the retry is a waiting run in the store, not a timer in the dead process
    second = workers(sqlite_url, "--lease", "1")
    await wait_for(lambda: len(attempts(record_file)) == 2, timeout=15)
    failed, retried = attempts(record_file)
    assert (failed["pid"], retried["pid"]) == (first.process.pid, second.process.pid)
    assert (failed["run_id"], failed["attempt"], retried["attempt"]) == (retried["run_id"], 1, 2)
    assert retried["t"] - failed["t"] >= 1.4


async def test_a_timeout_fails_the_run_and_a_one_shot_is_dead_lettered(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    scheduler = make_scheduler(sqlite_url)
    await scheduler.start_async()
    await scheduler.schedule_immediate_task("slow", slow, args=[str(record_file), 5], timeout=0.2)

    async def dead() -> bool:
        return bool(await scheduler.list_dead_letters())

    await eventually(dead)
    [letter] = await scheduler.list_dead_letters()
    assert letter.error_type == "builtins.TimeoutError" and "timed out after 0.2s" in (letter.error or "")
    assert [r["event"] for r in read_records(record_file)] == ["start", "cancelled"]


# -- policies from decorators -------------------------------------------------------------------


async def test_a_decorated_function_carries_its_retry_policy_into_the_store(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    scheduler = make_scheduler(sqlite_url)
    await scheduler.start_async()
    task_id = await scheduler.schedule_immediate_task(
        "charge", jobs.decorated_charge, args=[str(record_file), "o-1"], kwargs={"fail_times": 2}
    )
    await wait_for(lambda: len(attempts(record_file)) == 3)
    # the engine applied the stored policy: one attempt per run attempt, not retries in process
    assert [r["attempt"] for r in attempts(record_file)] == [1, 2, 3]
    await gone(scheduler, task_id)


async def test_decorated_functions_called_directly_apply_their_policies_in_process() -> None:
    calls = jobs.DirectCalls()
    assert await calls.flaky(2) == 3, "two failures retried, the third call succeeds"
    calls = jobs.DirectCalls()
    with pytest.raises(jobs.PaymentDeclinedError):
        await calls.flaky(5)
    assert calls.calls == 3, "max_attempts=3 in all"

    calls = jobs.DirectCalls()
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await calls.guarded(True)
    with pytest.raises(CircuitOpenError):
        await calls.guarded(False)
    assert calls.calls == 2, "an open breaker does not call through"
    await asyncio.sleep(0.25)
    assert await calls.guarded(False) == "ok", "half-open after recovery_timeout; a success closes it"


async def test_seed_style_instance_policies_are_stored_with_the_task(
    make_scheduler: SchedulerFactory, sqlite_url: str
) -> None:
    scheduler = make_scheduler(sqlite_url, producer_only=True)
    processor = jobs.ResilientOrderProcessor(scheduler)
    task_id = await scheduler.schedule_delayed_task(
        "payment", processor.process_payment_task, delay_minutes=5, args=["o-7", 12.5]
    )
    stored = await scheduler.store.get(task_id)
    assert stored is not None
    assert stored.options.retry == RetryPolicy(max_attempts=3, backoff_factor=2.0, max_delay=300).to_json()
    assert (
        stored.options.circuit_breaker
        == CircuitBreakerPolicy(failure_threshold=5, recovery_timeout=60, success_threshold=3).to_json()
    )


async def test_a_policy_option_of_the_wrong_kind_is_refused_by_name(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    scheduler = make_scheduler(sqlite_url, producer_only=True)
    with pytest.raises(ConfigurationError, match="retry"):
        await scheduler.schedule_immediate_task("x", jobs.always_fails, args=[str(record_file)], retry=3)
    with pytest.raises(ConfigurationError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ConfigurationError, match="unknown CircuitBreakerPolicy field"):
        CircuitBreakerPolicy.from_json({"failure_treshold": 3})


# -- circuit breakers ---------------------------------------------------------------------------


async def test_an_open_breaker_defers_runs_until_it_half_opens_then_closes(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path, tmp_path: Path
) -> None:
    outage = jobs.outage(tmp_path)
    outage.touch()
    breaker = CircuitBreakerPolicy(name="kitchen", failure_threshold=2, recovery_timeout=1.0)
    scheduler = make_scheduler(sqlite_url)
    deferred: list[SchedulerEvent] = []
    scheduler.add_listener(deferred.append, [EventKind.RUN_DEFERRED])
    await scheduler.start_async()
    args = [str(record_file), str(outage)]
    for n in range(2):
        await scheduler.schedule_immediate_task(
            f"call-{n}", jobs.outside_service, args=args, circuit_breaker=breaker
        )
    await wait_for(lambda: len(attempts(record_file)) == 2)

    async def opened() -> bool:
        return bool((await scheduler.circuit_breaker_state("kitchen"))["state"] == "open")

    await eventually(opened)
    later = await scheduler.schedule_immediate_task(
        "call-late", jobs.outside_service, args=args, circuit_breaker=breaker
    )
    await wait_for(lambda: bool(deferred))
    assert deferred[0].task_id == later
    assert len(attempts(record_file)) == 2, "a deferred run does not call the service"
    outage.unlink()
    await wait_for(lambda: len(attempts(record_file)) == 3, timeout=10)
    assert attempts(record_file)[-1]["task_id"] == later
    assert attempts(record_file)[-1]["attempt"] == 1, "a deferral is not a failed attempt"
    await gone(scheduler, later)
    assert (await scheduler.circuit_breaker_state("kitchen"))["state"] == "closed"


async def test_a_breaker_opened_in_one_process_defers_runs_in_another(
    make_scheduler: SchedulerFactory,
    sqlite_url: str,
    record_file: Path,
    tmp_path: Path,
    workers: Callable[..., Worker],
) -> None:
    outage = jobs.outage(tmp_path)
    outage.touch()
    # recovery 6 s: the asserts below must come before it, after a worker subprocess started
    # on a machine that may be busy
    breaker = CircuitBreakerPolicy(name="payments", failure_threshold=2, recovery_timeout=6.0)
    opener = make_scheduler(sqlite_url)
    await opener.start_async()
    args = [str(record_file), str(outage)]
    for n in range(2):
        await opener.schedule_immediate_task(
            f"pay-{n}", jobs.outside_service, args=args, circuit_breaker=breaker
        )
    await wait_for(lambda: len(attempts(record_file)) == 2)
    await eventually(lambda: _state_is(opener, "payments", "open"))
    await opener.stop_async()
    opened_at = time.time()

    worker = workers(sqlite_url, "--lease", "1")
    producer = make_scheduler(sqlite_url, producer_only=True)
    outage.unlink()  # the service is back, but the other process only learns it after recovery_timeout
    await producer.schedule_immediate_task(
        "pay-late", jobs.outside_service, args=args, circuit_breaker=breaker
    )
    await asyncio.sleep(1.0)
    assert len(attempts(record_file)) == 2, "the worker deferred the run: the breaker is open there too"
    [waiting] = await producer.store.list_runs()
    assert waiting.owner is None and waiting.lease_until.timestamp() >= opened_at + 4.5
    await wait_for(lambda: len(attempts(record_file)) == 3, timeout=15)
    assert attempts(record_file)[-1]["pid"] == worker.process.pid
    assert attempts(record_file)[-1]["t"] >= opened_at + 5.5
    await eventually(lambda: _state_is(producer, "payments", "closed"))


async def _state_is(scheduler: BackgroundTaskScheduler, name: str, state: str) -> bool:
    return bool((await scheduler.circuit_breaker_state(name))["state"] == state)


# -- failure handlers ---------------------------------------------------------------------------


async def test_failure_handlers_hear_each_outcome_with_its_context(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    handler = jobs.RecordingHandler()
    scheduler = make_scheduler(sqlite_url, failure_handlers=[handler])
    await scheduler.start_async()
    task_id = await scheduler.schedule_immediate_task(
        "order_payment",
        jobs.flaky,
        args=[str(record_file)],
        kwargs={"fail_times": 1},
        retry=FAST_RETRY,
        tags=["o-3"],
    )
    await wait_for(lambda: len(handler.successes) == 1)
    [(name, error, failed)] = handler.failures
    assert name == "order_payment" and isinstance(error, jobs.PaymentDeclinedError)
    assert (failed["task_id"], failed["retry_count"], failed["will_retry"]) == (task_id, 0, True)
    assert failed["tags"] == ["o-3"] and failed["fail_times"] == 1 and failed["path"] == str(record_file)
    assert failed["execution_time"] >= 0
    [(name, result, succeeded)] = handler.successes
    assert (name, result, succeeded["retry_count"], succeeded["attempt"]) == (
        "order_payment",
        "paid on attempt 2",
        1,
        2,
    )


async def test_a_raising_handler_does_not_stop_the_scheduler(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    class Broken(jobs.RecordingHandler):
        async def handle_task_success(self, task_name: str, result: Any, context: dict[str, Any]) -> None:
            raise RuntimeError("handler bug")

    scheduler = make_scheduler(sqlite_url)
    scheduler.add_failure_handler(Broken())
    await scheduler.start_async()
    first = await scheduler.schedule_immediate_task("a", jobs.flaky, args=[str(record_file), 0])
    second = await scheduler.schedule_immediate_task("b", jobs.flaky, args=[str(record_file), 0])
    await gone(scheduler, first)
    await gone(scheduler, second)
    assert len(attempts(record_file)) == 2


async def test_a_failure_whose_message_no_json_can_hold_is_dead_lettered_and_completions_go_on(
    make_scheduler: SchedulerFactory, store_url: str, record_file: Path
) -> None:
    scheduler = make_scheduler(store_url)
    await scheduler.start_async()
    task_id = await scheduler.schedule_immediate_task(
        "charge", jobs.fails_with_a_lone_surrogate, args=[str(record_file)], retry=RetryPolicy(max_attempts=1)
    )

    [letter] = await dead_letters(scheduler)
    assert letter.error == "PaymentDeclinedError: card ? declined"
    await gone(scheduler, task_id)
    after = await scheduler.schedule_immediate_task("next", jobs.flaky, args=[str(record_file), 0])
    await gone(scheduler, after)  # the completion loop was not stuck on the dead letter
    assert len(attempts(record_file)) == 2


async def _corrupt_run_count(store_url: str, task_id: str) -> None:
    """Make a task record's run count not a number: complete.lua fails on it (a Lua error),
    whatever the result, and completes every other run."""
    redis = Redis.from_url(store_url.split("?")[0])
    key = Keys(store_url.split("prefix=")[1]).tasks
    try:
        record = await redis.hget(key, task_id)
        assert isinstance(record, bytes)
        fields = record.split(b"|", 9)
        fields[3] = b"x"
        await redis.hset(key, task_id, b"|".join(fields))
    finally:
        await redis.aclose()


async def _poisoned_worker(
    make_scheduler: SchedulerFactory, store_url: str, record_file: Path, lease_seconds: float
) -> tuple[BackgroundTaskScheduler, list[SchedulerEvent], str]:
    """A started worker, the events it emits, and the id of a task whose run it holds and whose
    Redis record no completion can read (:func:`_corrupt_run_count`)."""
    scheduler = make_scheduler(store_url, lease_seconds=lease_seconds)
    events: list[SchedulerEvent] = []
    scheduler.events.add_listener(events.append)
    await scheduler.start_async()
    poison = await scheduler.schedule_immediate_task("poison", slow, args=[str(record_file), 0.5])
    await wait_for(lambda: bool(read_records(record_file)))
    await _corrupt_run_count(store_url, poison)
    return scheduler, events, poison


def _set_aside(events: list[SchedulerEvent]) -> list[SchedulerEvent]:
    """The store errors of ``events`` that name a run: a result stripped, or given up."""
    return [event for event in events if event.kind == EventKind.STORE_ERROR and event.run_id]


@pytest.mark.parametrize("store_url", [SERVER_STORES[0]], indirect=True)
async def test_a_completion_redis_refuses_holds_back_no_other_and_its_task_is_quarantined(
    make_scheduler: SchedulerFactory, store_url: str, record_file: Path
) -> None:
    # before, the batch holding the refused result was refused for ever
    scheduler, events, poison = await _poisoned_worker(make_scheduler, store_url, record_file, 30.0)
    ticker = await scheduler.schedule_recurring_task(
        "ticker", jobs.flaky, interval=0.1, args=[str(record_file), 0]
    )

    async def ticked(times: int) -> bool:
        info = await scheduler.get_task_info(ticker)
        return info is not None and info.runs >= times

    await eventually(lambda: ticked(5))
    await wait_for(lambda: len(_set_aside(events)) == 2)  # stripped of its result, then given up
    assert [event.task_id for event in _set_aside(events)] == [poison, poison]
    assert [record.key for record in await scheduler.store.quarantined()] == [poison]
    await eventually(lambda: ticked(10))
    [run] = [run for run in await scheduler.store.list_runs() if run.task_id == poison]
    assert run.owner is not None  # still leased here: taken over as a lost run once its lease runs out

    async def recorded() -> bool:
        entries, _ = await scheduler.store.run_history(HistoryQuery(task_id=poison))
        return bool(entries)

    await eventually(recorded)  # the run that ran leaves an entry: no completion will record it
    [entry], _ = await scheduler.store.run_history(HistoryQuery(task_id=poison))
    assert (entry.outcome, entry.run_id, entry.error_type) == (
        HistoryOutcome.FAILURE,
        run.id,
        "backbeat.errors.StoreError",
    )
    assert entry.error is not None and entry.error.startswith(f"the store refused to complete run {run.id}")
    assert entry.started_at is not None


@pytest.mark.parametrize("store_url", [SERVER_STORES[0]], indirect=True)
async def test_a_run_redis_cannot_complete_on_a_quiet_worker_is_given_up_once_not_for_ever(
    make_scheduler: SchedulerFactory, store_url: str, record_file: Path
) -> None:
    # refused alone (the store answers a probe) until another result completes now and then, and
    # once its lease ran out the run is taken over: its task quarantined, it is kept waiting,
    # not run and given up again and again
    scheduler, events, poison = await _poisoned_worker(make_scheduler, store_url, record_file, 3.0)
    await scheduler.schedule_recurring_task("ticker", jobs.flaky, interval=1.0, args=[str(record_file), 0])
    await wait_for(lambda: len(_set_aside(events)) == 2, timeout=60)
    assert [record.key for record in await scheduler.store.quarantined()] == [poison]

    async def kept_waiting() -> bool:
        runs = [run for run in await scheduler.store.list_runs() if run.task_id == poison]
        return len(runs) == 1 and runs[0].owner is None

    await eventually(kept_waiting)  # taken over after its lease, and kept (deferred) unrun
    assert len(_set_aside(events)) == 2
    assert [record["event"] for record in read_records(record_file)].count("start") == 1  # run once only


@pytest.mark.redis
async def test_a_lone_completion_refused_while_redis_refuses_writes_is_never_set_aside(
    make_scheduler: SchedulerFactory, private_redis: RedisServerHandle, record_file: Path
) -> None:
    # an outage that answers: writes refused (NOREPLICAS) while reads go on; the probe after a
    # refusal on a quiet worker writes (it renews the run's lease), so it fails and counts nothing
    url = f"{private_redis.url}?prefix=noreplicas"
    scheduler = make_scheduler(url, lease_seconds=30.0)
    events: list[SchedulerEvent] = []
    scheduler.events.add_listener(events.append)
    await scheduler.start_async()
    task_id = await scheduler.schedule_immediate_task("lone", slow, args=[str(record_file), 0.5])
    await wait_for(lambda: bool(read_records(record_file)))
    redis = Redis.from_url(private_redis.url)
    try:
        await redis.config_set("min-replicas-to-write", 1)
        await asyncio.sleep(8)  # refused all along: several times, over more than POISON_SPAN
        assert [run.task_id for run in await scheduler.store.list_runs()] == [task_id]
        await redis.config_set("min-replicas-to-write", 0)
    finally:
        await redis.aclose()
    await gone(scheduler, task_id)
    assert not _set_aside(events)
    assert await scheduler.store.quarantined() == []
    entries, _ = await scheduler.store.run_history(HistoryQuery(task_id=task_id))
    assert [entry.outcome for entry in entries] == [HistoryOutcome.SUCCESS]


@pytest.mark.redis
async def test_a_scheduler_stops_within_a_lease_when_its_store_is_gone_and_loses_no_run(
    make_scheduler: SchedulerFactory, private_redis: RedisServerHandle, record_file: Path
) -> None:
    url = f"{private_redis.url}?prefix=gone"
    scheduler = make_scheduler(url, lease_seconds=2.0)
    await scheduler.start_async()
    task_id = await scheduler.schedule_immediate_task("slow", slow, args=[str(record_file), 0.5])
    await wait_for(lambda: bool(read_records(record_file)))
    private_redis.kill()  # the run ends with no store to take its completion

    began = time.monotonic()
    async with asyncio.timeout(20):  # before, it waited for the store for ever
        await scheduler.stop_async()
    assert time.monotonic() - began < 2.0 + 3.0  # the job's end, then a lease at most

    private_redis.start()  # its append-only file kept the run: another worker takes it over
    worker = make_scheduler(url, lease_seconds=2.0)
    await worker.start_async()
    await gone(worker, task_id)
    assert [r["event"] for r in read_records(record_file)] == ["start", "end", "start", "end"]


@pytest.mark.parametrize(("job", "code"), [(jobs.exits, 3), (jobs.exits_in_a_thread, 4)])
async def test_a_job_that_calls_sys_exit_fails_its_run_and_the_worker_goes_on(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path, job: Callable[[str], Any], code: int
) -> None:
    # before, the SystemExit left the job's asyncio task and ended the worker's event loop
    scheduler = make_scheduler(sqlite_url)
    await scheduler.start_async()
    task_id = await scheduler.schedule_immediate_task("cli", job, args=[str(record_file)])
    [letter] = await dead_letters(scheduler)
    assert (letter.task_id, letter.error) == (task_id, f"SystemExit: {code}")
    after = await scheduler.schedule_immediate_task("next", jobs.flaky, args=[str(record_file), 0])
    await gone(scheduler, after)
    assert scheduler.running
    assert len(attempts(record_file)) == 2


# -- cancelling a running run -------------------------------------------------------------------


async def test_a_running_run_is_cancelled_in_this_process(
    make_scheduler: SchedulerFactory, sqlite_url: str, record_file: Path
) -> None:
    scheduler = make_scheduler(sqlite_url)
    await scheduler.start_async()
    task_id = await scheduler.schedule_immediate_task("slow", slow, args=[str(record_file), 30])
    await wait_for(lambda: bool(scheduler.active_runs()))
    [run_id] = scheduler.active_runs()
    assert await scheduler.cancel_run(run_id) is True
    await gone(scheduler, task_id)
    assert [r["event"] for r in read_records(record_file)] == ["start", "cancelled"]


async def test_a_run_in_another_process_is_cancelled_on_request(
    make_scheduler: SchedulerFactory, store_url: str, record_file: Path, workers: Callable[..., Worker]
) -> None:
    # a lease of 60 s: the worker renews it (and looks for requests) every 20 s, so an end
    # within 10 s is the wake-up the request sent
    workers(store_url, "--lease", "60")
    producer = make_scheduler(store_url, producer_only=True)
    task_id = await producer.schedule_immediate_task("slow", slow, args=[str(record_file), 30])
    await wait_for(lambda: bool(read_records(record_file)), timeout=20)
    [started] = read_records(record_file)
    requested = time.monotonic()
    assert await producer.cancel_run(started["run_id"]) is False, "it runs in the worker, not here"
    await gone(producer, task_id)
    assert time.monotonic() - requested < 10, "cancelled on the request's wake-up, not at a lease renewal"
    assert [r["event"] for r in read_records(record_file)] == ["start", "cancelled"]
