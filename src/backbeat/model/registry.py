"""Stable names for what runs: job classes, module functions, service methods, local callables.

A stored task refers to its job by a reference string, never by a pickled object:

* ``job:<name>``                 a ``@backgroundjob`` class, by its registered name
* ``func:<module>:<qualname>``   a module-level function (sync or async)
* ``method:<module>:<Class>.<m>`` a method of a service class, resolved from the provider when it runs
* ``local:<uuid>``               a lambda or closure: only this process can run it, never persisted
"""

from __future__ import annotations

import inspect
import sys
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backbeat.errors import BackbeatError, UnknownJobError
from backbeat.model.codec import import_path, resolve_import_path
from backbeat.model.jobs import BackgroundJob


@dataclass(frozen=True, slots=True)
class JobRef:
    """How a callable is stored: its reference and whether only this process can run it."""

    ref: str
    local: bool = False


class JobRegistry:
    """Maps job names and references to the classes and callables they stand for."""

    def __init__(self) -> None:
        self._classes: dict[str, type[BackgroundJob]] = {}
        self._local: dict[str, Callable[..., Any]] = {}
        self._local_refs: dict[int, str] = {}
        self._targets: dict[str, tuple[type | None, Callable[..., Any]]] = {}
        self._function_refs: dict[Callable[..., Any], JobRef] = {}

    def register_job_class(self, cls: type[BackgroundJob], name: str | None = None) -> str:
        """Register a job class under its stable name; returns the reference ``job:<name>``."""
        job_name = name or getattr(cls, "__background_task_class_name__", None) or cls.__name__
        existing = self._classes.get(job_name)
        if existing is not None and existing is not cls and import_path(existing) != import_path(cls):
            raise BackbeatError(
                f"two job classes claim the name {job_name!r}: {import_path(existing)} and {import_path(cls)}"
            )
        self._classes[job_name] = cls
        return f"job:{job_name}"

    def job_class(self, name: str) -> type[BackgroundJob]:
        """The class registered as ``name``.

        Raises:
            UnknownJobError: no class has that name (renamed, removed, or not scanned).
        """
        try:
            return self._classes[name]
        except KeyError:
            known = ", ".join(sorted(self._classes)) or "none"
            raise UnknownJobError(
                f"no @backgroundjob class is registered as {name!r} (registered: {known}); "
                "was it renamed, removed, or is its module missing from configure(modules=[...])?"
            ) from None

    @property
    def job_classes(self) -> dict[str, type[BackgroundJob]]:
        return dict(self._classes)

    def ref_for(self, func: Callable[..., Any]) -> JobRef:
        """The reference to store for ``func``; lambdas and closures get a local reference."""
        if isinstance(func, type) and issubclass(func, BackgroundJob):
            return JobRef(self.register_job_class(func))
        if inspect.ismethod(func) and not isinstance(func.__self__, type):
            owner = type(func.__self__)
            if _importable(owner) and _importable(func.__func__):
                ref = f"method:{import_path(owner)}.{func.__name__}"
                return JobRef(ref) if self.knows(ref) else self._local_ref(func)
            return self._local_ref(func)
        cached = self._function_refs.get(func)
        if cached is not None:
            return cached
        if _importable(func):
            ref = f"func:{import_path(func)}"
            if self.knows(ref):
                self._function_refs[func] = JobRef(ref)
                return self._function_refs[func]
        return self._local_ref(func)

    def _local_ref(self, func: Callable[..., Any]) -> JobRef:
        key = id(func)
        ref = self._local_refs.get(key)
        if ref is None or self._local.get(ref) is not func:
            ref = f"local:{uuid.uuid4().hex}"
            self._local_refs[key] = ref
            self._local[ref] = func
        return JobRef(ref, local=True)

    def knows(self, ref: str) -> bool:
        """Whether this process can run ``ref`` (without building anything)."""
        if ref in self._targets:  # resolved before: asked on every fire
            return True
        kind, _, rest = ref.partition(":")
        if kind == "job":
            return rest in self._classes
        if kind == "local":
            return ref in self._local
        try:
            self._target(ref)
        except UnknownJobError:
            return False
        return True

    def resolve_callable(self, ref: str, provider: Any) -> Callable[..., Any]:
        """The callable behind a ``func:``, ``method:`` or ``local:`` reference.

        Raises:
            UnknownJobError: the reference cannot be resolved in this process.
        """
        cached = self._targets.get(ref)
        if cached is not None and cached[0] is None:  # a function resolved before: every run's
            return cached[1]
        if ref.startswith("local:"):
            try:
                return self._local[ref]
            except KeyError:
                raise UnknownJobError(
                    f"local task {ref!r} belongs to a process that no longer runs"
                ) from None
        owner, func = self._target(ref)
        if owner is None:
            return func
        return typing.cast(Callable[..., Any], getattr(service_instance(owner, provider), func.__name__))

    def _target(self, ref: str) -> tuple[type | None, Callable[..., Any]]:
        """The function a ``func:``/``method:`` reference names (and its class), checked and cached."""
        cached = self._targets.get(ref)
        if cached is not None:
            return cached
        kind, _, rest = ref.partition(":")
        try:
            if kind == "func":
                func = resolve_import_path(rest)
                if _runnable_function(func, rest):
                    self._targets[ref] = (None, func)
                    return None, func
            elif kind == "method":
                cls_path, _, method = rest.rpartition(".")
                cls = resolve_import_path(cls_path)
                func = getattr(cls, method, None)
                if isinstance(cls, type) and func is not None and _runnable_function(func, cls_path):
                    self._targets[ref] = (cls, func)
                    return cls, typing.cast(Callable[..., Any], func)
        except BackbeatError as exc:
            raise UnknownJobError(f"cannot resolve job {ref!r} in this process: {exc}") from exc
        raise UnknownJobError(f"job reference {ref!r} is not a callable this process can run")


