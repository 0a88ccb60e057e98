"""Where a task lives: the durable store, or this process's memory for the tasks that cannot be
stored (lambdas, closures, bound methods of live objects), each run by its own engine."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import datetime

from backbeat.abc import Store
from backbeat.api.coalescing import AddCoalescer
from backbeat.engine.loop import Engine
from backbeat.errors import StoreClosedError
from backbeat.model.events import EventHub, EventKind, SchedulerEvent
from backbeat.model.records import Task, TaskFilter
from backbeat.stores.memory import MemoryStore

CLOSE_TIMEOUT = 5.0
"""Seconds :meth:`StoreRouter.close` lets the coalesced adds be stored before it closes the store."""


class StoreRouter:
    """The durable store and the local (in-memory) store of one scheduler, and their engines.

    Every call that touches a task goes through it, so "is this task local?" is answered in one
    place: a task id is looked up locally first (the local store is in memory), then durably.
    """

    def __init__(self, durable: Store, events: EventHub) -> None:
        self.durable = durable
        self.local = MemoryStore()
        self._events = events
        self._open = False
        self._locks: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._coalescer = AddCoalescer(self._send, self._stored)
        self.engine: Engine | None = None
        """The durable store's engine while the scheduler runs."""
        self.local_engine: Engine | None = None

    def of(self, *, local: bool) -> Store:
        """The store that keeps local or durable tasks."""
        return self.local if local else self.durable

    def is_local(self, store: Store) -> bool:
        return store is self.local

    @property
    def engines(self) -> list[Engine]:
        """The engines that run now (none before start and after shutdown)."""
        return [engine for engine in (self.engine, self.local_engine) if engine is not None]

    async def ready(self) -> Store:
        """The durable store, opened on first use (once, however many callers ask at once) and
        kept open until :meth:`close`: producers may add and inspect before starting the
        scheduler, or without ever starting it, at the cost of one open."""
        if not self._open:
            async with self._lock():
                if not self._open:
                    await self.durable.open()
                    self._open = True
        return self.durable

    async def close(self) -> None:
        """Close the durable store if it is open (after an open in progress, if any): the
        coalesced adds waiting or in flight are stored first, for :data:`CLOSE_TIMEOUT` seconds
        at most; those left then fail with ``StoreClosedError``, as do adds made meanwhile."""
        async with self._lock():
            if self._open:
                refusal = StoreClosedError(f"{self.durable!r} was closed with this add waiting")
                try:
                    await self._coalescer.closing(CLOSE_TIMEOUT, refusal)
                    self._open = False
                    await self.durable.close()
                finally:
                    self._open = False
                    self._coalescer.closed()

    def _lock(self) -> asyncio.Lock:
        # one lock per event loop: an asyncio.Lock belongs to the loop that first waits on it
        loop = asyncio.get_running_loop()
        if self._locks is None or self._locks[0] is not loop:
            self._locks = (loop, asyncio.Lock())
        return self._locks[1]

    def add(self, tasks: list[Task], *, local: bool, replace: bool) -> Awaitable[object]:
        """Store ``tasks`` in one call, wake the engine that runs them, emit ``TASK_ADDED``.

        A single durable task goes to the store at once when no add of its kind is in flight,
        else with the others that arrive meanwhile, in one store call
        (:class:`~backbeat.api.coalescing.AddCoalescer`). (A plain function returning the
        awaitable of the call that does it: one coroutine frame less per add.)
        """
        if local:
            return self._add_local(tasks, replace)
        if len(tasks) == 1:
            return self._coalescer.add(tasks[0], replace=replace)
        return self._add_durable(tasks, replace)

    def add_one(self, task: Task, *, replace: bool) -> Awaitable[str]:
        """``add`` of one durable task; the awaitable returns its id."""
        return self._coalescer.add(task, replace=replace)

    async def _add_durable(self, tasks: list[Task], replace: bool) -> None:
        await self._send(tasks, replace)
        self._stored(tasks)

    def _send(self, tasks: list[Task], replace: bool) -> Awaitable[None]:
        """The durable store's add of ``tasks``, opening the store first if needed. (A plain
        function returning the store's own call while it is open: a coroutine frame less.)"""
        if self._open:
            return self.durable.add(tasks, replace=replace)
        return self._add_opening(tasks, replace)

    async def _add_opening(self, tasks: list[Task], replace: bool) -> None:
        self._coalescer.check_open()  # (a retry of a batch while the store closes: not reopened)
        store = await self.ready()
        await store.add(tasks, replace=replace)

    def _stored(self, tasks: list[Task]) -> None:
        self._added(self.durable, tasks)

    async def _add_local(self, tasks: list[Task], replace: bool) -> None:
        await self.local.add(tasks, replace=replace)
        self._added(self.local, tasks)

    def _added(self, store: Store, tasks: list[Task]) -> None:
        """After ``tasks`` were stored in ``store``: wake its engine, emit ``TASK_ADDED``."""
        if len(tasks) == 1:
            self.notify(store, due=tasks[0].next_run_time)
        else:
            times = [task.next_run_time for task in tasks if task.next_run_time is not None]
            self.notify(store, due=min(times) if len(times) == len(tasks) else None)
        if self._events.wanted:
            for task in tasks:
                self._events.emit(
                    SchedulerEvent(kind=EventKind.TASK_ADDED, task_id=task.id, task_name=task.name)
                )

    async def find(self, task_id: str) -> tuple[Store, Task | None]:
        """The store holding ``task_id`` and the task (``None`` and the durable store if none does)."""
        task = await self.local.get(task_id)
        if task is not None:
            return self.local, task
        durable = await self.ready()
        return durable, await durable.get(task_id)

    def notify(self, store: Store, *, due: datetime | None = None) -> None:
        """Wake the engine of ``store``: it has new or changed work (due no sooner than ``due``)."""
        engine = self.local_engine if store is self.local else self.engine
        if engine is not None:
            engine.notify(due)


async def all_tasks(store: Store, task_filter: TaskFilter) -> list[Task]:
    """Every task of ``store`` matching ``task_filter``, read page by page."""
    tasks: list[Task] = []
    cursor: str | None = None
    while True:
        page, cursor = await store.list(task_filter, cursor=cursor, limit=1000)
        tasks += page
        if cursor is None:
            return tasks
