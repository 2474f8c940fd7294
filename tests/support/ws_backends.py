"""A real WebSocket backend for tests: an aiohttp server on its own loop in a daemon thread.

`GET /` answers 200 with the backend's name (health checks). `/ws` is an echo WebSocket
offering the subprotocol "chat" and permessage-deflate; text "close-4001" makes it close with
4001, text "name" answers the backend's name, text "headers" answers the handshake's request headers as JSON, text "ping" makes it
send a ping, text "flood N" makes it send N binary messages of 1 MiB (counted in `flooded`
as each send returns), and text "sink" makes it read nothing until `release()`, then count
the binary messages it gets (`sunk`) without answering them. Every close code a client sends is kept in `closes`, the path of every request
in `paths`. `/plain` answers 200 and
`/missing` 404 to a handshake, as a backend without WebSockets would.
"""
from __future__ import annotations

import asyncio
import json
import threading

from aiohttp import WSMsgType, web

MiB = 1024 * 1024
MAX_MESSAGE = 64 * MiB


class WebSocketBackend:
    """On loopback TCP (`ssl`: a server context, HTTPS), or on the UNIX socket `path`."""

    def __init__(self, name: str, *, ssl=None, path: str | None = None):
        self.name = name
        self.ssl = ssl
        self.path = path
        self.port = 0
        self.closes: list[int | None] = []  # close codes the clients sent
        self.open_sockets = 0
        self.handshakes = 0
        self.paths: list[str] = []
        self.flooded = self.sunk = 0
        self._released: asyncio.Event | None = None
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"ws-backend-{name}")

    @property
    def url(self) -> str:
        if self.path is not None:
            return f"http+unix://{self.path}"
        return f"{'https' if self.ssl else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> WebSocketBackend:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("websocket backend did not start")
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def release(self) -> None:
        """A "sink" WebSocket starts reading."""
        self.loop.call_soon_threadsafe(self._released.set)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._released = asyncio.Event()
        self.loop.run_until_complete(self._listen())
        self._ready.set()
        self.loop.run_forever()

    async def _listen(self) -> None:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/", self._hello)
        app.router.add_get("/ws", self._echo)
        app.router.add_get("/plain", self._hello)
        self.runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self.runner.setup()
        if self.path is not None:
            await web.UnixSite(self.runner, self.path).start()
            return
        await web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.ssl).start()
        self.port = self.runner.addresses[0][1]

    @web.middleware
    async def _record(self, request: web.Request, handler):
        self.paths.append(request.path)
        return await handler(request)

    async def _hello(self, request: web.Request) -> web.Response:
        return web.Response(text=self.name)

    async def _echo(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("chat",), compress=True, max_msg_size=MAX_MESSAGE, autoping=True)
        await ws.prepare(request)
        self.handshakes += 1
        self.open_sockets += 1
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    await self._text(ws, request, message.data)
                elif message.type == WSMsgType.BINARY:
                    await ws.send_bytes(message.data)
        finally:
            self.open_sockets -= 1
            self.closes.append(ws.close_code)
        return ws

    async def _text(self, ws: web.WebSocketResponse, request: web.Request, text: str) -> None:
        if text == "close-4001":
            await ws.close(code=4001, message=b"backend says bye")
        elif text == "name":
            await ws.send_str(self.name)
        elif text == "headers":
            await ws.send_str(json.dumps({k.lower(): v for k, v in request.headers.items()}))
        elif text == "ping":
            await ws.ping(b"from-backend")
        elif text.startswith("flood "):
            for number in range(int(text.split()[1])):
                await ws.send_bytes(number.to_bytes(4, "big") * (MiB // 4))
                self.flooded += 1
        elif text == "sink":
            await self._released.wait()
            async for message in ws:
                self.sunk += message.type == WSMsgType.BINARY
        else:
            await ws.send_str(text)


def websocket_backend(name: str, *, ssl=None, path: str | None = None) -> WebSocketBackend:
    return WebSocketBackend(name, ssl=ssl, path=path).start()
