"""HTTP/1.1 connection and request objects behind Director's listeners.

Twisted parses HTTP for daphne; these subclasses close the gaps DESIGN.md lists under
"daphne: what it does to a proxy":

- `DirectorChannel` (one per connection) answers every parse failure (400, 413, 431, 408)
  with a small plain-text response and closes, instead of dropping the connection;
  it enforces `header_timeout` from a request's first byte (swept by the server, no
  per-request timer) and applies write back-pressure to the application.
- `RequestMixin` owns the response side shared by both planes: message order, short and
  over-long bodies, and a failure after the response started, which closes the
  connection rather than leaving the client hanging or corrupting the next response.
- `TrafficRequest` is the lean hot path for `proxy.app`; `ManagementRequest` keeps daphne's
  `WebRequest` (and so its websocket upgrade) for the Django management app.
"""
from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import unquote

from daphne.http_protocol import HTTPFactory, WebRequest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.protocols.basic import LineReceiver
from twisted.web import http

logger = logging.getLogger("director.server")

HEAD_LIMIT = 16 * 1024  # request line + headers, CRLFs included
MAX_HEADERS = 500  # Twisted's default; more headers answer 431 like an oversized head
BODY_CHUNK = 64 * 1024  # size of the http.request messages receive() yields
WRITE_HIGH_WATER = 256 * 1024  # send() waits while the transport buffers more than this
SEND_TIMEOUT = 60.0  # default: a blocked response whose client reads nothing this long is aborted
ABORT_AFTER = 10.0  # seconds a closing connection gets to flush before it is aborted
REJECTED_METHODS = frozenset({b"CONNECT", b"TRACE"})
ALLOWED_METHODS = b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
NO_BODY_STATUSES = frozenset({204, 304})

IDLE, HEAD, BODY, BUSY = "idle", "head", "body", "busy"  # DirectorChannel.phase values


REASONS = {  # RFC 9110 reason phrases where Twisted has older ones
    **http.RESPONSES, 408: b"Request Timeout", 413: b"Content Too Large", 431: b"Request Header Fields Too Large",
}


def error_body(status: int) -> bytes:
    return b"%d %s\n" % (status, REASONS[status])


def closing_response(status: int) -> bytes:
    """A complete HTTP/1.1 error response that announces the connection closes."""
    body = error_body(status)
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
        % (status, REASONS[status], len(body), body)
    )


CHANNEL_REJECTIONS = {status: closing_response(status) for status in (400, 408, 413, 431)}


