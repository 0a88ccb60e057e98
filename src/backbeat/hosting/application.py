"""Hosting: hosted services, application settings, and a builder/application pair as Neuroglia has them."""

from __future__ import annotations

import copy
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Self

from backbeat.abc import HostedService
from backbeat.hosting.di import ServiceCollection, ServiceDescriptor, ServiceLifetime, ServiceProvider

log = logging.getLogger("backbeat.hosting")

Lifespan = Callable[[Any], AbstractAsyncContextManager[None]]
"""What Starlette and FastAPI take as ``lifespan=``: ``app -> async context manager``."""


class ApplicationSettings:
    """Base class of application settings, declared as class attributes of a subclass.

    Each instance gets its own (deep) copy of the public class attributes, so mutating a dict
    setting never leaks into other instances; keyword arguments override them.

    Raises:
        TypeError: a keyword argument names no declared setting.
    """

    def __init__(self, **overrides: Any) -> None:
        declared = _declared_settings(type(self))
        annotated = {name for klass in type(self).__mro__ for name in getattr(klass, "__annotations__", {})}
        unknown = sorted(set(overrides) - set(declared) - annotated)
        if unknown:
            raise TypeError(f"{type(self).__qualname__} has no settings named {', '.join(unknown)}")
        for name, value in {**declared, **overrides}.items():
            setattr(self, name, copy.deepcopy(value) if name not in overrides else value)

    def __repr__(self) -> str:
        values = ", ".join(f"{name}={getattr(self, name)!r}" for name in _declared_settings(type(self)))
        return f"{type(self).__qualname__}({values})"


class WebApplicationBuilder:
    """Collects the services of an application, then ``build()`` makes the ``WebApplication``.

    ``settings`` is registered as a singleton right away, under its own type and under
    ``ApplicationSettings``.
    """

    def __init__(self, settings: ApplicationSettings | None = None) -> None:
        self.settings: ApplicationSettings = settings if settings is not None else ApplicationSettings()
        self.services = ServiceCollection()
        self.services.add_singleton(type(self.settings), singleton=self.settings)
        if type(self.settings) is not ApplicationSettings:
            self.services.add_singleton(ApplicationSettings, singleton=self.settings)

    def build(self) -> WebApplication:
        """The application, with a provider over the services registered so far.

        A singleton registered under a ``HostedService`` subclass without ``add_hosted_service``
        is hosted too, in registration order.
        """
        collection = ServiceCollection()
        forwarded = {d.forward_to for d in self.services if d.service_type is HostedService and d.forward_to}
        for descriptor in self.services:
            collection.add_service(descriptor)
            service_type = descriptor.service_type
            if _is_hosted_singleton(descriptor) and service_type not in forwarded:
                forwarded.add(service_type)
                collection.add_service(ServiceDescriptor(HostedService, forward_to=service_type))
        return WebApplication(collection.build(), self.settings)


class WebApplication:
    """A built application: its service provider and the lifecycle of its hosted services.

    Hosted services (``services.get_services(HostedService)``) start in registration order and
    stop in reverse. Use ``async with app:``, ``start_async``/``stop_async``, or pass
    ``app.lifespan()`` to Starlette or FastAPI as ``lifespan=``.
    """

    def __init__(self, services: ServiceProvider, settings: ApplicationSettings | None = None) -> None:
        self.services = services
        self.settings = settings
        self._host: _Host | None = None

    async def start_async(self) -> None:
        """Start every hosted service; if one fails, stop those already started and raise.

        Raises:
            ServiceResolutionError: a hosted service cannot be built.
        """
        if self._host is not None:
            return
        hosted: list[HostedService] = self.services.get_services(HostedService)
        host = _Host(hosted)
        await host.start()
        self._host = host

    async def stop_async(self) -> None:
        """Stop the started hosted services, last started first; failures are logged, not raised."""
        host, self._host = self._host, None
        if host is not None:
            await host.stop()

    def lifespan(self) -> Lifespan:
        """A Starlette/FastAPI ``lifespan=``: start hosted services on startup, stop them on shutdown."""

        @asynccontextmanager
        async def lifespan(_app: Any) -> AsyncIterator[None]:
            async with self:
                yield

        return lifespan

    async def __aenter__(self) -> Self:
        await self.start_async()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop_async()


def hosted_lifespan(*services: HostedService) -> Lifespan:
    """A Starlette/FastAPI ``lifespan=`` hosting ``services``, no builder needed.

    Example:
        ``app = FastAPI(lifespan=hosted_lifespan(scheduler))``
    """

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        host = _Host(services)
        await host.start()
        try:
            yield
        finally:
            await host.stop()

    return lifespan


class _Host:
    """Starts services in order, and stops the started ones in reverse."""

    def __init__(self, services: Iterable[HostedService]) -> None:
        unique: dict[int, HostedService] = {}
        for service in services:
            unique.setdefault(id(service), service)
        self._services = list(unique.values())
        self._started: list[HostedService] = []

    async def start(self) -> None:
        for service in self._services:
            try:
                await service.start_async()
            except BaseException:
                log.error("starting %s failed; stopping the services already started", type(service).__name__)
                await self.stop()
                raise
            self._started.append(service)

    async def stop(self) -> None:
        started, self._started = self._started, []
        for service in reversed(started):
            try:
                await service.stop_async()
            except Exception:
                log.exception("stopping %s failed", type(service).__name__)


def _is_hosted_singleton(descriptor: ServiceDescriptor) -> bool:
    service_type = descriptor.service_type
    return (
        descriptor.lifetime is ServiceLifetime.SINGLETON
        and isinstance(service_type, type)
        and issubclass(service_type, HostedService)
        and service_type is not HostedService
    )


def _declared_settings(cls: type) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass is object:
            continue
        for name, value in vars(klass).items():
            if (
                not name.startswith("_")
                and not callable(value)
                and not isinstance(value, (property, classmethod, staticmethod))
            ):
                settings[name] = value
    return settings
