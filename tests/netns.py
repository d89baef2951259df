"""Machines for tests: network namespaces on one bridge, made and removed by the test.

Each host is a network namespace with one address on ``10.213.0.0/24``; the bridge lives
in a namespace of its own, so no interface, route or firewall rule of the real machine is
touched. Processes run on a host through ``ip netns exec``; :meth:`Network.close` kills
them all and deletes every namespace (which deletes the links and the bridge too).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.shared.settings import PROJECT_ROOT

SUBNET = "10.213.0"


def ip(*args: str) -> str:
    """Run ``ip ARGS``; raise with its error message when it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@dataclass
class Host:
    name: str
    netns: str
    address: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    def pids(self) -> list[int]:
        """Every process in this host's namespace (whoever started it)."""
        return [int(pid) for pid in ip("netns", "pids", self.netns).split()]


class Network:
    """Hosts ``names`` (addresses .1, .2, ... in that order) on one bridge."""

    def __init__(self, names: Sequence[str]) -> None:
        tag = f"fmh{os.getpid()}"  # unique per test run, so parallel runs do not collide
        self.switch = f"{tag}-sw"
        self.hosts = {name: Host(name, f"{tag}-{name}", f"{SUBNET}.{i}") for i, name in enumerate(names, 1)}
        self._made: list[str] = []

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def create(self) -> None:
        self._add_netns(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        for host in self.hosts.values():
            self._add_netns(host.netns)
            ip("-n", host.netns, "link", "add", "eth0", "type", "veth", "peer", "name", host.name, "netns", self.switch)
            ip("-n", self.switch, "link", "set", "dev", host.name, "master", "br0", "up")
            ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            ip("-n", host.netns, "link", "set", "eth0", "up")
            ip("-n", host.netns, "link", "set", "lo", "up")

    def _add_netns(self, name: str) -> None:
        ip("netns", "add", name)
        self._made.append(name)

    def popen(self, host: str, argv: Sequence[str], env: Mapping[str, str], **options: Any) -> subprocess.Popen:
        """Start ``argv`` on ``host`` (``options`` go to ``Popen``); :meth:`kill` and :meth:`close` reach it."""
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.hosts[host].netns, *argv], env=dict(env), cwd=PROJECT_ROOT,
            start_new_session=True, **options,
        )
        self.hosts[host].processes.append(process)
        return process

    def spawn(self, host: str, argv: Sequence[str], env: Mapping[str, str], log: Path) -> subprocess.Popen:
        """Start ``argv`` on ``host``, its output appended to ``log``."""
        with open(log, "ab") as output:
            return self.popen(host, argv, env, stdout=output, stderr=subprocess.STDOUT)

    def run(self, host: str, argv: Sequence[str], env: Mapping[str, str], timeout: float) -> tuple[int, str, str]:
        """Run ``argv`` on ``host`` to its end: ``(exit code, stdout, stderr)``."""
        process = self.popen(host, argv, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = process.communicate(timeout=timeout)
        return process.returncode, out, err

    def signal(self, host: str, signum: int) -> list[int]:
        """Send ``signum`` to every process of ``host``; returns their pids."""
        pids = self.hosts[host].pids()
        for pid in pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        return pids

    def kill(self, host: str) -> list[int]:
        """SIGKILL every process of ``host``, as if the machine lost power; returns their pids."""
        pids = self.signal(host, signal.SIGKILL)
        for process in self.hosts[host].processes:
            if process.poll() is None:
                process.kill()  # started but not yet inside the namespace
            process.wait(timeout=30)
        return pids

    def power_off(self, host: str) -> list[int]:
        """Cut ``host``'s link, then SIGKILL its processes: as in a power loss, no FIN or RST
        reaches its peers, whose connections to it stay open; returns the pids."""
        ip("-n", self.hosts[host].netns, "link", "set", "eth0", "down")
        return self.kill(host)

    def close(self) -> None:
        """Kill every process of every host, then delete the namespaces; never raises."""
        for name in self.hosts:
            try:
                self.kill(name)
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        for netns in reversed(self._made):
            try:
                ip("netns", "del", netns)
            except RuntimeError:
                pass
        self._made.clear()
