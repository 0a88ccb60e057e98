"""The scheduling calls of the facade: add tasks from callables, job instances and descriptors."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from backbeat.api.config import (
    task_options,
)
from backbeat.api.facade_base import SchedulerState
from backbeat.api.taskbuild import (
    BuiltTask,
    callable_template,
    from_descriptor,
    from_job,
    shareable,
    stamp,
)
from backbeat.errors import InvalidTriggerError
from backbeat.model import triggers
from backbeat.model.jobs import BackgroundJob, TaskDescriptor
from backbeat.model.records import Task, TaskOptions


class SchedulingCalls(SchedulerState):
    """``add_task``, ``schedule_delayed_task``, ``schedule_at``... (mixed into the scheduler)."""

    async def add_task(
        self,
        func: Callable[..., Any],
        trigger: Any = None,
        *,
        id: str | None = None,
        name: str | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        tags: Sequence[str] = (),
        replace_existing: bool = False,
        durable: bool | None = None,
        options: Mapping[str, Any] | None = None,
        **trigger_args: Any,
    ) -> str:
        """Schedule ``func(*args, **kwargs)`` on a trigger (an APScheduler trigger, a crontab string,
        ``"cron"``/``"interval"``/``"date"`` with keyword fields, or a spec); returns the task id.

        Raises:
            InvalidTriggerError: the trigger arguments are invalid or never fire.
            EncodingError: an argument cannot be stored (the message names it).
            NotPersistableError: ``func`` is a lambda/closure and ``durable=True``.
            TaskExistsError: ``id`` exists and ``replace_existing`` is false.
        """
        request = dict(
            trigger_args,
            func=func,
            trigger=trigger,
            id=id,
            name=name,
            args=args,
            kwargs=kwargs,
            tags=tags,
            durable=durable,
            options=options,
        )
        [task_id] = await self.add_tasks([request], replace_existing=replace_existing)
        return task_id

    async def add_tasks(
        self, requests: Iterable[Mapping[str, Any]], *, replace_existing: bool = False
    ) -> list[str]:
        """Schedule many tasks in one store round trip; each request holds ``add_task``'s arguments
        (``func``, ``trigger``, ``args``, ``tags``, trigger fields...). Returns their ids in order.

        Raises:
            Whatever ``add_task`` raises, for the first bad request; then nothing is stored.
        """
        now = self.clock()
        durable: list[Task] = []
        local: list[Task] = []
        ids: list[str] = []
        specs: dict[Any, triggers.TriggerSpec] = {}
        option_sets: dict[Any, TaskOptions] = {}
        templates: dict[Any, tuple[triggers.TriggerSpec, TaskOptions, BuiltTask]] = {}
        for request in requests:
            fields = dict(request)
            func = fields.pop("func")
            settings = {
                k: fields.pop(k) for k in ("id", "name", "args", "kwargs", "tags", "durable") if k in fields
            }
            overrides = fields.pop("options", None)
            trigger = fields.pop("trigger", None)
            # A batch usually repeats one trigger and one set of options: build each once.
            spec_key = _memo_key(trigger, fields)
            spec = specs.get(spec_key) if spec_key is not None else None
            if spec is None:
                spec = triggers.make_trigger_spec(trigger, default_timezone=self.timezone, now=now, **fields)
                if spec_key is not None:
                    specs[spec_key] = spec
            options_key = _memo_key(id(spec), overrides or {})
            options = option_sets.get(options_key) if options_key is not None else None
            if options is None:
                options = self._options_for(spec, overrides)
                if options_key is not None:
                    option_sets[options_key] = options
            # ... and each function's job reference, policies and first fire time once per trigger
            template_key = (func, id(spec), id(options), settings.get("durable"))
            share = shareable(spec) and _hashable(func)
            template = templates.get(template_key) if share else None
            if template is None or template[0] is not spec or template[1] is not options:
                built_template = callable_template(
                    self.registry,
                    func,
                    trigger=spec,
                    options=options,
                    durable=settings.get("durable"),
                    now=now,
                )
                template = (spec, options, built_template)
                if share:
                    templates[template_key] = template
            built = stamp(
                template[2],
                task_id=settings.get("id"),
                name=settings.get("name"),
                args=settings.get("args", ()),
                kwargs=settings.get("kwargs"),
                tags=settings.get("tags", ()),
            )
            (local if built.local else durable).append(built.task)
            ids.append(built.task.id)
        for tasks, is_local in ((durable, False), (local, True)):
            if tasks:
                await self._store_tasks(tasks, local=is_local, replace=replace_existing)
        return ids

    async def schedule_delayed_task(
        self,
        task_name: str,
        func: Callable[..., Any],
        delay_minutes: float = 0,
        *,
        delay_seconds: float = 0,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        tags: Sequence[str] = (),
        **options: Any,
    ) -> str:
        """Run ``func(*args)`` once, ``delay_minutes`` (plus ``delay_seconds``) from now; returns its id."""
        when = self.clock() + timedelta(minutes=delay_minutes, seconds=delay_seconds)
        return await self.schedule_at(
            task_name, func, scheduled_time=when, args=args, kwargs=kwargs, tags=tags, **options
        )

    async def schedule_at(
        self,
        task_name: str,
        func: Callable[..., Any],
        scheduled_time: datetime,
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        tags: Sequence[str] = (),
        **options: Any,
    ) -> str:
        """Run ``func(*args)`` once at ``scheduled_time`` (naive times are in the scheduler's timezone)."""
        return await self._add_with_options(
            func, "date", task_name, args, kwargs, tags, options, run_date=scheduled_time
        )

    async def schedule_immediate_task(
        self,
        task_name: str,
        func: Callable[..., Any],
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        tags: Sequence[str] = (),
        **options: Any,
    ) -> str:
        """Run ``func(*args)`` once, as soon as an instance is free."""
        return await self.schedule_at(
            task_name, func, scheduled_time=self.clock(), args=args, kwargs=kwargs, tags=tags, **options
        )

    async def schedule_recurring_task(
        self,
        task_name: str,
        func: Callable[..., Any],
        *,
        cron: str | None = None,
        interval: float | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        tags: Sequence[str] = (),
        **options: Any,
    ) -> str:
        """Run ``func(*args)`` on a crontab string or every ``interval`` seconds.

        Raises:
            InvalidTriggerError: neither ``cron`` nor ``interval`` is given.
        """
        if cron is None and interval is None:
            extra = f" (unexpected arguments: {', '.join(sorted(options))})" if options else ""
            raise InvalidTriggerError(
                f"schedule_recurring_task({task_name!r}) needs cron= or interval={extra}"
            )
        trigger_args: dict[str, Any] = {"cron": cron} if cron is not None else {"interval": interval}
        return await self._add_with_options(
            func, None, task_name, args, kwargs, tags, options, **trigger_args
        )

    async def _add_with_options(
        self,
        func: Callable[..., Any],
        trigger: Any,
        name: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        tags: Sequence[str],
        options: dict[str, Any],
        **trigger_args: Any,
    ) -> str:
        ids = {k: options.pop(k) for k in ("id", "replace_existing", "durable") if k in options}
        return await self.add_task(
            func,
            trigger,
            name=name,
            args=args,
            kwargs=kwargs,
            tags=tags,
            options=options,
            **ids,
            **trigger_args,
        )

    async def enqueue_task_async(
        self, task: BackgroundJob, *, tags: Sequence[str] = (), replace_existing: bool = True
    ) -> str:
        """Schedule a job instance (``__scheduled_at__`` or ``__interval__`` set); returns its task id."""
        spec_defaults = task_options(self.job_defaults)
        stored = from_job(
            self.registry,
            task,
            options=spec_defaults,
            default_timezone=self.timezone,
            tags=tags,
            now=self.clock(),
        )
        stored.options = self._options_for(stored.trigger, None)
        await self._store_tasks([stored], local=False, replace=replace_existing)
        return stored.id

    async def schedule_descriptor(self, descriptor: TaskDescriptor) -> str:
        """Schedule a bus descriptor (what ``BackgroundTasksBus.schedule_task`` does); returns its id."""
        return await self._schedule_descriptor(descriptor)

    async def _schedule_descriptor(self, descriptor: TaskDescriptor) -> str:
        extra = getattr(descriptor, "options", None) or {}
        task = from_descriptor(
            self.registry,
            descriptor,
            options=task_options(self.job_defaults),
            default_timezone=self.timezone,
            now=self.clock(),
        )
        task.options = self._options_for(task.trigger, extra)
        await self._store_tasks([task], local=False, replace=True)
        return task.id


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
