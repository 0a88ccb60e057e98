"""Store operations on dead letters and shared state documents."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from backbeat.errors import CorruptRecordError
from backbeat.model.records import DeadLetter, RunResult, StateRecord, Task
from backbeat.stores.sql.steps import Dialect, Txn, execute, fetch, fetch_ids, fetch_one, notify

log = logging.getLogger("backbeat.stores.sql")


def save(d: Dialect, result: RunResult, task: Task | None) -> Txn[None]:
    letter = DeadLetter.of(result, task)
    failed_us = int(result.finished_at.timestamp() * 1_000_000)
    doc = orjson.dumps(letter.to_document()).decode()
    yield from execute(d.sql.SAVE_DEAD_LETTER, letter.id, letter.task_id, failed_us, doc)


def decode(letter_id: str, raw: str | bytes) -> DeadLetter:
    """Raises ``CorruptRecordError`` naming the dead letter when it cannot be read."""
    try:
        return DeadLetter.from_document(orjson.loads(raw))
    except (orjson.JSONDecodeError, CorruptRecordError, AttributeError) as exc:
        raise CorruptRecordError(f"dead letter {letter_id!r} cannot be read: {exc}") from exc


def dead_letters(d: Dialect, task_id: str | None) -> Txn[list[DeadLetter]]:
    """Dead letters oldest first; one that cannot be read is logged, kept and left out."""
    if task_id is None:
        rows = yield from fetch(d.sql.DEAD_LETTERS)
    else:
        rows = yield from fetch(d.sql.TASK_DEAD_LETTERS, task_id)
    letters = []
    for letter_id, raw in rows:
        try:
            letters.append(decode(letter_id, raw))
        except CorruptRecordError as exc:
            log.error("%s (kept in the store as it is)", exc)
    return letters


def dead_letter(d: Dialect, letter_id: str) -> Txn[DeadLetter | None]:
    row = yield from fetch_one(d.sql.DEAD_LETTER, letter_id)
    return None if row is None else decode(letter_id, row[0])


def remove(d: Dialect, ids: list[str]) -> Txn[list[str]]:
    """The ids of the dead letters removed."""
    return (yield from fetch_ids(d.sql.REMOVE_DEAD_LETTERS, d.array(sorted(set(ids)))))


def get_state(d: Dialect, key: str) -> Txn[StateRecord | None]:
    row = yield from fetch_one(d.sql.GET_STATE, key)
    if row is None:
        return None
    value = orjson.loads(row[0])
    if not isinstance(value, dict):
        raise CorruptRecordError(f"state document {key!r} is not a JSON object")
    return StateRecord(value, int(row[1]))


def put_state(d: Dialect, key: str, value: dict[str, Any], version: int, wake: bool) -> Txn[bool]:
    raw = orjson.dumps(value).decode()
    if version == 0:
        written = (yield from execute(d.sql.INSERT_STATE, key, raw)) == 1
    else:
        written = (yield from execute(d.sql.UPDATE_STATE, raw, key, version)) == 1
    if written and wake:
        yield from notify()
    return written
