"""Real Redis Clusters for tests: ``redis-server --cluster-enabled yes`` on free ports, joined by
``redis-cli --cluster create`` with one replica per master, torn down at the end.

``session_cluster()`` is the 3-master cluster the contract suite shares (stopped when the
interpreter exits); ``start_cluster()`` makes one of a test's own, which it may hurt (kill a
master and watch its replica take over).
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.redis_server import RedisServerHandle, free_port

NODE_TIMEOUT_MS = 1000
"""How long a master may be unreachable before its replica is promoted."""

_session: RedisCluster | None = None


class RedisCluster:
    """``masters`` masters with ``replicas`` replicas each, on 127.0.0.1."""

    def __init__(self, directory: Path, masters: int = 3, replicas: int = 1) -> None:
        if shutil.which("redis-cli") is None:
            raise RuntimeError("redis-cli is not installed (apt-get install redis-server)")
        self.directory = directory
        self.replicas = replicas
        self.nodes: list[RedisServerHandle] = []
        try:
            for _ in range(masters * (1 + replicas)):
                port = cluster_port()
                self.nodes.append(
                    RedisServerHandle(
                        directory / str(port),
                        appendonly=False,
                        port=port,
                        extra_args=[
                            "--cluster-enabled",
                            "yes",
                            "--cluster-config-file",
                            "nodes.conf",
                            "--cluster-node-timeout",
                            str(NODE_TIMEOUT_MS),
                        ],
                    )
                )
            if replicas == 0:
                self._masters_only()
            else:
                addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
                create = ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", str(replicas)]
                subprocess.run(
                    [*create, "--cluster-yes"],
                    check=True,
                    capture_output=True,
                    timeout=60,
                )
            self.wait_ok()
            self.wait_replicated()
        except BaseException:
            self.stop()
            raise

    def _masters_only(self) -> None:
        """Masters without replicas, the slots split evenly (``redis-cli --cluster create`` wants
        three masters at least): each takes its range, then meets the first."""
        first = self.nodes[0]
        for i, node in enumerate(self.nodes):
            low, high = 16384 * i // len(self.nodes), 16384 * (i + 1) // len(self.nodes) - 1
            with contextlib.closing(self.client(node)) as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", low, high)  # type: ignore[no-untyped-call]
                if node is not first:
                    client.execute_command("CLUSTER", "MEET", "127.0.0.1", first.port)  # type: ignore[no-untyped-call]

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", node.port) for node in self.nodes]

    def url(self, prefix: str, **options: object) -> str:
        """A ``redis+cluster://`` URL naming the first two nodes (the client finds the others)."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[:2])
        query = "&".join(f"{key}={value}" for key, value in {"prefix": prefix, **options}.items())
        return f"redis+cluster://{hosts}/?{query}"

    def client(self, node: RedisServerHandle) -> redis.Redis:
        return redis.Redis(port=node.port, socket_timeout=2)

    def masters(self) -> list[RedisServerHandle]:
        """The nodes that are masters now, by what a live node says."""
        role = {}
        for node in self.live():
            with contextlib.closing(self.client(node)) as client:
                nodes: bytes = client.execute_command("CLUSTER", "NODES")  # type: ignore[no-untyped-call]
                for line in nodes.decode().splitlines():
                    fields = line.split()
                    port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
                    role[port] = "master" in fields[2] and "fail" not in fields[2]
            break
        return [node for node in self.live() if role.get(node.port)]

    def live(self) -> list[RedisServerHandle]:
        return [node for node in self.nodes if node.process is not None and node.process.poll() is None]

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every live node says the cluster is ok and agrees on its slots."""
        deadline = time.monotonic() + timeout
        while True:
            states = []
            for node in self.live():
                try:
                    with contextlib.closing(self.client(node)) as client:
                        info: bytes = client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
                        states.append(b"cluster_state:ok" in info)
                except (redis.RedisError, OSError):
                    states.append(False)
            if states and all(states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Redis Cluster in {self.directory} did not become ok")
            time.sleep(0.1)

    def wait_replicated(self, timeout: float = 30.0) -> None:
        """Until every master has its replicas online (a write can then be acknowledged)."""
        deadline = time.monotonic() + timeout
        while True:
            online = []
            for node in self.masters():
                with contextlib.closing(self.client(node)) as client:
                    info = client.info("replication")
                # redis-py parses "slave0:ip=...,state=online,..." into a dict; a node still
                # becoming a master may report a replica's "slave_repl_offset" (a number) too
                states = [
                    value.get("state")
                    for key, value in info.items()
                    if key.startswith("slave") and isinstance(value, dict)
                ]
                online.append(states.count("online") >= self.replicas)
            if online and all(online):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the replicas of the Redis Cluster in {self.directory} did not come online"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is a port too, and free."""
    while True:
        port = free_port()
        if port + 10000 <= 65535:
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port


def start_cluster(masters: int = 3, replicas: int = 1) -> RedisCluster:
    """A cluster of the caller's own (stopped at interpreter exit if the caller does not)."""
    cluster = RedisCluster(Path(tempfile.mkdtemp(prefix="backbeat-cluster-")), masters, replicas)
    _started.append(cluster)
    return cluster


def session_cluster() -> RedisCluster:
    """The 3-master, 3-replica cluster the tests of a session share."""
    global _session
    if _session is None:
        _session = start_cluster()
    return _session


_started: list[RedisCluster] = []


@atexit.register
def _stop_started() -> None:
    for cluster in _started:
        with contextlib.suppress(Exception):
            cluster.stop()