class DirectorChannel(http.HTTPChannel):
    """One client connection; `factory` is a `ListenerFactory` naming the plane it serves.

    `phase` is IDLE (waiting for a request's first byte), HEAD (reading its head), BODY
    (reading its body) or BUSY (the application has it). `deadline` (monotonic seconds or
    None) is checked by `DirectorServer`'s sweep: past it, IDLE closes silently, HEAD or
    BODY answer 408, and BUSY (set only while a response waits on a full send buffer,
    for `send_timeout`) aborts the connection, which cancels the traffic app. Twisted's own idle timer is off: it restarts on every byte, which is
    exactly what a slowloris client exploits.
    """

    MAX_LENGTH = HEAD_LIMIT  # one line longer than this -> lineLengthExceeded -> 431
    totalHeadersSize = HEAD_LIMIT
    maxHeaders = MAX_HEADERS
    timeOut = None
    abortTimeout = ABORT_AFTER

    phase = IDLE
    deadline: float | None = None
    closing = False
    lost = False
    scope_client = None
    scope_server = None
    _head_size = 0
    _write_waiter: asyncio.Future | None = None

    def connectionMade(self):
        super().connectionMade()
        self.transport.bufferSize = WRITE_HIGH_WATER
        peer, host = self.transport.getPeer(), self.transport.getHost()
        if isinstance(peer, (IPv4Address, IPv6Address)):
            self.scope_client = [peer.host, peer.port]
            self.scope_server = [host.host, host.port]
        self.deadline = time.monotonic() + self.factory.header_timeout
        self.factory.server.channel_opened(self)

    def connectionLost(self, reason):
        self.lost = True
        self.deadline = None
        super().connectionLost(reason)
        self.factory.server.channel_closed(self)
        self._wake_writer()

    # -- reading the request head and body ---------------------------------------------

    def _start_head(self):
        self.phase = HEAD
        self.deadline = time.monotonic() + self.factory.header_timeout

    def dataReceived(self, data):
        """Start the head timer on a request's first byte; never restart it per byte."""
        if self.closing:
            return
        if self.phase is IDLE:
            self._start_head()
        LineReceiver.dataReceived(self, data)  # skips HTTPChannel's per-byte resetTimeout

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
        if self._receivedHeaderCount >= self.maxHeaders:
            self.reject(431)
            return False
        return super().headerReceived(line)

    def allHeadersReceived(self):
        """Refuse an announced body over the limit before reading any of it."""
        self._head_size = 0
        if self.length is not None and self.length > self.factory.max_request_body:
            self.reject(413)
            self.length = None  # HTTPChannel.lineReceived must not dispatch the request
            return
        self.phase = BODY
        self.deadline = time.monotonic() + self.factory.header_timeout
        super().allHeadersReceived()

    def rawDataReceived(self, data):
        if self.closing:
            return
        if not self._handlingRequest:  # body bytes: each chunk earns another header_timeout
            self.deadline = time.monotonic() + self.factory.header_timeout
        super().rawDataReceived(data)

    def allContentReceived(self):
        if self.closing:
            return
        self.phase = BUSY
        self.deadline = None
        super().allContentReceived()

    def requestDone(self, request):
        """Back to IDLE; replaying buffered pipelined bytes moves on to HEAD at once."""
        self.phase = IDLE
        self.deadline = time.monotonic() + self.factory.header_timeout
        super().requestDone(request)

    def _respondToBadRequestAndDisconnect(self):
        """Twisted writes a bare status line; answer a complete, closing 400 instead."""
        self.reject(400)

    # -- closing -----------------------------------------------------------------------

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
        self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)

    def timed_out(self):
        """Called by the server's sweep once `deadline` has passed."""
        if self.phase is IDLE:
            self.close()  # an idle keep-alive connection closes silently
        elif self.phase is BUSY:  # a response blocked on a client that stopped reading
            logger.warning("aborting a client that read nothing for %ss", self.factory.send_timeout)
            self.transport.abortConnection()
        else:
            self.reject(408)

    # -- back-pressure -----------------------------------------------------------------

    def resumeProducing(self):
        super().resumeProducing()
        self._wake_writer()

    def _wake_writer(self):
        waiter = self._write_waiter
        if waiter is not None:
            self._write_waiter = None
            if self.phase is BUSY:
                self.deadline = None
            if not waiter.done():
                waiter.set_result(None)

    async def drain(self):
        """Return once the transport's buffer is below WRITE_HIGH_WATER (or the peer is gone).

        The channel is the transport's registered push producer: the transport calls
        pauseProducing when its buffer passes `bufferSize` and resumeProducing when it has
        drained, so no per-request producer registration is needed.
        """
        while self._waitingForTransport and not self.lost:
            if self._write_waiter is None:
                self._write_waiter = asyncio.get_running_loop().create_future()
                self.deadline = time.monotonic() + self.factory.send_timeout
            await self._write_waiter


class ListenerFactory(HTTPFactory):
    """HTTP factory for one plane: its request class, and the limits its channels apply."""

    protocol = DirectorChannel

    def __init__(self, server, request_class, *, max_request_body: int, header_timeout: float,
                 send_timeout: float = SEND_TIMEOUT, app=None):
        super().__init__(server)
        self.request_class = request_class
        self.app = app
        self.max_request_body = max_request_body
        self.header_timeout = header_timeout
        self.send_timeout = send_timeout
        self.timeOut = None

    def buildProtocol(self, addr):
        """A bare DirectorChannel: no TLS/ALPN wrapper, so no HTTP/2 switching to proxy."""
        channel = http.HTTPFactory.buildProtocol(self, addr)
        channel.requestFactory = self.request_class
        return channel

    def log(self, request):
        """No Twisted access log: formatting it costs per request and nobody reads it."""


