"""Seed 000 (CML Cloud Manager's "Background Task Scheduling" page): each snippet runs on backbeat.

Only the imports of the snippets differ (``from application.services import ...`` becomes
``from backbeat import ...``). The user code of the seed (``application.services``,
``application.settings``) lives in ``tests/e2e/seed_app``; the settings name Redis, so the
application runs on the real Redis at ``SEED_REDIS_HOST`` (127.0.0.1), under a key prefix of
its own per test.

Not run: the mermaid diagram, the TOML dependency list, the ``redis-cli`` shell commands and
the one-line ``worker_metrics_poll_interval`` settings fragment are not Python snippets.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backbeat import (
    BackgroundTasksBus,
    BackgroundTaskScheduler,
    EventKind,
    RecurrentTaskDescriptor,
    ScheduledTaskDescriptor,
    SchedulerEvent,
    WebApplication,
    WebApplicationBuilder,
    deserialize_task,
)
from tests.e2e.redis_store import needs_redis_store
from tests.scheduling import wait_for

pytestmark = [pytest.mark.redis, needs_redis_store]

SEED_APP = Path(__file__).parent / "seed_app"


@pytest.fixture
def seed_app_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``application`` importable as in the user's project; its settings point at the real Redis."""
    monkeypatch.syspath_prepend(str(SEED_APP))
    monkeypatch.setenv("SEED_REDIS_HOST", "127.0.0.1")
    monkeypatch.setenv("SEED_REDIS_PORT", "6379")
    from application import services

    services.RUNS.clear()
    yield
    services.RUNS.clear()


@dataclass
class SeedApp:
    app: WebApplication
    scheduler: BackgroundTaskScheduler
    bus: BackgroundTasksBus
    repository: Any
    workers: Any
    prefix: str
    events: list[SchedulerEvent]

    def ran(self, kind: EventKind, task_id: str) -> list[SchedulerEvent]:
        return [e for e in self.events if e.kind is kind and e.task_id == task_id]


def build_seed_app(prefix: str, repository: Any = None, workers: Any = None) -> SeedApp:
    """The application of seed 000: settings, ``configure`` (verbatim), the user's repositories."""
    from application.services import MyRepository, WorkerRepository
    from application.settings import Settings

    settings = Settings()
    settings.background_job_store["redis_prefix"] = prefix  # one key space per test
    builder = WebApplicationBuilder(settings)

    # --- seed 000, "BackgroundTaskScheduler" -------------------------------------------------
    # Configured automatically during application startup
    BackgroundTaskScheduler.configure(
        builder,
        modules=["application.services"],  # Scans for @backgroundjob classes
    )
    # ------------------------------------------------------------------------------------------

    repository = repository or MyRepository()
    workers = workers or WorkerRepository()
    builder.services.add_singleton(MyRepository, singleton=repository)
    builder.services.add_singleton(WorkerRepository, singleton=workers)
    app = builder.build()
    scheduler = app.services.get_required_service(BackgroundTaskScheduler)
    events: list[SchedulerEvent] = []
    scheduler.add_listener(events.append)
    return SeedApp(
        app=app,
        scheduler=scheduler,
        bus=app.services.get_required_service(BackgroundTasksBus),
        repository=repository,
        workers=workers,
        prefix=prefix,
        events=events,
    )


@pytest.fixture
async def seed_app(seed_app_path: None) -> AsyncIterator[SeedApp]:
    """The seed's application, built (not started); stopped and its Redis keys cleared after."""
    built = build_seed_app(f"e2e-seed000-{uuid.uuid4().hex[:10]}")
    yield built
    await built.app.stop_async()
    await built.scheduler.clear_all_jobs()


