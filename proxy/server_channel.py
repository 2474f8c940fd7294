"""Director's HTTP/1.1 connection: parse limits, timeouts, closing and back-pressure.

Twisted parses HTTP for daphne; `DirectorChannel` (one per connection) closes the gaps
DESIGN.md lists under "daphne: what it does to a proxy": every parse failure (400, 413,
431, 408) gets a small plain-text answer and a lingering close instead of a dropped
connection; `header_timeout` runs from a request's first byte (swept by the server, no
per-request timer); and `drain()` makes the application wait while the client's send
buffer is full. The request objects (`proxy.server_protocol`) build on it. On a TLS
listener the same channel serves HTTP/1.1, and hands a connection whose client chose `h2`
by ALPN to `proxy.server_h2` at its first byte.
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import sys
import termios
import time
from typing import Callable

from daphne.http_protocol import HTTPFactory
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.web import http

from proxy.error_responses import closing_response
from proxy.headers import connection_tokens
from proxy.response_head import LF
from proxy.server_chunked import StrictChunkedDecoder
from proxy.server_head import simple_head
from proxy.twisted_compat import TwistedChannel, pending_write_bytes, take_buffered_input

logger = logging.getLogger("director.server")

HEAD_LIMIT = 16 * 1024  # request line + headers, CRLFs included
MAX_HEADERS = 500  # Twisted's default; more headers answer 431 like an oversized head
WRITE_HIGH_WATER = 256 * 1024  # send() waits while the transport buffers more than this
SEND_TIMEOUT = 60.0  # default: a blocked response whose client reads nothing this long is aborted
SEND_SETTLE = 0.5  # seconds (at most half send_timeout) after a response blocks before its
#                   pending bytes are counted: a client that reads nothing is cut after
#                   this plus send_timeout
_OUTQ = bytes(4)  # ioctl(TIOCOUTQ) buffer: an int
ABORT_AFTER = 10.0  # seconds a closing connection gets to flush before it is aborted
DRAIN_IDLE_GRACE = 1.0  # stopping: an idle keep-alive connection may still send one request

IDLE, HEAD, BODY, BUSY = "idle", "head", "body", "busy"  # DirectorChannel.phase values
HANDED_OVER = "handed over"  # the connection belongs to another protocol (a WebSocket tunnel)

CHANNEL_REJECTIONS = {status: closing_response(status) for status in (400, 408, 413, 431)}


class DirectorChannel(TwistedChannel):
    """One client connection; `factory` is a `ListenerFactory` naming the plane it serves.

    `phase` is IDLE (waiting for a request's first byte), HEAD (reading its head), BODY
    (reading its body) or BUSY (the application has it). `deadline` (monotonic seconds or
    None) is checked by `DirectorServer`'s sweep: past it, IDLE closes silently, HEAD or
    BODY answer 408, and BUSY (set only while a response waits on a full send buffer,
    for `send_timeout`) aborts the connection, which cancels the traffic app. An idle
    keep-alive connection thus lives `header_timeout`. Twisted's own idle timer is off:
    it restarts on every byte, which is exactly what a slowloris client exploits.
    """

    MAX_LENGTH = HEAD_LIMIT  # one line longer than this -> lineLengthExceeded -> 431
    totalHeadersSize = HEAD_LIMIT
    maxHeaders = MAX_HEADERS
    timeOut = None
    abortTimeout = ABORT_AFTER
    chunked_decoder = StrictChunkedDecoder

    phase = IDLE
    deadline: float | None = None
    closing = False
    lost = False
    scope_client = None
    scope_server = None
    scheme = "http"  # "https" over a TLS listener (the ASGI scope's scheme)
    writes_raw_head = True  # traffic requests write their head as bytes (proxy.response_head)
    socket_transport = None  # the TCP/UNIX transport under TLS (or the transport itself)
    negotiating = False  # TLS: the first data tells which protocol ALPN chose
    _host = None
    _peer = None
    _head_size = 0
    _header_count = 0  # header fields of the head being read
    write_blocked = False  # the transport paused us: its buffer is over WRITE_HIGH_WATER
    _write_waiter: asyncio.Future | None = None
    _pending_at_check: int | None = None
    _settling = False  # drain() began waiting: the first sweep past SEND_SETTLE counts

    def connectionMade(self):
        super().connectionMade()
        transport = self.transport
        if isinstance(transport, TLSMemoryBIOProtocol):
            self.scheme = "https"
            self.negotiating = self.factory.h2_protocol is not None
            transport = transport.transport
        self.socket_transport = transport
        transport.bufferSize = WRITE_HIGH_WATER
        peer, host = self.transport.getPeer(), self.transport.getHost()
        self._peer, self._host = peer, host  # Twisted asks for both on every request (a new
        # address object each time, and one getsockname()): once per connection is enough
        if isinstance(peer, (IPv4Address, IPv6Address)):
            self.scope_client = [peer.host, peer.port]
            self.scope_server = [host.host, host.port]
        self.deadline = self.factory.clock() + self.factory.header_timeout
        self.factory.server.channel_opened(self)

    def getHost(self):
        host = self._host
        return host if host is not None else super().getHost()

    def getPeer(self):
        peer = self._peer
        return peer if peer is not None else super().getPeer()

    def connectionLost(self, reason):
        self.lost = True
        self.deadline = None
        super().connectionLost(reason)
        self.factory.server.channel_closed(self)
        self._wake_writer()

    # -- reading the request head and body ---------------------------------------------

    def _start_head(self):
        self.phase = HEAD
        self.deadline = self.factory.clock() + self.factory.header_timeout

    def dataReceived(self, data):
        """Start the head timer on a request's first byte; never restart it per byte."""
        if self.closing:
            return
        if self.negotiating:
            self.negotiating = False
            if self.transport.negotiatedProtocol == b"h2":
                self._hand_over_to_h2(data)
                return
        if self.phase is IDLE:
            self._start_head()
            if self.persistent and not self.has_partial_line() and self._read_simple_head(data):
                return
        rest = self.parse_lines(data)  # an incomplete head line: a LF in it is a bare one
        if LF in rest and self.line_mode and not self.closing and b"\n" in rest.replace(b"\r\n", b""):
            self.reject(400)  # a head with bare-LF line ends never completes: refuse it now

    def _read_simple_head(self, data: bytes) -> bool:
        """The usual request, a complete head without a body in one read, read in one pass
        (proxy.server_head) and run at once, with the steps of the line parser's end of head
        and end of request that apply to it: persistence, an empty body. (Its others have
        nothing to do: no length to refuse, no Expect, no parser state to reset; Cookie is
        not parsed, as nothing reads Twisted's parse.) The request also keeps the checked,
        lower-cased fields as `parsed_fields`. False: the line parser reads `data`."""
        head = simple_head(data, HEAD_LIMIT, self.maxHeaders)
        if head is None:
            return False
        method, target, version, fields = head
        request = self.request_without_parser()
        request.parsed_fields = fields
        request.target_checked = True  # REQUEST_LINE: visible ASCII only, as INVALID_TARGET wants
        self.persistent = self.checkPersistence(request, version)
        request.gotLength(0)
        self.phase = BUSY
        self.deadline = None
        self.run_request(request, method, target, version)
        return True

    def _hand_over_to_h2(self, data: bytes) -> None:
        """ALPN chose HTTP/2: the TLS transport delivers to a new HTTP/2 connection from now
        on, which takes this channel's place in the server's table and as the producer the
        transport pauses."""
        transport = self.transport
        self.deadline = None
        self.factory.server.channel_closed(self)
        transport.unregisterProducer()
        connection = self.factory.h2_protocol(self.factory)
        transport.wrappedProtocol = connection
        connection.makeConnection(transport)
        transport.registerProducer(connection, True)
        connection.dataReceived(data)

    def lineReceived(self, line):
        """Count the head, CRLFs included, and answer 431 once it passes HEAD_LIMIT."""
        if self.closing:
            return
        if self.phase is IDLE:  # a pipelined request replayed from the buffer
            self._start_head()
        self._head_size += len(line) + 2
        if self._head_size > HEAD_LIMIT:
            self.reject(431)
            return
        super().lineReceived(line)

    def lineLengthExceeded(self, line):
        """Twisted drops the connection without a word; a single huge line is a 431."""
        self.reject(431)

    def headerReceived(self, line):
        if self._header_count >= self.maxHeaders:
            self.reject(431)
            return False
        self._header_count += 1
        return super().headerReceived(line)

    def allHeadersReceived(self):
        """Refuse an announced body over the limit before reading any of it."""
        self._head_size = self._header_count = 0
        if self.length is not None and self.length > self.factory.max_request_body:
            self.reject(413)
            return
        self.phase = BODY
        self.deadline = self.factory.clock() + self.factory.header_timeout
        super().allHeadersReceived()

    def rawDataReceived(self, data):
        if self.closing:
            return
        if self.phase is not BUSY:  # body bytes: each chunk earns another header_timeout
            self.deadline = self.factory.clock() + self.factory.header_timeout
        super().rawDataReceived(data)

    def allContentReceived(self):
        if self.closing:
            return
        self.phase = BUSY
        self.deadline = None
        super().allContentReceived()

    def checkPersistence(self, request, version):
        """Whether the connection stays open after this response. Twisted splits Connection
        on spaces, so only a `close` that stands last counted (`Connection: close, foo` kept
        the connection): one parser, proxy.headers'. A draining server ends every
        connection after the response it is writing, so no client sends a request into a
        connection the server is about to close."""
        if version != b"HTTP/1.1":
            return False  # as Twisted: no HTTP/1.0 keep-alive
        if self.factory.server.draining or b"close" in connection_tokens(
                request.field_values(b"connection")):
            request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
            return False
        return True

    def requestDone(self, request):
        """Back to IDLE; replaying buffered pipelined bytes moves on to HEAD at once."""
        self.phase = IDLE
        self._pending_at_check = None
        self._settling = False
        self.deadline = self.factory.clock() + self.factory.header_timeout
        super().requestDone(request)
        if self.factory.server.draining:
            self.close_when_done()

    # -- handing the connection over ---------------------------------------------------

    def hand_over(self, head: bytes, protocol) -> bytes:
        """Write `head` (a 101 response) and give the connection to `protocol`, a Twisted
        protocol that also is the transport's push producer; returns the bytes the client
        sent after its request. From here the server no longer sweeps, drains or closes this
        channel: `protocol` owns the connection (the application task that made it stays in
        `traffic_tasks`, so a stopping server still waits for it)."""
        transport = self.transport
        transport.write(head)
        self.phase, self.deadline = HANDED_OVER, None
        self.factory.server.channel_closed(self)
        early = take_buffered_input(self)
        transport.unregisterProducer()
        if isinstance(transport, ProtocolWrapper):  # TLS: the wrapper carries the protocol
            transport.wrappedProtocol = protocol
        else:
            transport.protocol = protocol
        protocol.makeConnection(transport)
        transport.registerProducer(protocol, True)
        transport.resumeProducing()  # the channel pauses reading while it handles a request
        return early

    # -- closing -----------------------------------------------------------------------

    def close_when_done(self, idle_until: float | None = None):
        """The server is stopping: finish the current request, then close. A connection
        between requests gets until `idle_until` to send one more (answered with
        `Connection: close`): closing it at once would race a request already on its way."""
        if idle_until is None:
            idle_until = self.factory.clock() + DRAIN_IDLE_GRACE
        if self.phase is IDLE and not self.closing:
            self.deadline = min(self.deadline or idle_until, idle_until)

    def reject(self, status: int):
        """Answer a request the parser refused, then close. Nothing else was written yet.

        Lingering close: only our write side is shut, and what the client still sends is
        read and discarded until it closes (or abortTimeout passes). Closing with unread
        request bytes would make the kernel send a reset that can destroy the answer.
        """
        if self.closing or self.lost:
            return
        self.transport.write(CHANNEL_REJECTIONS[status])
        self._closing()
        if self.scheme == "https":
            self.transport.loseConnection()  # TLS: flush, close_notify, then close
        else:
            self.transport.loseWriteConnection()

    def close(self):
        """Flush what was written, then close; stop parsing; abort if the flush stalls."""
        if self.closing or self.lost:
            return
        self._closing()
        self.loseConnection()

    def _closing(self):
        self.closing = True
        self.persistent = False
        self.deadline = None
        self.abort_later()

    def timed_out(self):
        """Called by the server's sweep once `deadline` has passed.

        A connection still sending a response (IDLE with the last response's tail
        buffered, or BUSY waiting in drain()) earns another send_timeout as long as the
        client took some bytes since the last check: only a client that reads nothing
        for send_timeout is cut off, as with nginx's send_timeout.

        Each check looks back a whole send_timeout. The client's kernel reopens its
        receive window only once its reader has freed a sixteenth of the buffer (TCP's
        silly-window avoidance), so a slow reader's progress shows here in bursts; a
        shorter look could fall between two of them and cut off a client that reads.
        """
        phase = self.phase
        if phase is IDLE or phase is BUSY:
            pending = self._pending_output()
            if pending and self._settling:
                # drain()'s first look, once the kernel has settled: count from here
                self._settling = False
                self._pending_at_check = pending
                self.deadline = self.factory.clock() + self.factory.send_timeout
                return
            if pending and pending != self._pending_at_check:
                self._pending_at_check = pending
                self.deadline = self.factory.clock() + self.factory.send_timeout
                return
        if phase is IDLE:
            self.close()  # an idle keep-alive connection closes silently
        elif phase is BUSY:
            logger.warning("aborting a client that read nothing for %ss", self.factory.send_timeout)
            self.transport.abortConnection()
        else:
            self.reject(408)

    def _pending_output(self) -> int:
        """Bytes written but not yet taken by the client: Twisted's buffer plus the socket's
        send queue, which moves even when the kernel is too full to take more from Twisted
        (it asks again only once half its queue is free)."""
        transport = self.socket_transport
        buffered = pending_write_bytes(transport)
        try:
            queued = fcntl.ioctl(transport.fileno(), termios.TIOCOUTQ, _OUTQ)
        except (OSError, ValueError):
            return buffered
        return buffered + int.from_bytes(queued, sys.byteorder, signed=True)

    # -- back-pressure -----------------------------------------------------------------

    def pauseProducing(self):
        self.write_blocked = True
        super().pauseProducing()

    def resumeProducing(self):
        self.write_blocked = False
        super().resumeProducing()
        self._wake_writer()

    def _wake_writer(self):
        waiter = self._write_waiter
        if waiter is not None:
            self._write_waiter = None
            if self.phase is BUSY:
                self.deadline = None
                self._pending_at_check = None
                self._settling = False
            if not waiter.done():
                waiter.set_result(None)

    async def drain(self):
        """Return once the transport's buffer is below WRITE_HIGH_WATER (or the peer is gone).

        The channel is the transport's registered push producer: the transport calls
        pauseProducing when its buffer passes `bufferSize` and resumeProducing when it has
        drained, so no per-request producer registration is needed.
        """
        while self.write_blocked and not self.lost:
            if self._write_waiter is None:
                # The pending count is taken at the first sweep after SEND_SETTLE, not now:
                # the kernel goes on taking bytes for a moment after a send() it cut short
                # (the peer's receive queue is compacted, zero-window probes), and counting
                # that as the client reading earned a second send_timeout (120 s, not 60).
                self._write_waiter = asyncio.get_running_loop().create_future()
                self.deadline = self.factory.clock() + min(SEND_SETTLE, self.factory.send_timeout / 2)
                self._pending_at_check = None
                self._settling = True
            await self._write_waiter


class ListenerFactory(HTTPFactory):
    """HTTP factory for one plane: its request class, and the limits its channels apply."""

    protocol = DirectorChannel
    h2_protocol = None  # the HTTP/2 connection class, where ALPN may choose h2 (traffic over TLS)

    def __init__(self, server, request_class, *, max_request_body: int, header_timeout: float,
                 send_timeout: float = SEND_TIMEOUT, app=None, clock: Callable[[], float] = time.monotonic):
        super().__init__(server)
        self.clock = clock  # the deadlines of its channels (the server's sweep compares them)
        self.request_class = request_class
        self.app = app
        # Called with each finished traffic request's proxy.request_record.RequestRecord.
        self.request_done = getattr(app, "request_done", None)
        self.max_request_body = max_request_body
        self.header_timeout = header_timeout
        self.send_timeout = send_timeout
        self.timeOut = None

    def buildProtocol(self, addr):
        """A bare DirectorChannel, without Twisted's protocol-switching wrapper: over TLS the
        channel hands a connection that negotiated h2 to `h2_protocol` itself."""
        channel = http.HTTPFactory.buildProtocol(self, addr)
        channel.requestFactory = self.request_class
        return channel

    def log(self, request):
        """No Twisted access log: formatting it costs per request and nobody reads it."""
