"""The ``backbeat`` command: look at and steer a store's tasks."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from backbeat.config import DEFAULT_STORE_URL, build_store
from backbeat.errors import BackbeatError
from backbeat.tasklist import TaskInfo

app = typer.Typer(
    help="backbeat: a distributed, asyncio-first background task scheduler.", no_args_is_help=True
)
tasks_app = typer.Typer(help="Stored tasks.", no_args_is_help=True)
app.add_typer(tasks_app, name="tasks")
console = Console()

StoreOption = Annotated[
    str,
    typer.Option("--store", "-s", envvar="BACKBEAT_STORE_URL", help="Store URL (sqlite:///..., redis://...)"),
]


@app.command()
def version() -> None:
    """Print backbeat's version."""
    from importlib.metadata import version as dist_version

    console.print(dist_version("backbeat"))


@tasks_app.command("list")
def list_tasks(
    store: StoreOption = DEFAULT_STORE_URL,
    tag: Annotated[str | None, typer.Option(help="Only tasks with this tag")] = None,
) -> None:
    """List stored tasks with their next run time."""
    infos = _run(_list(store, tag))
    table = Table("id", "name", "trigger", "next run (UTC)", "tags", "state", "runs", "last")
    for info in infos:
        state = "orphaned" if info.orphaned else "paused" if info.paused else "scheduled"
        next_run = info.next_run_time.strftime("%Y-%m-%d %H:%M:%S") if info.next_run_time else "-"
        table.add_row(
            info.id,
            info.name,
            info.trigger,
            next_run,
            ",".join(info.tags),
            state,
            str(info.runs),
            info.last_outcome or "-",
        )
    console.print(table)


async def _list(url: str, tag: str | None) -> list[TaskInfo]:
    from backbeat.model import TaskFilter

    store = build_store(url)
    await store.open()
    try:
        infos: list[TaskInfo] = []
        cursor: str | None = None
        while True:
            page, cursor = await store.list(TaskFilter(tag=tag), cursor=cursor, limit=1000)
            infos += [TaskInfo.of(task) for task in page]
            if cursor is None:
                return infos
    finally:
        await store.close()


def _run(coro: object) -> list[TaskInfo]:
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except BackbeatError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def main() -> None:
    """Entry point of the console script."""
    app()
