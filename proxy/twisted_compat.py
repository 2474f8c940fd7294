"""The one place that names daphne's and Twisted's internals, and the check that they fit.

Director's server builds on parts of daphne and Twisted that are not public API: private
attributes, private hooks it overrides, and daphne `Server` methods it replaces. Every
such name appears in this module only: as small accessors (once per connection or rarer)
and as documented base classes whose methods touch the internals directly. `verify()`
(called by `proxy.server` at import, once the reactor is installed) checks that each name
still exists with the shape relied on, and raises `AdapterMismatch` listing every one that
does not, with the installed versions: an upgrade fails at start, never silently.
"""
from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from importlib import metadata

import priority
from daphne.http_protocol import WebRequest
from twisted.internet import abstract, asyncioreactor, tcp, unix
from twisted.internet.defer import Deferred
from twisted.protocols.basic import LineReceiver
from twisted.web import _http2, http, http_headers
from twisted.web.http_headers import Headers

from proxy.adapter_check import Need, problems

__all__ = [
    "AdapterMismatch", "ChunkedDecoder", "MalformedChunkedData", "Need", "TwistedChannel", "TwistedH2Connection",
    "add_reader_unlogged",
    "application_task", "application_tasks", "event_loop_of", "file_fields", "mark_adopted_unix_port",
    "pending_write_bytes",
    "replace_accepted_transport", "take_buffered_input", "verify",
]

_header_names = http_headers._nameEncoder  # Headers' name canonicaliser (a cache in front)
MalformedChunkedData = http._MalformedChunkedDataError  # raised by ChunkedDecoder hooks: the body is refused


class AdapterMismatch(RuntimeError):
    """The installed daphne or Twisted lacks an internal Director relies on."""


# -- accessors ---------------------------------------------------------------------------

def event_loop_of(reactor) -> asyncio.AbstractEventLoop:
    """The asyncio loop an AsyncioSelectorReactor runs on."""
    return reactor._asyncioEventloop


def add_reader_unlogged(reactor, reader) -> bool:
    """AsyncioSelectorReactor.addReader without Twisted's per-event `callWithLogger`: the
    loop calls the reactor's dispatch directly. False if the loop refuses the file (epoll
    refuses regular files): then the reactor's own addReader must poll it."""
    if reader in reactor._readers or reader in reactor._continuousPolling._readers:
        return True
    fd = reader.fileno()
    try:
        reactor._asyncioEventloop.add_reader(fd, reactor._readOrWrite, reader, True)
    except OSError:
        return False
    reactor._readers[reader] = fd
    return True


def pending_write_bytes(transport) -> int:
    """Bytes waiting in a Twisted FileDescriptor's write buffer."""
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


def take_buffered_input(channel: http.HTTPChannel) -> bytes:
    """The bytes an HTTPChannel received after the request it is handling (it buffers them
    until the response ends), removed from it: they belong to whoever takes the connection."""
    data = b"".join(channel._dataBuffer)
    channel._dataBuffer = []
    return data


def replace_accepted_transport(port, tcp_class: type, unix_class: type) -> None:
    """Make a listening `port` wrap the sockets it accepts in `tcp_class` or `unix_class`
    (subclasses of Twisted's tcp.Server / unix.Server), whichever fits the port."""
    port.transport = unix_class if issubclass(port.transport, unix.Server) else tcp_class


def mark_adopted_unix_port(port) -> None:
    """An adopted UNIX listening port (Twisted treats it like its own): on stop, neither
    unlink its socket file nor shutdown() the socket, which other processes accept on."""
    port._bindPath = b"\0"  # abstract-namespace marker: connectionLost skips the unlink
    port._shouldShutdown = False  # shutdown() would stop every worker's accepts


def application_task(server, protocol) -> asyncio.Future:
    """The application task daphne's `create_application` just made for `protocol`."""
    return server.connections[protocol]["application_instance"]


def application_tasks(server) -> list:
    """Every application task in daphne's connection table. A websocket still in its
    handshake has an entry without one: daphne adds the task when the app starts."""
    return [details["application_instance"] for details in server.connections.values()
            if "application_instance" in details]


def file_fields(headers: Headers, fields: list) -> None:
    """File `fields` ([(name, value)], values without line breaks) into an empty `headers`
    as HTTPChannel.headerReceived would, under Headers' canonical names, without the
    per-field calls and value sanitising that have nothing to do."""
    filed = headers._rawHeaders
    canonical = _header_names.encode
    for name, value in fields:
        name = canonical(name)
        values = filed.get(name)
        if values is None:
            filed[name] = [value]
        else:
            values.append(value)


# -- base classes whose methods touch internals ---------------------------------------------

