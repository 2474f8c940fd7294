"""Buckets: x0's HTB token shaper, without its bugs (SPEC §15 "Buckets", docs/buckets.md).

A director with buckets shares its capacity among them. The root bucket holds as many
tokens as the director can serve at once: the capacities of its online, enabled active
backends (the backups' when no active backend is available), recomputed from that state on
every reload and health change, never counted up and down by hand. Below it every bucket
has `assured = floor(rate × parent's assured)` and `ceiling = floor(ceil × parent's
ceiling)` tokens.

A request takes one token before a backend is chosen: it may when its bucket and every
bucket above it hold fewer tokens than their ceilings (it uses its assured share, or
borrows what its parent has spare). Without one it waits in its bucket's FIFO queue. A
freed token goes first to a waiting bucket still below its assured share, else to any
waiting bucket that may borrow; buckets take turns (round-robin), so a bucket that lent
its share gets it back as the borrowers' requests finish.

Under `--workers` the tokens in use are counted in the node's slot table (proxy.node_slots),
one row per bucket, so the shares hold for the node; taking a token checks and counts the
whole path under one row lock. A director without buckets has no `Shaper` at all.
"""
from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from time import monotonic

from proxy.node_slots import NodeSlots, bucket_key, bucket_waiting_key, root_key, root_waiting_key

log = logging.getLogger("director.proxy")

ROOT = "root"
HEADER = b"x-director-bucket"
UNLIMITED = 1 << 30  # tokens of a director with a backend of unlimited capacity (0)
UNKNOWN_LOG_EVERY = 60.0  # seconds between log lines about routes naming an unknown bucket
NODE_POLL = 0.005  # seconds between looks at the node's table while requests wait (--workers)


def shares(rate: float, ceil: float, parent_assured: int, parent_ceiling: int) -> tuple[int, int]:
    """(assured, ceiling) tokens of a bucket whose parent has the given ones."""
    return math.floor(rate * parent_assured + 1e-9), math.floor(ceil * parent_ceiling + 1e-9)


def tree_order(rows: list[dict]) -> list[tuple[dict, str]]:
    """Bucket rows ({name, parent, rate, ceil, ...}) parents first, each with the name of the
    parent it is attached to. A row whose parent is missing or which is part of a cycle (the
    services never store one) is attached to root and logged."""
    by_name = {row["name"]: row for row in rows if row["name"] != ROOT}
    parent_of: dict[str, str] = {}
    for name, row in by_name.items():
        parent = row["parent"] or ROOT
        seen = {name}
        walk = parent
        while walk != ROOT and walk in by_name and walk not in seen:
            seen.add(walk)
            walk = by_name[walk]["parent"] or ROOT
        if walk != ROOT:
            log.error("bucket %s: parent %r %s; attached to root", name, parent,
                      "forms a cycle" if walk in seen else "does not exist")
            parent = ROOT
        parent_of[name] = parent
    children: dict[str, list[str]] = {}
    for name in by_name:  # rows come in id order: children keep it
        children.setdefault(parent_of[name], []).append(name)
    ordered: list[tuple[dict, str]] = []
    stack = list(reversed(children.get(ROOT, [])))
    while stack:
        name = stack.pop()
        ordered.append((by_name[name], parent_of[name]))
        stack.extend(reversed(children.get(name, [])))
    return ordered


def token_figures(capacity: int, rows: list[dict]) -> dict[str, tuple[int, int]]:
    """{name: (assured, ceiling)} of every bucket for a root of `capacity` tokens."""
    figures = {ROOT: (capacity, capacity)}
    for row, parent in tree_order(rows):
        figures[row["name"]] = shares(row["rate"], row["ceil"], *figures[parent])
    return figures


def serving_capacity(active, backup) -> int:
    """Root tokens: the capacities of the available members of the pool that serves (active,
    else backup); UNLIMITED when one of them has no capacity limit; 0 when none is available."""
    for pool in (active, backup):
        total, any_available = 0, False
        for backend in pool.members:
            if backend.available:
                if not backend.capacity:
                    return UNLIMITED
                any_available = True
                total += backend.capacity
        if any_available:
            return total
    return 0


