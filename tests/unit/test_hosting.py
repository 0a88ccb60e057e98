"""Hosting: hosted services, settings, the builder/application pair and Starlette lifespans."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from backbeat.abc import HostedService
from backbeat.errors import ConfigurationError
from backbeat.hosting.application import (
    ApplicationSettings,
    WebApplication,
    WebApplicationBuilder,
    hosted_lifespan,
)
from backbeat.hosting.di import ServiceCollection, ServiceProviderBase

EVENTS: list[str] = []


class Recorder(HostedService):
    """Records its start and stop in EVENTS."""

    def __init__(self, name: str = "") -> None:
        self.name = name or type(self).__name__
        self.running = False

    async def start_async(self) -> None:
        EVENTS.append(f"start {self.name}")
        self.running = True

    async def stop_async(self) -> None:
        EVENTS.append(f"stop {self.name}")
        self.running = False


class First(Recorder):
    pass


class Second(Recorder):
    pass


class Third(Recorder):
    pass


class FailsToStop(Recorder):
    async def stop_async(self) -> None:
        EVENTS.append(f"stop {self.name}")
        raise RuntimeError("cannot stop")


class FailsToStart(Recorder):
    async def start_async(self) -> None:
        raise RuntimeError("cannot start")


class Injected(Recorder):
    """A hosted service built by constructor injection, as the scheduler is."""

    def __init__(self, settings: ApplicationSettings, provider: ServiceProviderBase) -> None:
        super().__init__()
        self.settings = settings
        self.provider = provider


class Settings(ApplicationSettings):
    background_job_store: dict[str, Any] = {"redis_host": "redis", "redis_port": 6379}
    app_name: str = "seed"
    token: str


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s ASGI lifespan (startup, then shutdown) around an httpx client calling it.

    (httpx's ASGITransport sends no lifespan events, and Starlette's TestClient warns about httpx.)
    """
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            yield client
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
        await task


@pytest.fixture(autouse=True)
def _clear_events() -> None:
    EVENTS.clear()


# -- settings and builder ----------------------------------------------------------------------------


def test_settings_expose_class_attributes_as_independent_copies() -> None:
    first, second = Settings(), Settings(app_name="other", token="t")

    first.background_job_store["redis_db"] = 1

    assert first.app_name == "seed"
    assert (second.app_name, second.token) == ("other", "t")
    assert second.background_job_store == {"redis_host": "redis", "redis_port": 6379}
    assert Settings.background_job_store == {"redis_host": "redis", "redis_port": 6379}
    assert "app_name='seed'" in repr(first)
    with pytest.raises(TypeError, match="no settings named typo"):
        Settings(typo=1)


def test_the_builder_registers_its_settings() -> None:
    settings = Settings()
    app = WebApplicationBuilder(settings).build()

    assert app.settings is settings
    assert app.services.get_required_service(Settings) is settings
    assert app.services.get_required_service(ApplicationSettings) is settings
    assert isinstance(
        WebApplicationBuilder().build().services.get_service(ApplicationSettings), ApplicationSettings
    )


def test_a_hosted_service_resolves_to_one_instance_as_itself_and_as_hosted_service() -> None:
    instance = Second()
    services = ServiceCollection().add_hosted_service(First).add_hosted_service(instance)
    provider = services.build()

    first = provider.get_required_service(First)
    assert provider.get_services(HostedService) == [first, instance]
    assert provider.get_required_service(Second) is instance
    with provider.create_scope() as scope:
        assert scope.get_services(HostedService) == [first, instance]
    with pytest.raises(ConfigurationError, match="not a HostedService"):
        services.add_hosted_service(object())


async def test_hosted_service_hooks_default_to_doing_nothing() -> None:
    class StartOnly(HostedService):
        async def start_async(self) -> None:
            EVENTS.append("start")

    service = StartOnly()
    async with WebApplication(ServiceCollection().add_hosted_service(service).build()):
        pass
    assert EVENTS == ["start"]


