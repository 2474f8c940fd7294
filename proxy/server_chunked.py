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

import re

from twisted.web.http import _ChunkedTransferDecoder, _MalformedChunkedDataError

FIELD_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\x00-\x08\x0a-\x1f\x7f]*")
MAX_CHUNK_SIZE = 2**63 - 1


class StrictChunkedDecoder(_ChunkedTransferDecoder):
    """Twisted's decoder with early refusals; `channel.reject(status)` answers them."""

    def __init__(self, data_callback, finish_callback, channel):
        super().__init__(data_callback, finish_callback)
        self._channel = channel
        self._announced = 0  # sum of the chunk sizes seen
        self._trailer_count = 0
        self._maxTrailerHeadersSize = channel.totalHeadersSize  # the head's limits

    def _dataReceived_CHUNK_LENGTH(self) -> bool:
        if not super()._dataReceived_CHUNK_LENGTH():
            if b"\n" in self._buffer:  # a bare LF: the CRLF this waits for may never come
                raise _MalformedChunkedDataError("chunk size line ends in a bare LF")
            return False
        if self.length > MAX_CHUNK_SIZE:
            raise _MalformedChunkedDataError("chunk size out of range")
        self._announced += self.length
        if self._announced > self._channel.factory.max_request_body:
            self._channel.reject(413)
            raise _MalformedChunkedDataError("chunked body over max_request_body")
        return True

    def _dataReceived_TRAILER(self) -> bool:
        buffer = self._buffer
        end = buffer.find(b"\r\n")
        if end > 0:
            self._trailer_count += 1
            if self._trailer_count > self._channel.maxHeaders or not FIELD_LINE.fullmatch(buffer, 0, end):
                raise _MalformedChunkedDataError("invalid trailer field")
        elif end < 0 and b"\n" in buffer:
            raise _MalformedChunkedDataError("trailer line ends in a bare LF")
        return super()._dataReceived_TRAILER()
