"""The shared SQL operations, driven by a fake driver through the Stepper: the statements they
yield and in what order, how the rows sent back become results, and driver errors thrown in."""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

import pytest

from backbeat.errors import CorruptRecordError, TaskExistsError, TaskNotFoundError
from backbeat.model.overlap import BUFFERED_UNTIL
from backbeat.model.records import (
    FireDecision,
    Run,
    RunOutcome,
    RunResult,
    Task,
    TaskFilter,
    TaskOptions,
    run_id_for,
)
from backbeat.stores.sql import dead_letters, runs, tasks
from backbeat.stores.sql.steps import (
    NOTIFY,
    Dialect,
    Execute,
    ExecuteMany,
    Fetch,
    Statements,
    Stepper,
    Txn,
    fetch,
    from_us,
    to_us,
)

T = TypeVar("T")
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
US0 = to_us(T0)
STORE0 = T0 + timedelta(hours=1, microseconds=7)
"""The store's clock, which leases are judged by (the callers' ``now`` is about T0)."""
STORE_US = to_us(STORE0)


class DuplicateKey(Exception):
    """What the fake driver raises for an insert that meets an existing key."""


class ServerGone(Exception):
    """Any other driver error."""


def _statements() -> Statements:
    """Each statement is its own name (``CLEAR`` is two), so the log reads as names."""
    names = {name: name for name in Statements.__annotations__}
    names["CLEAR"] = ("CLEAR_RUNS", "CLEAR_TASKS")  # type: ignore[assignment]
    return cast(Statements, types.SimpleNamespace(**names))


def _store_clock() -> Txn[int]:
    yield from ()
    return STORE_US


def _tokens(n: int) -> Txn[list[int]]:
    rows = yield from fetch("NEXT_TOKENS", n)
    return [int(row[0]) for row in rows]


DIALECT = Dialect(
    sql=_statements(), array=list, duplicate=(DuplicateKey,), clock=_store_clock, tokens=_tokens
)


@dataclass
class FakeDriver:
    """Runs an operation as a driver does, logging ``(statement, params or rows)``.

    ``rows[name]`` are the results sent back for a statement (in turn, one per call; a Fetch
    without any gets ``[]``, an Execute ``1``); ``errors[name]`` is raised at that statement.
    """

    rows: dict[str, list[Any]] = field(default_factory=dict)
    errors: dict[str, Exception] = field(default_factory=dict)
    log: list[tuple[str, Any]] = field(default_factory=list)

    def run(self, operation: Callable[..., Txn[T]], *args: Any) -> tuple[T, bool]:
        stepper = Stepper(operation(DIALECT, *args))
        for step in stepper:
            try:
                stepper.answer(self._answer(step))
            except (DuplicateKey, ServerGone) as exc:
                stepper.fail(exc)
        return stepper.result, stepper.notified

    def names(self) -> list[str]:
        return [name for name, _ in self.log]

    def params(self, name: str) -> Any:
        [params] = [params for logged, params in self.log if logged == name]
        return params

    def _answer(self, step: Any) -> Any:
        if step is NOTIFY:
            self.log.append(("NOTIFY", None))
            return None
        assert isinstance(step, Fetch | Execute | ExecuteMany)
        self.log.append((step.sql, step.rows if isinstance(step, ExecuteMany) else tuple(step.params)))
        if step.sql in self.errors:
            raise self.errors.pop(step.sql)
        if isinstance(step, ExecuteMany):
            return None
        queued = self.rows.get(step.sql)
        if queued:
            return queued.pop(0)
        return [] if isinstance(step, Fetch) else 1


def make_task(task_id: str, *, tags: Sequence[str] = (), version: int = 0) -> Task:
    return Task(
        id=task_id,
        name=f"task {task_id}",
        job="func:jobs:work",
        trigger={"type": "interval", "seconds": 60.0},
        next_run_time=T0,
        tags=tuple(tags),
        version=version,
        options=TaskOptions(max_instances=2),
    )


