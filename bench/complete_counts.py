"""Server instructions of Redis completions: ``python -m bench.complete_counts --pid PID --n N``.

Against a ``redis-server`` run under callgrind (``valgrind --tool=callgrind redis-server --port
P``, process id ``PID``): stores ``N`` due one-shot tasks, claims and fires them, zeroes the
server's counters (``callgrind_control -z``), completes the runs in batches of ``--batch``
(history on, as the engine sends them; ``--no-history``: off), and dumps the counters
(``callgrind_control -d``). The dump's total at ``2N`` minus the one at ``N``, divided by
``N``, is the server's instructions per completion (the per-call costs of the set-up cancel out).
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime, timedelta

from backbeat.model.history import HistorySettings
from backbeat.model.records import FireDecision, Run, RunOutcome, RunResult, Task
from backbeat.stores.redis import RedisStore
from bench.callgrind import counted

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LEASE = timedelta(seconds=600)
"""Long enough that no lease ends under callgrind."""


def _task(task_id: str, name: str | None = None) -> Task:
    trigger = {"type": "date", "run_date": T0.isoformat()}
    return Task(id=task_id, name=name or task_id, job="bench.counted:noop", trigger=trigger, next_run_time=T0)


async def _started(store: RedisStore, n: int, name: str | None = None) -> list[Run]:
    """``n`` runs leased to "w", each carrying its task (as the engine's do), named ``name``
    (``None``: each by its id)."""
    for first in range(0, n, 500):
        await store.add([_task(f"t{i}", name) for i in range(first, min(n, first + 500))])
    runs: list[Run] = []
    while len(runs) < n:
        claim = await store.claim_due("w", now=T0, lease=LEASE, limit=500)
        decisions = [
            FireDecision(task_id=t.id, claimed_version=t.version, fire_times=[T0], next_run_time=None)
            for t in claim.tasks
        ]
        fired = await store.fire("w", decisions, now=T0, lease=LEASE)
        for result, task in zip(fired, claim.tasks, strict=True):
            for run in result.runs:
                run.task = task
                runs.append(run)
    return runs


async def main(
    url: str, prefix: str, pid: int, n: int, batch: int, *, history: bool = True, name: str | None = None
) -> None:
    store = RedisStore(url, prefix=prefix)
    await store.open()
    await store.clear()
    runs = await _started(store, n, name)
    async with counted(pid):
        ended = T0 + timedelta(seconds=1)
        for first in range(0, n, batch):
            results = [
                RunResult(run=run, outcome=RunOutcome.SUCCESS, finished_at=ended, started_at=T0)
                for run in runs[first : first + batch]
            ]
            assert not await store.complete("w", results, history=HistorySettings() if history else None)
    await store.clear()
    await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", default="redis://127.0.0.1:6379/0", help="the callgrind server's URL")
    parser.add_argument("--prefix", default="bench-complete-counts")
    parser.add_argument("--pid", type=int, required=True, help="the callgrind server's process id")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--no-history", action="store_true", help="complete without history entries")
    parser.add_argument(
        "--name",
        help="one name for every task (its entries take the plain success's way, as a worker's of a "
        "few jobs do; by default each task is named by its id, a name seen once: the general way)",
    )
    args = parser.parse_args()
    asyncio.run(
        main(
            args.store, args.prefix, args.pid, args.n, args.batch, history=not args.no_history, name=args.name
        )
    )