async def test_configure_scans_application_services_and_hosts_the_scheduler(seed_app: SeedApp) -> None:
    from backbeat.stores.redis import RedisStore

    scheduler = seed_app.scheduler
    assert set(scheduler.registry.job_classes) >= {
        "MyPeriodicJob",
        "MyScheduledJob",
        "WorkerMetricsCollectionJob",
    }
    # The settings dict (redis_host/redis_port/redis_db) chose the Redis store, db 1.
    assert isinstance(scheduler.store, RedisStore)
    assert not scheduler.running
    await seed_app.app.start_async()  # the scheduler is a hosted service
    assert scheduler.running
    await seed_app.app.stop_async()  # graceful shutdown
    assert not scheduler.running


async def test_bus_schedules_a_recurrent_descriptor_sent_before_start(seed_app: SeedApp) -> None:
    seed_app.workers.workers["worker-123"] = "RUNNING"
    background_task_bus = seed_app.bus

    # --- seed 000, "BackgroundTasksBus" ---------------------------------------------------------
    # Schedule a recurrent job
    task_descriptor = RecurrentTaskDescriptor(
        id="unique-job-id",
        name="WorkerMetricsCollectionJob",
        data={"worker_id": "worker-123"},
        interval=300,  # seconds
    )

    background_task_bus.schedule_task(task_descriptor)
    # ------------------------------------------------------------------------------------------

    before = datetime.now(UTC)
    await seed_app.app.start_async()  # the descriptor waited for the scheduler, and is stored now
    scheduler = seed_app.scheduler
    info = None

    async def stored() -> bool:
        nonlocal info
        info = await scheduler.get_task_info("unique-job-id")
        return info is not None

    for _ in range(100):
        if await stored():
            break
        await asyncio.sleep(0.05)
    assert info is not None, "the descriptor sent before start was never scheduled"
    assert info.name == "WorkerMetricsCollectionJob"
    assert info.data == {"worker_id": "worker-123"}
    assert info.next_run_time is not None
    assert abs((info.next_run_time - (before + timedelta(seconds=300))).total_seconds()) < 5

    # Run it now instead of waiting five minutes: the job is rebuilt from its data and configured.
    from application.services import RUNS

    await scheduler.trigger_job_now("unique-job-id")
    await wait_for(lambda: ("WorkerMetricsCollectionJob", "worker-123") in RUNS)
    # It is still scheduled for its next interval.
    info = await scheduler.get_task_info("unique-job-id")
    assert info is not None and info.next_run_time is not None


async def test_recurrent_job_gets_its_repository_through_configure(seed_app: SeedApp) -> None:
    """MyPeriodicJob (seed 000, "Recurrent Background Job") runs every interval with its repository."""
    await seed_app.app.start_async()
    task_id = await seed_app.bus.schedule_task(
        RecurrentTaskDescriptor(
            id="periodic-1", name="MyPeriodicJob", data={"resource_id": "res-1"}, interval=1
        )
    )
    assert task_id == "periodic-1"
    # Runs at +1 s, +2 s: twice, each time a fresh instance configured with the registered repository.
    await wait_for(lambda: seed_app.repository.seen.count("res-1") >= 2, timeout=8)


async def test_scheduled_job_runs_once_at_its_time(seed_app: SeedApp) -> None:
    """MyScheduledJob (seed 000, "Scheduled Background Job") runs once, at ``scheduled_at``."""
    from application.services import RUNS

    await seed_app.app.start_async()
    at = datetime.now(UTC) + timedelta(seconds=1)
    await seed_app.bus.schedule_task(
        ScheduledTaskDescriptor(id="once-1", name="MyScheduledJob", data={"note": "hello"}, scheduled_at=at)
    )
    await wait_for(lambda: any(name == "MyScheduledJob" for name, _ in RUNS), timeout=8)
    assert datetime.now(UTC) >= at
    runs = [kwargs for name, kwargs in RUNS if name == "MyScheduledJob"]
    assert runs == [{"note": "hello"}]  # run_at(**kwargs) receives the stored data
    # A one-time task is gone once it ran.
    await wait_for(lambda: not seed_app.scheduler.active_runs())
    for _ in range(40):
        if await seed_app.scheduler.get_task_info("once-1") is None:
            break
        await asyncio.sleep(0.05)
    assert await seed_app.scheduler.get_task_info("once-1") is None


