"""Migrating every job of a source into a backbeat store, page by page, safe to run again."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from backbeat.abc import Store
from backbeat.errors import TaskExistsError
from backbeat.migrate.convert import JobRefusedError, to_task
from backbeat.migrate.sources.base import Source, StoredJob
from backbeat.model.records import Task


class Outcome(enum.StrEnum):
    """What became of one job."""

    MIGRATED = "migrated"
    """Stored in the target (with ``dry_run``: would be)."""
    SKIPPED = "skipped"
    """Its id is in the target already, and ``replace`` was not asked for."""
    REFUSED = "refused"
    """It cannot be migrated (``detail`` says why); left in the source."""


@dataclass(slots=True)
class JobReport:
    """One job's outcome."""

    job_id: str
    outcome: Outcome
    task: Task | None = None
    detail: str = ""
    removed_from_source: bool = False


@dataclass(slots=True)
class MigrationReport:
    """Every job's outcome, in id order."""

    source: str
    dry_run: bool
    jobs: list[JobReport] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for job in self.jobs if job.outcome is outcome)

    @property
    def refused(self) -> list[JobReport]:
        return [job for job in self.jobs if job.outcome is Outcome.REFUSED]


@dataclass(frozen=True, slots=True)
class MigrationOptions:
    """How to migrate (see :func:`migrate`)."""

    dry_run: bool = False
    move: bool = False
    replace: bool = False
    func_map: Mapping[str, str] = field(default_factory=dict)
    page_size: int = 200


async def migrate(
    source: Source,
    target: Store | None,
    options: MigrationOptions = MigrationOptions(),
    *,
    now: datetime | None = None,
    progress: Callable[[JobReport], None] | None = None,
) -> MigrationReport:
    """Convert every job of ``source`` into a task of ``target`` with the same id.

    Nothing in a job's state is executed (see :mod:`backbeat.migrate.unpickle`); a job that
    cannot be converted is refused, reported with its id and left in the source. An id already
    in ``target`` is skipped unless ``options.replace``, so a second run changes nothing. With
    ``options.move`` a job is removed from the source only once its task is in the target (a
    skipped job too, when the stored task is the same conversion: a run interrupted between
    storing and removing finishes its move). With ``options.dry_run`` nothing is written
    anywhere; ``target`` may then be ``None`` (no ids are reported as skipped).

    Raises:
        StoreUnavailableError: the source or the target cannot be reached.
        ValueError: ``target`` is ``None`` without ``dry_run``, or ``move`` with ``dry_run``.
    """
    if target is None and not options.dry_run:
        raise ValueError("a target store is needed unless dry_run")
    if options.move and options.dry_run:
        raise ValueError("move and dry_run exclude each other")
    when = now or datetime.now(UTC)
    report = MigrationReport(source=source.description, dry_run=options.dry_run)
    after: str | None = None
    while page := await asyncio.to_thread(source.read, after, options.page_size):
        after = page[-1].id
        done = await _migrate_page(page, source, target, options, when)
        report.jobs.extend(done)
        if progress is not None:
            for job in done:
                progress(job)
    return report


async def _migrate_page(
    page: list[StoredJob], source: Source, target: Store | None, options: MigrationOptions, now: datetime
) -> list[JobReport]:
    reports: list[JobReport] = []
    for stored in page:
        try:
            task = to_task(stored.id, stored.state, func_map=options.func_map, now=now)
            reports.append(JobReport(stored.id, Outcome.MIGRATED, task))
        except JobRefusedError as exc:
            reports.append(JobReport(stored.id, Outcome.REFUSED, detail=str(exc)))
    converted = [r for r in reports if r.task is not None]
    if target is None:
        return reports
    tasks = [r.task for r in converted if r.task is not None]
    stored_before: list[JobReport] = []
    if options.dry_run:
        if not options.replace:
            await _skip_existing(target, converted)
    elif tasks:
        try:  # the common case, a first run: the whole page in one atomic add
            await target.add(tasks, replace=options.replace)
        except TaskExistsError:
            stored_before = await _skip_existing(target, converted)
            await _add_one_by_one(target, [r for r in converted if r.outcome is Outcome.MIGRATED])
    if options.move and not options.dry_run:
        # an earlier run may have stored a job and stopped before removing it: finish that move
        moved = [r for r in converted if r.outcome is Outcome.MIGRATED] + stored_before
        await asyncio.to_thread(source.delete, [r.job_id for r in moved])
        for report in moved:
            report.removed_from_source = True
    return reports


async def _skip_existing(target: Store, converted: list[JobReport]) -> list[JobReport]:
    """Mark the jobs whose id the target holds as skipped; returns those it holds as this very
    conversion (stored by an earlier run)."""
    same_ones: list[JobReport] = []
    for report in converted:  # one by one: a page of concurrent reads would exhaust a connection pool
        found = await target.get(report.job_id)
        if found is not None and report.task is not None:
            same = _same_schedule(found, report.task)
            report.outcome = Outcome.SKIPPED
            report.detail = "already in the target" + ("" if same else " as a different task")
            same_ones += [report] if same else []
    return same_ones


async def _add_one_by_one(target: Store, reports: list[JobReport]) -> None:
    for report in reports:
        assert report.task is not None
        try:
            await target.add([report.task])
        except TaskExistsError:  # another process added this id since we looked
            report.outcome, report.detail = Outcome.SKIPPED, "already in the target"


def _same_schedule(stored: Task, converted: Task) -> bool:
    return (stored.job, stored.trigger, stored.args, stored.kwargs) == (
        converted.job,
        converted.trigger,
        converted.args,
        converted.kwargs,
    )
