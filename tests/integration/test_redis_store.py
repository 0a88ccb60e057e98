"""What only the Redis store has to prove: key layout, scripts, pub/sub, outages, quarantine."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from datetime import UTC, datetime, timedelta, timezone
from importlib import resources
from pathlib import Path

import pytest
import redis
import redis.asyncio
from redis.crc import key_slot

from backbeat.api.config import RedisJobStoreConfig
from backbeat.errors import StoreError, StoreUnavailableError
from backbeat.model.records import FireDecision, Run, RunOutcome, RunResult, Task, TaskOptions
from backbeat.stores import store_from_url
from backbeat.stores.redis import RedisStore, codec, lualib, scripts
from tests.integration import jobs
from tests.redis_proxy import reply_dropping_proxies
from tests.redis_server import (
    RedisServerHandle,
    delete_keys,
    free_port,
    private_redis_server,
    usable_redis_url,
)
from tests.scheduling import SchedulerFactory, eventually

pytestmark = pytest.mark.redis

T0 = datetime(2024, 1, 1, 12, 0, 0, 123457, tzinfo=UTC)
LEASE = timedelta(seconds=10)


@pytest.fixture(scope="session")
def redis_url() -> str:
    return usable_redis_url()


def task(task_id: str, *, at: datetime | None = T0, tags: tuple[str, ...] = (), **fields: object) -> Task:
    return Task(
        id=task_id,
        name=f"name-{task_id}",
        job="tests:job",
        trigger={"type": "interval", "seconds": 60},
        next_run_time=at,
        tags=tags,
        created_at=T0,
        **fields,  # type: ignore[arg-type]
    )


async def claim_fire(store: RedisStore, owner: str, now: datetime) -> list[Task]:
    claim = await store.claim_due(owner, now=now, lease=LEASE, limit=100)
    decisions = [
        FireDecision(
            task_id=t.id,
            claimed_version=t.version,
            fire_times=[t.next_run_time] if t.next_run_time else [],
            next_run_time=t.next_run_time + timedelta(minutes=1) if t.next_run_time else None,
        )
        for t in claim.tasks
    ]
    results = await store.fire(owner, decisions, now=now, lease=LEASE)
    runs = [run for result in results for run in result.runs]
    await store.complete(owner, [RunResult(run=r, outcome=RunOutcome.SUCCESS, finished_at=now) for r in runs])
    return claim.tasks


async def test_every_key_carries_the_prefix_hash_tag(store: RedisStore, redis_url: str, prefix: str) -> None:
    await store.add([task("a", tags=("red", "blue")), task("b", tags=("red",)), task("c", at=None)])
    claim = await store.claim_due("w1", now=T0, lease=LEASE, limit=1)  # a claim is left open
    assert len(claim.tasks) == 1
    await store.enqueue_run("c", fire_time=T0, now=T0)  # a waiting run
    other = [d for d in ("a", "b") if d != claim.tasks[0].id]
    claim2 = await store.claim_due("w2", now=T0, lease=LEASE, limit=10)
    assert {t.id for t in claim2.tasks} == set(other)
    decision = FireDecision(task_id=other[0], claimed_version=0, fire_times=[T0], next_run_time=T0 + LEASE)
    assert (await store.fire("w2", [decision], now=T0, lease=LEASE))[0].runs  # a leased run

    client = redis.Redis.from_url(redis_url)
    try:
        keys = [key.decode() if isinstance(key, bytes) else key for key in client.keys(f"{{{prefix}}}*")]
        assert len(keys) >= 8  # tasks, live, ids, tags, tag sets, schedule, claim, runs, leases
        assert all(key.startswith(f"{{{prefix}}}:") for key in keys)
        assert {key_slot(key.encode()) for key in keys} == {key_slot(prefix.encode())}
    finally:
        client.close()


async def test_scripts_are_reloaded_after_script_flush(store: RedisStore, redis_url: str) -> None:
    await store.add([task("a")])
    client = redis.Redis.from_url(redis_url)
    try:
        client.script_flush()
    finally:
        client.close()
    claim = await store.claim_due("w1", now=T0, lease=LEASE, limit=10)
    assert [t.id for t in claim.tasks] == ["a"]


@pytest.mark.parametrize(
    ("script", "args", "refusal"),
    [
        # a decision cut short after its count, then a whole one: "1|3|123|0|t1@5|", 0xFE, "t1"
        (
            "fire",
            ["w1", "10000000", "0", b"1|\xff1|3|123|0|t1@5|\xfet1\xff"],
            "a decision of a fire cannot be read",
        ),
        # a count of fire times below those sent (before, the second was read into the task id:
        # "t1@6|t1"), then above them
        (
            "fire",
            ["w1", "10000000", "0", b"0|3|123|0|\xfet0\xff1|3|123|0|t1@5|t1@6|\xfet1\xff"],
            "decision 2 of a fire counts 1 fire times, not the 2 it holds",
        ),
        (
            "fire",
            ["w1", "10000000", "0", b"3|3|123|0|t1@5|t1@6|\xfet1\xff"],
            "decision 1 of a fire counts 3 fire times, not the 2 it holds",
        ),
        # the task id not set apart from the fire times (as the client sent it before 0xFE did)
        ("fire", ["w1", "10000000", "0", b"1|3|123|0|t1@5|t1\xff"], "a decision of a fire cannot be read"),
        # one result cut short after two fields, then a whole one, sent as one result
        (
            "complete",
            ["w1", "0", "1", "", b"0|1|\xff0|1||success|0|5|r2\xff"],
            "result 1 of a completion cannot be read",
        ),
        # two whole results under a count of one
        (
            "complete",
            ["w1", "0", "1", "", b"0|1||success|0|5|r1\xff0|1||success|0|5|r2\xff"],
            "holds more results than its count, 1",
        ),
    ],
)
async def test_a_malformed_batch_of_entries_is_refused_not_read_silently(
    redis_url: str, prefix: str, script: str, args: list[str | bytes], refusal: str
) -> None:
    """The fields of fire.lua's decisions and complete.lua's results end at their entry's end
    byte (0xFF), a decision's fire times at 0xFE and are as many as its count, and a completion's
    results are as many as its count: a malformed argument fails the call instead of an entry
    taking the next one's fields, a task id some fire times, or results being left unread."""
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        with pytest.raises(redis.exceptions.ResponseError, match=refusal):
            await client.eval(scripts.source(script), 1, f"{{{prefix}}}:x", f"{{{prefix}}}:", *args)
    finally:
        await client.aclose()


