"""Director's request objects: what each ASGI application sees, and how its response
reaches the client.

- `RequestMixin` owns the response side shared by both planes: message order, short and
  over-long bodies, and a failure after the response started, which closes the
  connection rather than leaving the client hanging or corrupting the next response.
  A traffic request may also hand its connection over to another protocol after a 101
  (`take_over`, for WebSocket tunnels).
- `TrafficRequest` is the lean hot path for `proxy.app`; `ManagementRequest` keeps daphne's
  `WebRequest` (and so its websocket upgrade) for the Django management app.

An application failure is logged with its traceback, unless the exception's class sets
`expected_failure = True` (the proxy's backend failures): then the line the server writes
when it closes the connection says all there is to say.
"""
from __future__ import annotations

import asyncio
import logging
import re
import tempfile
from io import BytesIO
from urllib.parse import unquote

from daphne.http_protocol import WebRequest
from twisted.web import http
from twisted.web.http_headers import Headers

from proxy.error_responses import CONTENT_TYPE, REASONS, error_body
from proxy.headers import FIELD_CONTROLS
from proxy.request_fields import LeanRequestMixin, ParsedFieldsMixin
from proxy.request_record import CLIENT_GONE, RequestRecord
from proxy.response_head import NO_BODY_STATUSES, RawHeadMixin

logger = logging.getLogger("director.server")

BODY_CHUNK = 64 * 1024  # size of the http.request messages receive() yields
SPOOL_LIMIT = 100_000  # request bodies up to this size stay in memory (Twisted's threshold)
INVALID_VALUE = re.compile(rb"[" + FIELD_CONTROLS + rb"]")
REJECTED_METHODS = frozenset({b"CONNECT", b"TRACE"})
# Methods are case-sensitive (RFC 9110 9.1), so `trace` is not TRACE but an unknown method
# no backend expects: like nginx, only upper-case letters, "-" and "_" are accepted (400).
VALID_METHOD = re.compile(rb"[A-Z_-]+")
COMMON_METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"})  # valid, no need to look
# The request target, path and query, is visible ASCII only (RFC 9112 3.2, RFC 3986): a DEL
# or a raw byte >= 0x80 is refused (400), not forwarded (Twisted lets 0x7f-0xb0 through).
INVALID_TARGET = re.compile(rb"[^\x21-\x7e]")
ALLOWED_METHODS = b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
# The ASGI scope's constant parts, made once (the traffic app only reads them).
ASGI = {"version": "3.0"}
HTTP_VERSIONS = {b"HTTP/1.1": "1.1", b"HTTP/1.0": "1.0"}
METHOD_NAMES = {method: method.decode("ascii") for method in COMMON_METHODS}
UNDERSCORE = ord("_")  # looked for as an int: see proxy.response_head.LF


