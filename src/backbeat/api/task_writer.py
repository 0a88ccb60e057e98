"""Turning the facade's scheduling calls into stored tasks: options from the scheduler's
defaults, many requests built in one pass, job instances, descriptors and declared tasks."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from backbeat.api.config import task_options
from backbeat.api.routing import StoreRouter, all_tasks
from backbeat.api.taskbuild import (
    BuiltTask,
    JobShape,
    callable_template,
    check_cancellable,
    from_callable,
    from_descriptor,
    from_job,
    job_shape,
    shaped_task,
    shareable,
    stamp,
)
from backbeat.errors import TaskExistsError
from backbeat.model import triggers
from backbeat.model.declared import DECLARED, DeclaredTask
from backbeat.model.jobs import BackgroundJob, ScheduledBackgroundJob, TaskDescriptor
from backbeat.model.records import Task, TaskFilter, TaskOptions
from backbeat.model.registry import JobRegistry

log = logging.getLogger("backbeat")

_ONE_SHOT: triggers.TriggerSpec = {"type": "date"}
"""Any date spec: what ``options_for`` reads of one."""

_Template = tuple[triggers.TriggerSpec, TaskOptions, BuiltTask]
_SETTINGS = ("id", "name", "args", "kwargs", "tags", "durable")
"""A request's fields that are the task's own, not its trigger's."""
_SHAPES = 256
"""Job shapes a writer keeps (see ``TaskWriter.add_one``); all are dropped when it is full."""


