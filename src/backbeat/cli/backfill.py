"""``backbeat tasks backfill``: run a recurring task's past fire times, with a progress bar."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from backbeat.api.admin import Admin
from backbeat.api.backfill import MAX_FIRE_TIMES, OVERLAPS, BackfillProgress, check_backfill_overlap
from backbeat.api.history import parse_since
from backbeat.api.tasklist import TaskInfo
from backbeat.cli import render
from backbeat.cli.common import USAGE_ERROR, console, fail, print_json, with_admin

INTERRUPTED = 130
"""Exit code of a backfill stopped by Ctrl-C (the runs it added stay in the store and run)."""

FromOption = Annotated[
    str,
    typer.Option(
        "--from", help="First fire time: an ISO time with zone, or how long ago (7d, 36h)", show_default=False
    ),
]
ToOption = Annotated[
    str,
    typer.Option(
        "--to", help="Last fire time: an ISO time with zone, or how long ago (0s: now)", show_default=False
    ),
]
OverlapOption = Annotated[
    str, typer.Option(help=f"How backfilled runs meet other runs of the task: {', '.join(OVERLAPS)}")
]
MaxOption = Annotated[int, typer.Option("--max", help="Refuse a range of more fire times than this")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="List the fire times; run nothing")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (no progress bar)")]
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        help="Give up after this many seconds (exit 1; the runs added stay in the store and run)",
        show_default=False,
    ),
]


def backfill(
    task_id: str,
    store: str,
    prefix: str | None,
    start: str,
    end: str,
    overlap: str,
    max_fire_times: int,
    dry_run: bool,
    as_json: bool,
    timeout: float | None = None,
) -> None:
    """The command's body (its options are declared by ``backbeat.cli.tasks``)."""
    try:
        first, last = parse_since(start, "--from"), parse_since(end, "--to")
        check_backfill_overlap(overlap)
        if timeout is not None and not timeout > 0:
            raise ValueError(f"--timeout must be a number of seconds > 0, not {timeout}")
    except ValueError as exc:
        fail(str(exc), USAGE_ERROR)
    if dry_run:
        _dry_run(task_id, store, prefix, first, last, max_fire_times, as_json)
        return
    bar = _Bar(enabled=not as_json)

    async def body(admin: Admin) -> BackfillProgress | str | TimeoutError:
        try:
            with bar:
                async with asyncio.timeout(timeout):
                    return await admin.backfill(
                        task_id,
                        first,
                        last,
                        overlap=overlap,
                        max_fire_times=max_fire_times,
                        on_progress=bar.update,
                    )
        except ValueError as exc:
            return str(exc)
        except TimeoutError as exc:
            return exc

    try:
        done = with_admin(store, prefix, body)
    except KeyboardInterrupt:
        fail("interrupted: the runs already added stay in the store and run", INTERRUPTED)
    if isinstance(done, TimeoutError):
        fail(
            f"gave up after --timeout {timeout:g} s ({bar.state()}); the runs already added stay in"
            " the store and run: are workers running?",
            1,
        )
    if isinstance(done, str):
        fail(done, USAGE_ERROR)
    if as_json:
        print_json(done.to_dict())
    else:
        _summary(done)
    if done.failed:
        raise typer.Exit(1)


def _summary(done: BackfillProgress) -> None:
    console.print(
        f"backfilled {done.task_id}: {len(done.finished)} of {done.total} fire times ran"
        f" ({len(done.failed)} failed), {len(done.skipped)} skipped"
    )
    for fire_time in done.skipped:
        console.print(f"skipped {render.when(fire_time)} UTC: another run of the task existed at its turn")
    for fire_time in done.failed:
        console.print(f"{done.outcomes[fire_time]}: {render.when(fire_time)} UTC (see backbeat runs list)")
    unknown = len(done.finished) - len(done.outcomes)
    if unknown:
        console.print(f"{unknown} fire times ran with no history entry to say how (history turned off?)")


def _dry_run(
    task_id: str,
    store: str,
    prefix: str | None,
    first: datetime | timedelta,
    last: datetime | timedelta,
    max_fire_times: int,
    as_json: bool,
) -> None:
    async def body(admin: Admin) -> tuple[TaskInfo, list[datetime]] | str:
        try:
            return await admin.backfill_fire_times(task_id, first, last, max_fire_times=max_fire_times)
        except ValueError as exc:
            return str(exc)

    found = with_admin(store, prefix, body)
    if isinstance(found, str):
        fail(found, USAGE_ERROR)
    info, times = found
    if as_json:
        print_json({"task_id": info.id, "trigger": info.trigger, "fire_times": times})
    else:
        console.print(render.fire_times_table(info, times, what="fire times a backfill would run"))


class _Bar:
    """A rich progress bar on stderr (stdout keeps the summary), fed by ``on_progress``."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("backfill"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.bar = self.progress.add_task("backfill", total=None, note="")
        self.last: BackfillProgress | None = None

    def __enter__(self) -> None:
        if self.enabled:
            self.progress.start()

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.stop()

    def state(self) -> str:
        """Where the backfill stood at its last report."""
        last = self.last
        if last is None:
            return "nothing added yet"
        return (
            f"{last.done} of {last.total} fire times done, {len(last.started) - len(last.finished)} running"
        )

    def update(self, progress: BackfillProgress) -> None:
        self.last = progress
        note = f"running {len(progress.started) - len(progress.finished)}"
        if progress.skipped:
            note += f", skipped {len(progress.skipped)}"
        self.progress.update(self.bar, total=progress.total, completed=progress.done, note=note)


__all__ = ["MAX_FIRE_TIMES", "backfill"]
