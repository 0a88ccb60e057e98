"""Neuroglia-style job classes, the ``@backgroundjob`` decorator and task descriptors."""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar

JobType = TypeVar("JobType", bound=type)
TaskKind = Literal["scheduled", "recurrent"]


def backgroundjob(task_type: TaskKind | None = None, *, name: str | None = None) -> Any:
    """Mark a class as a background job found by ``BackgroundTaskScheduler.configure``.

    The job's stable name is the class name unless ``name`` is given; stored tasks refer to
    that name, so renaming the class needs ``name=`` set to the old one.
    """

    def decorator(cls: JobType) -> JobType:
        if task_type not in (None, "scheduled", "recurrent"):
            raise ValueError(
                f"@backgroundjob task_type must be 'scheduled' or 'recurrent', not {task_type!r}"
            )
        setattr(cls, "__background_task_class_name__", name or cls.__name__)  # noqa: B010
        setattr(cls, "__background_task_type__", task_type or _infer_task_type(cls))  # noqa: B010
        return cls

    return decorator


def _infer_task_type(cls: type) -> str | None:
    if issubclass(cls, RecurrentBackgroundJob):
        return "recurrent"
    if issubclass(cls, ScheduledBackgroundJob):
        return "scheduled"
    return None


class BackgroundJob(abc.ABC):  # noqa: B024 - configure has a default on purpose
    """A job whose instances are stored as business data and re-injected with services.

    Only the instance's attributes at scheduling time are stored (ids, configuration); after
    loading, ``configure(service_provider=...)`` gives the job its services back.
    """

    __background_task_type__: str | None = None
    __background_task_class_name__: str | None = None
    __task_id__: str | None = None
    __task_name__: str | None = None
    __task_type__: str | None = None

    def configure(self, *args: Any, **kwargs: Any) -> Any:  # noqa: B027 - optional hook
        """Resolve services after the job was loaded from the store (may be async)."""


class ScheduledBackgroundJob(BackgroundJob):
    """A job that runs once, at ``__scheduled_at__``."""

    __scheduled_at__: datetime | None = None

    @abc.abstractmethod
    async def run_at(self, *args: Any, **kwargs: Any) -> Any:
        """Do the work."""


class RecurrentBackgroundJob(BackgroundJob):
    """A job that runs every ``__interval__`` seconds."""

    __interval__: float | None = None

    @abc.abstractmethod
    async def run_every(self, *args: Any, **kwargs: Any) -> Any:
        """Do the work of one interval."""


@dataclass
class TaskDescriptor:
    """A task sent through the bus: which job (``name``), its id and business ``data``."""

    id: str
    name: str
    data: dict[str, Any]


@dataclass
class ScheduledTaskDescriptor(TaskDescriptor):
    """Run the job once at ``scheduled_at``."""

    scheduled_at: datetime


@dataclass
class RecurrentTaskDescriptor(TaskDescriptor):
    """Run the job every ``interval`` seconds, first at ``started_at`` (or one interval from now)."""

    interval: float
    started_at: datetime | None = None
    options: dict[str, Any] = field(default_factory=dict)


def job_data(job: BackgroundJob) -> dict[str, Any]:
    """The business data of a job instance: its attributes, without backbeat's dunder fields."""
    return {k: v for k, v in vars(job).items() if not (k.startswith("__") and k.endswith("__"))}


def deserialize_task(task_type: type[BackgroundJob], descriptor: TaskDescriptor) -> BackgroundJob:
    """Build a job instance from a descriptor without calling ``__init__`` (as Neuroglia does)."""
    job = object.__new__(task_type)
    job.__dict__.update(descriptor.data)
    job.__task_id__ = descriptor.id
    job.__task_name__ = descriptor.name
    if isinstance(descriptor, ScheduledTaskDescriptor) and isinstance(job, ScheduledBackgroundJob):
        job.__scheduled_at__ = descriptor.scheduled_at
        job.__task_type__ = "ScheduledTaskDescriptor"
    if isinstance(descriptor, RecurrentTaskDescriptor) and isinstance(job, RecurrentBackgroundJob):
        job.__interval__ = descriptor.interval
        job.__task_type__ = "RecurrentTaskDescriptor"
    return job


def restore_job(
    task_type: type[BackgroundJob], data: dict[str, Any], task_id: str, name: str
) -> BackgroundJob:
    """Build a stored job instance from its data (no ``__init__``), ready for ``configure``."""
    return deserialize_task(task_type, TaskDescriptor(id=task_id, name=name, data=data))


_IDS_PER_READ = 256
_unused_ids: list[str] = []
"""Ids drawn from the OS's random source but not handed out yet."""
os.register_at_fork(after_in_child=_unused_ids.clear)  # a child process never repeats its parent's


def new_task_id() -> str:
    """128 random bits from the OS's random source (as ``secrets``) as 32 hex digits, the shape of
    ``uuid4().hex``; read 256 ids at a time: one system call per id was a twentieth of an add."""
    while True:
        try:
            return _unused_ids.pop()
        except IndexError:
            block = os.urandom(16 * _IDS_PER_READ).hex()
            _unused_ids.extend(block[at : at + 32] for at in range(0, len(block), 32))
