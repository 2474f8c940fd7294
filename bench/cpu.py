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


def machine_seconds(stat: str | None = None) -> tuple[float, float, float]:
    """(busy, stolen, all) CPU seconds of all CPUs so far, from /proc/stat (`stat`: the
    file's text, for tests). Busy: user, nice, system, irq and softirq; stolen: time a
    virtual machine's CPUs were ready to run but the hypervisor ran something else."""
    if stat is None:
        stat = (PROC / "stat").read_text()
    fields = [int(value) for value in stat.splitlines()[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    busy = user + nice + system + irq + softirq
    return busy / TICKS, steal / TICKS, (busy + idle + iowait + steal) / TICKS


class MachineCpu:
    """`with MachineCpu() as cpu: ...`, then `cpu.seconds` the whole machine spent busy in
    the block (the server, its load generator, its backend, everything else) and
    `cpu.stolen_share`, the part of all CPU time the hypervisor took."""

    def __init__(self):
        self.seconds = 0.0
        self.stolen_share = 0.0

    def __enter__(self) -> "MachineCpu":
        self._start = machine_seconds()
        return self

    def __exit__(self, *exc) -> None:
        busy, stolen, total = (end - start for end, start in zip(machine_seconds(), self._start, strict=True))
        self.seconds = busy
        self.stolen_share = stolen / total if total > 0 else 0.0
