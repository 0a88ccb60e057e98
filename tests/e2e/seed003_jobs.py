"""Module-level task functions for seed 003's tests (durable tasks need an import path)."""

from __future__ import annotations

import os
from pathlib import Path


def write_marker(path: str, text: str) -> int:
    """Append ``text`` and the pid of the process that ran it to ``path``; returns the pid."""
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.write(f"{text} {os.getpid()}\n")
    return os.getpid()


async def prepare_order(order_id: str) -> str:
    """A pizza order step, run through seed 003's PizzaOrderExecutor."""
    return f"prepared {order_id}"


async def failing_order(order_id: str) -> str:
    raise RuntimeError(f"oven broken for {order_id}")
