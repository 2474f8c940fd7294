"""The open WebSocket: bytes both ways between a client and a backend, after the backend's 101.

Design: a byte tunnel, not a WebSocket library. Director takes no part in the conversation:
subprotocols and extensions (permessage-deflate and its RSV bits) are negotiated by the two
ends, so frames must pass unchanged; decoding and re-encoding them with `websockets` or
`wsproto` would mean negotiating extensions ourselves (or refusing them), unmasking and
re-masking every payload, and copying each message twice more. The tunnel only reads frame
headers (proxy.websocket_frames.FrameReader, a few integer operations per frame): on the
client's side to enforce `websocket_max_message` (close 1009), on both sides to know where a
close frame of our own may go (idle timeout, shutdown). Payload bytes are forwarded as they
arrive, in the chunks the sockets give, with no copy but the one the transports make.

Back-pressure both ways: a backend that does not read pauses reading from the client (its
transport's pause_writing), a client that does not read pauses reading from the backend
(the tunnel is the client transport's push producer). `idle_timeout` seconds with no byte
either way close both sides; so does `close()` (shutdown) with 1001 where a frame boundary
allows it. Each side's close is passed on to the other; a side that does not finish closing
within CLOSE_GRACE is aborted.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from twisted.protocols.policies import ProtocolWrapper

from proxy.websocket_frames import GOING_AWAY, MESSAGE_TOO_BIG, FrameReader, close_frame

log = logging.getLogger("director.proxy")

CLOSE_GRACE = 10.0  # seconds a closing side gets to flush and close before it is aborted
MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class WebSocketLimits:
    """`[proxy] websocket_idle_timeout` (seconds) and `websocket_max_message` (bytes)."""

    idle_timeout: float = 3600.0
    max_message: int = 16 * MiB


class ClientSide:
    """The Twisted protocol on the client's connection once it is handed over (and that
    transport's push producer)."""

    transport = None

    def __init__(self, tunnel: Tunnel):
        self.tunnel = tunnel

    def makeConnection(self, transport) -> None:
        self.transport = transport

    def dataReceived(self, data: bytes) -> None:
        self.tunnel.from_client(data)

    def connectionLost(self, reason) -> None:
        self.tunnel.client_lost()

    def pauseProducing(self) -> None:
        self.tunnel.pause_backend(True)

    def resumeProducing(self) -> None:
        self.tunnel.pause_backend(False)

    def stopProducing(self) -> None:
        """connectionLost follows."""


class BackendSide(asyncio.Protocol):
    """The asyncio protocol on the backend connection once the 101 has been read."""

    def __init__(self, tunnel: Tunnel):
        self.tunnel = tunnel

    def data_received(self, data: bytes) -> None:
        self.tunnel.from_backend(data)

    def eof_received(self) -> bool:
        return False  # close: a WebSocket has no use for half-closed connections

    def connection_lost(self, exc: Exception | None) -> None:
        self.tunnel.backend_lost()

    def pause_writing(self) -> None:
        self.tunnel.pause_client(True)

    def resume_writing(self) -> None:
        self.tunnel.pause_client(False)


