"""CPU time (user + system) a process tree spends, read from /proc: the cost per request that
does not depend on how the load generator and the server share the machine's CPUs."""
from __future__ import annotations

import os

from bench.rss import PROC, tree_pids

TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of one process in seconds; 0 when it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICKS  # fields 14 and 15 of proc(5)


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of `pid` and its living descendants (a master and its workers)."""
    return sum(process_cpu_seconds(p) for p in tree_pids(pid))
