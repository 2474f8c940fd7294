"""Hello-world ASGI app for daphne: the server's own ceiling, same body as the nginx backend.

`BODY` is the one definition of the benchmark response; the nginx backend config and the
sanity check of every row use it, and php/hello.php prints the same 40 bytes.
"""
from __future__ import annotations

BODY = b"Hello from the Director benchmark! (40B)"

_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())],
}
_BODY = {"type": "http.response.body", "body": BODY}


async def application(scope, receive, send):
    if scope["type"] != "http":
        return
    await send(_START)
    await send(_BODY)
