"""History's share of a fire by instruction counts, the repeatable form of issue 18's figure:
``python -m bench.history_counts [--stores redis sqlite] [--n 2000]`` (or ``python -m bench
--sections counts``).

For each store, one client process, ``PYTHONHASHSEED=0 valgrind --tool=callgrind python -m
bench.under_valgrind bench.counted_fires``, runs ``bench.profile_fires``' add and fire phases of
:data:`WARM_UP` (dropped), ``N`` and ``2N`` runs, history off and on; this driver zeroes its
counters (``callgrind_control -z``) before each fire phase and dumps them (``-d``) after it, so a
dump holds one fire phase: a worker from its start until its shutdown has completed and recorded
every run (a SQLite store's thread included). A Redis store is measured on a private
``redis-server`` under callgrind, zeroed and dumped around the same phases; its ``serverCron`` is
subtracted, since it runs ten times a second whatever the client does, and the client's
fifty-fold slowdown under callgrind stretches the phase. Per fire = (count at ``2N`` - count at
``N``) / ``N``: what a phase costs whatever its size cancels out. History's share is on ÷ off - 1
of the client's and the server's together.

After the run of ``2N`` with history on, the Redis history keys' ``MEMORY USAGE`` (``SAMPLES 0``:
every element) summed, ÷ ``2N``, is the history's memory per entry.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from bench.callgrind import CallgrindServer, callgrind_redis, control, inclusive, total

PREFIX = "bench-history-counts"
STORES = ("redis", "sqlite")
"""Stores counted: a Redis store with its server, a SQLite store in the one process."""
TARGET_SHARE = 0.10
"""Issue 18: history adds at most this much to the cost of a fire."""


@dataclass(frozen=True, slots=True)
class Count:
    """Instructions of one fire phase of ``n`` runs."""

    n: int
    client: int
    server: int = 0
    """The server's, its ``serverCron`` taken out (0: a store without a server)."""
    cron: int = 0
    """The server's ``serverCron``, not in :attr:`server`."""


@dataclass(frozen=True, slots=True)
class PerFire:
    """Instructions per fire, from the counts at ``N`` and ``2N``."""

    client: float
    server: float
    cron: float

    @classmethod
    def between(cls, small: Count, large: Count) -> PerFire:
        runs = large.n - small.n
        return cls(
            (large.client - small.client) / runs,
            (large.server - small.server) / runs,
            (large.cron - small.cron) / runs,
        )

    @property
    def total(self) -> float:
        return self.client + self.server


@dataclass(frozen=True, slots=True)
class HistoryCounts:
    """One store's instructions per fire with history off and on, and its history's memory."""

    store: str
    off: PerFire
    on: PerFire
    memory: dict[str, int] | None = None
    """Bytes per history key family (``history_batch:<n>`` counted as one) after :attr:`runs`."""
    runs: int = 0

    @property
    def share(self) -> float:
        """What history adds to a fire's instructions, client and server together."""
        return self.on.total / self.off.total - 1

    def describe(self) -> str:
        """One line for the bench's table."""
        return f"{_k(self.off.total)} → {_k(self.on.total)} ({self.share:+.1%})"

    def lines(self) -> list[str]:
        """Where the instructions per fire are, off and on, and the memory per entry."""
        met = "met" if self.share <= TARGET_SHARE else "missed"
        lines = [f"{self.store}: history's share {self.share:+.1%} (target ≤ +{TARGET_SHARE:.0%}: {met})"]
        for part in ("client", "server"):
            off, on = getattr(self.off, part), getattr(self.on, part)
            if off or on:
                lines.append(
                    f"  {part:<6} {_k(off):>7} → {_k(on):>7} ({_k(on - off, sign=True)}, "
                    f"{(on - off) / self.off.total:+.1%} of a fire)"
                )
        if self.off.server or self.on.server:
            lines.append(
                f"  total  {_k(self.off.total):>7} → {_k(self.on.total):>7} "
                f"(serverCron, not counted: {_k(self.off.cron)} → {_k(self.on.cron)})"
            )
        if self.memory is not None:
            parts = ", ".join(f"{key} {size / self.runs:,.0f}" for key, size in sorted(self.memory.items()))
            lines.append(
                f"  memory {sum(self.memory.values()) / self.runs:,.0f} B per entry after {self.runs:,} "
                f"runs ({parts})"
            )
        return lines


def _k(value: float, *, sign: bool = False) -> str:
    return f"{value / 1000:{'+' if sign else ''}.1f}k"