class Bucket:
    """One bucket of one director (root included) as the data plane sees it."""

    __slots__ = ("id", "name", "parent_name", "rate", "ceil", "path", "assured", "ceiling", "used",
                 "queue", "dropped", "header", "key", "waiting_key")

    def __init__(self, bucket_id: int, name: str, director_id: int):
        self.id = bucket_id
        self.name = name
        self.parent_name = ""
        self.rate = self.ceil = 1.0
        self.path: tuple[Bucket, ...] = (self,)  # itself, its parent, ..., root
        self.assured = self.ceiling = 0
        self.used = 0  # tokens this process holds for requests of this bucket and those below it
        self.queue: deque[_Waiter] = deque()
        self.dropped = 0
        self.header = (HEADER, name.encode("ascii"))
        is_root = name == ROOT
        self.key = root_key(director_id) if is_root else bucket_key(bucket_id)
        self.waiting_key = root_waiting_key(director_id) if is_root else bucket_waiting_key(bucket_id)

    def __repr__(self) -> str:
        return f"<bucket {self.name} {self.used}/{self.assured}/{self.ceiling}>"


class Token:
    """One token held by one request: `give_back()` returns it (idempotent)."""

    __slots__ = ("shaper", "path", "held")

    def __init__(self, shaper: Shaper | None, path: tuple[Bucket, ...]):
        self.shaper = shaper
        self.path = path
        self.held = True

    def give_back(self) -> None:
        if self.held:
            self.held = False
            if self.shaper is not None:
                self.shaper.give_back(self.path)


FREE_PASS = Token(None, ())  # what waiters get when their director's buckets are removed


class _Waiter:
    __slots__ = ("future", "timer", "bucket")

    def __init__(self, future: asyncio.Future, bucket: Bucket):
        self.future = future
        self.bucket = bucket
        self.timer: asyncio.TimerHandle | None = None


