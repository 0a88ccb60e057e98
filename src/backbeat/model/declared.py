"""``@schedule_task(cron=...)``: module-level recurring tasks every scheduler keeps in its store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from backbeat.errors import NotPersistableError
from backbeat.model.codec import import_path

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class DeclaredTask:
    """A recurring task declared in code: its function, trigger arguments and options."""

    func: Callable[..., Any]
    task_id: str
    name: str
    trigger_args: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()


DECLARED: dict[str, DeclaredTask] = {}


def schedule_task(
    cron: str | None = None,
    *,
    interval: float | None = None,
    id: str | None = None,
    name: str | None = None,
    tags: tuple[str, ...] = (),
    timezone: str | None = None,
    **options: Any,
) -> Callable[[F], F]:
    """Declare a module-level function as a recurring task (``cron`` string or ``interval`` seconds).

    Every scheduler adds it to its store when it starts; its id is stable (derived from the
    function's import path), so restarts keep its schedule and several processes share one task.

    Raises:
        NotPersistableError: the function is not module-level.
        ValueError: neither or both of ``cron`` and ``interval``.
    """
    if (cron is None) == (interval is None):
        raise ValueError("@schedule_task needs exactly one of cron='...' or interval=<seconds>")

    def decorator(func: F) -> F:
        qualname = getattr(func, "__qualname__", "")
        if "<locals>" in qualname or "<lambda>" in qualname:
            raise NotPersistableError(f"@schedule_task needs a module-level function, not {qualname}")
        path = import_path(func)
        trigger_args: dict[str, Any] = {"cron": cron} if cron is not None else {"interval": interval}
        if timezone is not None:
            trigger_args["timezone"] = timezone
        task_id = id or f"schedule_task:{path}"
        DECLARED[task_id] = DeclaredTask(
            func, task_id, name or func.__name__, trigger_args, dict(options), tags
        )
        return func

    return decorator
