"""The REST API on a SQLite store and a running scheduler, in process over ASGI."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.routing import Mount

from backbeat import BackgroundTaskScheduler
from backbeat.web import create_app
from tests.integration import jobs
from tests.web.conftest import TOKEN
from tests.web.populate import Populated

AUTH = {"Authorization": f"Bearer {TOKEN}"}
Running = tuple[BackgroundTaskScheduler, Populated]


async def eventually(client: httpx.AsyncClient, path: str, check: Any, timeout: float = 10.0) -> Any:
    """GET ``path`` until ``check(json)`` holds; returns that JSON."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        body = (await client.get(path)).json()
        if check(body):
            return body
        assert asyncio.get_running_loop().time() < deadline, f"{path}: {body}"
        await asyncio.sleep(0.05)


async def test_tasks_are_listed_filtered_and_shown(client: httpx.AsyncClient, running: Running) -> None:
    _, ids = running
    tasks = (await client.get("/api/tasks")).json()
    assert {t["id"] for t in tasks} == {ids.daily, ids.cleanup, ids.reminder, ids.paused, ids.orphaned}
    daily = next(t for t in tasks if t["id"] == ids.daily)
    assert daily["tags"] == ["reports"] and daily["state"] == "active" and daily["next_run_time"]
    paused = (await client.get("/api/tasks", params={"state": "paused"})).json()
    assert [t["id"] for t in paused] == [ids.paused]
    tagged = (await client.get("/api/tasks", params={"tag": "order"})).json()
    assert [t["id"] for t in tagged] == [ids.reminder]
    assert (await client.get("/api/tasks", params={"state": "sleeping"})).status_code == 422
    assert (await client.get(f"/api/tasks/{ids.orphaned}")).json()["state"] == "orphaned"
    missing = await client.get("/api/tasks/nope")
    assert missing.status_code == 404 and missing.json() == {"detail": "no task with id 'nope'"}