def task_columns(task: Task, claimed_by: str | None = None) -> tuple[Any, ...]:
    """A row of ``TASK_COLUMNS`` (and ``claimed_by``, as ``DUE_TASKS`` reads it)."""
    nrt = None if task.next_run_time is None else to_us(task.next_run_time)
    return (task.id, task.to_bytes().decode(), nrt, task.version, task.running, 0, 0, None, None, claimed_by)


# -- the Stepper itself --------------------------------------------------------------------------


def counting() -> Txn[tuple[int, list[Any]]]:
    rows = yield Fetch("SELECT", (1,))
    changed = yield Execute("UPDATE", ())
    yield NOTIFY
    return changed, rows


def test_the_stepper_sends_each_result_back_and_keeps_the_return_value() -> None:
    stepper = Stepper(counting())
    steps = []
    for step in stepper:
        steps.append(step)
        stepper.answer([("row",)] if isinstance(step, Fetch) else 7)
    assert steps == [Fetch("SELECT", (1,)), Execute("UPDATE", ()), NOTIFY]
    assert stepper.result == (7, [("row",)])
    assert stepper.notified


def recovering() -> Txn[str]:
    try:
        yield Execute("INSERT", ())
    except DuplicateKey:
        yield Execute("UPDATE", ())
        return "updated"
    return "inserted"


def test_a_driver_error_is_thrown_in_at_the_statement_that_caused_it() -> None:
    stepper = Stepper(recovering())
    seen = []
    for step in stepper:
        assert isinstance(step, Execute)
        seen.append(step.sql)
        if step.sql == "INSERT":
            stepper.fail(DuplicateKey())
    assert (seen, stepper.result, stepper.notified) == (["INSERT", "UPDATE"], "updated", False)


def test_a_driver_error_the_operation_does_not_handle_ends_it() -> None:
    def failing_driver(stepper: Stepper[Any]) -> None:
        for _ in stepper:
            stepper.fail(ServerGone("connection reset"))

    with pytest.raises(ServerGone):
        failing_driver(Stepper(counting()))


def test_times_are_integer_microseconds_since_the_epoch() -> None:
    moment = datetime(2026, 1, 5, 9, 0, 0, 123456, tzinfo=UTC)
    assert to_us(moment) == 1_767_603_600_123_456
    assert from_us(to_us(moment)) == moment


# -- tasks -----------------------------------------------------------------------------------------


def test_add_checks_for_existing_ids_then_inserts_rows_in_id_order_with_their_tags() -> None:
    driver = FakeDriver()
    _, notified = driver.run(tasks.add, [make_task("b", tags=["x"]), make_task("a", tags=["y", "z"])], False)

    assert driver.names() == ["EXISTING_TASKS", "INSERT_TASK", "INSERT_TAGS", "NOTIFY"]
    assert driver.params("EXISTING_TASKS") == (["a", "b"],)
    assert [row[0] for row in driver.params("INSERT_TASK")] == ["a", "b"]
    assert driver.params("INSERT_TAGS") == (["b", "a", "a"], ["x", "y", "z"])
    assert notified


def test_add_of_a_stored_id_raises_task_exists_and_inserts_nothing() -> None:
    driver = FakeDriver(rows={"EXISTING_TASKS": [[("b",)]]})
    with pytest.raises(TaskExistsError) as raised:
        driver.run(tasks.add, [make_task("a"), make_task("b")], False)
    assert raised.value.task_ids == ["b"]
    assert driver.names() == ["EXISTING_TASKS"]


def test_add_of_one_id_twice_in_a_batch_raises_task_exists() -> None:
    driver = FakeDriver()
    with pytest.raises(TaskExistsError) as raised:
        driver.run(tasks.add, [make_task("a"), make_task("a")], False)
    assert raised.value.task_ids == ["a"]
    assert "INSERT_TASK" not in driver.names()


