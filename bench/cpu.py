"""CPU time a process tree spends during a measurement, from /proc (user + system)."""
from __future__ import annotations

import os

from bench.rss import PROC, tree_pids

TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """User + system seconds of `pid` and its living descendants so far."""
    total = 0
    for current in tree_pids(pid):
        try:
            fields = (PROC / str(current) / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / TICKS


class CpuTime:
    """`with CpuTime(pid) as cpu: ...`, then `cpu.seconds` spent by the tree in the block."""

    def __init__(self, pid: int):
        self.pid = pid
        self.seconds = 0.0

    def __enter__(self) -> "CpuTime":
        self._start = tree_cpu_seconds(self.pid)
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = tree_cpu_seconds(self.pid) - self._start
