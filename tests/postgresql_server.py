"""Real PostgreSQL servers for tests: the shared one at ``BACKBEAT_POSTGRESQL_URL`` (or
127.0.0.1:5432/test), with a fresh table prefix per test, and private clusters a test may crash.

``usable_postgres_url()`` is the shared server's URL (it skips the test when nothing answers);
``drop_prefixes()`` drops the tables of the prefixes a test used. ``start_private_postgres()``
initialises and starts a cluster of the caller's own on a free port (``initdb -A trust``, as the
``postgres`` OS user when running as root, which PostgreSQL refuses to run as); the test may
``crash()`` it (``pg_ctl stop -m immediate``) and ``start()`` it again on the same port and data.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from backbeat.stores.postgresql import queries
from tests.redis_server import free_port

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
T = TypeVar("T")
_session_url: str | None = None
_skip_reason: str | None = None
_started: list[PostgresServerHandle] = []


class PostgresNotInstalledError(RuntimeError):
    """initdb or pg_ctl cannot be found."""


def in_thread(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on an event loop of its own, in another thread (so as not
    to disturb the test's loop, running or not)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(make())
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="postgres-helper")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


async def _execute(url: str, sql: str, timeout: float = 5.0) -> None:
    conn = await asyncpg.connect(url, timeout=timeout)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def answers(url: str, timeout: float = 2.0) -> str | None:
    """``None`` if a server at ``url`` runs ``SELECT 1``, else why not."""
    try:
        in_thread(functools.partial(_execute, url, "SELECT 1", timeout))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def usable_postgres_url() -> str:
    """``BACKBEAT_POSTGRESQL_URL`` (or the local server), or skip the test if it does not answer."""
    global _session_url, _skip_reason
    if _session_url is None and _skip_reason is None:
        candidate = os.environ.get("BACKBEAT_POSTGRESQL_URL", DEFAULT_URL)
        problem = answers(candidate)
        if problem is None:
            _session_url = candidate
        else:
            _skip_reason = f"no PostgreSQL server at {candidate}: {problem}"
    if _session_url is None:
        pytest.skip(_skip_reason or "no PostgreSQL server")
    return _session_url


def fresh_prefix() -> str:
    """A table prefix no other test uses."""
    return f"bb_{os.urandom(5).hex()}"


def drop_prefixes(made: Iterable[tuple[str, str]]) -> None:
    """Drop the tables of every (base URL, prefix) pair."""
    for url, prefix in made:
        tables = ", ".join(f"{prefix}_{table}" for table in queries.TABLES)
        in_thread(functools.partial(_execute, url, f"DROP TABLE IF EXISTS {tables} CASCADE"))


def find_binary(name: str) -> str:
    """``name`` (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found is None:
        candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
        found = candidates[0] if candidates else None
    if found is None:
        raise PostgresNotInstalledError(f"{name} is not installed (apt-get install postgresql)")
    return found


class PostgresServerHandle:
    """A PostgreSQL cluster in a temporary directory, listening on ``host``:``port`` only
    (127.0.0.1 unless told), trusting local connections and those from the ``trust`` networks."""

    def __init__(
        self, port: int | None = None, *, host: str = "127.0.0.1", trust: Sequence[str] = ()
    ) -> None:
        self.initdb, self.pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
        self.port = port or free_port()
        self.host = host
        self.url = f"postgresql://postgres@{host}:{self.port}/postgres"
        # not under pytest's tmp_path: the postgres user cannot enter root's 0700 directories
        self.directory = Path(tempfile.mkdtemp(prefix="backbeat-pg-"))
        self.data = self.directory / "data"
        self.logfile = self.directory / "postgres.log"
        self._as_user: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            account = pwd.getpwnam("postgres")
            os.chown(self.directory, account.pw_uid, account.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]
        self._command(
            [self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]
        )
        if trust:
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.writelines(f"host all all {network} trust\n" for network in trust)

    def _command(self, args: list[str], timeout: float = 60) -> None:
        done = subprocess.run(
            [*self._as_user, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} {args[1]} failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def start(self, timeout: float = 30.0) -> None:
        """Start the server (again) on the same port and data directory; wait until it answers."""
        options = (
            f"-p {self.port} -c listen_addresses={self.host} -c unix_socket_directories={self.directory} "
            "-c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        args = [self.pg_ctl, "-D", str(self.data), "-l", str(self.logfile), "-o", options]
        try:
            self._command([*args, "-w", "-t", str(int(timeout)), "start"], timeout=timeout + 10)
        except RuntimeError as exc:
            log = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
            raise RuntimeError(f"PostgreSQL on port {self.port} did not start: {exc}\n{log}") from None
        deadline = time.monotonic() + timeout
        while (problem := answers(self.url, timeout=1.0)) is not None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL on port {self.port} does not answer: {problem}")
            time.sleep(0.05)

    def crash(self) -> None:
        """Stop in immediate mode: every backend quits at once, no checkpoint (recovery on start)."""
        self._stop("immediate")

    def stop(self) -> None:
        """A fast shutdown (running transactions rolled back, clients disconnected)."""
        self._stop("fast")

    def running(self) -> bool:
        done = subprocess.run(
            [*self._as_user, self.pg_ctl, "-D", str(self.data), "status"], capture_output=True, check=False
        )
        return done.returncode == 0

    def _stop(self, mode: str) -> None:
        if self.data.exists() and self.running():
            self._command([self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop"])

    def cleanup(self) -> None:
        """Stop the server if it runs and remove its directory."""
        try:
            self._stop("immediate")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
            if self in _started:
                _started.remove(self)


def start_private_postgres(host: str = "127.0.0.1", trust: Sequence[str] = ()) -> PostgresServerHandle:
    """A started cluster of the caller's own on ``host``, also trusting clients from the ``trust``
    networks (removed at interpreter exit if the caller does not).

    Raises:
        PostgresNotInstalledError: no initdb or pg_ctl.
    """
    handle = PostgresServerHandle(host=host, trust=trust)
    _started.append(handle)
    try:
        handle.start()
    except BaseException:
        handle.cleanup()
        raise
    return handle


@atexit.register
def _cleanup_started() -> None:
    for handle in list(_started):
        with contextlib.suppress(Exception):
            handle.cleanup()
