"""The monitoring service's commands: ``run`` the service, ``add``/``terminate`` workers,
``status`` of the monitoring tasks, and the scripted ``demo``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
from collections.abc import Sequence
from typing import Any

from backbeat import BackgroundTaskScheduler
from examples.worker_monitoring.app import build_application
from examples.worker_monitoring.monitoring import WorkerMonitoringScheduler
from examples.worker_monitoring.settings import MonitoringSettings
from examples.worker_monitoring.stand_ins import WorkerRepository


async def run_service(settings: MonitoringSettings, workers: Sequence[str]) -> None:
    """Register ``workers`` (if new), then run the service until SIGTERM or SIGINT."""
    repository = WorkerRepository(settings.workers_file)
    for worker_id in workers:
        if await repository.get_by_id_async(worker_id) is None:
            await repository.add_async(worker_id)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    async with build_application(settings):
        print(f"monitoring service {os.getpid()} ready on {settings.store}", flush=True)
        await stop.wait()


async def add_workers(settings: MonitoringSettings, workers: Sequence[str]) -> list[str]:
    """Register running workers and schedule their monitoring (the running service runs it)."""
    application = build_application(settings, producer_only=True)
    repository = application.services.get_required_service(WorkerRepository)
    monitoring = application.services.get_required_service(WorkerMonitoringScheduler)
    async with application:
        ids = []
        for worker_id in workers:
            await repository.add_async(worker_id)
            ids.append(await monitoring.start_monitoring_worker_async(worker_id))
        return ids


async def terminate_workers(settings: MonitoringSettings, workers: Sequence[str]) -> None:
    """Mark workers terminated; their jobs remove themselves at their next run."""
    repository = WorkerRepository(settings.workers_file)
    for worker_id in workers:
        await repository.terminate_async(worker_id)


async def monitoring_status(settings: MonitoringSettings) -> list[dict[str, Any]]:
    """The stored monitoring tasks: id, worker, next run time, runs so far."""
    application = build_application(settings, producer_only=True)
    scheduler = application.services.get_required_service(BackgroundTaskScheduler)
    async with application:
        return [
            {
                "id": task.id,
                "worker_id": (task.data or {}).get("worker_id"),
                "next_run_time": task.next_run_time.isoformat() if task.next_run_time else None,
                "runs": task.runs,
            }
            for task in await scheduler.list_tasks(tag="worker-monitoring")
        ]


def parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, MonitoringSettings]:
    """Parse the command line; options become environment variables (children inherit them)."""
    parser = argparse.ArgumentParser(prog="python -m examples.worker_monitoring")
    parser.add_argument("--store", help="sqlite:///monitoring.db (default) or redis://127.0.0.1:6379/0")
    parser.add_argument("--prefix", help="Redis key prefix (default cml)")
    parser.add_argument("--workers-file", help="the stand-in worker repository (JSON)")
    parser.add_argument("--record", help="the stand-in cloud client's record (JSON lines)")
    parser.add_argument("--interval", type=float, help="seconds between two collections (default 300)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the service").add_argument("workers", nargs="*")
    commands.add_parser("add", help="add workers and monitor them").add_argument("workers", nargs="+")
    commands.add_parser("terminate", help="terminate workers").add_argument("workers", nargs="+")
    commands.add_parser("status", help="the monitoring tasks in the store")
    commands.add_parser("demo", help="the whole story in ~25 s, in a temporary directory")
    args = parser.parse_args(argv)
    given = {
        "WORKER_MONITORING_STORE": args.store,
        "WORKER_MONITORING_REDIS_PREFIX": args.prefix,
        "WORKER_MONITORING_WORKERS": args.workers_file,
        "WORKER_MONITORING_RECORD": args.record,
        "WORKER_MONITORING_INTERVAL": None if args.interval is None else repr(args.interval),
    }
    os.environ.update({name: value for name, value in given.items() if value is not None})
    return args, MonitoringSettings()


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m examples.worker_monitoring``."""
    args, settings = parse(argv)
    quiet = args.command in ("status", "demo")  # their output is what they print
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(process)d %(name)s: %(message)s",
    )
    if args.command == "run":
        asyncio.run(run_service(settings, args.workers))
    elif args.command == "add":
        print(json.dumps(asyncio.run(add_workers(settings, args.workers))))
    elif args.command == "terminate":
        asyncio.run(terminate_workers(settings, args.workers))
    elif args.command == "status":
        print(json.dumps(asyncio.run(monitoring_status(settings)), indent=2))
    else:
        from examples.worker_monitoring.demo import demo

        demo(store=args.store, prefix=args.prefix)
