"""``backbeat migrate apscheduler`` on job stores written by APScheduler 3.11's own ``add_job`` (Redis
with custom keys, SQLAlchemy on SQLite and PostgreSQL, MongoDB with BACKBEAT_MONGODB_URL): one CLI
call migrates them, and each task fires in backbeat, by an injected clock, at the times APScheduler's
trigger gives; a malicious pickle is refused and not run; --dry-run changes nothing."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import pickle
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.job import Job
from apscheduler.schedulers.background import BackgroundScheduler

from backbeat.abc import Store
from backbeat.engine.loop import Engine, EngineConfig
from backbeat.executors import AsyncIOExecutor
from backbeat.model import codec
from backbeat.model.events import EventHub
from backbeat.model.records import Task, run_id_for
from backbeat.model.registry import JobRegistry
from backbeat.stores import store_from_url
from tests.fakes import FakeClock
from tests.integration import migrate_jobs
from tests.integration.apscheduler_stores import ApsStore, aps_store
from tests.integration.test_cli import backbeat
from tests.scheduling import wait_for
from tests.unit.test_migrate_unpickle import RunsACommand

__all__ = ["aps_store"]

REF = "tests.integration.migrate_jobs:report"


def add_jobs(scheduler: BackgroundScheduler) -> None:
    """One job of each kind, as an application would have added them."""
    now = datetime.now(UTC)
    scheduler.add_job(REF, "cron", id="daily-paris", hour=8, minute=30, args=["daily"])
    scheduler.add_job(
        REF, "cron", id="weekdays-ny", day_of_week="mon-fri", hour=9, minute=15, timezone="America/New_York",
        start_date=now + timedelta(days=3), end_date=now + timedelta(days=40), args=["ny"],
        kwargs={"region": "us"}, misfire_grace_time=None, coalesce=False, max_instances=2,
    )  # fmt: skip
    scheduler.add_job(
        REF, "interval", id="every-90-min", minutes=90, start_date=now + timedelta(hours=1),
        timezone="Asia/Tokyo", args=["tokyo"], misfire_grace_time=30,
    )  # fmt: skip
    scheduler.add_job(REF, "date", id="once", run_date=now + timedelta(days=2), args=["once"])
    scheduler.add_job(REF, "interval", id="jittered", hours=2, jitter=30, args=["jitter"])
    scheduler.add_job(REF, "cron", id="paused", hour=6, args=["paused"]).pause()


async def migrate_cli(aps: ApsStore, *options: str) -> tuple[int, str, str]:
    result = await asyncio.to_thread(backbeat, "migrate", "apscheduler", *aps.source, *options)
    return result.returncode, result.stdout, result.stderr


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[Store]:
    store = store_from_url(url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def stored_tasks(url: str) -> dict[str, Task]:
    async with opened(url) as store:
        return {task.id: task for task in (await store.list())[0]}


def aps_fire_times(job: Job) -> Iterator[datetime]:
    """A job's fire times, as APScheduler computes them."""
    previous = job.next_run_time
    while previous is not None:
        yield previous.astimezone(UTC)
        previous = job.trigger.get_next_fire_time(previous, previous)


def aps_schedule(jobs: dict[str, Job], count: int) -> list[tuple[datetime, str]]:
    """Every fire time of each unjittered, unpaused job up to the time by which each has fired
    ``count`` times: a walk through them meets every fire time due on the way (with only each
    job's first ``count``, a later one of the 90-minute job fell within its grace time before
    another job's, and ran, when the test started at some times of day)."""
    kept = {job_id: job for job_id, job in jobs.items() if job_id not in ("jittered", "paused")}
    horizon = max(list(itertools.islice(aps_fire_times(job), count))[-1] for job in kept.values())
    expected = [
        (when, job_id)
        for job_id, job in kept.items()
        for when in itertools.takewhile(lambda when: when <= horizon, aps_fire_times(job))
    ]
    return sorted(expected)


async def test_every_job_fires_in_backbeat_when_apscheduler_would(aps_store: ApsStore) -> None:
    jobs = {job.id: job for job in aps_store.fill(add_jobs)}
    before = aps_store.raw.states()

    code, out, err = await migrate_cli(aps_store, "--to", aps_store.target)

    assert code == 0, err
    assert "migrated 6, skipped 0, refused 0 of 6 job(s)" in " ".join(out.split())
    assert aps_store.raw.states() == before  # without --move the source is left as it was
    tasks = await stored_tasks(aps_store.target)
    assert set(tasks) == set(jobs)
    for job_id, job in jobs.items():
        task = tasks[job_id]
        assert (task.job, task.name) == (f"func:{REF}", job.name)
        assert (codec.decode(task.args), codec.decode(task.kwargs)) == (list(job.args), job.kwargs)
        options = task.options
        assert (options.misfire_grace_time, options.coalesce, options.max_instances) == (
            job.misfire_grace_time,
            job.coalesce,
            job.max_instances,
        )
        assert task.paused == (job.next_run_time is None)
        if job.next_run_time is not None:
            assert task.next_run_time == job.next_run_time.astimezone(UTC)
    assert tasks["weekdays-ny"].trigger["timezone"] == "America/New_York"
    assert tasks["jittered"].trigger["jitter"] == 30

    await fires_at(aps_store.target, aps_schedule(jobs, 3))


