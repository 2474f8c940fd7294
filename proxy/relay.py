"""Streaming an upstream response to the client, and what happens when the client leaves.

A failure after the response head was sent propagates as an exception: proxy.server_protocol
then closes the client connection (never a response that looks complete). Back-pressure comes
from `send()`, which does not return while the client is not reading.
"""
from __future__ import annotations

import asyncio
import logging

from proxy.errors import UpstreamError
from proxy.headers import HeaderRules
from proxy.upstream import Timeouts, Upstream, UpstreamRequest, UpstreamResponse

log = logging.getLogger("director.proxy")

BODY_START = "http.response.start"
BODY = "http.response.body"


async def open_response(upstream: Upstream, request: UpstreamRequest, timeouts: Timeouts) -> tuple[UpstreamResponse, bytes]:
    """Send the request; return the response and its first body chunk (see first_chunk)."""
    response = await upstream.send(request, timeouts)
    try:
        return response, await first_chunk(response, request)
    except BaseException:
        response.release()
        raise


async def first_chunk(response: UpstreamResponse, request: UpstreamRequest) -> bytes:
    """The first body chunk (b"" for HEAD), read before anything goes to the client; the
    whole body when all of it is here already (`body_complete`, or a first chunk as long as
    the Content-Length), so that `relay` sends it in one write.

    Nothing reaches the client before it (the server writes the head with the first body
    bytes), so a backend failing up to here - a bad first chunk line, a timeout before any
    body byte, a FastCGI end other than "complete" after the output - still fails "before
    the response": the caller answers 502/504 or retries (SPEC §7.5) instead of the
    server's 500. An UpstreamError releases the response.
    """
    if request.method == "HEAD":
        return b""
    try:
        first = response.ready()
        if first is None:
            first = await response.read()
        if first and (response.body_complete or len(first) == _content_length(response.headers)):
            parts = [first]
            while True:
                more = response.ready()
                if more is None:
                    more = await response.read()
                if not more:
                    break
                parts.append(more)
            first = parts[0] if len(parts) == 1 else b"".join(parts)
        return first
    except UpstreamError:
        response.release()
        raise


async def relay(response: UpstreamResponse, send, rules: HeaderRules, head_only: bool, *, first: bytes) -> int:
    """Send head and body, starting with `first` (from open_response); returns the status.
    The caller releases the response."""
    status = response.status
    headers = rules.response(response.headers)
    start = {"type": BODY_START, "status": status, "headers": headers}
    if head_only:
        await send(start)
        await send({"type": BODY, "body": b"", "more_body": False})
        return status
    read = response.read
    chunk = first
    if chunk and response.body_complete:
        # All of the body (first_chunk read it to its end): one write with the end, with a
        # Content-Length where the backend sent none (php-fpm usually does not), not chunked.
        rest = response.ready()  # b"" at once
        if rest is None:
            rest = await read()
        if not rest:
            if _content_length(response.headers) < 0:
                headers.append((b"content-length", b"%d" % len(chunk)))
            await send(start)
            await send({"type": BODY, "body": chunk, "more_body": False})
            return status
        await send(start)
        await send({"type": BODY, "body": chunk, "more_body": True})
        chunk = rest
    else:
        await send(start)
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

    def finished(task: asyncio.Task) -> None:
        _log_background(task)
        done()
    task.add_done_callback(finished)


def _log_background(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("background upstream finish failed: %s", task.exception())
