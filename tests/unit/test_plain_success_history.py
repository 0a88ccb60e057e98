"""A plain success's history entry (the most common one), which the Redis and SQL completions
write inline (SQL with :data:`.SUCCESS_DOC`, Redis as its name and start, the rest kept by its
batch, indexes and id), is the entry :func:`.completed_entry` writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from backbeat.model.completed_history import NAMES, completed_entry, history_row, owner_member
from backbeat.model.history import HistoryEntry, HistorySettings, to_us
from backbeat.model.records import Run, RunOutcome, RunResult, Task
from backbeat.stores.redis.history import completion_args
from backbeat.stores.sql.runs import _entries

T0 = datetime(2026, 1, 5, 9, 0, 0, 123456, tzinfo=UTC)
OWNER = "host:42:ab"


def success(task_id: str, name: str, *, token: int = 7) -> RunResult:
    task = Task(id=task_id, name=name, job="bench.counted:noop", trigger={"type": "date"}, next_run_time=T0)
    run = Run(
        id=f"{task_id}@{T0.isoformat()}",
        task_id=task_id,
        fire_time=T0,
        lease_until=T0,
        task=task,
        fencing_token=token,
    )
    return RunResult(
        run=run,
        outcome=RunOutcome.SUCCESS,
        finished_at=T0 + timedelta(seconds=2, microseconds=5),
        started_at=T0 + timedelta(seconds=1, microseconds=17),
    )


def general(result: RunResult) -> HistoryEntry:
    """The entry as :func:`completed_entry` writes it, read back."""
    ended = to_us(result.finished_at)
    found = completed_entry(result, HistorySettings(), result.run.fencing_token, owner_member(OWNER), ended)
    assert found is not None
    return HistoryEntry.from_bytes(found[2], found[0], ended)


def read_back(docs: bytes, ones: bytes) -> list[tuple[HistoryEntry, bytes, bytes]]:
    """Each entry of ``complete.lua``'s arguments (every one a ``1``) as a page reads it: its
    line of the batch, its end and id from its member, the owner from the batch's first line;
    with its document and member."""
    header, *lines = docs.split(b"\n")
    owner = orjson.loads(header)["owner"]
    members = list(zip(*[iter(ones.split(b"\0"))] * 3, strict=False))
    found = []
    for doc, (task_id, end, entry_id) in zip(lines, members, strict=True):
        entry = HistoryEntry.from_bytes(doc, entry_id.decode(), int(end), owner)
        found.append((entry, doc, b"\0".join((task_id, end, entry_id))))
    return found


def test_redis_plain_success_is_the_general_entry_without_what_its_batch_and_indexes_keep() -> None:
    name = 'jobs:plain \u00e9 "quoted"'
    NAMES.pop(name, None)
    results = [success("a", name), success("b", name, token=12)]
    ends = [to_us(r.finished_at) for r in results]

    # the first finds the name not encoded yet (the general way), the second takes the plain one
    present, docs, ones = completion_args(results, HistorySettings(), [7, 12], OWNER, ends)

    assert name in NAMES
    assert present == "11"
    assert isinstance(docs, bytes) and isinstance(ones, bytes)
    (first, first_doc, _), (plain, plain_doc, plain_member) = read_back(docs, ones)
    assert first == general(results[0])
    assert plain == general(results[1])
    assert plain_member == b"b\0%018d\0%b#1.12#success" % (ends[1], results[1].run.id.encode())
    assert b'"ended_at"' in first_doc and b'"owner"' not in first_doc
    assert plain_doc == b'{"task_name":%b,"started_at":%d}' % (
        orjson.dumps(name),
        to_us(results[1].started_at or T0),
    )


def test_sql_plain_success_is_the_general_row() -> None:
    name = "jobs:plain sql \u00e9"
    NAMES.pop(name, None)
    results = [success("a", name), success("b", name, token=3)]
    held = [(r, to_us(r.finished_at)) for r in results]

    rows = _entries(OWNER, held, HistorySettings())

    assert rows == [history_row(r, OWNER, HistorySettings(), ended) for r, ended in held]
    assert rows[1][0] == f"b@{T0.isoformat()}#1.3#success"
