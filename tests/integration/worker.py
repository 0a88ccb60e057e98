"""A scheduler process for multi-process tests: ``python -m tests.integration.worker STORE_URL``.

It runs until killed or until ``--seconds`` pass, printing ``ready`` once started. With
``--clock-offset S`` its scheduler's clock runs S seconds ahead of the OS clock (behind if
negative), as on a host with a skewed clock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from datetime import datetime, timedelta

from backbeat import BackgroundTaskScheduler, SchedulerConfig
from backbeat.model.records import utcnow


async def main(url: str, lease: float, seconds: float, shutdown_timeout: float, offset: float) -> None:
    skew = timedelta(seconds=offset)

    def clock() -> datetime:
        return utcnow() + skew

    config = SchedulerConfig(lease_seconds=lease, poll_interval=0.2, shutdown_timeout=shutdown_timeout)
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
    parser.add_argument("--lease", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--shutdown-timeout", type=float, default=5.0)
    parser.add_argument("--clock-offset", type=float, default=0.0)
    args = parser.parse_args()
    # warnings (store errors, lost leases) on stderr with the time, for tests that read them
    logging.basicConfig(format="%(created).3f %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    asyncio.run(main(args.url, args.lease, args.seconds, args.shutdown_timeout, args.clock_offset))
    sys.exit(0)
