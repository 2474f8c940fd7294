"""A strict decoder for chunked request bodies, in place of Twisted's.

Twisted's decoder waits for the data of any chunk size (2^64 included) and takes every
line up to an empty one as a trailer, so `0\\r\\nX: y\\n\\r\\n` followed by a pipelined
request swallowed that request as "trailers". Here, refused as soon as they are seen:
a chunk size of 2^63 or more, or a line ended by a bare LF (400); a chunk size taking
the body beyond `max_request_body` (413, before its data arrives); a trailer line that
is not a header field, or trailers beyond the head's limits (16 KiB, 500 fields: 400).
Trailers are then dropped, as before: nothing forwards them.
"""
from __future__ import annotations

from proxy.headers import FIELD_LINE
from proxy.twisted_compat import ChunkedDecoder, MalformedChunkedData

MAX_CHUNK_SIZE = 2**63 - 1


class StrictChunkedDecoder(ChunkedDecoder):
    """Twisted's decoder with early refusals; `channel.reject(status)` answers them."""

    _announced = 0  # sum of the chunk sizes seen
    _trailer_count = 0

    def size_line_incomplete(self, buffered: bytes) -> None:
        if b"\n" in buffered:  # a bare LF: the CRLF this waits for may never come
            raise MalformedChunkedData("chunk size line ends in a bare LF")

    def chunk_announced(self, size: int) -> None:
        if size > MAX_CHUNK_SIZE:
            raise MalformedChunkedData("chunk size out of range")
        self._announced += size
        if self._announced > self.channel.factory.max_request_body:
            self.channel.reject(413)
            raise MalformedChunkedData("chunked body over max_request_body")

    def trailer_arriving(self, buffered: bytes) -> None:
        end = buffered.find(b"\r\n")
        if end > 0:
            self._trailer_count += 1
            if self._trailer_count > self.channel.maxHeaders or not FIELD_LINE.fullmatch(buffered, 0, end):
                raise MalformedChunkedData("invalid trailer field")
        elif end < 0 and b"\n" in buffered:
            raise MalformedChunkedData("trailer line ends in a bare LF")
