"""What a scheduler does with the tasks already stored: list, look up, preview, backfill, pause,
resume, reschedule, trigger and remove them (:class:`TaskControl`, a part of the facade)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from backbeat.abc import Store
from backbeat.api.backfill import (
    MAX_FIRE_TIMES,
    BackfillProgress,
    BackfillRunner,
    ProgressCallback,
    check_backfill_overlap,
    range_fire_times,
)
from backbeat.api.config import StoreConfig, build_store
from backbeat.api.lifecycle import SchedulerState
from backbeat.api.routing import StoreRouter, all_tasks
from backbeat.api.tasklist import TaskInfo, TaskList, TaskPage, run_blocking
from backbeat.errors import SchedulerNotRunningError, TaskNotFoundError
from backbeat.model import triggers
from backbeat.model.events import EventHub, EventKind, SchedulerEvent
from backbeat.model.records import QuarantinedRecord, TaskFilter
from backbeat.stores.memory import MemoryStore


class TaskControl:
    """The stored tasks' side of :class:`~backbeat.api.scheduler.BackgroundTaskScheduler`."""

    _router: StoreRouter
    _store_spec: Store | StoreConfig | str
    _loop: asyncio.AbstractEventLoop | None
    clock: Callable[[], datetime]
    events: EventHub
    timezone: str
    state: SchedulerState

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