class TwistedChannel(http.HTTPChannel):
    """HTTPChannel with its private hooks turned into documented ones.

    Subclasses define `reject(status)` (a malformed request Twisted would answer with a
    bare 400 status line) and may set `chunked_decoder` to a `ChunkedDecoder` subclass,
    used instead of Twisted's for chunked request bodies.
    """

    chunked_decoder: type | None = None

    def parse_lines(self, data: bytes) -> bytes:
        """LineReceiver's parsing (without HTTPChannel's per-byte timer reset); returns the
        incomplete line left unparsed."""
        LineReceiver.dataReceived(self, data)
        return self._buffer

    def has_partial_line(self) -> bool:
        """LineReceiver holds the start of a line that has not ended yet."""
        return bool(self._buffer)

    def request_without_parser(self):
        """A new request from `requestFactory`, queued as HTTPChannel.lineReceived queues one
        for a request line, for a head read without the line parser (whose state stays as it
        was between requests); `run_request` starts it."""
        request = self.requestFactory(self, len(self.requests))
        self.requests.append(request)
        return request

    def run_request(self, request, method: bytes, target: bytes, version: bytes) -> None:
        """What allContentReceived does for a request from `request_without_parser` once it is
        complete (there is no parser state to reset): the channel holds further input until
        the response ends, and the request runs."""
        self._handlingRequest = True
        self.line_mode = 0  # LineReceiver.setRawMode: buffered, replayed by requestDone
        request.requestReceived(method, target, version)

    def requestDone(self, request):
        """HTTPChannel.requestDone without two per-request detours: the identity test through
        Request.__eq__, and setLineMode's call. The next request may start: reading resumes
        and, on a persistent connection, the bytes that arrived meanwhile are parsed."""
        if self.requests[0] is not request:
            raise TypeError
        del self.requests[0]
        if not self._waitingForTransport:
            self._networkProducer.resumeProducing()
        if not self.persistent:
            self.loseConnection()
            return
        self._handlingRequest = False
        if self._savedTimeOut:
            self.setTimeout(self._savedTimeOut)
        self.line_mode = 1
        buffered = self._dataBuffer
        if buffered:
            self._dataBuffer = []
            self.dataReceived(b"".join(buffered))

    def abort_later(self) -> None:
        """Abort the transport after `abortTimeout` unless the connection closes first
        (HTTPChannel.connectionLost cancels it, as for its own timeouts)."""
        self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)

    def _maybeChooseTransferDecoder(self, header, data):
        decoder = self.chunked_decoder
        if (decoder is not None and header == b"Transfer-Encoding" and data.lower() == b"chunked"
                and self._transferDecoder is None):
            self.length = None
            self._transferDecoder = decoder(self.requests[-1].handleContentChunk, self._finishRequestBody, self)
            return True
        return super()._maybeChooseTransferDecoder(header, data)

    def _respondToBadRequestAndDisconnect(self):
        self.reject(400)


class ChunkedDecoder(http._ChunkedTransferDecoder):
    """Twisted's chunked-body decoder with hooks a subclass overrides; a hook refuses the
    body by raising MalformedChunkedData. `channel` is the TwistedChannel reading it."""

    def __init__(self, data_callback, finish_callback, channel):
        super().__init__(data_callback, finish_callback)
        self.channel = channel
        self._maxTrailerHeadersSize = channel.totalHeadersSize  # the head's limit

    def size_line_incomplete(self, buffered: bytes) -> None:
        """The chunk-size line has not ended yet; `buffered` is what arrived of it."""

    def chunk_announced(self, size: int) -> None:
        """A chunk-size line announced `size` bytes."""

    def trailer_arriving(self, buffered: bytes) -> None:
        """Bytes of the trailer section have arrived (`buffered`, up to the next line end)."""

    def _dataReceived_CHUNK_LENGTH(self) -> bool:
        if not super()._dataReceived_CHUNK_LENGTH():
            self.size_line_incomplete(self._buffer)
            return False
        self.chunk_announced(self.length)
        return True

    def _dataReceived_TRAILER(self) -> bool:
        self.trailer_arriving(self._buffer)
        return super()._dataReceived_TRAILER()


