"""``BackgroundTaskScheduler``: the facade users call, on top of one store and one engine."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from reactivex import Observable

from backbeat.abc import Executor, HostedService, RunHook, Store
from backbeat.api.config import (
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
from backbeat.api.management import TaskManagement
from backbeat.api.options import BackgroundTaskSchedulerOptions
from backbeat.api.recovery import RecoveryCalls
from backbeat.api.scheduling import SchedulingCalls
from backbeat.engine.context import pop_default_provider, push_default_provider
from backbeat.engine.loop import Engine, EngineConfig, default_owner
from backbeat.errors import SchedulerNotRunningError
from backbeat.executors import AsyncIOExecutor, make_executor
from backbeat.model.events import EventHub, EventKind, Listener, SchedulerEvent
from backbeat.model.records import utcnow
from backbeat.model.registry import JobRegistry
from backbeat.policies.handlers import TaskFailureHandler
from backbeat.stores.memory import MemoryStore

log = logging.getLogger("backbeat")


class BackgroundTaskScheduler(SchedulingCalls, TaskManagement, RecoveryCalls, HostedService):
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
        failure_handlers: Sequence[TaskFailureHandler] = (),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        from backbeat.api.bus import BackgroundTasksBus
        from backbeat.api.config import RedisJobStoreConfig

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
        self.failure_handlers: list[TaskFailureHandler] = list(failure_handlers)
        self.run_hooks: list[RunHook] = []
        """Context managers entered around every run (metrics, traces); see :data:`RunHook`."""
        producer = self.config.producer_only if producer_only is None else producer_only
        self.engine_config = EngineConfig(
            owner=owner or default_owner(),
            lease=lease_of(self._store_spec, self.config.lease_seconds),
            batch_size=self.config.batch_size,
            max_concurrency=self.config.max_concurrency,
            poll_interval=self.config.poll_interval,
            claim_ahead=timedelta(seconds=self.config.claim_ahead),
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
            self._add_provided_failure_handler()
        await self._adopt_orphans()
        await self._add_declared_tasks()
        engine_args: dict[str, Any] = dict(
            registry=self.registry,
            executors=self.executors,
            events=self.events,
            provider=self.service_provider,
            clock=self.clock,
            run_hooks=self.run_hooks,
            failure_handlers=self.failure_handlers,
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

    def _add_provided_failure_handler(self) -> None:
        get_all = getattr(self.service_provider, "get_services", None)
        for handler in get_all(TaskFailureHandler) if get_all is not None else ():
            if isinstance(handler, TaskFailureHandler) and handler not in self.failure_handlers:
                self.failure_handlers.append(handler)

    def add_run_hook(self, hook: RunHook) -> None:
        """Enter ``hook(task, run)`` around every run this process executes (before ``start``)."""
        self.run_hooks.append(hook)

    def due_lag(self) -> float:
        """Seconds the oldest due work in the store has waited to be claimed (0 when none is
        late, or when this process does not claim); sampled every lease/3."""
        return self._engine.due_lag if self._engine is not None else 0.0

    def active_runs(self) -> list[str]:
        """Ids of the runs this process executes now."""
        engines = [e for e in (self._engine, self._local_engine) if e is not None]
        return [run.id for engine in engines for run in engine.active_runs()]

    # -- hosting ------------------------------------------------------------------------------------

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


__all__ = ["UTC", "BackgroundTaskScheduler"]
