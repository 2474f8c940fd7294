"""The async FastCGI client: one RESPONDER request at a time per pooled KEEP_CONN connection.

The request body (STDIN) is written by a task of its own while STDOUT is read, so a backend
that answers before reading the whole body never deadlocks us. STDOUT is parsed as a CGI
response; its body is streamed to `read()` with back-pressure (see fastcgi_connection).

Content-Length from the application is kept and enforced: a shorter body raises
ConnectionClosed from `read()`, a longer one is cut at the declared length. Responses that
carry no body (HEAD, 1xx, 204, 304) keep the header and deliver no body bytes.

php-fpm dedicates a worker to every open connection, so pooled connections are closed after
IDLE_TIMEOUT seconds idle, and a `fresh` request (health check) first closes an idle one.
"""
from __future__ import annotations

import asyncio
import logging

from proxy.addresses import BackendAddress
from proxy.errors import BackendOverloaded, ConnectionClosed, ProtocolError, RequestRejected, UpstreamError
from proxy.upstream import fastcgi_records as fr
from proxy.upstream.base import RequestBody, Timeouts, Upstream, UpstreamRequest, UpstreamResponse
from proxy.upstream.cgi import CGIHeadParser, encoded_params
from proxy.upstream.connect import open_connection
from proxy.upstream.connection_budget import ConnectionBudget
from proxy.upstream.fastcgi_connection import FastCGIConnection
from proxy.upstream.pool import ConnectionPool

logger = logging.getLogger("director.fastcgi")

REQUEST_ID = 1
SERVER_SOFTWARE = "Director"
STDERR_LOG_LIMIT = 8 * 1024
IDLE_TIMEOUT = 2.0  # seconds a pooled connection (= a php-fpm worker) may stay idle
INLINE_BODY_LIMIT = 64 * 1024  # bodies up to this size go out with the params in one write
_REJECTIONS = {fr.CANT_MPX_CONN: "cannot multiplex connections (FCGI_CANT_MPX_CONN)",
               fr.UNKNOWN_ROLE: "does not know the RESPONDER role (FCGI_UNKNOWN_ROLE)",
               fr.OVERLOADED: "overloaded (FCGI_OVERLOADED)"}
BEGIN_RESPONDER = fr.encode_begin_request(REQUEST_ID, fr.RESPONDER, fr.KEEP_CONN)
END_OF_STDIN = fr.encode_record(fr.STDIN, REQUEST_ID)


class FastCGIUpstream(Upstream):
    """Client of one FastCGI backend (`fastcgi://H:P`, `fastcgi://[V6]:P`, `fastcgi+unix://`)."""

    def __init__(self, address: BackendAddress, *, log_context: str = "", server_software: str = SERVER_SOFTWARE,
                 max_idle: int = 64, idle_timeout: float = IDLE_TIMEOUT):
        super().__init__(address)
        self.log_context = log_context  # e.g. "director app backend php1", set by the dispatcher
        self.server_software = server_software
        self.idle_timeout = idle_timeout
        self._pool = ConnectionPool(self._connect, max_idle=max_idle, idle_timeout=idle_timeout)

    @property
    def label(self) -> str:
        return f"{self.log_context} ({self.address.url})" if self.log_context else self.address.url

    async def _connect(self, timeout: float) -> FastCGIConnection:
        label, loop = self.address.url, asyncio.get_running_loop()
        _, conn = await open_connection(self.address, lambda: FastCGIConnection(label, loop), timeout)
        return conn

    async def send(self, request: UpstreamRequest, timeouts: Timeouts, *, fresh: bool = False,
                   notify_abort: bool = False) -> FastCGIResponse:
        # BadRequestPath before any I/O. `fresh` requests are the health checks (see base.py).
        params = encoded_params(request, server_software=self.server_software, health_check=fresh)
        preamble = BEGIN_RESPONDER + fr.params_stream(REQUEST_ID, params)
        no_body = request.method == "HEAD"
        conn = None if fresh else self._pool.take_idle()
        if conn is None or conn.has_unread_bytes:
            if conn is not None:
                self._pool.discard(conn)
            conn, reused = await self._acquire(timeouts.connect, fresh)
        else:
            reused = True
            conn.busy()
        response = FastCGIResponse(self, conn, timeouts, no_body, notify_abort)
        try:
            await response.start(preamble, request.body)
        except ConnectionClosed:
            if not reused or response.received_anything:
                raise
            # A kept-alive connection the backend had closed: it never saw this request.
            conn, _ = await self._pool.acquire(timeouts.connect, reuse=False)
            response = FastCGIResponse(self, conn, timeouts, no_body, notify_abort)
            await response.start(preamble, request.body)
        return response

    async def _acquire(self, connect_timeout: float, fresh: bool) -> tuple[FastCGIConnection, bool]:
        conn, reused = await self._pool.acquire(connect_timeout)
        if reused and (fresh or conn.has_unread_bytes):
            # `fresh` (health checks) closes an idle connection first: with php-fpm it may
            # hold the very worker that the new connection would otherwise wait for.
            self._pool.discard(conn)
            conn, reused = await self._pool.acquire(connect_timeout, fresh=fresh, reuse=False)
        elif fresh:
            conn.reusable = False  # a new connection, closed after this request
        conn.busy()
        return conn, reused

    def count_connections(self, node, limit: int) -> None:
        """Under --workers: count this client's connections in the node (a NodeSlots) and keep
        the node's within `limit`, the backend's capacity (0: no limit); see connection_budget."""
        budget = self._pool.budget
        if budget is None:
            self._pool.budget = ConnectionBudget(node, self.address.url, limit, self._pool.open_count)
        else:
            budget.limit = limit

    def trim_idle(self) -> None:
        """Another worker needs a php-fpm child: close idle connections while the node is over."""
        self._pool.trim()

    async def close(self) -> None:
        await self._pool.close()

    def stats(self) -> dict:
        return self._pool.stats()


