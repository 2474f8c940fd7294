"""HTTP/2 for clients that negotiate `h2` by ALPN on a TLS listener (SPEC §12).

Twisted's HTTP/2 (`H2Connection`, the `h2` package) parses frames; each stream is a
`DirectorH2Stream`, which gives `TrafficRequest` the same channel interface a
`DirectorChannel` gives it on HTTP/1.1: so routing, limits (413 from Content-Length before
any body byte or once a body passes `max_request_body`), header rules, statuses and retries
are the HTTP/1.1 ones, and backends still get HTTP/1.1 or FastCGI. Back-pressure: a
response waits in `drain()` while the stream's flow-control window is used up or the
socket's buffer is full, and a stream that stays blocked for `send_timeout` is reset.

A connection with no open stream closes after `header_timeout`, and a stream whose request
body stops for `header_timeout` gets 408 (as on HTTP/1.1, every body chunk earns another);
a stopping server lets open streams finish, then sends GOAWAY and closes.
"""
from __future__ import annotations

import asyncio
import logging

import h2.errors
import hpack
import hpack.table
from hpack.hpack import encode_integer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.web import _http2  # only for the H2Stream base class: its hooks are public methods

from proxy.response_head import h2_field
from proxy.server_channel import DRAIN_IDLE_GRACE, HEAD_LIMIT
from proxy.twisted_compat import TwistedH2Connection

logger = logging.getLogger("director.server")

UNIQUE_PER_RESPONSE = frozenset({b"x-request-id"})
# Kept out of every compression context, as h2 itself would (its outbound normalisation is
# off here): credentials, and cookies short enough to guess.
CREDENTIALS = frozenset({b"authorization", b"proxy-authorization"})
SHORT_COOKIE = 20


class PlainEncoder(hpack.Encoder):
    """HPACK for response heads, the way nginx writes them: a field the static table holds
    whole is indexed, every other one goes out as a literal without indexing (its name
    indexed when the static table knows it) and without Huffman coding. The connection's
    dynamic table is never used, so a field's encoding never depends on what came before:
    each connection remembers the encodings of the fields it has sent (FIELDS_KEPT of them),
    and a head of repeating fields is a few lookups. hpack's encoder searched and filled
    the dynamic table field by field in Python, and coded every string bit by bit; that
    saves a few dozen bytes per response head and cost more CPU than the rest of the
    head's way out. Fields new in every response (X-Request-ID) are not remembered, and
    those no compression context may hold (credentials and short cookies, the fields h2's
    own normalisation would mark) go out never-indexed and are not remembered either.
    """

    FIELDS_KEPT = 256

    def __init__(self):
        super().__init__()
        self._fields: dict[tuple[bytes, bytes], bytes] = {}

    def encode(self, headers, huffman: bool = False) -> bytes:
        block = []
        if self.header_table.resized:  # the client's SETTINGS changed the table size: say so first
            block.append(self._encode_table_size_change())
            self.header_table.resized = False
        fields = self._fields
        for field in headers:
            name, value = field[0], field[1]
            if type(name) is not bytes or type(value) is not bytes:  # h2 hands over bytes already
                name, value = _as_bytes(name), _as_bytes(value)
            if isinstance(field, hpack.HeaderTuple) and not field.indexable:
                block.append(encode_field(name, value, never_indexed=True))
                continue
            encoded = fields.get((name, value))
            if encoded is None:
                never_indexed = (name in UNIQUE_PER_RESPONSE or name in CREDENTIALS
                                 or (name == b"cookie" and len(value) < SHORT_COOKIE))
                encoded = encode_field(name, value, never_indexed=never_indexed)
                if not never_indexed:
                    if len(fields) >= self.FIELDS_KEPT:
                        fields.clear()
                    fields[(name, value)] = encoded
            block.append(encoded)
        return b"".join(block)


_STATIC_FIELDS: dict[tuple[bytes, bytes], int] = {}
_STATIC_NAMES: dict[bytes, int] = {}
for _index, _field in enumerate(hpack.table.HeaderTable.STATIC_TABLE, start=1):
    _STATIC_FIELDS.setdefault(_field, _index)
    _STATIC_NAMES.setdefault(_field[0], _index)


def _as_bytes(value) -> bytes:
    return value if type(value) is bytes else str(value).encode("utf-8")


def _string(data: bytes) -> bytes:
    """RFC 7541 5.2: a string literal, not Huffman coded."""
    return bytes(encode_integer(len(data), 7)) + data


def encode_field(name: bytes, value: bytes, *, never_indexed: bool = False) -> bytes:
    """One field as RFC 7541 6.1 (indexed, from the static table) or 6.2.2 / 6.2.3 (literal
    without indexing / never indexed), touching no dynamic table."""
    if not never_indexed and (index := _STATIC_FIELDS.get((name, value))) is not None:
        head = encode_integer(index, 7)
        head[0] |= 0x80
        return bytes(head)
    flag = 0x10 if never_indexed else 0x00
    index = _STATIC_NAMES.get(name)
    if index is None:
        return bytes((flag,)) + _string(name) + _string(value)
    head = encode_integer(index, 4)
    head[0] |= flag
    return bytes(head) + _string(value)


