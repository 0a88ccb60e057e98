"""The sharded store's addressing: its URL, the shard of an id, and its fencing tokens."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from backbeat.errors import ConfigurationError
from backbeat.stores import store_from_url
from backbeat.stores.redis.cluster import ShardedRedisStore
from backbeat.stores.redis.sharding import (
    ClusterTarget,
    ShardTokens,
    parse_cluster_url,
    shard_of,
    shard_prefix,
    shards_key,
    task_of_run,
)


def test_a_cluster_url_names_nodes_prefix_shards_and_durability() -> None:
    target = parse_cluster_url("redis+cluster://u:p%40ss@10.0.0.1:7000,[::1]:7001/?prefix=jobs&shards=24")
    assert target == ClusterTarget(
        startup_nodes=(("10.0.0.1", 7000), ("::1", 7001)),
        prefix="jobs",
        shards=24,
        username="u",
        password="p@ss",
    )
    assert parse_cluster_url("redis+cluster://h:1/?durability=replica").durability == "replica"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://h:1/", "starts with redis\\+cluster://"),
        ("redis+cluster:///?prefix=p", "at least one host:port"),
        ("redis+cluster://h/", "'h' in .* is not host:port"),
        ("redis+cluster://h:x/", "port of 'h:x' must be a whole number"),
        ("redis+cluster://h:1/?shards=0", "shards must be between 1 and 1024, not 0"),
        ("redis+cluster://h:1/?shards=many", "shards must be a whole number, not 'many'"),
        ("redis+cluster://h:1/?durability=disk", "durability must be 'leader' or 'replica', not 'disk'"),
        ("redis+cluster://h:1/?db=2", "unknown Redis Cluster store option\\(s\\) \\['db'\\]"),
    ],
)
def test_a_bad_cluster_url_is_refused_naming_what_is_wrong(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        parse_cluster_url(url)


def test_store_from_url_makes_a_sharded_store() -> None:
    store = store_from_url("redis+cluster://127.0.0.1:7000,127.0.0.1:7001/?prefix=p&shards=6")
    assert isinstance(store, ShardedRedisStore)
    assert (store.prefix, store.wanted_shards, store.startup_nodes) == (
        "p",
        6,
        (("127.0.0.1", 7000), ("127.0.0.1", 7001)),
    )


def test_a_task_and_its_runs_live_in_one_shard_that_never_changes() -> None:
    # a fixed value: a release that hashed differently would not find the tasks stored before it
    assert shard_of("a", 12) == 3904355907 % 12 == 3
    assert task_of_run("user@example.com@2026-01-01T00:00:00+00:00") == "user@example.com"
    assert shards_key("p") == "{p}:shards"
    spread = {shard_of(f"task-{i}", 6) for i in range(100)}
    assert spread == set(range(6))


def test_shard_tokens_grow_with_their_shard_and_never_meet_another_shards() -> None:
    tokens = ShardTokens(4)
    out = {(t, shard): tokens.outward(t, shard) for t in range(1, 50) for shard in range(4)}
    assert len(set(out.values())) == len(out)
    for shard in range(4):
        series = [out[(t, shard)] for t in range(1, 50)]
        assert series == sorted(series)
        assert all(tokens.inward(token, shard) == t for (t, s), token in out.items() if s == shard)
    assert tokens.outward(0, 3) == 0 and tokens.inward(0, 3) == 0
    assert tokens.inward(tokens.outward(5, 1), 2) == -1  # another shard's token is nobody's here


@pytest.mark.parametrize("shards", [1, 2, 3, 6, 12, 64])
def test_shard_i_lies_in_the_ith_equal_part_of_the_slots(shards: int) -> None:
    for shard in range(shards):
        tag = shard_prefix("jobs", shard, shards)
        assert tag.startswith(f"jobs:{shard}")
        assert shard * 16384 // shards <= key_slot(tag.encode()) < (shard + 1) * 16384 // shards
    # masters holding even runs of slots (as redis-cli makes them) get as many shards each
    for masters in (1, 2, 3):
        if shards % masters == 0:
            owner = [
                key_slot(shard_prefix("jobs", i, shards).encode()) * masters // 16384 for i in range(shards)
            ]
            assert [owner.count(m) for m in range(masters)] == [shards // masters] * masters