class FastCGIResponse(UpstreamResponse):
    """The response of one exchange; owns the connection until released."""

    def __init__(self, upstream: FastCGIUpstream, conn: FastCGIConnection, timeouts: Timeouts, no_body: bool,
                 notify_abort: bool = False):
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.received_anything = False
        self._upstream = upstream
        self._conn = conn
        self._timeouts = timeouts
        self._no_body = no_body
        self._notify_abort = notify_abort  # cancelled before the head: ABORT_REQUEST first
        self._writer: asyncio.Task | None = None
        self._stdout_seen = False
        self._pending = b""
        self._remaining: int | None = None  # declared Content-Length still to deliver
        self._done = False  # END_REQUEST(REQUEST_COMPLETE) received
        self._released = False
        self._stderr_logged = 0
        self._stderr_dropped = 0

    # -- exchange --------------------------------------------------------------------------
    async def start(self, preamble: bytes, body: RequestBody) -> None:
        """Write the request, start streaming STDIN, and read until the CGI head is parsed."""
        try:
            if not body.length:
                self._conn.write_nowait([preamble, END_OF_STDIN])
            elif body.length <= INLINE_BODY_LIMIT:  # one write, nothing to wait for: no writer task
                stdin = fr.encode_stream(fr.STDIN, REQUEST_ID, body.read_all())
                self._conn.write_nowait([preamble, *stdin, END_OF_STDIN])
            else:
                await self._conn.write([preamble], self._timeouts.write)
                self._writer = asyncio.create_task(self._write_stdin(body))
            parser = CGIHeadParser()
            while True:
                data = await self._next_stdout()
                if data is None:
                    parser.finish()
                head = parser.feed(data)
                if head is not None:
                    break
        except asyncio.CancelledError:
            # The client went away while the application ran: with on_client_abort=notify
            # tell it (a long PHP script stops at its next output) before giving up.
            await self.abort(notify=self._notify_abort)
            raise
        except BaseException:
            self._discard()
            raise
        self.status, self.reason, self.headers = head.status, head.reason, head.headers
        if self._no_body or head.status < 200 or head.status in (204, 304):
            self._no_body = True
        else:
            self._remaining = head.content_length
            self._pending = self._trim(parser.rest)

    async def _write_stdin(self, body: RequestBody) -> None:
        try:
            async for chunk in body.chunks(fr.MAX_STREAM_CHUNK):
                await self._conn.write(fr.encode_record_parts(fr.STDIN, REQUEST_ID, chunk), self._timeouts.write)
            await self._conn.write([END_OF_STDIN], self._timeouts.write)
        except UpstreamError as exc:
            self._conn.fail(exc)
        except Exception as exc:  # noqa: BLE001 - e.g. the spooled body file failed: end the exchange
            self._conn.fail(UpstreamError(f"cannot send the request body: {exc!r}"))

    async def _next_stdout(self) -> bytes | None:
        """Content of the next non-empty STDOUT record; None after END_REQUEST(complete)."""
        conn = self._conn
        while True:
            record = conn.pop_record()
            if record is None:  # nothing queued: wait, then look again
                if not await conn.wait_readable(self._timeouts.read):
                    raise ConnectionClosed(f"{self._upstream.label} closed the connection before END_REQUEST"
                                           + (" (truncated record)" if conn.truncated else ""))
                continue
            self.received_anything = True
            if record.request_id != REQUEST_ID:
                raise ProtocolError(f"{self._upstream.label} sent a type {record.type} record for request "
                                    f"{record.request_id}, expected {REQUEST_ID}")
            if record.type == fr.STDOUT:
                if record.content:
                    self._stdout_seen = True
                    return record.content
            elif record.type == fr.STDERR:
                self._log_stderr(record.content)
            elif record.type == fr.END_REQUEST:
                self._end_request(record.content)
                return None
            else:
                raise ProtocolError(f"{self._upstream.label} sent an unexpected record of type {record.type}")

    def _end_request(self, content: bytes) -> None:
        try:
            _, protocol_status = fr.decode_end_request(content)
        except fr.RecordFormatError as exc:
            raise ProtocolError(f"{self._upstream.label}: {exc}") from None
        if protocol_status == fr.REQUEST_COMPLETE:
            if self._writer is not None and not self._writer.done():
                self._writer.cancel()  # the application answered without reading all of STDIN
                self._conn.reusable = False
            return None
        description = _REJECTIONS.get(protocol_status, f"ended the request with protocol status {protocol_status}")
        if protocol_status == fr.OVERLOADED and not self._stdout_seen:
            raise BackendOverloaded(f"{self._upstream.label} is {description}")
        raise RequestRejected(f"{self._upstream.label} {description}")

    def _log_stderr(self, content: bytes) -> None:
        room = STDERR_LOG_LIMIT - self._stderr_logged
        shown = content[:max(room, 0)]
        self._stderr_dropped += len(content) - len(shown)
        if shown:
            self._stderr_logged += len(shown)
            text = shown.decode("utf-8", "replace").rstrip()
            logger.error("%s stderr: %s", self._upstream.label, text)

    def _trim(self, data: bytes) -> bytes:
        if self._remaining is None:
            return data
        if len(data) > self._remaining:
            logger.warning("%s sent more body than its Content-Length; the excess is dropped", self._upstream.label)
            data = data[:self._remaining]
        self._remaining -= len(data)
        return data

    # -- UpstreamResponse ------------------------------------------------------------------
    def ready(self) -> bytes | None:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        return b"" if self._done else None

    async def read(self) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        while not self._done:
            if self._released:
                raise ConnectionClosed("response already released")
            try:
                data = await self._next_stdout()
                if data is None:
                    self._finish()
                    return b""
            except asyncio.CancelledError:
                raise  # the caller decides: release() closes, abort(notify=True) ends the request
            except BaseException:
                self._discard()
                raise
            if not self._no_body:
                data = self._trim(data)
                if data:
                    return data
        return b""

    @property
    def body_complete(self) -> bool:
        return self._done or (not self._released and self._conn.end_queued)

    def _finish(self) -> None:
        if self._remaining:
            raise ConnectionClosed(f"{self._upstream.label} ended the body {self._remaining} bytes "
                                   "short of its Content-Length")
        self._done = True
        self.release()

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._summarise_stderr()
        if self._done and (self._writer is None or self._writer.done()):
            if self._conn.reusable:
                self._conn.idle(self._upstream.idle_timeout)
            self._upstream._pool.release(self._conn)
            return
        if self._writer is not None:
            self._writer.cancel()
        self._upstream._pool.discard(self._conn)

    def _discard(self) -> None:
        """Close the connection. A cancelled writer never writes again (it is suspended
        between whole records), so the body file is free for a retry at once."""
        self._conn.reusable = False
        self.release()

    async def abort(self, notify: bool = False) -> None:
        if self._released:
            return
        if not notify or self._done:
            self._discard()
            return
        if self._writer is not None:
            self._writer.cancel()  # STDIN stays unfinished; ABORT_REQUEST follows a whole record
        # The backend may leave ABORT_REQUEST unread (php-fpm does): never reuse this one.
        self._conn.reusable = False
        try:
            await self._conn.write([fr.encode_record(fr.ABORT_REQUEST, REQUEST_ID)], self._timeouts.write)
            async with asyncio.timeout(self._timeouts.read):
                while await self._next_stdout() is not None:
                    pass
            self._done = True
        except (UpstreamError, TimeoutError) as exc:
            logger.info("%s: no END_REQUEST after ABORT_REQUEST: %s", self._upstream.label, exc)
        self.release()

    def _summarise_stderr(self) -> None:
        if self._stderr_dropped:
            logger.error("%s stderr: %d more bytes not logged", self._upstream.label, self._stderr_dropped)
