"""``WorkerMonitoringScheduler`` (seed 000) and the hosted service that resumes monitoring.

Unlike the seed's system, starting to monitor a worker that is already monitored keeps its
stored task as it is: a restarted process does not re-add the jobs and push their next run
one interval further; they go on from the store on the schedule they had.
"""

from __future__ import annotations

from backbeat import BackgroundTaskScheduler, HostedService, TaskExistsError
from examples.worker_monitoring.jobs import WorkerMetricsCollectionJob
from examples.worker_monitoring.settings import MonitoringSettings
from examples.worker_monitoring.stand_ins import CloudClient, WorkerRepository


def monitoring_task_id(worker_id: str) -> str:
    """The stable id of a worker's monitoring task: one task per worker, whoever adds it."""
    return f"worker-metrics:{worker_id}"


class WorkerMonitoringScheduler:
    """Starts and stops the monitoring job of each worker."""

    def __init__(
        self,
        background_task_scheduler: BackgroundTaskScheduler,
        worker_repository: WorkerRepository,
        cloud: CloudClient,
        settings: MonitoringSettings,
    ) -> None:
        self.background_task_scheduler = background_task_scheduler
        self.worker_repository = worker_repository
        self.cloud = cloud
        self.settings = settings

    async def start_monitoring_worker_async(self, worker_id: str) -> str:
        """Schedule the worker's ``WorkerMetricsCollectionJob`` unless it is scheduled already;
        returns its task id."""
        job = WorkerMetricsCollectionJob(worker_id=worker_id)
        job.__interval__ = self.settings.interval
        job.__task_id__ = monitoring_task_id(worker_id)
        scheduler = self.background_task_scheduler
        try:
            task_id = await scheduler.enqueue_task_async(
                job, tags=["worker-monitoring", worker_id], replace_existing=False
            )
        except TaskExistsError:
            task_id = monitoring_task_id(worker_id)
            info = await scheduler.get_task_info(task_id)
            next_run = info.next_run_time if info is not None else None
            self.cloud.note("monitoring_kept", worker_id=worker_id, next_run_time=next_run)
            return task_id
        info = await scheduler.get_task_info(task_id)
        self.cloud.note(
            "monitoring_started", worker_id=worker_id, next_run_time=info.next_run_time if info else None
        )
        return task_id

    async def stop_monitoring_worker_async(self, worker_id: str) -> bool:
        """Remove the worker's monitoring task; whether there was one."""
        return await self.background_task_scheduler.stop_task(monitoring_task_id(worker_id))

    async def start_monitoring_active_workers_async(self) -> list[str]:
        """Make sure every active worker is monitored (seed 000, startup step 4)."""
        workers = await self.worker_repository.get_active_async()
        return [await self.start_monitoring_worker_async(worker.id) for worker in workers]


class MonitoringStartup(HostedService):
    """Hosted after the scheduler: at startup, monitor the active workers (keeping stored schedules)."""

    def __init__(self, monitoring: WorkerMonitoringScheduler) -> None:
        self.monitoring = monitoring

    async def start_async(self) -> None:
        """Start (or keep) the monitoring of every active worker."""
        await self.monitoring.start_monitoring_active_workers_async()
