"""The garbage collector, tuned for a server whose request path makes no reference cycles.

Start-up leaves a large heap (Django, Twisted, DRF: about 95,000 tracked objects) that
lives as long as the process. Left alone, the collector walks all of it in every full
collection: 11-13 full collections in 10 s of load, up to 70-110 ms each, which was the
whole of a single worker's p99 (50 ms against 2.5 ms at p50).

`settle_heap()` runs once the process is ready and again after each reload: a full collection
frees what start-up (or the old configuration) left, `gc.freeze()` moves every survivor to
the permanent generation the collector never walks, and higher thresholds let it run rarely.
That is safe because the request path is cycle-free (tests/integration/test_gc_cycles.py
holds it to that): requests are freed by reference counting, and the young generations hold
only in-flight objects. Measured with wrk -c32 through one worker to nginx: p99 50 ms →
4 ms, +30 % req/s, and no collection at all in 10 s of load.

Reloads unfreeze first, so objects frozen at the last settle that have since become cyclic
garbage (old runtime objects refer to each other) are freed instead of leaking: one full
collection per reload, a pause of about 0.1 s.
"""
from __future__ import annotations

import gc

# Generation 0 collects after this many net new container objects; a cycle-free request
# path allocates and frees its objects within the request, so the count grows slowly.
THRESHOLDS = (50_000, 50, 100)


def settle_heap() -> None:
    """Free start-up's garbage, freeze what stays, and raise the collection thresholds."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
