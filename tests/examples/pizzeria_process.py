"""``python -m examples.pizzeria`` as a real child process (web + worker), for the tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from examples.pizzeria.settings import PizzeriaSettings
from examples.pizzeria.stand_ins import Recorder

from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


class Pizzeria:
    """The one-command pizzeria on a free port; its output goes to ``log``."""

    def __init__(self, settings: PizzeriaSettings, log: Path) -> None:
        self.settings = settings
        self.log = log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            **settings.environment(),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        with log.open("a") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "examples.pizzeria", "--port", str(self.port)],
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self.http = httpx.Client(base_url=self.url, timeout=10)
        self.worker_pid, self.web_pid = self._wait_until_ready()
        self.recorder = Recorder(settings.record)

    def _wait_until_ready(self, timeout: float = 30.0) -> tuple[int, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the pizzeria exited early:\n{self.output()}")
            text = self.output()
            started = re.search(r"worker pid (\d+), web pid (\d+)", text)
            if started and f"pizzeria worker {started[1]} ready" in text:
                try:
                    health = self.http.get("/health")
                except httpx.TransportError:
                    health = None
                if health is not None and health.status_code == 200:
                    return int(started[1]), int(started[2])
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the pizzeria did not start within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        """What the processes printed so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def records(self, **match: Any) -> list[dict[str, Any]]:
        """The stand-ins' records whose fields equal ``match``."""
        return [r for r in self.recorder.read() if all(r.get(k) == v for k, v in match.items())]

    def stop(self) -> int:
        """SIGTERM to the runner: both children shut down gracefully; returns the exit code."""
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise


def wait_until(predicate: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy (and return it)."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(0.05)
    return value