class DirectorH2Stream(_http2.H2Stream):
    """One request/response exchange on an HTTP/2 connection, as TrafficRequest's channel."""

    closing = False  # the response was decided before the body was read: ignore the rest
    lost = False
    persistent = True  # HTTP/2 has no Connection: close; respond_error() may set it, harmlessly
    writes_raw_head = False  # the head goes out as HEADERS frames (writeHeaders below)
    body_complete = False  # the client ended its side of the stream
    reset_sent = False  # close() reset the stream
    body_deadline: float | None = None  # the next body byte is due by then (monotonic), else 408
    _held: bytes | None = None  # body bytes written in this turn of the loop (see write)

    def __init__(self, streamID, connection, headers, requestFactory, site, factory):
        self.scope_client, self.scope_server = connection.scope_client, connection.scope_server
        self.scheme = "https"
        self._write_waiter: asyncio.Future | None = None
        self._flow_blocked = False
        super().__init__(streamID, connection, headers, requestFactory, site, factory)
        self.registerProducer(_FlowGate(self), True)
        self.body_deadline = factory.clock() + factory.header_timeout  # cleared when the client ends the stream

    def check_head(self) -> None:
        """The HTTP/1.1 limits on a stream's head, before any body byte is read: 431 for a
        head over HEAD_LIMIT (counted as its HTTP/1.1 form), 413 for a Content-Length over
        max_request_body. A CONNECT has no :path; it gets an empty one, and then 405. One
        Host field goes on, even when the client sent one besides :authority."""
        if self.path is None:
            self.path = b""
        headers = self._request.requestHeaders
        hosts = headers.getRawHeaders(b"host")
        if hosts and len(hosts) > 1:  # :authority and a Host field (h2 checked they are equal)
            headers.setRawHeaders(b"host", hosts[:1])
        size = len(self.command or b"") + len(self.path) + sum(
            len(name) + len(value) + 4 for name, values in headers.getAllRawHeaders() for value in values)
        if size > HEAD_LIMIT:
            self.reject(431)
            return
        length = headers.getRawHeaders(b"content-length")
        if length and length[-1].isdigit() and int(length[-1]) > self.factory.max_request_body:
            self.reject(413)

    # -- the channel interface of RequestMixin / TrafficRequest -------------------------

    @property
    def write_blocked(self) -> bool:
        return self._flow_blocked or self._conn.is_consumer_blocked()

    async def drain(self) -> None:
        """Wait until the stream may send again; reset it after send_timeout without progress."""
        timeout = self.factory.send_timeout
        while self.write_blocked and not self.lost:
            if self._write_waiter is None:
                self._write_waiter = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._write_waiter), timeout)
            except asyncio.TimeoutError:
                logger.warning("resetting an HTTP/2 stream whose client read nothing for %ss", timeout)
                self.close()
                return

    def wake_writer(self) -> None:
        waiter, self._write_waiter = self._write_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def reject(self, status: int) -> None:
        """Answer before reading the rest of the body (which is then ignored)."""
        if self.closing or self.lost:
            return
        self.closing = True
        self.body_deadline = None
        self._request.respond_error(status)

    def close(self) -> None:
        """End a response that cannot complete: reset the stream (the client sees an error)."""
        if self.lost or self.reset_sent or self.streamID not in self._conn.streams:
            return
        self.closing = self.reset_sent = True
        self.abortConnection()

    def write(self, data):
        """Body bytes. The chunk written last in a turn of the event loop is held to the end
        of that turn: a response that ends in the same turn (a whole body, an error page)
        goes out as one DATA frame carrying END_STREAM (`requestDone`), not as a DATA frame
        followed by an empty one on the sending loop's next turn. Earlier chunks go first."""
        held = self._held
        if held is None:
            self.factory.server.loop.call_soon(self._release_held)
        else:
            super().write(held)
        self._held = data

    def _release_held(self) -> None:
        data, self._held = self._held, None
        if data is not None and not self.lost and self.streamID in self._conn.streams:
            super().write(data)

    def requestDone(self, request):
        self._end()

    def loseConnection(self):
        self._end()

    def _end(self) -> None:
        data, self._held = self._held, None
        if self.body_complete:
            self._conn.end_stream_with(self.streamID, data or b"")
            return
        # Answered before the client's body ended (413, an early error): the stream is then
        # reset (stream_finished). curl fails the exchange when that reset arrives in the
        # same read as the whole response, so the end goes Twisted's way, a turn later.
        if data:
            super().write(data)
        super().requestDone(self._request)

    def write_fields(self, code: bytes, fields: list) -> None:
        """The response head as the request built it (proxy.response_head.h2_field)."""
        self._conn.writeHeaders(b"HTTP/2", code, b"", fields, self.streamID)

    def writeHeaders(self, version, code, reason, headers):
        """Twisted's way, for the server's own answers (Request.respond_error): the same
        field rules as write_fields."""
        fields: list = []
        for name, values in headers.getAllRawHeaders():
            for value in values:
                h2_field(fields, name, value)
        self._conn.writeHeaders(version, code, reason, fields, self.streamID)

    # -- events from the connection --------------------------------------------------------

    def receiveDataChunk(self, data, flowControlledLength):
        if self.closing:  # answered already: the rest of the body only gives its credit back
            self._conn.openStreamWindow(self.streamID, flowControlledLength)
            return
        self.body_deadline = self.factory.clock() + self.factory.header_timeout  # as HTTP/1.1: per chunk
        super().receiveDataChunk(data, flowControlledLength)

    def requestComplete(self):
        self.body_complete = True
        self.body_deadline = None
        if not self.closing:
            super().requestComplete()

    def connectionLost(self, reason):
        self.lost = True
        self.wake_writer()
        super().connectionLost(reason)