async def fires_at(url: str, expected: list[tuple[datetime, str]]) -> None:
    """Walk an injected clock to each expected fire time: the task is not due a millisecond
    before, and at that time backbeat runs it once, for that fire time."""
    clock = FakeClock(expected[0][0] - timedelta(hours=1))
    migrate_jobs.FIRED.clear()
    async with opened(url) as store:
        config = EngineConfig(owner="migrate-test", lease=timedelta(seconds=30), claim_ahead=timedelta(0))
        engine = Engine(
            store,
            JobRegistry(),
            {"default": AsyncIOExecutor()},
            EventHub(),
            config,
            clock=clock,
            sleep=clock.sleep,
        )
        for when, task_id in expected:
            clock.now = when - timedelta(milliseconds=1)
            await engine._claim_once(100)
            assert await store.list_runs(task_id) == [], f"{task_id} fired before {when}"
            clock.now = when
            await engine._claim_once(100)
            await wait_for(ran(run_id_for(task_id, when)))
            await engine.completions.drain()
    fired = [run_id for run_id, label, _ in migrate_jobs.FIRED if label != "jitter"]
    assert fired == [run_id_for(task_id, when) for when, task_id in expected]
    regions = {label: region for _, label, region in migrate_jobs.FIRED}
    assert regions["ny"] == "us" and regions["daily"] == "eu"  # kwargs given, and defaulted


def ran(run_id: str) -> Callable[[], bool]:
    return lambda: run_id in [fired[0] for fired in migrate_jobs.FIRED]


async def test_a_pickle_that_would_run_a_command_is_refused_reported_and_not_run(
    aps_store: ApsStore, tmp_path: Path
) -> None:
    aps_store.fill(
        lambda s: [s.add_job(REF, "interval", minutes=5, id=f"good-{n}", args=[n]) for n in (1, 2)]
    )
    marker = tmp_path / "ran"
    evil = pickle.dumps(RunsACommand(f"touch {marker}"))
    aps_store.raw.put("evil", evil)

    code, out, err = await migrate_cli(aps_store, "--to", aps_store.target, "--move")

    assert code == 1
    assert "refused evil: its pickled state was refused: it names posix.system" in " ".join(err.split())
    assert "migrated 2, skipped 0, refused 1 of 3 job(s)" in " ".join(out.split())
    assert not marker.exists()
    assert aps_store.raw.states() == {"evil": evil}  # moved jobs left the source; the refused one stays
    assert set(await stored_tasks(aps_store.target)) == {"good-1", "good-2"}


async def test_a_dry_run_shows_the_tasks_and_changes_nothing(aps_store: ApsStore) -> None:
    jobs = aps_store.fill(add_jobs)
    before = aps_store.raw.states()
    mapped = "tests.integration.migrate_jobs:renamed_report"

    code, out, err = await migrate_cli(
        aps_store, "--to", aps_store.target, "--dry-run", "--map-func", f"{REF}={mapped}"
    )
    assert code == 0, err
    assert all(job.id in out for job in jobs) and "would migrate 6" in " ".join(out.split())
    assert "hour='8'" in out and "interval[1:30:00]" in out  # the triggers, as rich text, not markup

    code, out, err = await migrate_cli(aps_store, "--dry-run", "--json", "--map-func", f"{REF}={mapped}")
    assert code == 0, err
    report = json.loads(out)
    assert report["dry_run"] and (report["migrated"], report["refused"]) == (6, 0)
    assert {doc["id"]: doc["task"]["job"] for doc in report["jobs"]} == {
        job.id: f"func:{mapped}" for job in jobs
    }

    assert aps_store.raw.states() == before
    assert await stored_tasks(aps_store.target) == {}


