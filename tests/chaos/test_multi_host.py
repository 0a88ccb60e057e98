"""Worker hosts in network namespaces share one store (a private Redis or PostgreSQL on the
bridge) through faults: a link cut, a degraded link, skewed clocks, a frozen process.

Each scenario runs two worker hosts (lease 2 s) and a producer host that schedules six 6 s
one-shots and a task recurring every second, faults the host running the most one-shots, heals
it, and checks: no key ran on two hosts at once, every one-shot succeeded somewhere, every run
the fault interrupted was taken over within lease + 1 s, and the recurring task kept firing after
the heal. The measurements are printed (``-s``) and make up every failure's message.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.hostchecks import Measurement, Outage, measure
from tests.chaos.hosts import (
    PREFIX,
    HostNetwork,
    HostProcess,
    HostsUnavailableError,
    ip,
    remove_leftovers,
    require_hosts,
)
from tests.integration import jobs
from tests.postgresql_server import PostgresNotInstalledError, start_private_postgres
from tests.redis_server import private_redis_server
from tests.scheduling import ROOT

pytestmark = pytest.mark.slow

STORES = [
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("postgresql", marks=pytest.mark.postgresql),
]
LEASE = 2.0
TICK = 1.0
ONE_SHOTS = 6
WORK = 6.0
FAULT_FOR = 2 * LEASE
OBSERVE = 2 * (TICK + LEASE)
"""Seconds the recurring task is watched after the heal, at least."""
THAW_GRACE = LEASE / 10
"""A thawed process may take this long to record that it cancelled a run it lost."""


@pytest.fixture
def network() -> Iterator[HostNetwork]:
    """Three hosts (two workers, one producer) on a bridge; removed afterwards, whatever happened."""
    try:
        require_hosts()
    except HostsUnavailableError as exc:
        pytest.skip(str(exc))
    remove_leftovers()
    made = HostNetwork(3)
    try:
        yield made.create()
    finally:
        made.destroy()
    assert made.leftovers() == [], "the network was not removed"


@pytest.fixture(params=STORES)
def host_store_url(request: pytest.FixtureRequest, network: HostNetwork, tmp_path: Path) -> Iterator[str]:
    """A private server of the store's kind listening only on the bridge's address."""
    if request.param == "redis":
        with private_redis_server(tmp_path / "redis", appendonly=False, host=network.server_address) as redis:
            yield redis.url
        return
    try:
        postgres = start_private_postgres(host=network.server_address, trust=[network.network])
    except PostgresNotInstalledError as exc:
        pytest.skip(f"cannot start a private PostgreSQL: {exc}")
    try:
        yield postgres.url
    finally:
        postgres.cleanup()


class Cluster:
    """The scenario's processes: worker hosts h0, h1 and the producer host h2."""

    def __init__(self, network: HostNetwork, url: str, directory: Path, scenario: str) -> None:
        self.network = network
        self.url = url
        self.directory = directory
        self.scenario = scenario
        self.record_file = directory / "records.jsonl"
        self.workers: list[HostProcess] = []

    def start_workers(self, *offsets: tuple[int, float]) -> list[HostProcess]:
        """Start worker processes at once, on (host index, clock offset) each; wait until ready."""
        with ThreadPoolExecutor(len(offsets)) as pool:
            return list(pool.map(lambda spec: self.start_worker(*spec), offsets))

    def start_worker(self, index: int, offset: float = 0.0) -> HostProcess:
        host = self.network.hosts[index]
        args = [self.url, "--lease", str(LEASE), "--clock-offset", str(offset), "--seconds", "120"]
        worker = HostProcess(host, "tests.integration.worker", args, self.directory / f"{host.name}.log")
        self.workers.append(worker)
        if (line := worker.read_line(timeout=30)).strip() != "ready":
            raise RuntimeError(f"worker on {host.name} did not start: {line!r}\n{worker.errors()}")
        return worker

    def produce(self) -> list[str]:
        """Schedule the one-shots and the recurring task from the producer host; their ids."""
        args = [self.url, str(self.record_file), "--lease", str(LEASE), "--one-shots", str(ONE_SHOTS)]
        args += ["--seconds", str(WORK), "--tick-interval", str(TICK)]
        producer = HostProcess(
            self.network.hosts[2], "tests.chaos.hostproducer", args, self.directory / "h2.log"
        )
        try:
            line = producer.read_line(timeout=30)
            assert producer.process.wait(30) == 0, producer.errors()
        finally:
            producer.kill()
        ids: list[str] = json.loads(line)["ids"]
        return ids

    def records(self) -> list[dict[str, Any]]:
        return jobs.read_records(self.record_file)

    def running(self, worker: HostProcess) -> set[str]:
        """One-shots that ``worker`` is executing now (started, not ended)."""
        open_runs: dict[tuple[str, int], str] = {}
        for r in self.records():
            if r["pid"] == worker.pid and r["label"].startswith("one-"):
                if r["event"] == "start":
                    open_runs[(r["run_id"], r["attempt"])] = r["label"]
                else:
                    open_runs.pop((r["run_id"], r["attempt"]), None)
        return set(open_runs.values())

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Poll ``predicate`` every 0.1 s; whether it held within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def started(self, ids: list[str]) -> bool:
        return {r["label"] for r in self.records() if r["event"] == "start"} >= set(ids)

    def busiest(self) -> HostProcess:
        """The live worker running the most one-shots now."""
        live = [w for w in self.workers if w.process.poll() is None]
        return max(live, key=lambda w: len(self.running(w)))

    def finish(self, ids: list[str], outage: Outage) -> Measurement:
        """Wait (30 s at most) until every one-shot succeeded, no live worker runs one, and the
        recurring task was watched ``OBSERVE`` s after the heal; stop the workers; measure."""

        def settled() -> bool:
            records = self.records()
            succeeded = {r["label"] for r in records if r["event"] == "end" and r.get("outcome") == "success"}
            busy = any(self.running(w) for w in self.workers if w.pid not in outage.killed)
            return succeeded >= set(ids) and not busy and time.time() >= outage.end + OBSERVE

        self.wait(settled, timeout=30 + OBSERVE)
        observed_until = time.time()
        for worker in self.workers:
            worker.stop()
        result = measure(
            self.scenario,
            self.records(),
            ids,
            outage,
            lease=LEASE,
            tick_interval=TICK,
            observed_until=observed_until,
            thaw_grace=THAW_GRACE,
        )
        print(result.summary())
        return result

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()