def history_memory(url: str, prefix: str) -> dict[str, int]:
    """``MEMORY USAGE`` of every history key of the Redis store of ``prefix``, summed by key
    family (a batch's number left out)."""
    import redis

    client = redis.Redis.from_url(url)
    sizes: dict[str, int] = defaultdict(int)
    try:
        for key in client.scan_iter(match=f"{{{prefix}}}:history*", count=1000):
            family = re.sub(rb":\d+$", b"", key.partition(b"}:")[2]).decode()
            sizes[family] += int(client.memory_usage(key, samples=0) or 0)
    finally:
        client.close()
    return dict(sizes)


N = 2000
"""Runs of the smaller fire phase counted (twice as many in the larger)."""
WARM_UP = 200
"""Runs of the phases counted first and dropped (their first calls' costs)."""


def count(url: str, n: int, directory: Path, server: CallgrindServer | None) -> dict[tuple[int, bool], Count]:
    """The client's (and ``server``'s) instructions of each fire phase of ``bench.counted_fires``
    at :data:`WARM_UP`, ``n`` and ``2n`` runs, history off and on, by (runs, history). The last
    phase (``2n``, history on) leaves its history in the store."""
    out, log = directory / "client.out", directory / "client.log"
    with log.open("w") as stderr:
        counts = _driven(url, n, out, stderr, server)
    if counts is None:
        raise RuntimeError(f"bench.counted_fires under callgrind failed:\n{log.read_text()[-3000:]}")
    return counts


def _driven(
    url: str, n: int, out: Path, stderr: TextIO, server: CallgrindServer | None
) -> dict[tuple[int, bool], Count] | None:
    """:func:`count`'s client run, its counters zeroed and dumped around each fire phase (None:
    the client failed)."""
    client = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            *[sys.executable, "-m", "bench.under_valgrind", "bench.counted_fires", "--store", url],
            *["--prefix", PREFIX, "--sizes", str(WARM_UP), str(n), str(2 * n)],
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env={**os.environ, "PYTHONHASHSEED": "0"},
        text=True,
    )
    assert client.stdin is not None and client.stdout is not None
    counts: dict[tuple[int, bool], Count] = {}
    dumps = 0
    for line in client.stdout:
        step, size, mode = line.split()
        if step == "ready":
            control("-z", client.pid)
            if server is not None:
                server.zero()
        else:
            control("-d", client.pid)
            dumps += 1
            instructions = total(out.with_name(f"{out.name}.{dumps}"))
            if server is None:
                counts[int(size), mode == "on"] = Count(int(size), instructions)
            else:
                dump = server.dump()
                cron = inclusive(dump, "serverCron")
                counts[int(size), mode == "on"] = Count(int(size), instructions, total(dump) - cron, cron)
        client.stdin.write("\n")
        client.stdin.flush()
    return counts if client.wait() == 0 else None


def history_counts(store: str, n: int, directory: Path) -> HistoryCounts:
    """``store`` (``redis``: a private server under callgrind; ``sqlite``: a file in
    ``directory``) counted at ``n`` and ``2n`` runs, history off and on."""
    if store == "sqlite":
        counts = count(f"sqlite:///{directory / 'counts.db'}", n, directory, None)
        memory = None
    elif store == "redis":
        with callgrind_redis(directory) as server:
            counts = count(server.url, n, directory, server)
            memory = history_memory(server.url, PREFIX)  # the last phase's: history on, 2n runs
    else:
        raise ValueError(f"no instruction counts for the {store} store (only {', '.join(STORES)})")
    return HistoryCounts(
        store,
        PerFire.between(counts[n, False], counts[2 * n, False]),
        PerFire.between(counts[n, True], counts[2 * n, True]),
        memory,
        2 * n,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stores", nargs="+", default=list(STORES), choices=STORES)
    parser.add_argument(
        "--n", type=int, default=N, help=f"runs of the smaller fire phase counted (default {N:,})"
    )
    args = parser.parse_args()
    print(
        f"instructions per fire (callgrind, PYTHONHASHSEED=0, (count at {2 * args.n:,} - count at "
        f"{args.n:,}) / {args.n:,}), history off → on:"
    )
    for store in args.stores:
        with tempfile.TemporaryDirectory(prefix="backbeat-counts-") as directory:
            print("\n".join(history_counts(store, args.n, Path(directory)).lines()), flush=True)


if __name__ == "__main__":
    main()
