"""The monitoring service's application: scheduler (hosted), stand-ins, monitoring scheduler."""

from __future__ import annotations

from backbeat import BackgroundTaskScheduler, WebApplication, WebApplicationBuilder
from examples.worker_monitoring.monitoring import MonitoringStartup, WorkerMonitoringScheduler
from examples.worker_monitoring.settings import MonitoringSettings
from examples.worker_monitoring.stand_ins import CloudClient, WorkerRepository


def build_application(settings: MonitoringSettings, *, producer_only: bool = False) -> WebApplication:
    """The service; ``producer_only`` for a process that only adds or removes monitoring (a CLI)."""
    builder = WebApplicationBuilder()
    BackgroundTaskScheduler.configure(
        builder,
        modules=["examples.worker_monitoring.jobs"],  # finds WorkerMetricsCollectionJob
        **settings.scheduler_args(producer_only=producer_only),
    )
    services = builder.services
    services.add_singleton(MonitoringSettings, singleton=settings)
    services.add_singleton(WorkerRepository, singleton=WorkerRepository(settings.workers_file))
    services.add_singleton(CloudClient, singleton=CloudClient(settings.record))
    services.add_singleton(WorkerMonitoringScheduler)
    if not producer_only:
        services.add_hosted_service(MonitoringStartup)
    return builder.build()
