"""The PostgreSQL store's dead letters and shared state documents (one transaction each)."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from backbeat.errors import CorruptRecordError
from backbeat.model import DeadLetter, RunResult, StateRecord, Task
from backbeat.stores.postgresql import queries as q
from backbeat.stores.postgresql.connection import Db

log = logging.getLogger("backbeat.stores.postgresql")


async def save_dead_letter(db: Db, result: RunResult, task: Task | None) -> None:
    letter = DeadLetter.of(result, task)
    failed_us = int(result.finished_at.timestamp() * 1_000_000)
    doc = orjson.dumps(letter.to_document()).decode()
    await db.execute(q.SAVE_DEAD_LETTER, letter.id, letter.task_id, failed_us, doc)


def decode_dead_letter(letter_id: str, raw: str | bytes) -> DeadLetter:
    """Raises ``CorruptRecordError`` naming the dead letter when it cannot be read."""
    try:
        return DeadLetter.from_document(orjson.loads(raw))
    except (orjson.JSONDecodeError, CorruptRecordError, AttributeError) as exc:
        raise CorruptRecordError(f"dead letter {letter_id!r} cannot be read: {exc}") from exc


async def dead_letters(db: Db, task_id: str | None) -> list[DeadLetter]:
    """Dead letters oldest first; one that cannot be read is logged, kept and left out."""
    if task_id is None:
        rows = await db.fetch(q.DEAD_LETTERS)
    else:
        rows = await db.fetch(q.TASK_DEAD_LETTERS, task_id)
    letters = []
    for letter_id, raw in rows:
        try:
            letters.append(decode_dead_letter(letter_id, raw))
        except CorruptRecordError as exc:
            log.error("%s (kept in the store as it is)", exc)
    return letters


async def dead_letter(db: Db, letter_id: str) -> DeadLetter | None:
    row = await db.fetchrow(q.DEAD_LETTER, letter_id)
    return None if row is None else decode_dead_letter(letter_id, row[0])


async def get_state(db: Db, key: str) -> StateRecord | None:
    row = await db.fetchrow(q.GET_STATE, key)
    if row is None:
        return None
    value = orjson.loads(row[0])
    if not isinstance(value, dict):
        raise CorruptRecordError(f"state document {key!r} is not a JSON object")
    return StateRecord(value, int(row[1]))


async def put_state(db: Db, key: str, value: dict[str, Any], version: int) -> bool:
    raw = orjson.dumps(value).decode()
    if version == 0:
        return await db.execute(q.INSERT_STATE, key, raw) == 1
    return await db.execute(q.UPDATE_STATE, raw, key, version) == 1