async def test_serialization_pattern_stores_only_ids_and_reinjects_services(seed_app: SeedApp) -> None:
    from application.services import RUNS, WorkerMetricsCollectionJob, WorkerRepository

    seed_app.workers.workers["worker-456"] = "RUNNING"
    service_provider = seed_app.app.services
    task_type = WorkerMetricsCollectionJob

    # --- seed 000, "Job Serialization Pattern" ------------------------------------------------
    # When scheduling
    task_descriptor = RecurrentTaskDescriptor(
        id="job-123",
        name="WorkerMetricsCollectionJob",
        data={"worker_id": "worker-456"},  # Only ID serialized
        interval=300,
    )

    # On deserialization
    task = deserialize_task(task_type, task_descriptor)
    task.configure(service_provider=service_provider)  # Dependencies injected
    # ------------------------------------------------------------------------------------------

    assert isinstance(task, WorkerMetricsCollectionJob)
    assert task.worker_id == "worker-456"
    assert task.worker_repository is service_provider.get_required_service(WorkerRepository)
    await task.run_every()  # type: ignore[no-untyped-call]  # the seed's method: verbatim, unannotated
    assert RUNS == [("WorkerMetricsCollectionJob", "worker-456")]

    # The scheduler does the same: only the business data is stored.
    await seed_app.app.start_async()
    await seed_app.bus.schedule_task(task_descriptor)
    info = None
    for _ in range(100):
        info = await seed_app.scheduler.get_task_info("job-123")
        if info is not None:
            break
        await asyncio.sleep(0.05)
    assert info is not None and info.data == {"worker_id": "worker-456"}


async def test_worker_monitoring_job_instance_is_scheduled_with_its_id_only(seed_app: SeedApp) -> None:
    """Seed 000, "Worker Monitoring Use Case": a WorkerMonitoringScheduler (user code, stand-in here)
    creates a WorkerMetricsCollectionJob; only its worker id is stored, services come back on run."""
    from application.services import RUNS, WorkerMetricsCollectionJob

    class WorkerMonitoringScheduler:
        """Stand-in for the user's WorkerMonitoringScheduler (not a scheduler feature)."""

        def __init__(self, background_task_scheduler: BackgroundTaskScheduler, interval: int = 300):
            self.background_task_scheduler = background_task_scheduler
            self.interval = interval

        async def start_monitoring_worker_async(self, worker_id: str) -> str:
            # --- seed 000, "Worker Monitoring Use Case" -----------------------------------------
            # Creates and schedules WorkerMetricsCollectionJob
            job = WorkerMetricsCollectionJob(
                worker_id=worker_id,
                # Dependencies injected via configure()
            )
            # --------------------------------------------------------------------------------------
            job.__interval__ = self.interval  # Job runs every 5 minutes (default)
            return await self.background_task_scheduler.enqueue_task_async(job)

    seed_app.workers.workers["worker-789"] = "RUNNING"
    await seed_app.app.start_async()
    scheduler = WorkerMonitoringScheduler(seed_app.scheduler)
    worker_id = "worker-789"

    # --- seed 000 ---------------------------------------------------------------------------------
    # WorkerMonitoringScheduler starts monitoring jobs
    task_id = await scheduler.start_monitoring_worker_async(worker_id)
    # ------------------------------------------------------------------------------------------

    info = await seed_app.scheduler.get_task_info(task_id)
    assert info is not None and info.data == {"worker_id": "worker-789"}
    assert info.trigger_spec.get("seconds") == 300
    await seed_app.scheduler.trigger_job_now(task_id)
    await wait_for(lambda: ("WorkerMetricsCollectionJob", "worker-789") in RUNS)


