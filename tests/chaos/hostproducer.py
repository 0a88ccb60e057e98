"""The producer host: ``python -m tests.chaos.hostproducer STORE_URL RECORD_FILE``. Adds a
recurring task (``tick``, every ``--tick-interval`` s, 0.1 s of work) and ``--one-shots``
one-shot tasks (``one-N``, ``--seconds`` s of work each, the first due ``--start-in`` s from
now, then every ``--spacing`` s), prints one JSON line (``ids``, ``first``) and exits."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import timedelta

from backbeat import BackgroundTaskScheduler, SchedulerConfig
from backbeat.model.records import utcnow
from tests.chaos import hostjobs


async def main(args: argparse.Namespace) -> None:
    scheduler = BackgroundTaskScheduler(
        store=args.url, config=SchedulerConfig(lease_seconds=args.lease), producer_only=True
    )
    await scheduler.start_async()
    try:
        await scheduler.add_task(
            hostjobs.work, "interval", seconds=args.tick_interval, args=[args.record, 0.1, "tick"], id="tick"
        )
        first = utcnow() + timedelta(seconds=args.start_in)
        ids = [f"one-{i}" for i in range(args.one_shots)]
        await scheduler.add_tasks(
            [
                {
                    "func": hostjobs.work,
                    "trigger": "date",
                    "run_date": first + timedelta(seconds=i * args.spacing),
                    "id": task_id,
                    "args": [args.record, args.seconds, task_id],
                }
                for i, task_id in enumerate(ids)
            ]
        )
    finally:
        await scheduler.stop_async()
    print(json.dumps({"ids": ids, "first": first.timestamp()}), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("record")
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--one-shots", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--start-in", type=float, default=0.5)
    parser.add_argument("--spacing", type=float, default=0.2)
    parser.add_argument("--tick-interval", type=float, default=1.0)
    asyncio.run(main(parser.parse_args()))
