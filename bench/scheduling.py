"""Unit benchmark: the cost of scheduling one request with 10 vs 1,000 backends.

Run: `.venv/bin/python bench/scheduling.py`. For each scheduler it times acquire+release
of a slot in a director with 10 online backends, then 1,000 backends of which only 10 are
online (the rest offline), and 1,000 all online; the per-request cost must not grow with
the number of offline backends (no scan of unavailable backends per request).
"""
from __future__ import annotations

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from proxy.addresses import BackendAddress
from proxy.director import DirectorRuntime
from proxy.runtime import BackendRuntime, DirectorSettings

ADDRESS = BackendAddress("http", "127.0.0.1", 9)
ROUNDS = 200_000


def build(total: int, online: int, scheduler: str) -> DirectorRuntime:
    director = DirectorRuntime(1, "bench")
    backends = []
    for i in range(total):
        backend = BackendRuntime(i, f"b{i}", director, ADDRESS, upstream=None)
        backend.position = i
        backend.capacity = 8
        # online ones spread over the list, so offline ones sit between them
        backend.health = "online" if i % (total // online) == 0 else "offline"
        backends.append(backend)
    director.rebuild(DirectorSettings(scheduler=scheduler), backends)
    return director


async def per_request_ns(director: DirectorRuntime, rounds: int = ROUNDS) -> float:
    acquire = director.acquire
    start = time.perf_counter_ns()
    for _ in range(rounds):
        slot = await acquire()
        slot.release()
    return (time.perf_counter_ns() - start) / rounds


async def main() -> None:
    print(f"{'scheduler':<11} {'10 online':>12} {'1000 (10 online)':>18} {'1000 online':>13}   ratio 1000/10")
    for scheduler in ("rr", "chance", "least_load"):
        small = await per_request_ns(build(10, 10, scheduler))
        sparse = await per_request_ns(build(1000, 10, scheduler))
        full = await per_request_ns(build(1000, 1000, scheduler))
        print(f"{scheduler:<11} {small:>10.0f}ns {sparse:>16.0f}ns {full:>11.0f}ns   {sparse / small:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
