"""``complete.lua``'s history arguments: the batch's documents (the owner's line, then a line per
entry) and each spelled entry's per-task member, built here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backbeat.model.completed_history import owner_member
from backbeat.model.history import HistoryEntry, HistoryOutcome, HistorySettings, entry_id, to_us
from backbeat.model.records import Run, RunOutcome, RunResult
from backbeat.stores.redis import history
from backbeat.stores.redis.history import completion_args

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
OWNER = "host:42:ab"


def result(task_id: str, outcome: RunOutcome = RunOutcome.SUCCESS, *, attempt: int = 1) -> RunResult:
    run = Run(
        id=f"{task_id}@{T0.isoformat()}", task_id=task_id, fire_time=T0, lease_until=T0, attempt=attempt
    )
    retry = T0 + timedelta(seconds=1) if outcome is RunOutcome.DEFERRED else None
    return RunResult(
        run=run,
        outcome=outcome,
        finished_at=T0 + timedelta(seconds=2),
        started_at=T0 + timedelta(seconds=1),
        retry_at=retry,
        error=None if outcome is RunOutcome.SUCCESS else "stopped",
    )


def entries(results: list[RunResult], tokens: list[int]) -> tuple[str, list[tuple[bytes, bytes]]]:
    """Which results have an entry, and (document, per-task member) of each entry, cut as
    ``complete.lua`` and a page do; the batch's first line names the owner."""
    present, docs, ones = history.completion_args(
        results, HistorySettings(), tokens, OWNER, [to_us(r.finished_at) for r in results]
    )
    assert isinstance(present, str) and isinstance(docs, bytes) and isinstance(ones, bytes)
    header, *lines = docs.split(b"\n")
    assert header == b"{" + owner_member(OWNER)[1:] + b"}"
    found: list[tuple[bytes, bytes]] = []
    pos = 0
    for line in lines:
        task_end = ones.index(b"\0", pos)
        id_end = ones.index(b"\0", task_end + 20)
        found.append((line, ones[pos:id_end]))
        pos = id_end + 1
    assert pos == len(ones)
    return present, found


def test_each_entry_is_its_document_and_per_task_member() -> None:
    a, b = result("a"), result("b", RunOutcome.CANCELLED, attempt=3)

    present, found = entries([a, b], [7, 0])

    ids = [entry_id(a.run.id, 1, HistoryOutcome.SUCCESS, 7), entry_id(b.run.id, 3, HistoryOutcome.CANCELLED)]
    end = to_us(a.finished_at)
    assert present == "11"
    assert [member for _, member in found] == [
        history.task_member("a", end, ids[0]),
        history.task_member("b", end, ids[1]),
    ]


def test_the_documents_read_back_as_the_entries_recorded_otherwise() -> None:
    results = [result("a"), result("b", RunOutcome.FAILURE, attempt=2)]

    _, found = entries(results, [7, 9])

    for (doc, member), res, token in zip(found, results, [7, 9], strict=True):
        run = res.run
        _, end, stored_id = member.split(b"\0")
        entry = HistoryEntry.from_bytes(doc, stored_id.decode(), int(end), OWNER)  # as a page reads it
        assert entry.id == entry_id(run.id, run.attempt, entry.outcome, token)
        assert (entry.task_id, entry.run_id, entry.attempt) == (run.task_id, run.id, run.attempt)
        assert (entry.fire_time, entry.started_at, entry.ended_at) == (T0, res.started_at, res.finished_at)
        assert (entry.owner, entry.task_name) == (OWNER, run.task_id)
    assert HistoryEntry.from_bytes(found[1][0], "b@x#2.9#failure").error == "stopped"


def test_a_run_without_an_entry_is_marked_and_sends_nothing() -> None:
    results = [result("a"), result("b", RunOutcome.DEFERRED), result("c", RunOutcome.CANCELLED)]

    present, found = entries(results, [7, 0, 9])

    assert present == "101"
    assert [member.partition(b"\0")[0] for _, member in found] == [b"a", b"c"]


def test_a_run_id_that_does_not_spell_the_task_id_keeps_it_in_the_document() -> None:
    odd = result("a")
    odd.run.id = "other@x"

    _, [(doc, _)] = entries([odd], [1])

    assert HistoryEntry.from_bytes(doc, "other@x#1.1#success").task_id == "a"


def test_a_plain_success_is_its_name_and_start_alone_when_the_ids_spell_the_runs_tokens() -> None:
    a, b = result("a"), result("b", RunOutcome.CANCELLED, attempt=3)
    a.run.fencing_token = 7
    settings = HistorySettings()
    completion_args([a], settings, [7], OWNER, [0])  # the name is known from now on

    letters, docs, ones = completion_args(
        [a, b], settings, [7, 0], OWNER, [to_us(r.finished_at) for r in (a, b)], own_tokens=True
    )
    only, alone, none = completion_args([a], settings, [7], OWNER, [to_us(a.finished_at)], own_tokens=True)

    assert isinstance(docs, bytes) and isinstance(ones, bytes)
    header = b"{" + owner_member(OWNER)[1:] + b"}"
    plain = b'{"task_name":"a","started_at":%d}' % to_us(T0 + timedelta(seconds=1))
    assert letters == "p1"
    assert docs.split(b"\n")[:2] == [header, plain]
    assert ones.partition(b"\0")[0] == b"b"  # only the '1' sends its member
    assert (only, alone, none) == ("", header + b"\n" + plain, b"")
    # a page reads the plain success whole: the fire time from the run id, the owner from the header
    entry = HistoryEntry.from_bytes(plain, f"{a.run.id}#1.7#success", to_us(a.finished_at), OWNER)
    assert (entry.fire_time, entry.owner, entry.outcome) == (T0, OWNER, HistoryOutcome.SUCCESS)
