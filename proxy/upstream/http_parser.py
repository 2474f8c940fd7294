"""Incremental, strict parser of HTTP/1.x responses (RFC 9112), free of I/O.

The parser is fed whatever bytes arrive, split anywhere, and reports to a sink:
`on_head(head)` once per final response, `on_body(chunk)` with de-chunked body bytes, and
`on_complete()` when the message ends. 1xx interim responses are skipped, except a 101 to
a request started with `upgrade=True`: it is reported as the head, and every byte after it
goes to `on_body` (they belong to the upgraded protocol). Violations raise
`ProtocolError`; a premature end of input raises `ConnectionClosed` from `feed_eof()`.
One parser serves every response of a connection: `start()` resets it.
"""
from __future__ import annotations

import re
from typing import NoReturn, Protocol

from proxy.errors import ConnectionClosed, ProtocolError
from proxy.headers import FIELD_LINE, FIELD_VALUE, KNOWN_FIELD_LINES, OWS, connection_tokens, field_of_line
from proxy.memo import remember
from proxy.upstream.base import MAX_HEAD

MAX_CHUNK_LINE = 4096  # chunk size line including extensions
MAX_TRAILERS = 64 * 1024
CRLF = b"\r\n"
HEAD_END = b"\r\n\r\n"
HTTP_PREFIX = b"HTTP/"

_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-5][0-9][0-9])(?: [\t\x20-\x7e\x80-\xff]*)?")
# Status lines found valid, as (minor version, status): bounded (proxy.memo).
_KNOWN_STATUS_LINES: dict[bytes, tuple[int, int]] = {}
_KNOWN_STATUS_LINES_KEPT = 256
_KNOWN_STATUS_LINE_LENGTH = 128
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;" + FIELD_VALUE + rb")?")
_DIGITS = re.compile(rb"[0-9]{1,18}")

# parser states
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _UNTIL_CLOSE, _DONE, _FAILED = range(9)


class ResponseHead:
    """The final response head: status, fields for the caller and connection semantics."""

    __slots__ = ("status", "version", "headers", "keep_alive", "length")

    def __init__(self, status: int, version: int, headers: list, keep_alive: bool, length: int | None):
        self.status = status
        self.version = version  # minor version: 0 or 1
        self.headers = headers  # [(lower-case name, value)], no transfer-encoding
        self.keep_alive = keep_alive  # the connection may carry another request afterwards
        self.length = length  # body length when length-delimited, 0 without body, None otherwise


class Sink(Protocol):
    def on_head(self, head: ResponseHead) -> None: ...

    def on_body(self, data: bytes) -> None: ...

    def on_complete(self) -> None: ...


