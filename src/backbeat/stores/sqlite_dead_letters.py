"""The SQLite store's dead letters and shared state documents (run in its worker thread)."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import orjson

from backbeat.errors import CorruptRecordError
from backbeat.model import DeadLetter, RunResult, StateRecord, Task
from backbeat.stores import sqlite_queries as q

Db = sqlite3.Connection
log = logging.getLogger(__name__)


def save_dead_letter(db: Db, result: RunResult, task: Task | None) -> None:
    letter = DeadLetter.of(result, task)
    failed_us = int(result.finished_at.timestamp() * 1_000_000)
    db.execute(q.SAVE_DEAD_LETTER, (letter.id, letter.task_id, failed_us, orjson.dumps(letter.to_document())))


def decode_dead_letter(letter_id: str, raw: str | bytes) -> DeadLetter:
    """Raises ``CorruptRecordError`` naming the dead letter when it cannot be read."""
    try:
        return DeadLetter.from_document(orjson.loads(raw))
    except (orjson.JSONDecodeError, CorruptRecordError, AttributeError) as exc:
        raise CorruptRecordError(f"dead letter {letter_id!r} cannot be read: {exc}") from exc


def dead_letters(db: Db, task_id: str | None) -> list[DeadLetter]:
    """Dead letters oldest first; one that cannot be read is logged, kept and left out."""
    rows = db.execute(q.DEAD_LETTERS) if task_id is None else db.execute(q.TASK_DEAD_LETTERS, (task_id,))
    letters = []
    for letter_id, raw in rows:
        try:
            letters.append(decode_dead_letter(letter_id, raw))
        except CorruptRecordError as exc:
            log.error("%s (kept in the store as it is)", exc)
    return letters


def dead_letter(db: Db, letter_id: str) -> DeadLetter | None:
    row = db.execute(q.DEAD_LETTER, (letter_id,)).fetchone()
    return None if row is None else decode_dead_letter(letter_id, row[0])


def remove_dead_letters(db: Db, ids_param: str) -> list[str]:
    return [row[0] for row in db.execute(q.REMOVE_DEAD_LETTERS, (ids_param,))]


def get_state(db: Db, key: str) -> StateRecord | None:
    row = db.execute(q.GET_STATE, (key,)).fetchone()
    if row is None:
        return None
    value = orjson.loads(row[0])
    if not isinstance(value, dict):
        raise CorruptRecordError(f"state document {key!r} is not a JSON object")
    return StateRecord(value, int(row[1]))


def put_state(db: Db, key: str, value: dict[str, Any], version: int) -> bool:
    raw = orjson.dumps(value).decode()
    if version == 0:
        return db.execute(q.INSERT_STATE, (key, raw)).rowcount == 1
    return db.execute(q.UPDATE_STATE, (raw, key, version)).rowcount == 1
