"""Real Redis servers for tests: the one at ``REDIS_URL`` (or 127.0.0.1:6379), else one we start.

``usable_redis_url()`` serves a test session (a session fixture calls it); a server it had to
start is stopped when the interpreter exits. ``private_redis_server()`` runs a server of a
test's own for a ``with`` block, which the test may kill and restart (fault tests); the
``private_redis`` fixture is one such server, append-only, for one test.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio

DEFAULT_URL = "redis://127.0.0.1:6379/0"
_started: list[RedisServerHandle] = []
_session_url: str | None = None


def answers(url: str, timeout: float = 1.0) -> bool:
    """Whether a Redis server at ``url`` answers PING."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


async def delete_keys(url: str, prefix: str) -> None:
    """Delete every key of the store under ``prefix`` (its keys start ``{prefix}``) at ``url``."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{{{prefix}}}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServerHandle:
    """A ``redis-server`` subprocess with its own directory, listening on ``host`` (127.0.0.1)."""

    def __init__(
        self,
        directory: Path,
        *,
        appendonly: bool,
        port: int | None = None,
        remove_directory: bool = False,
        host: str = "127.0.0.1",
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.directory = directory
        self.port = port or free_port()
        self.host = host
        self.appendonly = appendonly
        self.remove_directory = remove_directory
        self.extra_args = extra_args or []
        self.env = env
        """Environment variables of the server besides this process's (e.g. its locale)."""
        self.url = f"redis://{host}:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self, timeout: float = 10.0) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = ["redis-server", "--port", str(self.port), "--bind", self.host, "--dir", str(self.directory)]
        args += ["--save", "", "--daemonize", "no", "--logfile", str(self.directory / "redis.log")]
        if self.host != "127.0.0.1":  # no password: protected mode would refuse other addresses
            args += ["--protected-mode", "no"]
        if self.appendonly:
            # every write on disk before the reply, so data survives a SIGKILL
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        args += self.extra_args
        env = {**os.environ, **self.env} if self.env else None
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + timeout
        while not answers(self.url, timeout=0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server on port {self.port} did not start:\n{log}")
            time.sleep(0.05)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The server stopped (SIGSTOP) inside the block: it accepts connections and reads,
        never answers; continued (SIGCONT) on leaving, also on failure."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the server (no shutdown, no final save)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def restart(self) -> None:
        """Start again on the same port and directory (append-only data is loaded back)."""
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@contextlib.contextmanager
def private_redis_server(
    directory: Path,
    *,
    appendonly: bool,
    host: str = "127.0.0.1",
    env: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
) -> Iterator[RedisServerHandle]:
    """A ``redis-server`` of the caller's own on a free port, its files in ``directory``, stopped
    when the block ends (also when it raises; a server the block killed stays down)."""
    handle = RedisServerHandle(directory, appendonly=appendonly, host=host, env=env, extra_args=extra_args)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServerHandle]:
    """A redis-server of this test's own (append-only, fsync always), which it may kill and restart."""
    with private_redis_server(tmp_path / "redis", appendonly=True) as server:
        yield server


def usable_redis_url() -> str:
    """``REDIS_URL``, or 127.0.0.1:6379 if it answers, or a server started for this session."""
    global _session_url
    if _session_url is None:
        candidate = os.environ.get("REDIS_URL", DEFAULT_URL)
        if answers(candidate):
            _session_url = candidate
        else:
            directory = Path(tempfile.mkdtemp(prefix="backbeat-redis-"))
            handle = RedisServerHandle(directory, appendonly=False, remove_directory=True)
            _started.append(handle)
            _session_url = handle.url
    return _session_url


@atexit.register
def _stop_started() -> None:
    for handle in _started:
        with contextlib.suppress(Exception):
            handle.stop()
        if handle.remove_directory:
            shutil.rmtree(handle.directory, ignore_errors=True)