class Tunnel:
    """One WebSocket's two connections. `start()` them, then await `done` (see _check_done)."""

    def __init__(self, limits: WebSocketLimits, what: str):
        self.loop = asyncio.get_running_loop()
        self.limits = limits
        self.what = what  # for the log: "director NAME backend NAME" or the road warrior's URL
        self.client = ClientSide(self)
        self.backend = BackendSide(self)
        self.done: asyncio.Future = self.loop.create_future()
        self._to_backend = FrameReader(limits.max_message)
        self._to_client = FrameReader()
        self._backend_transport: asyncio.Transport | None = None
        self._client_open = self._backend_open = True
        self._closing = False  # we sent (or gave up sending) our own close: nothing more is relayed
        self._client_closing = False  # our side of the client connection is shut
        self._last = self.loop.time()
        self._idle_timer: asyncio.TimerHandle | None = None
        self._timers: list[asyncio.TimerHandle] = []  # CLOSE_GRACE aborts

    def start(self, backend_transport: asyncio.Transport, from_backend: bytes, from_client: bytes) -> None:
        """Both sides are attached: relay what each sent before, then what comes."""
        self._backend_transport = backend_transport
        self._idle_timer = self.loop.call_at(self._last + self.limits.idle_timeout, self._idle_check)
        if from_backend:
            self.from_backend(from_backend)
        if from_client:
            self.from_client(from_client)

    # -- relaying ----------------------------------------------------------------------

    def from_client(self, data: bytes) -> None:
        if self._closing:
            return
        self._last = self.loop.time()
        reader = self._to_backend
        out = reader.feed(data)
        if out:
            self._backend_transport.write(out)
        if reader.too_big:
            log.info("websocket %s: a client message over %d bytes: closing with 1009", self.what, reader.limit)
            self.close(MESSAGE_TOO_BIG, "message too big")

    def from_backend(self, data: bytes) -> None:
        if self._closing:
            return
        self._last = self.loop.time()
        out = self._to_client.feed(data)
        if out:
            self.client.transport.write(out)

    def pause_backend(self, paused: bool) -> None:
        """The client's send buffer is full (or drained): stop (resume) reading the backend."""
        transport = self._backend_transport
        if transport is not None and self._backend_open and not transport.is_closing():
            transport.pause_reading() if paused else transport.resume_reading()

    def pause_client(self, paused: bool) -> None:
        """The backend's send buffer is full (or drained): stop (resume) reading the client."""
        if self._client_open:
            transport = self.client.transport
            transport.pauseProducing() if paused else transport.resumeProducing()

    # -- closing -----------------------------------------------------------------------

    def client_lost(self) -> None:
        if not self._client_open:
            return
        self._client_open = False
        if self._backend_open:
            self._close_backend()
        self._check_done()

    def backend_lost(self) -> None:
        if not self._backend_open:
            return
        self._backend_open = False
        if self._client_open:
            self._close_client()
        self._check_done()

    def close(self, code: int = GOING_AWAY, reason: str = "") -> None:
        """End the WebSocket from here: a close frame with `code` to each side that is at a
        frame boundary (else no frame: one cut in two would be worse), then close both."""
        if self._closing:
            return
        self._closing = True
        if self._client_open:
            if self._to_client.at_boundary:
                self.client.transport.write(close_frame(code, reason, masked=False))
            self._close_client()
        if self._backend_open:
            if self._to_backend.at_boundary:
                self._backend_transport.write(close_frame(code, reason, masked=True))
            self._close_backend()

    def _close_client(self) -> None:
        """Send what is buffered, then close our side; what the client still sends is read
        and dropped until it closes too (closing with unread bytes would reset the connection
        and could destroy our close frame before the client reads it)."""
        if self._client_closing:
            return
        transport = self.client.transport
        self._closing = self._client_closing = True
        if isinstance(transport, ProtocolWrapper):  # TLS: a TCP half-close would skip its close_notify
            transport.loseConnection()
        else:
            transport.loseWriteConnection()
        self._timers.append(self.loop.call_later(CLOSE_GRACE, self._abort_client))

    def _close_backend(self) -> None:
        self._backend_transport.close()
        self._timers.append(self.loop.call_later(CLOSE_GRACE, self._abort_backend))

    def _abort_client(self) -> None:
        if self._client_open:
            self.client.transport.abortConnection()

    def _abort_backend(self) -> None:
        if self._backend_open:
            self._backend_transport.abort()

    def _idle_check(self) -> None:
        idle_until = self._last + self.limits.idle_timeout
        if self.loop.time() < idle_until:
            self._idle_timer = self.loop.call_at(idle_until, self._idle_check)
            return
        self._idle_timer = None
        log.info("websocket %s: idle for %gs: closing", self.what, self.limits.idle_timeout)
        self.close(GOING_AWAY, "idle timeout")

    def _check_done(self) -> None:
        """`done` once the backend connection is closed and the client's is closed or
        closing: the backend's slot is free then, even while a client that ignores our close
        lingers (its CLOSE_GRACE abort stays armed until it is gone)."""
        if self._backend_open or (self._client_open and not self._closing):
            return
        if not self.done.done():
            self.done.set_result(None)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if not self._client_open:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
