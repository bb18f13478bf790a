"""Network namespaces joined by two bridges, for the testbed (Linux, as root).

Every namespace, link and bridge lives in namespaces made here, named after
this process (``tk<pid>-...``), so nothing is added to the host's own network
and two runs never collide. The switch namespace holds two bridges joined by
one veth pair, the trunk; the first half of the host namespaces hangs off one
bridge, the rest off the other, so taking the trunk down splits the network
into two halves and bringing it up heals it. Addresses are private, in
10.231.0.0/16 (on-link, one broadcast domain): by default namespace ``i`` owns
10.231.<i+1>.10, .11, ... (one /24 per namespace), or with ``one_subnet`` every
address is in 10.231.0.0/24.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

NETWORK = "10.231.0.0/16"
"""The private range the testbed owns; addresses inside it are on-link."""


@dataclass(frozen=True)
class Layout:
    """How many namespaces, how many addresses each, and whether they share one /24."""

    namespaces: int
    addresses: int = 1
    one_subnet: bool = False

    def address(self, namespace: int, index: int) -> str:
        """The ``index``-th address of ``namespace``."""
        if self.one_subnet:
            return f"10.231.0.{10 + namespace * self.addresses + index}"
        return f"10.231.{namespace + 1}.{10 + index}"

    def side(self, namespace: int) -> int:
        """Which half (0 or 1) ``namespace`` is in when the trunk is down."""
        return 0 if namespace < (self.namespaces + 1) // 2 else 1

    def check(self) -> None:
        """Raise ValueError for a layout the address plan cannot hold."""
        if self.namespaces < 2 or self.addresses < 1:
            raise ValueError("need at least 2 namespaces and 1 address per namespace")
        per_24 = self.namespaces * self.addresses if self.one_subnet else self.addresses
        if per_24 > 240 or self.namespaces > 250:
            raise ValueError("too many addresses for the 10.231.0.0/16 plan")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def missing_requirements() -> list[str]:
    """What this machine lacks to run the testbed (empty: it can run)."""
    if not sys.platform.startswith("linux"):
        return ["Linux (network namespaces)"]
    problems = []
    if os.geteuid() != 0:
        problems.append("root (creating network namespaces needs CAP_SYS_ADMIN and CAP_NET_ADMIN)")
    if shutil.which("ip") is None:
        problems.append("the `ip` command (iproute2)")
    if problems:
        return problems
    probe = f"tk{os.getpid()}-probe"
    try:
        for step in (
            ("netns", "add", probe),
            ("-n", probe, "link", "add", "b0", "type", "bridge"),
            ("-n", probe, "link", "add", "v0", "type", "veth", "peer", "name", "v1"),
        ):
            result = _ip(*step, check=False)
            if result.returncode != 0:
                what = " ".join(step[2:] if step[0] == "-n" else step)
                problems.append(f"`ip {what}` failed: {result.stderr.strip()}")
                break
    finally:
        _ip("netns", "del", probe, check=False)
    return problems


class Testbed:
    """The namespaces, bridges and links of one run, and the processes started in them."""

    def __init__(self, layout: Layout) -> None:
        layout.check()
        self.layout = layout
        self.tag = f"tk{os.getpid()}"
        self.switch = f"{self.tag}-sw"
        self.created: list[str] = []
        self.pids: set[int] = set()

    def namespace(self, index: int) -> str:
        """The name of host namespace ``index``."""
        return f"{self.tag}-{index}"

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self.created.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def create(self) -> None:
        """Make the switch and every host namespace with its addresses."""
        sw = self.switch
        self._add_namespace(sw)
        for bridge in ("br0", "br1"):
            _ip("-n", sw, "link", "add", bridge, "type", "bridge")
            _ip("-n", sw, "link", "set", bridge, "up")
        _ip("-n", sw, "link", "add", "trunk0", "type", "veth", "peer", "name", "trunk1")
        for side in (0, 1):
            _ip("-n", sw, "link", "set", f"trunk{side}", "master", f"br{side}", "up")
        for i in range(self.layout.namespaces):
            name = self.namespace(i)
            self._add_namespace(name)
            port = f"p{i}"
            _ip(
                "link",
                "add",
                port,
                "netns",
                sw,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                name,
            )
            _ip("-n", sw, "link", "set", port, "master", f"br{self.layout.side(i)}", "up")
            for j in range(self.layout.addresses):
                _ip("-n", name, "addr", "add", f"{self.layout.address(i, j)}/16", "dev", "eth0")
            _ip("-n", name, "link", "set", "eth0", "up")

    def partition(self) -> None:
        """Split the namespaces into two halves: the trunk between the bridges goes down."""
        _ip("-n", self.switch, "link", "set", "trunk0", "down")

    def heal(self) -> None:
        """Join the halves again."""
        _ip("-n", self.switch, "link", "set", "trunk0", "up")

    def signal(self, pid: int, signum: int) -> None:
        """Send ``signum`` to a process this testbed started (gone already: nothing)."""
        if pid in self.pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                self.pids.discard(pid)

    def cleanup(self) -> None:
        """Kill every process in our namespaces, then delete the namespaces (and their links)."""
        pids = set(self.pids)
        for name in self.created:
            listed = _ip("netns", "pids", name, check=False).stdout.split()
            pids.update(int(pid) for pid in listed if pid.isdigit())
        for pid in pids:
            for signum in (signal.SIGKILL, signal.SIGCONT):
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    break
        deadline = time.monotonic() + 10
        for pid in pids:
            while time.monotonic() < deadline:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break  # not our child, or already reaped
                if done:
                    break
                time.sleep(0.02)
        self.pids.clear()
        while self.created:
            _ip("netns", "del", self.created.pop(), check=False)