def test_add_turns_a_duplicate_key_thrown_into_it_into_task_exists() -> None:
    # another process added the id between the check and the insert
    driver = FakeDriver(errors={"INSERT_TASK": DuplicateKey("UNIQUE constraint failed: tasks.id")})
    with pytest.raises(TaskExistsError) as raised:
        driver.run(tasks.add, [make_task("b"), make_task("a")], False)
    assert raised.value.task_ids == ["a", "b"]
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert driver.names() == ["EXISTING_TASKS", "INSERT_TASK"]


def test_add_lets_any_other_driver_error_through() -> None:
    driver = FakeDriver(errors={"INSERT_TASK": ServerGone("connection reset")})
    with pytest.raises(ServerGone):
        driver.run(tasks.add, [make_task("a")], False)


def test_add_with_replace_upserts_and_rewrites_the_tags() -> None:
    driver = FakeDriver()
    driver.run(tasks.add, [make_task("a", tags=["x"])], True)
    assert driver.names() == ["UPSERT_TASK", "DELETE_TAGS", "INSERT_TAGS", "NOTIFY"]
    assert driver.params("DELETE_TAGS") == (["a"],)


def test_update_locks_the_row_and_writes_the_change_with_the_next_version() -> None:
    stored = make_task("a", tags=["x"], version=4)
    driver = FakeDriver(rows={"LOCK_TASK": [[task_columns(stored)]]})
    updated, notified = driver.run(tasks.update, "a", {"paused": True, "tags": ("y",)})

    assert updated is not None and (updated.paused, updated.tags, updated.version) == (True, ("y",), 5)
    assert driver.names() == ["LOCK_TASK", "UPDATE_TASK", "DELETE_TAGS", "INSERT_TAGS", "NOTIFY"]
    params = driver.params("UPDATE_TASK")
    assert (params[0], params[3], params[5], params[-1]) == ("task a", True, 5, "a")
    assert Task.from_bytes(params[7]).paused
    assert notified


def test_update_of_a_missing_task_writes_nothing() -> None:
    driver = FakeDriver()
    assert driver.run(tasks.update, "ghost", {"paused": True}) == (None, False)
    assert driver.names() == ["LOCK_TASK"]


def test_a_row_that_cannot_be_decoded_is_quarantined_not_returned() -> None:
    corrupt = ("a", b"{not json", US0, 0, 0, 0, 0, None, None)
    driver = FakeDriver(rows={"GET_TASK": [[corrupt]]})
    task, _ = driver.run(tasks.get, "a")
    assert task is None
    assert driver.names() == ["GET_TASK", "QUARANTINE"]
    [(error, task_id, raw)] = driver.params("QUARANTINE")
    assert (task_id, raw) == ("a", b"{not json") and "not valid JSON" in error


def test_a_page_missing_corrupt_rows_is_filled_by_reading_on() -> None:
    a, b, c = (task_columns(make_task(i))[:9] for i in "abc")
    corrupt = ("b2", "[]", US0, 0, 0, 0, 0, None, None)
    driver = FakeDriver(rows={"LIST_TASKS": [[a, corrupt, b], [c]]})
    (page, cursor), _ = driver.run(tasks.list_tasks, TaskFilter(), None, 2)

    assert [task.id for task in page] == ["a", "b"]
    assert cursor == "b"
    assert [params[0] for name, params in driver.log if name == "LIST_TASKS"] == [None, "b"]
    assert driver.names() == ["LIST_TASKS", "LIST_TASKS", "QUARANTINE"]


# -- runs and leases -------------------------------------------------------------------------------


def fire_state(
    task_id: str, *, running: int = 0, max_instances: int = 1, owner: str = "me"
) -> tuple[Any, ...]:
    """A ``FIRE_STATE`` row: id, version, running, max_instances, claimed_by, nrt, quarantined."""
    return (task_id, 3, running, max_instances, owner, US0, None)


def decide(task_id: str, *fire_times: datetime, following: datetime | None, version: int = 3) -> FireDecision:
    return FireDecision(
        task_id=task_id, claimed_version=version, fire_times=list(fire_times), next_run_time=following
    )