async def test_a_task_round_trips_unchanged_through_the_scripts(store: RedisStore) -> None:
    original = task(
        "a/b|c@d é",
        tags=("x|y", "ünï"),
        args=[2**62 + 1, 1.5, [], {}, None, "é|\n"],
        kwargs={"big": 12345678901234567890, "empty": {}, "list": []},
        data={"nested": {"deep": [{}, []]}},
        options=TaskOptions(max_instances=3, misfire_grace_time=None),
        trace_context={"traceparent": "00-abc"},
    )
    await store.add([original])
    assert await store.get(original.id) == original
    (claimed,) = (await store.claim_due("w1", now=T0, lease=LEASE, limit=10)).tasks
    assert claimed == original
    decision = FireDecision(task_id=original.id, claimed_version=0, fire_times=[T0], next_run_time=T0 + LEASE)
    (result,) = await store.fire("w1", [decision], now=T0, lease=LEASE)
    await store.complete("w1", [RunResult(run=result.runs[0], outcome=RunOutcome.FAILURE, finished_at=T0)])
    after = await store.get(original.id)
    expected = original.copy(
        next_run_time=T0 + LEASE, runs=1, failures=1, last_outcome="failure", last_run_at=T0
    )
    assert after == expected
    assert await store.next_wakeup() == T0 + LEASE  # microseconds survive the Lua side exactly
    updated = await store.update(original.id, paused=True, tags=["z"])
    assert updated == expected.copy(paused=True, tags=("z",), version=1)
    assert await store.list() == ([updated], None)


