"""Text a task's id, name and tags, and an owner, may hold on every store."""

from __future__ import annotations

from collections.abc import Iterable

from backbeat.model.records import Task

MAX_TEXT_BYTES = 1024
"""The most UTF-8 bytes of a task's id, name or tag, and of an owner, on every store: PostgreSQL
indexes them, and refuses an index entry past 2,704 bytes (two of them share the entries of a
tag's index); one limit for all stores keeps a task movable from one to another."""


def stored_text(value: object, what: str) -> str:
    """``value``, a task's id, name or tag, or a scheduler's owner: text every store can keep.

    Raises:
        TypeError: it is not a str.
        ValueError: it holds a NUL character (PostgreSQL cannot store one, SQLite cuts text at
            it) or a lone surrogate (no UTF-8, so no store, can write one), or it is longer than
            :data:`MAX_TEXT_BYTES` in UTF-8.
    """
    if not isinstance(value, str):
        raise TypeError(f"{what} {value!r} is a {type(value).__name__}, not a str")
    if "\x00" in value:
        raise ValueError(f"{what} {value!r} holds a NUL character, which stores cannot keep")
    size = len(value)
    if not value.isascii():
        try:
            size = len(value.encode())
        except UnicodeEncodeError:
            raise ValueError(f"{what} {value!r} holds a lone surrogate, which no store can write") from None
    if size > MAX_TEXT_BYTES:
        raise ValueError(
            f"{what} {value[:40]!r}... is {size:,} bytes long in UTF-8, past the {MAX_TEXT_BYTES:,} "
            "a store keeps"
        )
    return value


def refuse_unstorable_ids(tasks: Iterable[Task]) -> None:
    """Refuse a batch of tasks to store if one's id is empty or breaks :func:`stored_text`'s
    rules, before any is written (every store's ``add`` calls it): the scheduler and ``backbeat
    migrate`` never make one, but a store called directly would keep it, or fail half-way (the
    Redis store's paging reads a cursor ``''`` as the start, and its members separate an id from
    the rest by a NUL).

    Raises:
        ValueError: a task's id is ``''`` (the error names the task), or it holds a NUL or a
            lone surrogate, or it is longer than :data:`MAX_TEXT_BYTES` (the error names it).
        TypeError: a task's id is not a str.
    """
    for task in tasks:
        task_id = task.id
        if not task_id:
            raise ValueError(
                f"task id {task_id!r} (of the task named {task.name!r}) is empty: a stored task needs one"
            )
        # an ASCII id without NUL of 1,024 characters at most (most ids) passes without a call
        if (
            type(task_id) is not str
            or "\x00" in task_id
            or not task_id.isascii()
            or len(task_id) > MAX_TEXT_BYTES
        ):
            stored_text(task_id, "task id")
