"""Responses the proxy generates itself (404, 400, 502, 503, 504), built once per status."""
from __future__ import annotations

from proxy.error_responses import CONTENT_TYPE, error_body

_cache: dict[int, tuple[list, bytes]] = {}


def _prepared(status: int) -> tuple[list, bytes]:
    entry = _cache.get(status)
    if entry is None:
        body = error_body(status)
        headers = [(b"content-type", CONTENT_TYPE), (b"content-length", str(len(body)).encode())]
        entry = _cache[status] = (headers, body)
    return entry


async def respond(send, status: int, extra_headers: list | tuple = ()) -> None:
    """Send a complete small plain-text response."""
    headers, body = _prepared(status)
    if extra_headers:
        headers = headers + list(extra_headers)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def with_header(send, field: tuple[bytes, bytes]):
    """`send` that adds one header field to the response head (X-Director-Bucket, a sticky
    cookie's Set-Cookie): whatever answers, the backend, the cache or Director itself."""

    async def send_with_header(message):
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message["headers"], field]}
        await send(message)

    return send_with_header