async def test_two_owners_never_claim_the_same_task(store: RedisStore, redis_url: str, prefix: str) -> None:
    await store.add([task(f"t{i:03d}") for i in range(300)])
    other = RedisStore(redis_url, prefix=prefix)
    try:
        claims = await asyncio.gather(
            *(s.claim_due(f"w{i}", now=T0, lease=LEASE, limit=40) for i, s in enumerate([store, other] * 5))
        )
    finally:
        await other.close()
    ids = [t.id for claim in claims for t in claim.tasks]
    assert len(ids) == len(set(ids)) == 300


async def test_wakeups_reach_another_instance(store: RedisStore, redis_url: str, prefix: str) -> None:
    listener = RedisStore(redis_url, prefix=prefix)
    received = asyncio.Event()

    async def listen() -> None:
        async for _ in listener.wakeups():
            received.set()

    listening = asyncio.create_task(listen())
    try:
        await wait_for_subscriber(redis_url, store.keys.wakeup)
        started = time.monotonic()
        await store.add([task("a")])
        await asyncio.wait_for(received.wait(), timeout=5)
        assert time.monotonic() - started < 5
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        await listener.close()


async def test_an_add_wakes_workers_only_when_it_comes_before_the_earliest_task(
    store: RedisStore, redis_url: str
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe(store.keys.wakeup)
    try:
        await store.add([task("first", at=T0 + timedelta(hours=1))])  # the schedule was empty
        await store.add([task("later", at=T0 + timedelta(hours=2))])  # workers look before it anyway
        await store.add([task("sooner", at=T0 + timedelta(minutes=30))])
        await store.add([task("later", at=T0 + timedelta(hours=3))], replace=True)  # a change
        await client.publish(store.keys.wakeup, "end")
        messages: list[bytes] = []
        async with asyncio.timeout(5):
            while not messages or messages[-1] != b"end":
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:  # None: the subscription's own reply
                    messages.append(message["data"])
        assert messages == [b"1", b"1", b"1", b"end"]
    finally:
        await pubsub.aclose()
        await client.aclose()


async def test_a_batch_wakes_workers_by_its_earliest_task_to_the_microsecond(
    store: RedisStore, redis_url: str
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    await store.add([task("first", at=T0 + timedelta(hours=1))])
    await pubsub.subscribe(store.keys.wakeup)
    try:
        tie = T0 + timedelta(hours=1)  # not before the earliest task: no wake-up
        await store.add([task("a", at=T0 + timedelta(hours=2)), task("b", at=tie), task("c", at=tie)])
        sooner = T0 + timedelta(hours=1) - timedelta(microseconds=1)
        await store.add([task("d", at=T0 + timedelta(hours=3)), task("e", at=sooner)])
        await client.publish(store.keys.wakeup, "end")
        messages: list[bytes] = []
        async with asyncio.timeout(5):
            while not messages or messages[-1] != b"end":
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    messages.append(message["data"])
        assert messages == [b"1", b"end"]
    finally:
        await pubsub.aclose()
        await client.aclose()


async def wait_for_subscriber(url: str, channel: str) -> None:
    client = redis.asyncio.Redis.from_url(url)
    try:
        for _ in range(200):
            if dict(await client.pubsub_numsub(channel)).get(channel.encode(), 0) > 0:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"nobody subscribed to {channel}")
    finally:
        await client.aclose()


@pytest.mark.slow
async def test_a_restarted_server_serves_its_data_again(private_redis: RedisServerHandle) -> None:
    store = RedisStore(private_redis.url, prefix="restart", socket_timeout=2.0)
    woken = 0

    async def listen() -> None:
        nonlocal woken
        async for _ in store.wakeups():
            woken += 1

    try:
        await store.open()
        await store.add([task("a")])
        listening = asyncio.create_task(listen())
        await wait_for_subscriber(private_redis.url, store.keys.wakeup)
        private_redis.kill()
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError):
            await store.get("a")
        with pytest.raises(StoreUnavailableError):
            await store.claim_due("w1", now=T0, lease=LEASE, limit=10)
        assert time.monotonic() - started < 10
        woken_before = woken

        private_redis.restart()
        assert await eventually_get(store, "a") == task("a")
        assert [t.id for t in (await store.claim_due("w1", now=T0, lease=LEASE, limit=10)).tasks] == ["a"]
        for _ in range(200):  # the listener reconnects and says something may have changed
            if woken > woken_before:
                break
            await asyncio.sleep(0.05)
        assert woken > woken_before
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
    finally:
        await store.close()


