"""The pizzeria example end to end: ``python -m examples.pizzeria`` (a uvicorn web process and a
worker, real processes) on a real store, driven through its HTTP API.

A business minute lasts 0.05 s here, so an order delivered "in 45 minutes" is delivered in 2.25 s.
What ran, and in which process, is read from the stand-ins' JSON-lines record.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from examples.pizzeria.settings import PizzeriaSettings

from tests.examples.pizzeria_process import Pizzeria, wait_until
from tests.redis_server import usable_redis_url

pytestmark = pytest.mark.slow

MINUTE = 0.05
NEVER_IN_A_TEST = "0 0 1 1 *"  # the crons are triggered by hand below
DELAYED = ["order_preparation_reminder", "kitchen_preparation", "delivery_dispatch", "customer_notification"]
WORKFLOW = ["kitchen_queue", "preparation_start", "quality_check", "delivery_ready"]
DAILY_TASKS = {"daily_inventory_check", "daily_sales_report", "hourly_order_monitoring"}

PizzeriaFactory = Callable[..., Pizzeria]


@pytest.fixture
def pizzeria(tmp_path: Path) -> Iterator[PizzeriaFactory]:
    """Start the pizzeria on a store (stopped, if the test did not, at the end)."""
    started: list[Pizzeria] = []

    def start(store: str, prefix: str = "mario_pizzeria") -> Pizzeria:
        settings = PizzeriaSettings(
            store=store,
            redis_prefix=prefix,
            record=tmp_path / "record.jsonl",
            minute=MINUTE,
            retry_delay=0.2,
            breaker_recovery=2.0,
            inventory_cron=NEVER_IN_A_TEST,
            sales_report_cron=NEVER_IN_A_TEST,
            monitoring_cron=NEVER_IN_A_TEST,
        )
        app = Pizzeria(settings, tmp_path / "pizzeria.log")
        started.append(app)
        return app

    yield start
    for app in started:
        if app.process.poll() is None:
            app.stop()


@pytest.fixture
def redis_prefix() -> Iterator[tuple[str, str]]:
    """The test Redis and a key prefix of this test's own, deleted afterwards."""
    url, prefix = usable_redis_url(), f"pizzeria-test-{uuid.uuid4().hex[:10]}"
    yield url, prefix
    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=f"{{{prefix}}}*"):
            client.delete(key)
    finally:
        client.close()


def place(app: Pizzeria, customer: str, card: str = "visa", amount: float = 12.5) -> dict[str, Any]:
    response = app.http.post(
        "/orders", json={"customer_id": customer, "items": ["margherita"], "amount": amount, "card": card}
    )
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    return order


def tasks_of(app: Pizzeria, tag: str) -> list[dict[str, Any]]:
    response = app.http.get("/tasks", params={"tag": tag})
    assert response.status_code == 200
    tasks: list[dict[str, Any]] = response.json()
    return tasks


def order_lifecycle(app: Pizzeria) -> dict[str, dict[str, Any]]:
    """Place A (then deliver later), B (flaky card), C (cancelled at once); check what ran."""
    a, b, c = place(app, "alice"), place(app, "bob", card="flaky"), place(app, "carol")
    cancelled = app.http.delete(f"/orders/{c['id']}").json()
    assert cancelled["status"] == "cancelled"
    delayed_of_c = [task_id for i, task_id in enumerate(c["task_ids"]) if i in (2, 3, 4, 5, 7, 8, 9, 10)]
    assert set(delayed_of_c) <= set(cancelled["removed_task_ids"])

    changed = app.http.patch(f"/orders/{a['id']}", json={"delivery_in_minutes": 70}).json()
    assert {t["name"] for t in changed["rescheduled"]} == {
        "kitchen_preparation",
        "delivery_dispatch",
        "customer_notification",
    }
    delivery = datetime.fromisoformat(changed["estimated_delivery"]).timestamp()

    wait_until(lambda: app.records(task="customer_notification", order_id=a["id"]), what="A notified")
    wait_until(lambda: not tasks_of(app, "order"), what="every order task done")

    # A: every task ran once, in the worker; the moved ones at their new times
    ran_for_a = Counter(r["task"].removesuffix(f"_{a['id']}") for r in app.records(order_id=a["id"]))
    expected = ["order_confirmation", "payment_processing", "order_fulfillment", "inventory_check"]
    assert ran_for_a == Counter(expected + DELAYED + WORKFLOW)
    [dispatch] = app.records(task="delivery_dispatch", order_id=a["id"])
    assert dispatch["at"] >= delivery - 10 * MINUTE - 0.05  # not at the time first planned (35 min)
    [notification] = app.records(task="customer_notification", order_id=a["id"])
    assert notification["at"] >= delivery - 5 * MINUTE - 0.05

    # B: the gateway timed out once; the stored retry policy ran the same run again (attempt 2)
    charges = app.records(who="payment_gateway", order_id=b["id"])
    assert [(r["outcome"], r["attempt"]) for r in charges] == [("timeout", 1), ("approved", 2)]
    assert charges[0]["run_id"] == charges[1]["run_id"]
    [alert] = app.records(who="pager", what="alert")
    assert alert["details"]["order_id"] == b["id"]
    assert alert["details"]["will_retry"] is True and alert["details"]["retry_count"] == 0
    assert alert["details"]["run_id"] == charges[0]["run_id"]
    assert len(app.records(task="order_fulfillment", order_id=b["id"])) == 1

    # C: nothing delayed ran (its immediate tasks may have been running when it was cancelled;
    # a payment that was refunds the charge instead of scheduling the fulfilment)
    ran_for_c = {r["task"] for r in app.records(order_id=c["id"])}
    assert ran_for_c <= {
        "order_confirmation",
        "payment_processing",
        "order_fulfillment",
        f"inventory_check_{c['id']}",
    }
    return {"a": a, "b": b, "c": c}