def _runnable_function(obj: Any, path: str) -> bool:
    """Stored references may only name Python functions outside the standard library, so a
    tampered record cannot make the scheduler call ``os.system`` or ``subprocess.run``."""
    module = path.partition(":")[0].split(".")[0]
    return inspect.isfunction(obj) and module not in sys.stdlib_module_names


def _importable(obj: Any) -> bool:
    qualname = getattr(obj, "__qualname__", "")
    if not getattr(obj, "__module__", None) or "<locals>" in qualname or "<lambda>" in qualname:
        return False
    try:
        return resolve_import_path(import_path(obj)) is obj
    except BackbeatError:
        return False


def service_instance(cls: type, provider: Any) -> Any:
    """The service of type ``cls`` from the provider, or a new one built with its dependencies."""
    if provider is not None:
        getter = getattr(provider, "get_service", None)
        found = getter(cls) if getter is not None else None
        if found is not None:
            return found
    return construct(cls, provider)


def construct(cls: type, provider: Any) -> Any:
    """Build ``cls`` resolving each ``__init__`` parameter by its type hint from ``provider``."""
    try:
        hints = typing.get_type_hints(cls.__init__)  # type: ignore[misc]
    except Exception:
        hints = {}
    kwargs: dict[str, Any] = {}
    for name, param in inspect.signature(cls).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        hint = hints.get(name)
        value = _resolve_parameter(hint, provider)
        if value is not None:
            kwargs[name] = value
        elif param.default is param.empty:
            raise UnknownJobError(
                f"cannot build {cls.__qualname__}: no service for parameter {name!r} ({hint!r}); "
                "register the service, or the class itself, in the service provider"
            )
    return cls(**kwargs)


def _resolve_parameter(hint: Any, provider: Any) -> Any:
    if provider is None or not isinstance(hint, type):
        return None
    if isinstance(provider, hint):
        return provider
    getter = getattr(provider, "get_service", None)
    if getter is not None:
        return getter(hint)
    try:
        return provider.get_required_service(hint)
    except Exception:
        return None
