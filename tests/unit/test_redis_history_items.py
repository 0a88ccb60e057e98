"""``complete.lua``'s history argument: the items of a batch's results in one argument."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from backbeat.model.history import HistorySettings
from backbeat.model.records import Run, RunOutcome, RunResult
from backbeat.stores.redis import history

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def result(task_id: str, outcome: RunOutcome = RunOutcome.SUCCESS) -> RunResult:
    run = Run(id=f"{task_id}@{T0.isoformat()}", task_id=task_id, fire_time=T0, lease_until=T0)
    retry = T0 + timedelta(seconds=1) if outcome is RunOutcome.DEFERRED else None
    return RunResult(run=run, outcome=outcome, finished_at=T0, started_at=T0, retry_at=retry)


def test_items_are_joined_in_order_with_an_empty_one_for_a_run_without_entry() -> None:
    results = [result("a"), result("b", RunOutcome.DEFERRED), result("c", RunOutcome.CANCELLED)]

    items = history.completion_items(results, HistorySettings(), [7, 0, 9]).split(b"\n")

    assert items == [
        history.completion_item(r, HistorySettings(), t) for r, t in zip(results, [7, 0, 9], strict=True)
    ]
    assert [item.partition(b"|")[0] for item in items] == [b"success", b"", b"cancelled"]


def test_an_item_with_a_newline_costs_the_batch_its_entries_never_their_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(history, "completion_item", lambda *_: b"x\ny")

    assert (
        history.completion_items([result("a"), result("b"), result("c")], HistorySettings(), [1, 2, 3])
        == b"\n\n"
    )
