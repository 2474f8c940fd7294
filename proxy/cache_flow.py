"""A request through a director whose cache is on (SPEC §15): PURGE, hits, 304s, the updater
and the requests that wait for it, and shadow delivery in place of the director's own
502/503/504. proxy.app calls `CacheFlow.pass_request` only when `director.cache` is set, so a
director without a cache pays one attribute check.

A miss or a stale object makes the request the updater: it goes to a backend without its
conditional headers, and the response is collected while it is relayed (proxy.relay streams
it as usual: `_Watched` sees the chunks go by) and stored the moment its last byte has been
read. Requests for the same object that arrive meanwhile wait for that moment and are
answered from the stored copy; when the response cannot be stored (or the update fails, or
its client goes away) they are woken at once and go to a backend themselves, without the
cache. Each request is proxied at most once.
"""
from __future__ import annotations

import ipaddress
import logging
from time import monotonic

from proxy import cache_policy
from proxy.cache import CachedObject, ResponseCache, Update
from proxy.director import DirectorRuntime
from proxy.request_record import RequestRecord
from proxy.responses import respond
from proxy.sticky import StickySession
from proxy.upstream import UpstreamRequest, UpstreamResponse

log = logging.getLogger("director.proxy")

HIT, MISS, STALE, SHADOW = b"hit", b"miss", b"stale", b"shadow"
SHADOW_HEADERS = ((b"x-director-cache", b"shadow"),)
MAX_WAITS = 3  # updates a request waits for (a new Vary may name another variant) before going on its own


class CacheFlow:
    """The cache's part of the request path; `dispatcher` (proxy.dispatch) does the rest."""

    def __init__(self, dispatcher):
        self.dispatcher = dispatcher
        # announce(director name, key): tell the node's other processes of a PURGE (proxy.cache_purge)
        self.announce_purge = None

    async def pass_request(self, director: DirectorRuntime, request: UpstreamRequest, send,
                           record: RequestRecord, sticky: StickySession | None = None) -> None:
        """`sticky` (proxy.sticky) goes with every request that reaches a backend."""
        cache = director.cache
        method = request.method
        if method == "PURGE":
            await self._purge(director, request, send)
            return
        if method not in ("GET", "HEAD") or not director.settings.enabled or \
                cache_policy.header(request.headers, b"authorization") is not None:
            # A disabled director answers 503 to everything (SPEC §5), stored objects or not.
            await self.dispatcher.pass_request(director, request, send, None, record, sticky)
            return
        key = cache.key(b"https" if request.https else b"http", request.host.encode("latin-1"), request.target)
        shadow = _Shadow(self, director, key, request)
        if not director.settings.cache_deliver_active:
            # Never answered from the cache while a backend can answer; stored for shadow delivery.
            await self._fetch(director, key, request, send, record, shadow, sticky, MISS, store=True)
            return
        stale = None
        waited_since = None  # stored since this request began to wait: its answer, fresh or not (max-age=0)
        for _ in range(MAX_WAITS):
            variant = cache.variant_for(key, request.headers)
            stale = cache.find(key, variant)
            if stale is not None and (stale.fresh(monotonic()) or
                                      (waited_since is not None and stale.stored_at >= waited_since)):
                cache.hits += 1
                await self.serve(director, stale, request, send, HIT)
                return
            update = cache.update_in_flight(key, variant)
            if update is None:
                break
            waited_since = monotonic()
            if not await update.wait():
                await self._fetch(director, key, request, send, record, shadow, sticky, MISS, store=False)
                return
        else:
            await self._fetch(director, key, request, send, record, shadow, sticky, MISS, store=False)
            return
        label = MISS if stale is None else STALE
        if method == "HEAD":  # a HEAD response has no body to store: it does not update
            await self._fetch(director, key, request, send, record, shadow, sticky, label, store=False)
            return
        update = cache.begin_update(key, variant)
        try:
            upstream = _for_update(request)
            await self._fetch(director, key, upstream, send, record, shadow, sticky, label, store=True, update=(variant, update))
        finally:
            cache.end_update(key, variant, update, stored=False)  # no-op once stored

    async def _fetch(self, director: DirectorRuntime, key: bytes, request: UpstreamRequest, send, record,
                     shadow: "_Shadow", sticky: StickySession | None, label: bytes, *, store: bool,
                     update: tuple[tuple, Update] | None = None) -> None:
        """To a backend, with shadow delivery instead of the director's own errors; the
        response is labelled and, with `store`, collected and stored when storable."""
        fill = _Fill(director.cache, key, request, label, store, update)
        await self.dispatcher.pass_request(director, request, send, None, record, sticky, shadow=shadow, watch=fill.watch)

    async def serve(self, director: DirectorRuntime, obj: CachedObject, request: UpstreamRequest, send,
                    label: bytes, extra: tuple = ()) -> None:
        """Answer from a stored object: a 304 when the request's validators match it."""
        if (obj.etag is not None or obj.last_modified is not None) and \
                cache_policy.not_modified(request.headers, obj.etag, obj.last_modified):
            status, body = 304, b""
            headers = [(n, v) for n, v in obj.headers if n in cache_policy.NOT_MODIFIED_HEADERS]
        else:
            status, body = obj.status, obj.body
            headers = list(obj.headers)
            if status != 204:
                headers.append((b"content-length", b"%d" % len(body)))
        headers = self.dispatcher.rules.response(headers)
        headers.append((b"x-cache-lookup", label))
        headers.append((b"age", b"%d" % obj.age_at(monotonic())))
        headers.extend(extra)
        director.status_counts[status // 100] += 1
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if request.method == "HEAD" else body,
                    "more_body": False})

    async def _purge(self, director: DirectorRuntime, request: UpstreamRequest, send) -> None:
        """PURGE marks the key's objects stale: 200 when there were any, 404 when not; only
        from loopback or a trusted proxy (405 for anyone else)."""
        client_ip = request.client[0] if request.client else ""
        if not (_loopback(client_ip) or self.dispatcher.rules.trusted.contains(client_ip)):
            await respond(send, 405)
            return
        cache = director.cache
        key = cache.key(b"https" if request.https else b"http", request.host.encode("latin-1"), request.target)
        purged = cache.purge(key)
        log.info("cache purge %r: %d object(s)", key, purged)
        if self.announce_purge is not None:
            self.announce_purge(director.name, key)
        await respond(send, 200 if purged else 404)


