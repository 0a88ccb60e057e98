"""``BackgroundTaskScheduler``: the facade users call, on top of one store and one engine."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from reactivex import Observable

from backbeat.abc import Executor, HostedService, RunHook, Store
from backbeat.api.backfill import (
    MAX_FIRE_TIMES,
    BackfillProgress,
    BackfillRunner,
    ProgressCallback,
    check_backfill_overlap,
    range_fire_times,
)
from backbeat.api.bus import BackgroundTasksBus
from backbeat.api.config import (
    RedisJobStoreConfig,
    SchedulerConfig,
    StoreConfig,
    build_store,
    default_store_url,
    job_defaults_of,
    lease_of,
    pick_store,
    store_config_from_settings,
    task_options,
)
from backbeat.api.history import OutcomeFilter, history_query, history_settings
from backbeat.api.options import BackgroundTaskSchedulerOptions
from backbeat.api.routing import StoreRouter, all_tasks
from backbeat.api.task_writer import TaskWriter
from backbeat.api.tasklist import TaskInfo, TaskList, TaskPage, run_blocking
from backbeat.engine import cancellations
from backbeat.engine.context import pop_default_provider, push_default_provider
from backbeat.engine.loop import Engine, EngineConfig, default_owner
from backbeat.errors import (
    ConfigurationError,
    InvalidTriggerError,
    SchedulerNotRunningError,
    TaskNotFoundError,
)
from backbeat.executors import AsyncIOExecutor, make_executor
from backbeat.model import triggers
from backbeat.model.events import EventHub, EventKind, Listener, SchedulerEvent
from backbeat.model.history import HistoryPage
from backbeat.model.jobs import BackgroundJob, TaskDescriptor
from backbeat.model.records import DeadLetter, QuarantinedRecord, TaskFilter, utcnow
from backbeat.model.registry import JobRegistry
from backbeat.policies.breakers import SharedBreakers
from backbeat.policies.definitions import CircuitBreakerPolicy
from backbeat.policies.handlers import TaskFailureHandler
from backbeat.stores.memory import MemoryStore

log = logging.getLogger("backbeat")


Role = Literal["worker", "producer"]
"""A worker runs the tasks of its store; a producer only stores tasks (it claims nothing)."""


def _role_of(role: Role | None, producer_only: bool) -> Role:
    if role is None:
        return "producer" if producer_only else "worker"
    if role not in ("worker", "producer"):
        raise ConfigurationError(f"role must be 'worker' or 'producer', not {role!r}")
    if producer_only and role == "worker":
        raise ConfigurationError("producer_only=True contradicts role='worker'")
    return role


class SchedulerState(enum.Enum):
    """Where a scheduler is in its life; it may be started again once stopped."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"


