"""Overlap policies: what ``fire`` does with a fire time, by the runs its task has."""

from __future__ import annotations

import pytest

from backbeat.errors import CorruptRecordError
from backbeat.model.overlap import BUFFER_ALL_LIMIT, Admission, Overlap, admit, buffers
from backbeat.model.records import Task

RUN, BUFFER, SKIP = Admission.RUN, Admission.BUFFER, Admission.SKIP


@pytest.mark.parametrize(
    ("overlap", "running", "max_instances", "expected"),
    [
        (Overlap.ALLOW_ALL, 0, 1, RUN),
        (Overlap.ALLOW_ALL, 1, 1, SKIP),
        (Overlap.ALLOW_ALL, 2, 3, RUN),
        (Overlap.ALLOW_ALL, 3, 3, SKIP),
        (Overlap.SKIP, 0, 1, RUN),
        (Overlap.SKIP, 1, 1, SKIP),
        (Overlap.BUFFER_ONE, 0, 1, RUN),
        (Overlap.BUFFER_ONE, 1, 1, BUFFER),
        (Overlap.BUFFER_ONE, 2, 1, SKIP),
        (Overlap.CANCEL_OTHER, 1, 1, BUFFER),
        (Overlap.CANCEL_OTHER, 2, 1, SKIP),
        (Overlap.BUFFER_ALL, 1, 1, BUFFER),
        (Overlap.BUFFER_ALL, BUFFER_ALL_LIMIT, 1, BUFFER),
        (Overlap.BUFFER_ALL, BUFFER_ALL_LIMIT + 1, 1, SKIP),
    ],
)
def test_admit(overlap: Overlap, running: int, max_instances: int, expected: Admission) -> None:
    assert admit(overlap, running, max_instances) is expected


def test_buffers_per_policy() -> None:
    assert [buffers(policy) for policy in Overlap] == [0, 0, 1, BUFFER_ALL_LIMIT, 1]


def test_a_stored_task_naming_an_unknown_policy_cannot_be_read() -> None:
    doc = Task(id="a", name="a", job="j", trigger={}, next_run_time=None).to_document()
    doc["options"]["overlap"] = "buffer_latest"  # as a newer version might write
    with pytest.raises(CorruptRecordError, match="unknown overlap policy 'buffer_latest'"):
        Task.from_document(doc)