class ResponseParser:
    __slots__ = ("_sink", "_state", "_buf", "_scan", "_remaining", "_head_request", "_upgrade", "received",
                 "extra_data", "keep_alive")

    def __init__(self, sink: Sink):
        self._sink = sink
        self._buf = bytearray()
        self.start()

    def start(self, head_request: bool = False, upgrade: bool = False) -> None:
        """Expect a new response; `head_request`: it answers HEAD, so it has no body;
        `upgrade`: the request asked to switch protocols, so a 101 is its answer."""
        self._state = _HEAD
        self._upgrade = upgrade
        self._buf.clear()
        self._scan = 0
        self._remaining = 0
        self._head_request = head_request
        self.received = False  # any byte of this response arrived
        self.extra_data = False  # bytes followed the complete response
        self.keep_alive = False

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self.received = True
        try:
            state = self._state
            if state == _LENGTH:
                self._feed_length(data)
            elif state == _HEAD:
                self._feed_head(data)
            elif state == _UNTIL_CLOSE:
                self._sink.on_body(data)
            elif state == _DONE:
                self.extra_data = True
            elif state == _FAILED:
                raise ProtocolError("data after a malformed response")
            else:
                self._feed_chunked(data)
        except ProtocolError:
            self._state = _FAILED
            raise

    def feed_eof(self) -> None:
        """The peer closed: completes a close-delimited body, else raises ConnectionClosed."""
        state = self._state
        if state == _UNTIL_CLOSE:
            self._finish()
        elif state == _HEAD:
            self._state = _FAILED
            if self.received:
                raise ConnectionClosed("connection closed in the middle of the response head")
            raise ConnectionClosed("connection closed before any response byte")
        elif state not in (_DONE, _FAILED):
            self._state = _FAILED
            if state == _LENGTH:
                raise ConnectionClosed(f"connection closed with {self._remaining} body bytes missing")
            raise ConnectionClosed("connection closed before the last chunk")

    # -- head -----------------------------------------------------------------------------

    def _feed_head(self, data: bytes) -> None:
        buf = self._buf
        if buf:
            buf += data
            end = buf.find(HEAD_END, self._scan)
            if end >= 0:
                data = bytes(buf)
        else:
            end = data.find(HEAD_END)
        if end < 0:
            if not buf:
                buf += data
            if len(buf) > MAX_HEAD:
                raise ProtocolError("response head over 64 KiB")
            _check_start(buf, self._scan)
            self._scan = max(0, len(buf) - 3)
            return
        if end + 4 > MAX_HEAD:
            raise ProtocolError("response head over 64 KiB")
        buf.clear()
        self._scan = 0
        head = self._parse_head(data[:end])
        rest = data[end + 4:]
        if head is None:  # 1xx interim response: skip it, the real one follows
            if rest:
                self._feed_head(rest)
            return
        self._sink.on_head(head)
        if self._state == _DONE:
            self._sink.on_complete()
        if rest:
            self.feed(rest)

    def _parse_head(self, block: bytes) -> ResponseHead | None:
        """`block`: the head without its final CRLF CRLF."""
        line_end = block.find(CRLF)
        if line_end < 0:
            line_end = len(block)
        status_line = block[:line_end]
        known_status = _KNOWN_STATUS_LINES.get(status_line) or _status_of_line(status_line)
        minor, status = known_status
        if status == 101 and not self._upgrade:
            raise ProtocolError("101 Switching Protocols to a request that did not ask for it")
        headers = []
        lengths = transfer = connection = None
        lines = block[line_end + 2:].split(CRLF) if line_end < len(block) else ()
        known = KNOWN_FIELD_LINES
        for line in lines:
            field = known.get(line) or field_of_line(line)
            if field is None:
                _name_bad_line(line)
            name, value = field
            if name == b"content-length":
                lengths = value if lengths is None else lengths + b"," + value
            elif name == b"transfer-encoding":
                transfer = value if transfer is None else transfer + b"," + value
                continue
            elif name == b"connection":
                connection = [value] if connection is None else [*connection, value]
            headers.append(field)
        if status == 101:
            self._state, self.keep_alive = _UNTIL_CLOSE, False  # the rest is the new protocol's
            return ResponseHead(status, minor, headers, False, None)
        if status < 200:
            return None
        return self._framing(status, minor, headers, lengths, transfer, connection)

    def _framing(self, status, minor, headers, lengths, transfer, connection) -> ResponseHead:
        """RFC 9112 §6.3: decide how the body ends (sets the body state) and whether the
        connection survives the response."""
        tokens = connection_tokens(connection) if connection is not None else ()
        if minor == 1:
            keep_alive = b"close" not in tokens
        else:
            keep_alive = b"keep-alive" in tokens and b"close" not in tokens
        length = _content_length(lengths) if lengths is not None else None
        if transfer is not None:
            codings = [c.strip(OWS).lower() for c in transfer.split(b",")]
            if codings != [b"chunked"]:
                raise ProtocolError(f"unsupported transfer-encoding {transfer[:80]!r}")
            if minor == 0 or length is not None:
                keep_alive = False  # faulty framing (RFC 9112 §6.1, §6.3): never reuse
        if self._head_request or status == 304:
            self._state, length = _DONE, 0  # Content-Length describes the omitted body: kept
        elif status == 204:
            self._state, length = _DONE, 0
            headers = _without_length(headers, lengths, None)
        elif transfer is not None:
            self._state, length = _CHUNK_SIZE, None
            headers = _without_length(headers, lengths, None)
        elif length is not None:
            self._state, self._remaining = (_LENGTH, length) if length else (_DONE, 0)
            headers = _without_length(headers, lengths, length)
        else:
            self._state, keep_alive = _UNTIL_CLOSE, False
        self.keep_alive = keep_alive
        return ResponseHead(status, minor, headers, keep_alive, length)

    # -- body -----------------------------------------------------------------------------

    def _finish(self) -> None:
        self._state = _DONE
        self._sink.on_complete()

    def _feed_length(self, data: bytes) -> None:
        remaining = self._remaining
        size = len(data)
        if size < remaining:
            self._remaining = remaining - size
            self._sink.on_body(data)
            return
        self._remaining = 0
        self._sink.on_body(data if size == remaining else data[:remaining])
        if size > remaining:
            self.extra_data = True
        self._finish()

    def _feed_chunked(self, data: bytes) -> None:
        pos, size = 0, len(data)
        sink = self._sink
        while pos < size:
            state = self._state
            if state == _CHUNK_DATA:
                take = min(self._remaining, size - pos)
                sink.on_body(data if take == size else data[pos:pos + take])
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._state = _CHUNK_CRLF
            elif state == _CHUNK_SIZE or state == _TRAILERS or state == _CHUNK_CRLF:
                line, pos = self._take_line(data, pos, MAX_TRAILERS if state == _TRAILERS else MAX_CHUNK_LINE)
                if line is None:
                    return
                if state == _CHUNK_SIZE:
                    self._chunk_size(line)
                elif state == _CHUNK_CRLF:
                    if line:
                        raise ProtocolError("chunk data longer than its size")
                    self._state = _CHUNK_SIZE
                elif not line:  # blank line ends the trailer section; trailers are dropped
                    self._finish()
                else:
                    self._remaining -= len(line) + 2
                    if self._remaining < 0:
                        raise ProtocolError("trailer section over 64 KiB")
                    if FIELD_LINE.fullmatch(line) is None:
                        raise ProtocolError(f"invalid trailer line {line[:80]!r}")
            else:  # _DONE: bytes after the last chunk
                self.extra_data = True
                return

    def _take_line(self, data: bytes, pos: int, limit: int) -> tuple[bytes | None, int]:
        """The next CRLF-terminated line from the partial-line buffer plus data[pos:]."""
        buf = self._buf
        if buf and buf[-1] == 13 and data[pos] == 10:  # CRLF split across two feeds
            line = bytes(buf[:-1])
            buf.clear()
            return line, pos + 1
        end = data.find(CRLF, pos)
        if end < 0:
            buf += data[pos:]
            if len(buf) > limit:
                raise ProtocolError("chunk size line or trailer section too long")
            return None, len(data)
        if buf:
            buf += data[pos:end]
            line = bytes(buf)
            buf.clear()
        else:
            line = data[pos:end]
        if len(line) > limit:
            raise ProtocolError("chunk size line or trailer section too long")
        return line, end + 2

    def _chunk_size(self, line: bytes) -> None:
        match = _CHUNK_LINE.fullmatch(line)
        if match is None:
            raise ProtocolError(f"invalid chunk size line {line[:80]!r}")
        size = int(match[1], 16)
        if size:
            self._state, self._remaining = _CHUNK_DATA, size
        else:
            self._state, self._remaining = _TRAILERS, MAX_TRAILERS


