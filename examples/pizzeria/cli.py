"""Command-line options shared by the pizzeria's commands; they become environment variables
so that child processes (and the ``@schedule_task`` crons, read at import) see the same settings."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence

from examples.pizzeria.settings import PizzeriaSettings


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with the store options."""
    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=description)
    parser.add_argument(
        "--store", help="store URL: sqlite:///pizzeria.db (default) or redis://127.0.0.1:6379/0"
    )
    parser.add_argument("--prefix", help="Redis key prefix (default mario_pizzeria)")
    parser.add_argument("--record", help="JSON-lines file of the stand-ins (default pizzeria-record.jsonl)")
    parser.add_argument("--minute", type=float, help="seconds in a business minute (default 60)")
    return parser


def settings_from(args: argparse.Namespace) -> PizzeriaSettings:
    """Put the given options into the environment, then read the settings from it."""
    given = {
        "PIZZERIA_STORE": args.store,
        "PIZZERIA_REDIS_PREFIX": args.prefix,
        "PIZZERIA_RECORD": args.record,
        "PIZZERIA_MINUTE": None if args.minute is None else repr(args.minute),
    }
    os.environ.update({name: value for name, value in given.items() if value is not None})
    return PizzeriaSettings()


def parse(prog: str, description: str, argv: Sequence[str] | None = None, **extra: int) -> argparse.Namespace:
    """Parse the store options (and ``--port``-like integer options named in ``extra``)."""
    command = parser(prog, description)
    for name, default in extra.items():
        command.add_argument(f"--{name}", type=int, default=default)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s: %(message)s")
    return command.parse_args(argv)
