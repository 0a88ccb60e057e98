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


def refuse_empty_ids(tasks: Iterable[Task]) -> None:
    """Refuse a batch of tasks to store if one's id is empty: the scheduler and ``backbeat
    migrate`` never make one, and the Redis store's paging reads a cursor ``''`` as the start.

    Raises:
        ValueError: a task's id is ``''`` (the error names the task).
    """
    for task in tasks:
        if not task.id:
            raise ValueError(
                f"task id {task.id!r} (of the task named {task.name!r}) is empty: a stored task needs one"
            )