def _status_of_line(line: bytes) -> tuple[int, int]:
    """(minor version, status) of a status line; remembered (a backend sends few)."""
    match = _STATUS_LINE.fullmatch(line)
    if match is None:
        raise ProtocolError(f"invalid status line {line[:80]!r}")
    known = (int(match[1]), int(match[2]))
    if len(line) <= _KNOWN_STATUS_LINE_LENGTH:
        remember(_KNOWN_STATUS_LINES, line, known, _KNOWN_STATUS_LINES_KEPT)
    return known


def _name_bad_line(line: bytes) -> NoReturn:
    """Raise ProtocolError naming a field line that is not one."""
    if line[:1] in (b" ", b"\t"):
        raise ProtocolError("obsolete line folding in response head")
    raise ProtocolError(f"invalid header line {line[:80]!r}")


def _check_start(buf: bytearray, scanned: int) -> None:
    """Fail early on an incomplete head that can never become valid (no waiting for a
    timeout): not starting with HTTP/, or using bare LF line ends."""
    if not HTTP_PREFIX.startswith(bytes(buf[:5])):
        raise ProtocolError(f"invalid status line {bytes(buf[:80])!r}")
    if buf.find(b"\n\n", scanned) >= 0 or buf.find(b"\n\r\n", scanned) >= 0:
        raise ProtocolError("response head with bare LF line ends")


def _content_length(values: bytes) -> int:
    """One length from one or more (comma-joined) Content-Length values, all identical."""
    if values.isdigit() and len(values) <= 18:  # the usual single value (isdigit: ASCII only)
        return int(values)
    lengths = set()
    for value in values.split(b","):
        value = value.strip(OWS)
        if _DIGITS.fullmatch(value) is None:
            raise ProtocolError(f"invalid content-length {values[:80]!r}")
        lengths.add(int(value))
    if len(lengths) != 1:
        raise ProtocolError(f"conflicting content-length values {values[:80]!r}")
    return lengths.pop()


def _without_length(headers: list, lengths: bytes | None, length: int | None) -> list:
    """Headers without Content-Length, or with exactly one normalised one for `length`."""
    if lengths is None or (length is not None and lengths.isdigit() and len(lengths) <= 18):
        return headers  # exactly one plain value: as it came
    headers = [h for h in headers if h[0] != b"content-length"]
    if length is not None:
        headers.append((b"content-length", b"%d" % length))
    return headers
