"""Backend selection: the candidate set of one role and the three schedulers (SPEC §5).

A `RolePool` keeps, in list order, the backends of one role of one director, and a sorted
index of those that are *ready*: enabled, online, not terminating and below capacity.
Schedulers only ever look at ready backends, so a request costs the same whether a director
has 10 or 1,000 backends offline or full (no scan of unavailable backends per request).
Membership changes are pushed in by the owner (`refresh(backend)`) whenever availability or
load crosses a boundary.
"""
from __future__ import annotations

from bisect import bisect_left
from heapq import heapify, heappop, heappush
from typing import Iterable, Protocol

UNLIMITED_FREE = 1 << 62  # capacity 0 counts as the most free slots (least_load)


class Schedulable(Protocol):
    index: int  # position in the pool's list, assigned by the pool
    capacity: int  # 0 = unlimited
    load: int

    @property
    def available(self) -> bool: ...


class RolePool:
    """Backends of one role; `choose()` picks one by the director's scheduler."""

    __slots__ = ("members", "_ready", "_available", "_cursor", "scheduler", "_heap")

    def __init__(self, members: Iterable[Schedulable], scheduler: str = "rr", cursor: int = 0):
        self.members = list(members)
        self.scheduler = scheduler
        self._ready: list[int] = []
        self._available = 0
        self._cursor = cursor  # rr: where the next search starts (kept across reloads)
        for i, member in enumerate(self.members):
            member.index = i
            if member.available:
                self._available += 1
                if _has_slot(member):
                    self._ready.append(i)
        # least_load keeps a heap of (-free, load, index) keys; entries go stale when a
        # member's load changes and are dropped lazily when they surface.
        self._heap = [_load_key(self.members[i]) for i in self._ready] if scheduler == "least_load" else None
        if self._heap:
            heapify(self._heap)

    @property
    def cursor(self) -> int:
        return self._cursor

    @property
    def available_count(self) -> int:
        """Backends that are online and enabled (full or not)."""
        return self._available

    @property
    def ready_count(self) -> int:
        return len(self._ready)

    def refresh(self, member: Schedulable, was_available: bool) -> None:
        """Re-file `member` after its availability or load changed."""
        now_available = member.available
        if now_available != was_available:
            self._available += 1 if now_available else -1
        self._set_ready(member.index, now_available and _has_slot(member))
        if self._heap is not None:
            self.load_changed(member)

    def load_changed(self, member: Schedulable) -> None:
        """The member's load moved (least_load needs every change, the others none)."""
        heap = self._heap
        if heap is None or not (member.available and _has_slot(member)):
            return
        heappush(heap, _load_key(member))
        if len(heap) > 2 * len(self.members) + 64:
            self._heap = [_load_key(self.members[i]) for i in self._ready]
            heapify(self._heap)

    def _set_ready(self, index: int, ready: bool) -> None:
        ready_list = self._ready
        pos = bisect_left(ready_list, index)
        present = pos < len(ready_list) and ready_list[pos] == index
        if ready and not present:
            ready_list.insert(pos, index)
        elif not ready and present:
            del ready_list[pos]

    def handed_over(self, member: Schedulable) -> None:
        """A slot on `member` went to a waiter without `choose()` (it was the only choice):
        the rotation moves on as if it had been chosen."""
        if self.scheduler == "rr":
            self._cursor = member.index + 1

    def choose(self, exclude: set | frozenset = frozenset()):
        """A ready backend not in `exclude`, or None."""
        ready = self._ready
        if not ready:
            return None
        scheduler = self.scheduler
        if scheduler == "rr":
            return self._round_robin(ready, exclude)
        if scheduler == "chance":
            for index in ready:
                member = self.members[index]
                if member not in exclude:
                    return member
            return None
        return self._least_load(ready, exclude)

    def _round_robin(self, ready: list[int], exclude) -> Schedulable | None:
        # Each ready candidate is looked at most once, starting at the cursor (x0's
        # double-skip bug is impossible: we walk the ready index one step at a time).
        n = len(ready)
        start = bisect_left(ready, self._cursor)
        for step in range(n):
            index = ready[(start + step) % n]
            member = self.members[index]
            if member in exclude:
                continue
            self._cursor = index + 1
            return member
        return None

    def _least_load(self, ready: list[int], exclude) -> Schedulable | None:
        heap = self._heap
        members = self.members
        skipped = []
        chosen = None
        while heap:
            key = heap[0]
            member = members[key[2]]
            if key != _load_key(member) or not (member.available and _has_slot(member)):
                heappop(heap)  # stale entry
            elif member in exclude:
                skipped.append(heappop(heap))
            else:
                chosen = member
                break
        for key in skipped:
            heappush(heap, key)
        return chosen


def _load_key(member: Schedulable) -> tuple[int, int, int]:
    free = UNLIMITED_FREE if member.capacity == 0 else member.capacity - member.load
    return (-free, member.load, member.index)


def _has_slot(member: Schedulable) -> bool:
    return member.capacity == 0 or member.load < member.capacity

