"""Jobs for the retry, circuit-breaker and handler tests; each records its runs (see ``jobs``)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from backbeat import (
    BackgroundTaskScheduler,
    CircuitBreakerPolicy,
    RetryPolicy,
    TaskFailureHandler,
    circuit_breaker,
    current_run,
    retry_policy,
)
from tests.integration.jobs import read_records, record


class PaymentDeclinedError(Exception):
    """The outside world said no."""


async def flaky(path: str, fail_times: int) -> str:
    """Fail the first ``fail_times`` attempts of a run, then succeed."""
    attempt = current_run().attempt
    record(path, "attempt")
    if attempt <= fail_times:
        raise PaymentDeclinedError(f"declined on attempt {attempt}")
    return f"paid on attempt {attempt}"


async def always_fails(path: str) -> None:
    record(path, "attempt")
    raise PaymentDeclinedError("card declined")


async def exits(path: str) -> None:
    """A command-line entry point reused as a job: it ends with ``sys.exit``."""
    record(path, "attempt")
    sys.exit(3)


def exits_in_a_thread(path: str) -> None:
    record(path, "attempt")
    time.sleep(0.01)
    sys.exit(4)


async def fails_with_a_lone_surrogate(path: str) -> None:
    """Fails with a message no UTF-8 (so no JSON document) can hold as it is."""
    record(path, "attempt")
    raise PaymentDeclinedError("card \ud800 declined")


async def outside_service(path: str, outage_file: str) -> str:
    """Fails while ``outage_file`` exists: an outside service that is down."""
    record(path, "attempt")
    if Path(outage_file).exists():  # noqa: ASYNC240 - a stat of a local file, in a test
        raise ConnectionError("service unavailable")
    return "ok"


@RetryPolicy(max_attempts=3, initial_delay=0.05, jitter=0).apply
async def decorated_charge(path: str, order_id: str, fail_times: int = 0) -> None:
    """A module-level function carrying its retry policy."""
    attempts = [r for r in read_records(path) if r.get("order_id") == order_id]
    record(path, "attempt", order_id=order_id)
    if len(attempts) < fail_times:
        raise PaymentDeclinedError(f"declined {order_id}")


class DirectCalls:
    """Functions called without a scheduler: the decorators apply their policies in process."""

    def __init__(self) -> None:
        self.calls = 0

    @RetryPolicy(max_attempts=3, initial_delay=0.01, jitter=0).apply
    async def flaky(self, fail_times: int) -> int:
        self.calls += 1
        if self.calls <= fail_times:
            raise PaymentDeclinedError(f"call {self.calls}")
        return self.calls

    @CircuitBreakerPolicy(failure_threshold=2, recovery_timeout=0.2).apply
    async def guarded(self, fail: bool) -> str:
        self.calls += 1
        if fail:
            raise ConnectionError("down")
        return "ok"


class ResilientOrderProcessor:
    """Seed 003's shape: policies set in ``__init__``, named by the class-level decorators."""

    def __init__(self, task_scheduler: BackgroundTaskScheduler) -> None:
        self.task_scheduler = task_scheduler
        self.circuit_breaker = CircuitBreakerPolicy(
            failure_threshold=5, recovery_timeout=60, success_threshold=3
        )
        self.retry_policy = RetryPolicy(max_attempts=3, backoff_factor=2.0, max_delay=300)

    @circuit_breaker.apply
    @retry_policy.apply
    async def process_payment_task(self, order_id: str, amount: float) -> str:
        return f"charged {order_id} {amount}"


class RecordingHandler(TaskFailureHandler):
    """Keeps what it was told."""

    def __init__(self) -> None:
        self.failures: list[tuple[str, Exception, dict[str, Any]]] = []
        self.successes: list[tuple[str, Any, dict[str, Any]]] = []

    async def handle_task_failure(
        self, task_name: str, exception: Exception, context: dict[str, Any]
    ) -> None:
        self.failures.append((task_name, exception, context))

    async def handle_task_success(self, task_name: str, result: Any, context: dict[str, Any]) -> None:
        self.successes.append((task_name, result, context))


def outage(tmp: Path) -> Path:
    return tmp / "outage"
