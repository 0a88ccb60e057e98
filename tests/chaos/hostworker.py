"""A worker host's scheduler process: ``python -m tests.chaos.hostworker STORE_URL --lease 2
--clock-offset 4``. Its scheduler's clock runs ``--clock-offset`` seconds ahead (behind if
negative) of the OS clock; it prints ``ready`` once started and stops gracefully on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from datetime import datetime, timedelta

from backbeat import BackgroundTaskScheduler, SchedulerConfig
from backbeat.model.records import utcnow


async def main(url: str, lease: float, offset: float, seconds: float) -> None:
    skew = timedelta(seconds=offset)

    def clock() -> datetime:
        return utcnow() + skew

    config = SchedulerConfig(lease_seconds=lease, poll_interval=0.2, shutdown_timeout=5.0)
    scheduler = BackgroundTaskScheduler(store=url, config=config, clock=clock)
    await scheduler.start_async()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
    finally:
        await scheduler.stop_async()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--clock-offset", type=float, default=0.0)
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    logging.basicConfig(format="%(created).3f %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    asyncio.run(main(args.url, args.lease, args.clock_offset, args.seconds))
