"""``backbeat migrate apscheduler SOURCE --to STORE``: an APScheduler 3 job store into a backbeat store."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from backbeat.api.admin import Admin
from backbeat.cli import render
from backbeat.cli.common import (
    FAILED,
    USAGE_ERROR,
    JsonOption,
    PrefixOption,
    console,
    fail,
    print_json,
    run_cleanly,
)
from backbeat.migrate import (
    JobReport,
    MigrationOptions,
    MigrationReport,
    Outcome,
    SourceOptions,
    migrate,
    open_source,
    parse_func_map,
)
from backbeat.model import triggers

migrate_app = typer.Typer(help="Move another scheduler's jobs into a backbeat store.", no_args_is_help=True)


@migrate_app.command("apscheduler")
def apscheduler(
    source: Annotated[
        str,
        typer.Argument(
            help="The APScheduler 3 job store: redis://host:6379/0, sqlite:///jobs.sqlite, "
            "postgresql://user@host/db (any SQLAlchemy URL) or mongodb://host/apscheduler",
            show_default=False,
        ),
    ],
    to: Annotated[
        str | None,
        typer.Option("--to", envvar="BACKBEAT_STORE_URL", help="The backbeat store URL to migrate into"),
    ] = None,
    prefix: PrefixOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be created; store and remove nothing")
    ] = False,
    move: Annotated[
        bool, typer.Option("--move", help="Remove each job from the source once its task is stored")
    ] = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite tasks whose id is already in the target")
    ] = False,
    jobs_key: Annotated[
        str | None, typer.Option(help="RedisJobStore jobs_key (default apscheduler.jobs)")
    ] = None,
    run_times_key: Annotated[
        str | None, typer.Option(help="RedisJobStore run_times_key (default apscheduler.run_times)")
    ] = None,
    table: Annotated[
        str | None,
        typer.Option(help="SQLAlchemyJobStore table: name or schema.name (default apscheduler_jobs)"),
    ] = None,
    collection: Annotated[str | None, typer.Option(help="MongoDBJobStore collection (default jobs)")] = None,
    map_func: Annotated[
        list[str] | None,
        typer.Option(help="OLD=NEW: call NEW (module:name) where a job called OLD; repeatable"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Migrate every job of an APScheduler 3 job store into backbeat tasks with the same ids.

    Job states are read by a restricted unpickler: a job naming any other class is refused and
    reported, and nothing in it runs. Exits 1 when a job was refused.
    """
    if to is None and not dry_run:
        fail("give the target store with --to (or BACKBEAT_STORE_URL), or use --dry-run", USAGE_ERROR)
    if move and dry_run:
        fail("--move and --dry-run exclude each other", USAGE_ERROR)
    try:
        func_map = parse_func_map(map_func or [])
    except ValueError as exc:
        fail(str(exc), USAGE_ERROR)
    options = MigrationOptions(dry_run=dry_run, move=move, replace=replace, func_map=func_map)
    where = SourceOptions(jobs_key=jobs_key, run_times_key=run_times_key, table=table, collection=collection)

    async def go() -> MigrationReport:
        reader = open_source(source, where)
        try:
            total = await asyncio.to_thread(reader.count)
            with _progress(enabled=not as_json) as bar:
                job = bar.add_task("migrating", total=total)
                if to is None:
                    return await migrate(reader, None, options, progress=lambda _: bar.advance(job))
                async with Admin.for_store(to, prefix=prefix) as admin:
                    return await migrate(reader, admin.store, options, progress=lambda _: bar.advance(job))
        finally:
            reader.close()

    report = run_cleanly(go)
    if as_json:
        print_json(report_dict(report))
    else:
        if dry_run:
            console.print(plan_table(report))
        for job in report.refused:
            typer.echo(f"refused {job.job_id}: {job.detail}", err=True)
        console.print(summary(report))
    if report.refused:
        raise typer.Exit(FAILED)


def _progress(*, enabled: bool) -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    return Progress(*columns, console=console, transient=True, disable=not enabled)


def summary(report: MigrationReport) -> str:
    """One line: how many jobs were migrated, skipped and refused."""
    verb = "would migrate" if report.dry_run else "migrated"
    removed = sum(1 for job in report.jobs if job.removed_from_source)
    parts = [
        f"{verb} {report.count(Outcome.MIGRATED)}",
        f"skipped {report.count(Outcome.SKIPPED)}",
        f"refused {report.count(Outcome.REFUSED)}",
    ]
    tail = f"; removed {removed} from the source" if removed else ""
    return f"{', '.join(parts)} of {len(report.jobs)} job(s) from {report.source}{tail}"


def plan_table(report: MigrationReport) -> Table:
    """One row per job: what it would become, or why it is skipped or refused."""
    table = Table(title="migration")
    for column in ("id", "outcome", "job", "trigger", "next run (UTC)", "options", "detail"):
        table.add_column(column, overflow="fold")
    for job in report.jobs:
        task = job.task
        if task is None:
            table.add_row(escape(job.job_id), job.outcome.value, "-", "-", "-", "-", escape(job.detail))
            continue
        opts = task.options
        flags = f"grace={opts.misfire_grace_time} coalesce={opts.coalesce} max={opts.max_instances}"
        table.add_row(
            escape(job.job_id),
            job.outcome.value + (" (paused)" if task.paused else ""),
            task.job,
            escape(triggers.describe(task.trigger)),  # "cron[hour='8']" is not markup
            render.when(task.next_run_time),
            flags,
            escape(job.detail) or "-",
        )
    return table


def report_dict(report: MigrationReport) -> dict[str, Any]:
    """The report as JSON-able data: each job's outcome and the task document it became."""
    counts = {outcome.value: report.count(outcome) for outcome in Outcome}
    return {
        "source": report.source,
        "dry_run": report.dry_run,
        **counts,
        "jobs": [_job(j) for j in report.jobs],
    }


def _job(job: JobReport) -> dict[str, Any]:
    return {
        "id": job.job_id,
        "outcome": job.outcome.value,
        "detail": job.detail or None,
        "removed_from_source": job.removed_from_source,
        "task": job.task.to_document() if job.task is not None else None,
    }
