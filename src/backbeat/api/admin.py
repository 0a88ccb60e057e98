"""What the command line and the dashboard do with a store: look at and steer its tasks, runs
and dead letters, through a :class:`BackgroundTaskScheduler` (the user's, or a producer-only one
made for a store URL that never claims anything)."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from backbeat.abc import Store
from backbeat.api.backfill import MAX_FIRE_TIMES, BackfillProgress, ProgressCallback
from backbeat.api.config import RedisJobStoreConfig, StoreConfig
from backbeat.api.history import OutcomeFilter
from backbeat.api.scheduler import BackgroundTaskScheduler
from backbeat.api.tasklist import TaskInfo
from backbeat.errors import BackbeatError, ConfigurationError, TaskNotFoundError
from backbeat.model.history import HistoryPage
from backbeat.model.records import DeadLetter, Run, utcnow


class TaskState(enum.StrEnum):
    """The state filter of ``tasks list``."""

    ACTIVE = "active"
    PAUSED = "paused"
    ORPHANED = "orphaned"


def state_of(info: TaskInfo) -> TaskState:
    """``orphaned`` (its job is not registered), ``paused`` or ``active``."""
    if info.orphaned:
        return TaskState.ORPHANED
    return TaskState.PAUSED if info.paused else TaskState.ACTIVE


class DeadLetterNotFoundError(BackbeatError, LookupError):
    """No dead letter has the given id."""

    def __init__(self, dead_letter_id: str) -> None:
        super().__init__(f"no dead letter with id {dead_letter_id!r}")
        self.dead_letter_id = dead_letter_id


class RetryRefusedError(BackbeatError):
    """A dead letter exists but cannot run again now (its task already has ``max_instances`` runs,
    or a run of that id exists)."""


RunState = Literal["running", "waiting", "buffered", "expired"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunView:
    """A run now in the store, with the name of its task and who holds it."""

    id: str
    task_id: str
    task_name: str | None
    fire_time: datetime
    attempt: int
    owner: str | None
    """``host:pid:suffix`` of the process that runs it; ``None`` for a waiting run."""
    lease_until: datetime
    state: RunState
    fencing_token: int
    """The token of its current (or, for a waiting run, last) holder."""

    @classmethod
    def of(cls, run: Run, now: datetime, names: dict[str, str]) -> RunView:
        state: RunState = (
            "buffered"
            if run.buffered
            else "waiting"
            if run.owner is None
            else "running"
            if run.lease_until > now
            else "expired"
        )
        name = run.task.name if run.task is not None else names.get(run.task_id)
        return cls(
            id=run.id,
            task_id=run.task_id,
            task_name=name,
            fire_time=run.fire_time,
            attempt=run.attempt,
            owner=run.owner,
            lease_until=run.lease_until,
            state=state,
            fencing_token=run.fencing_token,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Stats:
    """Counts over one store (``backbeat stats``)."""

    tasks: int
    paused: int
    orphaned: int
    quarantined: int
    running: int
    """Runs leased to a live owner."""
    waiting: int
    """Runs waiting to be claimed (retries, trigger-now, released or expired runs)."""
    dead_letters: int
    next_wakeup: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """The counts by name."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class Admin:
    """Inspect and steer one store through a scheduler.

    ``Admin.for_store(url)`` makes a producer-only scheduler that is never started: it only
    opens the store, and :meth:`close` closes it. ``Admin(scheduler)`` uses a scheduler of the
    application's (started or not) and leaves its lifecycle alone.
    """

    def __init__(self, scheduler: BackgroundTaskScheduler, *, owned: bool = False) -> None:
        self.scheduler = scheduler
        self._owned = owned
        self._opened = False
        self._lock = asyncio.Lock()

    @classmethod
    def for_store(cls, spec: str | StoreConfig | Store, *, prefix: str | None = None) -> Admin:
        """An admin of the store ``spec`` names (``prefix``: the Redis key prefix).

        Raises:
            ConfigurationError: unknown URL scheme, a missing driver, or ``prefix`` for a non-Redis store.
        """
        return cls(BackgroundTaskScheduler(store=store_spec(spec, prefix), producer_only=True), owned=True)

    @property
    def store(self) -> Store:
        """The scheduler's durable store."""
        return self.scheduler.store

    async def open(self) -> None:
        """Connect to the store unless the scheduler runs (and so holds it open).

        Raises:
            StoreUnavailableError: the store cannot be reached.
        """
        if self._opened or self.scheduler.running:
            return
        async with self._lock:
            if not self._opened:
                await self.store.open()
                self._opened = True

    async def close(self) -> None:
        """Close the store if this admin made the scheduler."""
        if self._owned and self._opened and not self.scheduler.running:
            self._opened = False
            await self.store.close()

    async def __aenter__(self) -> Admin:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- tasks -------------------------------------------------------------------------------

    async def tasks(
        self, *, tag: str | None = None, name: str | None = None, state: TaskState | None = None
    ) -> list[TaskInfo]:
        """Tasks (durable and this process's local ones) ordered by id, filtered."""
        await self.open()
        infos = await self.scheduler.list_tasks(tag=tag, name=name)
        return [info for info in infos if state is None or state_of(info) is state]

    async def task(self, task_id: str) -> TaskInfo:
        """One task.

        Raises:
            TaskNotFoundError: no task has this id.
        """
        await self.open()
        info = await self.scheduler.get_task_info(task_id)
        if info is None:
            raise TaskNotFoundError(task_id)
        return info

    async def pause(self, task_id: str) -> TaskInfo:
        """Stop a task from firing. Raises ``TaskNotFoundError``."""
        await self.open()
        return await self.scheduler.pause_task(task_id)

    async def resume(self, task_id: str) -> TaskInfo:
        """Let a paused task fire again. Raises ``TaskNotFoundError``."""
        await self.open()
        return await self.scheduler.resume_task(task_id)

    async def trigger(self, task_id: str) -> str | None:
        """Run a task once now; the run id, or ``None`` at ``max_instances``. Raises ``TaskNotFoundError``."""
        await self.open()
        return await self.scheduler.trigger_job_now(task_id)

    async def remove(self, task_id: str) -> None:
        """Remove a task (a run in flight finishes).

        Raises:
            TaskNotFoundError: no task has this id.
        """
        await self.open()
        if not await self.scheduler.stop_task(task_id):
            raise TaskNotFoundError(task_id)

    async def remove_by_tag(self, tag: str) -> list[str]:
        """Remove every task carrying ``tag``; returns their ids."""
        await self.open()
        return await self.scheduler.cancel_tasks_by_tag(tag)

    # -- runs and dead letters ---------------------------------------------------------------

    async def runs(self, task_id: str | None = None) -> list[RunView]:
        """Runs now in the store (running, waiting or with an expired lease), by fire time."""
        await self.open()
        runs = await self.store.list_runs(task_id)
        names = {info.id: info.name for info in await self.scheduler.list_tasks()} if runs else {}
        now = utcnow()
        return sorted((RunView.of(run, now, names) for run in runs), key=lambda r: (r.fire_time, r.id))

    async def next_fire_times(self, task_id: str, count: int = 10) -> tuple[TaskInfo, list[datetime]]:
        """A task and its next ``count`` fire times (see :meth:`BackgroundTaskScheduler.next_fire_times`).

        Raises:
            TaskNotFoundError: no task has this id.
            ValueError: ``count`` is not from 1 to 1000.
        """
        info = await self.task(task_id)
        return info, await self.scheduler.next_fire_times(task_id, count)

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
        """Run a task's past fire times (see :meth:`BackgroundTaskScheduler.backfill`).

        Raises:
            TaskNotFoundError: no task has this id.
            ValueError: an unknown overlap or a range that backfill refuses.
        """
        await self.open()
        return await self.scheduler.backfill(
            task_id, start, end, overlap=overlap, max_fire_times=max_fire_times, on_progress=on_progress
        )

    async def backfill_fire_times(
        self,
        task_id: str,
        start: datetime | timedelta,
        end: datetime | timedelta,
        *,
        max_fire_times: int = MAX_FIRE_TIMES,
    ) -> tuple[TaskInfo, list[datetime]]:
        """A task and the fire times a backfill of the range would run (nothing runs).

        Raises:
            TaskNotFoundError: no task has this id.
            ValueError: a range that backfill refuses.
        """
        info = await self.task(task_id)
        return info, await self.scheduler.backfill_fire_times(
            task_id, start, end, max_fire_times=max_fire_times
        )

    async def run_history(
        self,
        task_id: str | None = None,
        outcome: OutcomeFilter = None,
        since: datetime | timedelta | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> HistoryPage:
        """Finished runs, newest first (see :meth:`BackgroundTaskScheduler.run_history`).

        Raises:
            ValueError: a bad filter, limit or cursor.
        """
        await self.open()
        return await self.scheduler.run_history(task_id, outcome, since, limit, cursor)

    async def dead_letters(self, task_id: str | None = None) -> list[DeadLetter]:
        """Dead letters, oldest first."""
        await self.open()
        return await self.scheduler.list_dead_letters(task_id)

    async def dead_letter(self, dead_letter_id: str) -> DeadLetter:
        """One dead letter.

        Raises:
            DeadLetterNotFoundError: no dead letter has this id.
        """
        await self.open()
        letter = await self.scheduler.get_dead_letter(dead_letter_id)
        if letter is None:
            # get_dead_letter narrows by the task id in the run id; a task id with "@" needs the full scan
            letter = next((d for d in await self.dead_letters() if d.id == dead_letter_id), None)
        if letter is None:
            raise DeadLetterNotFoundError(dead_letter_id)
        return letter

    async def retry_dead_letter(self, dead_letter_id: str) -> str:
        """Run a dead letter's fire time again; returns the new run's id.

        Raises:
            DeadLetterNotFoundError: no dead letter has this id.
            RetryRefusedError: its task already has ``max_instances`` runs (or that run exists).
        """
        await self.dead_letter(dead_letter_id)
        run_id = await self.scheduler.retry_dead_letter(dead_letter_id)
        if run_id is None:
            raise RetryRefusedError(
                f"dead letter {dead_letter_id!r} cannot run now: its task already has "
                "max_instances runs, or a run of that id exists"
            )
        return run_id

    async def remove_dead_letter(self, dead_letter_id: str) -> None:
        """Forget a dead letter.

        Raises:
            DeadLetterNotFoundError: no dead letter has this id.
        """
        await self.open()
        if not await self.scheduler.remove_dead_letters([dead_letter_id]):
            raise DeadLetterNotFoundError(dead_letter_id)

    async def stats(self) -> Stats:
        """Counts of tasks, runs and dead letters, and the store's next wake-up."""
        await self.open()
        infos = await self.scheduler.list_tasks()
        runs = await self.runs()
        return Stats(
            tasks=len(infos),
            paused=sum(1 for info in infos if info.paused),
            orphaned=sum(1 for info in infos if info.orphaned),
            quarantined=len(await self.store.quarantined()),
            running=sum(1 for run in runs if run.state == "running"),
            waiting=sum(1 for run in runs if run.state != "running"),
            dead_letters=len(await self.dead_letters()),
            next_wakeup=await self.store.next_wakeup(),
        )


def store_spec(spec: str | StoreConfig | Store, prefix: str | None) -> str | StoreConfig | Store:
    """``spec``, with the Redis key ``prefix`` applied (store URLs cannot carry one).

    Raises:
        ConfigurationError: ``prefix`` given for a store that is not Redis.
    """
    if prefix is None:
        return spec
    if isinstance(spec, str) and spec.partition("://")[0].lower() in ("redis", "rediss"):
        return RedisJobStoreConfig(host=spec, lock_prefix=prefix)
    if isinstance(spec, RedisJobStoreConfig):
        return RedisJobStoreConfig(**{**spec.__dict__, "lock_prefix": prefix})
    raise ConfigurationError("--prefix applies to Redis stores only (redis://, rediss://)")


__all__ = [
    "Admin",
    "DeadLetterNotFoundError",
    "RetryRefusedError",
    "RunView",
    "Stats",
    "TaskState",
    "state_of",
    "store_spec",
]
