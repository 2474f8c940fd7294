"""bench/scheduling.py drives the scheduler's real API: a bench that no longer runs measures
nothing (it once called a `release` the director no longer has). No timing is asserted."""
import asyncio

import pytest

from bench import scheduling


@pytest.mark.parametrize("scheduler", ["rr", "chance", "least_load"])
def test_the_scheduling_bench_runs_against_the_current_director(scheduler):
    director = scheduling.build(1000, 10, scheduler)
    assert asyncio.run(scheduling.per_request_ns(director, rounds=50)) > 0
    online = {b.name for b in director.by_name.values() if b.health == "online"}
    assert len(online) == 10
    slots = [asyncio.run(director.acquire()) for _ in range(20)]
    assert {slot.backend.name for slot in slots} <= online  # only online backends are scheduled
    for slot in slots:
        slot.release()
