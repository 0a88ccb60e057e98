"""Every Python block of the docs and the README runs, so a renamed parameter or name fails here.

The blocks of one page run in order in one namespace (a module registered in ``sys.modules``, so
functions the blocks define can be stored by reference and resolved), with top-level ``await``
on one event loop per page, in a fresh working directory: the default SQLite store lands there.
Blocks marked for Redis or PostgreSQL get fresh prefixes, removed afterwards; a scheduler a page
leaves running is stopped, and one it used without starting it closes its store. See
``tests/docs/blocks.py`` for the markers.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from backbeat import BackgroundTaskScheduler
from backbeat.model.declared import DECLARED
from tests.docs.blocks import ROOT, Block, documentation_files, python_blocks
from tests.postgresql_server import DEFAULT_URL as POSTGRESQL_URL
from tests.postgresql_server import drop_prefixes, usable_postgres_url
from tests.redis_server import DEFAULT_URL as REDIS_URL
from tests.redis_server import delete_keys, usable_redis_url

PREFIX = re.compile(r"""((?:[?&]prefix=)|(?:prefix\s*=\s*["']))([A-Za-z_][A-Za-z0-9_]*)""")
SERVER_MARKS = {"redis": pytest.mark.redis, "postgresql": pytest.mark.postgresql}


def pages() -> Iterator[object]:
    for path in documentation_files():
        blocks = [block for block in python_blocks(path) if block.marker != "skip"]
        if blocks:
            servers = sorted({block.marker for block in blocks if block.marker in SERVER_MARKS})
            marks = [SERVER_MARKS[server] for server in servers]
            yield pytest.param(path, marks=marks, id=path.relative_to(ROOT).as_posix())


class Page:
    """One page's blocks run in one module namespace on one event loop."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = "docs_" + re.sub(r"\W", "_", path.relative_to(ROOT).with_suffix("").as_posix())
        self.module = types.ModuleType(self.name)
        self.module.__file__ = str(path)
        self.loop = asyncio.new_event_loop()
        self.suffix = f"_{os.urandom(4).hex()}"
        self.redis_prefixes: set[str] = set()
        self.postgresql_prefixes: set[str] = set()
        self.schedulers: dict[int, BackgroundTaskScheduler] = {}
        """Every scheduler a block bound to a name (a later block may bind that name again)."""

    def source_of(self, block: Block) -> str:
        """The block's code, its servers' URLs and prefixes made this run's own."""
        if block.marker not in SERVER_MARKS:
            return block.code
        code = block.code
        if block.marker == "redis":
            code = code.replace(REDIS_URL, usable_redis_url())
        else:
            code = code.replace(POSTGRESQL_URL, usable_postgres_url())
        made = self.redis_prefixes if block.marker == "redis" else self.postgresql_prefixes

        def fresh(match: re.Match[str]) -> str:
            made.add(match[2] + self.suffix)
            return match[1] + match[2] + self.suffix

        code, count = PREFIX.subn(fresh, code)
        assert count, f"{block.where}: a {block.marker} block names its prefix (?prefix=...) to be isolated"
        return code

    def run(self, block: Block) -> None:
        source = "\n" * (block.line - 1) + self.source_of(block)
        code = compile(source, str(block.path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        try:
            result = eval(code, self.module.__dict__)
            if inspect.iscoroutine(result):
                self.loop.run_until_complete(result)
        except Exception as exc:
            raise AssertionError(f"the block at {block.where} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            for value in vars(self.module).values():
                if isinstance(value, BackgroundTaskScheduler):
                    self.schedulers[id(value)] = value

    def close(self) -> None:
        # running, or never started but its store opened by a call (a fragment's producer)
        for scheduler in self.schedulers.values():
            self.loop.run_until_complete(scheduler.stop_async(timeout=1.0))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()
        if self.redis_prefixes:
            url = usable_redis_url()
            for prefix in self.redis_prefixes:
                asyncio.run(delete_keys(url, prefix))
        if self.postgresql_prefixes:
            drop_prefixes((usable_postgres_url(), prefix) for prefix in self.postgresql_prefixes)


@pytest.mark.parametrize("path", list(pages()))
def test_python_blocks_run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BACKBEAT_STORE_URL", raising=False)
    page = Page(path)
    monkeypatch.setitem(sys.modules, page.name, page.module)
    declared = dict(DECLARED)  # @schedule_task in a page declares for every later scheduler
    try:
        for block in python_blocks(path):
            if block.marker != "skip":
                page.run(block)
    finally:
        page.close()
        DECLARED.clear()
        DECLARED.update(declared)


def test_few_blocks_are_skipped() -> None:
    blocks = [block for path in documentation_files() for block in python_blocks(path)]
    skipped = [block.where for block in blocks if block.marker == "skip"]
    assert len(blocks) >= 10
    assert len(skipped) <= len(blocks) // 5, f"fragments that cannot run should be rare: {skipped}"
