"""``backbeat tasks ...``: list, show, pause, resume, trigger, remove, preview and backfill stored tasks."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from backbeat.api.admin import Admin, RunView, TaskState, state_of
from backbeat.api.tasklist import TaskInfo
from backbeat.cli import backfill as backfill_cli
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
from backbeat.model.records import DeadLetter

tasks_app = typer.Typer(
    help="Stored tasks: list, show, pause, resume, trigger, remove.", no_args_is_help=True
)

TaskId = Annotated[str, typer.Argument(help="The task's id", show_default=False)]


@tasks_app.command("list")
def list_tasks(
    store: StoreOption = DEFAULT_STORE,
    prefix: PrefixOption = None,
    tag: Annotated[str | None, typer.Option(help="Only tasks with this tag")] = None,
    name: Annotated[str | None, typer.Option(help="Only tasks with this name")] = None,
    state: Annotated[TaskState | None, typer.Option(help="Only tasks in this state")] = None,
    as_json: JsonOption = False,
) -> None:
    """List stored tasks with their next run time, state and last outcome."""
    infos = with_admin(store, prefix, lambda admin: admin.tasks(tag=tag, name=name, state=state))
    if as_json:
        print_json([task_dict(info) for info in infos])
    else:
        console.print(render.tasks_table(infos))


@tasks_app.command("show")
def show(
    task_id: TaskId,
    store: StoreOption = DEFAULT_STORE,
    prefix: PrefixOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one task, its runs in the store and its dead letters."""

    async def body(admin: Admin) -> tuple[TaskInfo, list[RunView], list[DeadLetter]]:
        info = await admin.task(task_id)
        return info, await admin.runs(task_id), await admin.dead_letters(task_id)

    info, runs, letters = with_admin(store, prefix, body)
    if as_json:
        doc = task_dict(info)
        doc["runs_in_store"] = [asdict(run) for run in runs]
        doc["dead_letters"] = [render.letter_dict(letter) for letter in letters]
        print_json(doc)
        return
    console.print(render.task_table(info))
    if runs:
        console.print(render.runs_table(runs))
    if letters:
        console.print(render.dead_letters_table(letters))


@tasks_app.command("pause")
def pause(task_id: TaskId, store: StoreOption = DEFAULT_STORE, prefix: PrefixOption = None) -> None:
    """Stop a task from firing until it is resumed (a run in flight finishes)."""
    with_admin(store, prefix, lambda admin: admin.pause(task_id))
    console.print(f"paused {task_id}")


@tasks_app.command("resume")
def resume(task_id: TaskId, store: StoreOption = DEFAULT_STORE, prefix: PrefixOption = None) -> None:
    """Let a paused task fire again, from its next fire time after now."""
    info = with_admin(store, prefix, lambda admin: admin.resume(task_id))
    console.print(f"resumed {task_id}; next run {render.when(info.next_run_time)} UTC")


@tasks_app.command("trigger")
def trigger(task_id: TaskId, store: StoreOption = DEFAULT_STORE, prefix: PrefixOption = None) -> None:
    """Run a task once now, besides its schedule (a running worker picks it up)."""
    run_id = with_admin(store, prefix, lambda admin: admin.trigger(task_id))
    if run_id is None:
        fail(
            f"task {task_id!r} already has as many runs as it may (max_instances, or a run under its"
            " overlap policy); not triggered"
        )
    console.print(f"triggered {task_id}: run {run_id}")


@tasks_app.command("remove")
def remove(
    task_id: Annotated[str | None, typer.Argument(help="The task's id", show_default=False)] = None,
    store: StoreOption = DEFAULT_STORE,
    prefix: PrefixOption = None,
    tag: Annotated[str | None, typer.Option(help="Remove every task with this tag instead")] = None,
) -> None:
    """Remove a task by id, or every task carrying ``--tag`` (runs in flight finish)."""
    if (task_id is None) == (tag is None):
        fail("give either a task id or --tag", USAGE_ERROR)
    if tag is not None:
        removed = with_admin(store, prefix, lambda admin: admin.remove_by_tag(tag))
        console.print(
            f"removed {len(removed)} task(s) tagged {tag!r}" + (": " + ", ".join(removed) if removed else "")
        )
        return
    assert task_id is not None
    with_admin(store, prefix, lambda admin: admin.remove(task_id))
    console.print(f"removed {task_id}")


def task_dict(info: TaskInfo) -> dict[str, object]:
    """A task as JSON-able data, with its state."""
    doc = info.to_dict()
    doc["tags"] = list(info.tags)
    doc["state"] = state_of(info).value
    return doc


@tasks_app.command("next")
def next_fire_times(
    task_id: TaskId,
    store: StoreOption = DEFAULT_STORE,
    prefix: PrefixOption = None,
    count: Annotated[int, typer.Option(help="How many fire times (1 to 1000)")] = 10,
    as_json: JsonOption = False,
) -> None:
    """Preview a task's next fire times (UTC and its trigger's time zone), without jitter."""
    if not 1 <= count <= 1000:
        fail(f"--count must be from 1 to 1000, not {count}", USAGE_ERROR)
    info, times = with_admin(store, prefix, lambda admin: admin.next_fire_times(task_id, count))
    if as_json:
        print_json({"task_id": info.id, "trigger": info.trigger, "next_fire_times": times})
    else:
        console.print(render.fire_times_table(info, times))


@tasks_app.command("backfill")
def backfill(
    task_id: TaskId,
    start: backfill_cli.FromOption,
    end: backfill_cli.ToOption,
    store: StoreOption = DEFAULT_STORE,
    prefix: PrefixOption = None,
    overlap: backfill_cli.OverlapOption = "buffer_all",
    max_fire_times: backfill_cli.MaxOption = backfill_cli.MAX_FIRE_TIMES,
    dry_run: backfill_cli.DryRunOption = False,
    as_json: backfill_cli.JsonOption = False,
    timeout: backfill_cli.TimeoutOption = None,
) -> None:
    """Run a recurring task's past fire times from --from to --to (running workers run them),
    with a progress bar; --dry-run lists them. Exit 0 when each succeeded (or was skipped by
    --overlap skip), 1 when a run did not (by the run history), for an unknown task or store or
    after --timeout, 2 for a refused range or option, 130 on Ctrl-C."""
    backfill_cli.backfill(
        task_id, store, prefix, start, end, overlap, max_fire_times, dry_run, as_json, timeout
    )
