"""Real HTTP backends for tests: asyncio servers on loopback (TCP v4/v6 or UNIX), run in a
background thread with their own event loop, started and stopped by context managers.

    with http_backend(name="b1") as b:          # well-behaved, keep-alive
        b.url, b.port, b.address, b.requests_seen, b.connections_accepted
    with http_backend(ssl=context) as b:        # HTTPS (an ssl.SSLContext, see tests.support.certs)
        b.url == "https://127.0.0.1:PORT"
    with misbehaving_backend("die-mid-chunked") as b:  # see MISBEHAVIOURS
        ...

Routes of `http_backend` (every answer carries `x-backend: <name>` and
`x-connection: <n>`, the 1-based ordinal of the TCP connection it came on):
  /                      200, body = name
  /echo                  200, body = request body; x-body-length, x-body-sha256
  /headers               200, JSON object of the request headers (lists of values)
  /status/NNN            that status (no body for 1xx/204/304); ?early=100 sends a 100 first
  /bytes?size=N&framing=length|chunked|close&chunk=K&interval=S
                         N pattern bytes (PATTERN repeated) in writes of K bytes, S s apart
  /slow?delay=S          answers after S seconds
  /reject                413 + Connection: close at once, without reading the request body
  /close                 200 with Connection: close, then closes
Run standalone (for benchmarks): python -m tests.support.backends --port N [--name b1]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import socket
import struct
import threading
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from proxy.addresses import BackendAddress, BackendTLS

PATTERN = bytes(range(256)) * 256  # 64 KiB of every byte value
READ_CHUNK = 64 * 1024
HEAD_LIMIT = 64 * 1024
LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST

REASONS = {100: "Continue", 200: "OK", 204: "No Content", 304: "Not Modified", 404: "Not Found",
           413: "Content Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}


def pattern_bytes(size: int, offset: int = 0) -> bytes:
    """`size` bytes of the repeating PATTERN starting at `offset`: what /bytes sends."""
    start = offset % len(PATTERN)
    out = bytearray()
    while len(out) < size:
        out += PATTERN[start:start + size - len(out)]
        start = 0
    return bytes(out)


@dataclass
class SeenRequest:
    method: str
    target: str
    headers: dict[str, list[str]]
    body_length: int
    body_sha256: str
    connection: int


class _ServerThread:
    """An asyncio server on its own loop in a daemon thread; `handle(reader, writer, n)`."""

    def __init__(self, host: str | None, port: int, path: str | None, ssl=None):
        self.host, self.port, self.path = host, port, path
        self.ssl = ssl  # server ssl.SSLContext: HTTPS
        self.loop = asyncio.new_event_loop()
        self.connections_accepted = 0
        self.open_connections = 0
        self._tasks: set[asyncio.Task] = set()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="test-backend")

    def start(self):
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def _run(self):
        asyncio.set_event_loop(self.loop)
        try:
            self.server = self.loop.run_until_complete(self._listen())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.close()

    async def _listen(self):
        if self.path is not None:
            return await asyncio.start_unix_server(self._accept, self.path)
        server = await asyncio.start_server(self._accept, self.host, self.port, reuse_address=True, ssl=self.ssl)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _accept(self, reader, writer):
        self.connections_accepted += 1
        self.open_connections += 1
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await self.handle(reader, writer, self.connections_accepted)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            self.open_connections -= 1
            writer.transport.abort() if _must_reset(writer) else writer.close()

    async def handle(self, reader, writer, number):  # pragma: no cover - overridden
        raise NotImplementedError

    def call(self, function, *args):
        """Run `function(*args)` on the server loop and return its result."""
        async def run():
            return function(*args)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def stop(self):
        if not self._thread.is_alive():
            return

        async def shutdown():
            self.server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if hasattr(self.server, "abort_clients"):  # 3.13: a TLS close would wait for the peer's close_notify
                self.server.abort_clients()
            await self.server.wait_closed()
        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    @property
    def address(self) -> BackendAddress:
        if self.path is not None:
            return BackendAddress("http", path=self.path)
        return BackendAddress("http", host=self.host, port=self.port, tls=BackendTLS() if self.ssl else None)

    @property
    def url(self) -> str:
        return self.address.url


def _must_reset(writer) -> bool:
    return getattr(writer, "reset_on_close", False)


def reset(writer) -> None:
    """Make the connection end with RST instead of FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family != socket.AF_UNIX:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
    writer.reset_on_close = True


