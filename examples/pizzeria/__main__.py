"""One command for the whole pizzeria: the worker and the web process, on one store.

``python -m examples.pizzeria [--port 8000] [--store sqlite:///pizzeria.db | redis://...]``

Ctrl-C (or SIGTERM) stops both gracefully. Each is also runnable alone:
``python -m examples.pizzeria.worker`` and ``python -m examples.pizzeria.web``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from examples.pizzeria.cli import parse, settings_from


def main(argv: Sequence[str] | None = None) -> int:
    """Start the worker, then the web process; stop both when either ends or on a signal."""
    about = "Mario's pizzeria: web process and worker on one store"
    args = parse("examples.pizzeria", about, argv, port=8000)
    settings = settings_from(args)
    env = {**os.environ, **settings.environment()}
    python = [sys.executable, "-m"]
    # Own sessions: a Ctrl-C reaches the children once, through us, not twice (uvicorn would
    # take a second SIGINT as "force exit" and skip the scheduler's graceful shutdown).
    children = [
        subprocess.Popen([*python, "examples.pizzeria.worker"], env=env, start_new_session=True),
        subprocess.Popen(
            [*python, "examples.pizzeria.web", "--port", str(args.port)], env=env, start_new_session=True
        ),
    ]
    print(
        f"pizzeria on http://127.0.0.1:{args.port} "
        f"(worker pid {children[0].pid}, web pid {children[1].pid}), "
        f"store {settings.store}, record {settings.record}",
        flush=True,
    )
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.2)
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
    return max(abs(child.wait(30)) for child in children)


if __name__ == "__main__":
    sys.exit(main())
