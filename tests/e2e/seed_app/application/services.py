"""Seed 000's job classes, verbatim but for the imports and the stand-in services they use."""

from __future__ import annotations

import logging
from typing import Any

from backbeat import RecurrentBackgroundJob, ScheduledBackgroundJob, backgroundjob

logger = logging.getLogger(__name__)
RUNS: list[tuple[str, Any]] = []


class MyRepository:
    """The user's repository (stand-in)."""

    def __init__(self) -> None:
        self.seen: list[str] = []


class WorkerRepository:
    """Stand-in for the CML worker repository: workers by id."""

    def __init__(self) -> None:
        self.workers: dict[str, str] = {}

    async def get_by_id_async(self, worker_id: str) -> str | None:
        return self.workers.get(worker_id)


@backgroundjob(task_type="recurrent")
class MyPeriodicJob(RecurrentBackgroundJob):
    def __init__(self, resource_id: str):
        self.resource_id = resource_id

    def configure(self, service_provider=None, **kwargs):  # type: ignore[no-untyped-def]
        """Called after deserialization to inject dependencies"""
        if service_provider:
            self.repository = service_provider.get_required_service(MyRepository)

    async def run_every(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        """Executed at each interval"""
        # Job logic here
        self.repository.seen.append(self.resource_id)
        RUNS.append(("MyPeriodicJob", self.resource_id))


@backgroundjob(task_type="scheduled")
class MyScheduledJob(ScheduledBackgroundJob):
    async def run_at(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        """Executed at scheduled time"""
        # Job logic here
        RUNS.append(("MyScheduledJob", kwargs))


@backgroundjob(task_type="recurrent")
class WorkerMetricsCollectionJob(RecurrentBackgroundJob):
    """The worker-monitoring job of seed 000, with its error-handling snippets."""

    worker_id: str

    def __init__(self, worker_id: str):
        self.worker_id = worker_id

    def configure(self, service_provider=None, **kwargs):  # type: ignore[no-untyped-def]
        if service_provider:
            self.worker_repository = service_provider.get_required_service(WorkerRepository)

    async def run_every(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        worker = await self.worker_repository.get_by_id_async(self.worker_id)

        if not worker or worker == "TERMINATED":
            raise Exception(f"Worker terminated - stopping job")  # noqa: F541 - verbatim from the seed
        try:
            RUNS.append(("WorkerMetricsCollectionJob", self.worker_id))
        except Exception as e:
            logger.error(f"Job failed: {e}")
            raise
