"""Calling one run's job: its run context, executor, timeout and run hooks, and how it went."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backbeat.context import RunContext, reset_current_run, set_current_run
from backbeat.errors import BackbeatError
from backbeat.events import EventHub, EventKind
from backbeat.executors import Executor
from backbeat.model import Run, RunOutcome, Task
from backbeat.policies import engine_applies_policies
from backbeat.registry import JobRegistry
from backbeat.runner import prepare

log = logging.getLogger("backbeat.engine")

RunHook = Callable[[Task, Run], contextlib.AbstractContextManager[object]]
"""Called as a run starts; the context manager it returns is entered around the job's call (in
the run's context, so a span it makes current is the job's parent) and sees its exception."""


@dataclass(slots=True, kw_only=True)
class Attempt:
    """How one call of a job went."""

    outcome: RunOutcome
    started: datetime
    duration: float = 0.0
    result: Any = None
    error: BaseException | None = None
    func: Callable[..., Any] | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] | None = None


class Invoker:
    """Calls jobs for one engine."""

    def __init__(
        self,
        *,
        registry: JobRegistry,
        executors: Mapping[str, Executor],
        provider: Any,
        clock: Callable[[], datetime],
        owner: str,
        run_hooks: Sequence[RunHook],
        events: EventHub,
        handlers: Sequence[object],
        emit: Callable[..., None],
    ) -> None:
        self.registry = registry
        self.executors = executors
        self.provider = provider
        self.clock = clock
        self.owner = owner
        self.run_hooks = run_hooks
        self.events = events
        self.handlers = handlers
        self.emit = emit

    async def __call__(self, task: Task, run: Run) -> Attempt:
        """Run ``run`` of ``task`` and say how it went (exceptions become a failed attempt)."""
        context = RunContext(
            task_id=task.id,
            task_name=task.name,
            run_id=run.id,
            fire_time=run.fire_time,
            attempt=run.attempt,
            tags=task.tags,
            owner=self.owner,
            service_provider=self.provider,
        )
        token = set_current_run(context)
        policies_token = engine_applies_policies.set(True)
        attempt = Attempt(outcome=RunOutcome.SUCCESS, started=self.clock())
        if self.events.wanted:
            self.emit(EventKind.RUN_SUBMITTED, task, run=run)
        try:
            invocation = await prepare(task, run, self.registry, self.provider)
            attempt.func, attempt.args, attempt.kwargs = invocation.func, invocation.args, invocation.kwargs
            executor = self.executors.get(task.options.executor)
            if executor is None:
                raise BackbeatError(
                    f"task {task.id} names executor {task.options.executor!r}, "
                    f"which is not configured (known: {', '.join(self.executors)})"
                )
            call = executor.submit(invocation.func, invocation.args, invocation.kwargs)
            if self.run_hooks:
                with contextlib.ExitStack() as hooks:
                    for hook in self.run_hooks:
                        hooks.enter_context(hook(task, run))
                    attempt.result = await _await_call(call, task.options.timeout)
            else:
                attempt.result = await _await_call(call, task.options.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            attempt.duration = (self.clock() - attempt.started).total_seconds()
            if isinstance(exc, TimeoutError) and task.options.timeout:
                exc = TimeoutError(f"run {run.id} timed out after {task.options.timeout}s")
            attempt.outcome, attempt.error = RunOutcome.FAILURE, exc
            log.error("run %s of task %s (%s) failed: %r", run.id, task.id, task.name, exc)
            self.emit(
                EventKind.RUN_FAILED,
                task,
                run=run,
                error=exc,
                duration=attempt.duration,
                traceback="".join(traceback.format_exception(exc)),
            )
            return attempt
        finally:
            engine_applies_policies.reset(policies_token)
            reset_current_run(token)
        if self.events.wanted or self.handlers:
            attempt.duration = (self.clock() - attempt.started).total_seconds()
            self.emit(EventKind.RUN_EXECUTED, task, run=run, result=attempt.result, duration=attempt.duration)
        return attempt


async def _await_call(call: Awaitable[Any], timeout: float | None) -> Any:
    if timeout:
        async with asyncio.timeout(timeout):
            return await call
    return await call
