"""WebSocket clients for tests: aiohttp connections through a test Director."""
from __future__ import annotations

import base64
import os

import aiohttp

from tests.support.director import Director
from tests.support.rawhttp import request

MiB = 1024 * 1024


def connect(session: aiohttp.ClientSession, director: Director, host: str = "echo", path: str = "/ws", **kwargs):
    """`session.ws_connect` through `director` for `host` (async context manager); offers the
    subprotocol "chat" unless told otherwise."""
    kwargs.setdefault("protocols", ("chat",))
    kwargs.setdefault("max_msg_size", 64 * MiB)
    kwargs.setdefault("headers", {"Host": host})
    return session.ws_connect(director.url + path, timeout=aiohttp.ClientWSTimeout(ws_close=10), **kwargs)


async def echo_round(ws, size: int = MiB) -> None:
    """A text message and a binary one of `size` random bytes, each echoed back intact."""
    await ws.send_str("hello")
    assert (await ws.receive(timeout=10)).data == "hello"
    payload = os.urandom(size)
    await ws.send_bytes(payload)
    message = await ws.receive(timeout=30)
    assert message.type == aiohttp.WSMsgType.BINARY and message.data == payload


def handshake(host: str = "echo", path: str = "/ws", *, method: str = "GET", version: str = "HTTP/1.1", drop=(),
              **fields) -> bytes:
    """The bytes of an opening handshake (valid unless told otherwise: `fields` replace
    headers, `drop` removes them) for a raw connection (tests.support.rawhttp)."""
    headers = {"Host": host, "Upgrade": "websocket", "Connection": "Upgrade",
               "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(), "Sec-WebSocket-Version": "13"}
    headers.update(fields)
    return request(method, path, {k: v for k, v in headers.items() if k not in drop}, version=version)
