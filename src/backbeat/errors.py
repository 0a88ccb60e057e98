"""The exceptions backbeat raises; every store translates its driver's errors into these."""

from __future__ import annotations

import asyncio


class BackbeatError(Exception):
    """Base class of every error raised by backbeat."""


class ConfigurationError(BackbeatError):
    """The scheduler, a store or an executor was configured with something invalid."""


class InvalidTriggerError(BackbeatError, ValueError):
    """A trigger (cron expression, interval, date, ...) cannot be built from the given arguments."""


class EncodingError(BackbeatError, TypeError):
    """A value cannot be stored as JSON; the message names the field that holds it."""


class DecodingError(BackbeatError, ValueError):
    """Stored JSON cannot be turned back into the value it was made from."""


class UnknownJobError(BackbeatError, LookupError):
    """A job name is not in the registry (a renamed or removed job, or a typo)."""


class NotPersistableError(BackbeatError, TypeError):
    """A callable has no import path (a lambda or closure) but ``durable=True`` was asked for."""


class TaskExistsError(BackbeatError):
    """A task with the same id is already stored and ``replace`` was not asked for."""

    def __init__(self, task_ids: list[str], message: str | None = None) -> None:
        super().__init__(message or f"tasks already exist: {', '.join(task_ids)}")
        self.task_ids = task_ids


class TaskNotFoundError(BackbeatError, LookupError):
    """No stored task has the given id."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"no task with id {task_id!r}")
        self.task_id = task_id


class StoreError(BackbeatError):
    """A store operation failed (the server is unreachable, a query was refused, ...)."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached; the engine retries with backoff."""


class StoreClosedError(StoreUnavailableError):
    """The store was closed while this call was in flight: it did not end within the close's
    bound (or was made while the store was closing) and was cancelled; it may or may not have
    been stored."""


class CorruptRecordError(StoreError):
    """A stored record cannot be decoded; it is quarantined, never deleted."""


class SchedulerNotRunningError(BackbeatError, RuntimeError):
    """An operation needs a started scheduler (or an event loop) and there is none."""


class LeaseLostError(asyncio.CancelledError):
    """Raised into a job whose run this process may no longer hold: its lease could not be
    renewed in time (the store was unreachable, or the process was paused), so another owner
    may run the same fire time. A cancellation, so ``except Exception`` in a job does not
    swallow it; the run ends without completing here and is taken over elsewhere."""