class TaskWriter:
    """Builds ``Task`` records for one scheduler and stores them through its router."""

    def __init__(
        self,
        router: StoreRouter,
        registry: JobRegistry,
        *,
        clock: Callable[[], datetime],
        timezone: str,
        job_defaults: dict[str, Any],
    ) -> None:
        self.router = router
        self.registry = registry
        self.clock = clock
        self.timezone = timezone
        self.job_defaults = job_defaults
        self._shapes: dict[Any, JobShape] = {}
        """Durable job shapes of one-shot adds, by (func, durable, options): validated once."""

    def options_for(self, spec: triggers.TriggerSpec, overrides: Mapping[str, Any] | None) -> TaskOptions:
        """The scheduler's job defaults with ``overrides`` applied, for a task on ``spec``."""
        defaults = dict(self.job_defaults)
        # A one-shot task is run however late unless told otherwise: a reminder due while every
        # instance was down must still be sent, not silently dropped as a misfire.
        if triggers.is_one_shot(spec) and not {"misfire_grace_time", "catchup_window"} & set(defaults):
            defaults["misfire_grace_time"] = None
        return task_options(defaults, overrides)

    async def add(self, requests: Iterable[Mapping[str, Any]], *, replace: bool) -> list[str]:
        """Build every request (``add_task``'s arguments as a mapping), then store the durable
        ones in one call and the local ones in another; returns the ids in order. A bad request
        raises before anything is stored."""
        now = self.clock()
        durable: list[Task] = []
        local: list[Task] = []
        ids: list[str] = []
        builder = _BatchBuilder(self, now)
        for request in requests:
            built = builder.build(request)
            (local if built.local else durable).append(built.task)
            ids.append(built.task.id)
        if len(set(ids)) < len(ids):  # every store refuses them, but not all would say which
            twice = sorted({task_id for task_id in ids if ids.count(task_id) > 1})
            raise TaskExistsError(twice, f"task ids given more than once in one call: {', '.join(twice)}")
        for tasks, is_local in ((durable, False), (local, True)):
            if tasks:
                await self.router.add(tasks, local=is_local, replace=replace)
        return ids

    def add_one(
        self,
        func: Callable[..., Any],
        trigger: Any,
        trigger_args: dict[str, Any],
        *,
        task_id: str | None,
        name: str | None,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        tags: Sequence[str],
        durable: bool | None,
        options: Mapping[str, Any] | None,
        replace: bool,
    ) -> Awaitable[str]:
        """``add`` of one request, given as ``add_task``'s arguments; the awaitable returns its id.
        The common case is built by :meth:`one_shot` here, before the awaitable is returned (a
        plain function, not a coroutine: one frame less per add), anything else goes through
        :meth:`add`.

        Raises:
            EncodingError: the common case's argument cannot be stored (the message names it).
        """
        task = self.one_shot(
            func,
            trigger,
            trigger_args,
            now=self.clock(),
            task_id=task_id,
            name=name,
            args=args,
            kwargs=kwargs,
            tags=tags,
            durable=durable,
            options=options,
        )
        if task is not None:
            return self.router.add_one(task, replace=replace)
        request = dict(trigger_args, func=func, trigger=trigger, id=task_id, name=name, args=args)
        request.update(kwargs=kwargs, tags=tags, durable=durable, options=options)
        return self._add_request(request, replace)

    async def _add_request(self, request: dict[str, Any], replace: bool) -> str:
        [added] = await self.add([request], replace=replace)
        return added

    def one_shot(
        self,
        func: Callable[..., Any],
        trigger: Any,
        trigger_args: Mapping[str, Any],
        *,
        now: datetime,
        task_id: str | None,
        name: str | None,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        tags: Sequence[str],
        durable: bool | None,
        options: Mapping[str, Any] | None,
    ) -> Task | None:
        """The task of the common request (a one-shot at a datetime, of a function seen before with
        the same options), built from the function's cached :class:`JobShape` and a date spec
        made directly; ``None`` when the request needs the general path, which checks every field.

        Raises:
            EncodingError: an argument cannot be stored (the message names it).
        """
        run_date = trigger_args.get("run_date") if len(trigger_args) == 1 else None
        if run_date is None or (trigger is not None and trigger != "date"):
            return None
        dated = triggers.date_spec(run_date, self.timezone)
        shape = self._shape(func, durable, options) if dated is not None else None
        if dated is None or shape is None:
            return None
        spec, first = dated
        return shaped_task(
            shape,
            trigger=spec,
            first=first,
            now=now,
            task_id=task_id,
            name=name,
            args=args,
            kwargs=kwargs,
            tags=tags,
        )

    def _shape(
        self, func: Callable[..., Any], durable: bool | None, options: Mapping[str, Any] | None
    ) -> JobShape | None:
        """The cached shape of a durable one-shot of ``func``; ``None`` when it cannot be cached
        (unhashable options or function) or is local (its warning is logged at every add)."""
        # each value's type too: 1, 1.0 and True are equal, but only one of them is valid
        key = (func, durable, tuple((k, type(v), v) for k, v in sorted(options.items())) if options else ())
        try:
            shape = self._shapes.get(key)
        except TypeError:  # an unhashable function or option value
            return None
        if shape is None:
            if self.registry.ref_for(func).local:
                return None
            shape = job_shape(
                self.registry, func, options=self.options_for(_ONE_SHOT, options), durable=durable
            )
            if len(self._shapes) >= _SHAPES:
                self._shapes.clear()
            self._shapes[key] = shape
        return shape

    async def add_job(self, job: BackgroundJob, *, tags: Sequence[str], replace: bool) -> str:
        """Store a job instance whose ``__scheduled_at__`` or ``__interval__`` is set."""
        task = from_job(
            self.registry,
            job,
            options=task_options(self.job_defaults),
            default_timezone=self.timezone,
            tags=tags,
            now=self.clock(),
        )
        task.options = self.options_for(task.trigger, None)
        await self.router.add([task], local=False, replace=replace)
        return task.id

    async def add_descriptor(self, descriptor: TaskDescriptor) -> str:
        """Store (or replace) the task a bus descriptor describes."""
        task = from_descriptor(
            self.registry,
            descriptor,
            options=task_options(self.job_defaults),
            default_timezone=self.timezone,
            now=self.clock(),
        )
        task.options = self.options_for(task.trigger, getattr(descriptor, "options", None) or {})
        cls = self.registry.job_class(descriptor.name)
        method = getattr(cls, "run_at" if issubclass(cls, ScheduledBackgroundJob) else "run_every")
        check_cancellable(task.options, method, descriptor.name)
        await self.router.add([task], local=False, replace=True)
        return task.id

    async def add_declared_tasks(self) -> None:
        """Store every ``@schedule_task`` task, replacing a stored one only when its schedule or
        job changed (so a restart does not move its next fire time)."""
        for declared in list(DECLARED.values()):
            await self._add_declared(declared)

    async def adopt_orphans(self) -> None:
        """Resume the orphaned tasks whose job this process registers again."""
        store = self.router.durable
        for task in await all_tasks(store, TaskFilter(orphaned=True)):
            if self.registry.knows(task.job):
                log.info(
                    "task %s (%s): its job %s is registered again; resuming it", task.id, task.name, task.job
                )
                await store.update(task.id, orphaned=None)

    async def _add_declared(self, declared: DeclaredTask) -> None:
        now = self.clock()
        spec = triggers.make_trigger_spec(
            None, default_timezone=self.timezone, now=now, **dict(declared.trigger_args)
        )
        built = from_callable(
            self.registry,
            declared.func,
            trigger=spec,
            task_id=declared.task_id,
            options=self.options_for(spec, declared.options),
            name=declared.name,
            tags=declared.tags,
            durable=True,
            now=now,
        )
        store = self.router.durable
        try:
            await store.add([built.task])
        except TaskExistsError:
            existing = await store.get(declared.task_id)
            if (
                existing is None
                or _schedule_key(existing.trigger) != _schedule_key(spec)
                or existing.job != built.task.job
            ):
                await store.add([built.task], replace=True)


