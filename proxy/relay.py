"""Streaming an upstream response to the client, and what happens when the client leaves.

A failure after the response head was sent propagates as an exception: proxy.server then
closes the client connection (never a response that looks complete). Back-pressure comes
from `send()`, which does not return while the client is not reading.
"""
from __future__ import annotations

import asyncio
import logging

from proxy.headers import HeaderRules
from proxy.upstream import UpstreamResponse

log = logging.getLogger("director.proxy")

BODY_START = "http.response.start"
BODY = "http.response.body"


async def relay(response: UpstreamResponse, send, rules: HeaderRules, head_only: bool) -> int:
    """Send head and body; returns the status. The caller releases the response."""
    status = response.status
    await send({"type": BODY_START, "status": status, "headers": rules.response(response.headers)})
    if head_only:
        await send({"type": BODY, "body": b"", "more_body": False})
        return status
    read = response.read
    chunk = await read()
    if chunk and len(chunk) == _content_length(response.headers):
        # The whole length-delimited body arrived at once: one write for it and the end.
        rest = await read()
        if not rest:
            await send({"type": BODY, "body": chunk, "more_body": False})
            return status
        await send({"type": BODY, "body": chunk, "more_body": True})
        chunk = rest
    while chunk:
        await send({"type": BODY, "body": chunk, "more_body": True})
        chunk = await read()
    await send({"type": BODY, "body": b"", "more_body": False})
    return status


def _content_length(headers) -> int:
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else -1
    return -1


def finish_after_abort(response: UpstreamResponse, policy: str, done) -> None:
    """The client went away mid-response: apply on_client_abort, then call `done()`.

    close: drop the upstream connection now. notify: FastCGI ABORT_REQUEST, read to the
    end of the request in the background. ignore: let the upstream finish in the background.
    """
    if policy == "close":
        response.release()
        done()
        return
    job = response.abort(notify=True) if policy == "notify" else response.drain()
    task = asyncio.get_running_loop().create_task(job)
    task.add_done_callback(lambda t: (_log_background(t), done()))


def _log_background(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("background upstream finish failed: %s", task.exception())