class TwistedH2Connection(_http2.H2Connection):
    """Twisted's HTTP/2 connection with documented hooks: new streams are instances of
    `stream_class` (an `H2Stream` subclass), `stream_started(stream)` runs once a stream
    can write, and `stream_finished(stream)` when its response has ended or it was reset,
    before Twisted forgets it."""

    stream_class: type = _http2.H2Stream

    def _requestReceived(self, event):
        """Twisted's, with `stream_class`."""
        stream = self.stream_class(event.stream_id, self, event.headers, self.requestFactory, self.site, self.factory)
        self.streams[event.stream_id] = stream
        self._streamCleanupCallbacks[event.stream_id] = Deferred()
        self._outboundStreamQueues[event.stream_id] = deque()
        try:
            self.priority.insert_stream(event.stream_id)
        except priority.DuplicateStreamError:
            pass  # a PRIORITY frame made it already
        else:
            self.priority.block(event.stream_id)
        self.stream_started(stream)

    def stream_started(self, stream) -> None:
        """Override: `stream` has its headers and may now write."""

    def stream_finished(self, stream) -> None:
        """Override: `stream` is done (response ended or stream reset)."""

    def _requestDone(self, streamID):
        stream = self.streams.get(streamID)
        if stream is not None:
            self.stream_finished(stream)
        super()._requestDone(streamID)

    def _requestDataReceived(self, event):
        """Twisted's, except for a stream it has already forgotten (answered and ended, or
        reset, while the client was still sending: Twisted raised KeyError and dropped the
        connection): the data only gives its flow-control credit back."""
        if event.stream_id in self.streams:
            super()._requestDataReceived(event)
        else:
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)

    def _requestEnded(self, event):
        if event.stream_id in self.streams:
            super()._requestEnded(event)

    def is_consumer_blocked(self) -> bool:
        """The transport paused us: its buffer is full."""
        return self._consumerBlocked is not None

    def end_stream_with(self, stream_id: int, data: bytes) -> None:
        """End the stream's response with `data`, its last body bytes.

        Twisted queues body bytes and the end of the stream separately for its sending loop,
        which sends one frame per loop turn: a DATA frame, then an empty DATA frame with
        END_STREAM a turn later. When nothing of the stream waits in its queue, the transport
        takes writes and `data` fits the stream's flow-control window and the frame size,
        this sends one DATA frame with END_STREAM at once and forgets the stream as the
        loop would; otherwise the bytes and the end take Twisted's way."""
        queue = self._outboundStreamQueues.get(stream_id)
        if (queue is not None and not queue and self._consumerBlocked is None and self._stillProducing
                and len(data) <= min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)):
            self.resetTimeout()
            self.conn.send_data(stream_id, data, end_stream=True)
            self.transport.write(self.conn.data_to_send())
            self._requestDone(stream_id)
            return
        if data:
            self.writeDataToStream(stream_id, data)
        self.endRequest(stream_id)


# -- the check -----------------------------------------------------------------------------

def _fresh_reactor():
    loop = asyncio.new_event_loop()
    try:
        return asyncioreactor.AsyncioSelectorReactor(loop)
    finally:
        loop.close()


def _fresh_server():
    from daphne.server import Server

    return Server(application=None, endpoints=["tcp:port=0"])  # no endpoints: sys.exit


def _fresh_unix_port():
    return unix.Port("/nonexistent/director-adapter-check", None, reactor=object())


def _fresh_descriptor():
    return abstract.FileDescriptor(reactor=object())


def _fresh_channel():
    return http.HTTPChannel()


def _fresh_h2_connection():
    return _http2.H2Connection(reactor=_NoClock())


class _NoClock:
    def seconds(self) -> float:
        return 0.0

    def callLater(self, delay, function, *args):  # noqa: N802 - Twisted's interface
        return None


def _fresh_decoder():
    return http._ChunkedTransferDecoder(None, None)