class _BatchBuilder:
    """Builds the tasks of one ``add`` call. A batch usually repeats one trigger, one set of
    options and one function, so each trigger spec, option set and function template is
    built once and shared by the tasks that repeat it."""

    def __init__(self, writer: TaskWriter, now: datetime) -> None:
        self.writer = writer
        self.now = now
        self.specs: dict[Any, triggers.TriggerSpec] = {}
        self.option_sets: dict[Any, TaskOptions] = {}
        self.templates: dict[Any, _Template] = {}

    def build(self, request: Mapping[str, Any]) -> BuiltTask:
        fields = dict(request)
        func = fields.pop("func")
        settings = {
            k: fields.pop(k) for k in ("id", "name", "args", "kwargs", "tags", "durable") if k in fields
        }
        overrides = fields.pop("options", None)
        trigger = fields.pop("trigger", None)
        task = self.writer.one_shot(
            func,
            trigger,
            fields,
            now=self.now,
            task_id=settings.get("id"),
            name=settings.get("name"),
            args=settings.get("args", ()),
            kwargs=settings.get("kwargs"),
            tags=settings.get("tags", ()),
            durable=settings.get("durable"),
            options=overrides,
        )
        if task is not None:
            return BuiltTask(task, local=False)
        spec = self._spec(trigger, fields)
        options = self._options(spec, overrides)
        template = self._template(func, spec, options, settings.get("durable"))
        return stamp(
            template,
            task_id=settings.get("id"),
            name=settings.get("name"),
            args=settings.get("args", ()),
            kwargs=settings.get("kwargs"),
            tags=settings.get("tags", ()),
        )

    def _spec(self, trigger: Any, fields: dict[str, Any]) -> triggers.TriggerSpec:
        key = _memo_key(trigger, fields)
        spec = self.specs.get(key) if key is not None else None
        if spec is None:
            spec = triggers.make_trigger_spec(
                trigger, default_timezone=self.writer.timezone, now=self.now, **fields
            )
            if key is not None:
                self.specs[key] = spec
        return spec

    def _options(self, spec: triggers.TriggerSpec, overrides: Mapping[str, Any] | None) -> TaskOptions:
        key = _memo_key(id(spec), overrides or {})
        options = self.option_sets.get(key) if key is not None else None
        if options is None:
            options = self.writer.options_for(spec, overrides)
            if key is not None:
                self.option_sets[key] = options
        return options

    def _template(
        self, func: Any, spec: triggers.TriggerSpec, options: TaskOptions, durable: bool | None
    ) -> BuiltTask:
        key = (func, id(spec), id(options), durable)
        share = shareable(spec) and _hashable(func)
        template = self.templates.get(key) if share else None
        if template is None or template[0] is not spec or template[1] is not options:
            built = callable_template(
                self.writer.registry, func, trigger=spec, options=options, durable=durable, now=self.now
            )
            template = (spec, options, built)
            if share:
                self.templates[key] = template
        return template[2]


def _schedule_key(spec: triggers.TriggerSpec) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k != "start_date"}


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _memo_key(head: Any, fields: Mapping[str, Any]) -> Any:
    """A hashable key for (head, fields), or ``None`` when a value is not hashable."""
    key = (head if isinstance(head, str | None | int) else id(head), tuple(sorted(fields.items())))
    try:
        hash(key)
    except TypeError:
        return None
    return key
