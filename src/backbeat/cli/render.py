"""Rich tables of tasks, runs, dead letters and counts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.table import Column, Table

from backbeat.api.admin import RunView, Stats, state_of
from backbeat.api.tasklist import TaskInfo
from backbeat.errors import BackbeatError
from backbeat.model.history import HistoryEntry
from backbeat.model.records import DeadLetter
from backbeat.model.trigger_specs import zone_of


def when(value: datetime | None) -> str:
    """A UTC time to the second, or ``-``."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def tasks_table(infos: Sequence[TaskInfo]) -> Table:
    """One row per task."""
    table = Table("id", "name", "trigger", "next run (UTC)", "tags", "state", "runs", "last", title="tasks")
    for info in infos:
        table.add_row(
            info.id,
            info.name,
            info.trigger,
            when(info.next_run_time),
            ",".join(info.tags),
            state_of(info).value,
            str(info.runs),
            info.last_outcome or "-",
        )
    return table


def task_table(info: TaskInfo) -> Table:
    """Every field of one task."""
    table = Table("field", "value", title=f"task {info.id}", show_header=False)
    fields: dict[str, Any] = info.to_dict()
    fields["state"] = state_of(info).value
    for name, value in fields.items():
        shown = when(value) if isinstance(value, datetime) else "-" if value is None else str(value)
        table.add_row(name, shown)
    return table


def runs_table(runs: Sequence[RunView]) -> Table:
    """Runs in the store with their owner process."""
    table = Table("run", "task", "state", "attempt", "owner", "lease until (UTC)", title="runs")
    for run in runs:
        table.add_row(
            run.id,
            run.task_name or run.task_id,
            run.state,
            str(run.attempt),
            run.owner or "-",
            when(run.lease_until),
        )
    return table


def dead_letters_table(letters: Sequence[DeadLetter]) -> Table:
    """One row per dead letter."""
    table = Table("id", "task", "attempt", "failed at (UTC)", "error", title="dead letters")
    for letter in letters:
        name = letter.task.name if letter.task is not None else letter.task_id
        table.add_row(letter.id, name, str(letter.attempt), when(letter.failed_at), letter.error or "-")
    return table


def dead_letter_table(letter: DeadLetter) -> Table:
    """One dead letter, its task and traceback."""
    table = Table("field", "value", title=f"dead letter {letter.id}", show_header=False)
    table.add_row("task", letter.task_id)
    table.add_row("task name", letter.task.name if letter.task is not None else "-")
    table.add_row("fire time (UTC)", when(letter.fire_time))
    table.add_row("attempt", str(letter.attempt))
    table.add_row("failed at (UTC)", when(letter.failed_at))
    table.add_row("error type", letter.error_type or "-")
    table.add_row("error", letter.error or "-")
    table.add_row("traceback", (letter.traceback or "-").rstrip())
    return table


def fire_times_table(info: TaskInfo, times: Sequence[datetime], what: str = "next fire times") -> Table:
    """A task's fire times (by default its next ones), in UTC and in its trigger's time zone."""
    zone_name = str(info.trigger_spec.get("timezone") or "UTC")
    try:
        zone = zone_of(zone_name)
    except BackbeatError:
        zone, zone_name = UTC, "UTC"
    paused = " (paused)" if info.paused else ""
    table = Table("#", "UTC", zone_name, title=f"{what} of {info.name} ({info.id}){paused}: {info.trigger}")
    for number, moment in enumerate(times, 1):
        table.add_row(str(number), when(moment), moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z%z"))
    if not times:
        table.add_row("-", "nothing left to fire", "")
    return table


def history_table(entries: Sequence[HistoryEntry]) -> Table:
    """Finished runs, newest first (``--json`` has every field)."""
    table = Table(
        "ended (UTC)",
        "task",
        Column("outcome", no_wrap=True),
        "attempt",
        "took",
        "host:pid",
        "error",
        title="runs",
    )
    for entry in entries:
        took = "-" if entry.duration is None else f"{entry.duration:.3f}s"
        table.add_row(
            when(entry.ended_at),
            entry.task_name,
            entry.outcome.value,
            str(entry.attempt),
            took,
            f"{entry.host}:{entry.pid}" if entry.host else "-",
            entry.error or "-",
        )
    return table


def stats_table(stats: Stats) -> Table:
    """The counts of ``backbeat stats``."""
    table = Table("what", "count", title="backbeat store", show_header=False)
    for name, value in stats.to_dict().items():
        shown = when(value) if isinstance(value, datetime) or value is None else str(value)
        table.add_row(name.replace("_", " "), shown)
    return table


def letter_dict(letter: DeadLetter, *, traceback: bool = False) -> dict[str, Any]:
    """A dead letter as JSON-able data (its task by id and name)."""
    doc = letter.to_document()
    doc["task_name"] = letter.task.name if letter.task is not None else None
    del doc["task"]
    if not traceback:
        del doc["traceback"]
    return doc
