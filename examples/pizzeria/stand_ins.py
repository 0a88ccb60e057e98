"""Stand-ins for the outside world: the kitchen, the payment gateway, the SMS gateway, the
couriers, the inventory and the manager's pager.

They are NOT part of backbeat and do nothing real: each appends what it was asked to do, with
the process id and the backbeat run that asked (run id = idempotency key, attempt), as one JSON
line to the record file. That file is how the tests (and you) see which process did what.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backbeat import SchedulerNotRunningError, current_run


class Recorder:
    """Appends one JSON object per line to ``path`` (one ``write`` each, so processes don't interleave)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def note(self, who: str, what: str, **details: Any) -> dict[str, Any]:
        """Record that ``who`` was asked to do ``what``; returns the record."""
        entry: dict[str, Any] = {"at": time.time(), "pid": os.getpid(), "who": who, "what": what, **details}
        try:
            run = current_run()
        except SchedulerNotRunningError:
            pass
        else:
            entry.update(task=run.task_name, task_id=run.task_id, run_id=run.run_id, attempt=run.attempt)
        line = json.dumps(entry, default=str) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        return entry

    def read(self) -> list[dict[str, Any]]:
        """Every record so far."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


class Kitchen:
    """Stand-in for the kitchen's order screen."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def tell(self, what: str, order_id: str) -> None:
        """Show ``what`` for ``order_id`` on the kitchen's screen."""
        self.recorder.note("kitchen", what, order_id=order_id)


class PaymentGatewayTimeoutError(ConnectionError):
    """The stand-in gateway did not answer in time (a transient failure: worth a retry)."""


class PaymentServiceUnavailableError(Exception):
    """The stand-in gateway is in maintenance (not worth a retry: use the fallback)."""


@dataclass(frozen=True, slots=True)
class ChargeResult:
    """The gateway's answer to a charge."""

    success: bool


class PaymentGateway:
    """Stand-in for a card payment gateway. How it answers depends on the card:

    ``"declined"`` is declined, ``"maintenance"`` raises ``PaymentServiceUnavailableError``,
    ``"timeout"`` always times out, ``"flaky"`` times out on the first charge of each order
    (in this process), and any other card is approved.
    """

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self._flaky_seen: set[str] = set()

    async def charge_customer(self, order_id: str, amount: float, card: str) -> ChargeResult:
        """Charge ``amount`` to ``card`` for ``order_id``."""
        outcome = "approved"
        if card == "timeout" or (card == "flaky" and order_id not in self._flaky_seen):
            self._flaky_seen.add(order_id)
            outcome = "timeout"
        elif card == "maintenance":
            outcome = "unavailable"
        elif card == "declined":
            outcome = "declined"
        self.recorder.note("payment_gateway", "charge", order_id=order_id, amount=amount, outcome=outcome)
        if outcome == "timeout":
            raise PaymentGatewayTimeoutError(f"payment gateway timed out charging order {order_id}")
        if outcome == "unavailable":
            raise PaymentServiceUnavailableError("payment gateway in maintenance")
        return ChargeResult(success=outcome == "approved")

    async def refund(self, order_id: str, amount: float) -> None:
        """Give back a charge (the order was cancelled while it was being paid)."""
        self.recorder.note("payment_gateway", "refund", order_id=order_id, amount=amount)

    def settled_charges(self) -> list[dict[str, Any]]:
        """The charges it approved and did not refund (its ledger), from the record."""
        records = [r for r in self.recorder.read() if r["who"] == "payment_gateway"]
        refunded = {r["order_id"] for r in records if r["what"] == "refund"}
        return [r for r in records if r.get("outcome") == "approved" and r["order_id"] not in refunded]


class SmsGateway:
    """Stand-in for an SMS provider."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def send(self, customer_id: str, text: str, order_id: str | None = None) -> None:
        """Text ``customer_id``."""
        self.recorder.note("sms", "send", customer_id=customer_id, text=text, order_id=order_id)


class Couriers:
    """Stand-in for the delivery team's dispatch app."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def dispatch(self, order_id: str, customer_id: str) -> None:
        """Send a courier with ``order_id`` to ``customer_id``."""
        self.recorder.note("couriers", "dispatch", order_id=order_id, customer_id=customer_id)


class Inventory:
    """Stand-in for the ingredient inventory: mozzarella and basil are always low."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def get_low_stock_ingredients(self) -> list[str]:
        """Ingredients below their reorder level."""
        return ["mozzarella", "basil"]

    async def reorder(self, ingredient: str) -> None:
        """Order more of ``ingredient`` from the supplier."""
        self.recorder.note("supplier", "reorder", ingredient=ingredient)


class Pager:
    """Stand-in for the manager's pager (critical alerts)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def send_critical_alert(self, message: str, details: dict[str, Any]) -> None:
        """Page the manager."""
        self.recorder.note("pager", "alert", message=message, details=details)

    async def send_report(self, title: str, body: dict[str, Any]) -> None:
        """Send a report to the manager."""
        self.recorder.note("pager", "report", title=title, body=body)
