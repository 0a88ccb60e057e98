"""Task ids: 128 random bits as 32 hex digits, read from the OS in blocks, never repeated by a
forked child."""

from __future__ import annotations

import os
import re

from backbeat.model.jobs import new_task_id


def test_ids_are_32_hex_digits_and_all_different() -> None:
    ids = [new_task_id() for _ in range(5000)]  # many blocks of ids read from the OS
    assert all(re.fullmatch(r"[0-9a-f]{32}", task_id) for task_id in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_child_does_not_hand_out_its_parents_next_ids() -> None:
    new_task_id()  # the parent holds unused ids now
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        os.close(read)
        os.write(write, ",".join(new_task_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        in_child = set(pipe.read().split(","))
    os.waitpid(child, 0)
    in_parent = {new_task_id() for _ in range(3)}
    assert len(in_child) == 3 and not in_child & in_parent