async def read_head(reader) -> tuple[str, str, dict[str, list[str]]] | None:
    """Request line and headers, or None at a clean EOF between requests."""
    try:
        block = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise
    lines = block[:-4].decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return method, target, headers


async def read_body(reader, headers, keep: bool):
    """(length, sha256 hex, body bytes if `keep` else None) of a Content-Length or chunked body."""
    digest, kept, total = hashlib.sha256(), [], 0

    async def take(n):
        nonlocal total
        while n:
            data = await reader.read(min(n, READ_CHUNK))
            if not data:
                raise asyncio.IncompleteReadError(b"", n)
            n -= len(data)
            total += len(data)
            digest.update(data)
            if keep:
                kept.append(data)

    if "chunked" in ",".join(headers.get("transfer-encoding", [])):
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await take(size)
            await reader.readexactly(2)
        while await reader.readuntil(b"\r\n") != b"\r\n":
            pass
    else:
        await take(int(headers.get("content-length", ["0"])[0]))
    return total, digest.hexdigest(), b"".join(kept) if keep else None


class Backend(_ServerThread):
    """The well-behaved keep-alive backend (routes in the module docstring)."""

    def __init__(self, name, host, port, path, requests_per_connection, drop, ssl=None):
        super().__init__(host, port, path, ssl)
        self.name = name
        self.requests_seen: list[SeenRequest] = []
        self.bytes_sent = 0  # body bytes written by /bytes
        self._requests_per_connection = requests_per_connection
        self._drop = drop
        self._idle_writers: set = set()

    async def handle(self, reader, writer, number):
        served = 0
        while True:
            self._idle_writers.add(writer)
            try:
                head = await read_head(reader)
            finally:
                self._idle_writers.discard(writer)
            if head is None:
                return
            if self._requests_per_connection is not None and served >= self._requests_per_connection:
                if self._drop == "reset":
                    reset(writer)
                return  # read the request, then drop the connection without an answer
            served += 1
            if not await self._respond(reader, writer, number, *head):
                return

    async def _respond(self, reader, writer, number, method, target, headers) -> bool:
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/reject":
            await self._send(writer, number, 413, b"too large", [("connection", "close")])
            writer.transport.pause_reading()
            await asyncio.Event().wait()  # hold the connection, never read, until stopped
        length, sha, body = await read_body(reader, headers, keep=url.path == "/echo")
        self.requests_seen.append(SeenRequest(method, target, headers, length, sha, number))
        head_only = method == "HEAD"
        if url.path == "/echo":
            extra = [("x-body-length", str(length)), ("x-body-sha256", sha)]
            await self._send(writer, number, 200, body, extra, head_only)
        elif url.path == "/headers":
            await self._send(writer, number, 200, json.dumps(headers).encode(), [], head_only)
        elif url.path.startswith("/status/"):
            status = int(url.path[8:])
            if "early" in query:
                writer.write(b"HTTP/1.1 %s Interim\r\n\r\n" % query["early"].encode())
            body = b"" if status in (204, 304) or status < 200 else self.name.encode()
            await self._send(writer, number, status, body, [], head_only)
        elif url.path == "/bytes":
            await self._send_bytes(writer, number, int(query.get("size", "0")), query.get("framing", "length"),
                                   int(query.get("chunk", str(READ_CHUNK))), float(query.get("interval", "0")),
                                   head_only)
            return query.get("framing") != "close"
        elif url.path == "/slow":
            await asyncio.sleep(float(query.get("delay", "1")))
            await self._send(writer, number, 200, self.name.encode(), [], head_only)
        elif url.path == "/close":
            await self._send(writer, number, 200, self.name.encode(), [("connection", "close")], head_only)
            return False
        else:
            await self._send(writer, number, 200, self.name.encode(), [], head_only)
        return True

    async def _send(self, writer, number, status, body, extra, head_only=False):
        fields = [("x-backend", self.name), ("x-connection", str(number)), *extra]
        if status not in (204, 304) and status >= 200:
            fields.append(("content-length", str(len(body))))
        writer.write(_head(status, fields) + (b"" if head_only else body))
        await writer.drain()

    async def _send_bytes(self, writer, number, size, framing, chunk, interval, head_only):
        fields = [("x-backend", self.name), ("x-connection", str(number))]
        fields.append({"length": ("content-length", str(size)), "chunked": ("transfer-encoding", "chunked"),
                       "close": ("connection", "close")}[framing])
        writer.write(_head(200, fields))
        sent = 0
        while sent < size and not head_only:
            if sent and interval:
                await asyncio.sleep(interval)
            data = pattern_bytes(min(chunk, size - sent), sent)
            writer.write(b"%x\r\n%s\r\n" % (len(data), data) if framing == "chunked" else data)
            await writer.drain()
            sent += len(data)
            self.bytes_sent += len(data)
        if framing == "chunked" and not head_only:
            writer.write(b"0\r\n\r\n")
        await writer.drain()

    def close_idle_connections(self) -> int:
        """Close (FIN) every connection waiting for its next request; how many were closed."""
        def close_all():
            writers = list(self._idle_writers)
            for writer in writers:
                writer.close()
            return len(writers)
        return self.call(close_all)