class RequestMixin(ParsedFieldsMixin):
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
    lost = False  # the client connection is gone
    target_checked = False  # the head reader checked the target's characters (proxy.server_head)
    log_failures = True  # False where daphne's application checker logs them already

    def requestReceived(self, command, path, version):
        """Twisted's version also parses the query and POST forms into `args` (reading
        a multipart body into memory); the applications parse what they need."""
        self.method, self.uri, self.clientproto = command, path, version
        self.path, _, self.query_string = path.partition(b"?")
        self.content.seek(0)
        self.process()

    def gotLength(self, length):
        """Spool the body like Twisted (memory under SPOOL_LIMIT, else a temp file), but
        a chunked body, of unknown length, starts in memory too instead of on disk."""
        if length is not None and length >= SPOOL_LIMIT:
            self.content = tempfile.TemporaryFile()
        elif length is None:
            self.content = tempfile.SpooledTemporaryFile(SPOOL_LIMIT)
        else:
            self.content = BytesIO()

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

    def connectionLost(self, reason):
        self.lost = True
        super().connectionLost(reason)

    def refuse(self) -> bool:
        """Answer (and return True) for requests that must never reach an application."""
        if self.method in REJECTED_METHODS:
            self.respond_error(405)
        elif self.uri[:1] != b"/":  # absolute-form, authority-form, OPTIONS *
            self.respond_error(400, close=True)
        elif self.clientproto == b"HTTP/1.1" and len(self.field_values(b"host")) != 1:
            self.respond_error(400, close=True)
        elif ((not self.target_checked and INVALID_TARGET.search(self.uri))
              or (self.method not in COMMON_METHODS and not VALID_METHOD.fullmatch(self.method))):
            self.respond_error(400, close=True)
        else:
            return False
        return True

    def respond_error(self, status: int, *, close: bool = False):
        """A small plain-text response from the server itself, replacing whatever response
        the application started but had not written yet."""
        body = error_body(status)
        self._response_started = True
        self.responseHeaders = headers = Headers()
        self.setResponseCode(status, REASONS[status])
        headers.setRawHeaders(b"Content-Type", [CONTENT_TYPE])
        headers.setRawHeaders(b"Content-Length", [b"%d" % len(body)])
        if status == 405:
            headers.setRawHeaders(b"Allow", [ALLOWED_METHODS])
        self.add_own_headers(headers)
        if close:
            self.channel.persistent = False
        if not self.channel.persistent:
            headers.setRawHeaders(b"Connection", [b"close"])
        self.write(body)
        self.finish()

    def own_fields(self) -> tuple:
        """(name, value) fields the server adds to every response of this plane (none here)."""
        return ()

    def add_own_headers(self, headers: Headers) -> None:
        for name, value in self.own_fields():
            headers.setRawHeaders(name, [value])

    def response_starts(self) -> None:
        """Once per request: the application's http.response.start."""
        if self._response_started:
            raise ValueError("HTTP response has already been started")
        self._response_started = True

    def body_rule(self, status: int, declared: int | None) -> bool:
        """Whether this response has no body (HEAD, 1xx, 204, 304); else the Content-Length
        `declared` (or None) that send_body holds the body to."""
        no_body = self.method == b"HEAD" or status in NO_BODY_STATUSES or status < 200
        self._declared_length = None if no_body else declared
        return no_body

    def start_response(self, message):
        self.response_starts()
        status = message["status"]
        self.setResponseCode(status)
        headers = self.responseHeaders
        declared = None
        for name, value in message.get("headers", ()):
            headers.addRawHeader(name, value)
            if name.lower() == b"content-length":
                declared = int(value)
        server_field = self.channel.factory.server.server_field
        if server_field and not headers.hasHeader(b"server"):
            headers.setRawHeaders(b"Server", [server_field])
        self.add_own_headers(headers)
        self.body_rule(status, declared)

    def send_body(self, message):
        """Write a body chunk; finish, or close on a body that disagrees with Content-Length."""
        if not self._response_started:
            raise ValueError("HTTP response has not yet been started but got http.response.body")
        if self.finished or self.lost or self._aborted:
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
        if self._aborted or self.finished or self.lost:
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
            expected = getattr(failure, "expected_failure", False)  # abort() below logs one line
            if failure is not None and not expected and self.log_failures:
                logger.error("Exception inside application: %s", failure, exc_info=failure)
        if self.finished or self.lost or self._aborted:
            return
        if not self.startedWriting:  # nothing on the wire yet: a clean answer is still possible
            if task.cancelled():  # shutdown_timeout passed: the request may have reached a backend
                self.channel.close()
            else:
                self.respond_error(500)
        else:
            self.abort(f"backend failed: {failure}" if expected
                       else "the application failed" if failure else "the application ended the response early")


