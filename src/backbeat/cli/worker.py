"""``backbeat worker APP``: run a scheduler process for an application's jobs until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Annotated

import typer

from backbeat.api.scheduler import BackgroundTaskScheduler
from backbeat.cli.common import FAILED, PrefixOption, fail, run_cleanly
from backbeat.cli.loader import WorkerSettings, load_scheduler

log = logging.getLogger("backbeat.worker")


def worker(
    app_spec: Annotated[
        str,
        typer.Argument(
            metavar="APP",
            help="pkg.module (its jobs; a scheduler in it is used) or pkg.module:attr "
            "(a BackgroundTaskScheduler or a factory returning one)",
            show_default=False,
        ),
    ],
    store: Annotated[
        str | None,
        typer.Option(
            "--store", "-s", envvar="BACKBEAT_STORE_URL", help="Store URL (default sqlite:///backbeat.db)"
        ),
    ] = None,
    prefix: PrefixOption = None,
    producer_only: Annotated[
        bool, typer.Option(help="Only keep declared tasks in the store; run nothing")
    ] = False,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Runs executed at once (default 1000)")
    ] = None,
    lease: Annotated[
        float | None, typer.Option(min=0.5, help="Lease of a run in seconds (default 10)")
    ] = None,
    shutdown_timeout: Annotated[
        float | None, typer.Option(min=0.0, help="Seconds running jobs get to finish on stop (default 30)")
    ] = None,
    log_level: Annotated[str, typer.Option(help="Logging level")] = "INFO",
) -> None:
    """Run a worker for APP's jobs; SIGINT or SIGTERM stops it gracefully (a second SIGINT at once)."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=log_level.upper())
    settings = WorkerSettings(
        store=store,
        prefix=prefix,
        producer_only=producer_only,
        concurrency=concurrency,
        lease=lease,
        shutdown_timeout=shutdown_timeout,
    )
    try:
        run_cleanly(lambda: _serve(app_spec, settings))
    except KeyboardInterrupt:
        fail("interrupted while stopping: unfinished runs are taken over when their lease expires", 130)


async def _serve(app_spec: str, settings: WorkerSettings) -> None:
    loaded = await load_scheduler(app_spec, settings)
    if loaded.from_app and settings.given():
        log.warning("%s provides its own scheduler: %s ignored", app_spec, ", ".join(settings.given()))
    scheduler = loaded.scheduler
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await scheduler.start_async()
        mode = "producer" if not scheduler.engine_config.claim_enabled else "worker"
        typer.echo(f"backbeat {mode} {scheduler.engine_config.owner} ready on {scheduler.store!r}")
        await stop.wait()
        # a second SIGINT now raises KeyboardInterrupt; a second SIGTERM ends the process
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        log.info("stopping: waiting for running jobs (up to %ss)", scheduler.engine_config.shutdown_timeout)
    finally:
        await _stop(scheduler)


async def _stop(scheduler: BackgroundTaskScheduler) -> None:
    try:
        await scheduler.stop_async()
    except Exception as exc:  # the store went away: leases expire and other workers take over
        fail(f"worker stopped uncleanly: {exc!r}", FAILED)
