"""The dashboard's run history, read from the store (every process's runs, kept across
restarts): the newest runs and, per task over them, success rate, last failure and duration
percentiles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from backbeat.model.history import FAILED, HistoryEntry, HistoryOutcome


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSummary:
    """How one task's recent runs went."""

    task_id: str
    task_name: str
    runs: int
    successes: int
    failures: int
    """Runs whose job raised (failure, retry scheduled, dead-lettered)."""
    success_rate: float | None
    """Successes among runs that succeeded or failed (``None`` when none did)."""
    last_ended_at: datetime
    last_failure_at: datetime | None
    last_failure: str | None
    duration_p50: float | None
    duration_p95: float | None
    duration_max: float | None


def percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of sorted values (``None`` for none)."""
    if not ordered:
        return None
    rank = max(int(fraction * len(ordered) + 0.999999) - 1, 0)
    return ordered[min(rank, len(ordered) - 1)]


def summarize(entries: Sequence[HistoryEntry]) -> list[TaskSummary]:
    """One summary per task of ``entries`` (newest first), most recently ended first."""
    by_task: dict[str, list[HistoryEntry]] = {}
    for entry in entries:
        by_task.setdefault(entry.task_id, []).append(entry)
    summaries = []
    for task_id, runs in by_task.items():
        successes = sum(entry.outcome == HistoryOutcome.SUCCESS for entry in runs)
        failed = [entry for entry in runs if entry.outcome in FAILED]
        durations = sorted(entry.duration for entry in runs if entry.duration is not None)
        decided = successes + len(failed)
        last_failure = failed[0] if failed else None
        summaries.append(
            TaskSummary(
                task_id=task_id,
                task_name=runs[0].task_name,
                runs=len(runs),
                successes=successes,
                failures=len(failed),
                success_rate=successes / decided if decided else None,
                last_ended_at=runs[0].ended_at,
                last_failure_at=last_failure.ended_at if last_failure else None,
                last_failure=_describe(last_failure) if last_failure else None,
                duration_p50=percentile(durations, 0.5),
                duration_p95=percentile(durations, 0.95),
                duration_max=durations[-1] if durations else None,
            )
        )
    return summaries


def _describe(entry: HistoryEntry) -> str:
    kind = (entry.error_type or "").rpartition(".")[2]
    return ": ".join(part for part in (kind, entry.error) if part) or entry.outcome.value
