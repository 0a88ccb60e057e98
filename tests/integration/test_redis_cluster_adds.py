"""Adds on Redis Cluster whose reply was lost after the script ran: the sharded store sends them
once more marked as resends, as the single-node store does, so that the script takes its own
earlier write for what it is; with writes acknowledged by a replica too.

The cluster client learns the nodes' addresses from the cluster itself (``CLUSTER SLOTS`` names
their real ports), so each node gets a reply-dropping proxy that redis-py's ``address_remap``
puts in its place: every connection to a node goes through that node's proxy, and the one in
front of the master serving a task's shard loses the add's reply after the master ran it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from backbeat.errors import TaskExistsError
from backbeat.stores.redis.cluster import ShardedRedisStore
from backbeat.stores.redis.keys import Keys
from backbeat.stores.redis.sharding import Durability, shard_of, shard_prefix
from tests.adds import T0, task
from tests.redis_cluster import RedisCluster
from tests.redis_proxy import ReplyDroppingProxy, reply_dropping_proxies

pytestmark = pytest.mark.rediscluster

SHARDS = 3


@pytest.fixture
async def proxies(cluster: RedisCluster) -> AsyncIterator[dict[int, ReplyDroppingProxy]]:
    """A proxy in front of each node, by the node's port."""
    async with reply_dropping_proxies(node.port for node in cluster.nodes) as proxies:
        yield proxies


def through(proxies: dict[int, ReplyDroppingProxy]) -> Callable[[tuple[str, int]], tuple[str, int]]:
    """An ``address_remap`` that sends every connection to a node through its proxy."""
    ports = {port: proxy.listen_port for port, proxy in proxies.items()}
    return lambda address: (address[0], ports.get(int(address[1]), int(address[1])))


@pytest.fixture(params=["leader", "replica"])
async def store(
    request: pytest.FixtureRequest, proxies: dict[int, ReplyDroppingProxy]
) -> AsyncIterator[ShardedRedisStore]:
    durability: Durability = request.param
    first = next(iter(proxies.values()))
    store = ShardedRedisStore(
        startup_nodes=[("127.0.0.1", first.listen_port)],
        prefix=f"lost-{uuid.uuid4().hex[:10]}",
        shards=SHARDS,
        durability=durability,
        address_remap=through(proxies),
    )
    await store.open()
    yield store
    await store.clear()
    await store.close()


def proxy_of(
    store: ShardedRedisStore, proxies: dict[int, ReplyDroppingProxy], task_id: str
) -> ReplyDroppingProxy:
    """The proxy in front of the master that serves ``task_id``'s shard."""
    shard = shard_of(task_id, SHARDS)
    node = store.client.get_node_from_key(Keys(shard_prefix(store.prefix, shard, SHARDS)).tasks)
    assert node is not None
    return next(proxy for proxy in proxies.values() if proxy.listen_port == int(node.port))


async def test_an_add_whose_reply_was_lost_after_it_ran_is_reported_added(
    store: ShardedRedisStore, proxies: dict[int, ReplyDroppingProxy]
) -> None:
    await store.add([task("a")])
    proxy = proxy_of(store, proxies, "c")
    proxy.to_drop = 1
    await store.add([task("c")])  # not TaskExistsError: the resend finds its own write
    assert proxy.dropped == 1
    assert await store.get("a") == task("a")
    assert await store.get("c") == task("c")


async def test_an_add_of_a_taken_id_whose_reply_was_lost_still_fails(
    store: ShardedRedisStore, proxies: dict[int, ReplyDroppingProxy]
) -> None:
    await store.add([task("a")])
    proxy = proxy_of(store, proxies, "a")
    proxy.to_drop = 1
    with pytest.raises(TaskExistsError) as raised:
        await store.add([task("a", created_at=T0.replace(microsecond=1))])  # another document
    assert raised.value.task_ids == ["a"]
    assert proxy.dropped == 1
    assert await store.get("a") == task("a")