async def test_mutating_calls_need_the_token(client: httpx.AsyncClient, running: Running) -> None:
    scheduler, ids = running
    for method, path in [
        ("POST", f"/api/tasks/{ids.daily}/pause"),
        ("POST", f"/api/tasks/{ids.daily}/resume"),
        ("POST", f"/api/tasks/{ids.daily}/trigger"),
        ("DELETE", f"/api/tasks/{ids.daily}"),
        ("POST", f"/api/dead-letters/{ids.dead_letter}/retry"),
        ("DELETE", f"/api/dead-letters/{ids.dead_letter}"),
    ]:
        refused = await client.request(method, path)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer", path
        wrong = await client.request(method, path, headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401, path
    info = await scheduler.get_task_info(ids.daily)
    assert info is not None and not info.paused
    assert len(await scheduler.list_dead_letters()) == 1
    schema = (await client.get("/openapi.json")).json()
    assert schema["paths"]["/api/tasks/{task_id}/pause"]["post"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in schema["paths"]["/api/tasks"]["get"]


async def test_pause_resume_trigger_and_remove(client: httpx.AsyncClient, running: Running) -> None:
    scheduler, ids = running
    paused = await client.post(f"/api/tasks/{ids.daily}/pause", headers=AUTH)
    assert paused.status_code == 200 and paused.json()["state"] == "paused"
    info = await scheduler.get_task_info(ids.daily)
    assert info is not None and info.paused
    resumed = await client.post(f"/api/tasks/{ids.daily}/resume", headers=AUTH)
    assert resumed.json()["paused"] is False

    triggered = await client.post(f"/api/tasks/{ids.daily}/trigger", headers=AUTH)
    assert triggered.status_code == 200 and triggered.json()["run_id"].startswith(f"{ids.daily}@")
    history = await eventually(
        client, "/api/history", lambda h: any(r["task_id"] == ids.daily for r in h["runs"])
    )
    assert history["source"] == "store"
    [entry] = [r for r in history["runs"] if r["task_id"] == ids.daily]
    assert entry["outcome"] == "success" and entry["duration"] >= 0 and entry["error"] is None
    assert entry["pid"] == os.getpid()
    [summary] = [t for t in history["tasks"] if t["task_id"] == ids.daily]
    assert (summary["runs"], summary["success_rate"], summary["last_failure"]) == (1, 1.0, None)
    assert summary["duration_p50"] == summary["duration_max"] == entry["duration"]
    shown = await eventually(client, f"/api/tasks/{ids.daily}", lambda t: t["runs"] == 1)
    assert shown["last_outcome"] == "success"

    assert (await client.delete(f"/api/tasks/{ids.cleanup}", headers=AUTH)).status_code == 204
    assert await scheduler.get_task_info(ids.cleanup) is None
    assert (await client.get(f"/api/tasks/{ids.cleanup}")).status_code == 404
    assert (await client.delete(f"/api/tasks/{ids.cleanup}", headers=AUTH)).status_code == 404


async def test_dead_letters_are_shown_retried_and_removed(
    client: httpx.AsyncClient, running: Running
) -> None:
    scheduler, ids = running
    [letter] = (await client.get("/api/dead-letters")).json()
    assert letter["id"] == ids.dead_letter and letter["task_name"] == "charge_card"
    one = (await client.get(f"/api/dead-letters/{ids.dead_letter}")).json()
    assert one["error_type"].endswith("PaymentDeclinedError") and "Traceback" in one["traceback"]
    assert (await client.get("/api/dead-letters/nope")).status_code == 404

    retried = await client.post(f"/api/dead-letters/{ids.dead_letter}/retry", headers=AUTH)
    assert retried.status_code == 200 and retried.json()["run_id"] == ids.dead_letter
    history = await eventually(
        client, "/api/history", lambda h: any(r["outcome"] == "dead_lettered" for r in h["runs"])
    )
    failure = next(r for r in history["runs"] if r["outcome"] == "dead_lettered")
    assert failure["error"] == "card declined" and failure["task_name"] == "charge_card"
    assert failure["error_type"].endswith("PaymentDeclinedError")
    [summary] = [t for t in history["tasks"] if t["task_name"] == "charge_card"]
    assert summary["success_rate"] == 0.0 and summary["last_failure"] == "PaymentDeclinedError: card declined"
    await eventually(client, "/api/dead-letters", lambda letters: len(letters) == 1)

    assert (await client.delete(f"/api/dead-letters/{ids.dead_letter}", headers=AUTH)).status_code == 204
    assert await scheduler.list_dead_letters() == []
    gone = await client.post(f"/api/dead-letters/{ids.dead_letter}/retry", headers=AUTH)
    assert gone.status_code == 404


async def test_runs_show_the_process_that_holds_them(
    client: httpx.AsyncClient, running: Running, record_file: Path
) -> None:
    scheduler, _ = running
    task_id = await scheduler.schedule_immediate_task("long", jobs.slow, args=[str(record_file), 1.0])
    runs = await eventually(client, "/api/runs", lambda rs: any(r["state"] == "running" for r in rs))
    [run] = runs
    assert run["task_id"] == task_id and run["task_name"] == "long"
    assert run["owner"] == scheduler.engine_config.owner and f":{os.getpid()}:" in run["owner"]
    stats = (await client.get("/api/stats")).json()
    assert stats["running"] == 1 and stats["tasks"] == 6 and stats["dead_letters"] == 1


async def test_a_store_url_app_pages_the_stores_history_and_needs_no_token(
    populated_url: tuple[str, Populated],
) -> None:
    url, ids = populated_url
    app = create_app(url)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        every = (await client.get("/api/runs/history", params={"limit": 1000})).json()
        assert every["next_cursor"] is None and every["runs"]  # the populating scheduler's runs
        ends = [run["ended_at"] for run in every["runs"]]
        assert ends == sorted(ends, reverse=True)
        paged: list[str] = []
        cursor = None
        while True:
            params: dict[str, str | int] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/api/runs/history", params=params)).json()
            paged += [run["id"] for run in page["runs"]]
            if (cursor := page["next_cursor"]) is None:
                break
        assert paged == [run["id"] for run in every["runs"]]
        failed = (await client.get("/api/runs/history", params={"failed": "true", "since": "1h"})).json()
        assert {run["task_id"] for run in failed["runs"]} == {ids.dead_letter.partition("@")[0]}
        assert all(run["outcome"] == "dead_lettered" for run in failed["runs"])
        bad = await client.get("/api/runs/history", params={"outcome": "broken"})
        assert (
            bad.status_code == 422 and "Input should be 'failed', 'success'" in bad.json()["detail"][0]["msg"]
        )
        assert (await client.get("/api/runs/history", params={"cursor": "x"})).status_code == 422
        assert (await client.get("/api/runs/history", params={"since": "soon"})).status_code == 422
        assert (await client.get("/api/history")).json()["source"] == "store"
        assert (await client.post(f"/api/tasks/{ids.daily}/pause")).status_code == 200
    await app.state.admin.close()


async def test_the_app_mounts_under_a_prefix(running: Running) -> None:
    scheduler, ids = running
    outer = Starlette(routes=[Mount("/ops/backbeat", app=create_app(scheduler))])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=outer), base_url="http://t") as client:
        page = await client.get("/ops/backbeat/")
        assert page.status_code == 200 and '"base": "/ops/backbeat"' in page.text
        tasks = (await client.get("/ops/backbeat/api/tasks")).json()
        assert ids.daily in {t["id"] for t in tasks}
        assert (await client.get("/ops/backbeat/openapi.json")).status_code == 200