def daily_tasks(app: Pizzeria) -> None:
    """The @schedule_task crons are stored once, with their cron triggers; run each now."""
    stored = {t["name"]: t for t in app.http.get("/tasks").json() if t["name"] in DAILY_TASKS}
    assert set(stored) == DAILY_TASKS
    assert all(t["trigger"].startswith("cron[") for t in stored.values())
    for task in stored.values():
        assert app.http.post(f"/tasks/{task['id']}/run").status_code == 202
    reports = wait_until(lambda: len(app.records(what="report")) == 3 and app.records(what="report"))
    by_title = {r["title"]: r["body"] for r in reports}
    refunded = {r["order_id"] for r in app.records(who="payment_gateway", what="refund")}
    approved = [
        r for r in app.records(who="payment_gateway", outcome="approved") if r["order_id"] not in refunded
    ]
    assert by_title["sales"] == {
        "orders": len({r["order_id"] for r in approved}),
        "revenue": sum(r["amount"] for r in approved),
    }
    assert by_title["inventory"] == {"low": ["mozzarella", "basil"]}
    assert by_title["monitoring"]["late_orders"] == []
    reorders = wait_until(lambda: len(app.records(who="supplier")) == 2 and app.records(who="supplier"))
    assert sorted(r["ingredient"] for r in reorders) == ["basil", "mozzarella"]


def circuit_breaker(app: Pizzeria) -> None:
    """Two orders whose gateway always times out: 3 attempts each, then dead letters; the 5th
    failure in a row opens the shared breaker, and a later payment waits for it (deferred)."""
    d, e = place(app, "dave", card="timeout"), place(app, "erin", card="timeout")
    letters = wait_until(
        lambda: len(app.http.get("/dead-letters").json()) == 2 and app.http.get("/dead-letters").json()
    )
    assert {letter["task_name"] for letter in letters} == {"payment_processing"}
    assert all(letter["attempts"] == 3 for letter in letters)
    for order in (d, e):
        attempts = app.records(who="payment_gateway", order_id=order["id"])
        assert [r["attempt"] for r in attempts] == [1, 2, 3]
        assert len({r["run_id"] for r in attempts}) == 1
    breaker = app.http.get("/breakers/payment-gateway").json()
    assert breaker["state"] == "open"

    f = place(app, "frank")
    [charge] = wait_until(lambda: app.records(who="payment_gateway", order_id=f["id"]), timeout=10)
    assert charge["outcome"] == "approved"
    assert charge["at"] >= float(breaker["opened_at"]) + 2.0 - 0.05  # deferred until recovery
    wait_until(lambda: app.records(task="order_fulfillment", order_id=f["id"]))


def assert_ran_in_worker_once_each(app: Pizzeria) -> None:
    records = app.recorder.read()
    assert records
    assert app.worker_pid != app.web_pid
    assert {r["pid"] for r in records} == {app.worker_pid}  # the web process only scheduled
    # the failure handler pages after the run, outside it: its alerts name the run in their details
    assert all(r["who"] == "pager" for r in records if "run_id" not in r)
    records = [r for r in records if "run_id" in r]
    attempts = Counter((r["run_id"], r["attempt"], r["who"], r["what"]) for r in records)
    assert max(attempts.values()) == 1, [k for k, n in attempts.items() if n > 1]
    done = Counter((r["run_id"], r["who"], r["what"]) for r in records if r.get("outcome") != "timeout")
    assert max(done.values()) == 1, [k for k, n in done.items() if n > 1]  # each thing done once per run


def test_pizzeria_on_sqlite(pizzeria: PizzeriaFactory, tmp_path: Path) -> None:
    app = pizzeria(f"sqlite:///{tmp_path / 'pizzeria.db'}")
    assert app.http.get("/health").json()["store"] == "SQLiteStore"
    order_lifecycle(app)
    circuit_breaker(app)
    daily_tasks(app)
    assert_ran_in_worker_once_each(app)
    assert app.stop() == 0, app.output()
    assert "Traceback" not in app.output().replace("PaymentGatewayTimeoutError", ""), app.output()


@pytest.mark.redis
def test_pizzeria_on_redis(pizzeria: PizzeriaFactory, redis_prefix: tuple[str, str]) -> None:
    url, prefix = redis_prefix
    app = pizzeria(url, prefix)
    assert app.http.get("/health").json()["store"] == "RedisStore"
    order_lifecycle(app)
    daily_tasks(app)
    assert_ran_in_worker_once_each(app)
    assert app.stop() == 0, app.output()
    client = redis.Redis.from_url(url)
    try:
        assert any(client.scan_iter(match=f"{{{prefix}}}*")), "the tasks were not in the test's key space"
    finally:
        client.close()