def _head(status: int, fields) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"] + [f"{k}: {v}" for k, v in fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# mode -> (bytes sent after reading the request head, then: "close" | "reset" | "stall")
MISBEHAVIOURS: dict[str, tuple[bytes, str]] = {
    "close": (b"", "close"),  # closes without a byte
    "reset": (b"", "reset"),  # resets without a byte
    "stall": (b"", "stall"),  # reads the request, never answers
    "garbage": (b"SSH-2.0-OpenSSH_9.2\r\n", "stall"),
    "partial-head": (b"HTTP/1.1 200 OK\r\nContent-Le", "close"),
    "short-content-length": (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10, "close"),
    "stall-mid-body": (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10, "stall"),
    "reset-mid-body": (b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10, "reset"),
    "die-mid-chunked": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", "close"),
    "bad-chunk-size": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n", "stall"),
    "obs-fold": (b"HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 0\r\n\r\n", "stall"),
    "conflicting-content-length": (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "stall"),
    "invalid-content-length": (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "stall"),
    "switching-protocols": (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", "stall"),
    "bad-status": (b"HTTP/1.1 999 Nope\r\nContent-Length: 0\r\n\r\n", "stall"),
    "huge-head": (b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * (HEAD_LIMIT + 10) + b"\r\n\r\n", "stall"),
    "close-delimited": (b"HTTP/1.1 200 OK\r\n\r\nuntil the end", "close"),
}


class Misbehaving(_ServerThread):
    """Reads one request head (unless the mode is "deaf": reads nothing at all), then sends
    the mode's bytes and closes, resets or stalls."""

    def __init__(self, mode, then, host, port, path):
        super().__init__(host, port, path)
        if isinstance(mode, bytes):
            self.payload, self.then = mode, then or "close"
        elif mode == "deaf":
            self.payload, self.then = b"", "deaf"
        else:
            self.payload, self.then = MISBEHAVIOURS[mode]
            self.then = then or self.then

    async def handle(self, reader, writer, number):
        if self.then == "deaf":
            writer.transport.pause_reading()
            await asyncio.Event().wait()
        if await read_head(reader) is None:
            return
        if self.payload:
            writer.write(self.payload)
            await writer.drain()
        if self.then == "reset":
            reset(writer)
        elif self.then == "stall":  # never answer, but notice when the client goes away
            while await reader.read(READ_CHUNK):
                pass


@contextlib.contextmanager
def http_backend(name: str = "b1", *, host: str = "127.0.0.1", port: int = 0, path: str | None = None,
                 requests_per_connection: int | None = None, drop: str = "close", ssl=None):
    """A well-behaved backend; with `requests_per_connection`, the request after that many
    on one connection is read and dropped (closed, or reset with drop="reset"); with `ssl`
    (a server ssl.SSLContext), over TLS."""
    backend = Backend(name, host, port, path, requests_per_connection, drop, ssl).start()
    try:
        yield backend
    finally:
        backend.stop()


@contextlib.contextmanager
def misbehaving_backend(mode: str | bytes, *, then: str | None = None, host: str = "127.0.0.1",
                        port: int = 0, path: str | None = None):
    """A backend that misbehaves after each request head: `mode` is a MISBEHAVIOURS key,
    "deaf" (never reads anything), or raw bytes to send; `then` overrides the ending."""
    backend = Misbehaving(mode, then, host, port, path).start()
    try:
        yield backend
    finally:
        backend.stop()


def main():
    parser = argparse.ArgumentParser(description="Run the test backend in the foreground.")
    parser.add_argument("--name", default="b1")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    backend = Backend(args.name, args.host, args.port, None, None, "close").start()
    print(f"listening on {backend.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        backend.stop()


if __name__ == "__main__":
    main()
