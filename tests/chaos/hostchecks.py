"""What multi-host scenarios check in the records of ``tests/chaos/hostjobs.py``: runs of one
key on two hosts at once, fencing tokens that did not grow with each execution of a key,
one-shots that never succeeded, how soon a faulted host's runs were taken over, and the
longest silence of the recurring task."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.chaos.records import Execution, executions

Ident = tuple[str, int, int]
"""(run id, attempt, pid): one execution."""


@dataclass
class Outage:
    """How a fault stopped one worker host from running or from reaching the store."""

    victim_pid: int
    victim_host: str
    start: float
    """When the victim stopped renewing (link cut, freeze, kill, degradation began)."""
    end: float
    """When it could again (link up, SIGCONT, degradation removed; the kill time for a kill)."""
    takeover_from: float
    """Takeovers are due within lease + 1 s of this (``start``; ``end`` for a degradation, where
    a lease may be lost at any time while it lasts)."""
    must_take_over: bool
    """Every one-shot running on the victim at ``start`` must be run again elsewhere (the
    victim cannot renew for longer than a lease)."""
    killed: dict[int, float] = field(default_factory=dict)
    paused: dict[int, tuple[float, float]] = field(default_factory=dict)


@dataclass
class Measurement:
    """The outcome of one scenario, with every problem found."""

    scenario: str
    overlaps: list[str]
    lost: list[str]
    interrupted: int
    takeovers: dict[str, float]
    """Key -> seconds from ``Outage.start`` to its rerun's start on another host (negative: a
    steal before the fault)."""
    late: list[str]
    tick_gap_after: float
    tick_gap_limit: float
    problems: list[str]

    @property
    def worst_takeover(self) -> float | None:
        return max(self.takeovers.values(), default=None)

    def summary(self) -> str:
        worst = "n/a" if self.worst_takeover is None else f"{self.worst_takeover:.2f}s"
        lines = [
            f"[{self.scenario}] overlaps={len(self.overlaps)} lost={len(self.lost)} "
            f"interrupted={self.interrupted} taken_over={len(self.takeovers)} worst_takeover={worst} "
            f"late_takeovers={len(self.late)} tick_gap_after_heal={self.tick_gap_after:.2f}s "
            f"(limit {self.tick_gap_limit:.1f}s)",
            *(f"  - {problem}" for problem in self.problems),
        ]
        return "\n".join(lines)


def outcomes(records: Iterable[Mapping[str, Any]]) -> dict[Ident, str]:
    """How each execution ended (``outcome`` of its end record)."""
    return {
        (r["run_id"], r["attempt"], r["pid"]): str(r.get("outcome")) for r in records if r["event"] == "end"
    }


def segments(
    execution: Execution, outcome: str | None, outage: Outage, thaw_grace: float
) -> list[tuple[float, float]] | None:
    """When ``execution`` was running: from its start to its end (or its process's death),
    less a freeze of its process. After the thaw it counts as running again, unless it ended
    cancelled within ``thaw_grace`` seconds (fenced off at once). ``None``: it never ended."""
    end = execution.end if execution.end is not None else outage.killed.get(execution.pid)
    if end is None:
        return None
    pause = outage.paused.get(execution.pid)
    if pause is None or not execution.start < pause[0] < end:
        return [(execution.start, end)]
    frozen, thawed = pause
    parts = [(execution.start, frozen)]
    if end > thawed and not (outcome == "cancelled" and end - thawed <= thaw_grace):
        parts.append((thawed, end))
    return parts


def concurrent_runs(
    per_key: Mapping[str, list[Execution]],
    ended: Mapping[Ident, str],
    hosts: Mapping[int, str],
    outage: Outage,
    thaw_grace: float,
) -> list[str]:
    """Every pair of executions of one key whose running times intersect, and every execution
    that never ended."""
    problems: list[str] = []
    for key, runs in per_key.items():
        timed: list[tuple[Execution, list[tuple[float, float]]]] = []
        for execution in runs:
            outcome = ended.get((execution.run_id, execution.attempt, execution.pid))
            parts = segments(execution, outcome, outage, thaw_grace)
            if parts is None:
                problems.append(
                    f"{key}: attempt {execution.attempt} on {hosts.get(execution.pid)} never ended"
                )
                parts = [(execution.start, float("inf"))]
            timed.append((execution, parts))
        for (a, a_parts), (b, b_parts) in itertools.combinations(timed, 2):
            both = sum(
                max(0.0, min(a_end, b_end) - max(a_start, b_start))
                for (a_start, a_end), (b_start, b_end) in itertools.product(a_parts, b_parts)
            )
            if both > 0:
                problems.append(
                    f"{key}: {_describe(a, ended, hosts, outage)} and {_describe(b, ended, hosts, outage)} "
                    f"ran together for {both:.2f}s"
                )
    return problems


def tokens_not_growing(per_key: Mapping[str, list[Execution]], hosts: Mapping[int, str]) -> list[str]:
    """Every execution of a key whose fencing token is not greater than the one before it."""
    problems: list[str] = []
    for key, runs in per_key.items():
        for before, after in itertools.pairwise(runs):
            if before.fencing_token is None or after.fencing_token is None:
                problems.append(f"{key}: an execution recorded no fencing token")
            elif after.fencing_token <= before.fencing_token:
                problems.append(
                    f"{key}: attempt {after.attempt} on {hosts.get(after.pid)} holds token "
                    f"{after.fencing_token}, not above attempt {before.attempt}'s {before.fencing_token}"
                )
    return problems


def _describe(e: Execution, ended: Mapping[Ident, str], hosts: Mapping[int, str], outage: Outage) -> str:
    outcome = ended.get((e.run_id, e.attempt, e.pid))
    return (
        f"attempt {e.attempt} on {hosts.get(e.pid)} ({_at(e.start, outage)}..{_at(e.end, outage)}, {outcome})"
    )


def _at(t: float | None, outage: Outage) -> str:
    """A time as seconds from the fault (``F+1.23``), or ``never``."""
    return "never" if t is None else f"F{t - outage.start:+.2f}"


def largest_gap(times: Iterable[float], start: float, end: float) -> float:
    """The longest stretch in [start, end] without one of ``times``."""
    points = [start, *sorted(t for t in times if start < t < end), end]
    return max(b - a for a, b in itertools.pairwise(points))


def measure(
    scenario: str,
    records: list[dict[str, Any]],
    one_shots: list[str],
    outage: Outage,
    *,
    lease: float,
    tick_interval: float,
    observed_until: float,
    thaw_grace: float,
) -> Measurement:
    """Check the records of one scenario (see the module's docstring)."""
    per_key = executions(records)
    ended = outcomes(records)
    hosts = {r["pid"]: r["host"] for r in records}
    problems: list[str] = []
    overlaps = concurrent_runs(per_key, ended, hosts, outage, thaw_grace)
    problems += overlaps
    problems += tokens_not_growing(per_key, hosts)

    succeeded = {r["label"] for r in records if r["event"] == "end" and r.get("outcome") == "success"}
    lost = [task_id for task_id in one_shots if task_id not in succeeded]
    problems += [f"{task_id} never ended successfully" for task_id in lost]

    takeovers: dict[str, float] = {}
    late: list[str] = []
    interrupted = 0
    deadline = outage.takeover_from + lease + 1.0
    for key, runs in per_key.items():
        if not runs[0].label.startswith("one-"):
            continue
        for execution in runs:
            if execution.pid != outage.victim_pid or execution.start > outage.start:
                continue
            if execution.end is not None and execution.end <= outage.start:
                continue
            rerun = next((e for e in runs if e.pid != outage.victim_pid and e.start > execution.start), None)
            if rerun is None:
                if outage.must_take_over:
                    interrupted += 1
                    late.append(key)
                    problems.append(f"{key}: interrupted on {outage.victim_host}, never taken over")
                continue
            interrupted += 1
            takeovers[key] = rerun.start - outage.start
            if rerun.start > deadline:
                late.append(key)
                problems.append(
                    f"{key}: taken over by {hosts.get(rerun.pid)} {rerun.start - outage.takeover_from:.2f}s "
                    f"after {'the fault' if outage.takeover_from == outage.start else 'the heal'} "
                    f"(limit lease + 1 = {lease + 1:.1f}s)"
                )
    if outage.must_take_over and interrupted == 0:
        problems.append(f"the fault interrupted no one-shot on {outage.victim_host}: nothing was tested")

    ticks = [e.start for key, runs in per_key.items() for e in runs if e.label == "tick"]
    gap_limit = tick_interval + lease + 1.0
    gap = largest_gap(ticks, outage.end, observed_until)
    if gap > gap_limit:
        problems.append(
            f"the recurring task was silent for {gap:.2f}s after the heal (limit {gap_limit:.1f}s)"
        )
    return Measurement(
        scenario=scenario,
        overlaps=overlaps,
        lost=lost,
        interrupted=interrupted,
        takeovers=takeovers,
        late=late,
        tick_gap_after=gap,
        tick_gap_limit=gap_limit,
        problems=problems,
    )
