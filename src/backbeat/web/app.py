"""``create_app``: the dashboard and REST API as a FastAPI application, to serve or to mount."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import APIRouter, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from backbeat.abc import Store
from backbeat.api.admin import Admin, DeadLetterNotFoundError, RetryRefusedError
from backbeat.api.config import StoreConfig
from backbeat.api.scheduler import BackgroundTaskScheduler
from backbeat.errors import BackbeatError, ConfigurationError, StoreError, TaskNotFoundError
from backbeat.web.page import PAGE
from backbeat.web.routes import api_router

API_PREFIX = "/api"
STATUS = {
    TaskNotFoundError: 404,
    DeadLetterNotFoundError: 404,
    RetryRefusedError: 409,
    StoreError: 503,
}


def create_app(
    scheduler_or_store_url: BackgroundTaskScheduler | str | StoreConfig | Store,
    token: str | None = None,
    *,
    history_size: int = 500,
) -> FastAPI:
    """The dashboard (``/``), the REST API (``/api/...``) and its schema (``/openapi.json``).

    Given a scheduler (started or not), the app uses it; given a store URL (or config, or
    store), it opens the store on the first request and closes it at shutdown. Either way
    ``/api/history`` summarizes the newest ``history_size`` runs of the store's run history
    (every process's), and ``/api/runs/history`` pages through all of it.
    Mount it in an application (``app.mount("/backbeat", create_app(scheduler))``) or serve it
    (``backbeat dashboard``). With ``token``, mutating calls need ``Authorization: Bearer <token>``.

    Raises:
        ConfigurationError: unknown store URL scheme, or the store's driver is missing.
    """
    if not 1 <= history_size <= 1000:
        raise ConfigurationError(f"history_size must be from 1 to 1000, not {history_size!r}")
    if isinstance(scheduler_or_store_url, BackgroundTaskScheduler):
        admin = Admin(scheduler_or_store_url)
    else:
        admin = Admin.for_store(scheduler_or_store_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await admin.close()  # a mounted app's lifespan does not run: its store closes with the process

    app = FastAPI(
        title="backbeat",
        version=version("backbeat"),
        description="Tasks, runs and dead letters of a backbeat store.",
        lifespan=lifespan,
    )
    app.state.admin = admin
    api = api_router(admin, history_size, token)
    app.include_router(api, prefix=API_PREFIX)

    @app.get("/", include_in_schema=False)
    async def dashboard(request: Request) -> HTMLResponse:
        base = request.scope.get("root_path", "").rstrip("/")
        settings = json.dumps({"base": base, "tokenRequired": token is not None})
        return HTMLResponse(PAGE.replace("__SETTINGS__", settings.replace("</", "<\\/")))

    async def backbeat_error(_: Request, exc: Exception) -> JSONResponse:
        status = next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 500)
        return JSONResponse({"detail": " ".join(str(exc).split())}, status_code=status)

    app.add_exception_handler(BackbeatError, backbeat_error)
    app.add_exception_handler(HTTPException, _allow_every_method(api))
    return app


def _allow_every_method(api: APIRouter) -> Callable[[Request, Exception], Awaitable[Response]]:
    """Starlette's 405 names the methods of the first route whose path matched; a path served by
    several routes (GET and DELETE of one task) must list them all in ``Allow``."""
    routes = [
        (route.path_regex, route.methods or set()) for route in api.routes if isinstance(route, APIRoute)
    ]

    async def handle(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            path = request.scope["path"]
            root = request.scope.get("root_path", "")
            path = path[len(root) :] if root and path.startswith(root) else path
            path = path.removeprefix(API_PREFIX)
            methods = {m for regex, allowed in routes if regex.match(path) for m in allowed}
            if methods:
                exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(methods))}
        return await http_exception_handler(request, exc)

    return handle
