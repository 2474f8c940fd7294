"""The small plain-text error responses Director writes itself (the server's 400/408/413/431
and the proxy's 404/502/503/504): one table of status, reason phrase, body and head."""
from __future__ import annotations

from http import HTTPStatus

CONTENT_TYPE = b"text/plain; charset=utf-8"

REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
REASONS.update({  # RFC 9110 phrases where older Pythons (and Twisted) have RFC 7231's
    413: b"Content Too Large", 414: b"URI Too Long", 416: b"Range Not Satisfiable", 422: b"Unprocessable Content",
})


def error_body(status: int) -> bytes:
    """`404 Not Found\\n`: the whole body of every error response."""
    return b"%d %s\n" % (status, REASONS[status])


def closing_response(status: int) -> bytes:
    """A complete HTTP/1.1 error response that announces the connection closes."""
    body = error_body(status)
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
        % (status, REASONS[status], CONTENT_TYPE, len(body), body)
    )
