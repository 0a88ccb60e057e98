"""The dashboard served by ``backbeat dashboard`` (a subprocess), driven in headless Chromium.

Needs Debian's chromium (``apt-get install -y chromium``) and the playwright package; without
them the test is skipped with the reason, never passed. ``BACKBEAT_SCREENSHOT=path.png`` saves
a screenshot of the loaded page there (docs/dashboard.png is made that way).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backbeat.stores import store_from_url
from tests.redis_server import free_port
from tests.web.populate import Populated

CHROMIUM = os.environ.get("BACKBEAT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
TOKEN = "browser-token"


def playwright_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright)"
    if CHROMIUM is None:
        return "no Chromium executable (apt-get install -y chromium, or set BACKBEAT_CHROMIUM)"
    return None


pytestmark = pytest.mark.skipif(playwright_missing() is not None, reason=str(playwright_missing()))


@pytest.fixture
def dashboard(populated_url: tuple[str, Populated], tmp_path: Path) -> Iterator[str]:
    """``backbeat dashboard --store URL --port N --token T`` running; yields its address."""
    port = free_port()
    command = shutil.which("backbeat", path=str(Path(sys.executable).parent))
    assert command is not None
    log = (tmp_path / "dashboard.log").open("w")
    process = subprocess.Popen(
        [command, "dashboard", "--store", populated_url[0], "--port", str(port), "--token", TOKEN],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{address}/api/stats", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, (tmp_path / "dashboard.log").read_text()
            assert time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.1)
        yield address
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def paused_in_store(url: str, task_id: str) -> bool:
    async def read() -> bool:
        store = store_from_url(url)
        await store.open()
        try:
            task = await store.get(task_id)
            assert task is not None
            return task.paused
        finally:
            await store.close()

    # playwright's sync API runs an event loop in this thread: read the store from another one
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read()).result()


def test_the_dashboard_lists_tasks_and_pauses_one(
    dashboard: str, populated_url: tuple[str, Populated]
) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, ids = populated_url
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(f"{dashboard}/")
            expect(page.locator("body[data-loaded=true]")).to_have_count(1)
            for task_id in (ids.daily, ids.cleanup, ids.reminder, ids.paused, ids.orphaned):
                expect(page.locator(f'tr[data-task-id="{task_id}"]')).to_have_count(1)
            expect(page.locator(f'tr[data-dead-letter-id="{ids.dead_letter}"]')).to_have_count(1)
            expect(page.locator('[data-stat="tasks"] b')).to_have_text("5")
            row = page.locator(f'tr[data-task-id="{ids.daily}"]')
            expect(row).to_have_attribute("data-state", "active")

            # without the token the API refuses, and the page says so
            row.locator('button[data-action="pause"]').click()
            expect(page.locator("#message")).to_contain_text("token")
            assert not paused_in_store(url, ids.daily)

            page.fill("#token", TOKEN)
            page.dispatch_event("#token", "change")
            row.locator('button[data-action="pause"]').click()
            expect(page.locator("#message")).to_have_text(f"paused {ids.daily}")
            expect(row).to_have_attribute("data-state", "paused")
            assert paused_in_store(url, ids.daily)

            if screenshot := os.environ.get("BACKBEAT_SCREENSHOT"):
                page.screenshot(path=screenshot, full_page=True)
        finally:
            browser.close()
