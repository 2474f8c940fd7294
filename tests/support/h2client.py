"""A small blocking HTTP/2 client over TLS (the `h2` package) for tests that need what curl
does not show: frames as they come, a client that stops reading, a connection left idle.

    with H2Client(port) as client:
        stream = client.request("GET", "/", authority="app")
        client.events_until(lambda e: isinstance(e, h2.events.StreamEnded), timeout=10)
"""
from __future__ import annotations

import socket
import ssl
import time

import h2.config
import h2.connection
import h2.events


class H2Client:
    def __init__(self, port: int, host: str = "127.0.0.1", server_name: str = "localhost"):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2"])
        raw = socket.create_connection((host, port), timeout=10)
        self.sock = context.wrap_socket(raw, server_hostname=server_name)
        assert self.sock.selected_alpn_protocol() == "h2"
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.closed = False
        self._flush()

    def __enter__(self) -> "H2Client":
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def request(self, method: str, path: str | None, authority: str = "app", end: bool = True, extra=()) -> int:
        """Send a request's head (path None: a CONNECT's, without :path and :scheme)."""
        stream = self.conn.get_next_available_stream_id()
        headers = [(":method", method)]
        if path is not None:
            headers += [(":path", path), (":scheme", "https")]
        headers += [(":authority", authority), *extra]
        self.conn.send_headers(stream, headers, end_stream=end)
        self._flush()
        return stream

    def events_until(self, done, timeout: float) -> list:
        """Read events (never acknowledging DATA: the server's window is not reopened) until
        `done(event)` is true for one, the connection closes, or `timeout` passes."""
        deadline = time.monotonic() + timeout
        seen: list = []
        while not self.closed and time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, socket.timeout):
                break
            except (ConnectionResetError, ssl.SSLError):
                data = b""
            if not data:
                self.closed = True
                break
            for event in self.conn.receive_data(data):
                seen.append(event)
                if done(event):
                    self._flush()
                    return seen
            self._flush()
        return seen

    def status_of(self, stream: int, timeout: float = 15) -> int:
        """The :status of `stream`'s response."""
        events = self.events_until(lambda e: isinstance(e, h2.events.ResponseReceived) and e.stream_id == stream,
                                   timeout)
        for event in events:
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
                return int(dict(event.headers)[b":status"])
        raise AssertionError(f"no response on stream {stream}: {events}")

    def _flush(self) -> None:
        pending = self.conn.data_to_send()
        if pending:
            self.sock.sendall(pending)
