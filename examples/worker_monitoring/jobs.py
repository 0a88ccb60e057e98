"""Seed 000's ``WorkerMetricsCollectionJob``: only the worker id is stored; the repository, the
cloud client and the scheduler are resolved by ``configure`` each time the job is loaded."""

from __future__ import annotations

import logging
from typing import Any

from backbeat import BackgroundTaskScheduler, RecurrentBackgroundJob, backgroundjob, current_run
from examples.worker_monitoring.stand_ins import CloudClient, CMLWorkerStatus, WorkerRepository

log = logging.getLogger("worker_monitoring")


@backgroundjob(task_type="recurrent")
class WorkerMetricsCollectionJob(RecurrentBackgroundJob):
    """Collects one worker's status and metrics every interval; stops when the worker is gone."""

    worker_repository: WorkerRepository
    cloud: CloudClient
    scheduler: BackgroundTaskScheduler

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id

    def configure(self, service_provider: Any = None, **kwargs: Any) -> None:
        """Called after the job is loaded from the store: give it its services back."""
        if service_provider is not None:
            self.worker_repository = service_provider.get_required_service(WorkerRepository)
            self.cloud = service_provider.get_required_service(CloudClient)
            self.scheduler = service_provider.get_required_service(BackgroundTaskScheduler)

    async def run_every(self, *args: Any, **kwargs: Any) -> None:
        """Collect the metrics, or remove this job's task if the worker was terminated.

        (The seed raises an exception here, which only logs an error every interval while the
        job stays scheduled; removing the task stops it for good, in every process.)
        """
        worker = await self.worker_repository.get_by_id_async(self.worker_id)
        if worker is None or worker.status is CMLWorkerStatus.TERMINATED:
            task_id = current_run().task_id
            await self.scheduler.stop_task(task_id)
            self.cloud.note("monitoring_stopped", worker_id=self.worker_id)
            log.info(
                "worker %s is terminated: its monitoring task %s removed itself", self.worker_id, task_id
            )
            return
        await self.cloud.get_instance_status(self.worker_id)
        await self.cloud.get_metrics(self.worker_id)
