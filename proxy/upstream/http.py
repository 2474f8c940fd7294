"""Director's HTTP/1.1 upstream client: keep-alive pooled connections
(proxy.upstream.http_connection), the responses read from them, and request heads.
"""
from __future__ import annotations

import asyncio
from typing import Any, Coroutine

from proxy.addresses import format_host
from proxy.errors import ConnectionClosed, StaleConnection
from proxy.upstream.base import BODY_METHODS, IDEMPOTENT, Timeouts, Upstream, UpstreamRequest, UpstreamResponse
from proxy.upstream.connect import open_connection
from proxy.upstream.http_connection import HTTPConnection
from proxy.upstream.http_parser import ResponseHead
from proxy.upstream.pool import IDLE_TIMEOUT, ConnectionPool

HTTP11_LINE_END = b" HTTP/1.1\r\n"
FIELD_SEP = b": "
CRLF = b"\r\n"
CONNECTION_CLOSE = b"connection: close\r\n"


class HTTPResponse(UpstreamResponse):
    __slots__ = ("status", "headers", "_conn", "_pool", "_released")

    def __init__(self, head: ResponseHead, conn: HTTPConnection, pool: ConnectionPool):
        self.status = head.status
        self.headers = head.headers
        self._conn = conn
        self._pool = pool
        self._released = False

    def read(self) -> Coroutine[Any, Any, bytes]:
        """The connection's own `read()` (no coroutine of this layer in between)."""
        if self._released:
            return _nothing()
        return self._conn.read()

    def ready(self) -> bytes | None:
        return b"" if self._released else self._conn.ready()

    @property
    def body_complete(self) -> bool:
        return self._released or self._conn.body_complete

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self._conn.finish():
            self._pool.release(self._conn)
        else:
            self._pool.discard(self._conn)

    async def abort(self, notify: bool = False) -> None:
        if self._released:
            return
        self._released = True
        self._conn.finish()
        self._pool.discard(self._conn)


async def _nothing() -> bytes:
    return b""


class UpgradeResponse(HTTPResponse):
    """The answer to an upgrade request, on a connection of its own that is never pooled:
    a 101 is `detach()`ed into a tunnel, any other answer is relayed and closed."""

    __slots__ = ()

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._conn.finish()
            self._conn.close()

    async def abort(self, notify: bool = False) -> None:
        self.release()

    def detach(self, protocol: asyncio.Protocol) -> tuple[asyncio.Transport, bytes, bool]:
        """(transport, bytes after the 101, whether the backend has closed already)."""
        self._released = True
        transport, early = self._conn.detach(protocol)
        return transport, early, self._conn.lost


class HTTPUpstream(Upstream):
    def __init__(self, address, *, max_idle: int = 64, idle_timeout: float = IDLE_TIMEOUT):
        super().__init__(address)
        # Host of a request that came without one (HTTP/1.0): the backend's address.
        authority = "localhost" if address.path is not None else f"{format_host(address.host)}:{address.port}"
        self._host_field = b"host: %s\r\n" % authority.encode("ascii")
        self._pool = ConnectionPool(self._connect, max_idle=max_idle, idle_timeout=idle_timeout)

    async def _connect(self, timeout: float) -> HTTPConnection:
        loop = asyncio.get_running_loop()
        _, conn = await open_connection(self.address, lambda: HTTPConnection(loop), timeout)
        return conn

    async def send(self, request: UpstreamRequest, timeouts: Timeouts, *, fresh: bool = False,
                   notify_abort: bool = False) -> UpstreamResponse:
        head = request_head(request, fresh, self._host_field)
        head_request = request.method == "HEAD"
        conn = None if fresh else self._pool.take_idle()
        if conn is not None:
            reused = True
        else:
            conn, reused = await self._pool.acquire(timeouts.connect, fresh=fresh)
        if reused and request.method not in IDEMPOTENT:
            # Two loop turns first (the first may run before this turn's I/O callbacks, on
            # asyncio and uvloop alike): a FIN the kernel already holds (the backend closed
            # the idle connection a moment ago) is seen before a request that must not be
            # re-sent goes into it. Idempotent requests skip this: they are re-sent anyway.
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            if conn.is_closing():
                self._pool.discard(conn)
                conn, reused = await self._pool.acquire(timeouts.connect, reuse=False)
        served = conn.served
        try:
            response_head = await conn.exchange(head, request.body, timeouts, head_request)
        except ConnectionClosed as exc:
            self._pool.discard(conn)
            sent = conn.served > served  # False: found closed before a byte was written
            if not reused or (sent and conn.received_any):
                raise
            if sent and request.method not in IDEMPOTENT:
                # A stale keep-alive connection, most likely, but the backend may have read
                # and processed the request before closing: not sent twice (as Go's and
                # urllib3's clients), and not the backend's health's business either.
                raise StaleConnection(f"reused connection closed before the response: {exc}") from None
            conn, _ = await self._pool.acquire(timeouts.connect, reuse=False)
            try:
                response_head = await conn.exchange(head, request.body, timeouts, head_request)
            except BaseException:
                self._pool.discard(conn)
                raise
        except BaseException:
            self._pool.discard(conn)
            raise
        return HTTPResponse(response_head, conn, self._pool)

    async def open_upgrade(self, request: UpstreamRequest, timeouts: Timeouts) -> UpgradeResponse:
        """Send an upgrade request (its headers carry Upgrade and Connection) on a new
        connection of its own and return the backend's answer, a 101 or any other."""
        conn = await self._connect(timeouts.connect)
        try:
            head = await conn.exchange(request_head(request, False, self._host_field), request.body, timeouts, False,
                                       upgrade=True)
        except BaseException:
            conn.close()
            raise
        return UpgradeResponse(head, conn, self._pool)

    async def close(self) -> None:
        await self._pool.close()

    def stats(self) -> dict:
        return self._pool.stats()


def request_head(request: UpstreamRequest, close: bool = False, host_field: bytes = b"") -> bytes:
    """The request line, the caller's final fields and our own framing, as bytes;
    `host_field` is sent when the request has no Host (HTTP/1.1 requires one)."""
    parts = [request.method.encode("ascii"), b" ", request.target, HTTP11_LINE_END]
    if not request.host:
        parts.append(host_field)
    for name, value in request.headers:
        parts += (name, FIELD_SEP, value, CRLF)
    length = request.body.length
    if length or request.method in BODY_METHODS:
        parts.append(b"content-length: %d\r\n" % length)
    if close:
        parts.append(CONNECTION_CLOSE)
    parts.append(CRLF)
    return b"".join(parts)
