"""``BackgroundTaskSchedulerOptions``: the job types a scheduler knows (Neuroglia's name for it)."""

from __future__ import annotations

import logging

from backbeat.model.jobs import BackgroundJob
from backbeat.model.registry import JobRegistry

log = logging.getLogger("backbeat")


class BackgroundTaskSchedulerOptions:
    """Job types by name, backed by a :class:`JobRegistry`."""

    def __init__(self, registry: JobRegistry | None = None) -> None:
        self.registry = registry or JobRegistry()

    @property
    def type_maps(self) -> dict[str, type[BackgroundJob]]:
        return self.registry.job_classes

    def register_task_type(self, name: str, task_type: type[BackgroundJob]) -> None:
        """Register a job class under ``name``."""
        self.registry.register_job_class(task_type, name)
        log.debug("registered background job type %r: %s", name, task_type)

    def get_task_type(self, name: str) -> type[BackgroundJob] | None:
        """The job class registered as ``name``, or ``None``."""
        return self.registry.job_classes.get(name)
