"""The failure handler (seed 003's ``OrderTaskMonitor``): hears how every run in the worker went."""

from __future__ import annotations

import logging
from typing import Any

from backbeat import TaskFailureHandler
from examples.pizzeria.stand_ins import Pager

log = logging.getLogger("pizzeria.monitor")


class OrderTaskMonitor(TaskFailureHandler):
    """Pages the manager when a payment or order task fails; logs slow tasks."""

    def __init__(self, pager: Pager) -> None:
        self.pager = pager

    async def handle_task_failure(
        self, task_name: str, exception: Exception, context: dict[str, Any]
    ) -> None:
        """Log the failure; page on payment and order tasks (saying whether a retry follows)."""
        details = {
            "task_name": task_name,
            "error_type": type(exception).__name__,
            "error_message": str(exception),
            "execution_time": context.get("execution_time"),
            "retry_count": context.get("retry_count", 0),
            "will_retry": context.get("will_retry", False),
            "order_id": context.get("order_id"),
            "run_id": context.get("run_id"),
            "attempt": context.get("attempt"),
        }
        log.error("task execution failed: %s", task_name, extra={"details": details})
        if task_name.startswith(("payment_", "order_")):
            await self.pager.send_critical_alert(f"Critical task failure: {task_name}", details)

    async def handle_task_success(self, task_name: str, result: Any, context: dict[str, Any]) -> None:
        """Warn about tasks slower than 30 seconds."""
        execution_time = context.get("execution_time") or 0.0
        if execution_time > 30:
            log.warning("slow task execution: %s took %.1fs", task_name, execution_time)