async def test_runs_again_skip_replace_and_finish_a_move(aps_store: ApsStore) -> None:
    jobs = aps_store.fill(add_jobs)
    assert (await migrate_cli(aps_store, "--to", aps_store.target))[0] == 0
    async with opened(aps_store.target) as store:
        await store.update("daily-paris", paused=True)

    code, out, _ = await migrate_cli(aps_store, "--to", aps_store.target, "--dry-run")
    assert code == 0 and "would migrate 0, skipped 6, refused 0" in " ".join(out.split())
    code, out, _ = await migrate_cli(aps_store, "--to", aps_store.target, "--dry-run", "--replace")
    assert code == 0 and "would migrate 6, skipped 0, refused 0" in " ".join(out.split())
    code, out, _ = await migrate_cli(aps_store, "--to", aps_store.target)
    assert code == 0 and "migrated 0, skipped 6, refused 0" in " ".join(out.split())
    assert (await stored_tasks(aps_store.target))["daily-paris"].paused  # skipped: left as it was

    code, out, _ = await migrate_cli(aps_store, "--to", aps_store.target, "--replace")
    assert code == 0 and "migrated 6, skipped 0" in " ".join(out.split())
    assert not (await stored_tasks(aps_store.target))["daily-paris"].paused

    # as if an earlier --move had stored every task and stopped before removing the jobs
    code, out, _ = await migrate_cli(aps_store, "--to", aps_store.target, "--move")
    assert code == 0 and "skipped 6" in out and "removed 6 from the source" in " ".join(out.split())
    assert aps_store.raw.states() == {}
    assert set(await stored_tasks(aps_store.target)) == {job.id for job in jobs}


async def test_with_move_nothing_leaves_the_source_when_the_target_cannot_be_reached(
    aps_store: ApsStore,
) -> None:
    from tests.redis_server import free_port

    aps_store.fill(add_jobs)
    before = aps_store.raw.states()

    code, _, err = await migrate_cli(aps_store, "--to", f"redis://127.0.0.1:{free_port()}/0", "--move")

    assert code == 1 and err.startswith("error: store unavailable")
    assert aps_store.raw.states() == before


@pytest.mark.sqlite
@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["sqlite:///{tmp}/aps.sqlite"], 2, "give the target store with --to"),
        (["sqlite:///{tmp}/aps.sqlite", "--dry-run", "--move"], 2, "--move and --dry-run exclude each other"),
        (
            ["sqlite:///{tmp}/aps.sqlite", "--dry-run", "--jobs-key", "k"],
            2,
            "--jobs-key does not apply to a sqlite",
        ),
        (["redis://127.0.0.1:6379/0", "--dry-run", "--table", "t"], 2, "--table does not apply to a redis"),
        (["jobs.sqlite", "--dry-run"], 2, "'jobs.sqlite' is not a job store URL"),
        (
            ["sqlite:///{tmp}/aps.sqlite", "--dry-run", "--map-func", "a:f"],
            2,
            "--map-func 'a:f' is not OLD=NEW",
        ),
        (["sqlite:///{tmp}/none.sqlite", "--dry-run"], 1, "no SQLite file"),
        (["sqlite:///{tmp}", "--dry-run"], 1, "no SQLite file"),
        (
            ["sqlite:///{tmp}/aps.sqlite", "--dry-run", "--table", "nothing"],
            1,
            "store unavailable: sqlite:///",
        ),
    ],
    ids=[
        "no target",
        "move dry run",
        "jobs key on sql",
        "table on redis",
        "no url",
        "map-func",
        "no file",
        "a directory",
        "no table",
    ],
)
async def test_wrong_arguments_exit_with_one_line_naming_the_problem(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    sqlite3.connect(tmp_path / "aps.sqlite").close()  # a SQLite file without APScheduler's table
    command = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    result = await asyncio.to_thread(backbeat, "migrate", "apscheduler", *command)

    assert result.returncode == code
    assert os.listdir(tmp_path) == ["aps.sqlite"]  # reading made no file
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


async def test_a_store_larger_than_a_page_is_moved_whole(aps_store: ApsStore) -> None:
    (template,) = aps_store.fill(lambda s: s.add_job(REF, "interval", minutes=5, id="job-000", args=[0]))
    state = template.__getstate__()
    for n in range(1, 450):  # pages of 200, with the moved jobs deleted between them
        aps_store.raw.put(f"job-{n:03d}", pickle.dumps({**state, "id": f"job-{n:03d}", "args": (n,)}))

    code, out, err = await migrate_cli(aps_store, "--to", aps_store.target, "--move")

    assert code == 0, err
    assert "migrated 450, skipped 0, refused 0 of 450 job(s)" in " ".join(out.split())
    assert aps_store.raw.states() == {}
    tasks = await stored_tasks(aps_store.target)
    assert {task_id: codec.decode(task.args) for task_id, task in tasks.items()} == {
        f"job-{n:03d}": [n] for n in range(450)
    }