async def test_job_failures_are_logged_and_do_not_stop_the_scheduler(
    seed_app: SeedApp, caplog: pytest.LogCaptureFixture
) -> None:
    """Seed 000, "Error Handling": WorkerMetricsCollectionJob raises "Worker terminated" for a
    terminated worker; the failure is logged, the scheduler goes on running other jobs."""
    from application.services import RUNS

    seed_app.workers.workers["worker-dead"] = "TERMINATED"
    seed_app.workers.workers["worker-ok"] = "RUNNING"
    caplog.set_level(logging.ERROR, logger="backbeat")
    await seed_app.app.start_async()
    scheduler = seed_app.scheduler
    for worker_id in ("worker-dead", "worker-ok"):
        await seed_app.bus.schedule_task(
            RecurrentTaskDescriptor(
                id=f"metrics-{worker_id}",
                name="WorkerMetricsCollectionJob",
                data={"worker_id": worker_id},
                interval=300,
            )
        )
    await scheduler.trigger_job_now("metrics-worker-dead")
    await wait_for(lambda: bool(seed_app.ran(EventKind.RUN_FAILED, "metrics-worker-dead")))
    failed = seed_app.ran(EventKind.RUN_FAILED, "metrics-worker-dead")[0]
    assert "Worker terminated - stopping job" in str(failed.error)
    await wait_for(lambda: any("Worker terminated" in r.getMessage() for r in caplog.records))

    assert scheduler.running
    await scheduler.trigger_job_now("metrics-worker-ok")
    await wait_for(lambda: ("WorkerMetricsCollectionJob", "worker-ok") in RUNS)

    async def counted() -> Any:
        return await scheduler.get_task_info("metrics-worker-dead")

    for _ in range(100):
        info = await counted()
        if info is not None and info.failures == 1:
            break
        await asyncio.sleep(0.05)
    assert info is not None and info.failures == 1 and info.last_outcome is not None
    assert info.next_run_time is not None  # the recurrent task is kept for its next interval


async def test_list_tasks_iterated_from_sync_code(
    seed_app: SeedApp, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed_app.app.start_async()
    for worker_id in ("w-1", "w-2"):
        await seed_app.bus.schedule_task(
            RecurrentTaskDescriptor(
                id=f"job-{worker_id}",
                name="WorkerMetricsCollectionJob",
                data={"worker_id": worker_id},
                interval=300,
            )
        )
    background_task_scheduler = seed_app.scheduler

    # --- seed 000, "Job Status" -------------------------------------------------------------------
    jobs = background_task_scheduler.list_tasks()
    for job in jobs:
        print(f"Job: {job.id}, Next run: {job.next_run_time}")
    # ------------------------------------------------------------------------------------------

    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split(",")[0] for line in lines) == ["Job: job-w-1", "Job: job-w-2"]
    assert all("Next run: 20" in line for line in lines)
    assert {t.id for t in await background_task_scheduler.list_tasks()} == {"job-w-1", "job-w-2"}


async def test_jobs_resume_after_an_application_restart(seed_app: SeedApp) -> None:
    """Seed 000, "Job Recovery": jobs persisted in Redis are there for the next application."""
    from application.services import RUNS

    seed_app.workers.workers["worker-r"] = "RUNNING"
    await seed_app.app.start_async()
    await seed_app.bus.schedule_task(
        RecurrentTaskDescriptor(
            id="recover-1", name="WorkerMetricsCollectionJob", data={"worker_id": "worker-r"}, interval=300
        )
    )
    first = await seed_app.scheduler.get_task_info("recover-1")
    assert first is not None
    await seed_app.app.stop_async()

    restarted = build_seed_app(seed_app.prefix, workers=seed_app.workers)
    try:
        await restarted.app.start_async()
        again = await restarted.scheduler.get_task_info("recover-1")
        assert again is not None and again.next_run_time == first.next_run_time
        await restarted.scheduler.trigger_job_now("recover-1")
        await wait_for(lambda: ("WorkerMetricsCollectionJob", "worker-r") in RUNS)
    finally:
        await restarted.app.stop_async()
