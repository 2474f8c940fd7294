"""The interface every upstream client (HTTP, FastCGI) implements, and what it exchanges.

One `Upstream` object exists per backend address and owns that backend's connection pool.
The dispatcher builds an `UpstreamRequest` once per client request and may send it several
times (retries); `RequestBody` replays the spooled body from the start on every attempt.
"""
from __future__ import annotations

import abc
import io
from dataclasses import dataclass, field
from typing import AsyncIterator

from proxy.addresses import BackendAddress

BODY_CHUNK = 64 * 1024
MAX_HEAD = 64 * 1024  # an upstream response head (HTTP status line + fields, or CGI headers)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})  # always framed upstream, even when empty
# Methods a request may be sent again with after a failure (RFC 9110 9.2.2).
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Idle timeouts of one upstream attempt, in seconds (SPEC §5)."""

    connect: float = 10.0
    read: float = 120.0
    write: float = 10.0


class RequestBody:
    """A fully received request body (memory or spooled temp file) that can be replayed."""

    __slots__ = ("_file", "length")

    EMPTY: "RequestBody"

    def __init__(self, file: io.IOBase | bytes | None, length: int | None = None):
        if file is None or isinstance(file, (bytes, bytearray)):
            data = bytes(file or b"")
            file, length = io.BytesIO(data), len(data)
        self._file = file
        self.length = length if length is not None else _measure(file)

    async def chunks(self, size: int = BODY_CHUNK) -> AsyncIterator[bytes]:
        """The body from its first byte, in chunks of at most `size` bytes."""
        if not self.length:
            return
        self._file.seek(0)
        remaining = self.length
        while remaining > 0:
            chunk = self._file.read(min(size, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk

    def read_all(self) -> bytes:
        self._file.seek(0)
        return self._file.read(self.length)


def _measure(file) -> int:
    file.seek(0, io.SEEK_END)
    size = file.tell()
    file.seek(0)
    return size


RequestBody.EMPTY = RequestBody(b"")


@dataclass(slots=True)
class UpstreamRequest:
    """One client request as the upstream clients see it.

    `headers` are final for HTTP: hop-by-hop headers removed, X-Forwarded-*/Via added,
    names lower-case bytes; no Content-Length or Transfer-Encoding (the client frames the
    body itself from `body.length`). The FastCGI client turns them into HTTP_* params.
    """

    method: str
    target: bytes  # raw path and query, byte for byte as received
    headers: list[tuple[bytes, bytes]]
    body: RequestBody = field(default_factory=lambda: RequestBody.EMPTY)
    client: tuple[str, int] | None = None  # peer address of the client
    server: tuple[str, int] | None = None  # our listener's address
    https: bool = False  # client used TLS (per trusted X-Forwarded-Proto)
    http_version: str = "1.1"
    host: str = ""  # Host header value (SERVER_NAME)
    document_root: str | None = None  # route setting, FastCGI only
    script_filename: str | None = None  # route setting, FastCGI only


class UpstreamResponse(abc.ABC):
    """A response whose head has arrived; the body is pulled chunk by chunk.

    `headers` are the backend's, names lower-case bytes, with Transfer-Encoding and
    Connection-level framing already consumed (Content-Length kept only when the body
    really is length-delimited and will be delivered exactly).
    """

    status: int
    headers: list[tuple[bytes, bytes]]

    @abc.abstractmethod
    async def read(self) -> bytes:
        """Next body chunk; b"" once the body is complete. Raises UpstreamError on failure
        (timeout, premature close, malformed framing)."""

    def ready(self) -> bytes | None:
        """What `read()` would return now without waiting (a chunk, or b"" at the end), or
        None when it would wait or fail: then await `read()`. A request's body usually
        arrives with its head, so this spares the coroutine. A wrapper that intercepts
        `read()` keeps this default."""
        return None

    @abc.abstractmethod
    def release(self) -> None:
        """Done with the response. A connection whose body was read to the end and can be
        reused goes back to the pool; any other is closed. Idempotent."""

    @abc.abstractmethod
    async def abort(self, notify: bool = False) -> None:
        """The client went away: close the connection. With `notify`, FastCGI sends
        ABORT_REQUEST and reads until END_REQUEST before releasing; HTTP just closes."""

    @property
    def body_complete(self) -> bool:
        """True when the rest of the body has arrived: `read()` returns what is left, then
        b"", without waiting. False when more is to come (or unknown)."""
        return False

    async def drain(self) -> None:
        """Read and discard the rest of the body, then release (on_client_abort=ignore)."""
        try:
            while await self.read():
                pass
        finally:
            self.release()


class Upstream(abc.ABC):
    """The client for one backend address, owning its keep-alive pool."""

    def __init__(self, address: BackendAddress):
        self.address = address

    @abc.abstractmethod
    async def send(self, request: UpstreamRequest, timeouts: Timeouts, *, fresh: bool = False,
                   notify_abort: bool = False) -> UpstreamResponse:
        """Send the request and return once the response head has arrived.

        Raises an `proxy.errors.UpstreamError` subclass. `fresh` uses a new connection that
        is closed afterwards (health checks). The request body is written while the response
        is being read, so a backend that answers early never deadlocks us. When the send is
        cancelled before the head, the connection is closed; with `notify_abort` FastCGI
        first sends ABORT_REQUEST and reads until END_REQUEST (HTTP has no such message).
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Close idle pooled connections; in-use ones close when released."""

    def stats(self) -> dict:
        """Pool figures for tests and metrics: {"idle": n, "in_use": n, "opened": n}."""
        return {}