# -- the application lifecycle -----------------------------------------------------------------------


async def test_hosted_services_start_in_order_and_stop_in_reverse() -> None:
    builder = WebApplicationBuilder()
    builder.services.add_hosted_service(First).add_singleton(Second).add_hosted_service(Third("third"))
    builder.services.add_singleton(HostedService, implementation_factory=lambda _: Recorder("by factory"))
    app = builder.build()

    async with app:
        assert EVENTS == ["start First", "start Second", "start third", "start by factory"]
        await app.start_async()  # already started: no-op
    assert EVENTS[4:] == ["stop by factory", "stop third", "stop Second", "stop First"]
    assert app.services.get_required_service(Second).running is False


async def test_a_hosted_service_gets_its_dependencies_by_constructor_injection() -> None:
    settings = Settings(token="secret")
    builder = WebApplicationBuilder(settings)
    builder.services.add_hosted_service(Injected)
    app = builder.build()

    async with app:
        service = app.services.get_required_service(Injected)
        assert EVENTS == ["start Injected"]
        assert service.settings is settings
        assert service.provider is app.services
        assert app.services.get_services(HostedService) == [service]


async def test_a_failing_stop_is_logged_and_the_others_still_stop(caplog: pytest.LogCaptureFixture) -> None:
    builder = WebApplicationBuilder()
    builder.services.add_hosted_service(First).add_hosted_service(FailsToStop).add_hosted_service(Third)
    app = builder.build()

    await app.start_async()
    with caplog.at_level(logging.ERROR, logger="backbeat.hosting"):
        await app.stop_async()

    assert EVENTS[3:] == ["stop Third", "stop FailsToStop", "stop First"]
    assert "stopping FailsToStop failed" in caplog.text
    await app.stop_async()  # already stopped: no-op
    assert len(EVENTS) == 6


async def test_a_failing_start_stops_the_services_already_started() -> None:
    builder = WebApplicationBuilder()
    builder.services.add_hosted_service(First).add_hosted_service(FailsToStart).add_hosted_service(Third)
    app = builder.build()

    with pytest.raises(RuntimeError, match="cannot start"):
        await app.start_async()

    assert EVENTS == ["start First", "stop First"]


async def test_a_starlette_app_starts_hosted_services_for_its_lifespan() -> None:
    builder = WebApplicationBuilder()
    builder.services.add_hosted_service(First).add_hosted_service(Second)
    web_app = builder.build()

    async def status(request: Request) -> JSONResponse:
        return JSONResponse({"running": web_app.services.get_required_service(First).running})

    starlette = Starlette(routes=[Route("/status", status)], lifespan=web_app.lifespan())
    assert isinstance(web_app, WebApplication)

    async with served(starlette) as client:
        assert EVENTS == ["start First", "start Second"]
        assert (await client.get("/status")).json() == {"running": True}

    assert EVENTS == ["start First", "start Second", "stop Second", "stop First"]


async def test_hosted_lifespan_needs_no_builder() -> None:
    first, second = First(), Second()

    async def status(request: Request) -> JSONResponse:
        return JSONResponse({"running": [first.running, second.running]})

    starlette = Starlette(routes=[Route("/status", status)], lifespan=hosted_lifespan(first, second))

    async with served(starlette) as client:
        assert (await client.get("/status")).json() == {"running": [True, True]}

    assert EVENTS == ["start First", "start Second", "stop Second", "stop First"]
    assert not first.running


async def test_hosted_lifespan_works_with_fastapi() -> None:
    service = First()

    app = FastAPI(lifespan=hosted_lifespan(service))

    @app.get("/status")
    async def status() -> dict[str, bool]:
        return {"running": service.running}

    async with served(app) as client:
        assert (await client.get("/status")).json() == {"running": True}
    assert EVENTS == ["start First", "stop First"]
