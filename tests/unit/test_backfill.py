"""The backfill runner on the memory store, by a fake clock and a fake worker that takes the
waiting runs at one look and completes them at the next: each overlap mode's order and bound,
and the range checks. No test waits for real time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.fakes import FakeClock

from backbeat.api.backfill import (
    BackfillProgress,
    BackfillRunner,
    check_backfill_overlap,
    range_fire_times,
)
from backbeat.api.taskbuild import from_callable
from backbeat.model.history import HistoryEntry, HistoryOutcome
from backbeat.model.records import RunOutcome, RunResult, Task, TaskOptions
from backbeat.model.registry import JobRegistry
from backbeat.model.triggers import make_trigger_spec
from backbeat.stores.memory import MemoryStore

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


async def job() -> None: ...


class World:
    """A store, a task every hour (its grid on the hour) and a worker that runs at each look."""

    def __init__(self) -> None:
        self.clock = FakeClock(T0)
        self.store = MemoryStore(lease_clock=self.clock)
        self.running: list[str] = []
        self.ran: list[str] = []
        self.most_at_once = 0
        self.looks = 0
        self.failing: set[str] = set()
        """Run ids whose job fails."""
        self.history = False
        """Record a history entry for each run, as a worker does."""

    async def task(self, **options: Any) -> Task:
        trigger = make_trigger_spec("interval", hours=1, start_date=T0 - 10 * HOUR, now=T0)
        task = from_callable(JobRegistry(), job, trigger=trigger, options=TaskOptions(**options), now=T0).task
        task.next_run_time = T0 + HOUR
        await self.store.add([task])
        return task

    async def look(self, _: float) -> None:
        """The runner waits: the runs taken at the last look end, the waiting ones are taken."""
        self.looks += 1
        held = {run.id: run for run in await self.store.list_runs() if run.owner == "worker"}
        results = [
            RunResult(
                run=held[i],
                outcome=RunOutcome.FAILURE if i in self.failing else RunOutcome.SUCCESS,
                finished_at=self.clock(),
            )
            for i in self.running
        ]
        await self.store.complete("worker", results)
        if self.history:
            await self.store.record_history([self.entry(result) for result in results])
        self.running = []
        claim = await self.store.claim_due("worker", now=self.clock(), lease=HOUR, limit=100)
        self.running = [run.id for run in claim.runs]
        self.ran += self.running
        self.most_at_once = max(self.most_at_once, len(self.running))

    def entry(self, result: RunResult) -> HistoryEntry:
        run = result.run
        outcome = HistoryOutcome.FAILURE if result.outcome == RunOutcome.FAILURE else HistoryOutcome.SUCCESS
        return HistoryEntry(
            id=f"{run.id}#{outcome.value}",
            task_id=run.task_id,
            task_name="job",
            run_id=run.id,
            fire_time=run.fire_time,
            ended_at=result.finished_at,
            outcome=outcome,
        )

    async def backfill(self, task: Task, overlap: str, times: list[datetime]) -> BackfillProgress:
        progress = BackfillProgress(task_id=task.id, fire_times=times)
        runner = BackfillRunner(
            self.store,
            task,
            progress,
            overlap=check_backfill_overlap(overlap),
            clock=self.clock,
            sleep=self.look,
        )
        return await runner.run()


def ids(task: Task, times: list[datetime]) -> list[str]:
    return [f"{task.id}@{t.isoformat()}" for t in times]


async def test_buffer_all_runs_one_at_a_time_in_order() -> None:
    world = World()
    task = await world.task(max_instances=3)
    times = [T0 - k * HOUR for k in (4, 3, 2, 1)]

    done = await world.backfill(task, "buffer_all", times)

    assert world.ran == ids(task, times) and world.most_at_once == 1
    assert done.started == done.finished == times and done.complete


async def test_allow_all_keeps_max_instances_runs_at_once() -> None:
    world = World()
    task = await world.task(max_instances=2)
    times = [T0 - k * HOUR for k in (5, 4, 3, 2, 1)]

    done = await world.backfill(task, "allow_all", times)

    assert sorted(world.ran) == sorted(ids(task, times)) and world.most_at_once == 2
    assert sorted(done.finished) == times and done.skipped == []


async def test_skip_skips_the_fire_times_whose_turn_comes_while_another_run_exists() -> None:
    world = World()
    task = await world.task()
    other = await world.store.enqueue_run(task.id, fire_time=T0, now=T0)  # say, a trigger-now
    assert other is not None
    times = [T0 - k * HOUR for k in (2, 1)]

    done = await world.backfill(task, "skip", times)

    assert done.skipped == times and done.started == [] and world.looks == 0
    await world.look(0)  # the other run is taken, then ends
    await world.look(0)
    done = await world.backfill(task, "skip", times)
    assert done.finished == times and done.skipped == []


async def test_buffer_all_waits_for_another_run_and_a_fire_time_already_in_the_store_runs_once() -> None:
    world = World()
    task = await world.task(max_instances=5)
    times = [T0 - k * HOUR for k in (2, 1)]
    assert await world.store.enqueue_run(task.id, fire_time=times[1], now=T0) is not None  # already there

    done = await world.backfill(task, "buffer_all", times)

    assert world.ran == ids(task, [times[1], times[0]])  # the run in the store first, then the other
    assert done.started == times and sorted(done.finished) == times


async def test_progress_is_reported_after_every_change() -> None:
    world = World()
    task = await world.task()
    seen: list[tuple[int, int]] = []

    async def report(progress: BackfillProgress) -> None:  # an async callback is awaited
        seen.append((len(progress.started), progress.done))

    progress = BackfillProgress(task_id=task.id, fire_times=[T0 - 2 * HOUR, T0 - HOUR])
    runner = BackfillRunner(
        world.store,
        task,
        progress,
        overlap="buffer_all",
        clock=world.clock,
        on_progress=report,
        sleep=world.look,
    )
    await runner.run()

    assert seen == [(0, 0), (1, 0), (1, 1), (2, 1), (2, 2)]


async def test_the_runs_outcomes_come_from_the_history_and_failures_are_listed() -> None:
    world = World()
    task = await world.task()
    times = [T0 - 3 * HOUR, T0 - 2 * HOUR, T0 - HOUR]
    world.failing = {ids(task, times)[1]}
    world.history = True
    done = await world.backfill(task, "buffer_all", times)
    assert done.outcomes == {times[0]: "success", times[1]: "failure", times[2]: "success"}
    assert done.failed == [times[1]] and done.to_dict()["failed"] == [times[1]]


async def test_without_history_the_outcomes_stay_unknown_after_a_bounded_wait() -> None:
    world = World()
    task = await world.task()
    done = await world.backfill(task, "buffer_all", [T0 - HOUR])
    assert done.finished == [T0 - HOUR] and done.outcomes == {} and done.failed == []
    assert world.looks < 20  # it waited a couple of seconds' worth of looks, not for ever


# -- the range -----------------------------------------------------------------------------------


async def test_the_range_is_the_trigger_grid_also_before_the_task_existed() -> None:
    world = World()
    task = await world.task()

    assert range_fire_times(task, T0 - 12 * HOUR, T0 - 9 * HOUR, now=T0) == [
        T0 - 12 * HOUR,  # before its start date (10 hours before T0): the grid extended back
        T0 - 11 * HOUR,
        T0 - 10 * HOUR,
        T0 - 9 * HOUR,
    ]
    assert range_fire_times(task, timedelta(hours=2, minutes=30), timedelta(minutes=30), now=T0) == [
        T0 - 2 * HOUR,
        T0 - HOUR,
    ]


@pytest.mark.parametrize(
    ("start", "end", "limit", "message"),
    [
        (T0 - HOUR, T0 - 2 * HOUR, 1000, "is before start"),
        (T0 - HOUR, T0 + HOUR, 1000, "is in the future"),
        (datetime(2026, 3, 1), T0, 1000, "start must be an aware datetime or a timedelta"),
        (T0 - 5 * HOUR, T0, 3, "more than 3 fire times"),
        (T0 - 5 * HOUR, T0, 0, "max_fire_times must be an integer >= 1, not 0"),
    ],
)
async def test_a_range_backfill_cannot_run_is_refused_naming_why(
    start: datetime, end: datetime, limit: int, message: str
) -> None:
    task = await World().task()
    with pytest.raises(ValueError, match=message):
        range_fire_times(task, start, end, now=T0, max_fire_times=limit)


def test_an_unknown_overlap_is_refused_naming_the_allowed_ones() -> None:
    with pytest.raises(
        ValueError, match="overlap must be one of 'buffer_all', 'allow_all', 'skip', not 'cancel_other'"
    ):
        check_backfill_overlap("cancel_other")


async def test_a_run_a_removed_task_of_the_same_id_left_does_not_make_skip_skip() -> None:
    world = World()
    first = await world.task()
    old = await world.store.enqueue_run(first.id, fire_time=T0 - 5 * HOUR, now=T0)
    assert old is not None
    [taken] = (await world.store.claim_due("elsewhere", now=T0, lease=10 * HOUR, limit=10, horizon=T0)).runs
    assert taken.id == old.id  # another process runs it
    assert await world.store.remove([first.id]) == [first.id]
    second = first.copy(running=0)  # added again under the same id: a new incarnation
    await world.store.add([second])
    [listed] = await world.store.list_runs(second.id)
    assert listed.detached
    times = [T0 - 2 * HOUR, T0 - HOUR]

    done = await world.backfill(second, "skip", times)

    assert done.skipped == [] and world.ran == ids(second, times)