class RequestMixin:
    """Response handling and request rules shared by both planes.

    The response is written through Twisted's Request (which chunks when no
    Content-Length is given); this mixin adds what Twisted and daphne miss: a body
    shorter or longer than its Content-Length, and an application failure after the
    response started, close the connection instead of corrupting or hanging it.
    """

    channel = None  # Twisted deletes the instance attribute once the request is done
    _response_started = False
    _declared_length: int | None = None
    _body_length = 0
    _aborted = False
    log_failures = True  # False where daphne's application checker logs them already

    def requestReceived(self, command, path, version):
        """Twisted's version also parses the query and POST forms into `args` (reading
        a multipart body into memory); the applications parse what they need."""
        self.method, self.uri, self.clientproto = command, path, version
        self.path, _, self.query_string = path.partition(b"?")
        self.content.seek(0)
        self.process()

    def handleContentChunk(self, data):
        """Count body bytes as they arrive: a chunked body over the limit answers 413."""
        channel = self.channel
        if channel.closing:
            return
        self._body_length += len(data)
        if self._body_length > channel.factory.max_request_body:
            channel.reject(413)
            return
        self.content.write(data)

    def refuse(self) -> bool:
        """Answer (and return True) for requests that must never reach an application."""
        if self.method in REJECTED_METHODS:
            self.respond_error(405)
        elif self.uri[:1] != b"/":  # absolute-form, authority-form, OPTIONS *
            self.respond_error(400, close=True)
        elif self.clientproto == b"HTTP/1.1" and len(self.requestHeaders.getRawHeaders(b"host", ())) != 1:
            self.respond_error(400, close=True)
        else:
            try:
                self.path.decode("ascii")
            except UnicodeDecodeError:
                self.respond_error(400, close=True)
            else:
                return False
        return True

    def respond_error(self, status: int, *, close: bool = False):
        """A small plain-text response from the server itself, before any app response."""
        body = error_body(status)
        self._response_started = True
        headers = self.responseHeaders
        self.setResponseCode(status, REASONS[status])
        headers.setRawHeaders(b"Content-Type", [b"text/plain; charset=utf-8"])
        headers.setRawHeaders(b"Content-Length", [b"%d" % len(body)])
        if status == 405:
            headers.setRawHeaders(b"Allow", [ALLOWED_METHODS])
        if close:
            headers.setRawHeaders(b"Connection", [b"close"])
            self.channel.persistent = False
        self.write(body)
        self.finish()

    def start_response(self, message):
        if self._response_started:
            raise ValueError("HTTP response has already been started")
        self._response_started = True
        status = message["status"]
        self.setResponseCode(status)
        headers = self.responseHeaders
        declared = None
        for name, value in message.get("headers", ()):
            headers.addRawHeader(name, value)
            if name.lower() == b"content-length":
                declared = int(value)
        server_name = self.channel.factory.server.server_name
        if server_name and not headers.hasHeader(b"server"):
            headers.setRawHeaders(b"Server", [server_name.encode()])
        if self.method == b"HEAD" or status in NO_BODY_STATUSES or status < 200:
            declared = None
        self._declared_length = declared

    def send_body(self, message):
        """Write a body chunk; finish, or close on a body that disagrees with Content-Length."""
        if not self._response_started:
            raise ValueError("HTTP response has not yet been started but got http.response.body")
        if self.finished or self._disconnected or self._aborted:
            return
        body = message.get("body", b"")
        more = message.get("more_body", False)
        declared = self._declared_length
        if declared is not None and self.sentLength + len(body) > declared:
            self.write(body[: declared - self.sentLength])
            self.abort("the application sent more than its Content-Length")
        elif declared is not None and not more and self.sentLength + len(body) < declared:
            self.write(body)
            self.abort("the application's body is shorter than its Content-Length")
        else:
            self.write(body)
            if not more:
                self.finish()

    def abort(self, why: str):
        """End an incomplete response by closing the connection (no final chunk)."""
        if self._aborted or self.finished or self._disconnected:
            return
        self._aborted = True
        logger.warning("closing the client connection mid-response: %s (%s %s)", why, self.method, self.uri)
        self.channel.close()

    def app_done(self, task: asyncio.Future):
        """Done-callback of the application task: never leave a client waiting."""
        if task.cancelled():
            failure = None
        else:
            failure = task.exception()
            if failure is not None and self.log_failures:
                logger.error("Exception inside application: %s", failure, exc_info=failure)
        if self.finished or self._disconnected or self._aborted:
            return
        if not self._response_started:
            self.respond_error(500)
        else:
            self.abort("the application failed" if failure else "the application ended the response early")


