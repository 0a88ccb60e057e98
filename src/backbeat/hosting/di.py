"""A small dependency-injection container with Neuroglia's API: collections, providers and scopes."""

from __future__ import annotations

import contextlib
import inspect
import logging
import threading
import types
import typing
from abc import ABC
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from enum import Enum
from typing import Any, Protocol, Self, TypeVar, runtime_checkable

from backbeat.abc import HostedService
from backbeat.api.bus import BackgroundTasksBus
from backbeat.api.discovery import find_job_classes
from backbeat.api.options import BackgroundTaskSchedulerOptions
from backbeat.api.scheduler import BackgroundTaskScheduler
from backbeat.errors import BackbeatError, ConfigurationError

T = TypeVar("T")
Factory = Callable[["ServiceProviderBase"], Any]

log = logging.getLogger("backbeat.di")


class ServiceResolutionError(BackbeatError):
    """A service cannot be resolved: not registered, a circular dependency, or its constructor failed.

    Attributes:
        service_type: the type that could not be resolved.
        chain: the types being built when it failed, outermost first.
    """

    def __init__(self, message: str, service_type: Any = None, chain: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.service_type = service_type
        self.chain = chain


class ServiceLifetime(Enum):
    """How long a resolved service lives."""

    SINGLETON = "singleton"
    SCOPED = "scoped"
    TRANSIENT = "transient"


@runtime_checkable
class SupportsGetRequiredService(Protocol):
    """Anything backbeat accepts as a service provider."""

    def get_required_service(self, service_type: type[T], /) -> T: ...


class ServiceDescriptor:
    """How to obtain one service: a type to construct, an instance, a factory, or another registration.

    When several are given, ``singleton`` wins over ``implementation_factory``, which wins over
    ``implementation_type`` (Neuroglia's order). With none, ``service_type`` itself is constructed.

    Raises:
        ConfigurationError: an instance with a lifetime other than singleton, or a non-class type.
    """

    def __init__(
        self,
        service_type: Any,
        implementation_type: Any = None,
        singleton: Any = None,
        implementation_factory: Factory | None = None,
        lifetime: ServiceLifetime = ServiceLifetime.SINGLETON,
        *,
        forward_to: Any = None,
    ) -> None:
        if singleton is not None and lifetime is not ServiceLifetime.SINGLETON:
            raise ConfigurationError(f"an instance of {_name(service_type)} can only be a singleton")
        if singleton is None and implementation_factory is None and forward_to is None:
            implementation_type = implementation_type or service_type
        if implementation_type is not None and not inspect.isclass(_origin(implementation_type)):
            raise ConfigurationError(f"{implementation_type!r} is not a class, so it cannot be constructed")
        self.service_type = service_type
        self.implementation_type = implementation_type
        self.singleton = singleton
        self.implementation_factory = implementation_factory
        self.lifetime = lifetime
        self.forward_to = forward_to
        """Resolve this registration as ``forward_to`` is resolved (same instance, same lifetime)."""


class ServiceCollection(list[ServiceDescriptor]):
    """The registrations an application makes; ``build()`` turns them into a ``ServiceProvider``.

    When a type is registered more than once, ``get_service`` returns the first registration
    (as Neuroglia does) and ``get_services`` returns all of them.
    """

    def add_service(self, descriptor: ServiceDescriptor) -> Self:
        """Append ``descriptor``."""
        self.append(descriptor)
        return self

    def add_singleton(
        self,
        service_type: Any,
        implementation_type: Any = None,
        singleton: Any = None,
        implementation_factory: Factory | None = None,
    ) -> Self:
        """Register a service built once (or the given ``singleton`` instance)."""
        lifetime = ServiceLifetime.SINGLETON
        return self._add(service_type, implementation_type, singleton, implementation_factory, lifetime)

    def try_add_singleton(
        self,
        service_type: Any,
        implementation_type: Any = None,
        singleton: Any = None,
        implementation_factory: Factory | None = None,
    ) -> Self:
        """Like ``add_singleton`` but only when ``service_type`` is not registered yet."""
        if self._has(service_type):
            return self
        return self.add_singleton(service_type, implementation_type, singleton, implementation_factory)

    def add_scoped(
        self,
        service_type: Any,
        implementation_type: Any = None,
        singleton: Any = None,
        implementation_factory: Factory | None = None,
    ) -> Self:
        """Register a service built once per scope (``singleton`` is refused, as in Neuroglia)."""
        lifetime = ServiceLifetime.SCOPED
        return self._add(service_type, implementation_type, singleton, implementation_factory, lifetime)

    def add_transient(
        self,
        service_type: Any,
        implementation_type: Any = None,
        implementation_factory: Factory | None = None,
    ) -> Self:
        """Register a service built anew each time it is resolved."""
        lifetime = ServiceLifetime.TRANSIENT
        return self._add(service_type, implementation_type, None, implementation_factory, lifetime)

    def add_hosted_service(self, service: Any) -> Self:
        """Register a hosted service (a class or an instance) as a singleton, also under ``HostedService``.

        Resolving it as its own type or as ``HostedService`` returns the same instance.

        Raises:
            ConfigurationError: ``service`` has no ``start_async``/``stop_async``.
        """
        target = service if isinstance(service, type) else type(service)
        if not (hasattr(target, "start_async") and hasattr(target, "stop_async")):
            raise ConfigurationError(f"{_name(target)} is not a HostedService (no start_async/stop_async)")
        self.add_singleton(target, singleton=None if isinstance(service, type) else service)
        return self.add_service(ServiceDescriptor(HostedService, forward_to=target))

    def add_background_task_scheduler(self, modules: Sequence[str] = (), **scheduler_args: Any) -> Self:
        """Register a ``BackgroundTaskScheduler`` (hosted), its options, the bus, and the
        ``@backgroundjob`` classes found in ``modules`` (each as a transient service).

        ``scheduler_args`` are the scheduler's: ``redis_url``, ``job_store_prefix``, ``store``, ``config``...
        """
        options = BackgroundTaskSchedulerOptions()
        for job_class in find_job_classes(modules):
            name = job_class.__background_task_class_name__ or job_class.__name__
            options.register_task_type(name, job_class)
            self.add_transient(job_class, job_class)
            log.info("registered background job %r (%s)", name, job_class.__background_task_type__)
        self.try_add_singleton(BackgroundTasksBus, singleton=BackgroundTasksBus())
        self.add_singleton(BackgroundTaskSchedulerOptions, singleton=options)

        def make_scheduler(provider: ServiceProviderBase) -> BackgroundTaskScheduler:
            bus = provider.get_required_service(BackgroundTasksBus)
            return BackgroundTaskScheduler(options, bus, service_provider=provider, **scheduler_args)

        self.add_singleton(BackgroundTaskScheduler, implementation_factory=make_scheduler)
        return self.add_service(ServiceDescriptor(HostedService, forward_to=BackgroundTaskScheduler))

    def build(self) -> ServiceProvider:
        """A provider for the registrations made so far."""
        return ServiceProvider(self)

    def _add(self, *args: Any) -> Self:
        return self.add_service(ServiceDescriptor(*args))

    def _has(self, service_type: Any) -> bool:
        return any(descriptor.service_type == service_type for descriptor in self)


class ServiceProviderBase(ABC):  # noqa: B024 - see the docstring
    """What resolves services: the root ``ServiceProvider`` and every ``ServiceScope``.

    Its methods are not abstract (as in Neuroglia) so that type checkers accept
    ``get_service(ServiceProviderBase)``, which ``type[T]`` refuses for abstract classes.
    """

    def get_service(self, service_type: type[T]) -> T | None:
        """The first registration of ``service_type``, or ``None`` when there is none."""
        raise NotImplementedError

    def get_required_service(self, service_type: type[T]) -> T:
        """The first registration of ``service_type``.

        Raises:
            ServiceResolutionError: nothing is registered for it, or building it failed.
        """
        service = self.get_service(service_type)
        if service is None:
            chain = _chain_types()
            while_ = f" (while building {_path(chain)})" if chain else ""
            raise ServiceResolutionError(
                f"no service registered for {_name(service_type)}{while_}; register it with "
                "add_singleton/add_scoped/add_transient",
                service_type,
                chain,
            )
        return service

    def get_services(self, service_type: type[T]) -> list[T]:
        """Every registration of ``service_type``, in registration order."""
        raise NotImplementedError

    def create_scope(self) -> ServiceScope:
        """A new scope, whose scoped services live until it is disposed."""
        raise NotImplementedError


class ServiceProvider(ServiceProviderBase):
    """The root provider: builds singletons once and transients each time, by constructor injection.

    Constructors get their arguments from the type hints of ``__init__``: each annotated parameter
    is resolved (the first resolvable member of a union), one annotated ``ServiceProviderBase``
    receives the resolving provider, and an unresolvable one keeps its default (``None`` when optional).
    """

    def __init__(self, descriptors: list[ServiceDescriptor]) -> None:
        self._root = self
        self._index: dict[Any, list[ServiceDescriptor]] = {}
        for descriptor in descriptors:
            self._index.setdefault(descriptor.service_type, []).append(descriptor)
        specials = (ServiceProviderBase, ServiceProvider, ServiceScope)
        self._names = {getattr(t, "__name__", ""): t for t in (*self._index, *specials)}
        self._singletons: dict[int, Any] = {}
        # Re-entrant: building a singleton resolves its dependencies while the lock is held.
        self._lock = threading.RLock()
        self._scoped: dict[int, Any] | None = None  # None: the root, which has no scoped services
        self._created: list[Any] = []

    def get_service(self, service_type: type[T]) -> T | None:
        services = self._all(service_type, first=True)
        return services[0] if services else None

    def get_services(self, service_type: type[T]) -> list[T]:
        return self._all(service_type)

    def create_scope(self) -> ServiceScope:
        return ServiceScope(self._root)

    def _all(self, service_type: Any, first: bool = False) -> list[Any]:
        if service_type in (ServiceProviderBase, SupportsGetRequiredService, ServiceProvider):
            return [self]
        if service_type is ServiceScope:
            return [self] if self._scoped is not None else []
        try:
            descriptors = self._index.get(service_type, [])
        except TypeError:  # an unhashable annotation
            return []
        return [self._resolve(descriptor) for descriptor in descriptors[: 1 if first else None]]

    def _resolve(self, descriptor: ServiceDescriptor) -> Any:
        if descriptor.forward_to is not None:
            return self.get_required_service(descriptor.forward_to)
        if descriptor.singleton is not None:
            return descriptor.singleton
        if descriptor.lifetime is ServiceLifetime.TRANSIENT:
            return self._build(descriptor)
        if descriptor.lifetime is ServiceLifetime.SINGLETON:
            with self._lock:
                if id(descriptor) not in self._singletons:
                    # Built by the root, never a scope, so a singleton cannot capture a scoped service.
                    self._singletons[id(descriptor)] = self._root._build(descriptor)
                return self._singletons[id(descriptor)]
        if self._scoped is None:
            chain = (*_chain_types(), descriptor.service_type)
            raise ServiceResolutionError(
                f"scoped service {_name(descriptor.service_type)} cannot be resolved from the root provider "
                f"({_path(chain)}); resolve it from provider.create_scope()",
                descriptor.service_type,
                chain,
            )
        with self._lock:
            if id(descriptor) not in self._scoped:
                self._scoped[id(descriptor)] = self._build(descriptor)
                self._created.append(self._scoped[id(descriptor)])
            return self._scoped[id(descriptor)]

    def _build(self, descriptor: ServiceDescriptor) -> Any:
        chain = _building.get()
        if any(entry is descriptor for entry in chain):
            types_ = (*(d.service_type for d in chain), descriptor.service_type)
            raise ServiceResolutionError(
                f"circular dependency: {_path(types_)}", descriptor.service_type, types_
            )
        token = _building.set((*chain, descriptor))
        try:
            if descriptor.implementation_factory is not None:
                return descriptor.implementation_factory(self)
            return self._construct(descriptor.implementation_type)
        except ServiceResolutionError:
            raise
        except Exception as exc:
            types_ = _chain_types()
            message = f"failed to build {_name(descriptor.service_type)} ({_path(types_)})"
            raise ServiceResolutionError(
                f"{message}: {type(exc).__name__}: {exc}", descriptor.service_type, types_
            ) from exc
        finally:
            _building.reset(token)

    def _construct(self, cls: Any) -> Any:
        target = _origin(cls)
        hints = self._hints(target)
        try:
            parameters = inspect.signature(target).parameters.values()
        except (TypeError, ValueError):  # builtins without a signature
            parameters = inspect.Signature().parameters.values()
        kwargs: dict[str, Any] = {}
        for param in parameters:
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
                continue
            hint = hints.get(param.name, param.annotation)
            found, value = self._argument(hint)
            if found:
                kwargs[param.name] = value
            elif param.default is param.empty:
                types_ = _chain_types()
                raise ServiceResolutionError(
                    f"cannot build {_name(target)} ({_path(types_)}): no service registered for "
                    f"parameter {param.name!r} of type {_name(hint)}",
                    hint,
                    types_,
                )
        return cls(**kwargs)

    def _hints(self, target: type) -> dict[str, Any]:
        init = getattr(target, "__init__", None)
        if not inspect.isfunction(init):
            return {}
        try:
            return typing.get_type_hints(init)
        except Exception:
            # A name get_type_hints cannot see (a class declared inside a function): evaluate each
            # annotation alone, also against the names of the registered types.
            hints = dict(init.__annotations__)
            for name, annotation in hints.items():
                with contextlib.suppress(Exception):  # unresolvable: left a string, so a default is kept
                    hints[name] = eval(annotation, dict(init.__globals__), self._names)
            return hints

    def _argument(self, hint: Any) -> tuple[bool, Any]:
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        members = typing.get_args(hint) if union else (hint,)
        for member in members:
            if member is not type(None) and member is not Any and not isinstance(member, str):
                services = self._all(member, first=True)
                if services:
                    return True, services[0]
        return type(None) in members, None


class ServiceScope(ServiceProvider):
    """A scope: its own provider, in which scoped services are built once and disposed with it.

    Use it as a context manager (``with`` or ``async with``). On exit each scoped service is closed,
    last built first, by its ``close()`` or ``dispose()`` (``aclose()``/``dispose_async()`` first
    when leaving ``async with``).
    """

    def __init__(self, root: ServiceProvider) -> None:
        self._root = root
        self._index, self._names, self._singletons, self._lock = (
            root._index,
            root._names,
            root._singletons,
            root._lock,
        )
        self._scoped = {}
        self._created = []

    def get_service_provider(self) -> ServiceProviderBase:
        """The provider that resolves services in this scope (the scope itself)."""
        return self

    def dispose(self) -> None:
        """Close the scoped services with their synchronous ``close()``/``dispose()``."""
        for service in self._take():
            try:
                result = _close(service, ("close", "dispose"))
                if inspect.iscoroutine(result):
                    result.close()
                    log.warning(
                        "%s closes asynchronously: leave the scope with 'async with'", _name(type(service))
                    )
            except Exception:
                log.exception("disposing %s failed", _name(type(service)))

    async def aclose(self) -> None:
        """Close the scoped services, awaiting async closers."""
        for service in self._take():
            try:
                result = _close(service, ("aclose", "dispose_async", "close", "dispose"))
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("disposing %s failed", _name(type(service)))

    def _take(self) -> list[Any]:
        created, self._created, self._scoped = self._created, [], {}
        return created[::-1]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


_building: ContextVar[tuple[ServiceDescriptor, ...]] = ContextVar("backbeat_di_building", default=())


def _chain_types() -> tuple[Any, ...]:
    return tuple(descriptor.service_type for descriptor in _building.get())


def _close(service: Any, names: tuple[str, ...]) -> Any:
    for name in names:
        method = getattr(service, name, None)
        if callable(method):
            return method()
    return None


def _origin(tp: Any) -> Any:
    return typing.get_origin(tp) or tp


def _name(tp: Any) -> str:
    return tp.__qualname__ if isinstance(tp, type) else repr(tp)


def _path(types_: tuple[Any, ...]) -> str:
    return " -> ".join(_name(tp) for tp in types_)