class _Shadow:
    """Shadow delivery for one request, called by the dispatcher where it would answer
    502/503/504 itself: True when a stored object (fresh or stale) answered instead. Not
    for a disabled director (that 503 is the operator's decision)."""

    __slots__ = ("flow", "director", "key", "request")

    def __init__(self, flow: CacheFlow, director: DirectorRuntime, key: bytes, request: UpstreamRequest):
        self.flow = flow
        self.director = director
        self.key = key
        self.request = request

    async def __call__(self, send) -> bool:
        director = self.director
        settings = director.settings
        cache = director.cache
        if cache is None or not settings.cache_deliver_shadow or not settings.enabled:
            return False
        obj = cache.find(self.key, cache.variant_for(self.key, self.request.headers))
        if obj is None:
            return False
        cache.shadow += 1
        await self.flow.serve(director, obj, self.request, send, SHADOW, SHADOW_HEADERS)
        return True


class _Fill:
    """The response of one request that went to a backend through the cache: labels it,
    and collects its body for storing when `store` and the head allows it."""

    __slots__ = ("cache", "key", "request", "label", "store", "update", "chunks", "size", "response")

    def __init__(self, cache: ResponseCache, key: bytes, request: UpstreamRequest, label: bytes, store: bool,
                 update: tuple[tuple, Update] | None):
        self.cache = cache
        self.key = key
        self.request = request
        self.label = label
        self.store = store
        self.update = update
        self.chunks: list[bytes] = []
        self.size = 0
        self.response: UpstreamResponse | None = None

    def watch(self, response: UpstreamResponse, first: bytes) -> UpstreamResponse:
        """The response relay() gets (the dispatcher calls this once the head is here)."""
        cache = self.cache
        cache.misses += 1
        collecting = self.store and self.request.method == "GET" and \
            cache_policy.storable(response.status, response.headers, cache.max_body)
        watched = _Watched(response, self.label, self if collecting else None)
        if not collecting:
            self._given_up()
        else:
            self.response = response
            if not first:  # first_chunk() returns b"" only for an empty body, read to its end
                self.complete()
            else:
                watched.collect(first)
        return watched

    def add(self, chunk: bytes) -> bool:
        """Collect a chunk; False (and nothing kept) once the body is over the limit."""
        self.size += len(chunk)
        if self.size > self.cache.max_body:
            self.chunks = []
            self._given_up()
            return False
        self.chunks.append(chunk)
        return True

    def complete(self) -> None:
        """The whole body was read: store the object and wake the waiters."""
        response = self.response
        headers = response.headers
        names = cache_policy.vary_names(headers) or ()
        obj = CachedObject(response.status, cache_policy.stored_headers(headers), b"".join(self.chunks),
                           cache_policy.lifetime(headers, self.cache.default_ttl), cache_policy.initial_age(headers))
        self.chunks = []
        stored = self.cache.store(self.key, names, cache_policy.variant(self.request.headers, names), obj)
        if self.update is not None:
            variant, update = self.update
            self.cache.end_update(self.key, variant, update, stored)

    def _given_up(self) -> None:
        """Not stored: the waiters go to a backend now rather than after this body."""
        if self.update is not None:
            variant, update = self.update
            self.cache.end_update(self.key, variant, update, stored=False)


class _Watched(UpstreamResponse):
    """An upstream response as relay() reads it, labelled with X-Cache-Lookup, its body
    chunks handed to a `_Fill` as they pass (none when nothing is to be stored)."""

    __slots__ = ("_response", "_fill", "status", "headers")

    def __init__(self, response: UpstreamResponse, label: bytes, fill: _Fill | None):
        self._response = response
        self._fill = fill
        self.status = response.status
        self.headers = [field for field in response.headers if field[0] not in cache_policy.OWN_HEADERS]
        self.headers.append((b"x-cache-lookup", label))

    def collect(self, chunk: bytes) -> None:
        if not self._fill.add(chunk):
            self._fill = None

    async def read(self) -> bytes:
        chunk = await self._response.read()
        fill = self._fill
        if fill is not None:
            if chunk:
                self.collect(chunk)
            else:
                self._fill = None
                fill.complete()
        return chunk

    @property
    def body_complete(self) -> bool:
        return self._response.body_complete

    def release(self) -> None:
        self._response.release()

    async def abort(self, notify: bool = False) -> None:
        await self._response.abort(notify)


def _for_update(request: UpstreamRequest) -> UpstreamRequest:
    headers = request.headers
    if not any(name in cache_policy.UPDATE_DROPS for name, _ in headers):
        return request
    return UpstreamRequest(request.method, request.target, cache_policy.for_update(headers), request.body,
                           request.client, request.server, request.https, request.http_version, request.host,
                           request.document_root, request.script_filename)


def _loopback(ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)
