"""Slow start (SPEC §15 `slow_start`): a backend that comes online is eased in.

For `slow_start` seconds after this process saw the backend come back online from offline (a
health transition: DirectorRuntime.set_health, fed by proxy.health_follow), its weight grows
linearly from 0 to 1: whenever a scheduler (rr, chance or least_load) picks it, the pick
stands with probability `weight`, else the scheduler picks again without it. It is taken
anyway when no other candidate is left, so slow start never refuses or queues a request.
With rr among N full-weight backends the ramping one gets weight/(N - 1 + weight) of the
requests, rising to its full 1/N share at the end of the ramp (HAProxy's `slowstart`).

Like HAProxy's, the ramp never applies at start: a backend whose first verdict is online
(undefined -> online: the process or the backend is new) gets its full share at once, as
does one loaded online from the stored state, or re-enabled while it stayed online.
"""
from __future__ import annotations

import random
from time import monotonic
from typing import Callable

from proxy.runtime import BackendRuntime


def start_ramp(backend: BackendRuntime, seconds: float, now: float | None = None) -> None:
    """The backend turned online: its ramp runs from now for `seconds`."""
    start = monotonic() if now is None else now
    backend.ramp_start = start
    backend.ramp_end = start + seconds


def ramp_weight(backend: BackendRuntime, now: float) -> float:
    """The backend's weight at `now`: 0 at the ramp's start, 1 at its end and after."""
    if now >= backend.ramp_end:
        return 1.0
    return max(0.0, (now - backend.ramp_start) / (backend.ramp_end - backend.ramp_start))


def admit(pool, chosen: BackendRuntime, exclude, *, now: float | None = None,
          draw: Callable[[], float] = random.random) -> BackendRuntime:
    """`chosen` (picked by `pool.choose(exclude)`) is in its ramp: keep it with the
    probability of its weight, else let the pool choose again without it (and so on). The
    first pick when every candidate declined. A ramp found over is cleared."""
    when = monotonic() if now is None else now
    candidate: BackendRuntime | None = chosen
    tried: set | None = None
    while candidate is not None and candidate.ramp_end:
        if when >= candidate.ramp_end:
            candidate.ramp_end = 0.0  # over: one attribute check per pick from now on
            return candidate
        if draw() < ramp_weight(candidate, when):
            return candidate
        if tried is None:
            tried = set(exclude)
        tried.add(candidate)
        candidate = pool.choose(tried)
    return chosen if candidate is None else candidate
