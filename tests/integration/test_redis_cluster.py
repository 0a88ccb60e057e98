"""The sharded store on a real Redis Cluster: a scheduler on it, its shard count kept, writes that
wait for a replica, and a master killed mid-run while workers keep every fire time."""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from backbeat.errors import ConfigurationError
from backbeat.model.records import Task
from backbeat.stores.redis.cluster import ShardedRedisStore
from backbeat.stores.redis.sharding import shard_of, shard_prefix
from tests.chaos.records import executions, overlaps
from tests.integration import jobs
from tests.redis_cluster import RedisCluster, start_cluster
from tests.scheduling import SchedulerFactory, Worker, wait_for

pytestmark = pytest.mark.rediscluster


@pytest.fixture
def own_cluster() -> Iterator[RedisCluster]:
    """A 3-master, 3-replica cluster of this test's own, which it may hurt."""
    try:
        cluster = start_cluster()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"no Redis Cluster could be started: {exc}")
    yield cluster
    for node in cluster.nodes:  # a paused node would not stop
        if node.process is not None and node.process.poll() is None:
            os.kill(node.process.pid, signal.SIGCONT)
    cluster.stop()


def prefix() -> str:
    return f"it-{uuid.uuid4().hex[:10]}"


def one_shot(task_id: str, at: datetime) -> Task:
    return Task(id=task_id, name=task_id, job="tests:job", trigger={"type": "date"}, next_run_time=at)


async def test_a_scheduler_on_a_cluster_runs_one_shots_and_recurring_tasks(
    cluster: RedisCluster, make_scheduler: SchedulerFactory, record_file: Path
) -> None:
    url = cluster.url(prefix(), shards=6)
    worker = make_scheduler(url)
    await worker.start_async()
    producer = make_scheduler(url, role="producer")
    for i in range(24):  # over every shard
        await producer.schedule_immediate_task(f"job {i}", jobs.note, args=[str(record_file), f"one-{i}"])
    await producer.add_task(jobs.note, "interval", seconds=0.2, args=[str(record_file), "tick"], id="ticker")
    await wait_for(lambda: sum(r["label"].startswith("one-") for r in jobs.read_records(record_file)) == 24)
    await wait_for(lambda: sum(r["label"] == "tick" for r in jobs.read_records(record_file)) >= 3)
    labels = sorted(r["label"] for r in jobs.read_records(record_file) if r["label"].startswith("one-"))
    assert labels == sorted(f"one-{i}" for i in range(24))
    assert [task.id for task in await producer.list_tasks()] == ["ticker"]
    await producer.shutdown()
    await worker.shutdown()


async def test_a_store_keeps_its_shard_count_and_refuses_another(cluster: RedisCluster) -> None:
    name = prefix()
    first = ShardedRedisStore(cluster.url(name, shards=4))
    await first.open()
    assert first.shard_count == 4
    await first.add([one_shot(f"t{i}", datetime.now(UTC)) for i in range(20)])
    other = ShardedRedisStore(cluster.url(name, shards=8))
    with pytest.raises(ConfigurationError, match=f"{name!r} has 4 shards, not the 8 asked for"):
        await other.open()
    await other.close()
    again = ShardedRedisStore(cluster.url(name))  # no shards=: the stored count
    await again.open()
    assert again.shard_count == 4
    assert len((await again.list())[0]) == 20
    await again.clear()
    await again.close()
    await first.close()


async def test_writes_wait_for_a_replica_when_asked(
    own_cluster: RedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    durable = ShardedRedisStore(own_cluster.url(prefix(), shards=3, durability="replica"))
    quick = ShardedRedisStore(own_cluster.url(prefix(), shards=3))
    await durable.open()
    await quick.open()
    await durable.add([one_shot("acknowledged", datetime.now(UTC))])
    assert "not acknowledged" not in caplog.text

    masters = {node.port for node in own_cluster.masters()}
    replicas = [node for node in own_cluster.live() if node.port not in masters]
    for node in replicas:
        assert node.process is not None
        os.kill(node.process.pid, signal.SIGSTOP)
    try:
        with caplog.at_level(logging.WARNING, logger="backbeat.stores.redis"):
            await quick.add([one_shot("quick", datetime.now(UTC))])
            assert "not acknowledged" not in caplog.text
            started = time.monotonic()
            await durable.add([one_shot("waited", datetime.now(UTC))])
            assert time.monotonic() - started >= 0.9  # it waited for WAIT's timeout
            assert "not acknowledged by a replica" in caplog.text
    finally:
        for node in replicas:
            assert node.process is not None
            os.kill(node.process.pid, signal.SIGCONT)
    assert await durable.get("waited") is not None
    await durable.close()
    await quick.close()


def shards_on(cluster: RedisCluster, name: str, shards: int, port: int) -> set[int]:
    """The shards of store ``name`` whose slot the master on ``port`` serves."""
    live = cluster.live()[0]
    with redis.Redis(port=live.port) as client:
        ranges = client.execute_command("CLUSTER", "SLOTS")
    owned = [(int(r[0]), int(r[1])) for r in ranges if int(r[2][1]) == port]
    return {
        i
        for i in range(shards)
        if any(lo <= key_slot(f"{{{shard_prefix(name, i, shards)}}}".encode()) <= hi for lo, hi in owned)
    }


async def test_a_master_killed_mid_run_loses_no_fire_time_and_runs_none_twice_at_once(
    own_cluster: RedisCluster,
    make_scheduler: SchedulerFactory,
    record_file: Path,
    workers: Callable[..., Worker],
) -> None:
    name, shards = prefix(), 6
    url = own_cluster.url(name, shards=shards, durability="replica")
    started = [workers(url, "--lease", "2") for _ in range(2)]
    producer = make_scheduler(url, role="producer")
    first = datetime.now(UTC) + timedelta(seconds=1)
    await producer.add_tasks(
        [
            {
                "func": jobs.slow,
                "trigger": "date",
                "run_date": first + timedelta(seconds=i * 0.1),
                "id": f"one-{i}",
                "args": [str(record_file), 0.5, f"one-{i}"],
                "misfire_grace_time": None,  # late after the failover, but run
            }
            for i in range(60)
        ]
    )
    await wait_for(lambda: len(jobs.read_records(record_file)) >= 10, timeout=20)

    victim = own_cluster.masters()[0]
    hit = shards_on(own_cluster, name, shards, victim.port)
    victim.kill()
    killed_at = time.time()
    own_cluster.wait_ok(timeout=30)  # its replica took over

    def ended() -> set[str]:
        return {r["label"] for r in jobs.read_records(record_file) if r["event"] == "end"}

    await wait_for(lambda: len(ended()) == 60, timeout=60, interval=0.25)
    records = jobs.read_records(record_file)
    assert all(worker.process.poll() is None for worker in started)
    assert overlaps(executions(records), killed={}) == []
    assert ended() == {f"one-{i}" for i in range(60)}
    resumed = [
        r["t"] - killed_at
        for r in records
        if r["event"] == "start" and r["t"] > killed_at and shard_of(r["task_id"], shards) in hit
    ]
    assert resumed, "no run of the failed master's shards started after the failover"
    print(f"[failover] shards on the killed master: {sorted(hit)}; firing resumed after {min(resumed):.2f}s")
    await producer.shutdown()
