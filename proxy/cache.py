"""The response cache of one director in one process (SPEC §15): stored objects in least
recently used order within `cache_max_size`, the updates in flight that other requests wait
for, and the figures the API reports. What is stored and for how long is proxy.cache_policy's
business; the request path is proxy.cache_flow.

An object is one response (status, headers, body) per key and per Vary variant: the values
of the request headers the stored response's `Vary` names (the names of the last response
stored for the key; when they change, the key's older variants go).
"""
from __future__ import annotations

import asyncio
from collections import OrderedDict
from time import monotonic

from proxy import cache_policy
from proxy.runtime import DirectorSettings

NEVER_FRESH = float("-inf")


class CachedObject:
    """One stored response. `expires` is a time.monotonic() value; a purge sets it to
    NEVER_FRESH (the object stays, stale, for shadow delivery)."""

    __slots__ = ("status", "headers", "body", "stored_at", "expires", "age", "etag", "last_modified", "size")

    def __init__(self, status: int, headers: list, body: bytes, ttl: float, age: float = 0.0,
                 now: float | None = None):
        self.status = status
        self.headers = headers
        self.body = body
        self.stored_at = monotonic() if now is None else now
        self.expires = self.stored_at + ttl
        self.age = age  # the Age the backend's response already had
        self.etag = cache_policy.header(headers, b"etag")
        self.last_modified = cache_policy.header(headers, b"last-modified")
        self.size = len(body) + cache_policy.head_size(headers)

    def fresh(self, now: float) -> bool:
        return now < self.expires

    def age_at(self, now: float) -> int:
        return int(self.age + now - self.stored_at)


class Update:
    """A request fetching an object from a backend; others wait for it instead of going
    upstream. `wait()` returns True when it stored an object."""

    __slots__ = ("_done", "stored")

    def __init__(self):
        self._done = asyncio.Event()
        self.stored = False

    async def wait(self) -> bool:
        await self._done.wait()
        return self.stored

    def finish(self, stored: bool) -> None:
        self.stored = stored
        self._done.set()


class ResponseCache:
    """Objects, updates in flight and counters of one director's cache."""

    def __init__(self):
        self.objects: OrderedDict[tuple[bytes, tuple], CachedObject] = OrderedDict()  # LRU first
        self.vary: dict[bytes, tuple[bytes, ...]] = {}  # key -> names the stored variants vary on
        self.variants: dict[bytes, set[tuple]] = {}  # key -> stored variants
        self.updates: dict[tuple[bytes, tuple], Update] = {}
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.shadow = 0
        self.max_size = 0
        self.max_body = 0
        self.default_ttl = 0.0
        self.key_parts: tuple = ()
        self._pattern: str | None = None

    def configure(self, settings: DirectorSettings) -> None:
        """Apply the director's settings (on every reload): a new key pattern or a disabled
        cache drops every object; a smaller size evicts. The counters stay (monotonic)."""
        if not settings.cache_enabled or settings.cache_key != self._pattern:
            self.clear()
            self._pattern = settings.cache_key
            self.key_parts = cache_policy.compile_key(settings.cache_key)
        self.max_size = settings.cache_max_size
        self.max_body = settings.cache_max_size // 8
        self.default_ttl = settings.cache_default_ttl
        self._evict()

    def clear(self) -> None:
        self.objects.clear()
        self.vary.clear()
        self.variants.clear()
        self.bytes = 0

    # -- lookups --------------------------------------------------------------------------
    def key(self, scheme: bytes, host: bytes, target: bytes) -> bytes:
        path, _, query = target.partition(b"?")
        return cache_policy.make_key(self.key_parts, scheme, host.lower(), path, query)

    def variant_for(self, key: bytes, request_headers) -> tuple:
        """The variant of `key` a request with these headers asks for."""
        names = self.vary.get(key)
        return cache_policy.variant(request_headers, names) if names else ()

    def find(self, key: bytes, variant: tuple) -> CachedObject | None:
        """The stored object (fresh or stale), now the most recently used."""
        slot = (key, variant)
        found = self.objects.get(slot)
        if found is not None:
            self.objects.move_to_end(slot)
        return found

    # -- updates --------------------------------------------------------------------------
    def update_in_flight(self, key: bytes, variant: tuple) -> Update | None:
        return self.updates.get((key, variant))

    def begin_update(self, key: bytes, variant: tuple) -> Update:
        update = self.updates[(key, variant)] = Update()
        return update

    def end_update(self, key: bytes, variant: tuple, update: Update, stored: bool) -> None:
        """Wake the requests waiting for `update` (idempotent)."""
        if self.updates.get((key, variant)) is update:
            del self.updates[(key, variant)]
        if not update._done.is_set():
            update.finish(stored)

    # -- storing --------------------------------------------------------------------------
    def store(self, key: bytes, names: tuple[bytes, ...], variant: tuple, obj: CachedObject) -> bool:
        """Keep `obj` as the variant of `key` (varying on header `names`); False when it is
        too large to keep."""
        if obj.size > self.max_size or len(obj.body) > self.max_body:
            return False
        if self.vary.get(key, names) != names:
            self._drop_key(key)  # the response varies on other headers now
        self.vary[key] = names
        slot = (key, variant)
        old = self.objects.pop(slot, None)
        if old is not None:
            self.bytes -= old.size
        self.objects[slot] = obj
        self.variants.setdefault(key, set()).add(variant)
        self.bytes += obj.size
        self._evict()
        return slot in self.objects

    def purge(self, key: bytes) -> int:
        """Mark every variant of `key` stale; returns how many there were."""
        variants = self.variants.get(key, ())
        for variant in variants:
            self.objects[(key, variant)].expires = NEVER_FRESH
        return len(variants)

    def _evict(self) -> None:
        objects = self.objects
        while self.bytes > self.max_size and objects:
            (key, variant), obj = objects.popitem(last=False)
            self._forget(key, variant, obj)

    def _drop_key(self, key: bytes) -> None:
        for variant in list(self.variants.get(key, ())):
            self._forget(key, variant, self.objects.pop((key, variant)))

    def _forget(self, key: bytes, variant: tuple, obj: CachedObject) -> None:
        self.bytes -= obj.size
        variants = self.variants[key]
        variants.discard(variant)
        if not variants:
            del self.variants[key]
            del self.vary[key]

    def stats(self) -> dict:
        return {"objects": len(self.objects), "bytes": self.bytes, "hits": self.hits, "misses": self.misses,
                "shadow": self.shadow}
