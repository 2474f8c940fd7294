"""FastCGI 1.0 wire format: records, name-value pairs, and an incremental record parser.

Pure functions and classes, no I/O. Used by the client (proxy/upstream/fastcgi.py) and by
the test servers, so both directions (encode and parse) of every record type live here.
"""
from __future__ import annotations

import struct
from typing import Iterable, Iterator, NamedTuple

from proxy.memo import remember

VERSION_1 = 1

# Record types
BEGIN_REQUEST = 1
ABORT_REQUEST = 2
END_REQUEST = 3
PARAMS = 4
STDIN = 5
STDOUT = 6
STDERR = 7
DATA = 8
GET_VALUES = 9
GET_VALUES_RESULT = 10
UNKNOWN_TYPE = 11
MAX_KNOWN_TYPE = UNKNOWN_TYPE

# BEGIN_REQUEST roles and flags
RESPONDER = 1
AUTHORIZER = 2
FILTER = 3
KEEP_CONN = 1

# END_REQUEST protocol statuses
REQUEST_COMPLETE = 0
CANT_MPX_CONN = 1
OVERLOADED = 2
UNKNOWN_ROLE = 3

NULL_REQUEST_ID = 0  # management records (GET_VALUES, UNKNOWN_TYPE)
HEADER_LEN = 8
MAX_CONTENT = 0xFFFF
MAX_STREAM_CHUNK = MAX_CONTENT - 7  # a chunk whose padded size is still a multiple of 8

_HEADER = struct.Struct("!BBHHBx")  # version, type, request id, content length, padding length
_BEGIN_BODY = struct.Struct("!HB5x")  # role, flags
_END_BODY = struct.Struct("!IB3x")  # application status, protocol status
_UNKNOWN_BODY = struct.Struct("!B7x")  # the unknown type
_LONG_LENGTH = struct.Struct("!I")
_LONG_FLAG = 0x80000000
MAX_NV_LENGTH = 0x7FFFFFFF
_PADDING = [b"\0" * length for length in range(8)]


class RecordFormatError(ValueError):
    """The bytes are not a valid FastCGI record stream."""


class Record(NamedTuple):
    type: int
    request_id: int
    content: bytes
    padding: int = 0

    @property
    def wire_size(self) -> int:
        return HEADER_LEN + len(self.content) + self.padding


def padding_for(length: int) -> int:
    """Padding that brings `length` to a multiple of 8 (what nginx and php-fpm send)."""
    return -length % 8


def encode_record(type_: int, request_id: int, content: bytes = b"", padding: int | None = None) -> bytes:
    return b"".join(encode_record_parts(type_, request_id, content, padding))


def encode_record_parts(type_: int, request_id: int, content: bytes, padding: int | None = None) -> list[bytes]:
    """[header, content, padding] of one record, joined once by the connection's write."""
    if len(content) > MAX_CONTENT:
        raise ValueError(f"FastCGI record content of {len(content)} bytes exceeds {MAX_CONTENT}")
    if padding is None:
        padding = padding_for(len(content))
    return [_HEADER.pack(VERSION_1, type_, request_id, len(content), padding), content, b"\0" * padding]


def encode_stream(type_: int, request_id: int, data: bytes, chunk: int = MAX_STREAM_CHUNK) -> Iterator[bytes]:
    """`data` as records of at most `chunk` content bytes (no terminating empty record)."""
    view = memoryview(data)
    for start in range(0, len(view), chunk):
        yield encode_record(type_, request_id, bytes(view[start:start + chunk]))


def encode_begin_request(request_id: int, role: int = RESPONDER, flags: int = KEEP_CONN) -> bytes:
    return encode_record(BEGIN_REQUEST, request_id, _BEGIN_BODY.pack(role, flags))


def encode_end_request(request_id: int, app_status: int = 0, protocol_status: int = REQUEST_COMPLETE) -> bytes:
    return encode_record(END_REQUEST, request_id, _END_BODY.pack(app_status, protocol_status))


def encode_unknown_type(type_: int) -> bytes:
    return encode_record(UNKNOWN_TYPE, NULL_REQUEST_ID, _UNKNOWN_BODY.pack(type_))


# Encoded short pairs, by pair: most of a request's PARAMS (the server's, the script's, the
# usual header values) repeat from one request to the next. Bounded (proxy.memo).
_ENCODED_PAIRS: dict[tuple[bytes, bytes], bytes] = {}
_ENCODED_PAIRS_KEPT = 2048