def test_fire_creates_runs_up_to_max_instances_and_stores_the_next_fire_time() -> None:
    times = [T0 + timedelta(seconds=s) for s in (0, 10, 20)]
    driver = FakeDriver(
        rows={
            "FIRE_STATE": [[fire_state("a", running=0, max_instances=2)]],
            "NEXT_TOKENS": [[(41,), (42,)]],
        }
    )
    lease = timedelta(seconds=30)
    until = STORE0 + lease  # by the store's clock
    [result], notified = driver.run(runs.fire, "me", [decide("a", *times, following=times[2])], lease)

    assert driver.names() == ["FIRE_STATE", "EXISTING_RUNS", "NEXT_TOKENS", "INSERT_RUN", "FIRED", "NOTIFY"]
    assert [run.fire_time for run in result.runs] == times[:2]
    assert [run.lease_until for run in result.runs] == [until, until]
    assert [run.fencing_token for run in result.runs] == [41, 42]
    assert result.skipped == [times[2]]
    assert driver.params("NEXT_TOKENS") == (2,)
    assert driver.params("INSERT_RUN") == [
        (run_id_for("a", t), "a", to_us(t), 1, "me", to_us(until), token)
        for t, token in zip(times[:2], (41, 42), strict=True)
    ]
    assert driver.params("FIRED") == [(2, to_us(times[2]), "a")]
    assert notified


def test_fire_skips_runs_that_exist_ignores_tasks_claimed_by_another_and_keeps_a_users_change() -> None:
    existing = run_id_for("a", T0)
    driver = FakeDriver(
        rows={
            "FIRE_STATE": [[fire_state("a", max_instances=5), fire_state("b", owner="other")]],
            "EXISTING_RUNS": [[(existing,)]],
        }
    )
    later = T0 + timedelta(seconds=60)
    decisions = [decide("a", T0, following=later, version=2), decide("b", T0, following=later)]
    results, _ = driver.run(runs.fire, "me", decisions, timedelta(seconds=10))

    assert [(r.task_id, r.runs, r.skipped) for r in results] == [("a", [], [])]
    assert driver.params("FIRED") == [(0, US0, "a")]  # the version changed since the claim: nrt kept
    assert "INSERT_RUN" not in driver.names()


def test_fire_removes_a_one_shot_task_left_with_nothing_to_run() -> None:
    driver = FakeDriver(rows={"FIRE_STATE": [[fire_state("a")]]})
    [result], notified = driver.run(runs.fire, "me", [decide("a", following=None)], timedelta(seconds=10))
    assert result.removed
    assert driver.names() == ["FIRE_STATE", "DELETE_TASK"]
    assert driver.params("DELETE_TASK") == [("a",)]
    assert not notified


def test_claim_leases_expired_runs_as_new_attempts_then_claims_due_tasks() -> None:
    task = make_task("a")
    waiting = (run_id_for("a", T0), "a", US0, 1, None, False)
    expired = (run_id_for("a", T0 - timedelta(seconds=60)), "a", US0 - 60_000_000, 2, "dead", False)
    driver = FakeDriver(
        rows={
            "CLAIMABLE_RUNS": [[waiting, expired]],
            "NEXT_TOKENS": [[(7,), (8,)]],
            "GET_TASKS": [[task_columns(task)]],
            "DUE_TASKS": [[task_columns(make_task("b"))]],
        }
    )
    lease = timedelta(seconds=10)
    until = STORE0 + lease  # by the store's clock
    claim, _ = driver.run(runs.claim, "me", T0, T0 + timedelta(seconds=1), lease, 10)

    assert driver.names() == [
        "CLAIMABLE_RUNS",
        "NEXT_TOKENS",
        "LEASE_RUN",
        "GET_TASKS",
        "DUE_TASKS",
        "CLAIM_TASKS",
    ]
    assert [(run.attempt, run.recovered, run.owner, run.fencing_token) for run in claim.runs] == [
        (1, False, "me", 7),
        (3, True, "me", 8),
    ]
    assert all(run.task is not None and run.task.id == "a" for run in claim.runs)
    assert [run.lease_until for run in claim.runs] == [until, until]
    assert driver.params("CLAIMABLE_RUNS") == (US0, 10, STORE_US)  # waiting by now, leases by the store
    assert driver.params("LEASE_RUN") == [
        ("me", to_us(until), 1, 7, waiting[0]),
        ("me", to_us(until), 3, 8, expired[0]),
    ]
    assert [t.id for t in claim.tasks] == ["b"]
    # due by the horizon, claims ended by the store's clock; the room left after the runs
    assert driver.params("DUE_TASKS") == (US0 + 1_000_000, 8, STORE_US)
    assert driver.params("CLAIM_TASKS") == ("me", to_us(until), ["b"])