class BackgroundTaskScheduler(HostedService):
    """Schedules tasks into a durable store and runs them, safely shared by many processes.

    Built with no arguments it uses the embedded SQLite store (``backbeat.db``, or
    ``BACKBEAT_STORE_URL``). ``redis_url``/``job_store_prefix``, ``store`` (a URL, a config
    object or a ``Store``) or ``config`` (a ``SchedulerConfig``) choose another.

    ``role="producer"`` (or ``producer_only=True``) makes a scheduler that only stores tasks:
    a web process that schedules work for workers elsewhere. It need not be started; its store
    opens at the first call and stays open until ``shutdown()``.
    """

    def __init__(
        self,
        options: BackgroundTaskSchedulerOptions | None = None,
        background_task_bus: BackgroundTasksBus | None = None,
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
        role: Role | None = None,
        owner: str | None = None,
        failure_handlers: Sequence[TaskFailureHandler] = (),
        clock: Callable[[], datetime] = utcnow,
        history: bool | None = None,
        history_retention: timedelta | None = None,
        history_per_task: int | None = None,
        history_args: bool | None = None,
    ) -> None:
        self.config = config or SchedulerConfig()
        history_of = history_settings(
            self.config.history if history is None else history,
            self.config.history_retention if history_retention is None else history_retention,
            self.config.history_per_task if history_per_task is None else history_per_task,
            self.config.history_args if history_args is None else history_args,
        )
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
        self.bus = background_task_bus or BackgroundTasksBus()
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
        self.failure_handlers: list[TaskFailureHandler] = list(failure_handlers)
        self.run_hooks: list[RunHook] = []
        """Context managers entered around every run (metrics, traces); see :data:`RunHook`."""
        self.role: Role = _role_of(
            role, self.config.producer_only if producer_only is None else producer_only
        )
        """``"worker"`` runs tasks; ``"producer"`` only stores them (no engine, no leases)."""
        self.engine_config = EngineConfig(
            owner=owner or default_owner(),
            lease=lease_of(self._store_spec, self.config.lease_seconds),
            batch_size=self.config.batch_size,
            max_concurrency=self.config.max_concurrency,
            poll_interval=self.config.poll_interval,
            claim_ahead=timedelta(seconds=self.config.claim_ahead),
            shutdown_timeout=self.config.shutdown_timeout,
            claim_enabled=self.role == "worker",
            history=history_of,
        )
        self.state = SchedulerState.STOPPED
        self._router = StoreRouter(self.store, self.events)
        self._writer = TaskWriter(
            self._router, self.registry, clock=clock, timezone=self.timezone, job_defaults=self.job_defaults
        )
        self._running: AsyncExitStack | None = None
        """What ``start_async`` opened, closed in reverse order by ``stop_async``."""
        self._stop_timeout: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.state is SchedulerState.RUNNING

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

        A step that fails undoes the ones before it (stores closed, executors shut down, the
        service provider withdrawn) and the scheduler stays stopped.

        Raises:
            StoreUnavailableError: the store cannot be reached.
        """
        if self.state is not SchedulerState.STOPPED:
            log.warning("the background task scheduler is already %s", self.state.value)
            return
        self.state = SchedulerState.STARTING
        self._loop = asyncio.get_running_loop()
        self._stop_timeout = None
        try:
            async with AsyncExitStack() as stack:
                await self._start_steps(stack)
                self._running = stack.pop_all()
        finally:
            self.state = SchedulerState.RUNNING if self._running is not None else SchedulerState.STOPPED
        self.events.emit(SchedulerEvent(kind=EventKind.SCHEDULER_STARTED))
        log.info(
            "background task scheduler %s started on %s", self.engine_config.owner, type(self.store).__name__
        )

    async def _start_steps(self, stack: AsyncExitStack) -> None:
        router = self._router
        await router.ready()
        stack.push_async_callback(router.close)
        await router.local.open()
        stack.push_async_callback(router.local.close)
        for executor in self.executors.values():
            await executor.start()
            stack.push_async_callback(self._shutdown_executor, executor)
        if self.service_provider is not None:
            push_default_provider(self.service_provider)
            stack.callback(pop_default_provider, self.service_provider)
            self._add_provided_failure_handlers()
        if self.role == "worker":
            await self._writer.adopt_orphans()
        await self._writer.add_declared_tasks()
        if self.role == "worker":
            router.engine = self._engine(router.durable, self.engine_config)
        router.local_engine = self._engine(
            router.local,
            EngineConfig(
                owner=self.engine_config.owner,
                lease=self.engine_config.lease,
                poll_interval=self.engine_config.poll_interval,
                shutdown_timeout=self.engine_config.shutdown_timeout,
                fencing=False,  # local tasks live in this process's memory: nobody else can take one
                history=self.engine_config.history,
            ),
            history_store=router.durable,  # one history for all: local tasks' runs too
        )
        stack.push_async_callback(self._stop_engines)
        for engine in router.engines:
            await engine.start()
        self.bus.attach(self._writer.add_descriptor, asyncio.get_running_loop())
        stack.callback(self.bus.detach)

    def _engine(self, store: Store, config: EngineConfig, history_store: Store | None = None) -> Engine:
        return Engine(
            store,
            config=config,
            registry=self.registry,
            executors=self.executors,
            events=self.events,
            provider=self.service_provider,
            clock=self.clock,
            run_hooks=self.run_hooks,
            failure_handlers=self.failure_handlers,
            history_store=history_store,
        )

    async def _stop_engines(self) -> None:
        engines = self._router.engines
        self._router.engine = self._router.local_engine = None
        await asyncio.gather(*(engine.stop(self._stop_timeout) for engine in engines if engine.running))

    async def _shutdown_executor(self, executor: Executor) -> None:
        await executor.shutdown(wait=self._stop_timeout != 0)

    async def stop_async(self, timeout: float | None = None) -> None:
        """Stop claiming, let running jobs finish up to ``timeout``, release the rest, disconnect.

        A scheduler that was never started (a producer that only added tasks) just closes the
        store it opened.
        """
        if self.state is SchedulerState.STOPPED:
            await self._router.close()
            return
        if self.state is not SchedulerState.RUNNING or self._running is None:
            return
        self.state = SchedulerState.STOPPING
        running, self._running = self._running, None
        self._stop_timeout = timeout
        try:
            await running.aclose()
        finally:
            self.state = SchedulerState.STOPPED
        self.events.emit(SchedulerEvent(kind=EventKind.SCHEDULER_SHUTDOWN))
        log.info("background task scheduler %s stopped", self.engine_config.owner)

    async def __aenter__(self) -> BackgroundTaskScheduler:
        await self.start_async()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_async()

    # -- scheduling -----------------------------------------------------------------------------

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
        return await self._writer.add_one(
            func,
            trigger,
            trigger_args,
            task_id=id,
            name=name,
            args=args,
            kwargs=kwargs,
            tags=tags,
            durable=durable,
            options=options,
            replace=replace_existing,
        )

    async def add_tasks(
        self, requests: Iterable[Mapping[str, Any]], *, replace_existing: bool = False
    ) -> list[str]:
        """Schedule many tasks in one store round trip; each request holds ``add_task``'s arguments
        (``func``, ``trigger``, ``args``, ``tags``, trigger fields...). Returns their ids in order.

        Raises:
            BackbeatError: what ``add_task`` raises, for the first bad request; then nothing is stored.
        """
        return await self._writer.add(requests, replace=replace_existing)

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
        return await self._writer.add_one(
            func,
            trigger,
            trigger_args,
            task_id=options.pop("id", None),
            name=name,
            args=args,
            kwargs=kwargs,
            tags=tags,
            durable=options.pop("durable", None),
            replace=options.pop("replace_existing", False),
            options=options,
        )

    async def enqueue_task_async(
        self, task: BackgroundJob, *, tags: Sequence[str] = (), replace_existing: bool = True
    ) -> str:
        """Schedule a job instance (``__scheduled_at__`` or ``__interval__`` set); returns its task id."""
        return await self._writer.add_job(task, tags=tags, replace=replace_existing)

    async def schedule_descriptor(self, descriptor: TaskDescriptor) -> str:
        """Schedule a bus descriptor (what ``BackgroundTasksBus.schedule_task`` does); returns its id."""
        return await self._writer.add_descriptor(descriptor)

    # -- managing tasks -------------------------------------------------------------------------

    def list_tasks(self, *, tag: str | None = None, name: str | None = None) -> TaskList:
        """All tasks (durable and local): ``await`` it, or iterate it directly from sync code."""
        task_filter = TaskFilter(tag=tag, name=name)
        return TaskList(
            lambda: self._list_ready(task_filter),
            lambda: run_blocking(lambda: self._list_fresh(task_filter), self._loop),
        )

    async def list_tasks_page(
        self, *, tag: str | None = None, name: str | None = None, cursor: str | None = None, limit: int = 100
    ) -> TaskPage:
        """One page of the durable store's tasks in id order, after ``cursor`` (the ``next_cursor``
        of the page before): the way through a store too big to list at once, since
        ``list_tasks`` holds every task. Local tasks are not in it (``list_tasks`` has them).

        Raises:
            ValueError: ``limit`` is not from 1 to 1000.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise ValueError(f"limit must be an integer from 1 to 1000, not {limit!r}")
        store = await self._router.ready()
        page, next_cursor = await store.list(TaskFilter(tag=tag, name=name), cursor=cursor, limit=limit)
        return TaskPage([TaskInfo.of(task) for task in page], next_cursor)

    async def _list_ready(self, task_filter: TaskFilter) -> list[TaskInfo]:
        return await self._list(task_filter, await self._router.ready())

    async def _list(self, task_filter: TaskFilter, store: Store) -> list[TaskInfo]:
        infos = [TaskInfo.of(t) for t in await all_tasks(store, task_filter)]
        infos += [TaskInfo.of(t, local=True) for t in await all_tasks(self._router.local, task_filter)]
        return infos

    async def _list_fresh(self, task_filter: TaskFilter) -> list[TaskInfo]:
        """The listing on a connection of its own: sync code may call it from any thread or loop."""
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
        store, task = await self._router.find(task_id)
        return None if task is None else TaskInfo.of(task, local=self._router.is_local(store))

    async def next_fire_times(self, task_id: str, count: int = 10) -> list[datetime]:
        """The task's next ``count`` fire times (UTC), from its stored next run time, without
        jitter and whether or not it is paused; fewer when its trigger ends, none when it has
        nothing left to fire.

        Raises:
            TaskNotFoundError: no task has this id.
            ValueError: ``count`` is not from 1 to 1000.
        """
        if not isinstance(count, int) or not 1 <= count <= 1000:
            raise ValueError(f"count must be an integer from 1 to 1000, not {count!r}")
        _, task = await self._router.find(task_id)
        if task is None:
            raise TaskNotFoundError(task_id)
        if task.next_run_time is None:
            return []
        return triggers.upcoming(task.trigger, task.next_run_time, count)

    async def backfill(
        self,
        task_id: str,
        start: datetime | timedelta,
        end: datetime | timedelta,
        *,
        overlap: str = "buffer_all",
        max_fire_times: int = MAX_FIRE_TIMES,
        on_progress: ProgressCallback | None = None,
    ) -> BackfillProgress:
        """Run a recurring task's fire times from ``start`` to ``end`` (aware datetimes, or how
        long ago; both included, all in the past) by adding their runs to the store, where any
        worker runs them; returns once each has ended or been skipped. A producer can call it.

        ``overlap``: ``"buffer_all"`` adds one run after another, each once no other run of the
        task exists; ``"allow_all"`` keeps up to ``max_instances`` runs of the task at once;
        ``"skip"`` goes one after another and skips (and reports) a fire time whose turn comes
        while another run of the task exists. ``on_progress(progress)`` (sync or async) is
        called after every change. A fire time's run has the id its schedule would have given
        it (``task@fire_time``): one seen in the store during the backfill is not added again.

        Raises:
            TaskNotFoundError: no task has this id.
            ValueError: an unknown ``overlap``, a one-shot task, a naive time, ``end`` before
                ``start`` or in the future, or more than ``max_fire_times`` fire times.
            TypeError: ``on_progress`` is not callable.
        """
        checked = check_backfill_overlap(overlap)
        if on_progress is not None and not callable(on_progress):
            raise TypeError(f"on_progress must be callable or None, not {on_progress!r}")
        store, task = await self._router.find(task_id)
        if task is None:
            raise TaskNotFoundError(task_id)
        times = range_fire_times(task, start, end, now=self.clock(), max_fire_times=max_fire_times)
        runner = BackfillRunner(
            store,
            task,
            BackfillProgress(task_id=task.id, fire_times=times),
            overlap=checked,
            clock=self.clock,
            on_progress=on_progress,
            notify=lambda: self._router.notify(store),
        )
        return await runner.run()

    async def backfill_fire_times(
        self,
        task_id: str,
        start: datetime | timedelta,
        end: datetime | timedelta,
        *,
        max_fire_times: int = MAX_FIRE_TIMES,
    ) -> list[datetime]:
        """The fire times :meth:`backfill` would run (UTC, ascending), running nothing: a dry run.

        Raises:
            TaskNotFoundError: no task has this id.
            ValueError: what :meth:`backfill` refuses for its range.
        """
        _, task = await self._router.find(task_id)
        if task is None:
            raise TaskNotFoundError(task_id)
        return range_fire_times(task, start, end, now=self.clock(), max_fire_times=max_fire_times)

    async def stop_task(self, task_id: str) -> bool:
        """Remove a task (its run in flight finishes); ``False`` if there was none."""
        removed = await self._router.local.remove([task_id]) or await (await self._router.ready()).remove(
            [task_id]
        )
        self._removed(removed)
        return bool(removed)

    remove_task = stop_task

    async def cancel_tasks_by_tag(self, tag: str) -> list[str]:
        """Remove every task carrying ``tag``; returns their ids."""
        durable = await self._router.ready()
        removed = [*await durable.remove_by_tag(tag), *await self._router.local.remove_by_tag(tag)]
        self._removed(removed)
        return removed

    remove_tasks_by_tag = cancel_tasks_by_tag

    def _removed(self, task_ids: Iterable[str]) -> None:
        for task_id in task_ids:
            self.events.emit(SchedulerEvent(kind=EventKind.TASK_REMOVED, task_id=task_id))

    async def pause_task(self, task_id: str) -> TaskInfo:
        """Stop a task from firing until ``resume_task`` (runs in flight finish).

        Raises:
            TaskNotFoundError: no task has this id.
        """
        return await self._update(task_id, paused=True)

    async def resume_task(self, task_id: str) -> TaskInfo:
        """Let a paused task fire again, from its next fire time after now.

        Raises:
            TaskNotFoundError: no task has this id.
        """
        _, task = await self._router.find(task_id)
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
        store, task = await self._router.find(task_id)
        if task is None:
            raise TaskNotFoundError(task_id)
        run = await store.enqueue_run(task_id, fire_time=self.clock(), now=self.clock())
        self._router.notify(store)
        return None if run is None else run.id

    async def _update(self, task_id: str, **changes: Any) -> TaskInfo:
        store, task = await self._router.find(task_id)
        if task is None:
            raise TaskNotFoundError(task_id)
        updated = await store.update(task_id, **changes)
        self._router.notify(store)
        self.events.emit(
            SchedulerEvent(kind=EventKind.TASK_MODIFIED, task_id=task_id, task_name=updated.name)
        )
        return TaskInfo.of(updated, local=self._router.is_local(store))

    async def clear_all_jobs(self) -> None:
        """Remove every task and run of this scheduler's store (and its local tasks)."""
        durable = await self._router.ready()
        await durable.clear()
        await self._router.local.clear()
        if self.state is SchedulerState.STOPPED:
            await self._router.close()  # a cleanup call: leave nothing open behind it

    async def quarantined(self) -> list[QuarantinedRecord]:
        """Stored records that could not be decoded (kept, never deleted)."""
        return await (await self._router.ready()).quarantined()

    async def orphaned_tasks(self) -> list[TaskInfo]:
        """Tasks kept but not run because their job is not registered (renamed or removed)."""
        durable = await self._router.ready()
        return [TaskInfo.of(t) for t in await all_tasks(durable, TaskFilter(orphaned=True))]

    # -- runs that went wrong -------------------------------------------------------------------

    def add_failure_handler(self, handler: TaskFailureHandler) -> None:
        """Call ``handler`` after every run this process executes."""
        self.failure_handlers.append(handler)

    def _add_provided_failure_handlers(self) -> None:
        get_all = getattr(self.service_provider, "get_services", None)
        for handler in get_all(TaskFailureHandler) if get_all is not None else ():
            if isinstance(handler, TaskFailureHandler) and handler not in self.failure_handlers:
                self.failure_handlers.append(handler)

    async def list_dead_letters(self, task_id: str | None = None) -> list[DeadLetter]:
        """Runs that failed their last attempt, oldest first (with exception type, message, traceback)."""
        return await (await self._router.ready()).dead_letters(task_id)

    async def run_history(
        self,
        task_id: str | None = None,
        outcome: OutcomeFilter = None,
        since: datetime | timedelta | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> HistoryPage:
        """Finished runs of every process on this store, newest first: one page of at most
        ``limit``, after ``cursor`` (the ``next_cursor`` of the page before).

        ``outcome`` is one outcome (``"success"``, ``"failure"``, ``"retry_scheduled"``,
        ``"dead_lettered"``, ``"missed"``, ``"coalesced"``, ``"skipped"``, ``"cancelled"``,
        ``"lost_lease"``, ``"lost"``,
        ``"orphaned"``), several, or ``"failed"`` for the first three failures; ``since`` a time
        or how long ago.

        Raises:
            ValueError: an unknown outcome, a naive ``since``, a limit outside 1..1000, or a
                cursor that ``run_history`` did not return.
        """
        query = history_query(
            task_id=task_id, outcome=outcome, since=since, limit=limit, cursor=cursor, now=self.clock()
        )
        entries, next_cursor = await (await self._router.ready()).run_history(query)
        return HistoryPage(entries, next_cursor)

    async def get_dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        """One dead letter by its id (the failed run's id), or ``None``."""
        letters = await self.list_dead_letters(dead_letter_id.rpartition("@")[0] or None)
        return next((letter for letter in letters if letter.id == dead_letter_id), None)

    async def retry_dead_letter(self, dead_letter_id: str) -> str | None:
        """Run a dead letter's fire time again (attempt 1, now); returns the run id, or ``None``
        if there is no such dead letter or its task already has ``max_instances`` runs."""
        durable = await self._router.ready()
        run = await durable.requeue_dead_letter(dead_letter_id, now=self.clock())
        if run is None:
            return None
        self._router.notify(durable)
        return run.id

    async def remove_dead_letters(self, dead_letter_ids: Collection[str]) -> list[str]:
        """Forget dead letters; returns the ids that existed."""
        return await (await self._router.ready()).remove_dead_letters(dead_letter_ids)

    async def circuit_breaker_state(self, name: str) -> dict[str, Any]:
        """The shared state of the breaker ``name`` (a policy's ``name``, else the task name)."""
        durable = await self._router.ready()
        return await SharedBreakers(durable, self.clock).state(CircuitBreakerPolicy(name=name), name)

    async def reset_circuit_breaker(self, name: str) -> None:
        """Close the breaker ``name`` in every process."""
        durable = await self._router.ready()
        key = CircuitBreakerPolicy(name=name).key(name)
        record = await durable.get_state(key)
        closed = {"state": "closed", "failures": 0, "successes": 0, "probes": 0}
        while not await durable.put_state(key, closed, version=record.version if record else 0):
            record = await durable.get_state(key)

    async def cancel_run(self, run_id: str) -> bool:
        """Cancel a running run: at once if this process runs it, else within a lease renewal
        period in whichever process does. Returns whether it ran here."""
        if any(engine.cancel(run_id) for engine in self._router.engines):
            return True
        await cancellations.request(await self._router.ready(), run_id, self.clock())
        return False

    # -- events and what this process runs ------------------------------------------------------

    @property
    def event_stream(self) -> Observable[SchedulerEvent]:
        """Every event as a reactivex observable."""
        return self.events.stream

    def add_listener(
        self, listener: Listener, kinds: Sequence[EventKind] | None = None
    ) -> Callable[[], None]:
        """Call ``listener(event)`` for each event of ``kinds`` (all when ``None``); returns an undo."""
        return self.events.add_listener(listener, kinds)

    def add_run_hook(self, hook: RunHook) -> None:
        """Enter ``hook(task, run)`` around every run this process executes (before ``start``)."""
        self.run_hooks.append(hook)

    def due_lag(self) -> float:
        """Seconds the oldest due work in the store has waited to be claimed (0 when none is
        late, or when this process does not claim); sampled every lease/3."""
        engine = self._router.engine
        return engine.due_lag if engine is not None else 0.0

    def active_runs(self) -> list[str]:
        """Ids of the runs this process executes now."""
        return [run.id for engine in self._router.engines for run in engine.active_runs()]

    # -- hosting --------------------------------------------------------------------------------

    @staticmethod
    def configure(builder: Any, modules: Sequence[str] = (), **scheduler_args: Any) -> Any:
        """Find ``@backgroundjob`` classes in ``modules`` and register the scheduler, its options and
        the bus in ``builder.services`` (the scheduler as a hosted service). Returns the builder.

        The store comes from ``scheduler_args`` (``store=``, ``redis_url=``, ``config=``...), else
        from ``builder.settings.background_job_store``, else the SQLite default.
        """
        store_settings = getattr(getattr(builder, "settings", None), "background_job_store", None)
        config = scheduler_args.get("config")
        chosen = {"store", "redis_url"} & set(scheduler_args) or (config is not None and config.job_stores)
        if store_settings and not chosen:
            scheduler_args["store"] = store_config_from_settings(store_settings)
        builder.services.add_background_task_scheduler(modules, **scheduler_args)
        return builder


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


__all__ = ["UTC", "BackgroundTaskScheduler", "SchedulerState"]
