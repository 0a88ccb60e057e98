"""Job discovery: the ``@backgroundjob`` classes a list of modules (and their submodules) defines."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator, Sequence
from types import ModuleType

from backbeat.errors import ConfigurationError
from backbeat.model.jobs import BackgroundJob


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
