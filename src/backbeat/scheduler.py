"""``BackgroundTaskScheduler``: the facade users call, on top of one store and one engine."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from reactivex import Observable

from backbeat import triggers
from backbeat.abc import Store
from backbeat.config import (
    SchedulerConfig,
    StoreConfig,
    build_store,
    default_store_url,
    job_defaults_of,
    lease_of,
    pick_store,
    task_options,
)
from backbeat.context import pop_default_provider, push_default_provider
from backbeat.declared import DECLARED, DeclaredTask
from backbeat.engine import Engine, EngineConfig, default_owner
from backbeat.errors import SchedulerNotRunningError, TaskExistsError, TaskNotFoundError
from backbeat.events import EventHub, EventKind, Listener, SchedulerEvent
from backbeat.executors import AsyncIOExecutor, Executor, make_executor
from backbeat.hosting import HostedService
from backbeat.jobs import BackgroundJob, TaskDescriptor
from backbeat.model import QuarantinedRecord, Task, TaskFilter, TaskOptions, utcnow
from backbeat.options import BackgroundTaskSchedulerOptions
from backbeat.registry import JobRegistry
from backbeat.stores.memory import MemoryStore
from backbeat.taskbuild import from_callable, from_descriptor, from_job
from backbeat.tasklist import TaskInfo, TaskList, run_blocking

log = logging.getLogger("backbeat")


class BackgroundTaskScheduler(HostedService):
    """Schedules tasks into a durable store and runs them, safely shared by many processes.

    Built with no arguments it uses the embedded SQLite store (``backbeat.db``, or
    ``BACKBEAT_STORE_URL``). ``redis_url``/``job_store_prefix``, ``store`` (a URL, a config
    object or a ``Store``) or ``config`` (a ``SchedulerConfig``) choose another.
    """

    def __init__(
        self,
        options: BackgroundTaskSchedulerOptions | None = None,
        background_task_bus: Any = None,
        *,
        config: SchedulerConfig | None = None,
        store: Store | StoreConfig | str | None = None,
        redis_url: str | None = None,
        job_store_prefix: str | None = None,
        service_provider: Any = None,
        executors: Mapping[str, Executor | dict[str, Any]] | None = None,
        job_defaults: Mapping[str, Any] | None = None,
        timezone: str | None = None,
        producer_only: bool | None = None,
        owner: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        from backbeat.bus import BackgroundTasksBus
        from backbeat.config import RedisJobStoreConfig

        self.config = config or SchedulerConfig()
        if store is None and redis_url is not None:
            store = RedisJobStoreConfig(host=redis_url, lock_prefix=job_store_prefix)
        self._store_spec: Store | StoreConfig | str = (
            store
            if store is not None
            else pick_store(self.config.job_stores)
            if self.config.job_stores
            else default_store_url()
        )
        self.store: Store = build_store(self._store_spec)
        self.options = options or BackgroundTaskSchedulerOptions()
        self.registry: JobRegistry = self.options.registry
        self.bus: BackgroundTasksBus = background_task_bus or BackgroundTasksBus()
        self.service_provider = service_provider
        self.timezone = timezone or self.config.timezone
        self.job_defaults = job_defaults_of(
            self._store_spec, {**self.config.job_defaults, **(job_defaults or {})}
        )
        task_options(self.job_defaults)  # fail now on a bad key, not at the first add
        specs: dict[str, Executor | dict[str, Any]] = {**self.config.executors, **(executors or {})}
        self.executors: dict[str, Executor] = {name: make_executor(spec) for name, spec in specs.items()}
        self.executors.setdefault("default", AsyncIOExecutor())
        self.clock = clock
        self.events = EventHub()
        producer = self.config.producer_only if producer_only is None else producer_only
        self.engine_config = EngineConfig(
            owner=owner or default_owner(),
            lease=lease_of(self._store_spec, self.config.lease_seconds),
            batch_size=self.config.batch_size,
            max_concurrency=self.config.max_concurrency,
            poll_interval=self.config.poll_interval,
            shutdown_timeout=self.config.shutdown_timeout,
            claim_enabled=not producer,
        )
        self._local_store = MemoryStore()
        self._engine: Engine | None = None
        self._local_engine: Engine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._engine is not None

    def start(self) -> asyncio.Future[None]:
        """Start on the running event loop; returns a future you may await (``await scheduler.start()``).

        Raises:
            SchedulerNotRunningError: there is no running event loop in this thread.
        """
        return _ensure_future(self.start_async(), "start")

    def shutdown(self, wait: bool = True) -> asyncio.Future[None]:
        """Stop; with ``wait`` let running jobs finish (up to ``shutdown_timeout``). Await it to know when."""
        return _ensure_future(self.stop_async(None if wait else 0.0), "shutdown")

    async def start_async(self) -> None:
        """Connect to the store, add declared tasks, take in waiting bus descriptors, start the engine.

        Raises:
            StoreUnavailableError: the store cannot be reached.
        """
        if self._engine is not None:
            log.warning("the background task scheduler is already started")
            return
        self._loop = asyncio.get_running_loop()
        await self.store.open()
        await self._local_store.open()
        for executor in self.executors.values():
            await executor.start()
        if self.service_provider is not None:
            push_default_provider(self.service_provider)
        await self._adopt_orphans()
        await self._add_declared_tasks()
        engine_args: dict[str, Any] = dict(
            registry=self.registry,
            executors=self.executors,
            events=self.events,
            provider=self.service_provider,
            clock=self.clock,
        )
        self._engine = Engine(self.store, config=self.engine_config, **engine_args)
        local_config = EngineConfig(
            owner=self.engine_config.owner,
            lease=self.engine_config.lease,
            poll_interval=self.engine_config.poll_interval,
            shutdown_timeout=self.engine_config.shutdown_timeout,
        )
        self._local_engine = Engine(self._local_store, config=local_config, **engine_args)
        await self._engine.start()
        await self._local_engine.start()
        self.bus.attach(self._schedule_descriptor, self._loop)
        self.events.emit(SchedulerEvent(kind=EventKind.SCHEDULER_STARTED))
        log.info(
            "background task scheduler %s started on %s", self.engine_config.owner, type(self.store).__name__
        )

    async def stop_async(self, timeout: float | None = None) -> None:
        """Stop claiming, let running jobs finish up to ``timeout``, release the rest, disconnect."""
        if self._engine is None or self._local_engine is None:
            return
        self.bus.detach()
        engine, local_engine = self._engine, self._local_engine
        self._engine = self._local_engine = None
        await asyncio.gather(engine.stop(timeout), local_engine.stop(timeout))
        for executor in self.executors.values():
            await executor.shutdown(wait=timeout != 0)
        if self.service_provider is not None:
            pop_default_provider(self.service_provider)
        await self.store.close()
        self.events.emit(SchedulerEvent(kind=EventKind.SCHEDULER_SHUTDOWN))
        log.info("background task scheduler %s stopped", self.engine_config.owner)

    async def __aenter__(self) -> BackgroundTaskScheduler:
        await self.start_async()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_async()

    # -- scheduling ------------------------------------------------------------------------------

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
        now = self.clock()
        spec = triggers.make_trigger_spec(trigger, default_timezone=self.timezone, now=now, **trigger_args)
        built = from_callable(
            self.registry,
            func,
            trigger=spec,
            options=self._options_for(spec, options),
            task_id=id,
            name=name,
            args=args,
            kwargs=kwargs,
            tags=tags,
            durable=durable,
            now=now,
        )
        await self._store_tasks([built.task], local=built.local, replace=replace_existing)
        return built.task.id

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
            built = from_callable(
                self.registry,
                func,
                trigger=spec,
                options=options,
                task_id=settings.get("id"),
                name=settings.get("name"),
                args=settings.get("args", ()),
                kwargs=settings.get("kwargs"),
                tags=settings.get("tags", ()),
                durable=settings.get("durable"),
                now=now,
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
        """Run ``func(*args)`` on a crontab string or every ``interval`` seconds."""
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

    def _options_for(self, spec: triggers.TriggerSpec, overrides: Mapping[str, Any] | None) -> TaskOptions:
        defaults = dict(self.job_defaults)
        # A one-shot task is run however late unless told otherwise: a reminder due while every
        # instance was down must still be sent, not silently dropped as a misfire.
        if triggers.is_one_shot(spec) and "misfire_grace_time" not in defaults:
            defaults["misfire_grace_time"] = None
        return task_options(defaults, overrides)

    async def _store_tasks(self, tasks: list[Task], *, local: bool, replace: bool) -> None:
        store = self._local_store if local else self.store
        await self._ensure_open(store)
        await store.add(tasks, replace=replace)
        engine = self._local_engine if local else self._engine
        if engine is not None:
            engine.notify()
        for task in tasks:
            self.events.emit(SchedulerEvent(kind=EventKind.TASK_ADDED, task_id=task.id, task_name=task.name))

    async def _ensure_open(self, store: Store) -> None:
        if self._engine is None:
            await store.open()  # producers may add before (or without) starting the engine

    # -- managing ---------------------------------------------------------------------------------

    def list_tasks(self, *, tag: str | None = None, name: str | None = None) -> TaskList:
        """All tasks (durable and local): ``await`` it, or iterate it directly from sync code."""
        task_filter = TaskFilter(tag=tag, name=name)
        return TaskList(
            lambda: self._list(task_filter, self.store),
            lambda: run_blocking(lambda: self._list_fresh(task_filter), self._loop),
        )

    async def _list(self, task_filter: TaskFilter, store: Store) -> list[TaskInfo]:
        infos = [TaskInfo.of(t) for t in await _all_tasks(store, task_filter)]
        infos += [TaskInfo.of(t, local=True) for t in await _all_tasks(self._local_store, task_filter)]
        return infos

    async def _list_fresh(self, task_filter: TaskFilter) -> list[TaskInfo]:
        if isinstance(self._store_spec, Store):
            if isinstance(self._store_spec, MemoryStore):
                return await self._list(task_filter, self._store_spec)
            raise SchedulerNotRunningError(
                "list_tasks() from sync code needs a store URL or config; use `await scheduler.list_tasks()`"
            )
        store = build_store(self._store_spec)
        await store.open()
        try:
            return await self._list(task_filter, store)
        finally:
            await store.close()

    async def get_task_info(self, task_id: str) -> TaskInfo | None:
        """The task with this id, or ``None``."""
        store, task = await self._find(task_id)
        return None if task is None else TaskInfo.of(task, local=store is self._local_store)

    async def _find(self, task_id: str) -> tuple[Store, Task | None]:
        task = await self._local_store.get(task_id)
        if task is not None:
            return self._local_store, task
        await self._ensure_open(self.store)
        return self.store, await self.store.get(task_id)

    async def stop_task(self, task_id: str) -> bool:
        """Remove a task (its run in flight finishes); ``False`` if there was none."""
        removed = await self._local_store.remove([task_id]) or await self.store.remove([task_id])
        for removed_id in removed:
            self.events.emit(SchedulerEvent(kind=EventKind.TASK_REMOVED, task_id=removed_id))
        return bool(removed)

    remove_task = stop_task

    async def cancel_tasks_by_tag(self, tag: str) -> list[str]:
        """Remove every task carrying ``tag``; returns their ids."""
        await self._ensure_open(self.store)
        removed: list[str] = [
            *await self.store.remove_by_tag(tag),
            *await self._local_store.remove_by_tag(tag),
        ]
        for task_id in removed:
            self.events.emit(SchedulerEvent(kind=EventKind.TASK_REMOVED, task_id=task_id))
        return removed

    remove_tasks_by_tag = cancel_tasks_by_tag

    async def pause_task(self, task_id: str) -> TaskInfo:
        """Stop a task from firing until ``resume_task`` (runs in flight finish).

        Raises:
            TaskNotFoundError: no task has this id.
        """
        return await self._update(task_id, paused=True)

    async def resume_task(self, task_id: str) -> TaskInfo:
        """Let a paused task fire again, from its next fire time after now."""
        _, task = await self._find(task_id)
        if task is None:
            raise TaskNotFoundError(task_id)
        following = task.next_run_time
        if following is not None and following < self.clock() and not triggers.is_one_shot(task.trigger):
            following = triggers.next_fire_time(task.trigger, None, self.clock())
        return await self._update(task_id, paused=False, next_run_time=following)

    async def reschedule(self, task_id: str, trigger: Any = None, **trigger_args: Any) -> TaskInfo:
        """Give a task a new trigger; its next fire time is recomputed from now.

        Raises:
            TaskNotFoundError: no task has this id.
            InvalidTriggerError: the new trigger is invalid or never fires.
        """
        now = self.clock()
        spec = triggers.make_trigger_spec(trigger, default_timezone=self.timezone, now=now, **trigger_args)
        first = triggers.next_fire_time(spec, None, now)
        return await self._update(task_id, trigger=spec, next_run_time=first)

    reschedule_task = reschedule

    async def trigger_job_now(self, task_id: str) -> str | None:
        """Run a task once now, besides its schedule; returns the run id.

        Returns ``None`` when ``max_instances`` runs of the task exist already.

        Raises:
            TaskNotFoundError: no task has this id.
        """
        store, task = await self._find(task_id)
        if task is None:
            raise TaskNotFoundError(task_id)
        run = await store.enqueue_run(task_id, fire_time=self.clock(), now=self.clock())
        self._notify(store)
        return None if run is None else run.id

    async def _update(self, task_id: str, **changes: Any) -> TaskInfo:
        store, task = await self._find(task_id)
        if task is None:
            raise TaskNotFoundError(task_id)
        updated = await store.update(task_id, **changes)
        self._notify(store)
        self.events.emit(
            SchedulerEvent(kind=EventKind.TASK_MODIFIED, task_id=task_id, task_name=updated.name)
        )
        return TaskInfo.of(updated, local=store is self._local_store)

    def _notify(self, store: Store) -> None:
        engine = self._local_engine if store is self._local_store else self._engine
        if engine is not None:
            engine.notify()

    async def clear_all_jobs(self) -> None:
        """Remove every task and run of this scheduler's store (and its local tasks)."""
        await self._ensure_open(self.store)
        await self.store.clear()
        await self._local_store.clear()
        await self._close_if_idle()

    async def _close_if_idle(self) -> None:
        if self._engine is None:
            await self.store.close()

    async def quarantined(self) -> list[QuarantinedRecord]:
        """Stored records that could not be decoded (kept, never deleted)."""
        await self._ensure_open(self.store)
        return await self.store.quarantined()

    async def orphaned_tasks(self) -> list[TaskInfo]:
        """Tasks kept but not run because their job is not registered (renamed or removed)."""
        return [TaskInfo.of(t) for t in await _all_tasks(self.store, TaskFilter(orphaned=True))]

    async def _adopt_orphans(self) -> None:
        for task in await _all_tasks(self.store, TaskFilter(orphaned=True)):
            if self.registry.knows(task.job):
                log.info(
                    "task %s (%s): its job %s is registered again; resuming it", task.id, task.name, task.job
                )
                await self.store.update(task.id, orphaned=None)

    async def _add_declared_tasks(self) -> None:
        for declared in list(DECLARED.values()):
            await self._add_declared(declared)

    async def _add_declared(self, declared: DeclaredTask) -> None:
        now = self.clock()
        trigger_args = dict(declared.trigger_args)
        spec = triggers.make_trigger_spec(None, default_timezone=self.timezone, now=now, **trigger_args)
        built = from_callable(
            self.registry,
            declared.func,
            trigger=spec,
            task_id=declared.task_id,
            options=self._options_for(spec, declared.options),
            name=declared.name,
            tags=declared.tags,
            durable=True,
            now=now,
        )
        try:
            await self.store.add([built.task])
        except TaskExistsError:
            existing = await self.store.get(declared.task_id)
            if (
                existing is None
                or _schedule_key(existing.trigger) != _schedule_key(spec)
                or existing.job != built.task.job
            ):
                await self.store.add([built.task], replace=True)

    # -- events -------------------------------------------------------------------------------------

    @property
    def event_stream(self) -> Observable[SchedulerEvent]:
        """Every event as a reactivex observable."""
        return self.events.stream

    def add_listener(
        self, listener: Listener, kinds: Sequence[EventKind] | None = None
    ) -> Callable[[], None]:
        """Call ``listener(event)`` for each event of ``kinds`` (all when ``None``); returns an undo."""
        return self.events.add_listener(listener, kinds)

    def active_runs(self) -> list[str]:
        """Ids of the runs this process executes now."""
        engines = [e for e in (self._engine, self._local_engine) if e is not None]
        return [run.id for engine in engines for run in engine.active_runs()]

    # -- hosting ------------------------------------------------------------------------------------

    @staticmethod
    def configure(builder: Any, modules: Sequence[str] = (), **scheduler_args: Any) -> Any:
        """Find ``@backgroundjob`` classes in ``modules`` and register the scheduler, its options and
        the bus in ``builder.services`` (the scheduler as a hosted service). Returns the builder."""
        from backbeat.hosting_setup import configure_builder

        return configure_builder(builder, modules, **scheduler_args)


async def _all_tasks(store: Store, task_filter: TaskFilter) -> list[Task]:
    tasks: list[Task] = []
    cursor: str | None = None
    while True:
        page, cursor = await store.list(task_filter, cursor=cursor, limit=1000)
        tasks += page
        if cursor is None:
            return tasks


def _memo_key(head: Any, fields: Mapping[str, Any]) -> Any:
    """A hashable key for (head, fields), or ``None`` when a value is not hashable."""
    key = (head if isinstance(head, str | None | int) else id(head), tuple(sorted(fields.items())))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _schedule_key(spec: triggers.TriggerSpec) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k != "start_date"}


def _ensure_future(coro: Any, what: str) -> asyncio.Future[None]:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        coro.close()
        raise SchedulerNotRunningError(
            f"scheduler.{what}() needs a running event loop: call it from async code "
            f"(`await scheduler.{what}()`) or use asyncio.run(...)"
        ) from None
    return loop.create_task(coro)


__all__ = ["UTC", "BackgroundTaskScheduler"]