def test_claim_drops_an_expired_claim_on_a_task_due_later_and_looks_again() -> None:
    moved = make_task("a").copy(next_run_time=T0 + timedelta(hours=1))
    driver = FakeDriver(rows={"DUE_TASKS": [[task_columns(moved, claimed_by="dead")], []]})
    claim, _ = driver.run(runs.claim, "me", T0, T0, timedelta(seconds=10), 1)
    assert claim.tasks == []
    assert driver.names() == ["CLAIMABLE_RUNS", "DUE_TASKS", "DROP_CLAIM", "DUE_TASKS"]


def result(run_id: str, outcome: RunOutcome, *, token: int = 5, **fields: Any) -> RunResult:
    run = Run(id=run_id, task_id="a", fire_time=T0, lease_until=T0, fencing_token=token)
    return RunResult(run=run, outcome=outcome, finished_at=T0 + timedelta(seconds=1), **fields)


def test_complete_notifies_when_it_starts_a_buffered_run() -> None:
    driver = FakeDriver(rows={"RUN_OWNERS": [[("r1", "a", "me", 5, False)]], "PROMOTE_BUFFERED": [[("r9",)]]})
    lost, notified = driver.run(runs.complete, "me", [result("r1", RunOutcome.SUCCESS)])
    assert lost == set() and notified


def test_complete_reports_runs_held_by_another_deletes_done_runs_and_requeues_retries() -> None:
    owners = [
        ("r1", "a", "me", 5, False),
        ("r2", "a", "me", 5, False),
        ("r3", "a", "other", 5, False),
        ("r5", "a", "me", 6, False),
        ("r6", "a", None, 5, False),  # re-queued by this token's completion already: a resend
    ]
    driver = FakeDriver(rows={"RUN_OWNERS": [owners]})
    retry_at = T0 + timedelta(seconds=30)
    results = [
        result("r1", RunOutcome.SUCCESS),
        result("r2", RunOutcome.FAILURE, retry_at=retry_at),
        result("r3", RunOutcome.SUCCESS),
        result("r4", RunOutcome.SUCCESS),
        result("r5", RunOutcome.FAILURE, retry_at=retry_at),  # leased again since: token 6
        result("r6", RunOutcome.FAILURE, retry_at=retry_at),
    ]
    lost, notified = driver.run(runs.complete, "me", results)

    assert lost == {"r3", "r4", "r5"}  # r4 is gone: completed here or by a takeover, not by this call
    assert driver.names() == [
        "RUN_OWNERS",
        "RETRY_RUN",
        "DELETE_RUNS",
        "COUNT_RUNS",
        "PROMOTE_BUFFERED",
        "REMOVE_FINISHED",
        "NOTIFY",
    ]
    assert driver.params("RETRY_RUN") == [(1, to_us(retry_at), "r2")]
    assert driver.params("DELETE_RUNS") == (["r1"],)
    # the task of the deleted run may start its earliest buffered run, from when it ended
    finished_us = to_us(T0 + timedelta(seconds=1))
    assert driver.params("PROMOTE_BUFFERED") == (finished_us, to_us(BUFFERED_UNTIL), ["a"])
    # one finished, two runs counted, one failure, the last outcome
    assert driver.params("COUNT_RUNS") == [(1, 2, 1, to_us(T0 + timedelta(seconds=1)), "failure", "a")]
    assert notified


