"""What the engine does around one run: admit it through its circuit breaker, then turn how it
went into the ``RunResult`` stored (retry, dead letter) and tell the failure handlers."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from backbeat.abc import Store
from backbeat.errors import ConfigurationError, StoreError
from backbeat.model import triggers
from backbeat.model.attempt import Attempt
from backbeat.model.records import Run, RunOutcome, RunResult, Task, storable
from backbeat.policies.breakers import SharedBreakers
from backbeat.policies.definitions import CircuitBreakerPolicy, RetryPolicy
from backbeat.policies.handlers import TaskFailureHandler, handler_context

log = logging.getLogger("backbeat.engine")
_SUCCESS = RunOutcome.SUCCESS
"""Read on every run: on Python 3.11 a member read off its enum class costs ten times a global."""


class RunPolicies:
    """Circuit breakers, retries, dead letters and failure handlers for the runs of one engine."""

    def __init__(
        self, store: Store, clock: Callable[[], datetime], handlers: Sequence[TaskFailureHandler] = ()
    ) -> None:
        self.clock = clock
        self.handlers = handlers
        self.breakers = SharedBreakers(store, clock)

    def needed(self, task: Task, attempt: Attempt) -> bool:
        """Whether :meth:`settle` has anything to do (the fast path of a plain success skips it)."""
        return attempt.outcome != _SUCCESS or bool(self.handlers) or bool(task.options.circuit_breaker)

    async def admit(self, task: Task) -> datetime | None:
        """``None`` when the run may go now, else when to try it again (its breaker is open)."""
        policy = _breaker_of(task)
        if policy is None:
            return None
        try:
            return await self.breakers.admit(policy, task.name)
        except StoreError as exc:
            log.warning("task %s: circuit breaker unreadable (%s); running anyway", task.id, exc)
            return None

    async def settle(self, task: Task, run: Run, attempt: Attempt) -> RunResult:
        """The result to store for ``attempt``: re-queued while the retry policy allows, else a
        dead letter when it failed for good (a task with a retry policy, or a one-shot)."""
        finished = self.clock()
        result = RunResult(run=run, outcome=attempt.outcome, finished_at=finished)
        error = attempt.error
        if attempt.outcome == RunOutcome.FAILURE and error is not None:
            result.error = storable(f"{type(error).__name__}: {error}")
            result.error_type = f"{type(error).__module__}.{type(error).__qualname__}"
            result.traceback = storable("".join(traceback.format_exception(error)))
            retry = _retry_of(task)
            if retry is not None and retry.allows_another(run.attempt):
                result.retry_at = finished + timedelta(seconds=retry.delay(run.attempt))
                log.info("run %s failed attempt %d; retrying at %s", run.id, run.attempt, result.retry_at)
            else:
                result.dead_letter = retry is not None or triggers.is_one_shot(task.trigger)
        breaker = _breaker_of(task)
        if breaker is not None and attempt.outcome in (RunOutcome.SUCCESS, RunOutcome.FAILURE):
            await self.breakers.record_safely(
                breaker, task.name, success=attempt.outcome == RunOutcome.SUCCESS
            )
        if self.handlers and attempt.outcome in (RunOutcome.SUCCESS, RunOutcome.FAILURE):
            await self._tell_handlers(task, run, attempt, result)
        return result

    async def _tell_handlers(self, task: Task, run: Run, attempt: Attempt, result: RunResult) -> None:
        context = handler_context(
            task_id=task.id,
            task_name=task.name,
            run_id=run.id,
            fire_time=run.fire_time,
            attempt=run.attempt,
            execution_time=attempt.duration,
            tags=task.tags,
            data=task.data,
            args=attempt.args,
            kwargs=attempt.kwargs or {},
            func=attempt.func,
            will_retry=result.retry_at is not None,
            dead_letter=result.dead_letter,
        )
        for handler in self.handlers:
            try:
                if attempt.outcome == RunOutcome.SUCCESS:
                    await handler.handle_task_success(task.name, attempt.result, dict(context))
                else:
                    await handler.handle_task_failure(task.name, _failure(attempt), dict(context))
            except Exception:
                log.exception("failure handler %r raised on run %s", handler, run.id)


def _failure(attempt: Attempt) -> Exception:
    """What a failure handler is told of a failed attempt: its exception, or, for a job's
    ``sys.exit()`` (a ``SystemExit``, which handlers do not take), an error caused by it."""
    error = attempt.error
    if isinstance(error, Exception):
        return error
    failure = RuntimeError(f"the job raised {error!r}")
    failure.__cause__ = error
    return failure


def _retry_of(task: Task) -> RetryPolicy | None:
    policy = _stored_policy(task, "retry")
    return policy if isinstance(policy, RetryPolicy) else None


def _breaker_of(task: Task) -> CircuitBreakerPolicy | None:
    policy = _stored_policy(task, "circuit_breaker")
    return policy if isinstance(policy, CircuitBreakerPolicy) else None


def _stored_policy(task: Task, kind: str) -> RetryPolicy | CircuitBreakerPolicy | None:
    spec = getattr(task.options, kind)
    if not spec:
        return None
    cls = RetryPolicy if kind == "retry" else CircuitBreakerPolicy
    try:
        return cls.from_json(dict(spec))
    except ConfigurationError as exc:
        log.error("task %s: stored %s policy ignored: %s", task.id, kind, exc)
        return None