def needs() -> list[Need]:
    """Everything this module (and the classes overriding daphne's methods) relies on."""
    from daphne.server import Server  # here: importing it installs a reactor

    channel, decoder = http.HTTPChannel, http._ChunkedTransferDecoder
    return [
        Need(asyncioreactor.AsyncioSelectorReactor, "_readOrWrite", ("self", "selectable", "read")),
        *(Need(_fresh_reactor, name) for name in ("_asyncioEventloop", "_readers", "_continuousPolling")),
        Need(tcp.Port, "transport"), Need(tcp.Port, "_shouldShutdown"), Need(unix.Port, "transport"),
        Need(_fresh_unix_port, "_bindPath"),
        *(Need(_fresh_descriptor, name) for name in ("dataBuffer", "offset", "_tempDataLen", "connected")),
        Need(abstract.FileDescriptor, "doWrite", ("self",)),
        Need(LineReceiver, "_buffer"),
        Need(Headers, "_rawHeaders"), Need(http_headers, "_nameEncoder"),
        Need(LineReceiver, "setRawMode", ("self",), mentions=("self.line_mode = 0",)),
        Need(Headers, "getRawHeaders", mentions=("_nameEncoder.encode(name)", "self._rawHeaders.get(")),
        *(Need(channel, name) for name in ("_abortingCall", "abortTimeout", "totalHeadersSize", "maxHeaders",
                                           "timeOut", "length")),
        Need(_fresh_channel, "_transferDecoder"), Need(_fresh_channel, "requests"),
        Need(_fresh_channel, "_dataBuffer"),
        *(Need(_fresh_channel, name) for name in ("_waitingForTransport", "_savedTimeOut")),
        Need(channel, "connectionMade", ("self",), mentions=("self._networkProducer =",)),
        Need(channel, "requestDone", ("self", "request"), mentions=(
            "del self.requests[0]", "self._networkProducer.resumeProducing()", "self._handlingRequest = False",
            "self._dataBuffer = []", "self.setLineMode(data)", "self.loseConnection()")),
        Need(LineReceiver, "setLineMode", ("self", "extra"), mentions=("self.line_mode = 1",)),
        Need(channel, "_maybeChooseTransferDecoder", ("self", "header", "data")),
        Need(channel, "lineReceived", ("self", "line"),
             mentions=("self.requestFactory(self, len(self.requests))", "self.requests.append")),
        Need(channel, "allContentReceived", ("self",), mentions=(
            "self._handlingRequest = True", "self.setRawMode()", "req.requestReceived(command, path, version)")),
        Need(channel, "_respondToBadRequestAndDisconnect", ("self",)),
        Need(channel, "_finishRequestBody", ("self", "data")),
        Need(channel, "forceAbortClient", ("self",)),
        Need(channel, "callLater", ("self", "period", "func")),
        Need(http, "_MalformedChunkedDataError"),
        Need(decoder, "_dataReceived_CHUNK_LENGTH", ("self",), mentions=("self.length",)),
        Need(decoder, "_dataReceived_TRAILER", ("self",)),
        Need(_fresh_decoder, "_maxTrailerHeadersSize"), Need(_fresh_decoder, "_buffer"),
        Need(Server, "create_application", ("self", "protocol", "scope"), mentions=("self.connections", '"application_instance"')),
        Need(Server, "handle_reply", ("self", "protocol", "message")),
        Need(Server, "application_checker", ("self",)),
        Need(Server, "kill_all_applications", ("self",)),
        Need(Server, "timeout_checker", ("self",)),
        *(Need(_fresh_server, name) for name in ("abort_start", "listening_addresses",
                                                 "ping_timeout", "websocket_handshake_timeout",
                                                 "websocket_max_message_size", "websocket_max_frame_size",
                                                 "signal_handlers")),
        Need(_http2.H2Connection, "_requestReceived", ("self", "event"),
             mentions=("H2Stream(", "self.streams[", "_streamCleanupCallbacks", "_outboundStreamQueues",
                       "insert_stream", "self.priority.block")),
        Need(_http2.H2Connection, "_requestDone", ("self", "streamID"), mentions=("del self.streams",)),
        Need(_http2.H2Connection, "_requestDataReceived", ("self", "event"), mentions=("self.streams[event.stream_id]",)),
        Need(_http2.H2Connection, "_requestEnded", ("self", "event"), mentions=("self.streams[event.stream_id]",)),
        Need(_http2.H2Stream, "__init__", ("self", "streamID", "connection", "headers", "requestFactory", "site",
                                           "factory")),
        *(Need(_fresh_h2_connection, name) for name in ("_consumerBlocked", "_streamCleanupCallbacks",
                                                        "_outboundStreamQueues", "priority", "streams",
                                                        "_stillProducing")),
        Need(WebRequest, "handle_reply", ("self", "message")),
        Need(WebRequest, "basic_error", ("self", "status", "status_text", "body")),
        Need(WebRequest, "handle_exception", ("self", "exception")),
    ]


def installed_versions() -> str:
    return f"Twisted {metadata.version('Twisted')} / daphne {metadata.version('daphne')}"


# What Twisted's Request.__init__ sets on every request; proxy.request_fields.LeanRequestMixin
# sets each of these itself or makes it on first use, so Twisted setting anything more is a
# mismatch (a method of Request may read it).
REQUEST_STATE = frozenset({"channel", "transport", "notifications", "received_cookies", "cookies", "queued",
                           "_parsePOSTFormSubmission", "requestHeaders", "responseHeaders", "client", "host"})


class _AddressedChannel:
    transport = None

    def getPeer(self):  # noqa: N802 - Twisted's interface
        return None

    getHost = getPeer


def request_state_problems() -> list[str]:
    """What Twisted's Request.__init__ sets beyond REQUEST_STATE."""
    extra = set(vars(http.Request(_AddressedChannel()))) - REQUEST_STATE
    return [f"twisted.web.http.Request.__init__ also sets {', '.join(sorted(extra))}"] if extra else []


def check(wanted: list[Need], more: Sequence[str] = ()) -> None:
    """Raise AdapterMismatch naming every need that does not fit (and `more` problems found
    otherwise), and the versions."""
    missing = problems(wanted) + list(more)
    if missing:
        raise AdapterMismatch(f"Director's adapter does not fit {installed_versions()}: {'; '.join(missing)}")


def verify() -> None:
    """Check every internal Director relies on (after the reactor is installed)."""
    check(needs(), request_state_problems())