async def eventually_get(store: RedisStore, task_id: str) -> Task | None:
    for _ in range(50):
        try:
            return await store.get(task_id)
        except StoreUnavailableError:
            await asyncio.sleep(0.1)
    return await store.get(task_id)


async def test_an_unreachable_server_fails_promptly_without_leaking_the_password() -> None:
    store = RedisStore(f"redis://user:s3cret@127.0.0.1:{free_port()}/0", prefix="nowhere")
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as raised:
        await store.open()
    assert time.monotonic() - started < 5
    assert "s3cret" not in str(raised.value)
    assert "127.0.0.1" in str(raised.value)
    assert "s3cret" not in repr(store)
    await store.close()


async def test_other_driver_errors_are_store_errors(store: RedisStore, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(store.keys.tasks, "not a hash")
    finally:
        client.close()
    with pytest.raises(StoreError) as raised:
        await store.get("a")
    assert not isinstance(raised.value, StoreUnavailableError)


async def test_a_corrupt_record_is_quarantined_and_kept(store: RedisStore, redis_url: str) -> None:
    await store.add([task("bad"), task("good")])
    client = redis.Redis.from_url(redis_url)
    try:
        client.hset(store.keys.tasks, "bad", b"{not json")
        short, before = timedelta(seconds=0.3), datetime.now(UTC)
        claim = await store.claim_due("w1", now=T0, lease=short, limit=10)
        assert [t.id for t in claim.tasks] == ["good"]
        (record,) = await store.quarantined()
        assert (record.key, record.raw) == ("bad", "{not json")
        assert "JSON" in record.error
        assert client.hget(store.keys.tasks, "bad") == b"{not json"  # kept as it was
        # the good task's claim (its end by the server's clock, told in ours), nothing of "bad"
        woken = await store.next_wakeup(now=T0)
        assert woken is not None and T0 + short - (datetime.now(UTC) - before) <= woken <= T0 + short
        await asyncio.sleep(short.total_seconds() + 0.05)
        later = await store.claim_due("w2", now=T0, lease=LEASE, limit=10)
        assert [t.id for t in later.tasks] == ["good"]  # its claim expired; "bad" stays out
        assert await store.get("bad") is None
        assert [t.id for t in (await store.list())[0]] == ["good"]
        await store.add([task("bad")], replace=True)  # a fixed record leaves the quarantine
        assert await store.quarantined() == []
        assert (await store.get("bad")) is not None
    finally:
        client.close()


async def test_a_given_client_is_used_and_left_open(redis_url: str, prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    store = RedisStore(prefix=prefix, client=client)
    try:
        await store.add([task("a")])
        await store.close()
        assert await client.ping()
        assert await store.get("a") == task("a")  # opens again
    finally:
        await store.clear()
        await store.close()
        await client.aclose()
        await delete_keys(redis_url, prefix)


def test_from_params_builds_the_url() -> None:
    store = RedisStore.from_params("example.org", 6380, 2, password="pw", ssl=True, connection_pool_size=5)
    assert store.url == "rediss://example.org:6380/2"
    assert "pw" not in repr(store)


async def test_clear_removes_every_key(store: RedisStore, redis_url: str, prefix: str) -> None:
    await store.add([task(f"t{i}", tags=("t",)) for i in range(1200)])
    await claim_fire(store, "w1", T0)
    await store.enqueue_run("t1", fire_time=T0 - LEASE, now=T0)
    await store.clear()
    client = redis.Redis.from_url(redis_url)
    try:
        # only the key layout version, the marker saying the (empty) orphaned index is complete
        # and the fencing token counter (tokens never go back)
        kept = [store.keys.layout, store.keys.orphans_indexed, store.keys.fencing]
        assert sorted(client.keys(f"{{{prefix}}}*")) == sorted(key.encode() for key in kept)
    finally:
        client.close()


async def test_stores_under_different_url_prefixes_share_one_redis_without_seeing_each_other(
    redis_url: str, prefix: str
) -> None:
    other = f"{prefix}-other"
    join = "&" if "?" in redis_url else "?"
    first = store_from_url(f"{redis_url}{join}prefix={prefix}")
    second = store_from_url(f"{redis_url}{join}prefix={other}")
    try:
        await first.add([task("a")])
        await second.add([task("b")])
        assert [t.id for t in (await first.list())[0]] == ["a"]
        assert [t.id for t in (await second.list())[0]] == ["b"]
        client = redis.Redis.from_url(redis_url)
        try:  # each store's keys are under its own prefix (its Redis Cluster hash tag)
            assert any(client.scan_iter(match=f"{{{prefix}}}:*")) and any(
                client.scan_iter(match=f"{{{other}}}:*")
            )
        finally:
            client.close()
    finally:
        await first.close()
        await second.close()
        await delete_keys(redis_url, prefix)
        await delete_keys(redis_url, other)


async def test_a_run_stored_before_fencing_tokens_is_held_under_token_0(
    store: RedisStore, redis_url: str
) -> None:
    await store.add([task("a", at=T0)])
    [run] = await store_runs_fired(store)
    client = redis.asyncio.Redis.from_url(redis_url)
    try:  # the record as a release before fencing tokens wrote it: "attempt|fire_time|owner"
        await client.set(store.keys.run(run.id), f"1|{run.id.partition('@')[2]}|w1")
    finally:
        await client.aclose()
    [old] = await store.list_runs()
    assert (old.owner, old.attempt, old.fencing_token) == ("w1", 1, 0)
    assert await store.extend("w1", {run.id: run.fencing_token}, lease=LEASE) == set()
    assert await store.extend("w1", {run.id: 0}, lease=LEASE) == {run.id}
    done = RunResult(run=old, outcome=RunOutcome.SUCCESS, finished_at=T0)
    assert await store.complete("w1", [done]) == set()
    assert await store.list_runs() == []


async def store_runs_fired(store: RedisStore) -> list[Run]:
    """Claim and fire what is due at T0 for "w1"; the runs made."""
    claim = await store.claim_due("w1", now=T0, lease=LEASE, limit=10)
    decisions = [
        FireDecision(task_id=t.id, claimed_version=t.version, fire_times=[T0], next_run_time=None)
        for t in claim.tasks
    ]
    return [run for result in await store.fire("w1", decisions, now=T0, lease=LEASE) for run in result.runs]


async def test_a_detached_id_whose_run_is_gone_does_not_detach_a_later_run_of_that_id(
    store: RedisStore, redis_url: str, prefix: str
) -> None:
    """A worker of the release before the detached set deletes a removed task's run without
    forgetting its id; a later run of that id (``task@fire_time``) is still its task's."""
    from tests.contract.helpers import LEASE, MINUTE, decide

    await store.add([task("a")])
    [claimed] = (await store.claim_due("w1", now=T0, lease=LEASE, limit=10)).tasks
    [run] = (await store.fire("w1", [decide(claimed, [T0], then=None)], now=T0, lease=LEASE))[0].runs
    assert await store.remove(["a"]) == ["a"]
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        assert await client.smembers(store.keys.detached) == {run.id.encode()}
        # the old worker ends the run: its record and lease go, its id stays in the set
        await client.delete(store.keys.run(run.id))
        await client.zrem(store.keys.leases, run.id)
        await store.add([task("a", at=None)])
        later = T0 + MINUTE
        assert await store.enqueue_run("a", fire_time=T0, now=later) is not None
        [again] = (await store.claim_due("w2", now=later, lease=LEASE, limit=10, horizon=later)).runs
        assert again.id == run.id and again.task is not None
        assert await client.exists(store.keys.detached) == 0
    finally:
        await client.aclose()


# backbeat sets no TTL on tasks or runs: a volatile-* policy (ElastiCache's and Azure's default)
# evicts none of them, it refuses writes when full as noeviction does
@pytest.mark.parametrize(
    ("policy", "warned"), [("allkeys-lru", True), ("noeviction", False), ("volatile-lru", False)]
)
async def test_a_server_that_evicts_keys_is_warned_about_at_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, policy: str, warned: bool
) -> None:
    extra = ["--maxmemory", "100mb", "--maxmemory-policy", policy]
    with private_redis_server(tmp_path / "redis", appendonly=False, extra_args=extra) as server:
        store = RedisStore(server.url, prefix="evict")
        with caplog.at_level(logging.WARNING, logger="backbeat.stores.redis"):
            await store.open()
        await store.close()
    warnings = [r.getMessage() for r in caplog.records if "evicts keys" in r.getMessage()]
    assert bool(warnings) is warned, warnings
    if warned:
        assert "maxmemory-policy allkeys-lru" in warnings[0] and server.url in warnings[0]


async def test_tasks_whose_ids_hold_a_nul_or_high_bytes_fire_and_complete_beside_others(
    store: RedisStore,
) -> None:
    # a Redis store of 0.1.0 kept such ids: fire.lua and complete.lua take a batch's decisions
    # and results in one argument, whose separator (the byte 0xFF) must be no byte of an id:
    # U+00FF is that byte in Latin-1; U+FFFF and U+10FFFF are UTF-8's highest (EF BF BF, F4 8F BF BF)
    ids = ["a\0b", "plain", "\0", "\u00e9\0\u2713", "\u00ff", "x\uffff\U0010ffff"]
    # stored as 0.1.0's add did: add refuses an id with a NUL now (refuse_unstorable_ids)
    await store._conn.add("0", *[codec.task_arg(task(task_id)) for task_id in ids])

    fired = await claim_fire(store, "w1", T0)

    assert sorted(t.id for t in fired) == sorted(ids)
    assert await store.list_runs() == []  # every run completed
    for task_id in ids:
        stored = await store.get(task_id)
        assert stored is not None
        assert (stored.runs, stored.running, stored.next_run_time) == (1, 0, T0 + timedelta(minutes=1))


async def test_a_completion_whose_reply_was_lost_finds_its_re_queued_run_when_sent_again(
    redis_url: str, prefix: str
) -> None:
    # complete.lua ran, the connection closed before its reply: the client sends it again
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    async with reply_dropping_proxies([port]) as proxies:
        proxy = proxies[port]
        store = RedisStore(proxy.url, prefix=prefix)
        try:
            await store.add([task("done", at=T0), task("retried", at=T0)])
            done, retried = sorted(await store_runs_fired(store), key=lambda run: run.task_id)
            results = [
                RunResult(run=done, outcome=RunOutcome.SUCCESS, finished_at=T0),
                RunResult(run=retried, outcome=RunOutcome.FAILURE, finished_at=T0, retry_at=T0 + LEASE),
            ]
            proxy.to_drop = 1
            # the re-queued run is found waiting under its token; the deleted one is reported (the
            # engine, still holding its lease, knows it completed it: see Completions)
            assert await store.complete("w1", results) == {done.id}
            assert proxy.dropped == 1
            [waiting] = await store.list_runs()
            assert (waiting.id, waiting.owner, waiting.attempt) == (retried.id, None, 2)
        finally:
            await store.close()
            await delete_keys(redis_url, prefix)


@pytest.mark.parametrize("field", [2, 3, 4, 5])  # version, running, runs, failures
async def test_a_task_quarantined_for_a_live_field_complete_lua_cannot_read_is_repaired_by_adding_it_again(
    store: RedisStore, redis_url: str, prefix: str, field: int
) -> None:
    # what the engine's quarantine tells its operator to do: the task added again must run and
    # complete, not keep the unreadable field (and be refused and quarantined again)
    await store.add([task("a", at=T0)])
    [run] = await store_runs_fired(store)
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        key = f"{{{prefix}}}:tasks"
        record = await client.hget(key, "a")
        assert isinstance(record, bytes)
        fields = record.split(b"|", 9)
        fields[field - 1] = b"x"
        await client.hset(key, "a", b"|".join(fields))
    finally:
        await client.aclose()
    assert await store.quarantine("a", "refused: no result completes it")

    await store.add([task("a", at=T0 + LEASE)], replace=True)
    assert await store.quarantined() == []
    done = RunResult(run=run, outcome=RunOutcome.SUCCESS, finished_at=T0)
    assert await store.complete("w1", [done]) == set()
    repaired = await store.get("a")
    assert repaired is not None and repaired.version >= 1
    assert (repaired.runs, repaired.failures) == (1, 0)  # counted from the default again


async def test_a_sent_record_is_the_one_join_live_writes_for_every_field_combination(redis_url: str) -> None:
    # add.lua writes a new task's record exactly as the client sent it: it must be the record
    # the scripts' own join_live writes for the same fields (defaults empty), or a record would
    # change bytes the first time any script rewrites it
    lib = resources.files("backbeat.stores.redis").joinpath("scripts", "_lib.lua").read_text("utf-8")
    body = "return join_live(parse_live(ARGV[2]))"
    script = lualib.needed(lib, body) + "\n" + body
    dates = [
        None,
        T0,
        T0.replace(microsecond=0),
        datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),
        datetime(2150, 6, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(2024, 1, 1, 14, 0, 0, 5, tzinfo=timezone(timedelta(hours=2))),
        datetime(2024, 1, 1, 12, 0, 0),  # naive: taken as UTC
    ]
    tasks: list[Task] = []
    for n, (at, paused, orphaned, count, max_instances, outcome) in enumerate(
        itertools.product(dates, [False, True], [None, "gone"], [0, 3], [1, 4], [None, "", "failed|twice"])
    ):
        tasks.append(
            task(
                f"t{n}",
                at=at,
                tags=("a",) if n % 2 else (),
                paused=paused,
                orphaned=orphaned,
                version=count,
                running=count,
                runs=count,
                failures=count,
                last_outcome=outcome,
                last_run_at=at if count else None,
                options=TaskOptions(max_instances=max_instances),
            )
        )
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        for t in tasks:
            arg = codec.task_arg(t)
            id_size, tags_size, rest = arg.split(b"|", 2)
            record = rest[int(id_size) + int(tags_size) :]
            assert await client.eval(script, 0, "{unused}:", record) == record, t
    finally:
        await client.aclose()


async def test_a_worker_with_a_pool_of_two_connections_stores_and_runs_a_burst_of_adds(
    redis_url: str, prefix: str, make_scheduler: SchedulerFactory, record_file: Path
) -> None:
    # its wake-ups hold one connection for good: the claims, completions and coalesced batches
    # in flight share the other, each waiting its turn (before, one failed: "Too many connections")
    config = RedisJobStoreConfig(host=redis_url, lock_prefix=prefix, connection_pool_size=2)
    worker = make_scheduler(config)
    await worker.start()
    try:
        due = datetime.now(UTC)
        adds = (worker.add_task(jobs.note, "date", run_date=due, args=[str(record_file)]) for _ in range(300))
        assert len(set(await asyncio.gather(*adds))) == 300

        async def all_ran() -> bool:
            return len(jobs.read_records(record_file)) == 300

        await eventually(all_ran, timeout=30)
    finally:
        await worker.shutdown()
        await delete_keys(redis_url, prefix)


async def test_a_store_whose_url_sets_max_connections_waits_for_a_free_connection(
    redis_url: str, prefix: str
) -> None:
    # the URL's ?max_connections= makes the pool as small as the option does: calls wait their
    # turn there too (before, the third add in flight failed: "Too many connections")
    separator = "&" if "?" in redis_url else "?"
    store = RedisStore(f"{redis_url}{separator}max_connections=2", prefix=prefix)
    await store.open()
    try:
        await asyncio.gather(*(store.add([task(f"t{i:02d}")]) for i in range(20)))
        assert len((await store.list())[0]) == 20
    finally:
        await store.close()
        await delete_keys(redis_url, prefix)


async def test_a_store_of_max_connections_takes_the_clients_own_options(redis_url: str, prefix: str) -> None:
    # single_connection_client is the client's, not its connections' (before, with
    # max_connections the pool passed it on: "unexpected keyword argument")
    store = RedisStore(redis_url, prefix=prefix, max_connections=10, single_connection_client=True)
    await store.open()
    try:
        await store.add([task("a")])
        assert [t.id for t in (await store.list())[0]] == ["a"]
    finally:
        await store.close()
        await delete_keys(redis_url, prefix)