class Shaper:
    """The bucket tree of one director; replaced in place on reload (`rebuild`, `resize`)."""

    def __init__(self, director_id: int, director_name: str, node: NodeSlots | None = None):
        self.director_id = director_id
        self.director_name = director_name
        self.node = node
        self.root = Bucket(0, ROOT, director_id)
        self.by_name: dict[str, Bucket] = {ROOT: self.root}
        self.order: list[Bucket] = [self.root]  # parents first: the round-robin order
        self.capacity = 0
        self.waiting = 0  # waiters in all queues
        self._turn = 0
        self._unknown_logged = -UNKNOWN_LOG_EVERY
        self._poll: asyncio.TimerHandle | None = None

    # -- configuration --------------------------------------------------------------------

    def rebuild(self, rows: list[dict]) -> None:
        """Install the bucket rows ({id, name, parent, rate, ceil}); buckets keep their
        counters and queues across reloads. Waiters of a removed bucket move to root."""
        old = {b.id: b for b in self.order if b is not self.root}
        by_name = {ROOT: self.root}
        order = [self.root]
        for row, parent in tree_order(rows):
            bucket = old.pop(row["id"], None) or Bucket(row["id"], row["name"], self.director_id)
            bucket.parent_name = parent
            bucket.rate, bucket.ceil = float(row["rate"]), float(row["ceil"])
            bucket.path = (bucket, *by_name[parent].path)
            by_name[bucket.name] = bucket
            order.append(bucket)
        for gone in old.values():
            while gone.queue:
                waiter = gone.queue.popleft()
                waiter.bucket = self.root
                self.root.queue.append(waiter)
        self.by_name, self.order = by_name, order
        self._turn %= len(order)
        self.resize(self.capacity)

    def resize(self, capacity: int) -> None:
        """A new root size (proxy.director: from the backends' current state)."""
        self.capacity = capacity
        root = self.root
        root.assured = root.ceiling = capacity
        for bucket in self.order[1:]:
            parent = bucket.path[1]
            bucket.assured, bucket.ceiling = shares(bucket.rate, bucket.ceil, parent.assured, parent.ceiling)
        self.dispatch()

    def close(self) -> None:
        """The director has no buckets any more: waiters go on without a token."""
        for bucket in self.order:
            while self._first_live(bucket):
                self._grant(bucket.queue.popleft(), FREE_PASS)

    def lookup(self, name: str | None) -> Bucket:
        """The bucket called `name`; root for none or an unknown name (logged once a minute)."""
        if name is None:
            return self.root
        bucket = self.by_name.get(name)
        if bucket is None:
            now = monotonic()
            if now - self._unknown_logged >= UNKNOWN_LOG_EVERY:
                self._unknown_logged = now
                log.warning("director %s: no bucket %r; such requests use root (logged once a minute)",
                            self.director_name, name[:64])
            return self.root
        return bucket

    # -- tokens ---------------------------------------------------------------------------

    def take(self, bucket: Bucket) -> Token | None:
        """A token for a request of `bucket` if its path has one spare, else None."""
        if not self.capacity:
            return FREE_PASS  # nothing with a capacity serves: the director's own rules apply
        path = bucket.path
        node = self.node
        if node is not None:
            taken = node.try_take_all(self.root.key, [(b.key, b.ceiling) for b in path])
            if taken is False:
                return None
            if taken is None:  # the node's table is full: counted in this process only
                node = None
        if node is None:
            for b in path:
                if b.used >= b.ceiling:
                    return None
        for b in path:
            b.used += 1
        return Token(self, path)

    def give_back(self, path: tuple[Bucket, ...]) -> None:
        node = self.node
        for b in path:
            b.used -= 1
            if node is not None:
                node.give_back(b.key)
        if self.waiting:
            self.dispatch()

    def may_wait(self, bucket: Bucket, queue_limit: int) -> bool:
        """Whether one more request may wait in the bucket's queue (counted when it may)."""
        node = self.node
        if node is None:
            return len(bucket.queue) < queue_limit
        return node.try_take(bucket.waiting_key, queue_limit)

    async def wait(self, bucket: Bucket, timeout: float) -> Token | None:
        """Wait in the bucket's FIFO queue: a token, or None after `timeout` seconds. The
        caller has called `may_wait` first."""
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), bucket)
        waiter.timer = loop.call_later(timeout, self._expire, waiter)
        bucket.queue.append(waiter)
        self.waiting += 1
        self._counted(bucket)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            future = waiter.future
            if future.done() and not future.cancelled() and future.result() is not None:
                future.result().give_back()  # granted as the client went away
            raise
        finally:
            waiter.timer.cancel()
            if not waiter.future.done() or waiter.future.cancelled():
                self._unqueue(waiter)

    def _expire(self, waiter: _Waiter) -> None:
        if not waiter.future.done():
            self._unqueue(waiter)
            waiter.future.set_result(None)

    def _unqueue(self, waiter: _Waiter) -> None:
        bucket = waiter.bucket
        try:
            bucket.queue.remove(waiter)
        except ValueError:
            return
        self.waiting -= 1
        self._counted(bucket)

    def _counted(self, bucket: Bucket) -> None:
        if self.node is not None:
            self.node.set_count(bucket.waiting_key, len(bucket.queue))
            if self.waiting and self._poll is None:
                self._poll = asyncio.get_running_loop().call_later(NODE_POLL, self._poll_due)

    def _poll_due(self) -> None:
        self._poll = None
        self.dispatch()
        if self.waiting and self.node is not None and self._poll is None:
            self._poll = asyncio.get_running_loop().call_later(NODE_POLL, self._poll_due)

    def _first_live(self, bucket: Bucket) -> bool:
        """Whether the bucket has a waiter, dropping the cancelled ones at its head first
        (they leave the queue themselves, but may not have run yet)."""
        queue = bucket.queue
        while queue and queue[0].future.done():
            queue.popleft()
            self.waiting -= 1
            self._counted(bucket)
        return bool(queue)

    def _grant(self, waiter: _Waiter, token: Token) -> None:
        self.waiting -= 1
        self._counted(waiter.bucket)
        waiter.future.set_result(token)

    def dispatch(self) -> None:
        """Hand spare tokens to waiters: buckets below their assured share first, then those
        that may borrow; buckets take turns, each queue is FIFO."""
        order = self.order
        count = len(order)
        while self.waiting:
            granted = False
            for within_assured in (True, False):
                for step in range(count):
                    bucket = order[(self._turn + step) % count]
                    if not self._first_live(bucket) or (within_assured and self._used(bucket) >= bucket.assured):
                        continue
                    token = self.take(bucket)
                    if token is None:
                        continue
                    self._turn = (self._turn + step + 1) % count
                    self._grant(bucket.queue.popleft(), token)
                    granted = True
                    break
                if granted:
                    break
            if not granted:
                return

    def _used(self, bucket: Bucket) -> int:
        """Tokens in use by the bucket: in the node under --workers, else in this process."""
        if self.node is not None:
            return self.node.in_flight(bucket.key)[1] or bucket.used
        return bucket.used

    # -- figures --------------------------------------------------------------------------

    def stats(self) -> dict:
        """{name: {used, queued, dropped}}: this process's figures (summed over workers)."""
        return {b.name: {"used": b.used, "queued": len(b.queue), "dropped": b.dropped} for b in self.order}

    def tokens(self) -> dict:
        """{name: [assured, ceiling]} (the node's: the same in every worker)."""
        return {b.name: [b.assured, b.ceiling] for b in self.order}