class TrafficRequest(RawHeadMixin, RequestMixin, LeanRequestMixin, http.Request):
    """A request to `proxy.app`: lean scope, lazy body, cancellation on disconnect.

    The body, spooled as it arrives (memory up to SPOOL_LIMIT, else a temp file), reaches
    the app two ways: `receive()` reads it lazily in BODY_CHUNK pieces, and
    `scope["extensions"]["director"]["body_file"]` hands over the file itself (seek before
    reading; receive() keeps its own position) so retries can replay it without a copy.
    """

    _task = None
    _recv_pos: int | None = 0
    _gone: asyncio.Future | None = None
    record: RequestRecord | None = None
    _request_done = None  # the application's request_done(record), if it has one

    def parseCookies(self):
        """Nothing to do: Twisted would parse Cookie into `received_cookies`, which nothing
        here reads (the app reads the header itself, and only when a route asks for it)."""

    def process(self):
        self.record = record = RequestRecord(None)
        self._request_done = self.channel.factory.request_done
        if self.refuse():
            return
        fields = self.parsed_fields
        if fields is not None:  # CVE-2015-0219: X_Foo must not pass as X-Foo
            headers = [field for field in fields if UNDERSCORE not in field[0]]
        else:
            headers = self._scope_headers()
            if headers is None:
                self.respond_error(400, close=True)
                return
        channel = self.channel
        factory = channel.factory
        path = self.path.decode("ascii")
        method = self.method
        scope = {
            "type": "http",
            "asgi": ASGI,
            "http_version": HTTP_VERSIONS.get(self.clientproto) or self.clientproto[5:].decode(),
            "method": METHOD_NAMES.get(method) or method.decode("ascii"),
            "path": unquote(path) if "%" in path else path,
            "raw_path": self.path,
            "root_path": "",
            "scheme": channel.scheme,
            "query_string": self.query_string,
            "headers": headers,
            "client": channel.scope_client,
            "server": channel.scope_server,
            "extensions": {"director": {"body_file": self.content, "body_length": self._body_length,
                                        "take_over": self.take_over, "record": record}},
        }
        record.scope = scope
        self._tasks = tasks = factory.server.traffic_tasks
        self._task = task = factory.server.loop.create_task(factory.app(scope, self.receive, self.send))
        tasks.add(task)
        task.add_done_callback(self._task_done)

    def _scope_headers(self) -> list | None:
        """The ASGI scope's headers from Twisted's parse: lower-case names, no name with an
        underscore (CVE-2015-0219: X_Foo must not pass as X-Foo); None for a value holding a
        control character other than HTAB."""
        headers = []
        for name, values in self.requestHeaders.getAllRawHeaders():
            if UNDERSCORE in name:
                continue
            name = name.lower()
            for value in values:
                if INVALID_VALUE.search(value):
                    return None
                headers.append((name, value))
        return headers

    def _task_done(self, task):
        self._tasks.discard(task)
        self.app_done(task)

    async def receive(self):
        pos = self._recv_pos
        if pos is not None and not (self.finished or self.lost):
            content = self.content
            content.seek(pos)  # the app may have read body_file in between
            chunk = content.read(BODY_CHUNK)
            pos += len(chunk)
            more = pos < self._body_length
            self._recv_pos = pos if more else None
            return {"type": "http.request", "body": chunk, "more_body": more}
        if not (self.finished or self.lost):
            if self._gone is None:
                self._gone = asyncio.get_running_loop().create_future()
            await self._gone
        return {"type": "http.disconnect"}

    async def send(self, message):
        kind = message["type"]
        if kind == "http.response.body":
            self.send_body(message)
            channel = self.channel
            if channel is not None and channel.write_blocked:
                await channel.drain()
        elif kind == "http.response.start":
            if not (self.finished or self.lost):
                self.start_response(message)
        else:
            raise ValueError(f"Cannot handle message type {kind}!")

    def take_over(self, head: bytes, protocol) -> bytes:
        """The app's way out of HTTP (scope extension "take_over"): write `head`, a complete
        101 response, and hand the client connection to the Twisted `protocol`; returns the
        bytes the client sent after this request. The request counts as finished here: its
        record (access log, metrics) says 101, with the time the handshake took."""
        if self.finished or self.lost or self._response_started:
            raise ConnectionError("the client connection is gone or already answered")
        self._response_started = True
        self.finished = True  # app_done has nothing left to answer
        record = self.record
        if record is not None:  # the 101 carries the request id too, and is logged now
            head = head[:-2] + b"X-Request-ID: " + record.ensure_request_id() + b"\r\n\r\n"
        self.code = 101
        buffered = self.channel.hand_over(head, protocol)
        self._record_done(101)
        return buffered

    def _wake_receiver(self):
        gone = self._gone
        if gone is not None and not gone.done():
            gone.set_result(None)

    def own_fields(self) -> tuple:
        """Every traffic response carries the request's X-Request-ID (SPEC §12)."""
        record = self.record
        return () if record is None else ((b"X-Request-ID", record.ensure_request_id()),)

    def finish(self):
        record = self.record
        if record is not None and record.scope is None:  # refused before the application saw it
            record.scope = self._refused_scope()
        super().finish()
        self._wake_receiver()
        self._record_done(self.code)

    def connectionLost(self, reason):
        """The client left before the response ended: cancel the app at once."""
        super().connectionLost(reason)
        task = self._task
        if task is not None and not task.done():
            task.cancel()
        self._wake_receiver()
        self._record_done(self.code if self._response_started else CLIENT_GONE)

    def _record_done(self, status: int) -> None:
        """Finish the request's record once and hand it to the application's `request_done`."""
        record = self.record
        if record is None or not record.finish(status, self._body_length, self.sentLength):
            return
        done = self._request_done
        if done is not None:
            try:
                done(record)
            except Exception:  # noqa: BLE001 - logging or metrics must never break a response
                logger.exception("request_done failed")
        record.scope = None  # the scope holds the record: no cycle left for the garbage collector

    def _refused_scope(self) -> dict:
        """What the access log reads of a request the server answered itself."""
        return {
            "method": self.method.decode("latin-1"), "raw_path": self.path, "query_string": self.query_string,
            "http_version": self.clientproto[5:].decode("latin-1"), "client": self.channel.scope_client,
            "headers": [(name.lower(), value) for name, values in self.requestHeaders.getAllRawHeaders()
                        for value in values],
        }


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
        if self.startedWriting:
            self.abort(body)
        else:
            self.respond_error(status, close=status == 400)
