"""The typer application behind the ``backbeat`` command."""

from __future__ import annotations

from typing import Annotated

import typer

from backbeat.cli import render
from backbeat.cli.common import (
    DEFAULT_STORE,
    JsonOption,
    PrefixOption,
    StoreOption,
    console,
    print_json,
    with_admin,
)
from backbeat.cli.dashboard import dashboard
from backbeat.cli.dead_letters import dead_letters_app
from backbeat.cli.migrate import migrate_app
from backbeat.cli.runs import runs_app
from backbeat.cli.tasks import tasks_app
from backbeat.cli.worker import worker

app = typer.Typer(
    help="backbeat: a distributed, asyncio-first background task scheduler.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def installed_version() -> str:
    """backbeat's version, as its package metadata (from pyproject.toml) says."""
    from importlib.metadata import version as dist_version

    return dist_version("backbeat")


def print_version(value: bool) -> None:
    if value:
        console.print(installed_version())
        raise typer.Exit()


@app.callback()
def main(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=print_version, is_eager=True, help="Print the version and exit"),
    ] = False,
) -> None:
    """backbeat: a distributed, asyncio-first background task scheduler."""


app.add_typer(tasks_app, name="tasks")
app.add_typer(dead_letters_app, name="dead-letters")
app.add_typer(migrate_app, name="migrate")
app.add_typer(runs_app, name="runs")
app.command()(worker)
app.command()(dashboard)


@app.command()
def version() -> None:
    """Print backbeat's version."""
    console.print(installed_version())


@app.command()
def stats(
    store: StoreOption = DEFAULT_STORE, prefix: PrefixOption = None, as_json: JsonOption = False
) -> None:
    """Counts: tasks, paused, orphaned, quarantined, runs in flight, dead letters, next wake-up."""
    counts = with_admin(store, prefix, lambda admin: admin.stats())
    if as_json:
        print_json(counts.to_dict())
    else:
        console.print(render.stats_table(counts))