class _FlowGate:
    """The stream's registered producer: told when its flow-control window runs out and
    when it opens again."""

    def __init__(self, stream: DirectorH2Stream):
        self.stream = stream

    def pauseProducing(self):  # noqa: N802 - Twisted's IPushProducer
        self.stream._flow_blocked = True

    def resumeProducing(self):  # noqa: N802
        self.stream._flow_blocked = False
        self.stream.wake_writer()

    def stopProducing(self):  # noqa: N802
        self.stream.wake_writer()


class DirectorH2Connection(TwistedH2Connection):
    """An HTTP/2 connection tracked by the server like a DirectorChannel (`deadline`,
    `timed_out`, `close_when_done`, `close`)."""

    stream_class = DirectorH2Stream
    timeOut = None  # Twisted's idle timer restarts on every byte; the server's sweep is used instead
    deadline: float | None = None
    draining = False
    scope_client = None
    scope_server = None

    def __init__(self, factory):
        super().__init__(reactor=factory.server.soon_clock)  # the sending loop: once per frame
        # What goes out was checked on the way in: response fields come through the strict
        # upstream parser and the header rules, and the proxy's own answers are fixed; each
        # head is built ready to send (lower-case names, no connection-specific fields:
        # proxy.response_head.h2_field), and PlainEncoder keeps credentials out of any
        # table. h2 would check and normalise each field again per response. Requests
        # from clients are still validated in full.
        self.conn.config.validate_outbound_headers = False
        self.conn.config.normalize_outbound_headers = False
        self.conn.encoder = PlainEncoder()
        self.factory = factory
        self.requestFactory = factory.request_class
        self.server = factory.server

    def connectionMade(self):
        peer, host = self.transport.getPeer(), self.transport.getHost()
        if isinstance(peer, (IPv4Address, IPv6Address)):
            self.scope_client, self.scope_server = [peer.host, peer.port], [host.host, host.port]
        super().connectionMade()
        self.server.channel_opened(self)
        self._idle_from_now()

    def connectionLost(self, reason, _cancelTimeouts=True):
        self.deadline = None
        super().connectionLost(reason, _cancelTimeouts)
        self.server.channel_closed(self)

    def dataReceived(self, data):
        super().dataReceived(data)
        if self.streams:
            self._deadline_from(self.streams.values())

    def _deadline_from(self, streams) -> None:
        """The earliest body deadline of `streams` (None: none is waiting for its body)."""
        due = [s.body_deadline for s in streams if s.body_deadline is not None]
        self.deadline = min(due) if due else None

    def stream_started(self, stream) -> None:
        stream.check_head()

    def resumeProducing(self):
        super().resumeProducing()
        for stream in list(self.streams.values()):
            stream.wake_writer()

    def stream_finished(self, stream) -> None:
        if not (stream.body_complete or stream.lost or stream.reset_sent):
            # answered before the client finished sending: tell it to stop (RFC 9113 8.1)
            self.conn.reset_stream(stream.streamID, h2.errors.ErrorCodes.NO_ERROR)
            self._tryToWriteControlData()
        others = [s for s in self.streams.values() if s is not stream]
        if others:
            self._deadline_from(others)
        elif self.draining:
            self.server.loop.call_soon(self.close)
        else:
            self._idle_from_now()

    def _idle_from_now(self) -> None:
        self.deadline = self.factory.clock() + self.factory.header_timeout

    def timed_out(self):
        """No stream for header_timeout (or for the drain grace): GOAWAY and close. A stream
        whose body stalled for header_timeout: 408 on that stream."""
        if not self.streams:
            self.close()
            return
        now = self.factory.clock()
        for stream in list(self.streams.values()):
            if stream.body_deadline is not None and stream.body_deadline <= now:
                stream.reject(408)
        self._deadline_from(self.streams.values())

    def close_when_done(self):
        """The server is stopping: streams in flight finish, then GOAWAY and close."""
        self.draining = True
        if not self.streams:
            self.deadline = min(self.deadline or float("inf"), self.factory.clock() + DRAIN_IDLE_GRACE)

    def close(self):
        """GOAWAY (no error) and close once written; open streams are cut."""
        self.deadline = None
        if self.transport is None or getattr(self.transport, "disconnecting", False):
            return
        self.conn.close_connection(h2.errors.ErrorCodes.NO_ERROR)
        self._tryToWriteControlData()
        self.transport.loseConnection()
