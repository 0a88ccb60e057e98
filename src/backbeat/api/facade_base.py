"""What the scheduler's facade classes share: its state and the plumbing of every call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from backbeat.abc import Store
from backbeat.api.config import (
    StoreConfig,
    task_options,
)
from backbeat.engine.loop import Engine
from backbeat.model import triggers
from backbeat.model.events import EventHub, EventKind, SchedulerEvent
from backbeat.model.records import Task, TaskFilter, TaskOptions
from backbeat.model.registry import JobRegistry
from backbeat.stores.memory import MemoryStore


class SchedulerState:
    """The state a ``BackgroundTaskScheduler`` holds (set in its ``__init__``), and shared helpers."""

    store: Store
    registry: JobRegistry
    events: EventHub
    clock: Callable[[], datetime]
    timezone: str
    job_defaults: dict[str, Any]
    _store_spec: Store | StoreConfig | str
    _local_store: MemoryStore
    _engine: Engine | None
    _local_engine: Engine | None
    _loop: asyncio.AbstractEventLoop | None

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
        self._notify(store)
        if self.events.wanted:
            for task in tasks:
                added = SchedulerEvent(kind=EventKind.TASK_ADDED, task_id=task.id, task_name=task.name)
                self.events.emit(added)

    async def _ensure_open(self, store: Store) -> None:
        if self._engine is None:
            await store.open()  # producers may add before (or without) starting the engine

    async def _find(self, task_id: str) -> tuple[Store, Task | None]:
        task = await self._local_store.get(task_id)
        if task is not None:
            return self._local_store, task
        await self._ensure_open(self.store)
        return self.store, await self.store.get(task_id)

    def _notify(self, store: Store) -> None:
        engine = self._local_engine if store is self._local_store else self._engine
        if engine is not None:
            engine.notify()


async def _all_tasks(store: Store, task_filter: TaskFilter) -> list[Task]:
    tasks: list[Task] = []
    cursor: str | None = None
    while True:
        page, cursor = await store.list(task_filter, cursor=cursor, limit=1000)
        tasks += page
        if cursor is None:
            return tasks
