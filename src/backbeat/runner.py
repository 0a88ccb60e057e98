"""Turn a stored task into the call that runs it: decode its data, build and configure the job."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backbeat import codec
from backbeat.errors import UnknownJobError
from backbeat.jobs import RecurrentBackgroundJob, ScheduledBackgroundJob, restore_job
from backbeat.model import Run, Task
from backbeat.registry import JobRegistry


@dataclass(slots=True)
class Invocation:
    """A ready call: ``func(*args, **kwargs)``."""

    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


async def prepare(task: Task, run: Run, registry: JobRegistry, provider: Any) -> Invocation:
    """Build the call for ``run`` of ``task``.

    Raises:
        UnknownJobError: the job is not registered or cannot be resolved in this process.
        DecodingError: the stored data cannot be decoded.
    """
    kind, _, name = task.job.partition(":")
    if kind != "job":
        func = registry.resolve_callable(task.job, provider)
        args = codec.decode(task.args, path="args") if task.args else ()
        kwargs = codec.decode(task.kwargs, path="kwargs") if task.kwargs else {}
        return Invocation(func, tuple(args), dict(kwargs))

    cls = registry.job_class(name)
    data: dict[str, Any] = codec.decode(task.data or {}, path="data")
    job = restore_job(cls, dict(data), task.id, task.name)
    configured = job.configure(service_provider=provider)
    if inspect.isawaitable(configured):
        await configured
    if isinstance(job, ScheduledBackgroundJob):
        job.__scheduled_at__ = run.fire_time
        method: Callable[..., Any] = job.run_at
    elif isinstance(job, RecurrentBackgroundJob):
        job.__interval__ = task.trigger.get("seconds")
        method = job.run_every
    else:
        raise UnknownJobError(
            f"job class {cls.__qualname__} is neither a Scheduled nor a RecurrentBackgroundJob"
        )
    public = {k: v for k, v in data.items() if not k.startswith("_")}
    return Invocation(method, (), public if _takes_var_kwargs(method) else {})


def _takes_var_kwargs(func: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
