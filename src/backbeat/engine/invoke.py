"""Calling one run's job: the call built from the stored task (job class or callable, data decoded,
``configure`` given the services), its run context, executor, timeout and run hooks, and how it went."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from backbeat.abc import Executor, RunHook
from backbeat.engine.context import CURRENT_RUN, LazyRunContext
from backbeat.engine.fencing import fenced
from backbeat.errors import BackbeatError, UnknownJobError
from backbeat.executors.local import AsyncIOExecutor
from backbeat.model import codec
from backbeat.model.attempt import Attempt
from backbeat.model.events import EventHub, EventKind
from backbeat.model.jobs import RecurrentBackgroundJob, ScheduledBackgroundJob, restore_job
from backbeat.model.records import Run, RunOutcome, Task
from backbeat.model.registry import JobRegistry
from backbeat.policies.definitions import engine_applies_policies

log = logging.getLogger("backbeat.engine")

# Enum members read on every run, as module globals: on Python 3.11 reading a member off its
# class (``RunOutcome.SUCCESS``) costs about ten times reading a global.
_SUCCESS = RunOutcome.SUCCESS
_SUBMITTED = EventKind.RUN_SUBMITTED
_EXECUTED = EventKind.RUN_EXECUTED


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
        holds: Callable[[str], bool] = lambda run_id: True,
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
        self.holds = holds
        """Whether this process still holds a run's lease (see :mod:`backbeat.engine.fencing`)."""

    async def __call__(self, task: Task, run: Run, *, started: datetime | None = None) -> Attempt:
        """Run ``run`` of ``task`` and say how it went (exceptions become a failed attempt);
        ``started``: the time it starts, if the caller just took it."""
        token = CURRENT_RUN.set(LazyRunContext(task, run, self.owner, self.provider, self.holds))
        policies_token = engine_applies_policies.set(True)
        attempt = Attempt(outcome=_SUCCESS, started=self.clock() if started is None else started)
        if self.events.wants(_SUBMITTED):
            self.emit(_SUBMITTED, task, run=run)
        try:
            invocation = prepare_call(task, self.registry, self.provider)
            if invocation is None:  # a job class: its configure() may be a coroutine
                invocation = await prepare(task, run, self.registry, self.provider)
            func, args, kwargs = attempt.func, attempt.args, attempt.kwargs = invocation
            executor = self.executors.get(task.options.executor)
            if executor is None:
                raise BackbeatError(
                    f"task {task.id} names executor {task.options.executor!r}, "
                    f"which is not configured (known: {', '.join(self.executors)})"
                )
            # not a subclass: it may override submit
            submit = executor.call if type(executor) is AsyncIOExecutor else executor.submit
            if self.run_hooks:
                with contextlib.ExitStack() as hooks:
                    for hook in self.run_hooks:
                        hooks.enter_context(hook(task, run))
                    # called inside the hooks: ``call`` calls the job, which may raise at once
                    call = fenced(submit(func, args, kwargs), self.holds, run.id)
                    attempt.result = await _await_call(call, task.options.timeout)
            else:
                call = fenced(submit(func, args, kwargs), self.holds, run.id)
                if task.options.timeout:
                    attempt.result = await _await_call(call, task.options.timeout)
                else:
                    attempt.result = await call
        except asyncio.CancelledError:
            raise
        except (Exception, SystemExit) as exc:  # a job's sys.exit() fails its run, not the worker
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
            CURRENT_RUN.reset(token)
        if self.events.wants(_EXECUTED) or self.handlers:
            attempt.duration = (self.clock() - attempt.started).total_seconds()
            self.emit(_EXECUTED, task, run=run, result=attempt.result, duration=attempt.duration)
        return attempt


async def _await_call(call: Awaitable[Any], timeout: float | None) -> Any:
    if timeout:
        async with asyncio.timeout(timeout):
            return await call
    return await call


Invocation = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]
"""A ready call, ``(func, args, kwargs)``: ``func(*args, **kwargs)`` (a tuple: one built per run)."""


def prepare_call(task: Task, registry: JobRegistry, provider: Any) -> Invocation | None:
    """The call of a task that names a callable, built without an await; ``None`` for a job
    class (see :func:`prepare`).

    Raises:
        UnknownJobError: the callable is not registered or cannot be resolved in this process.
        DecodingError: the stored arguments cannot be decoded.
    """
    if task.job.partition(":")[0] == "job":
        return None
    func = registry.resolve_callable(task.job, provider)
    args = tuple(codec.decode(task.args, path="args")) if task.args else ()
    kwargs = dict(codec.decode(task.kwargs, path="kwargs")) if task.kwargs else {}
    return func, args, kwargs


async def prepare(task: Task, run: Run, registry: JobRegistry, provider: Any) -> Invocation:
    """Build the call for ``run`` of ``task``.

    Raises:
        UnknownJobError: the job is not registered or cannot be resolved in this process.
        DecodingError: the stored data cannot be decoded.
    """
    invocation = prepare_call(task, registry, provider)
    if invocation is not None:
        return invocation
    cls = registry.job_class(task.job.partition(":")[2])
    data: dict[str, Any] = codec.decode(task.data or {}, path="data")
    job = restore_job(cls, dict(data), task.id, task.name)
    configured = job.configure(service_provider=provider)
    if inspect.isawaitable(configured):
        await configured
    if isinstance(job, ScheduledBackgroundJob):
        job.__scheduled_at__ = run.fire_time
        method: Callable[..., Any] = job.run_at
    elif isinstance(job, RecurrentBackgroundJob):
        job.__interval__ = task.trigger.get("seconds")
        method = job.run_every
    else:
        raise UnknownJobError(
            f"job class {cls.__qualname__} is neither a Scheduled nor a RecurrentBackgroundJob"
        )
    public = {k: v for k, v in data.items() if not k.startswith("_")}
    return method, (), public if _takes_var_kwargs(method) else {}


def _takes_var_kwargs(func: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
