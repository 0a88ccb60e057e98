"""Circuit breakers shared through the memory store, by a fake clock: closed, open after the
threshold, half-open after the recovery timeout, closed again on success; shared by instances."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.fakes import FakeClock

from backbeat.model.records import StateRecord
from backbeat.policies.breakers import CLOSED, HALF_OPEN, OPEN, SharedBreakers
from backbeat.policies.definitions import CircuitBreakerPolicy
from backbeat.stores.memory import MemoryStore

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
POLICY = CircuitBreakerPolicy(failure_threshold=3, recovery_timeout=60, success_threshold=1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def breakers(store: MemoryStore, clock: FakeClock) -> SharedBreakers:
    return SharedBreakers(store, clock)


async def fail(
    breakers: SharedBreakers, times: int, policy: CircuitBreakerPolicy = POLICY
) -> list[str | None]:
    return [await breakers.record(policy, "sync", success=False) for _ in range(times)]


async def test_a_breaker_never_written_is_closed_and_admits(breakers: SharedBreakers) -> None:
    assert (await breakers.state(POLICY, "sync"))["state"] == CLOSED
    assert await breakers.admit(POLICY, "sync") is None


async def test_it_opens_at_the_failure_threshold_and_then_defers_runs(
    breakers: SharedBreakers, clock: FakeClock
) -> None:
    assert await fail(breakers, 2) == [None, None]
    assert await breakers.admit(POLICY, "sync") is None
    assert await fail(breakers, 1) == [OPEN]

    state = await breakers.state(POLICY, "sync")
    assert (state["state"], state["opened_at"]) == (OPEN, T0.timestamp())
    clock.advance(20)
    defer_until = await breakers.admit(POLICY, "sync")
    assert defer_until is not None  # until the recovery timeout, spread by at most 5% of it
    assert T0 + timedelta(seconds=60) <= defer_until <= T0 + timedelta(seconds=63)


async def test_a_success_resets_the_count_of_failures_in_a_row(breakers: SharedBreakers) -> None:
    await fail(breakers, 2)
    await breakers.record(POLICY, "sync", success=True)
    assert await fail(breakers, 2) == [None, None]
    assert (await breakers.state(POLICY, "sync"))["state"] == CLOSED


async def test_after_the_recovery_timeout_it_is_half_open_and_admits_one_probe(
    breakers: SharedBreakers, clock: FakeClock
) -> None:
    await fail(breakers, 3)
    clock.advance(59.9)
    assert await breakers.admit(POLICY, "sync") is not None
    clock.advance(0.1)

    assert await breakers.admit(POLICY, "sync") is None  # the probe
    state = await breakers.state(POLICY, "sync")
    assert (state["state"], state["probes"]) == (HALF_OPEN, 1)
    other = await breakers.admit(POLICY, "sync")  # waits for the probe's verdict
    assert other is not None and clock.now < other <= clock.now + timedelta(seconds=1)


async def test_a_successful_probe_closes_it(breakers: SharedBreakers, clock: FakeClock) -> None:
    await fail(breakers, 3)
    clock.advance(60)
    await breakers.admit(POLICY, "sync")

    assert await breakers.record(POLICY, "sync", success=True) == CLOSED
    assert await breakers.state(POLICY, "sync") == {
        "state": CLOSED,
        "failures": 0,
        "successes": 0,
        "probes": 0,
    }
    assert await breakers.admit(POLICY, "sync") is None


async def test_a_failed_probe_opens_it_again_from_that_moment(
    breakers: SharedBreakers, clock: FakeClock
) -> None:
    await fail(breakers, 3)
    clock.advance(60)
    await breakers.admit(POLICY, "sync")
    clock.advance(5)

    assert await fail(breakers, 1) == [OPEN]
    assert (await breakers.state(POLICY, "sync"))["opened_at"] == clock.now.timestamp()
    defer_until = await breakers.admit(POLICY, "sync")
    assert defer_until is not None and defer_until >= clock.now + timedelta(seconds=60)


async def test_it_closes_after_success_threshold_probes_succeed(
    breakers: SharedBreakers, clock: FakeClock
) -> None:
    policy = CircuitBreakerPolicy(failure_threshold=1, recovery_timeout=10, success_threshold=2)
    await fail(breakers, 1, policy)
    clock.advance(10)
    assert [await breakers.admit(policy, "sync") for _ in range(2)] == [None, None]  # two probes
    assert await breakers.admit(policy, "sync") is not None

    assert await breakers.record(policy, "sync", success=True) is None  # one more needed
    assert (await breakers.state(policy, "sync"))["state"] == HALF_OPEN
    assert await breakers.record(policy, "sync", success=True) == CLOSED


async def test_probes_of_a_process_that_never_reported_are_forgotten(
    breakers: SharedBreakers, clock: FakeClock
) -> None:
    await fail(breakers, 3)
    clock.advance(60)
    assert await breakers.admit(POLICY, "sync") is None  # a probe whose process then died
    clock.advance(30)
    assert await breakers.admit(POLICY, "sync") is not None
    clock.advance(31)  # more than the recovery timeout since it turned half-open
    assert await breakers.admit(POLICY, "sync") is None


async def test_an_outcome_reported_while_open_changes_nothing(breakers: SharedBreakers) -> None:
    await fail(breakers, 3)
    before = await breakers.state(POLICY, "sync")
    assert await breakers.record(POLICY, "sync", success=True) is None
    assert await breakers.state(POLICY, "sync") == before


async def test_two_instances_on_one_store_share_the_breaker(store: MemoryStore, clock: FakeClock) -> None:
    here, there = SharedBreakers(store, clock), SharedBreakers(store, clock)
    await fail(here, 2)
    await fail(there, 1)  # the third failure in a row, wherever it happened
    assert (await here.state(POLICY, "sync"))["state"] == OPEN
    assert await there.admit(POLICY, "sync") is not None

    clock.advance(60)
    assert await here.admit(POLICY, "sync") is None  # the probe runs here ...
    assert await there.admit(POLICY, "sync") is not None  # ... so none runs there
    await here.record(POLICY, "sync", success=True)
    assert await there.admit(POLICY, "sync") is None


async def test_breakers_are_per_task_name_unless_named(breakers: SharedBreakers) -> None:
    await fail(breakers, 3)
    assert await breakers.admit(POLICY, "other-task") is None

    shared = CircuitBreakerPolicy(failure_threshold=1, name="payments-api")
    await breakers.record(shared, "refund", success=False)
    assert await breakers.admit(shared, "charge") is not None


class Contended(MemoryStore):
    """Another process writes the document between this one's read and its write, ``times`` times."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.times = times
        self.conflicts = 0

    async def put_state(self, key: str, value: dict[str, Any], *, version: int, wake: bool = False) -> bool:
        if self.conflicts < self.times:
            self.conflicts += 1
            current = await self.get_state(key)
            doc: dict[str, Any] = dict(current.value) if current else {"state": CLOSED, "probes": 0}
            doc["failures"] = int(doc.get("failures", 0)) + 1  # the other process's failure
            await super().put_state(key, doc, version=current.version if current else 0)
        return await super().put_state(key, value, version=version, wake=wake)


async def test_a_concurrent_write_is_retried_so_no_failure_is_lost(clock: FakeClock) -> None:
    store = Contended(times=2)
    breakers = SharedBreakers(store, clock)
    assert await fail(breakers, 1) == [OPEN]  # two failures elsewhere, then this one: the third
    assert store.conflicts == 2
    record = await store.get_state(POLICY.key("sync"))
    assert isinstance(record, StateRecord) and record.value["state"] == OPEN
