"""Managing stored tasks: list, inspect, pause, resume, reschedule, trigger, remove."""

from __future__ import annotations

import logging
from typing import Any

from backbeat.abc import Store
from backbeat.api.config import (
    build_store,
)
from backbeat.api.facade_base import SchedulerState, _all_tasks
from backbeat.api.taskbuild import from_callable
from backbeat.api.tasklist import TaskInfo, TaskList, run_blocking
from backbeat.errors import SchedulerNotRunningError, TaskExistsError, TaskNotFoundError
from backbeat.model import triggers
from backbeat.model.declared import DECLARED, DeclaredTask
from backbeat.model.events import EventKind, SchedulerEvent
from backbeat.model.records import QuarantinedRecord, TaskFilter
from backbeat.stores.memory import MemoryStore

log = logging.getLogger("backbeat")


class TaskManagement(SchedulerState):
    """``list_tasks``, ``get_task_info``, ``stop_task``, ``pause_task``... (mixed into the scheduler)."""

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


def _schedule_key(spec: triggers.TriggerSpec) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k != "start_date"}
