"""Run a bench module with the Redis store's timeouts raised, for counting instructions:
``valgrind --tool=callgrind python -m bench.under_valgrind bench.profile_adds --n 2000 ...``.

Under callgrind the client runs some fifty times slower: on a busy machine the store's open
(:data:`~backbeat.stores.redis.connection.OPEN_TIMEOUT`, 5 s) and its calls (``CALL_TIMEOUT``,
10 s) then time out, and a completion sent again reports its runs as lost and records their
history a second time, which falsifies the counts (402k instead of 288k per run, once). The
socket's connect timeout (3 s) is raised too: on a machine busy enough, connections opened
during a run timed out ("Timeout connecting to server"): 301k per run, once, for code that
counts at most 261k.
"""

from __future__ import annotations

import runpy
import sys

from backbeat.stores.redis import connection

RAISED = 300.0
"""Seconds the open and each call may take here."""


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m bench.under_valgrind MODULE [ARGS...]")
    connection.OPEN_TIMEOUT = RAISED
    connection.CALL_TIMEOUT = RAISED
    connection.DEFAULT_OPTIONS["socket_connect_timeout"] = RAISED
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
