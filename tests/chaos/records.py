"""Reading the runs that worker processes recorded (``tests/integration/jobs.py``) back as intervals."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class Execution:
    """One attempt of one fire time (idempotency key ``run_id``) in one process."""

    run_id: str
    attempt: int
    pid: int
    label: str
    start: float
    end: float | None = None
    fencing_token: int | None = None
    """The run's fencing token in this execution (recorded by the multi-host jobs)."""
    cancelled: bool = False
    """It was cancelled at ``end`` (``jobs.slow`` records ``cancelled`` instead of an end)."""


def executions(records: Iterable[dict[str, Any]]) -> dict[str, list[Execution]]:
    """The executions recorded by ``jobs.slow`` (start, then end or cancelled), per key, in
    order of start."""
    found: dict[tuple[str, int, int], Execution] = {}
    for record in records:
        ident = (record["run_id"], record["attempt"], record["pid"])
        if record["event"] == "start":
            assert ident not in found, f"attempt {ident} started twice"
            found[ident] = Execution(
                record["run_id"],
                record["attempt"],
                record["pid"],
                record["label"],
                record["t"],
                fencing_token=record.get("fencing_token"),
            )
        elif record["event"] in ("end", "cancelled"):
            found[ident].end = record["t"]
            found[ident].cancelled = record["event"] == "cancelled"
    per_key: dict[str, list[Execution]] = defaultdict(list)
    for execution in found.values():
        per_key[execution.run_id].append(execution)
    for runs in per_key.values():
        runs.sort(key=lambda e: e.start)
    return dict(per_key)


def overlaps(per_key: Mapping[str, list[Execution]], killed: Mapping[int, float]) -> list[str]:
    """Where two executions of one key overlapped in time; an execution without an end lasted
    until its process was killed (``killed``: pid -> time of death), or is still running."""
    problems: list[str] = []
    for key, runs in per_key.items():
        for before, after in itertools.pairwise(runs):
            finished = before.end if before.end is not None else killed.get(before.pid)
            if finished is None:
                problems.append(
                    f"{key}: attempt {before.attempt} in live pid {before.pid} never ended "
                    f"but attempt {after.attempt} started in pid {after.pid}"
                )
            elif after.start < finished:
                problems.append(
                    f"{key}: attempt {after.attempt} (pid {after.pid}) started at {after.start:.3f}, "
                    f"before attempt {before.attempt} (pid {before.pid}) ended at {finished:.3f}"
                )
            if after.attempt <= before.attempt:
                problems.append(f"{key}: attempt {after.attempt} after attempt {before.attempt}")
    return problems


def unaccounted_attempts(
    per_key: Mapping[str, list[Execution]], spent: Collection[tuple[str, int]]
) -> list[str]:
    """The attempts of each key, up to its last execution, that did not run and that ``spent``
    ((run id, attempt) pairs seen claimed and ended without starting the job) does not account
    for. A run's attempt grows by one each time a process takes it over from an owner whose
    lease ended: an attempt is rightly skipped only when its owner died or gave the run up
    before starting it."""
    problems: list[str] = []
    for key, runs in per_key.items():
        ran = {e.attempt for e in runs}
        missing = [a for a in range(1, max(ran) + 1) if a not in ran and (key, a) not in spent]
        if missing:
            problems.append(
                f"{key}: attempts {missing} never ran, and nothing shows a claim of them that ended "
                f"unstarted (ran: {sorted(ran)})"
            )
    return problems