class TrafficRequest(RequestMixin, http.Request):
    """A request to `proxy.app`: lean scope, lazy body, cancellation on disconnect.

    The body, spooled by Twisted (memory under 100 kB, else a temp file), reaches the app
    two ways: `receive()` reads it lazily in BODY_CHUNK pieces, and
    `scope["extensions"]["director"]["body_file"]` hands over the file itself (seek before
    reading; receive() keeps its own position) so retries can replay it without a copy.
    """

    _task = None
    _recv_pos: int | None = 0
    _gone: asyncio.Future | None = None

    def __init__(self, channel, queued=None):
        http.Request.__init__(self, channel, parsePOSTFormSubmission=False)

    def process(self):
        if self.refuse():
            return
        channel = self.channel
        factory = channel.factory
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": self.clientproto[5:].decode(),
            "method": self.method.decode("ascii"),
            "path": unquote(self.path.decode("ascii")),
            "raw_path": self.path,
            "root_path": "",
            "scheme": "http",
            "query_string": self.query_string,
            "headers": [
                (name.lower(), value)
                for name, values in self.requestHeaders.getAllRawHeaders()
                if b"_" not in name  # CVE-2015-0219: X_Foo must not pass as X-Foo
                for value in values
            ],
            "client": channel.scope_client,
            "server": channel.scope_server,
            "extensions": {"director": {"body_file": self.content, "body_length": self._body_length}},
        }
        self._tasks = tasks = factory.server.traffic_tasks
        self._task = task = factory.server.loop.create_task(factory.app(scope, self.receive, self.send))
        tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task):
        self._tasks.discard(task)
        self.app_done(task)

    async def receive(self):
        pos = self._recv_pos
        if pos is not None and not (self.finished or self._disconnected):
            content = self.content
            if pos:
                content.seek(pos)
            chunk = content.read(BODY_CHUNK)
            pos += len(chunk)
            more = pos < self._body_length
            self._recv_pos = pos if more else None
            return {"type": "http.request", "body": chunk, "more_body": more}
        if not (self.finished or self._disconnected):
            if self._gone is None:
                self._gone = asyncio.get_running_loop().create_future()
            await self._gone
        return {"type": "http.disconnect"}

    async def send(self, message):
        kind = message["type"]
        if kind == "http.response.body":
            self.send_body(message)
            channel = self.channel
            if channel is not None and channel._waitingForTransport:
                await channel.drain()
        elif kind == "http.response.start":
            if not (self.finished or self._disconnected):
                self.start_response(message)
        else:
            raise ValueError(f"Cannot handle message type {kind}!")

    def _wake_receiver(self):
        gone = self._gone
        if gone is not None and not gone.done():
            gone.set_result(None)

    def finish(self):
        http.Request.finish(self)
        self._wake_receiver()

    def connectionLost(self, reason):
        """The client left before the response ended: cancel the app at once."""
        http.Request.connectionLost(self, reason)
        task = self._task
        if task is not None and not task.done():
            task.cancel()
        self._wake_receiver()


class ManagementRequest(RequestMixin, WebRequest):
    """daphne's WebRequest (websocket upgrade, daphne's app lifecycle) plus the shared rules."""

    log_failures = False

    def __init__(self, channel, queued=None):
        WebRequest.__init__(self, channel, parsePOSTFormSubmission=False)

    def process(self):
        if self.refuse():
            return None
        self.requestHeaders.removeHeader(b"Daphne-Root-Path")  # never let a client set root_path
        channel = self.channel
        result = WebRequest.process(self)
        if self.transport is None:  # daphne handed the connection to its websocket protocol
            channel.factory.server.channel_closed(channel)
        return result

    def handle_reply(self, message):
        """daphne's hook for send(): same response rules as the traffic plane."""
        if self.finished or self.channel is None:
            return
        kind = message["type"]
        if kind == "http.response.start":
            self.start_response(message)
        elif kind == "http.response.body":
            self.send_body(message)
        else:
            raise ValueError(f"Cannot handle message type {kind}!")

    def handle_exception(self, exception):
        """daphne's checker calls this; `app_done` already answered (or closed)."""

    def basic_error(self, status, status_text, body):
        """daphne's own error page, replaced by a small plain-text response."""
        if self._response_started:
            self.abort(body)
        else:
            self.respond_error(status, close=status == 400)
