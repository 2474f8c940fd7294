"""A small raw-socket HTTP/1.1 client for tests that need exact bytes on the wire.

Send any bytes, read a response head, read its body strictly (Content-Length or chunked;
a body cut short raises `IncompleteBody`), and tell a closed connection from an open one.
Every read has a deadline; nothing here sleeps.

    with RawHTTP.tcp("127.0.0.1", port) as conn:
        conn.send(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
        response = conn.read_response()
        assert response.status == 200 and conn.at_eof() is False
"""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

CRLF = b"\r\n"
HEAD_END = b"\r\n\r\n"
RECV_SIZE = 256 * 1024


class ProtocolError(AssertionError):
    """The server's bytes are not what HTTP/1.1 allows here."""


class ConnectionClosed(ProtocolError):
    """The server closed the connection before a complete head arrived."""

    def __init__(self, message: str, received: bytes = b""):
        super().__init__(f"{message}; received {received[:200]!r}")
        self.received = received


class IncompleteBody(ProtocolError):
    """The connection closed before the body announced by the head was complete."""

    def __init__(self, message: str, received: bytes):
        super().__init__(f"{message} after {len(received)} body bytes")
        self.received = received


@dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | None = None

    def header(self, name: str) -> str | None:
        """The last value of header `name` (case-insensitive), or None."""
        values = self.header_values(name)
        return values[-1] if values else None

    def header_values(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key.lower() == name]

    @property
    def is_chunked(self) -> bool:
        return (self.header("transfer-encoding") or "").lower() == "chunked"


def request(method: str, target: str, headers: dict | list = (), body: bytes = b"", version: str = "HTTP/1.1") -> bytes:
    """Request bytes; `headers` as a dict or (name, value) pairs, sent in that order."""
    pairs = headers.items() if isinstance(headers, dict) else headers
    head = f"{method} {target} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in pairs) + "\r\n"
    return head.encode("latin-1") + body


class RawHTTP:
    """One client connection. `timeout` bounds every single read call."""

    def __init__(self, sock: socket.socket, timeout: float = 5.0):
        self.sock = sock
        self.timeout = timeout
        self.buffer = b""
        self.eof = False

    @classmethod
    def tcp(cls, host: str, port: int, timeout: float = 5.0) -> RawHTTP:
        return cls(socket.create_connection((host, port), timeout=timeout), timeout)

    @classmethod
    def unix(cls, path: str, timeout: float = 5.0) -> RawHTTP:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(path)
        return cls(sock, timeout)

    def __enter__(self) -> RawHTTP:
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    def send(self, data: bytes):
        self.sock.sendall(data)

    # -- low-level reads -----------------------------------------------------------

    def _fill(self, deadline: float) -> bool:
        """Receive more bytes into the buffer; False on EOF. Raises TimeoutError at deadline."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from the server before the deadline")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(RECV_SIZE)
        except socket.timeout:
            raise TimeoutError("no data from the server before the deadline") from None
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def _take(self, count: int) -> bytes:
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def _deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    # -- responses -----------------------------------------------------------------

    def read_head(self, timeout: float | None = None) -> Response:
        """Read one response head; raises ConnectionClosed if the server closes first."""
        deadline = self._deadline(timeout)
        while HEAD_END not in self.buffer:
            if not self._fill(deadline):
                raise ConnectionClosed("connection closed before a complete response head", self.buffer)
        raw = self._take(self.buffer.index(HEAD_END) + len(HEAD_END))
        lines = raw[: -len(HEAD_END)].decode("latin-1").split("\r\n")
        try:
            version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
            response = Response(version, int(status), reason)
        except ValueError:
            raise ProtocolError(f"malformed status line {lines[0]!r}") from None
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise ProtocolError(f"malformed header line {line!r}")
            response.headers.append((name.strip(), value.strip()))
        return response

    def read_body(self, response: Response, timeout: float | None = None) -> bytes:
        """Read the body the head announces, strictly; store and return it.

        Chunked: every chunk, the terminating 0-chunk and the final CRLF must arrive.
        Content-Length: exactly that many bytes. Neither (HTTP/1.0 style): up to EOF.
        Bodiless responses (HEAD is not known here: pass `response.body = b""` yourself).
        """
        deadline = self._deadline(timeout)
        if response.status in (204, 304) or 100 <= response.status < 200:
            body = b""
        elif response.is_chunked:
            body = self._read_chunked(deadline)
        elif response.header("content-length") is not None:
            body = self._read_exactly(int(response.header("content-length")), deadline)
        else:
            body = self.read_until_eof(deadline - time.monotonic())
        response.body = body
        return body

    def _read_exactly(self, count: int, deadline: float) -> bytes:
        while len(self.buffer) < count:
            if not self._fill(deadline):
                raise IncompleteBody(f"connection closed before {count} body bytes", self._take(count))
        return self._take(count)

    def _read_line(self, deadline: float, received: list) -> bytes:
        while CRLF not in self.buffer:
            if not self._fill(deadline):
                raise IncompleteBody("connection closed inside a chunked body", b"".join(received))
        line = self._take(self.buffer.index(CRLF))
        self._take(len(CRLF))
        return line

    def _read_chunked(self, deadline: float) -> bytes:
        chunks: list[bytes] = []
        while True:
            size_line = self._read_line(deadline, chunks)
            try:
                size = int(size_line.split(b";", 1)[0], 16)
            except ValueError:
                raise ProtocolError(f"malformed chunk size line {size_line!r}") from None
            if size == 0:
                while self._read_line(deadline, chunks):  # trailers, then the final CRLF
                    pass
                return b"".join(chunks)
            while len(self.buffer) < size + 2:
                if not self._fill(deadline):
                    raise IncompleteBody("connection closed inside a chunk", b"".join(chunks) + self._take(size))
            chunk = self._take(size)
            if self._take(2) != CRLF:
                raise ProtocolError("chunk data not followed by CRLF")
            chunks.append(chunk)

    def read_response(self, timeout: float | None = None) -> Response:
        response = self.read_head(timeout)
        self.read_body(response, timeout)
        return response

    def read_until_eof(self, timeout: float | None = None) -> bytes:
        """Everything up to the server's close; TimeoutError if it stays open."""
        deadline = self._deadline(timeout)
        while self._fill(deadline):
            pass
        return self._take(len(self.buffer))

    def at_eof(self, timeout: float = 0.5) -> bool:
        """True if the server closed with no further bytes; False if still open after `timeout`.

        Unexpected bytes raise ProtocolError (e.g. a response to a request never sent).
        """
        deadline = time.monotonic() + timeout
        try:
            while self._fill(deadline):
                pass
        except TimeoutError:
            closed = False
        else:
            closed = True
        if self.buffer:
            raise ProtocolError(f"unexpected bytes from the server: {self.buffer[:200]!r}")
        return closed
