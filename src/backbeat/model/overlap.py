"""Overlap policies: what a fire time does while earlier runs of its task still exist.

Every store applies :func:`admit` inside its atomic ``fire`` step, counting the task's runs
in the store (``Task.running``), so a policy holds across every process. A *buffered* run is
a waiting run whose not-before time is :data:`BUFFERED_UNTIL`: nothing claims it until a run
of its task ends for good, when the store makes its earliest buffered run claimable.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime


class Overlap(enum.StrEnum):
    """What a fire time does when a run of its task is still going (in any process)."""

    ALLOW_ALL = "allow_all"
    """Run it, up to ``max_instances`` runs at once; past that the fire time is skipped."""
    SKIP = "skip"
    """Skip it."""
    BUFFER_ONE = "buffer_one"
    """Keep it to run when the running one ends; a further fire time meanwhile is skipped."""
    BUFFER_ALL = "buffer_all"
    """Keep every such fire time and run them one after another, oldest first (up to
    :data:`BUFFER_ALL_LIMIT` waiting; later ones are skipped)."""
    CANCEL_OTHER = "cancel_other"
    """Cancel the running one wherever it runs and run this one when it has ended."""


class Admission(enum.Enum):
    """What ``fire`` does with one fire time."""

    RUN = "run"
    BUFFER = "buffer"
    SKIP = "skip"


BUFFER_ALL_LIMIT = 1000
"""Runs a ``buffer_all`` task may keep waiting behind its running one."""

BUFFERED_UNTIL = datetime(2200, 1, 1, tzinfo=UTC)
"""The not-before time of a buffered run: never reached (2200 in microseconds still fits a
double exactly, so a Redis score holds it as it is)."""

_BUFFERS = {Overlap.BUFFER_ONE: 1, Overlap.CANCEL_OTHER: 1, Overlap.BUFFER_ALL: BUFFER_ALL_LIMIT}


def admit(overlap: str, running: int, max_instances: int) -> Admission:
    """The fate of a fire time of a task with ``running`` runs in the store.

    Under every policy but ``allow_all`` a task has at most one run that is not buffered, so
    its buffered runs number ``running - 1``.
    """
    if overlap == Overlap.ALLOW_ALL:
        return Admission.RUN if running < max_instances else Admission.SKIP
    if running == 0:
        return Admission.RUN
    if running - 1 < _BUFFERS.get(Overlap(overlap), 0):
        return Admission.BUFFER
    return Admission.SKIP


def buffers(overlap: str) -> int:
    """How many runs a policy keeps waiting behind a running one (0: none)."""
    return _BUFFERS.get(Overlap(overlap), 0)


__all__ = ["BUFFERED_UNTIL", "BUFFER_ALL_LIMIT", "Admission", "Overlap", "admit", "buffers"]
