"""One HTTP/1.1 connection to a backend: the asyncio.Protocol behind proxy.upstream.http.

Per request there is one head future and, only for bodies larger than SMALL_BODY, one writer
task; a small body goes out with the head in a single write. Deadlines are kept by one timer
per connection, re-checked when it fires and armed only when none is pending: an exchange
that ends leaves it to fire (it finds nothing to do and stops), and the next exchange on the
connection, usually a moment later, finds it still armed. The response body is
buffered up to READ_HIGH bytes, then the transport stops reading until `read()` drains it.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import cast

from proxy.errors import ConnectionClosed, ReadTimeout, UpstreamError, WriteTimeout
from proxy.upstream.base import RequestBody, Timeouts
from proxy.upstream.http_parser import ResponseHead, ResponseParser

READ_HIGH = 256 * 1024  # pause reading the backend above this many unread body bytes
READ_LOW = 64 * 1024  # resume below this
SMALL_BODY = 64 * 1024  # written together with the head, no writer task


class HTTPConnection(asyncio.Protocol):
    """One backend connection; carries one request at a time (see `exchange`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.reusable = False
        self.lost = False  # connection_lost has been called
        self.served = 0  # requests started on this connection
        self._parser = ResponseParser(self)
        self._closed = False
        self._active = False
        self._reading_paused = False  # transport flow-control states outlive an exchange
        self._writing_paused = False
        self._body: deque[bytes] = deque()  # unread response body chunks
        self._timer: asyncio.TimerHandle | None = None  # outlives exchanges (see the module's doc)
        self._reset()

    def _reset(self) -> None:
        self._head_waiter: asyncio.Future | None = None
        self._body.clear()
        self._buffered = 0
        self._complete = False
        self._error: UpstreamError | None = None
        self._body_waiter: asyncio.Future | None = None
        self._drain_waiter: asyncio.Future | None = None
        self._writer: asyncio.Task | None = None
        self._write_done = True

    # -- the pool's view -------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closed or self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        self._closed = True
        if self._active:
            self._fail(ConnectionClosed("connection closed by the proxy"))
        self._close_transport()

    def _close_transport(self) -> None:
        """Close now: unsent request bytes are dropped, not flushed to a backend that may
        never read them (which would keep the transport open forever)."""
        transport = self.transport
        if transport is not None:
            if transport.get_write_buffer_size():
                transport.abort()
            else:
                transport.close()

    @property
    def received_any(self) -> bool:
        """Any byte of the current response arrived."""
        return self._parser.received

    # -- one exchange ------------------------------------------------------------------------

    async def exchange(self, head: bytes, body: RequestBody, timeouts: Timeouts, head_request: bool,
                       upgrade: bool = False) -> ResponseHead:
        """Send a request and wait for the final response head (`upgrade`: a 101 is one)."""
        if self._closed or self.transport.is_closing():
            raise ConnectionClosed("connection closed by backend while idle")
        self._active = True
        self.served += 1
        self._timeouts = timeouts
        self._parser.start(head_request, upgrade)
        self._head_waiter = waiter = self._loop.create_future()
        now = self._loop.time()
        self._last_read = self._last_write = now
        if body.length <= SMALL_BODY:
            self.transport.write(head + body.read_all() if body.length else head)
            deadline = now + (timeouts.write if self._writing_paused else timeouts.read)
        else:
            self.transport.write(head)
            self._write_done = False
            self._writer = self._loop.create_task(self._write_body(body))
            deadline = now + timeouts.write
        timer = self._timer
        if timer is None or timer.when() > deadline:  # a pending one that fires by then re-arms
            if timer is not None:  # (another director's longer timeouts, on a shared pool)
                timer.cancel()
            self._timer = self._loop.call_at(deadline, self._on_timer)
        return await waiter

    async def _write_body(self, body: RequestBody) -> None:
        """Write a large body respecting flow control; a stall is caught by the timer."""
        try:
            await self._write_chunks(body)
        except OSError as exc:  # the spooled body could not be read back
            self._fail(UpstreamError(f"request body unreadable: {exc}"))

    async def _write_chunks(self, body: RequestBody) -> None:
        async for chunk in body.chunks():
            if self._closed or self._complete or self._error is not None:
                return
            self.transport.write(chunk)
            self._last_write = self._loop.time()
            if self._writing_paused:
                self._drain_waiter = self._loop.create_future()
                try:
                    await self._drain_waiter
                finally:
                    self._drain_waiter = None
        if not self._closed:
            self._write_done = True
            self._last_read = max(self._last_read, self._loop.time())

    def _on_timer(self) -> None:
        self._timer = None
        if not self._active or self._complete or self._error is not None:
            return
        now = self._loop.time()
        timeouts = self._timeouts
        if self._head_waiter is not None and not self._head_waiter.done() and (not self._write_done or self._writing_paused):
            deadline = self._last_write + timeouts.write
            if now >= deadline:
                self._fail(WriteTimeout(f"backend accepted no request bytes for {timeouts.write:g}s"))
                return
        elif self._reading_paused:  # our consumer is slow, not the backend
            deadline = now + timeouts.read
        else:
            deadline = self._last_read + timeouts.read
            if now >= deadline:
                self._fail(ReadTimeout(f"no response bytes for {timeouts.read:g}s"))
                return
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _fail(self, error: UpstreamError) -> None:
        """The exchange failed: record the first error, close, wake whoever waits."""
        if self._error is None and not self._complete:
            self._error = error
        self.reusable = False
        self._closed = True
        self._stop_timer()
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
        self._close_transport()
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(self._error or error)
        self._wake()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _wake(self) -> None:
        waiter = self._body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def finish(self) -> bool:
        """End the exchange; True when the connection may carry another request."""
        self._active = False
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
        reusable = (
            self._complete and self._error is None and not self._body and self._write_done
            and self._parser.keep_alive and not self._parser.extra_data and not self.is_closing()
            and not self.transport.get_write_buffer_size()
        )
        if self._reading_paused and reusable:
            self._reading_paused = False
            self.transport.resume_reading()
        self._reset()
        self.reusable = reusable
        return reusable

    def detach(self, protocol: asyncio.Protocol) -> tuple[asyncio.Transport, bytes]:
        """After a 101: give the transport to `protocol` (which gets every later callback) and
        return it with the bytes that followed the 101 head. This object is done with it.
        When the backend closed before this (`lost`), `protocol` hears nothing more."""
        transport = self.transport
        early = b"".join(self._body)
        self._active = False
        self._stop_timer()
        self._reset()
        self._closed = True
        self.transport = None
        transport.set_protocol(protocol)
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        return transport, early

    # -- body consumption ----------------------------------------------------------------------

    @property
    def body_complete(self) -> bool:
        """The parser has seen the end of the body: what is left is buffered."""
        return self._complete

    def ready(self) -> bytes | None:
        """The buffered body bytes, b"" after the end, or None when `read()` must wait (or
        raise)."""
        body = self._body
        if body:
            chunk = body.popleft() if len(body) == 1 else b"".join(body)
            body.clear()
            self._buffered = 0
            if self._reading_paused and not self._closed:
                self._reading_paused = False
                self._last_read = self._loop.time()
                self.transport.resume_reading()
            return chunk
        return b"" if self._complete else None

    async def read(self) -> bytes:
        while True:
            chunk = self.ready()
            if chunk is not None:
                return chunk
            if self._error is not None:
                raise self._error
            self._body_waiter = self._loop.create_future()
            try:
                await self._body_waiter
            finally:
                self._body_waiter = None

    # -- parser sink ---------------------------------------------------------------------------

    def on_head(self, head: ResponseHead) -> None:
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(head)

    def on_body(self, data: bytes) -> None:
        self._body.append(data)
        self._buffered += len(data)
        if self._buffered > READ_HIGH and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()
        if self._body_waiter is not None:
            self._wake()

    def on_complete(self) -> None:
        self._complete = True
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()  # early answer: the rest of the body is not needed
        self._wake()

    # -- asyncio callbacks ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self._active:  # nothing is expected between responses
            self._closed = True
            self.transport.close()
            return
        self._last_read = self._loop.time()
        try:
            self._parser.feed(data)
        except UpstreamError as exc:
            self._fail(exc)

    def eof_received(self) -> bool:
        self._closed = True
        if self._active:
            try:
                self._parser.feed_eof()
            except UpstreamError as exc:
                self._fail(exc)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = self.lost = True
        if self._active and not self._complete and self._error is None:
            if exc is None:
                self.eof_received()
            else:
                self._fail(ConnectionClosed(f"connection to backend lost: {exc}"))
        self._stop_timer()
        self._wake()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._last_write = self._loop.time()
        self._wake()
