"""Wire a scheduler into an application builder: job discovery, settings, DI registrations."""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

from backbeat.bus import BackgroundTasksBus
from backbeat.config import store_config_from_settings
from backbeat.di import ServiceCollection, ServiceDescriptor
from backbeat.errors import ConfigurationError
from backbeat.hosting import HostedService
from backbeat.jobs import BackgroundJob
from backbeat.options import BackgroundTaskSchedulerOptions

log = logging.getLogger("backbeat")


def find_job_classes(modules: Sequence[str]) -> Iterator[type[BackgroundJob]]:
    """``@backgroundjob`` classes defined in ``modules`` (and their submodules, for packages).

    Raises:
        ConfigurationError: a module cannot be imported.
    """
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigurationError(
                f"cannot scan module {module_name!r} for @backgroundjob classes: {exc}"
            ) from exc
        for scanned in _with_submodules(module):
            for _, member in inspect.getmembers(scanned, inspect.isclass):
                if (
                    issubclass(member, BackgroundJob)
                    and getattr(member, "__background_task_class_name__", None)
                    and member.__module__ == scanned.__name__
                ):
                    yield member


def _with_submodules(module: ModuleType) -> Iterator[ModuleType]:
    yield module
    for info in pkgutil.walk_packages(getattr(module, "__path__", []), prefix=f"{module.__name__}."):
        yield importlib.import_module(info.name)


def configure_builder(builder: Any, modules: Sequence[str], **scheduler_args: Any) -> Any:
    """Register the scheduler, its options and the bus in ``builder.services``.

    The store comes from ``scheduler_args`` (``store=``, ``redis_url=``, ``config=``...), else
    from ``builder.settings.background_job_store`` (seed 000), else the SQLite default.
    """
    settings = getattr(builder, "settings", None)
    store_settings = getattr(settings, "background_job_store", None)
    config = scheduler_args.get("config")
    chosen = {"store", "redis_url"} & set(scheduler_args) or (config is not None and config.job_stores)
    if store_settings and not chosen:
        scheduler_args["store"] = store_config_from_settings(store_settings)
    register_scheduler(builder.services, modules, **scheduler_args)
    return builder


def register_scheduler(services: ServiceCollection, modules: Sequence[str], **scheduler_args: Any) -> None:
    """Register the jobs found in ``modules``, the options, the bus and the scheduler (hosted)."""
    from backbeat.scheduler import BackgroundTaskScheduler

    options = BackgroundTaskSchedulerOptions()
    for job_class in find_job_classes(modules):
        name = job_class.__background_task_class_name__ or job_class.__name__
        options.register_task_type(name, job_class)
        services.add_transient(job_class, job_class)
        log.info("registered background job %r (%s)", name, job_class.__background_task_type__)
    services.try_add_singleton(BackgroundTasksBus, singleton=BackgroundTasksBus())
    services.add_singleton(BackgroundTaskSchedulerOptions, singleton=options)

    def make_scheduler(provider: Any) -> BackgroundTaskScheduler:
        return BackgroundTaskScheduler(
            options,
            provider.get_required_service(BackgroundTasksBus),
            service_provider=provider,
            **scheduler_args,
        )

    services.add_singleton(BackgroundTaskScheduler, implementation_factory=make_scheduler)
    services.add_service(ServiceDescriptor(HostedService, forward_to=BackgroundTaskScheduler))
