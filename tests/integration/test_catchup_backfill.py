"""Catch-up after downtime and backfill on real Redis and PostgreSQL stores: a worker that starts
after its tasks' fire times passed runs those inside ``catchup_window`` and records the rest
missed (or coalesced); ``scheduler.backfill`` and ``backbeat tasks backfill`` run a past range
of fire times once each, in order for ``buffer_all``, through workers in this process or another."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backbeat import BackfillProgress, BackgroundTaskScheduler, SchedulerConfig, TaskNotFoundError
from tests.integration import jobs
from tests.integration.conftest import SERVER_STORES
from tests.integration.test_cli import cli, cli_json, said
from tests.scheduling import SchedulerFactory, Worker, eventually

DAY = timedelta(days=1)


pytestmark = pytest.mark.parametrize("store_url", SERVER_STORES, indirect=True)


async def fire_times(scheduler: BackgroundTaskScheduler, task_id: str, outcome: str) -> list[datetime]:
    page = await scheduler.run_history(task_id=task_id, outcome=outcome, limit=1000)
    return sorted(entry.fire_time for entry in page.entries)


# -- catch-up ------------------------------------------------------------------------------------


async def test_a_worker_after_downtime_runs_the_fire_times_inside_the_window_and_records_the_rest(
    make_scheduler: SchedulerFactory, store_url: str, record_file: Path
) -> None:
    start = datetime.now(UTC) - timedelta(seconds=3605)  # fire times 3605, 3005, ... 605 and 5 s ago
    producer = make_scheduler(store_url, role="producer", clock=lambda: start)
    window = {"catchup_window": timedelta(minutes=25)}  # 1,500 s: the last three fire times
    each = await producer.add_task(
        jobs.note_fire_time,
        "interval",
        minutes=10,
        start_date=start,
        args=[str(record_file)],
        options={**window, "coalesce": False, "max_instances": 5},
    )
    coalesced = await producer.add_task(
        jobs.note_fire_time,
        "interval",
        minutes=10,
        start_date=start,
        args=[str(record_file)],
        options={**window, "coalesce": True},
    )
    times = [start + timedelta(minutes=10 * k) for k in range(7)]

    worker = make_scheduler(store_url)
    await worker.start_async()

    async def recorded() -> bool:
        counts = [
            len(await fire_times(worker, each, "success")),
            len(await fire_times(worker, coalesced, "success")),
            len(await fire_times(worker, coalesced, "coalesced")),
        ]
        return counts == [3, 1, 2]

    await eventually(recorded, timeout=20)
    assert await fire_times(worker, each, "success") == times[4:]
    assert await fire_times(worker, each, "missed") == times[:4]
    assert await fire_times(worker, coalesced, "success") == times[6:]
    assert await fire_times(worker, coalesced, "coalesced") == times[4:6]
    assert await fire_times(worker, coalesced, "missed") == times[:4]
    ran = sorted(record["fire_time"] for record in jobs.read_records(record_file))
    assert ran == sorted(t.timestamp() for t in [*times[4:], times[6]])


async def _five_missed(
    make_scheduler: SchedulerFactory,
    store_url: str,
    record_file: Path,
    *,
    seconds: float,
    max_instances: int,
    max_concurrency: int,
) -> tuple[BackgroundTaskScheduler, str, datetime]:
    """A task every 10 minutes whose five fire times have passed (the last 5 s ago), each run a
    ``jobs.slow`` of ``seconds``, caught up without a window or coalescing, and a worker of
    ``max_concurrency`` runs started: the worker, the task's id and its first fire time."""
    start = datetime.now(UTC) - timedelta(seconds=2405)
    producer = make_scheduler(store_url, role="producer", clock=lambda: start)
    task_id = await producer.add_task(
        jobs.slow,
        "interval",
        minutes=10,
        start_date=start,
        args=[str(record_file), seconds],
        options={"catchup_window": None, "coalesce": False, "max_instances": max_instances},
    )
    config = SchedulerConfig(lease_seconds=2.0, poll_interval=0.2, max_concurrency=max_concurrency)
    worker = make_scheduler(store_url, config=config)
    await worker.start_async()
    return worker, task_id, start


async def test_caught_up_fire_times_run_no_more_at_once_than_max_concurrency(
    make_scheduler: SchedulerFactory, store_url: str, record_file: Path
) -> None:
    worker, each, _ = await _five_missed(
        make_scheduler, store_url, record_file, seconds=0.3, max_instances=10, max_concurrency=2
    )

    await eventually(lambda: _has(worker, each, "success", 5), timeout=20)
    going, most = 0, 0
    for record in jobs.read_records(record_file):  # in the order written
        going += 1 if record["event"] == "start" else -1
        most = max(most, going)
    assert most == 2  # before, all five at once


