"""What the WebSocket pass-through needs to know of RFC 6455, and nothing more.

Director does not decode WebSocket messages: after the backend's 101 it relays the bytes of
both directions unchanged (see proxy.websocket_tunnel for why). This module holds the three
places where it must look at the protocol anyway:

- `handshake_problem()`: is the client's upgrade request a valid opening handshake (400 if not);
- `FrameReader`: frame boundaries of one direction, read from the frame headers only (the
  payload is counted, never copied or unmasked), which enforces the message size limit and
  tells when a close frame may be inserted without cutting a frame in two;
- `close_frame()`: the close frames Director sends itself (1009, 1001).
"""
from __future__ import annotations

import base64
import binascii
import os

from proxy.headers import connection_tokens

MESSAGE_TOO_BIG = 1009
GOING_AWAY = 1001
_FIN = 0x80
_CLOSE = 0x8
_MASK_BIT = 0x80
_MAX_HEAD = 14  # 2 + 8 (64-bit length) + 4 (masking key)


def upgrade_value(headers) -> bytes | None:
    """The Upgrade header's value when it asks for websocket (any case), else None."""
    for name, value in headers:
        if name == b"upgrade" and b"websocket" in connection_tokens([value]):
            return value
    return None


def handshake_problem(method: str, http_version: str, headers) -> str | None:
    """Why this `Upgrade: websocket` request is not a valid opening handshake (RFC 6455
    4.1-4.2.1), or None when it is one."""
    if method != "GET":
        return f"method {method}, not GET"
    if http_version != "1.1":
        return f"HTTP/{http_version}, not HTTP/1.1"
    if b"upgrade" not in connection_tokens([v for n, v in headers if n == b"connection"]):
        return "Connection does not name upgrade"
    keys = [v for n, v in headers if n == b"sec-websocket-key"]
    if len(keys) != 1 or not _is_key(keys[0]):
        return "missing or invalid Sec-WebSocket-Key"
    versions = [v.strip() for n, v in headers if n == b"sec-websocket-version"]
    if versions != [b"13"]:
        return "Sec-WebSocket-Version is not 13"
    return None


def _is_key(value: bytes) -> bool:
    try:
        return len(base64.b64decode(value.strip(), validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def close_frame(code: int, reason: str = "", *, masked: bool) -> bytes:
    """A close frame with `code` and a short `reason`; `masked` toward a server (RFC 6455 5.3:
    every client frame is masked)."""
    payload = code.to_bytes(2, "big") + reason.encode("utf-8")[:123]
    if not masked:
        return bytes((_FIN | _CLOSE, len(payload))) + payload
    key = os.urandom(4)
    body = bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))
    return bytes((_FIN | _CLOSE, _MASK_BIT | len(payload))) + key + body


class FrameReader:
    """Follows the frames of one direction of a WebSocket connection.

    `feed(data)` returns the bytes that may be forwarded now: everything, except a frame
    header that has not arrived whole (held back until it has, so that a frame is judged
    before any byte of it leaves), and except, once a data message grows past `limit`
    payload bytes, the frame that crossed it and everything after it (then `too_big` is
    set and the caller closes the connection with 1009). A message's size is the sum of
    the payload lengths of its frames (a fragmented message counts whole; interleaved
    control frames do not count), as they are on the wire: with permessage-deflate, the
    compressed size.
    """

    __slots__ = ("limit", "too_big", "_remaining", "_held", "_message")

    def __init__(self, limit: int | None = None):
        self.limit = limit
        self.too_big = False
        self._remaining = 0  # payload bytes of the current frame still to come
        self._held = b""  # the start of a frame header, not forwarded yet
        self._message = 0  # payload bytes of the unfinished data message so far

    @property
    def at_boundary(self) -> bool:
        """Everything forwarded so far ends with a complete frame: a frame may be sent next."""
        return self._remaining == 0

    def feed(self, data: bytes) -> bytes:
        if self.too_big:
            return b""
        if not self._held and self._remaining >= len(data):
            self._remaining -= len(data)  # the common case: payload bytes only
            return data
        if self._held:
            data = self._held + data
            self._held = b""
        pos, size = 0, len(data)
        while pos < size:
            remaining = self._remaining
            if remaining:
                step = min(remaining, size - pos)
                self._remaining = remaining - step
                pos += step
                continue
            head_end = self._head(data, pos)
            if head_end < 0:  # an incomplete header: hold it back
                self._held = data[pos:]
                return data[:pos]
            if self.too_big:
                return data[:pos]
            pos = head_end
        return data

    def _head(self, data: bytes, pos: int) -> int:
        """Read the frame header at `pos`: the position after it, or -1 when incomplete."""
        if len(data) - pos < 2:
            return -1
        first, second = data[pos], data[pos + 1]
        length = second & 0x7F
        extra = 2 if length == 126 else 8 if length == 127 else 0
        end = pos + 2 + extra + (4 if second & _MASK_BIT else 0)
        if end > len(data):
            return -1
        if extra:
            length = int.from_bytes(data[pos + 2:pos + 2 + extra], "big")
        if first & 0x0F < 8:  # a data frame: 0 continuation, 1 text, 2 binary
            message = (self._message if first & 0x0F == 0 else 0) + length
            if self.limit is not None and message > self.limit:
                self.too_big = True
                return end
            self._message = 0 if first & _FIN else message
        self._remaining = length
        return end
