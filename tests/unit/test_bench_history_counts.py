"""``bench.history_counts``: its per-fire arithmetic, its reading of callgrind's files and of the
Redis history keys' memory."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from bench.callgrind import inclusive, total
from bench.history_counts import Count, HistoryCounts, PerFire, history_memory
from tests.redis_server import usable_redis_url


def test_per_fire_is_the_difference_of_the_two_phases_over_the_runs_between() -> None:
    off = PerFire.between(Count(2000, 1_000_000, 900_000, 50_000), Count(4000, 1_420_000, 1_300_000, 90_000))
    on = PerFire.between(Count(2000, 1_100_000, 1_000_000, 0), Count(4000, 1_540_000, 1_460_000, 0))

    assert (off.client, off.server, off.cron) == (210.0, 200.0, 20.0)
    assert on.total == 450.0
    assert HistoryCounts("redis", off, on).share == pytest.approx(450 / 410 - 1)


def test_the_breakdown_gives_each_parts_growth_as_a_share_of_a_fire_off_and_the_memory_per_entry() -> None:
    counted = HistoryCounts(
        "redis",
        off=PerFire(client=210_900, server=217_600, cron=15_000),
        on=PerFire(client=222_800, server=248_700, cron=16_000),
        memory={"history_by_task": 984_000, "history_batch": 880_000, "history_at": 40_000},
        runs=4000,
    )

    # 471.5k / 428.5k - 1 = +10.03%; the client's +11.9k and the server's +31.1k of 428.5k
    assert counted.describe() == "428.5k → 471.5k (+10.0%)"
    assert counted.lines() == [
        "redis: history's share +10.0% (target ≤ +10%: missed)",
        "  client  210.9k →  222.8k (+11.9k, +2.8% of a fire)",
        "  server  217.6k →  248.7k (+31.1k, +7.3% of a fire)",
        "  total   428.5k →  471.5k (serverCron, not counted: 15.0k → 16.0k)",
        "  memory 476 B per entry after 4,000 runs (history_at 10, history_batch 220, history_by_task 246)",
    ]


def test_the_total_is_the_summary_line_not_the_totals_line(tmp_path: Path) -> None:
    dump = tmp_path / "server.out.1"
    dump.write_text("# callgrind format\nevents: Ir\nsummary: 76126\n\nfn=(1) main\n0 5\ntotals: 104143\n")
    assert total(dump) == 76126

    dump.write_text("# callgrind format\nevents: Ir\n")
    with pytest.raises(ValueError, match="no 'summary:' line"):
        total(dump)


# main (100 of its own) calls serverCron (400 of its own, 200 more in databasesCron) and call (300)
A_SERVERS_DUMP = """# callgrind format
version: 1
creator: callgrind-3.22.0
cmd: redis-server
positions: line
events: Ir
summary: 1000

ob=(1) /usr/bin/redis-server
fl=(1) server.c
fn=(1) main
1 100
cfn=(2) serverCron
calls=10 5
1 600
cfn=(3) call
calls=1 7
1 300
fn=(2)
5 400
cfn=(4) databasesCron
calls=10 9
5 200
fn=(4)
9 200
fn=(3)
7 300

totals: 1000
"""


@pytest.mark.skipif(shutil.which("callgrind_annotate") is None, reason="valgrind is not installed")
def test_a_functions_inclusive_count_holds_what_it_called(tmp_path: Path) -> None:
    dump = tmp_path / "server.out.1"
    dump.write_text(A_SERVERS_DUMP)

    assert inclusive(dump, "serverCron") == 600
    assert inclusive(dump, "databasesCron") == 200
    assert inclusive(dump, "beforeSleep") == 0
    assert inclusive(dump, "Cron") == 0  # a name's ending is not the name


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
