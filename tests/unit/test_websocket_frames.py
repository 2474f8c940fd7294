"""The WebSocket protocol knowledge the tunnel relies on: handshake validation, the frame
header reader (message size limit, frame boundaries, any split of the input) and our own
close frames, checked against aiohttp's frame parser."""
from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.websocket_frames import FrameReader, close_frame, handshake_problem, upgrade_value

TEXT, BINARY, CONTINUATION, CLOSE, PING = 1, 2, 0, 8, 9


def frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> bytes:
    """One frame as a client (masked) or a server sends it."""
    size = len(payload)
    length = bytes([size]) if size < 126 else bytes([126]) + size.to_bytes(2, "big") if size < 65536 \
        else bytes([127]) + size.to_bytes(8, "big")
    head = bytes([(0x80 if fin else 0) | opcode, length[0] | (0x80 if masked else 0)]) + length[1:]
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def forward(reader: FrameReader, stream: bytes, cuts=()) -> bytes:
    out, start = [], 0
    for cut in sorted(cuts) + [len(stream)]:
        out.append(reader.feed(stream[start:cut]))
        start = cut
    return b"".join(out)


KEY = base64.b64encode(os.urandom(16))
GOOD = [(b"host", b"x"), (b"upgrade", b"websocket"), (b"connection", b"keep-alive, Upgrade"),
        (b"sec-websocket-key", KEY), (b"sec-websocket-version", b"13")]


def test_a_valid_handshake():
    assert upgrade_value(GOOD) == b"websocket"
    assert handshake_problem("GET", "1.1", GOOD) is None


def replaced(name: bytes, value: bytes | None) -> list:
    return [(n, v) for n, v in GOOD if n != name] + ([(name, value)] if value is not None else [])


@pytest.mark.parametrize("method, version, headers, problem", [
    ("POST", "1.1", GOOD, "not GET"),
    ("GET", "1.0", GOOD, "not HTTP/1.1"),
    ("GET", "1.1", replaced(b"connection", b"keep-alive"), "Connection"),
    ("GET", "1.1", replaced(b"sec-websocket-key", None), "Sec-WebSocket-Key"),
    ("GET", "1.1", replaced(b"sec-websocket-key", b"not base64!"), "Sec-WebSocket-Key"),
    ("GET", "1.1", replaced(b"sec-websocket-key", base64.b64encode(b"x" * 15)), "Sec-WebSocket-Key"),
    ("GET", "1.1", GOOD + [(b"sec-websocket-key", KEY)], "Sec-WebSocket-Key"),
    ("GET", "1.1", replaced(b"sec-websocket-version", b"8"), "Version"),
    ("GET", "1.1", replaced(b"sec-websocket-version", None), "Version"),
])
def test_invalid_handshakes_are_named(method, version, headers, problem):
    assert problem in handshake_problem(method, version, headers)


def test_other_upgrades_are_not_websockets():
    assert upgrade_value([(b"upgrade", b"h2c")]) is None
    assert upgrade_value([(b"upgrade", b"WebSocket")]) == b"WebSocket"


def test_frames_pass_unchanged_and_under_the_limit():
    stream = frame(TEXT, b"a" * 100) + frame(BINARY, b"b" * 70000) + frame(PING, b"p")
    reader = FrameReader(70000)
    assert forward(reader, stream) == stream and not reader.too_big and reader.at_boundary


def test_a_frame_over_the_limit_is_held_back_with_everything_after_it():
    first, big = frame(TEXT, b"a" * 10), frame(BINARY, b"b" * 101)
    reader = FrameReader(100)
    assert forward(reader, first + big + frame(TEXT, b"c")) == first
    assert reader.too_big and reader.at_boundary  # a close frame may follow what was forwarded
    assert reader.feed(frame(TEXT, b"d")) == b""


def test_a_fragmented_message_counts_whole_and_control_frames_do_not():
    fragments = [frame(TEXT, b"a" * 40, fin=False), frame(PING, b"x" * 100),
                 frame(CONTINUATION, b"b" * 40, fin=False), frame(CONTINUATION, b"c" * 40)]
    reader = FrameReader(100)
    assert forward(reader, b"".join(fragments)) == b"".join(fragments[:3])
    assert reader.too_big
    fits = FrameReader(120)
    stream = b"".join(fragments) + frame(TEXT, b"d" * 120)
    assert forward(fits, stream) == stream
    assert not fits.too_big  # a new message starts from zero


def test_the_boundary_follows_the_payload():
    reader = FrameReader()
    stream = frame(BINARY, b"z" * 1000)
    assert reader.feed(stream[:1]) == b""  # half a header is held back
    assert reader.at_boundary
    reader.feed(stream[1:500])
    assert not reader.at_boundary
    reader.feed(stream[500:])
    assert reader.at_boundary


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(0, 70000), min_size=1, max_size=5), data=st.data())
def test_any_split_forwards_the_same_bytes(sizes, data):
    stream = b"".join(frame(BINARY, bytes(size)) for size in sizes)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    limit = data.draw(st.sampled_from([None, 1000, 65535, 70000]))
    whole, split = FrameReader(limit), FrameReader(limit)
    assert forward(split, stream, cuts) == forward(whole, stream)
    assert split.too_big == whole.too_big == (limit is not None and max(sizes) > limit)


@pytest.mark.parametrize("masked", [True, False])
def test_our_close_frames(masked):
    """(Integration tests show aiohttp clients and servers reading them.)"""
    data = close_frame(1009, "message too big", masked=masked)
    assert data[0] == 0x88 and bool(data[1] & 0x80) == masked and data[1] & 0x7F == len(data) - (6 if masked else 2)
    payload = data[6:] if masked else data[2:]
    if masked:
        payload = bytes(b ^ data[2 + i % 4] for i, b in enumerate(payload))
    assert payload == (1009).to_bytes(2, "big") + b"message too big"
