"""A director at run time: role pools, slot accounting and the FIFO queue (SPEC §7.2).

`acquire()` returns a `Slot` (proxy.slots) on a backend, or raises `Refused` carrying the
status the client gets. Releasing the slot frees it and hands it straight to the oldest
waiter, so a queued request never races a newcomer for a freed slot.
"""
from __future__ import annotations

import asyncio
from collections import deque

from proxy.buckets import Bucket, Shaper, serving_capacity
from proxy.cache import ResponseCache
from proxy.node_slots import NodeSlots
from proxy.request_metrics import Traffic
from proxy.runtime import BackendRuntime, Counter, DirectorSettings
from proxy.scheduler import RolePool
from proxy.sendfile import SendfileRoot, sendfile_root
from proxy.slots import Slot
from proxy.slow_start import admit, start_ramp
from proxy.sticky import StickyCookie, sticky_cookie

NODE_POLL = 0.005  # seconds between looks at the node's slots while requests wait (--workers)


class Refused(Exception):
    """The director answers this request itself (503), or gives up after failures."""

    def __init__(self, reason: str, status: int = 503):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Waiter:
    __slots__ = ("future", "exclude", "deadline", "queued", "prefer")

    def __init__(self, future: asyncio.Future, exclude, deadline: float, prefer: BackendRuntime | None = None):
        self.future = future
        self.exclude = exclude
        self.deadline = deadline
        self.queued = True  # still in DirectorRuntime.queue
        self.prefer = prefer  # waits for this backend's slot (sticky cookie) while it can serve


