"""History's pure parts: cursors, the ``since`` spellings, outcome filters and the dashboard's
per-task summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from backbeat.api.history import history_query, outcomes_of, parse_since
from backbeat.errors import CorruptRecordError
from backbeat.model.history import FAILED, HistoryEntry, HistoryOutcome, decode_cursor, encode_cursor, to_us
from backbeat.web.history import percentile, summarize

T0 = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


def entry(task: str, seconds: float, outcome: HistoryOutcome, took: float | None = 1.0) -> HistoryEntry:
    ended = T0 + timedelta(seconds=seconds)
    return HistoryEntry(
        id=f"{task}@{seconds}#1#{outcome}",
        task_id=task,
        task_name=f"name-{task}",
        run_id=f"{task}@{seconds}",
        fire_time=ended,
        started_at=None if took is None else ended - timedelta(seconds=took),
        ended_at=ended,
        outcome=outcome,
        error_type="app.errors.Declined" if outcome in FAILED else None,
        error="card declined" if outcome in FAILED else None,
    )


def test_a_cursor_names_the_last_entry_and_nothing_else_passes_for_one() -> None:
    last = entry("pay", 1, HistoryOutcome.SUCCESS)
    assert decode_cursor(encode_cursor(last)) == (1774746001000000, last.id)
    for bad in ("", "12", ":x", "x:y", "1234567890123456789:x", "١٢:x", "12:"):
        with pytest.raises(ValueError, match="is not a cursor returned by run_history"):
            decode_cursor(bad)


def test_since_is_a_duration_or_an_aware_time() -> None:
    assert parse_since("1h30m") == timedelta(minutes=90)
    assert parse_since("2w") == timedelta(days=14)
    assert parse_since("2026-03-29T01:00:00Z") == T0
    with pytest.raises(ValueError, match="neither a duration"):
        parse_since("2026-03-29T01:00:00")
    query = history_query(task_id=None, outcome=None, since=timedelta(hours=1), limit=5, cursor=None, now=T0)
    assert query.since == T0 - timedelta(hours=1)
    far = history_query(
        task_id=None, outcome=None, since=parse_since("999999w" * 5), limit=5, cursor=None, now=T0
    )
    assert far.since is None


def test_failed_names_the_three_failures() -> None:
    assert outcomes_of("failed") == FAILED
    assert outcomes_of(["missed", "failed"]) == FAILED | {HistoryOutcome.MISSED}
    assert outcomes_of(None) is None


def test_the_summary_gives_success_rate_last_failure_and_duration_percentiles() -> None:
    entries = [
        entry("pay", 9, HistoryOutcome.SUCCESS, took=4.0),
        entry("pay", 8, HistoryOutcome.DEAD_LETTERED, took=2.0),
        entry("pay", 7, HistoryOutcome.RETRY_SCHEDULED, took=3.0),
        entry("pay", 6, HistoryOutcome.SUCCESS, took=1.0),
        entry("pay", 5, HistoryOutcome.MISSED, took=None),
        entry("mail", 4, HistoryOutcome.MISSED, took=None),
    ]
    pay, mail = summarize(entries)
    assert (pay.task_id, pay.runs, pay.successes, pay.failures, pay.success_rate) == ("pay", 5, 2, 2, 0.5)
    assert (pay.last_failure_at, pay.last_failure) == (T0 + timedelta(seconds=8), "Declined: card declined")
    assert (pay.duration_p50, pay.duration_p95, pay.duration_max) == (2.0, 4.0, 4.0)
    assert (mail.success_rate, mail.duration_p50, mail.last_failure) == (None, None, None)
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 0.9) == 9.0


def test_the_stored_form_leaves_out_what_it_can_derive_and_reads_back_equal() -> None:
    failed = entry("pay#1", 2.0, HistoryOutcome.DEAD_LETTERED)
    succeeded = entry("ship", 3.0, HistoryOutcome.SUCCESS, took=None)
    renamed = entry("tax", 4.0, HistoryOutcome.SUCCESS)
    renamed.run_id = "tax@elsewhere"  # not the entry id's prefix: stored as it is
    moved = entry("box", 5.0, HistoryOutcome.SUCCESS)
    moved.task_id = "crate"  # not the run id's prefix: stored as it is
    moved.attempt = 3
    entries = (failed, succeeded, renamed, moved)
    docs = [orjson.loads(e.to_bytes()) for e in entries]
    assert not {"id", "task_id", "run_id", "attempt"} & (docs[0].keys() | docs[1].keys())
    assert docs[2]["run_id"] == "tax@elsewhere" and "task_id" not in docs[2]
    assert (docs[3]["task_id"], docs[3]["attempt"]) == ("crate", 3)
    assert {"started_at", "error", "error_type", "args"}.isdisjoint(docs[1])
    assert docs[0]["ended_at"] == to_us(failed.ended_at) and docs[0]["fire_time"] == to_us(failed.fire_time)
    assert [HistoryEntry.from_bytes(e.to_bytes(), e.id) for e in entries] == list(entries)
    # a document of the earlier, full form reads the same, with or without the id beside it
    assert HistoryEntry.from_document(failed.to_document()) == failed
    first_form = orjson.dumps({**failed.to_document(), "duration": None, "host": None, "pid": None})
    assert HistoryEntry.from_bytes(first_form) == HistoryEntry.from_bytes(first_form, failed.id) == failed


def test_a_stored_document_without_its_id_or_with_a_bad_time_is_refused() -> None:
    stored = entry("pay", 2.0, HistoryOutcome.SUCCESS).to_bytes()
    with pytest.raises(CorruptRecordError):
        HistoryEntry.from_bytes(stored)
    with pytest.raises(CorruptRecordError):
        HistoryEntry.from_bytes(stored.replace(b'"ended_at":', b'"ended_at":1.5,"x":'), "pay@x#1#success")
