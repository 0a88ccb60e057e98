"""Fire phases of several sizes in one process, for counting each under callgrind:
``valgrind --tool=callgrind python -m bench.under_valgrind bench.counted_fires --store URL
--sizes 200 2000 4000``, driven by :mod:`bench.history_counts` through stdin and stdout.

For each size, history off and then on: ``bench.profile_fires``'s add phase stores the due
one-shots, this process prints ``ready SIZE MODE`` and waits for a line on stdin (the driver zeroes
the counters meanwhile), runs the fire phase (a worker from its start until its shutdown has
completed and recorded every run), prints ``done SIZE MODE`` and waits for a line again (the
driver dumps the counters). Python's start-up and imports, about 4.6G instructions under
callgrind, are paid once for every phase instead of once a phase; the first size is a warm-up
whose counts the driver drops (its phases pay the first calls' costs).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from bench import profile_fires


def _handshake(line: str) -> None:
    print(line, flush=True)
    sys.stdin.readline()


def phases(url: str, sizes: list[int]) -> None:
    """Each size's add and fire phases, history off then on, each in an event loop of its own
    (as ``bench.profile_fires --rounds`` runs them)."""
    for n in sizes:
        for history in (False, True):
            asyncio.run(profile_fires.add(url, n))
            mode = "on" if history else "off"
            _handshake(f"ready {n} {mode}")
            asyncio.run(profile_fires.fire(url, n, history=history, lease=600.0))
            _handshake(f"done {n} {mode}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", required=True, help="a store URL")
    parser.add_argument("--prefix", default=profile_fires.PREFIX, help="Redis key prefix")
    parser.add_argument("--sizes", type=int, nargs="+", required=True, help="runs of each phase")
    args = parser.parse_args()
    profile_fires._set_prefix(args.prefix)
    phases(args.store, args.sizes)


if __name__ == "__main__":
    main()
