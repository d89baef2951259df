"""The processes of a running stack, read from /proc (Linux): role, CPU time, memory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tasks import QUEUES

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Process:
    pid: int
    role: str  # "launcher", "redis", "facade", "flower", "<queue> main" or "<queue> pool"
    cpu_seconds: float  # user + system, so far
    rss_mb: float  # resident, counting pages shared with other processes in full

    @property
    def pss_mb(self) -> float:
        """Resident, with each shared page split between the processes that share it:
        summed over a worker's main and pool processes (forked, so sharing their
        libraries and models' code) it is what the worker occupies, where summed RSS
        counts the shared pages once per process. 0 once the process is gone."""
        try:
            rollup = Path(f"/proc/{self.pid}/smaps_rollup").read_text()
        except OSError:
            return 0.0
        return next((int(line.split()[1]) / 1024 for line in rollup.splitlines() if line.startswith("Pss:")), 0.0)


def _read(pid: int) -> tuple[int, float, float, str] | None:
    """(parent pid, CPU seconds, resident MB, command line) of ``pid``; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)", which may contain spaces
    parent, cpu = int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS
    return parent, cpu, int(fields[21]) * _PAGE / 2**20, argv


def _role(argv: str, parent_role: str) -> str:
    if "redis-server" in argv:
        return "redis"
    if "grpc_facade.server" in argv:
        return "facade"
    if " flower" in argv:
        return "flower"
    for queue in QUEUES:
        if f" -Q {queue} " in argv:
            return f"{queue} pool" if parent_role.startswith(queue) else f"{queue} main"
    return "other"


def stack_processes(launcher: int) -> list[Process]:
    """The launcher ``launcher`` and every process below it, each with its role."""
    table = {int(entry.name): info for entry in Path("/proc").iterdir()
             if entry.name.isdigit() and (info := _read(int(entry.name))) is not None}
    children: dict[int, list[int]] = {}
    for pid, (parent, *_rest) in table.items():
        children.setdefault(parent, []).append(pid)
    if launcher not in table:
        return []
    found, todo = [], [(launcher, "launcher")]
    while todo:
        pid, role = todo.pop()
        _parent, cpu, rss, _argv = table[pid]
        found.append(Process(pid, role, cpu, rss))
        todo += [(child, _role(table[child][3], role)) for child in children.get(pid, [])]
    return found


def cpu_by_role(launcher: int) -> dict[str, float]:
    """CPU seconds used so far, summed per role (all pool processes of a queue together)."""
    totals: dict[str, float] = {}
    for process in stack_processes(launcher):
        totals[process.role] = totals.get(process.role, 0.0) + process.cpu_seconds
    return totals


def cpu_per_item(before: dict[str, float], after: dict[str, float], roles: tuple[str, ...], items: int) -> dict[str, float]:
    """CPU seconds per item and role between two :func:`cpu_by_role` readings."""
    return {role: (after.get(role, 0.0) - before.get(role, 0.0)) / items for role in roles}
