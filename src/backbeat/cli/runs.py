"""``backbeat runs ...``: the run history every process recorded in the store."""

from __future__ import annotations

from typing import Annotated

import typer

from backbeat.api.admin import Admin
from backbeat.api.history import parse_since
from backbeat.cli import render
from backbeat.cli.common import (
    DEFAULT_STORE,
    USAGE_ERROR,
    JsonOption,
    PrefixOption,
    StoreOption,
    console,
    fail,
    print_json,
    with_admin,
)
from backbeat.model.history import HistoryPage

runs_app = typer.Typer(help="Finished runs of every process (the store's run history).", no_args_is_help=True)


@runs_app.command("list")
def list_runs(
    store: StoreOption = DEFAULT_STORE,
    prefix: PrefixOption = None,
    task: Annotated[str | None, typer.Option(help="Only runs of this task id")] = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Only failed runs (failure, retry scheduled, dead-lettered)")
    ] = False,
    outcome: Annotated[
        list[str] | None, typer.Option(help="Only runs that ended so (repeatable): success, missed, ...")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only runs that ended since: 30m, 1h, 7d or an ISO time with zone")
    ] = None,
    limit: Annotated[int, typer.Option(help="Runs per page (1 to 1000)")] = 100,
    cursor: Annotated[str | None, typer.Option(help="Where the previous page ended (it prints it)")] = None,
    as_json: JsonOption = False,
) -> None:
    """List finished runs, newest first."""
    wanted = [*(outcome or []), *(["failed"] if failed else [])] or None
    try:
        since_value = parse_since(since) if since is not None else None
    except ValueError as exc:
        fail(str(exc), USAGE_ERROR)

    async def body(admin: Admin) -> HistoryPage | str:
        try:
            return await admin.run_history(task, wanted, since_value, limit, cursor)
        except ValueError as exc:
            return str(exc)

    page = with_admin(store, prefix, body)
    if isinstance(page, str):
        fail(page, USAGE_ERROR)
    if as_json:
        print_json({"runs": [entry.to_document() for entry in page.entries], "next_cursor": page.next_cursor})
        return
    console.print(render.history_table(page.entries))
    if page.next_cursor is not None:
        console.print(f"more: --cursor '{page.next_cursor}'")