async def test_caught_up_fire_times_max_instances_refuses_are_skipped_on_a_worker_of_one_run(
    make_scheduler: SchedulerFactory, store_url: str, record_file: Path
) -> None:
    worker, once, start = await _five_missed(
        make_scheduler, store_url, record_file, seconds=0.1, max_instances=1, max_concurrency=1
    )
    times = [start + timedelta(minutes=10 * k) for k in range(5)]

    # before, the four left due ran one after another instead
    await eventually(lambda: _has(worker, once, "skipped", 4), timeout=20)
    await eventually(lambda: _has(worker, once, "success", 1), timeout=20)
    assert await fire_times(worker, once, "skipped") == times[1:]
    assert await fire_times(worker, once, "success") == times[:1]
    assert [record["event"] for record in jobs.read_records(record_file)] == ["start", "end"]


async def history_lines(scheduler: BackgroundTaskScheduler, task_id: str) -> str:
    """The task's history entries, a line each (for a failure message)."""
    page = await scheduler.run_history(task_id=task_id, limit=1000)
    return "\n".join(
        f"{e.run_id} attempt {e.attempt} {e.outcome.value} ended {e.ended_at.isoformat()} by {e.owner}"
        for e in page.entries
    )


async def _has(scheduler: BackgroundTaskScheduler, task_id: str, outcome: str, count: int) -> bool:
    return len(await fire_times(scheduler, task_id, outcome)) == count


# -- backfill ------------------------------------------------------------------------------------


async def daily_task(
    producer: BackgroundTaskScheduler, record_file: Path, **options: Any
) -> tuple[str, datetime]:
    """A daily task whose grid started ten days ago (its next fire time an hour from now), each
    run recording its start and end; returns its id and its first fire time."""
    base = datetime.now(UTC).replace(microsecond=0) - 10 * DAY + timedelta(hours=1)
    task_id = await producer.add_task(
        jobs.slow, "interval", days=1, start_date=base, args=[str(record_file), 0.2], options=options or None
    )
    return task_id, base


def spans(record_file: Path) -> list[tuple[str, float, float]]:
    """(run id, start, end) of every run in the record file, by start."""
    starts = {r["run_id"]: r["t"] for r in jobs.read_records(record_file) if r["event"] == "start"}
    ends = {r["run_id"]: r["t"] for r in jobs.read_records(record_file) if r["event"] == "end"}
    return sorted(((run_id, starts[run_id], ends[run_id]) for run_id in starts), key=lambda s: s[1])


async def test_buffer_all_runs_each_fire_time_once_in_order_one_after_the_other(
    make_scheduler: SchedulerFactory, store_url: str, record_file: Path
) -> None:
    producer = make_scheduler(store_url, role="producer")
    worker = make_scheduler(store_url)
    await worker.start_async()
    task_id, base = await daily_task(producer, record_file)
    wanted = [base + k * DAY for k in range(1, 6)]
    seen: list[tuple[int, int, int]] = []

    def on_progress(progress: BackfillProgress) -> None:
        seen.append((len(progress.started), len(progress.finished), len(progress.skipped)))

    done = await producer.backfill(
        task_id, base + DAY, base + 5 * DAY + timedelta(hours=1), on_progress=on_progress
    )

    assert done.fire_times == done.started == done.finished == wanted and done.skipped == []
    assert done.complete and seen[0] == (0, 0, 0) and seen[-1] == (5, 5, 0)
    ran = spans(record_file)
    assert [run_id for run_id, _, _ in ran] == [f"{task_id}@{t.isoformat()}" for t in wanted]
    assert all(before[2] <= after[1] for before, after in itertools.pairwise(ran))  # never overlapping
    await eventually(lambda: _has(worker, task_id, "success", 5), timeout=20)
    assert await fire_times(worker, task_id, "success") == wanted


async def test_allow_all_keeps_up_to_max_instances_at_once_and_skip_skips_while_another_runs(
    make_scheduler: SchedulerFactory, store_url: str, record_file: Path
) -> None:
    producer = make_scheduler(store_url, role="producer")
    worker = make_scheduler(store_url)
    await worker.start_async()
    task_id, base = await daily_task(producer, record_file, max_instances=3)
    wanted = [base + k * DAY for k in range(6)]

    done = await producer.backfill(task_id, base, base + 5 * DAY, overlap="allow_all")

    assert done.finished == wanted or sorted(done.finished) == wanted
    ran = spans(record_file)
    assert sorted(run_id for run_id, _, _ in ran) == sorted(f"{task_id}@{t.isoformat()}" for t in wanted)
    peak = max(sum(1 for _, s, e in ran if s <= moment < e) for _, moment, _ in ran)
    assert 1 <= peak <= 3
    await eventually(lambda: _has(worker, task_id, "success", 6), timeout=20)

    # a long run of the task exists: every fire time's turn comes while it runs
    gate_id = await producer.add_task(
        jobs.slow, "interval", days=1, start_date=base, args=[str(record_file), 3.0]
    )
    assert await producer.trigger_job_now(gate_id) is not None
    skipped = await producer.backfill(gate_id, base, base + 2 * DAY, overlap="skip")
    assert skipped.skipped == [base, base + DAY, base + 2 * DAY] and skipped.started == []


