"""Find the scheduler of ``backbeat worker APP``: ``pkg.module`` or ``pkg.module:attr``."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from backbeat.api.config import SchedulerConfig
from backbeat.api.discovery import find_job_classes
from backbeat.api.options import BackgroundTaskSchedulerOptions
from backbeat.api.scheduler import BackgroundTaskScheduler
from backbeat.errors import ConfigurationError


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSettings:
    """What the ``worker`` command's options ask for; ``None`` keeps the default."""

    store: str | None = None
    prefix: str | None = None
    producer_only: bool = False
    concurrency: int | None = None
    lease: float | None = None
    shutdown_timeout: float | None = None

    def given(self) -> list[str]:
        """The options set (to warn that an application's own scheduler ignores them)."""
        names = ("store", "prefix", "concurrency", "lease", "shutdown_timeout")
        chosen = [f"--{name.replace('_', '-')}" for name in names if getattr(self, name) is not None]
        return chosen + (["--producer-only"] if self.producer_only else [])

    def config(self) -> SchedulerConfig:
        defaults = SchedulerConfig()
        return SchedulerConfig(
            producer_only=self.producer_only,
            max_concurrency=self.concurrency or defaults.max_concurrency,
            lease_seconds=self.lease or defaults.lease_seconds,
            shutdown_timeout=defaults.shutdown_timeout
            if self.shutdown_timeout is None
            else self.shutdown_timeout,
        )


@dataclass(frozen=True, slots=True)
class Loaded:
    """The scheduler to run, and whether it came from the application (not from the options)."""

    scheduler: BackgroundTaskScheduler
    from_app: bool


async def load_scheduler(spec: str, settings: WorkerSettings) -> Loaded:
    """Import ``spec`` and find or make its scheduler.

    ``module:attr`` names a ``BackgroundTaskScheduler`` or a factory (sync or async, no
    arguments) returning one. A bare ``module`` is scanned: its one scheduler is used; if it has
    none, one is made from the options with the module's ``@backgroundjob`` classes registered
    (functions and ``@schedule_task`` tasks need only the import).

    Raises:
        ConfigurationError: the module cannot be imported, the attribute is missing or is no
            scheduler, or the module holds several schedulers.
    """
    module_name, _, attr = spec.partition(":")
    module = _import(module_name, spec)
    if attr:
        found = await _resolve(_attribute(module, attr, spec), spec)
        return Loaded(found, from_app=True)
    schedulers = [v for v in vars(module).values() if isinstance(v, BackgroundTaskScheduler)]
    if len(schedulers) > 1:
        raise ConfigurationError(
            f"{module_name} holds {len(schedulers)} schedulers: name one as {module_name}:attr"
        )
    if schedulers:
        return Loaded(schedulers[0], from_app=True)
    return Loaded(_made(module_name, settings), from_app=False)


def _made(module_name: str, settings: WorkerSettings) -> BackgroundTaskScheduler:
    from backbeat.api.admin import store_spec
    from backbeat.api.config import default_store_url

    options = BackgroundTaskSchedulerOptions()
    for job_class in find_job_classes([module_name]):
        options.register_task_type(job_class.__background_task_class_name__ or job_class.__name__, job_class)
    store = store_spec(settings.store or default_store_url(), settings.prefix)
    return BackgroundTaskScheduler(options, store=store, config=settings.config())


def _import(module_name: str, spec: str) -> ModuleType:
    if not module_name:
        raise ConfigurationError(f"APP {spec!r} names no module: use pkg.module or pkg.module:attr")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the current directory's packages
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r} (APP {spec!r}): {exc}") from exc


def _attribute(module: ModuleType, attr: str, spec: str) -> Any:
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise ConfigurationError(f"{module.__name__} has no attribute {attr!r} (APP {spec!r})") from None
    return value


async def _resolve(value: Any, spec: str) -> BackgroundTaskScheduler:
    if isinstance(value, BackgroundTaskScheduler):
        return value
    if callable(value) and not isinstance(value, type):
        factory: Callable[[], Any] = value
        try:
            made = factory()
            if inspect.isawaitable(made):
                made = await made
        except Exception as exc:
            raise ConfigurationError(f"APP {spec!r} raised {exc!r} when called") from exc
        if isinstance(made, BackgroundTaskScheduler):
            return made
        raise ConfigurationError(
            f"APP {spec!r} returned {type(made).__name__}, not a BackgroundTaskScheduler"
        )
    raise ConfigurationError(
        f"APP {spec!r} is a {type(value).__name__}: name a BackgroundTaskScheduler or a factory returning one"
    )
