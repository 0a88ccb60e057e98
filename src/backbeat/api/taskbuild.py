"""Build ``Task`` records from what users hand the facade: callables, job instances, descriptors."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from backbeat.errors import ConfigurationError, EncodingError, NotPersistableError, UnknownJobError
from backbeat.model import codec, triggers
from backbeat.model.jobs import (
    BackgroundJob,
    RecurrentBackgroundJob,
    RecurrentTaskDescriptor,
    ScheduledBackgroundJob,
    ScheduledTaskDescriptor,
    TaskDescriptor,
    job_data,
    new_task_id,
)
from backbeat.model.overlap import Overlap
from backbeat.model.records import Task, TaskOptions
from backbeat.model.registry import JobRegistry
from backbeat.model.stored_text import stored_text
from backbeat.observability.tracing import capture_trace_context
from backbeat.policies.definitions import policies_of

log = logging.getLogger("backbeat")

# A one-shot's task is made by Task.__init__ called directly: calling the class hands __init__
# its keywords as a dict built for the call, which cost as much again as the rest of __init__.
_blank_task = object.__new__
_fill_task = Task.__init__


@dataclass(slots=True)
class BuiltTask:
    """A task ready to store, and whether only this process can run it."""

    task: Task
    local: bool


def from_callable(
    registry: JobRegistry,
    func: Callable[..., Any],
    *,
    trigger: triggers.TriggerSpec,
    options: TaskOptions,
    task_id: str | None = None,
    name: str | None = None,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    tags: Sequence[str] = (),
    durable: bool | None = None,
    now: datetime | None = None,
) -> BuiltTask:
    """A task that calls ``func(*args, **kwargs)`` on ``trigger``.

    Raises:
        NotPersistableError: ``func`` has no import path and ``durable=True``.
        EncodingError: an argument cannot be stored (the message names it).
        InvalidTriggerError: the trigger has no fire time at all.
    """
    template = callable_template(
        registry, func, trigger=trigger, options=options, name=name, durable=durable, now=now
    )
    return stamp(template, task_id=task_id, name=name, args=args, kwargs=kwargs, tags=tags)


def callable_template(
    registry: JobRegistry,
    func: Callable[..., Any],
    *,
    trigger: triggers.TriggerSpec,
    options: TaskOptions,
    name: str | None = None,
    durable: bool | None = None,
    now: datetime | None = None,
) -> BuiltTask:
    """What every task calling ``func`` on ``trigger`` with ``options`` shares: the job reference,
    the policies, the first fire time. :func:`stamp` makes tasks of it (a batch builds it once).

    Raises:
        NotPersistableError: ``func`` has no import path and ``durable=True``.
        InvalidTriggerError: the trigger has no fire time at all.
    """
    shape = job_shape(registry, func, options=options, name=name, durable=durable)
    task = _new_task(
        task_id="",
        name=shape.name,
        job=shape.job,
        trigger=trigger,
        options=shape.options,
        now=now,
    )
    return BuiltTask(task, shape.local)


@dataclass(frozen=True, slots=True)
class JobShape:
    """What every task calling one function with one set of options shares, whatever its trigger."""

    job: str
    """The job reference stored."""
    name: str
    """The task name when none is given: the function's qualified name."""
    options: TaskOptions
    """The options with the function's policies in."""
    local: bool
    """Whether only this process can run it (no import path)."""


def job_shape(
    registry: JobRegistry,
    func: Callable[..., Any],
    *,
    options: TaskOptions,
    name: str | None = None,
    durable: bool | None = None,
) -> JobShape:
    """The job reference, default name and options of the tasks calling ``func``.

    Raises:
        NotPersistableError: ``func`` has no import path and ``durable=True``.
    """
    ref = registry.ref_for(func)
    label = name or getattr(func, "__qualname__", None) or repr(func)
    if ref.local:
        if durable:
            raise NotPersistableError(
                f"{label}: {getattr(func, '__qualname__', func)!r} is a lambda, closure or local function "
                "and "
                "cannot be stored by reference; make it a module-level function or a method of a service, "
                "or drop durable=True to run it as a local task of this process"
            )
        log.warning(
            "task %r runs %r, which has no import path: it is a local task of this process, "
            "not persisted, lost if the process stops",
            label,
            func,
        )
    check_cancellable(options, func, label)
    return JobShape(ref.ref, label, with_policies(options, func), ref.local)


