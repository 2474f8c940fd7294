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


def machine_busy_seconds(stat: str | None = None) -> float:
    """CPU seconds all CPUs have spent busy so far (/proc/stat: user, nice, system, irq,
    softirq; idle, iowait and steal are not busy). `stat`: the file's text (tests)."""
    if stat is None:
        stat = (PROC / "stat").read_text()
    fields = stat.splitlines()[0].split()
    user, nice, system, _idle, _iowait, irq, softirq = (int(value) for value in fields[1:8])
    return (user + nice + system + irq + softirq) / TICKS


class MachineCpu:
    """`with MachineCpu() as cpu: ...`, then `cpu.seconds` the whole machine spent busy in
    the block: the server, its load generator, its backend, everything else."""

    def __init__(self):
        self.seconds = 0.0

    def __enter__(self) -> "MachineCpu":
        self._start = machine_busy_seconds()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = machine_busy_seconds() - self._start