def encode_params(request_id: int, pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The PARAMS stream for `pairs`, including the terminating empty PARAMS record."""
    return params_stream(request_id, encode_pairs(pairs))


def encode_pairs(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """`pairs` as name-value pairs, the content of a PARAMS stream."""
    known = _ENCODED_PAIRS
    parts: list[bytes] = []
    for pair in pairs:  # this runs for every request
        encoded = known.get(pair)
        if encoded is None:
            name, value = pair
            encoded = encode_name_value(name, value)
            if len(name) < 0x80 and len(value) < 0x80:
                remember(known, pair, encoded, _ENCODED_PAIRS_KEPT)
        parts.append(encoded)
    return b"".join(parts)


def params_stream(request_id: int, body: bytes) -> bytes:
    """The PARAMS stream of encoded pairs `body`, including the terminating empty record."""
    end = _HEADER.pack(VERSION_1, PARAMS, request_id, 0, 0)
    if len(body) > MAX_STREAM_CHUNK:
        return b"".join(encode_stream(PARAMS, request_id, body)) + end
    if not body:
        return end
    padding = -len(body) % 8
    return b"".join((_HEADER.pack(VERSION_1, PARAMS, request_id, len(body), padding), body, _PADDING[padding], end))


def decode_begin_request(content: bytes) -> tuple[int, int]:
    """(role, flags) of a BEGIN_REQUEST body."""
    if len(content) != _BEGIN_BODY.size:
        raise RecordFormatError(f"BEGIN_REQUEST body of {len(content)} bytes, expected {_BEGIN_BODY.size}")
    return _BEGIN_BODY.unpack(content)


def decode_end_request(content: bytes) -> tuple[int, int]:
    """(application status, protocol status) of an END_REQUEST body."""
    if len(content) != _END_BODY.size:
        raise RecordFormatError(f"END_REQUEST body of {len(content)} bytes, expected {_END_BODY.size}")
    return _END_BODY.unpack(content)


def _encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes((length,))
    if length > MAX_NV_LENGTH:
        raise ValueError(f"FastCGI name/value of {length} bytes is too long")
    return _LONG_LENGTH.pack(length | _LONG_FLAG)


def encode_name_value(name: bytes, value: bytes) -> bytes:
    name_length, value_length = len(name), len(value)
    if name_length < 0x80 and value_length < 0x80:  # the common case: two 1-byte lengths
        return bytes((name_length, value_length)) + name + value
    return _encode_length(name_length) + _encode_length(value_length) + name + value


def _decode_length(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise RecordFormatError("name-value pair truncated in its length")
    if data[pos] < 0x80:
        return data[pos], pos + 1
    if pos + 4 > len(data):
        raise RecordFormatError("name-value pair truncated in its 4-byte length")
    return _LONG_LENGTH.unpack_from(data, pos)[0] & ~_LONG_FLAG, pos + 4


def decode_name_values(data: bytes) -> list[tuple[bytes, bytes]]:
    """All pairs of a complete (concatenated) PARAMS or GET_VALUES stream."""
    pairs, pos = [], 0
    while pos < len(data):
        name_len, pos = _decode_length(data, pos)
        value_len, pos = _decode_length(data, pos)
        end = pos + name_len + value_len
        if end > len(data):
            raise RecordFormatError("name-value pair longer than the stream")
        pairs.append((data[pos:pos + name_len], data[pos + name_len:end]))
        pos = end
    return pairs


class RecordParser:
    """Turns a byte stream, fed in arbitrary pieces, into `Record`s.

    Wrong versions raise RecordFormatError at once. `pending` tells how many bytes of an
    incomplete record are buffered: non-zero at EOF means the stream was truncated.
    """

    __slots__ = ("_buffer",)

    def __init__(self):
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Record]:
        buffer = self._buffer
        if buffer:  # continue an incomplete record; parse from immutable bytes either way
            buffer += data
            data = bytes(buffer)
            buffer.clear()
        records, pos, size = [], 0, len(data)
        unpack = _HEADER.unpack_from
        while size - pos >= HEADER_LEN:
            version, type_, request_id, length, padding = unpack(data, pos)
            if version != VERSION_1:
                buffer += memoryview(data)[pos:]  # the bad bytes stay pending, as received
                raise RecordFormatError(f"FastCGI record version {version}, expected {VERSION_1}")
            start = pos + HEADER_LEN
            end = start + length + padding
            if end > size:
                break
            records.append(Record(type_, request_id, data[start:start + length], padding))
            pos = end
        if pos < size:
            buffer += memoryview(data)[pos:]
        return records
