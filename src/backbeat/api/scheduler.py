"""``BackgroundTaskScheduler``: the facade users call, on top of one store and one engine."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from backbeat.abc import Executor, HostedService, RunHook, Store
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
from backbeat.api.history import history_settings
from backbeat.api.lifecycle import SchedulerState
from backbeat.api.options import BackgroundTaskSchedulerOptions
from backbeat.api.routing import StoreRouter
from backbeat.api.run_control import RunControl
from backbeat.api.task_control import TaskControl
from backbeat.api.task_writer import TaskWriter
from backbeat.engine.context import pop_default_provider, push_default_provider
from backbeat.engine.loop import Engine, EngineConfig, default_owner
from backbeat.errors import (
    ConfigurationError,
    InvalidTriggerError,
    SchedulerNotRunningError,
)
from backbeat.executors import AsyncIOExecutor, make_executor
from backbeat.model.events import EventHub, EventKind, SchedulerEvent
from backbeat.model.jobs import BackgroundJob, TaskDescriptor
from backbeat.model.records import utcnow
from backbeat.model.registry import JobRegistry
from backbeat.model.stored_text import stored_text
from backbeat.policies.handlers import TaskFailureHandler

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


class BackgroundTaskScheduler(TaskControl, RunControl, HostedService):
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
            owner=default_owner() if owner is None or owner == "" else stored_text(owner, "owner"),
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
        """Stop; with ``wait`` let running jobs finish (up to ``shutdown_timeout``). Await it to know when.

        Without ``wait`` too, a claim in flight is waited for up to a second
        (:data:`~backbeat.engine.loop.CLAIM_GRACE`), to give back what it took at once.
        """
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
        A store gone at shutdown holds the stop for a lease at most (``lease_seconds``): the runs
        whose completion it did not take are taken over as lost ones once their leases end.

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
        # schedule_at's body, not a call of it: a coroutine frame less per add
        return await self._add_with_options(
            func, "date", task_name, args, kwargs, tags, options, run_date=when
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
            InvalidTriggerError: neither ``cron`` nor ``interval`` is given, or both are.
        """
        if cron is None and interval is None:
            extra = f" (unexpected arguments: {', '.join(sorted(options))})" if options else ""
            raise InvalidTriggerError(
                f"schedule_recurring_task({task_name!r}) needs cron= or interval={extra}"
            )
        if cron is not None and interval is not None:
            raise InvalidTriggerError(
                f"schedule_recurring_task({task_name!r}) takes cron= or interval=, not both"
            )
        trigger_args: dict[str, Any] = {"cron": cron} if cron is not None else {"interval": interval}
        return await self._add_with_options(
            func, None, task_name, args, kwargs, tags, options, **trigger_args
        )

    def _add_with_options(
        self,
        func: Callable[..., Any],
        trigger: Any,
        name: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        tags: Sequence[str],
        options: dict[str, Any],
        **trigger_args: Any,
    ) -> Awaitable[str]:
        """The add of one task, ``options`` holding ``add_task``'s ``id``, ``durable`` and
        ``replace_existing`` besides the task's options. (A plain function returning the add's
        awaitable: two coroutine frames less per add.)"""
        return self._writer.add_one(
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
