"""Backfill: run a recurring task's fire times of a past range, through the store, so workers
anywhere run them (the calling process needs no engine: a producer can backfill).

Each fire time becomes a waiting run (``Store.enqueue_run``, id ``task@fire_time``) when its
turn comes; the runner watches the task's runs in the store to tell when one has ended.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal, get_args

from backbeat.abc import Store
from backbeat.model import triggers
from backbeat.model.history import HistoryOutcome, HistoryQuery
from backbeat.model.records import Task, run_id_for

BackfillOverlap = Literal["buffer_all", "allow_all", "skip"]
"""How backfilled runs meet other runs of the task: ``buffer_all`` one after the other, each
waiting for every other run of the task to end; ``allow_all`` up to ``max_instances`` at once;
``skip`` one after the other, a fire time whose turn comes while another run of the task exists
(its schedule's, a trigger-now) skipped and reported."""

OVERLAPS: tuple[str, ...] = get_args(BackfillOverlap)

MAX_FIRE_TIMES = 1000
"""Fire times a backfill runs unless told more (``max_fire_times``)."""

POLL_INTERVAL = 0.2
"""Seconds between two looks at the task's runs in the store while waiting for one to end."""

OUTCOME_WAIT = 2.0
"""Seconds a finished backfill waits for the history entries of its runs (a worker writes them
within a fraction of a second of a run's end) before it reports the ones missing as unknown."""

HISTORY_SLACK = timedelta(seconds=5)
"""How far before the backfill began its runs' history entries are looked for (the workers'
clocks may run behind this process's)."""

ProgressCallback = Callable[["BackfillProgress"], object]


@dataclass(slots=True, kw_only=True)
class BackfillProgress:
    """Where a backfill stands: handed to ``on_progress`` after every change, and returned
    (complete) at the end. Every list holds fire times (UTC), in the order they happened."""

    task_id: str
    fire_times: list[datetime]
    """Every fire time of the range, ascending."""
    started: list[datetime] = field(default_factory=list)
    """Fire times whose run was added to the store (or was there already, and was waited for)."""
    finished: list[datetime] = field(default_factory=list)
    """Fire times whose run has ended (it left the store: succeeded, failed for good, dead-lettered)."""
    skipped: list[datetime] = field(default_factory=list)
    """Fire times not run (``overlap="skip"``: another run of the task existed at their turn)."""
    outcomes: dict[datetime, str] = field(default_factory=dict)
    """How each finished fire time's run ended, from the run history (``"success"``,
    ``"failure"``, ``"dead_lettered"``, ``"cancelled"``, ...); absent when the history has no
    entry for it (history turned off, or a fire time that had run before with the same attempt)."""

    @property
    def failed(self) -> list[datetime]:
        """Finished fire times whose run did not succeed, by the run history."""
        return [t for t in self.finished if self.outcomes.get(t, "success") != "success"]

    @property
    def total(self) -> int:
        return len(self.fire_times)

    @property
    def done(self) -> int:
        """Fire times dealt with: finished or skipped."""
        return len(self.finished) + len(self.skipped)

    @property
    def complete(self) -> bool:
        return self.done == self.total

    def to_dict(self) -> dict[str, object]:
        return {
            "task_id": self.task_id,
            "total": self.total,
            "fire_times": self.fire_times,
            "started": self.started,
            "finished": self.finished,
            "skipped": self.skipped,
            "outcomes": {t.isoformat(): outcome for t, outcome in self.outcomes.items()},
            "failed": self.failed,
        }


def check_backfill_overlap(overlap: str) -> BackfillOverlap:
    """Raises ``ValueError`` naming the allowed values when ``overlap`` is not one."""
    if overlap not in OVERLAPS:
        allowed = ", ".join(repr(o) for o in OVERLAPS)
        raise ValueError(f"overlap must be one of {allowed}, not {overlap!r}")
    return overlap  # type: ignore[return-value]


def range_fire_times(
    task: Task,
    start: datetime | timedelta,
    end: datetime | timedelta,
    *,
    now: datetime,
    max_fire_times: int = MAX_FIRE_TIMES,
) -> list[datetime]:
    """The fire times of ``task`` from ``start`` to ``end`` (aware datetimes, or how long before
    ``now``), both included.

    Raises:
        ValueError: a one-shot task, a naive time, ``end`` before ``start`` or after ``now``, a
            ``max_fire_times`` below 1, or more than ``max_fire_times`` fire times in the range.
    """
    if isinstance(max_fire_times, bool) or not isinstance(max_fire_times, int) or max_fire_times < 1:
        raise ValueError(f"max_fire_times must be an integer >= 1, not {max_fire_times!r}")
    if triggers.is_one_shot(task.trigger):
        raise ValueError(
            f"task {task.id!r} ({task.name}) fires once: backfill runs the past fire times"
            " of a recurring task"
        )
    first, last = _moment(start, "start", now), _moment(end, "end", now)
    if last < first:
        raise ValueError(f"end {last.isoformat()} is before start {first.isoformat()}")
    if last > now:
        raise ValueError(
            f"end {last.isoformat()} is in the future (now {now.isoformat()}): backfill runs past fire"
            " times; the schedule runs the coming ones"
        )
    times = triggers.fire_times_between(task.trigger, first, last, limit=max_fire_times)
    if len(times) > max_fire_times:
        raise ValueError(
            f"task {task.id!r} has more than {max_fire_times} fire times from {first.isoformat()} to"
            f" {last.isoformat()}; give a shorter range or a larger max_fire_times (--max)"
        )
    return times


def _moment(value: datetime | timedelta, name: str, now: datetime) -> datetime:
    if isinstance(value, timedelta):
        return now - value
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime or a timedelta (that long ago), not {value!r}")
    return value


class BackfillRunner:
    """Adds the runs of ``progress.fire_times`` to ``store`` as their turns come and waits for
    them to end (see :data:`BackfillOverlap`)."""

    def __init__(
        self,
        store: Store,
        task: Task,
        progress: BackfillProgress,
        *,
        overlap: BackfillOverlap,
        clock: Callable[[], datetime],
        on_progress: ProgressCallback | None = None,
        notify: Callable[[], None] = lambda: None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.task = task
        self.progress = progress
        self.overlap = overlap
        self.clock = clock
        self.on_progress = on_progress
        self.notify = notify
        self.sleep = sleep
        """How the runner waits between two looks at the store (a test passes its own)."""
        self._waiting: dict[str, datetime] = {}
        """Run id -> fire time of the runs added here that have not been seen to end."""
        self._ours = {run_id_for(task.id, fire_time) for fire_time in progress.fire_times}
        self._seen: set[str] = set()
        """Runs of the range's fire times seen in the store, added here or not: each runs once."""

    async def run(self) -> BackfillProgress:
        began = self.clock()
        await self._report()
        for fire_time in self.progress.fire_times:
            await self._take_turn(fire_time)
        while self._waiting:
            await self.sleep(POLL_INTERVAL)
            await self._runs()
        await self._read_outcomes(since=began - HISTORY_SLACK)
        return self.progress

    async def _read_outcomes(self, *, since: datetime) -> None:
        """Fill ``progress.outcomes`` from the run history of the finished fire times' runs."""
        wanted = {run_id_for(self.task.id, t): t for t in self.progress.finished}
        waited = 0.0
        while True:
            query: HistoryQuery | None = HistoryQuery(task_id=self.task.id, since=since, limit=1000)
            while query is not None:
                entries, cursor = await self.store.run_history(query)
                for entry in reversed(entries):  # oldest first: a run's last entry wins
                    fire_time = wanted.get(entry.run_id)
                    if fire_time is not None and entry.outcome != HistoryOutcome.RETRY_SCHEDULED:
                        self.progress.outcomes[fire_time] = entry.outcome.value
                query = None if cursor is None else replace(query, cursor=cursor)
            if len(self.progress.outcomes) >= len(wanted) or waited >= OUTCOME_WAIT:
                break
            await self.sleep(POLL_INTERVAL)
            waited += POLL_INTERVAL
        if self.progress.outcomes:
            await self._report()

    async def _take_turn(self, fire_time: datetime) -> None:
        run_id = run_id_for(self.task.id, fire_time)
        while True:
            others = await self._runs()
            if run_id in others or run_id in self._seen:
                await self._adopt(fire_time, run_id, ended=run_id not in others)
                return
            if self.overlap == "allow_all":
                ready = len(others) + len(self._waiting) < self.task.options.max_instances
            elif self._waiting:
                ready = False  # the previous backfilled run has not ended: not this one's turn yet
            elif others and self.overlap == "skip":
                await self._skip(fire_time)
                return
            else:
                ready = not others
            if ready:
                run = await self.store.enqueue_run(self.task.id, fire_time=fire_time, now=self.clock())
                runs = await self.store.list_runs(self.task.id)
                if run is not None or run_id in {r.id for r in runs if not r.detached}:
                    # None with the run in the store: that fire time's run exists already (or one a
                    # removed task left, which the store made this task's); it runs once
                    self._waiting[run_id] = fire_time
                    self.progress.started.append(fire_time)
                    self.notify()
                    await self._report()
                    return
                if self.overlap == "skip":  # another run appeared meanwhile
                    await self._skip(fire_time)
                    return
            await self.sleep(POLL_INTERVAL)

    async def _runs(self) -> set[str]:
        """The ids of the task's runs in the store not added here; notes the ended ones of ours.
        Runs a removed task of the same id left (detached) are not this task's."""
        present = {run.id for run in await self.store.list_runs(self.task.id) if not run.detached}
        self._seen |= present & self._ours
        ended = [run_id for run_id in self._waiting if run_id not in present]
        for run_id in ended:
            self.progress.finished.append(self._waiting.pop(run_id))
        if ended:
            await self._report()
        return present - set(self._waiting)

    async def _adopt(self, fire_time: datetime, run_id: str, *, ended: bool) -> None:
        """Its run was in the store already (its schedule's, a backfill's): not added again."""
        self.progress.started.append(fire_time)
        if ended:
            self.progress.finished.append(fire_time)
        else:
            self._waiting[run_id] = fire_time
        await self._report()

    async def _skip(self, fire_time: datetime) -> None:
        self.progress.skipped.append(fire_time)
        await self._report()

    async def _report(self) -> None:
        if self.on_progress is not None:
            result = self.on_progress(self.progress)
            if inspect.isawaitable(result):
                await result


__all__ = ["MAX_FIRE_TIMES", "OVERLAPS", "BackfillOverlap", "BackfillProgress", "BackfillRunner"]
