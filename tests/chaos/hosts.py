"""Simulated hosts for multi-host fault tests: network namespaces joined to the root namespace by
veth pairs on a test-only bridge, the store's server on the bridge, worker processes inside.

``HostNetwork(count)`` makes namespaces ``bb-<id>-h0..`` each with one veth whose root end
(``bb-<id>-r<N>``) is a port of the bridge ``bb-<id>``; the bridge holds the server address
``10.231.<R>.1/24`` and host N has ``10.231.<R>.<10+N>/24``. No namespace has a default route,
no NAT is set up: hosts reach only their loopback and that subnet. ``destroy()`` kills every
process left in the namespaces and removes namespaces, links, qdiscs and firewall tables (the
latter two go with their links and namespaces); ``remove_leftovers()`` does it for networks a
crashed run left behind (their owner's pid, kept in ``/run/backbeat-hosts``, is dead).

Faults on one host: ``cut``/``heal`` (its root-side veth down/up), ``degrade``/``restore``
(netem delay and loss on both ends of its veth; where the kernel has no netem, a token bucket
that queues and a random drop rule in the host's own nftables), ``HostProcess.pause``/``resume``
(SIGSTOP/SIGCONT) and ``HostProcess.kill`` (SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.scheduling import ROOT

PREFIX = "bb-"
MARKERS = Path("/run/backbeat-hosts")
"""One file per live network, named by its id, holding the pid of the process that made it."""
NETNS_PATTERN = re.compile(r"^bb-([0-9a-f]{6})-h\d+$")
LINK_PATTERN = re.compile(r"^bb-([0-9a-f]{6})(-r\d+)?$")


class HostsUnavailableError(RuntimeError):
    """This machine cannot make network namespaces (not root, or no iproute2)."""


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    """Run ``ip ARGS`` (in ``netns`` if given); its stdout. Raises with its stderr on failure."""
    command = ["ip", *(["-n", netns] if netns else []), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return done.stdout


def tc(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``tc ARGS`` (in ``netns`` if given)."""
    command = ["tc", *(["-n", netns] if netns else []), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return done


def require_hosts() -> None:
    """Raise :class:`HostsUnavailableError` unless running as root with iproute2's ``ip``."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        raise HostsUnavailableError("multi-host tests need root and iproute2 (ip netns)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_netns_processes(netns: str) -> None:
    """SIGCONT then SIGKILL every process in ``netns`` and wait (up to 10 s) until they are gone."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = [int(p) for p in ip("netns", "pids", netns, check=False).split()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def _remove_network(net_id: str) -> None:
    """Remove what the network ``net_id`` consists of, whatever state it is in."""
    namespaces = [line.split()[0] for line in ip("netns", "list", check=False).splitlines() if line.strip()]
    for netns in namespaces:
        match = NETNS_PATTERN.match(netns)
        if match and match.group(1) == net_id:
            _kill_netns_processes(netns)
            ip("netns", "delete", netns, check=False)  # its veth ends (and their peers) go with it
    for link in _links():
        match = LINK_PATTERN.match(link)
        if match and match.group(1) == net_id:
            ip("link", "delete", link, check=False)
    (MARKERS / net_id).unlink(missing_ok=True)


def _links() -> list[str]:
    """Names of the root namespace's links (without the ``@peer`` suffix)."""
    names = []
    for line in ip("-o", "link", "show", check=False).splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@")[0])
    return names


def remove_leftovers() -> list[str]:
    """Remove networks whose maker is dead (a crashed or killed run); the ids removed."""
    ids: set[str] = set()
    for line in ip("netns", "list", check=False).splitlines():
        if line.strip() and (match := NETNS_PATTERN.match(line.split()[0])):
            ids.add(match.group(1))
    for link in _links():
        if match := LINK_PATTERN.match(link):
            ids.add(match.group(1))
    if MARKERS.is_dir():
        ids.update(p.name for p in MARKERS.iterdir())
    removed = []
    for net_id in sorted(ids):
        marker = MARKERS / net_id
        with contextlib.suppress(FileNotFoundError, ValueError):
            if _alive(int(marker.read_text())):
                continue  # a live run's network (another pytest session)
        _remove_network(net_id)
        removed.append(net_id)
    return removed


@dataclass
class Host:
    """One simulated host: a network namespace with one veth to the bridge."""

    index: int
    netns: str
    veth: str
    """The veth's root-namespace end, a port of the bridge."""
    peer: str
    """The veth's end inside the namespace."""
    address: str
    degraded: bool = False
    firewall: bool = False

    @property
    def name(self) -> str:
        return f"h{self.index}"


@dataclass
class HostNetwork:
    """``count`` hosts on one bridge with the server address; build with :meth:`create`."""

    count: int
    net_id: str = field(default_factory=lambda: os.urandom(3).hex())
    subnet: int = field(default_factory=lambda: random.randrange(256))
    hosts: list[Host] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"{PREFIX}{self.net_id}"

    @property
    def server_address(self) -> str:
        """The bridge's address in the root namespace, where servers listen."""
        return f"10.231.{self.subnet}.1"

    @property
    def network(self) -> str:
        return f"10.231.{self.subnet}.0/24"

    def create(self) -> HostNetwork:
        """Make the bridge, the namespaces and their veths; on failure remove what was made."""
        require_hosts()
        MARKERS.mkdir(parents=True, exist_ok=True)
        (MARKERS / self.net_id).write_text(str(os.getpid()))
        try:
            ip("link", "add", self.bridge, "type", "bridge")
            ip("addr", "add", f"{self.server_address}/24", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")
            for index in range(self.count):
                host = Host(
                    index=index,
                    netns=f"{PREFIX}{self.net_id}-h{index}",
                    veth=f"{PREFIX}{self.net_id}-r{index}",
                    peer=f"{PREFIX}{self.net_id}-p{index}",
                    address=f"10.231.{self.subnet}.{10 + index}",
                )
                ip("netns", "add", host.netns)
                self.hosts.append(host)
                ip("link", "add", host.veth, "type", "veth", "peer", "name", host.peer, "netns", host.netns)
                ip("link", "set", host.veth, "master", self.bridge, "up")
                ip("link", "set", "lo", "up", netns=host.netns)
                ip("addr", "add", f"{host.address}/24", "dev", host.peer, netns=host.netns)
                ip("link", "set", host.peer, "up", netns=host.netns)
            self._wait_reachable()
        except BaseException:
            self.destroy()
            raise
        return self

    def _wait_reachable(self, timeout: float = 10.0) -> None:
        """Wait until every host's link is up (carrier on both ends)."""
        deadline = time.monotonic() + timeout
        for host in self.hosts:
            while "LOWER_UP" not in ip("link", "show", host.peer, netns=host.netns):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the link of {host.netns} did not come up")
                time.sleep(0.02)

    def destroy(self) -> None:
        """Kill the hosts' processes, remove namespaces, veths, qdiscs, firewall tables, bridge."""
        _remove_network(self.net_id)
        self.hosts = []

    def leftovers(self) -> list[str]:
        """Namespaces and links of this network that still exist (empty after ``destroy``)."""
        found = [n for n in ip("netns", "list", check=False).split() if n.startswith(self.bridge)]
        return found + [link for link in _links() if link.startswith(self.bridge)]

    # -- faults ---------------------------------------------------------------------------

    def cut(self, host: Host) -> None:
        """Take the host's link down at its root-side end: its packets go nowhere (no reset)."""
        ip("link", "set", host.veth, "down")

    def heal(self, host: Host) -> None:
        """Bring the host's link back up."""
        ip("link", "set", host.veth, "up")

    def degrade(self, host: Host, *, delay_ms: int = 200, jitter_ms: int = 100, loss_percent: int = 5) -> str:
        """Delay and drop the host's packets both ways; returns how (netem, or the fallback).

        With netem: ``netem delay <delay> <jitter> loss <loss>%`` on both veth ends. A kernel
        without netem gets a token bucket on both ends (``tbf``, slow enough that the host's own
        traffic queues: about ``delay`` for a 1 kB packet, up to ``delay + jitter`` queued) and a
        rule in the host namespace's nftables dropping ``loss``% of its packets both ways.
        """
        if shutil.which("tc") is None:
            raise HostsUnavailableError("link degradation needs tc (iproute2)")
        host.degraded = True
        ends = [(host.veth, None), (host.peer, host.netns)]
        netem = ["netem", "delay", f"{delay_ms}ms", f"{jitter_ms}ms", "loss", f"{loss_percent}%"]
        first = tc("qdisc", "add", "dev", host.veth, "root", *netem, check=False)
        if first.returncode == 0:
            tc("qdisc", "add", "dev", host.peer, "root", *netem, netns=host.netns)
            return "netem " + " ".join(netem[1:])
        if "unknown" not in first.stderr.lower():
            raise RuntimeError(f"tc netem failed: {first.stderr.strip()}")
        if shutil.which("nft") is None:
            raise HostsUnavailableError(
                "this kernel has no netem, and the fallback's loss needs nft (nftables)"
            )
        rate_kbit = max(8 * 1000 // delay_ms, 8)  # 1 kB takes delay_ms
        latency_ms = delay_ms + jitter_ms
        tbf = ["tbf", "rate", f"{rate_kbit}kbit", "burst", "1600", "latency", f"{latency_ms}ms"]
        for dev, netns in ends:
            tc("qdisc", "add", "dev", dev, "root", *tbf, netns=netns)
        host.firewall = True
        drop = f"numgen random mod 100 < {loss_percent} drop"
        rules = (
            "table inet bbdegrade {\n"
            f"  chain out {{ type filter hook output priority 0; {drop}; }}\n"
            f"  chain in {{ type filter hook input priority 0; {drop}; }}\n"
            "}\n"
        )
        done = subprocess.run(
            ["ip", "netns", "exec", host.netns, "nft", "-f", "-"],
            input=rules,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"nft failed: {done.stderr.strip()}")
        return f"tbf {' '.join(tbf[1:])} (no netem in this kernel) + nft random drop {loss_percent}%"

    def round_trips(self, host: Host, port: int, count: int = 10) -> list[float]:
        """Seconds each of ``count`` TCP connects from ``host`` to the server's ``port`` took
        (a failed or 3 s connect counts as 3 s): how degraded the host's link is."""
        probe = (
            "import socket,sys,time\n"
            "for _ in range(int(sys.argv[3])):\n"
            "    t=time.monotonic()\n"
            "    try: socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()\n"
            "    except OSError: pass\n"
            "    print(min(time.monotonic()-t, 3.0), flush=True)\n"
        )
        done = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                host.netns,
                sys.executable,
                "-c",
                probe,
                self.server_address,
                str(port),
                str(count),
            ],
            capture_output=True,
            text=True,
            timeout=10 + 3 * count,
            check=True,
        )
        return [float(line) for line in done.stdout.split()]

    def restore(self, host: Host) -> None:
        """Undo :meth:`degrade`."""
        if host.degraded:
            tc("qdisc", "del", "dev", host.veth, "root", check=False)
            tc("qdisc", "del", "dev", host.peer, "root", netns=host.netns, check=False)
            host.degraded = False
        if host.firewall:
            subprocess.run(
                ["ip", "netns", "exec", host.netns, "nft", "delete", "table", "inet", "bbdegrade"],
                capture_output=True,
                timeout=30,
                check=False,
            )
            host.firewall = False


class HostProcess:
    """A Python module run inside a host's namespace (``ip netns exec``, which execs: the pid is
    Python's), stdout piped, stderr to ``log``."""

    def __init__(self, host: Host, module: str, args: list[str], log: Path) -> None:
        self.host = host
        self.log = log
        env = {
            **os.environ,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "BACKBEAT_TEST_HOST": host.name,
        }
        with log.open("a") as stderr:
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", host.netns, sys.executable, "-m", module, *args],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def read_line(self, timeout: float) -> str:
        """The next line of its stdout ('' at its end or after ``timeout`` seconds)."""
        box: list[str] = []
        stdout = self.process.stdout
        assert stdout is not None
        reader = threading.Thread(target=lambda: box.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        return box[0] if box else ""

    def errors(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGCONT (a paused process would not die before it runs again) and SIGKILL; wait."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGCONT)
                self.process.kill()
        self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (a graceful stop), wait up to ``timeout``; its exit code, or None (then killed)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
