"""``backbeat dashboard``: serve the web dashboard and REST API of a store with uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from backbeat.api.admin import Admin
from backbeat.cli.common import DEFAULT_STORE, USAGE_ERROR, PrefixOption, StoreOption, fail, with_admin


def dashboard(
    store: StoreOption = DEFAULT_STORE,
    prefix: PrefixOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on")] = 8000,
    token: Annotated[
        str | None,
        typer.Option(envvar="BACKBEAT_DASHBOARD_TOKEN", help="Bearer token required by mutating API calls"),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level")] = "info",
) -> None:
    """Serve the dashboard (/), the REST API (/api) and its OpenAPI schema (/openapi.json)."""
    try:
        import uvicorn

        from backbeat.web import create_app
    except ImportError as exc:
        fail(f"the dashboard needs the web extra ({exc}): pip install 'backbeat[web]'", USAGE_ERROR)

    async def reachable(admin: Admin) -> None:
        await admin.store.next_wakeup()

    with_admin(store, prefix, reachable)  # a wrong URL or a store that is down: one line, before serving
    from backbeat.api.admin import store_spec

    app = create_app(store_spec(store, prefix), token=token)
    typer.echo(f"backbeat dashboard on http://{host}:{port}/ (API /api, schema /openapi.json)")
    uvicorn.run(app, host=host, port=port, log_level=log_level)