def test_complete_of_a_dead_letter_saves_it_with_the_tasks_snapshot() -> None:
    driver = FakeDriver(
        rows={"RUN_OWNERS": [[("r1", "a", "me", 5, False)]], "GET_TASK": [[task_columns(make_task("a"))]]}
    )
    failed = result("r1", RunOutcome.FAILURE, dead_letter=True, error="ValueError: bad")
    driver.run(runs.complete, "me", [failed])

    assert driver.names()[:3] == ["RUN_OWNERS", "GET_TASK", "SAVE_DEAD_LETTER"]
    letter_id, task_id, failed_us, doc = driver.params("SAVE_DEAD_LETTER")
    assert (letter_id, task_id, failed_us) == ("r1", "a", to_us(T0 + timedelta(seconds=1)))
    letter = dead_letters.decode(letter_id, doc)
    assert letter.error == "ValueError: bad" and letter.task is not None and letter.task.name == "task a"


def test_a_deferred_run_is_requeued_at_the_same_attempt_and_counts_nothing() -> None:
    driver = FakeDriver(rows={"RUN_OWNERS": [[("r1", "a", "me", 5, False)]]})
    retry_at = T0 + timedelta(seconds=5)
    driver.run(runs.complete, "me", [result("r1", RunOutcome.DEFERRED, retry_at=retry_at)])
    assert driver.params("RETRY_RUN") == [(0, to_us(retry_at), "r1")]
    assert "COUNT_RUNS" not in driver.names()


def test_complete_of_a_run_of_a_removed_task_touches_no_task_of_its_id() -> None:
    owners = [("r1", "a", "me", 5, True), ("r2", "a", "me", 5, True)]
    driver = FakeDriver(rows={"RUN_OWNERS": [owners]})
    retry_at = T0 + timedelta(seconds=30)
    results = [
        result("r1", RunOutcome.SUCCESS),
        result("r2", RunOutcome.FAILURE, retry_at=retry_at, dead_letter=True),
    ]
    lost, _ = driver.run(runs.complete, "me", results)

    assert lost == set()
    # no snapshot read, nothing counted, no buffered run started
    assert driver.names() == ["RUN_OWNERS", "SAVE_DEAD_LETTER", "RETRY_RUN", "DELETE_RUNS", "NOTIFY"]
    letter = dead_letters.decode("r2", driver.params("SAVE_DEAD_LETTER")[3])
    assert letter.task is None


def test_extend_returns_the_ids_the_store_still_leases_to_the_owner() -> None:
    driver = FakeDriver(rows={"EXTEND_RUNS": [[("r1",)]]})
    held, _ = driver.run(runs.extend, "me", {"r2": 4, "r1": 3}, timedelta(seconds=10))
    assert held == {"r1"}
    # the store's clock; run ids and their tokens paired by position
    assert driver.params("EXTEND_RUNS") == (STORE_US + 10_000_000, "me", ["r2", "r1"], [4, 3])


def test_next_wakeup_tells_lease_ends_in_the_callers_clock() -> None:
    # unclaimed due_at, waiting run, claim end, lease end (the last two by the store's clock)
    driver = FakeDriver(rows={"NEXT_WAKEUP": [[(US0 + 9_000_000, None, STORE_US + 5_000_000, None)]]})
    assert driver.run(runs.next_wakeup, T0)[0] == T0 + timedelta(seconds=5)
    driver = FakeDriver(rows={"NEXT_WAKEUP": [[(None, US0 + 3_000_000, None, STORE_US + 5_000_000)]]})
    assert driver.run(runs.next_wakeup, T0)[0] == T0 + timedelta(seconds=3)
    driver = FakeDriver(rows={"NEXT_WAKEUP": [[(None, None, None, STORE_US)]]})
    assert driver.run(runs.next_wakeup, None)[0] == STORE0  # no caller's clock: as the store has it
    driver = FakeDriver(rows={"NEXT_WAKEUP": [[(None, None, None, None)]]})
    assert driver.run(runs.next_wakeup, T0)[0] is None