def stamp(
    template: BuiltTask,
    *,
    task_id: str | None = None,
    name: str | None = None,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    tags: Sequence[str] = (),
) -> BuiltTask:
    """A new task from a :func:`callable_template`, with its own id, name, arguments and tags.

    Raises:
        EncodingError: an argument cannot be stored (the message names it).
    """
    shared = template.task
    # built field by field: dataclasses.replace costs more than all the rest of a batch add
    task = Task(
        id=_id(task_id),
        name=stored_text(name, "task name") if name else shared.name,
        job=shared.job,
        trigger=shared.trigger,
        next_run_time=shared.next_run_time,
        args=codec.encode(list(args), path="args") if args else [],
        kwargs=_kwargs(kwargs) if kwargs else {},
        tags=_tags(tags),
        options=shared.options,
        created_at=shared.created_at,
        trace_context=shared.trace_context,
    )
    return BuiltTask(task, template.local)


def shaped_task(
    shape: JobShape,
    *,
    trigger: triggers.TriggerSpec,
    first: datetime,
    now: datetime,
    task_id: str | None = None,
    name: str | None = None,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    tags: Sequence[str] = (),
) -> Task:
    """A task of ``shape`` on ``trigger``, whose first fire time the caller computed (``first``).

    Raises:
        EncodingError: an argument cannot be stored (the message names it).
    """
    task = _blank_task(Task)
    _fill_task(
        task,
        id=_id(task_id),
        name=stored_text(name, "task name") if name else shape.name,
        job=shape.job,
        trigger=trigger,
        next_run_time=first,
        args=codec.encode(list(args), path="args") if args else [],
        kwargs=_kwargs(kwargs) if kwargs else {},
        tags=_tags(tags),
        options=shape.options,
        created_at=now,
        trace_context=capture_trace_context(),
    )
    return task


def shareable(trigger: triggers.TriggerSpec) -> bool:
    """Whether tasks on ``trigger`` may share a template (a jittered first fire time may not)."""
    return "jitter" not in trigger


def with_policies(options: TaskOptions, func: Callable[..., Any]) -> TaskOptions:
    """``options`` plus the retry / circuit-breaker policies decorating ``func`` (options given
    explicitly win).

    Raises:
        ConfigurationError: a decorator names an instance attribute holding no such policy.
    """
    found = policies_of(func)
    changes: dict[str, Any] = {
        kind: policy.to_json() for kind, policy in found.items() if getattr(options, kind) is None
    }
    return replace(options, **changes) if changes else options


def check_cancellable(options: TaskOptions, func: Callable[..., Any], label: str) -> None:
    """Check that a run of ``func`` can be cancelled, if its task's overlap policy cancels runs.

    Raises:
        ConfigurationError: ``overlap="cancel_other"`` for a plain function: cancelling its run
            cannot stop it (it goes on in its thread or process), so the next run would overlap it.
    """
    if options.overlap == Overlap.CANCEL_OTHER and not inspect.iscoroutinefunction(func):
        raise ConfigurationError(
            f"{label}: overlap='cancel_other' needs an async job; a plain function keeps running in "
            "its thread or process when its run is cancelled, and the next run would overlap it "
            "(use 'buffer_one' or make it 'async def')"
        )


def from_job(
    registry: JobRegistry,
    job: BackgroundJob,
    *,
    options: TaskOptions,
    default_timezone: str,
    tags: Sequence[str] = (),
    now: datetime | None = None,
) -> Task:
    """A task for a job instance: its ``__scheduled_at__`` or ``__interval__`` and its data.

    Raises:
        UnknownJobError: the job's class is not a Scheduled/RecurrentBackgroundJob.
        EncodingError: an attribute cannot be stored (the message names it).
    """
    ref = registry.register_job_class(type(job))
    when = now or datetime.now(UTC)
    if isinstance(job, ScheduledBackgroundJob):
        spec = triggers.make_trigger_spec(
            "date", run_date=job.__scheduled_at__ or when, default_timezone=default_timezone, now=when
        )
    elif isinstance(job, RecurrentBackgroundJob):
        if not job.__interval__:
            raise UnknownJobError(
                f"{type(job).__name__}.__interval__ is not set: a recurrent job needs an interval"
            )
        spec = triggers.make_trigger_spec(
            "interval", seconds=job.__interval__, default_timezone=default_timezone, now=when
        )
    else:
        raise UnknownJobError(
            f"{type(job).__name__} is neither a ScheduledBackgroundJob nor a RecurrentBackgroundJob"
        )
    data = codec.encode(job_data(job), path=f"{type(job).__name__}.data")
    method = job.run_at if isinstance(job, ScheduledBackgroundJob) else job.run_every
    check_cancellable(options, method, type(job).__name__)
    return _new_task(
        task_id=job.__task_id__,
        name=job.__task_name__ or type(job).__name__,
        job=ref,
        trigger=spec,
        options=with_policies(options, method),
        tags=tags,
        data=data,
        now=when,
    )


