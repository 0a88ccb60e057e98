"""The run in progress, readable by the job that runs: idempotency key, attempt, services."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from backbeat.errors import SchedulerNotRunningError
from backbeat.model.records import Run, Task

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunContext:
    """What a job may know about the run executing it."""

    task_id: str
    task_name: str
    run_id: str
    """The idempotency key, ``task_id@fire_time``: the same for every attempt of a fire time."""
    fire_time: datetime
    attempt: int
    fencing_token: int = 0
    """Grows with every lease of this fire time to a holder (see ``Run.fencing_token``): pass
    it to a downstream write that must refuse an older holder (``... WHERE token < $1``)."""
    tags: tuple[str, ...] = ()
    owner: str = ""
    service_provider: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    lease_check: Callable[[], bool] = field(default=lambda: True, repr=False, compare=False)

    @property
    def idempotency_key(self) -> str:
        return self.run_id

    def lease_valid(self) -> bool:
        """Whether this process surely still holds the run's lease. A job in a thread pool (which
        cannot be stopped) should check it before a side effect that must not happen twice."""
        return self.lease_check()


class LazyRunContext:
    """The :class:`RunContext` of a run, built the first time its job asks for it: most jobs
    never do, and building it is a good part of what a no-op run costs."""

    __slots__ = ("_built", "_holds", "_owner", "_provider", "_run", "_task")

    def __init__(self, task: Task, run: Run, owner: str, provider: Any, holds: Callable[[str], bool]) -> None:
        self._task, self._run, self._owner, self._provider, self._holds = task, run, owner, provider, holds
        self._built: RunContext | None = None

    @property
    def service_provider(self) -> Any:
        return self._provider

    def get(self) -> RunContext:
        if self._built is None:
            task, run = self._task, self._run
            self._built = RunContext(
                task_id=task.id,
                task_name=task.name,
                run_id=run.id,
                fire_time=run.fire_time,
                attempt=run.attempt,
                fencing_token=run.fencing_token,
                tags=task.tags,
                owner=self._owner,
                service_provider=self._provider,
                lease_check=functools.partial(self._holds, run.id),
            )
        return self._built


_current_run: ContextVar[RunContext | LazyRunContext | None] = ContextVar(
    "backbeat_current_run", default=None
)
CURRENT_RUN = _current_run
"""The variable :func:`set_current_run` sets, for the engine to set and reset without a call
of its own per run."""
_default_provider: list[Any] = []


def current_run() -> RunContext:
    """The context of the run this code executes in.

    Raises:
        SchedulerNotRunningError: called outside a run.
    """
    run = _current_run.get()
    if run is None:
        raise SchedulerNotRunningError("current_run() was called outside a backbeat run")
    return run.get() if isinstance(run, LazyRunContext) else run


def get_service(service_type: type[T]) -> T | None:
    """Resolve a service from the provider of the run in progress (or of the started scheduler).

    Raises:
        SchedulerNotRunningError: no run is in progress and no scheduler has a provider.
    """
    run = _current_run.get()
    provider = run.service_provider if run is not None and run.service_provider is not None else None
    if provider is None and _default_provider:
        provider = _default_provider[-1]
    if provider is None:
        raise SchedulerNotRunningError(
            f"get_service({service_type.__name__}) needs a service provider: call it inside a run of a "
            "scheduler that has one, or start a scheduler configured with service_provider=..."
        )
    if hasattr(provider, "get_service"):
        return provider.get_service(service_type)  # type: ignore[no-any-return]
    return provider.get_required_service(service_type)  # type: ignore[no-any-return]


def push_default_provider(provider: Any) -> None:
    _default_provider.append(provider)


def pop_default_provider(provider: Any) -> None:
    if provider in _default_provider:
        _default_provider.remove(provider)


def set_current_run(run: RunContext | LazyRunContext | None) -> Token[RunContext | LazyRunContext | None]:
    return _current_run.set(run)


def reset_current_run(token: Token[RunContext | LazyRunContext | None]) -> None:
    _current_run.reset(token)