@pytest.mark.parametrize(("changed", "notifies"), [((0, 0), False), ((1, 0), True), ((0, 1), True)])
def test_release_notifies_only_when_it_gave_something_up(changed: tuple[int, int], notifies: bool) -> None:
    driver = FakeDriver(rows={"RELEASE_RUNS": [changed[0]], "RELEASE_TASKS": [changed[1]]})
    assert driver.run(runs.release, "me", {"r1": 2}, ["a"], T0) == (None, notifies)
    assert driver.params("RELEASE_RUNS") == (US0, "me", ["r1"], [2])


def test_enqueue_of_a_missing_task_raises_and_at_max_instances_adds_nothing() -> None:
    with pytest.raises(TaskNotFoundError):
        FakeDriver().run(runs.enqueue, "ghost", T0, T0)
    full = FakeDriver(rows={"ENQUEUE_STATE": [[(2, 2)]]})
    assert full.run(runs.enqueue, "a", T0, T0) == (None, False)
    assert full.names() == ["ENQUEUE_STATE", "RUN_EXISTS"]  # a removed task's run would be adopted


def test_enqueue_adds_a_waiting_run_claimable_now() -> None:
    driver = FakeDriver(rows={"ENQUEUE_STATE": [[(0, 1)]]})
    now = T0 + timedelta(seconds=3)
    run, notified = driver.run(runs.enqueue, "a", T0, now)
    assert run is not None and (run.id, run.owner, run.lease_until) == (run_id_for("a", T0), None, now)
    assert driver.names() == ["ENQUEUE_STATE", "RUN_EXISTS", "INSERT_RUN", "ADD_RUNNING", "NOTIFY"]
    assert driver.params("INSERT_RUN") == (run_id_for("a", T0), "a", US0, 1, None, to_us(now), 0)
    assert notified


# -- dead letters and state ------------------------------------------------------------------------


def test_a_dead_letter_that_cannot_be_read_is_left_out_of_the_list() -> None:
    good = result("r1", RunOutcome.FAILURE)
    saver = FakeDriver()
    saver.run(dead_letters.save, good, None)
    _, _, _, doc = saver.params("SAVE_DEAD_LETTER")
    driver = FakeDriver(rows={"TASK_DEAD_LETTERS": [[("r0", "{broken"), ("r1", doc)]]})
    letters, _ = driver.run(dead_letters.dead_letters, "a")
    assert [letter.id for letter in letters] == ["r1"]


@pytest.mark.parametrize(("version", "statement"), [(0, "INSERT_STATE"), (4, "UPDATE_STATE")])
@pytest.mark.parametrize("changed", [0, 1])
@pytest.mark.parametrize("wake", [False, True])
def test_put_state_inserts_a_new_document_or_updates_the_version_read(
    version: int, statement: str, changed: int, wake: bool
) -> None:
    driver = FakeDriver(rows={statement: [changed]})
    written, notified = driver.run(dead_letters.put_state, "breaker:x", {"state": "open"}, version, wake)
    assert written is bool(changed)
    assert notified is (wake and bool(changed)), "a wake-up only for a write made, and asked for"
    assert driver.names() == [statement, *(["NOTIFY"] if notified else [])]
    expected: tuple[Any, ...] = (
        ("breaker:x", '{"state":"open"}') if version == 0 else ('{"state":"open"}', "breaker:x", 4)
    )
    assert driver.params(statement) == expected


def test_get_state_reads_the_document_and_its_version_and_refuses_a_non_object() -> None:
    driver = FakeDriver(rows={"GET_STATE": [[('{"state":"closed"}', 3)], [("[1]", 1)]]})
    record, _ = driver.run(dead_letters.get_state, "breaker:x")
    assert record is not None and (record.value, record.version) == ({"state": "closed"}, 3)
    with pytest.raises(CorruptRecordError, match="breaker:x"):
        driver.run(dead_letters.get_state, "breaker:x")