async def test_backfill_refuses_what_it_cannot_run_naming_it(
    make_scheduler: SchedulerFactory, store_url: str, record_file: Path
) -> None:
    producer = make_scheduler(store_url, role="producer")
    task_id, base = await daily_task(producer, record_file)
    once = await producer.schedule_at("once", jobs.note, datetime.now(UTC) - DAY, args=[str(record_file)])

    with pytest.raises(
        ValueError, match="overlap must be one of 'buffer_all', 'allow_all', 'skip', not 'all'"
    ):
        await producer.backfill(task_id, base, base + DAY, overlap="all")
    with pytest.raises(ValueError, match="fires once: backfill runs the past fire times of a recurring task"):
        await producer.backfill(once, base, base + DAY)
    with pytest.raises(ValueError, match="is before start"):
        await producer.backfill(task_id, base + DAY, base)
    with pytest.raises(ValueError, match="is in the future"):
        await producer.backfill(task_id, base, datetime.now(UTC) + DAY)
    with pytest.raises(ValueError, match="start must be an aware datetime"):
        await producer.backfill(task_id, datetime(2026, 1, 1), base)
    with pytest.raises(ValueError, match="more than 3 fire times"):
        await producer.backfill(task_id, base, base + 5 * DAY, max_fire_times=3)
    with pytest.raises(TaskNotFoundError):
        await producer.backfill("nope", base, base + DAY)
    assert await producer.backfill_fire_times(task_id, timedelta(days=10), timedelta(days=8)) == [
        base,
        base + DAY,
    ]
    assert await producer.list_tasks() and jobs.read_records(record_file) == []


# -- the command line ----------------------------------------------------------------------------


async def test_the_cli_backfills_through_a_worker_process_and_lists_a_dry_run(
    make_scheduler: SchedulerFactory,
    store_url: str,
    record_file: Path,
    workers: Callable[..., Worker],
    tmp_path: Path,
) -> None:
    producer = make_scheduler(store_url, role="producer")
    task_id, base = await daily_task(producer, record_file)
    wanted = [base + k * DAY for k in range(2, 5)]
    span = ["--from", (base + 2 * DAY).isoformat(), "--to", (base + 4 * DAY).isoformat()]

    listed = await cli_json("tasks", "backfill", task_id, "--store", store_url, *span, "--dry-run")
    assert listed["fire_times"] == [t.isoformat() for t in wanted]
    assert jobs.read_records(record_file) == []
    # No worker yet: the backfill gives up when told, its first run left in the store to run
    # later. A task of its own: a run left so that ends before a backfill of its task first
    # looks at the store is not seen, and its fire time runs again (once in 20 runs or so).
    unserved, start = await daily_task(producer, tmp_path / "unserved.jsonl")
    its_span = ["--from", (start + 2 * DAY).isoformat(), "--to", (start + 4 * DAY).isoformat()]
    code, out, err = await cli(
        "tasks", "backfill", unserved, "--store", store_url, *its_span, "--timeout", "1"
    )
    gave_up = "gave up after --timeout 1 s (0 of 3 fire times done, 1 running)"
    assert code == 1 and gave_up in " ".join(err.split()), said(code, out, err)

    workers(store_url, "--lease", "2")  # a failure's report shows its log
    code, out, err = await cli("tasks", "backfill", task_id, "--store", store_url, *span)
    backfilled = said(code, out, err)
    assert code == 0, backfilled
    summary = f"backfilled {task_id}: 3 of 3 fire times ran (0 failed), 0 skipped"
    assert summary in " ".join(out.split()), backfilled
    ran = [run_id for run_id, _, _ in spans(record_file)]
    assert ran == [f"{task_id}@{t.isoformat()}" for t in wanted], backfilled
    # the worker records its runs' history after they end: allow a loaded machine its time
    try:
        await eventually(lambda: _has(producer, task_id, "success", 3), timeout=60)
    except AssertionError:
        found = await history_lines(producer, task_id)
        records = "\n".join(map(str, jobs.read_records(record_file)))
        raise AssertionError(f"history:\n{found}\nrecords:\n{records}\n{backfilled}") from None
    assert await fire_times(producer, task_id, "success") == wanted

    code, _, err = await cli("tasks", "backfill", task_id, "--store", store_url, *span, "--overlap", "all")
    assert code == 2 and "overlap must be one of 'buffer_all', 'allow_all', 'skip', not 'all'" in err
    code, _, err = await cli("tasks", "backfill", task_id, "--store", store_url, "--from", "2d", "--to", "5d")
    assert code == 2 and "is before start" in err
    code, _, err = await cli(
        "tasks", "backfill", task_id, "--store", store_url, "--from", "yesterday", "--to", "0s"
    )
    assert code == 2 and "--from 'yesterday' is neither a duration" in err
    code, _, err = await cli("tasks", "backfill", "nope", "--store", store_url, *span)
    assert code == 1 and "nope" in err
