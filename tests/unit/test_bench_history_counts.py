"""``bench.history_counts``: its per-fire arithmetic, its reading of callgrind's files and of the
Redis history keys' memory."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from bench.callgrind import total
from bench.history_counts import Count, HistoryCounts, PerFire, history_memory
from tests.redis_server import usable_redis_url


def test_per_fire_is_the_difference_of_the_two_phases_over_the_runs_between() -> None:
    off = PerFire.between(Count(2000, 1_000_000, 900_000, 50_000), Count(4000, 1_420_000, 1_300_000, 90_000))
    on = PerFire.between(Count(2000, 1_100_000, 1_000_000, 0), Count(4000, 1_540_000, 1_460_000, 0))

    assert (off.client, off.server, off.cron) == (210.0, 200.0, 20.0)
    assert on.total == 450.0
    assert HistoryCounts("redis", off, on).share == pytest.approx(450 / 410 - 1)


def test_the_total_is_the_summary_line_not_the_totals_line(tmp_path: Path) -> None:
    dump = tmp_path / "server.out.1"
    dump.write_text("# callgrind format\nevents: Ir\nsummary: 76126\n\nfn=(1) main\n0 5\ntotals: 104143\n")
    assert total(dump) == 76126

    dump.write_text("# callgrind format\nevents: Ir\n")
    with pytest.raises(ValueError, match="no 'summary:' line"):
        total(dump)


@pytest.fixture
def prefix() -> Iterator[str]:
    prefix = f"counts-{uuid.uuid4().hex[:8]}"
    yield prefix
    client = redis.Redis.from_url(usable_redis_url())
    keys = list(client.scan_iter(match=f"{{{prefix}}}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.mark.redis
def test_history_memory_sums_the_history_keys_by_family(prefix: str) -> None:
    client = redis.Redis.from_url(usable_redis_url())
    base = f"{{{prefix}}}:"
    client.zadd(f"{base}history_by_task", {f"task-{i}": 0 for i in range(50)})
    for batch in (1, 2):
        client.hset(f"{base}history_batch:{batch}", mapping={"d": "x" * 300 * batch, "m": "y" * 40})
    client.hset(f"{base}tasks", "t", "z" * 1000)
    sizes = {
        key: int(client.memory_usage(f"{base}{key}", samples=0) or 0)
        for key in ("history_by_task", "history_batch:1", "history_batch:2")
    }
    client.close()

    assert history_memory(usable_redis_url(), prefix) == {
        "history_by_task": sizes["history_by_task"],
        "history_batch": sizes["history_batch:1"] + sizes["history_batch:2"],
    }