class DirectorRuntime:
    """Live state of one director; settings and membership are replaced on reload."""

    def __init__(self, director_id: int, name: str):
        self.id = director_id
        self.name = name
        self.dynamic = False
        self.settings = DirectorSettings()
        self.backends: dict[int, BackendRuntime] = {}
        self.by_name: dict[str, BackendRuntime] = {}
        self.active = RolePool([])
        self.backup = RolePool([])
        self.queue: deque[_Waiter] = deque()
        self._expiry: asyncio.TimerHandle | None = None  # one timer for the earliest deadline
        self._loop: asyncio.AbstractEventLoop | None = None  # see _event_loop
        self.load = Counter()
        self.queued = Counter()
        self.dropped = 0
        self.status_counts = [0, 0, 0, 0, 0, 0]
        self.traffic = Traffic()  # requests the director answered itself (no backend)
        self.bytes_received = 0  # request body bytes of all its requests
        self.bytes_sent = 0  # response body bytes of all its requests
        self.node: NodeSlots | None = None  # under --workers: limits per node
        self.cache_store = ResponseCache()  # SPEC §15; kept while disabled for its counters
        self.cache: ResponseCache | None = None  # the store while cache_enabled (proxy.cache_flow)
        self._node_poll: asyncio.TimerHandle | None = None
        self.sendfile: SendfileRoot | None = None  # X-Sendfile allowed (SPEC §15)
        self.sticky: StickyCookie | None = None  # sticky_cookie set (SPEC §15)
        self.shaper: Shaper | None = None  # its buckets (proxy.buckets); None: it has none

    # -- membership -------------------------------------------------------------------
    def rebuild(self, settings: DirectorSettings, backends: list[BackendRuntime]) -> None:
        """Install new settings and the ordered member list (called on every reload)."""
        self.settings = settings
        self.sendfile = sendfile_root(self.name, settings, self.sendfile)
        self.sticky = sticky_cookie(settings, self.sticky)
        self.cache_store.configure(settings)
        self.cache = self.cache_store if settings.cache_enabled else None
        for old in self.backends.values():
            old.pool = None
        ordered = sorted(backends, key=lambda b: (b.position, b.id))
        self.backends = {b.id: b for b in ordered}
        self.by_name = {b.name: b for b in ordered}
        # Reloads happen on every config or health change anywhere: keep rr's rotation.
        self.active = RolePool([b for b in ordered if b.role != "backup"], settings.scheduler, self.active.cursor)
        self.backup = RolePool([b for b in ordered if b.role == "backup"], settings.scheduler, self.backup.cursor)
        for backend in ordered:
            backend.pool = self.backup if backend.role == "backup" else self.active
        if self.shaper is not None:
            self.shaper.resize(serving_capacity(self.active, self.backup))
        self.dispatch_waiters()

    def set_buckets(self, rows: list[dict]) -> None:
        """Install the director's bucket rows (before `rebuild`, which sizes them)."""
        if rows:
            if self.shaper is None:
                self.shaper = Shaper(self.id, self.name, self.node)
            self.shaper.rebuild(rows)
        elif self.shaper is not None:
            shaper = self.shaper
            self.shaper = None
            shaper.close()

    def set_health(self, backend: BackendRuntime, state: str) -> bool:
        """Apply a health state; returns True when it changed."""
        if backend.health == state:
            return False
        was = backend.available
        if state == "online" and backend.health == "offline" and self.settings.slow_start:
            start_ramp(backend, self.settings.slow_start)  # a comeback (not a first verdict) ramps
        backend.health = state
        backend.failure_streak = 0
        self._refile(backend, was)
        if self.shaper is not None:
            self.shaper.resize(serving_capacity(self.active, self.backup))
        if backend.available or self.queue:  # (waiters for a backend that went away take another)
            self.dispatch_waiters()
        return True

    def _refile(self, backend: BackendRuntime, was_available: bool) -> None:
        if backend.pool is not None:
            backend.pool.refresh(backend, was_available)

    # -- slots ------------------------------------------------------------------------
    def _pick(self, exclude) -> BackendRuntime | None:
        pool = self.active if self.active.available_count else self.backup
        backend = pool.choose(exclude)
        if backend is not None and backend.ramp_end:
            return admit(pool, backend, exclude)  # slow start
        return backend

    def any_available(self) -> bool:
        return bool(self.active.available_count or self.backup.available_count)

    def _pick_slot(self, exclude, full: set | None = None) -> Slot | None:
        """A slot on a ready backend, or None. Under --workers a backend with a capacity must
        also have a free slot in the node (and this process no more than its fair share
        while other workers wait for it); those that do not are added to `full`."""
        backend = self._pick(exclude)
        node = self.node
        if node is None:
            return None if backend is None else self.take_slot(backend)
        while backend is not None:
            if not backend.capacity:
                return self.take_slot(backend)
            if not self._over_share(backend) and node.try_take(backend.id, backend.capacity):
                return self.take_slot(backend, counted=True)
            full = set() if full is None else full
            full.add(backend)
            backend = self._pick(full.union(exclude))
        return None

    def _over_share(self, backend: BackendRuntime) -> bool:
        """Other workers wait for this director and this one holds its share of the backend."""
        waiting, processes = self.node.waiting(self.id)
        if not waiting or (processes == 1 and self.queue):
            return False
        sharing = processes + (0 if self.queue else 1)
        mine, _ = self.node.in_flight(backend.id)
        return mine >= -(-backend.capacity // sharing)

    def _slot_on(self, backend: BackendRuntime) -> Slot | None:
        """A slot on this very backend if it has a free one (in the node too), else None."""
        if backend.capacity and backend.load >= backend.capacity:
            return None
        node = self.node
        if node is None or not backend.capacity:
            return self.take_slot(backend)
        if not self._over_share(backend) and node.try_take(backend.id, backend.capacity):
            return self.take_slot(backend, counted=True)
        return None

    def can_prefer(self, backend: BackendRuntime) -> bool:
        """`backend` may take a request that asks for it (sticky cookie): online, enabled,
        and of the role in use (a backup only while no active backend is available)."""
        return backend.available and backend.pool is (self.active if self.active.available_count else self.backup)

    def take_slot(self, backend: BackendRuntime, *, counted: bool = False) -> Slot:
        """Count a slot on `backend` in (even above capacity: a pinned request) and lease it.
        `counted`: the node's table already has it (`_pick_slot`)."""
        if self.node is not None and backend.capacity and not counted:
            self.node.take(backend.id)
        was = backend.available
        backend.load += 1
        backend.load_counter.increment()
        self.load.increment()
        if backend.capacity and backend.load >= backend.capacity:
            self._refile(backend, was)
        elif backend.pool is not None:
            backend.pool.load_changed(backend)
        return Slot(self, backend)

    def free_slot(self, backend: BackendRuntime) -> None:
        """Free the backend's slot and give it to the oldest waiter that can use it. Only
        `Slot.release()` calls this, once per slot."""
        if self.queue and self._hand_over(backend):
            return
        backend.load -= 1
        backend.load_counter.decrement()
        self.load.decrement()
        node = self.node
        if node is not None and backend.capacity:
            node.give_back(backend.id)
        if backend.capacity and backend.load == backend.capacity - 1:
            self._refile(backend, backend.available)
        elif backend.pool is not None:
            backend.pool.load_changed(backend)
        if self.queue:
            self.dispatch_waiters()
        if node is not None and backend.capacity:
            node.offer(self.id, backend.id, backend.capacity)

    def _hand_over(self, backend: BackendRuntime) -> bool:
        """The slot a full backend frees goes straight to the oldest waiter that may take it,
        when that backend is the only one with room then (every other one full: the usual
        queue), so `dispatch_waiters` would give it the same: one lease ends, one starts,
        without counting the slot out and back in or re-filing the backend twice. False when
        that is not the case (under --workers, slow start, another backend with room, nobody
        eligible): the slot is freed and dispatched as usual."""
        if (self.node is not None or backend.ramp_end or backend.load != backend.capacity
                or not self.can_prefer(backend) or backend.pool.ready_count):
            return False
        for waiter in self.queue:
            if waiter.future.done():
                continue  # expired or cancelled: leaves the queue by itself
            prefer = waiter.prefer
            if prefer is not None and self.can_prefer(prefer):
                if prefer is not backend:
                    continue  # waits for its own backend
            elif backend in waiter.exclude:
                continue
            else:
                waiter.prefer = None  # its backend went away: any will do (as dispatch_waiters)
            self._unqueue(waiter)
            backend.load_counter.turn_over()
            self.load.turn_over()
            backend.pool.handed_over(backend)
            waiter.future.set_result(Slot(self, backend))
            return True
        return False

    def slot_now(self, exclude=frozenset(), prefer: BackendRuntime | None = None) -> Slot | None:
        """`acquire()` when nobody waits and a slot is free, without a coroutine (the usual
        case, once per request); None: await `acquire()`."""
        if not self.settings.enabled:
            raise Refused("director disabled")
        if self.queue:
            return None  # earlier arrivals first: acquire() serves them
        return self._free_slot(exclude, prefer)[0]

    def _free_slot(self, exclude, prefer: BackendRuntime | None) -> tuple[Slot | None, BackendRuntime | None]:
        """A free slot (on `prefer` while it can serve) or None, and the preference left."""
        if prefer is not None:
            if prefer in exclude or not self.can_prefer(prefer):
                prefer = None
            else:
                return self._slot_on(prefer), prefer
        return self._pick_slot(exclude), None

    async def acquire(self, exclude=frozenset(), *, retrying: bool = False, prefer: BackendRuntime | None = None) -> Slot:
        """A slot on a backend for this request; queues when all are busy. With `prefer`
        (a sticky cookie's backend), a slot on that backend while it can serve: the request
        waits in the queue for it when it is full, like any other."""
        settings = self.settings
        if not settings.enabled:
            raise Refused("director disabled")
        if self.queue:
            self.dispatch_waiters()  # earlier arrivals first; what they cannot use is free
        slot, prefer = self._free_slot(exclude, prefer)
        if slot is not None:
            return slot
        if not self.any_available() and not settings.enqueue_on_unavailable:
            raise Refused("no backend online")
        if retrying and not self._has_untried(exclude):
            raise Refused("no other backend to try")
        if self.node is None:
            if len(self.queue) >= settings.queue_limit:
                raise Refused("queue full")
        elif not self.node.try_wait(self.id, settings.queue_limit):
            raise Refused("queue full")
        return await self._wait(exclude, prefer)

    async def acquire_in_bucket(self, bucket: Bucket, exclude=frozenset(), *, retrying: bool = False,
                                prefer: BackendRuntime | None = None) -> Slot:
        """`acquire()` for a request of `bucket`: a token of the bucket first (waiting in the
        bucket's queue for one), then a slot; the slot gives the token back when released."""
        shaper = self.shaper
        if shaper is None:  # the director lost its buckets since the request was routed
            return await self.acquire(exclude, retrying=retrying, prefer=prefer)
        if shaper.by_name.get(bucket.name) is not bucket:  # removed by a reload since
            bucket = shaper.root
        settings = self.settings
        try:
            if not settings.enabled:
                raise Refused("director disabled")
            token = shaper.take(bucket)
            if token is None:
                if not shaper.may_wait(bucket, settings.queue_limit):
                    raise Refused(f"bucket {bucket.name} queue full")
                token = await shaper.wait(bucket, settings.queue_timeout)
                if token is None:
                    raise Refused(f"bucket {bucket.name} queue timeout")
        except Refused:
            bucket.dropped += 1
            raise
        try:
            slot = await self.acquire(exclude, retrying=retrying, prefer=prefer)
        except BaseException as exc:
            token.give_back()
            if isinstance(exc, Refused):
                bucket.dropped += 1
            raise
        slot.token = token
        return slot

    def _has_untried(self, exclude) -> bool:
        pool = self.active if self.active.available_count else self.backup
        return any(m.available and m not in exclude for m in pool.members)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, looked up once: on Python 3.11 every asyncio.get_running_loop()
        makes a getpid() system call, here once per queued request."""
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        return loop

    async def _wait(self, exclude, prefer: BackendRuntime | None = None) -> Slot:
        loop = self._event_loop()
        waiter = _Waiter(loop.create_future(), exclude, loop.time() + self.settings.queue_timeout, prefer)
        self.queue.append(waiter)
        self.queued.increment()
        if self.node is not None:
            self.node.set_waiting(self.id, len(self.queue))
            self._arm_node_poll()
        expiry = self._expiry
        if expiry is None or expiry.when() > waiter.deadline:  # later only after a timeout cut
            if expiry is not None:
                expiry.cancel()
            self._expiry = loop.call_at(waiter.deadline, self._expire_due)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            future = waiter.future
            if future.done() and not future.cancelled() and future.exception() is None:
                # Got a slot at the same moment the client went away: give it back.
                future.result().release()
            raise
        finally:
            if waiter.queued:
                self._unqueue(waiter)

    def _unqueue(self, waiter: _Waiter) -> None:
        self.queue.remove(waiter)
        waiter.queued = False
        self.queued.decrement()
        if self.node is not None:
            self.node.set_waiting(self.id, len(self.queue))

    def _expire_due(self) -> None:
        """Fail every waiter whose queue_timeout has passed; re-arm for the next deadline.
        (One timer per director instead of one per queued request.)"""
        self._expiry = None
        loop = self._event_loop()
        now = loop.time()
        next_deadline = None
        for waiter in self.queue:
            if waiter.future.done():
                continue
            if waiter.deadline <= now:
                waiter.future.set_exception(Refused("queue timeout"))
            elif next_deadline is None or waiter.deadline < next_deadline:
                next_deadline = waiter.deadline
        if next_deadline is not None:
            self._expiry = loop.call_at(next_deadline, self._expire_due)

    def dispatch_waiters(self) -> None:
        """Hand free slots to waiters in FIFO order (a waiter whose candidates are all
        excluded does not block the ones behind it). Under --workers a slot another worker
        frees rings this one's doorbell (proxy.node_wake); the node's table is also polled
        every NODE_POLL while requests wait, in case a ring is lost."""
        queue = self.queue
        index = 0
        full: set | None = set() if self.node is not None else None  # found full in the node this pass
        while index < len(queue) and (self.active.ready_count or self.backup.ready_count):
            waiter = queue[index]
            if waiter.future.done():
                index += 1  # expired or cancelled: leaves the queue by itself
                continue
            if waiter.prefer is not None:
                if self.can_prefer(waiter.prefer):
                    slot = self._slot_on(waiter.prefer)
                    if slot is None:
                        index += 1  # waits for its own backend; the ones behind may be served
                        continue
                    self._unqueue(waiter)
                    waiter.future.set_result(slot)
                    continue
                waiter.prefer = None  # its backend went away: any will do
            exclude = full.union(waiter.exclude) if full else waiter.exclude
            slot = self._pick_slot(exclude, full)
            if slot is None:
                if not waiter.exclude:
                    break  # every ready backend is full in the node: nobody behind gets one either
                index += 1  # all its candidates excluded; the ones behind may still be served
                continue
            self._unqueue(waiter)
            waiter.future.set_result(slot)
        if queue and self.node is not None:
            self._arm_node_poll()

    def _arm_node_poll(self) -> None:
        if self._node_poll is None:
            self._node_poll = asyncio.get_running_loop().call_later(NODE_POLL, self._node_poll_due)

    def _node_poll_due(self) -> None:
        self._node_poll = None
        self.dispatch_waiters()

    def stats(self) -> dict:
        stats = {"load": self.load.as_dict(), "queued": self.queued.as_dict(), "dropped": self.dropped,
                 "cache": self.cache_store.stats()}
        if self.shaper is not None:
            stats["buckets"] = self.shaper.stats()
            stats["bucket_tokens"] = self.shaper.tokens()
        return stats
