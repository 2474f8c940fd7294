"""The usual request head, read in one pass: a complete head with no body, alone in one read.

Twisted's HTTPChannel reads a head line by line: a LineReceiver loop, a state machine call
per line, and per header a split, a name check byte by byte, a framing check and a filing
(py-spy and perf: about a tenth of a proxied request's CPU). Almost every request a proxy
sees is a GET or HEAD whose whole head arrives in one read, so `simple_head` takes exactly
those: the request line and every field line are checked by regular expressions (once
for a line seen before: valid lines are remembered), and
anything else - a body (Content-Length, Transfer-Encoding), Expect, obs-fold, a bare CR or
LF, a NUL, a name that is not a token, a non-ASCII target, a head over the limit or with
more fields than allowed, a control character in a value, bytes after the head - returns
None, and the line parser reads the data as before, with every one of its answers (400,
413, 431) unchanged. What this accepts, the line parser would accept with the same result;
its fields come out lower-cased and checked, ready to become the ASGI scope's headers.
"""
from __future__ import annotations

import re

from proxy.headers import KNOWN_FIELD_LINES, TOKEN, field_of_line
from proxy.memo import remember

REQUEST_LINE = re.compile(rb"(" + TOKEN + rb") ([\x21-\x7e]+) (HTTP/1\.[01])")
# Request lines found valid, as (method, target, version): clients repeat theirs (an
# API's endpoints, a page's assets, health checks). Bounded (proxy.memo).
_KNOWN_REQUEST_LINES: dict[bytes, tuple[bytes, ...]] = {}
_KNOWN_REQUEST_LINES_KEPT = 4096
_KNOWN_REQUEST_LINE_LENGTH = 256
HEAD_END = b"\r\n\r\n"
CRLF = b"\r\n"
# Fields whose rules only the line parser applies: a body's framing, and Expect (Twisted
# answers 100-continue).
PARSER_FIELDS = frozenset({b"content-length", b"transfer-encoding", b"expect"})


def simple_head(data: bytes, head_limit: int, max_fields: int) -> tuple[bytes, bytes, bytes, list] | None:
    """(method, target, version, [(lower-case name, value)]) when `data` is exactly one
    complete head that announces no body; None when the line parser must read it."""
    end = data.find(HEAD_END)
    if end <= 0 or end + 4 != len(data) or len(data) > head_limit:
        return None
    line_end = data.find(CRLF)
    request_line = data[:line_end]
    request = _KNOWN_REQUEST_LINES.get(request_line)
    if request is None:
        match = REQUEST_LINE.fullmatch(request_line)
        if match is None:
            return None
        request = match.groups()
        if line_end <= _KNOWN_REQUEST_LINE_LENGTH:
            remember(_KNOWN_REQUEST_LINES, request_line, request, _KNOWN_REQUEST_LINES_KEPT)
    block_start = line_end + 2
    fields = []
    if block_start < end:
        lines = data[block_start:end].split(CRLF)
        if len(lines) >= max_fields:
            return None
        known = KNOWN_FIELD_LINES
        for line in lines:
            field = known.get(line) or field_of_line(line)
            if field is None or field[0] in PARSER_FIELDS:
                return None
            fields.append(field)
    method, target, version = request
    return method, target, version, fields
