"""Retry and circuit-breaker policies: delays, limits, validation, the decorators' direct calls, and
what RunPolicies makes of each outcome (retry, dead letter, breaker, handlers)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.fakes import FakeClock

from backbeat.errors import ConfigurationError, StoreError
from backbeat.model.attempt import Attempt
from backbeat.model.records import Run, RunOutcome, StateRecord, Task, TaskOptions, run_id_for
from backbeat.model.triggers import make_trigger_spec
from backbeat.policies import definitions
from backbeat.policies.definitions import (
    CircuitBreakerPolicy,
    CircuitOpenError,
    RetryPolicy,
    engine_applies_policies,
    option_json,
)
from backbeat.policies.enforcement import RunPolicies
from backbeat.policies.handlers import TaskFailureHandler
from backbeat.stores.memory import MemoryStore

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class Extreme:
    """Stands in for the ``random`` module: ``uniform`` answers one end of its range."""

    def __init__(self, high: bool) -> None:
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


# -- RetryPolicy delays and limits ---------------------------------------------------------------


def test_delays_grow_by_the_backoff_factor_from_the_initial_delay() -> None:
    policy = RetryPolicy(initial_delay=0.5, backoff_factor=3, max_delay=1000, jitter=0)
    assert [policy.delay(attempt) for attempt in range(1, 6)] == [0.5, 1.5, 4.5, 13.5, 40.5]


def test_delays_stop_growing_at_max_delay() -> None:
    policy = RetryPolicy(initial_delay=1, backoff_factor=10, max_delay=50, jitter=0)
    assert [policy.delay(attempt) for attempt in (1, 2, 3, 9)] == [1, 10, 50, 50]


def test_a_backoff_factor_of_one_keeps_the_delay_constant() -> None:
    policy = RetryPolicy(initial_delay=2, backoff_factor=1, jitter=0)
    assert {policy.delay(attempt) for attempt in range(1, 20)} == {2}


def test_the_delay_of_a_very_late_attempt_is_max_delay_not_an_overflow() -> None:
    # 2.0 ** 1100 is beyond a float: the delay used to raise OverflowError, killing the run's task
    policy = RetryPolicy(max_attempts=5000, backoff_factor=2, max_delay=60, jitter=0)
    assert policy.delay(1100) == 60
    assert RetryPolicy(max_attempts=5000, initial_delay=0, jitter=0).delay(1100) == 0


def test_jitter_spreads_delays_within_its_fraction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(definitions, "random", random.Random(20260105))
    policy = RetryPolicy(initial_delay=10, backoff_factor=2, jitter=0.1)
    delays = [policy.delay(2) for _ in range(500)]  # base 20 s
    assert all(18 <= delay <= 22 for delay in delays)
    assert min(delays) < 19 and max(delays) > 21  # really spread over the range, both ways


@pytest.mark.parametrize(("high", "expected"), [(True, 22.0), (False, 18.0)])
def test_jitter_bounds_are_plus_or_minus_the_fraction(
    monkeypatch: pytest.MonkeyPatch, high: bool, expected: float
) -> None:
    monkeypatch.setattr(definitions, "random", Extreme(high))
    assert RetryPolicy(initial_delay=20, jitter=0.1).delay(1) == pytest.approx(expected)


def test_jitter_never_takes_a_delay_past_max_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(definitions, "random", Extreme(high=True))
    assert RetryPolicy(initial_delay=100, max_delay=100, jitter=0.5).delay(3) == 100


def test_max_attempts_counts_every_attempt_including_the_first() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.allows_another(attempt) for attempt in (1, 2, 3, 4)] == [True, True, False, False]
    assert not RetryPolicy(max_attempts=1).allows_another(1)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"backoff_factor": 0.5}, "backoff_factor"),
        ({"jitter": -0.1}, "jitter"),
        ({"max_delay": "soon"}, "max_delay"),
        ({"initial_delay": -1}, "initial_delay"),
    ],
)
def test_an_invalid_retry_policy_is_refused_naming_the_field(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=f"RetryPolicy.{named}"):
        RetryPolicy(**fields)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"success_threshold": 0}, "success_threshold"),
        ({"recovery_timeout": -1}, "recovery_timeout"),
    ],
)
def test_an_invalid_breaker_policy_is_refused_naming_the_field(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=f"CircuitBreakerPolicy.{named}"):
        CircuitBreakerPolicy(**fields)


def test_policies_round_trip_through_json_and_unknown_fields_are_named() -> None:
    retry = RetryPolicy(max_attempts=4, backoff_factor=1.5, max_delay=9, initial_delay=0.2, jitter=0)
    breaker = CircuitBreakerPolicy(failure_threshold=2, recovery_timeout=5, success_threshold=3, name="api")
    assert RetryPolicy.from_json(retry.to_json()) == retry
    assert CircuitBreakerPolicy.from_json(breaker.to_json()) == breaker
    with pytest.raises(ConfigurationError, match=r"unknown RetryPolicy field.*retries"):
        RetryPolicy.from_json({"retries": 3})
    assert option_json("retry", {"max_attempts": 2}) == RetryPolicy(max_attempts=2).to_json()
    with pytest.raises(ConfigurationError, match="must be a CircuitBreakerPolicy"):
        option_json("circuit_breaker", retry)


def test_breakers_named_alike_share_a_key_and_unnamed_ones_key_by_task_name() -> None:
    assert CircuitBreakerPolicy(name="payments").key("refund") == "breaker:payments"
    assert CircuitBreakerPolicy().key("refund") == "breaker:refund"


# -- the decorators, called directly (not by a scheduler) ----------------------------------------


async def test_a_decorated_function_called_directly_retries_up_to_max_attempts() -> None:
    calls: list[int] = []

    @RetryPolicy(max_attempts=3, initial_delay=0, jitter=0).apply
    async def flaky() -> str:
        calls.append(len(calls) + 1)
        if len(calls) < 3:
            raise RuntimeError("not yet")
        return "done"

    assert await flaky() == "done"
    assert calls == [1, 2, 3]

    calls.clear()

    @RetryPolicy(max_attempts=2, initial_delay=0, jitter=0).apply
    async def broken() -> None:
        calls.append(1)
        raise RuntimeError("always")

    with pytest.raises(RuntimeError, match="always"):
        await broken()
    assert len(calls) == 2


async def test_a_decorated_function_run_by_the_engine_is_called_once_the_engine_retries() -> None:
    calls: list[int] = []

    @RetryPolicy(max_attempts=5, initial_delay=0, jitter=0).apply
    async def broken() -> None:
        calls.append(1)
        raise RuntimeError("once")

    token = engine_applies_policies.set(True)
    try:
        with pytest.raises(RuntimeError):
            await broken()
    finally:
        engine_applies_policies.reset(token)
    assert calls == [1]


async def test_a_direct_call_fails_fast_once_its_local_breaker_opened() -> None:
    calls: list[int] = []

    @CircuitBreakerPolicy(failure_threshold=2, recovery_timeout=3600).apply
    async def down() -> None:
        calls.append(1)
        raise ConnectionError("down")

    for _ in range(2):
        with pytest.raises(ConnectionError):
            await down()
    with pytest.raises(CircuitOpenError):
        await down()
    assert len(calls) == 2


def test_a_policy_decorates_only_async_functions() -> None:
    def plain() -> None:
        pass

    with pytest.raises(ConfigurationError, match="decorate async functions"):
        RetryPolicy().apply(plain)


# -- RunPolicies: what the engine stores for each outcome ----------------------------------------


def make_task(*, one_shot: bool = False, **options: Any) -> Task:
    trigger = (
        make_trigger_spec("date", run_date=T0, now=T0)
        if one_shot
        else make_trigger_spec("interval", seconds=60, start_date=T0, now=T0)
    )
    return Task(
        id="t1",
        name="report",
        job="func:reports:build",
        trigger=trigger,
        next_run_time=T0,
        options=TaskOptions(**options),
    )


def make_run(attempt: int = 1) -> Run:
    return Run(id=run_id_for("t1", T0), task_id="t1", fire_time=T0, attempt=attempt, lease_until=T0)


def failed(error: BaseException | None = None) -> Attempt:
    return Attempt(outcome=RunOutcome.FAILURE, started=T0, error=error or ValueError("bad input"))


def succeeded(result: object = "ok") -> Attempt:
    return Attempt(outcome=RunOutcome.SUCCESS, started=T0, result=result)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0 + timedelta(seconds=2))


@pytest.fixture
def policies(clock: FakeClock) -> RunPolicies:
    return RunPolicies(MemoryStore(), clock)


RETRY = RetryPolicy(max_attempts=3, initial_delay=5, backoff_factor=2, jitter=0).to_json()


async def test_a_success_is_stored_as_it_is(policies: RunPolicies, clock: FakeClock) -> None:
    result = await policies.settle(make_task(retry=RETRY), make_run(), succeeded())
    assert (result.outcome, result.finished_at, result.retry_at, result.dead_letter) == (
        RunOutcome.SUCCESS,
        clock.now,
        None,
        False,
    )
    assert result.error is None


async def test_a_failure_the_retry_policy_allows_is_requeued_at_its_delay(
    policies: RunPolicies, clock: FakeClock
) -> None:
    first = await policies.settle(make_task(retry=RETRY), make_run(attempt=1), failed())
    second = await policies.settle(make_task(retry=RETRY), make_run(attempt=2), failed())
    assert first.retry_at == clock.now + timedelta(seconds=5)
    assert second.retry_at == clock.now + timedelta(seconds=10)
    assert not first.dead_letter
    assert (first.outcome, first.error, first.error_type) == (
        RunOutcome.FAILURE,
        "ValueError: bad input",
        "builtins.ValueError",
    )
    assert first.traceback is not None and "ValueError: bad input" in first.traceback


async def test_the_last_attempt_allowed_becomes_a_dead_letter(policies: RunPolicies) -> None:
    result = await policies.settle(make_task(retry=RETRY), make_run(attempt=3), failed())
    assert result.retry_at is None
    assert result.dead_letter


async def test_a_failure_without_retry_policy_is_dead_lettered_only_for_a_one_shot(
    policies: RunPolicies,
) -> None:
    recurring = await policies.settle(make_task(), make_run(), failed())
    one_shot = await policies.settle(make_task(one_shot=True), make_run(), failed())
    assert (recurring.retry_at, recurring.dead_letter) == (None, False)
    assert (one_shot.retry_at, one_shot.dead_letter) == (None, True)


async def test_a_stored_retry_policy_that_cannot_be_read_is_ignored(policies: RunPolicies) -> None:
    result = await policies.settle(make_task(retry={"retries": 3}), make_run(), failed())
    assert (result.retry_at, result.dead_letter) == (None, False)


async def test_a_cancelled_run_is_neither_retried_nor_counted_by_its_breaker(policies: RunPolicies) -> None:
    breaker = CircuitBreakerPolicy(failure_threshold=1)
    task = make_task(retry=RETRY, circuit_breaker=breaker.to_json())
    cancelled = Attempt(outcome=RunOutcome.CANCELLED, started=T0)
    result = await policies.settle(task, make_run(), cancelled)
    assert (result.outcome, result.retry_at, result.dead_letter) == (RunOutcome.CANCELLED, None, False)
    assert await policies.admit(task) is None


async def test_settle_is_needed_only_for_a_failure_a_breaker_or_handlers(clock: FakeClock) -> None:
    bare = RunPolicies(MemoryStore(), clock)
    handled = RunPolicies(MemoryStore(), clock, [TaskFailureHandler()])
    breaker = make_task(circuit_breaker=CircuitBreakerPolicy().to_json())
    assert not bare.needed(make_task(retry=RETRY), succeeded())
    assert bare.needed(make_task(), failed())
    assert bare.needed(breaker, succeeded())
    assert handled.needed(make_task(), succeeded())


async def test_failures_recorded_by_settle_open_the_breaker_and_admit_then_defers(
    policies: RunPolicies, clock: FakeClock
) -> None:
    breaker = CircuitBreakerPolicy(failure_threshold=2, recovery_timeout=30)
    task = make_task(circuit_breaker=breaker.to_json())
    assert await policies.admit(task) is None
    await policies.settle(task, make_run(), failed())
    assert await policies.admit(task) is None
    await policies.settle(task, make_run(), failed())

    defer_until = await policies.admit(task)
    assert defer_until is not None
    assert clock.now + timedelta(seconds=30) <= defer_until <= clock.now + timedelta(seconds=31.5)
    assert await policies.admit(make_task()) is None  # a task without a breaker always goes


class UnreadableState(MemoryStore):
    async def get_state(self, key: str) -> StateRecord | None:
        raise StoreError("state unreadable")


async def test_a_breaker_the_store_cannot_read_lets_the_run_go(clock: FakeClock) -> None:
    policies = RunPolicies(UnreadableState(), clock)
    task = make_task(circuit_breaker=CircuitBreakerPolicy().to_json())
    assert await policies.admit(task) is None
    result = await policies.settle(task, make_run(), failed())  # recording fails quietly too
    assert result.outcome == RunOutcome.FAILURE


class Recording(TaskFailureHandler):
    def __init__(self, *, explode: bool = False) -> None:
        self.seen: list[tuple[str, str, dict[str, Any]]] = []
        self.explode = explode

    async def handle_task_failure(
        self, task_name: str, exception: Exception, context: dict[str, Any]
    ) -> None:
        self.seen.append(("failure", str(exception), context))
        if self.explode:
            raise RuntimeError("handler bug")

    async def handle_task_success(self, task_name: str, result: Any, context: dict[str, Any]) -> None:
        self.seen.append(("success", str(result), context))


async def test_handlers_hear_of_each_outcome_and_whether_a_retry_follows(clock: FakeClock) -> None:
    broken, handler = Recording(explode=True), Recording()
    policies = RunPolicies(MemoryStore(), clock, [broken, handler])
    task = make_task(retry=RETRY)

    await policies.settle(task, make_run(attempt=1), failed())
    await policies.settle(task, make_run(attempt=3), failed())
    await policies.settle(task, make_run(attempt=1), succeeded(42))

    assert [(kind, text) for kind, text, _ in handler.seen] == [
        ("failure", "bad input"),
        ("failure", "bad input"),
        ("success", "42"),
    ]
    contexts = [context for _, _, context in handler.seen]
    assert [(c["will_retry"], c["dead_letter"], c["retry_count"]) for c in contexts] == [
        (True, False, 0),
        (False, True, 2),
        (False, False, 0),
    ]
    assert contexts[0]["task_name"] == "report" and contexts[0]["fire_time"] == T0
    assert len(broken.seen) == 3  # its exceptions were logged, and the next handler still called


async def test_handlers_hear_of_a_job_that_called_sys_exit(clock: FakeClock) -> None:
    # the invoker fails the run with the SystemExit, which is no Exception: handlers take one
    handler = Recording()
    policies = RunPolicies(MemoryStore(), clock, [handler])

    result = await policies.settle(make_task(), make_run(), failed(SystemExit(3)))

    assert result.error == "SystemExit: 3"
    assert [(kind, text) for kind, text, _ in handler.seen] == [("failure", "the job raised SystemExit(3)")]