def from_descriptor(
    registry: JobRegistry,
    descriptor: TaskDescriptor,
    *,
    options: TaskOptions,
    default_timezone: str,
    now: datetime | None = None,
) -> Task:
    """A task for a bus descriptor; ``descriptor.name`` names a registered ``@backgroundjob`` class.

    Raises:
        UnknownJobError: no job class is registered under ``descriptor.name``.
        EncodingError: a value of ``descriptor.data`` cannot be stored.
        InvalidTriggerError: the descriptor's time or interval is invalid.
    """
    cls = registry.job_class(descriptor.name)
    when = now or datetime.now(UTC)
    if isinstance(descriptor, ScheduledTaskDescriptor):
        if not issubclass(cls, ScheduledBackgroundJob):
            raise UnknownJobError(
                f"{descriptor.name} is not a scheduled job, but got a ScheduledTaskDescriptor"
            )
        spec = triggers.make_trigger_spec(
            "date", run_date=descriptor.scheduled_at, default_timezone=default_timezone, now=when
        )
    elif isinstance(descriptor, RecurrentTaskDescriptor):
        if not issubclass(cls, RecurrentBackgroundJob):
            raise UnknownJobError(
                f"{descriptor.name} is not a recurrent job, but got a RecurrentTaskDescriptor"
            )
        first = descriptor.started_at
        spec = triggers.make_trigger_spec(
            "interval",
            seconds=descriptor.interval,
            start_date=first,
            default_timezone=default_timezone,
            now=when,
        )
    else:
        raise UnknownJobError(
            f"a plain TaskDescriptor has no time: send a Scheduled- or RecurrentTaskDescriptor "
            f"for {descriptor.name}"
        )
    data = codec.encode(dict(descriptor.data), path=f"{descriptor.name}.data")
    return _new_task(
        task_id=descriptor.id,
        name=descriptor.name,
        job=f"job:{descriptor.name}",
        trigger=spec,
        options=options,
        data=data,
        now=when,
    )


def _new_task(
    *,
    task_id: str | None,
    name: str,
    job: str,
    trigger: triggers.TriggerSpec,
    options: TaskOptions,
    tags: Sequence[str] = (),
    args: Any = None,
    kwargs: Any = None,
    data: Any = None,
    now: datetime | None,
) -> Task:
    when = now or datetime.now(UTC)
    first = triggers.next_fire_time(trigger, None, when)
    if first is None:
        from backbeat.errors import InvalidTriggerError

        raise InvalidTriggerError(f"task {name!r}: trigger {triggers.describe(trigger)} never fires")
    return Task(
        id=_id(task_id),
        name=stored_text(name, "task name"),
        job=job,
        trigger=trigger,
        next_run_time=first,
        args=args if args is not None else [],
        kwargs=kwargs if kwargs is not None else {},
        data=data,
        tags=_tags(tags),
        options=options,
        created_at=when,
        trace_context=capture_trace_context(),  # the run's span joins the trace that scheduled it
    )


def _kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` encoded for the store.

    Raises:
        EncodingError: a key is not a str (no keyword argument can have it), or a value cannot
            be stored (the message names it).
    """
    for key in kwargs:
        if not isinstance(key, str):
            kind = type(key).__name__
            raise EncodingError(f"kwargs: the key {key!r} is a {kind}, not a keyword name (str)")
    encoded: dict[str, Any] = codec.encode(dict(kwargs), path="kwargs")
    return encoded


def _tags(tags: Sequence[str]) -> tuple[str, ...]:
    """``tags`` without repeats, in order.

    Raises:
        TypeError: ``tags`` is a single str (whose letters would be the tags), or holds a value
            that is not a str.
    """
    if not tags:
        return ()
    if isinstance(tags, str):
        raise TypeError(f"tags must be a list of strings, not the string {tags!r}")
    return tuple(dict.fromkeys(stored_text(tag, "tag") for tag in tags))


def _id(task_id: str | None) -> str:
    """``task_id`` (see :func:`stored_text`), or a new id when none (``None`` or ``""``) is given."""
    return new_task_id() if task_id is None or task_id == "" else stored_text(task_id, "task id")