@pytest.fixture
def cluster(
    network: HostNetwork, host_store_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    made = Cluster(network, host_store_url, tmp_path, request.node.name)
    try:
        yield made
    finally:
        made.close()


def start_and_fault(cluster: Cluster) -> tuple[list[str], HostProcess]:
    """Two worker hosts, the workload scheduled and started; the host that runs the most."""
    cluster.start_workers((0, 0.0), (1, 0.0))
    ids = cluster.produce()
    assert cluster.wait(lambda: cluster.started(ids), timeout=15), "the one-shots did not start"
    return ids, cluster.busiest()


def check(result: Measurement) -> None:
    assert result.problems == [], result.summary()


def test_a_host_whose_link_is_cut_stops_what_another_host_takes_over(cluster: Cluster) -> None:
    ids, victim = start_and_fault(cluster)
    start = time.time()
    cluster.network.cut(victim.host)
    time.sleep(FAULT_FOR)
    cluster.network.heal(victim.host)
    outage = Outage(victim.pid, victim.host.name, start, time.time(), start, must_take_over=True)
    check(cluster.finish(ids, outage))


def test_a_degraded_link_neither_duplicates_nor_loses_runs(cluster: Cluster) -> None:
    ids, victim = start_and_fault(cluster)
    start = time.time()
    try:
        how = cluster.network.degrade(victim.host, delay_ms=200, jitter_ms=100, loss_percent=5)
    except HostsUnavailableError as exc:
        pytest.skip(str(exc))
    port = int(cluster.url.rsplit(":", 1)[1].split("/")[0])
    trips = sorted(cluster.network.round_trips(victim.host, port, count=10))  # about 1 s of the degradation
    print(f"degraded {victim.host.name}: {how}; TCP connects median {trips[5]:.3f}s, max {trips[-1]:.3f}s")
    time.sleep(max(3 * LEASE - (time.time() - start), 0))
    cluster.network.restore(victim.host)
    healed = time.time()
    outage = Outage(victim.pid, victim.host.name, start, healed, healed, must_take_over=False)
    check(cluster.finish(ids, outage))


def test_hosts_with_clocks_two_leases_apart_neither_steal_nor_stall_takeovers(cluster: Cluster) -> None:
    behind = cluster.start_worker(0, -LEASE)  # takes the one-shots while alone
    ids = cluster.produce()
    assert cluster.wait(lambda: cluster.started(ids), timeout=15), "the one-shots did not start"
    cluster.start_worker(1, +LEASE)  # 2 leases ahead of the other
    time.sleep(LEASE)
    start = time.time()
    behind.kill()  # its runs must now be taken over by the host whose clock is ahead
    outage = Outage(
        behind.pid, behind.host.name, start, start, start, must_take_over=True, killed={behind.pid: start}
    )
    check(cluster.finish(ids, outage))


def test_a_frozen_process_does_not_resume_runs_another_host_took_over(cluster: Cluster) -> None:
    ids, victim = start_and_fault(cluster)
    start = time.time()
    victim.pause()
    time.sleep(FAULT_FOR)
    victim.resume()
    thawed = time.time()
    outage = Outage(
        victim.pid,
        victim.host.name,
        start,
        thawed,
        start,
        must_take_over=True,
        paused={victim.pid: (start, thawed)},
    )
    check(cluster.finish(ids, outage))


def test_hosts_reach_only_the_bridge_and_a_crashed_runs_network_is_removed(network: HostNetwork) -> None:
    """A host reaches the server address, not the outside (no route); a cut link reaches
    nothing; a network whose maker was killed is removed by the next run's clean-up."""
    host = network.hosts[0]

    def connects(address: str) -> str:
        probe = (
            "import socket,sys\n"
            "s=socket.socket(); s.settimeout(1)\n"
            "try: s.connect((sys.argv[1], 9)); print('connected')\n"
            "except ConnectionRefusedError: print('refused')\n"
            "except OSError as e: print(type(e).__name__, e.errno)\n"
        )
        done = subprocess.run(
            ["ip", "netns", "exec", host.netns, sys.executable, "-c", probe, address],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout.strip()

    assert connects(network.server_address) == "refused"  # reached: nothing listens on port 9
    assert connects("8.8.8.8") == f"OSError {errno.ENETUNREACH}"
    network.cut(host)
    assert connects(network.server_address) != "refused"
    network.heal(host)

    # a run killed with its network in place (and a process in one of its namespaces)
    maker = (
        "import os,subprocess\n"
        "from tests.chaos.hosts import HostNetwork\n"
        "net = HostNetwork(2).create()\n"
        "quiet = {'stdout': subprocess.DEVNULL, 'stderr': subprocess.DEVNULL}\n"
        "subprocess.Popen(['ip', 'netns', 'exec', net.hosts[1].netns, 'sleep', '60'], **quiet)\n"
        "print(net.bridge, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    crashed = subprocess.run(
        [sys.executable, "-c", maker], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    bridge = crashed.stdout.strip()
    assert bridge.startswith(PREFIX), crashed.stderr
    assert any(name.startswith(bridge) for name in ip("netns", "list").split())
    removed = remove_leftovers()
    assert bridge.removeprefix(PREFIX) in removed
    assert network.net_id not in removed, "a live run's network is kept"
    assert bridge not in ip("netns", "list") + ip("-o", "link", "show")
    assert all(h.netns in ip("netns", "list") for h in network.hosts), "a live run's network is kept"
