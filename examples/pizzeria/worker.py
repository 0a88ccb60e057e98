"""The worker process: runs every task the web process schedules.

``python -m examples.pizzeria.worker [--store URL] [--prefix P] [--record FILE] [--minute S]``
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Sequence

from examples.pizzeria.cli import parse, settings_from
from examples.pizzeria.services import build_application
from examples.pizzeria.settings import PizzeriaSettings


async def run_worker(settings: PizzeriaSettings) -> None:
    """Run the scheduler until SIGTERM or SIGINT, then stop gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with build_application(settings, producer_only=False):
        print(f"pizzeria worker {os.getpid()} ready on {settings.store}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point."""
    settings = settings_from(parse("examples.pizzeria.worker", "Mario's pizzeria: the worker process", argv))
    asyncio.run(run_worker(settings))


if __name__ == "__main__":
    main()
