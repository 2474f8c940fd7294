"""WebSocket echo throughput: 1 KiB binary messages through Director against the backend direct.

    .venv/bin/python bench/websocket_echo.py [--seconds 10] [--connections 16] [--window 8]

An aiohttp echo backend runs in a process of its own (no compression); the client keeps
`window` messages in flight on each of `connections` WebSockets and counts the echoes that
come back intact. The same client measures the backend direct, then through a `runproxy`
(one worker) passing to it. Prints messages/s for both, the ratio, and the CPU time the
runproxy process used per echoed message (both directions), the figure that depends least
on what else the machine runs: the client and backend are Python too and compete for CPU.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from bench import servers  # noqa: E402
from tests.support.waiting import free_port, wait_port  # noqa: E402

MESSAGE = os.urandom(1024)


async def _echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        await ws.send_bytes(message.data)
    return ws


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def serve_backend(port: int) -> None:
    app = web.Application()
    app.router.add_get("/", _hello)
    app.router.add_get("/ws", _echo)
    web.run_app(app, host=servers.HOST, port=port, print=None)


async def _one(session: aiohttp.ClientSession, url: str, window: int, until: float) -> int:
    echoed = 0
    async with session.ws_connect(url, max_msg_size=0) as ws:
        for _ in range(window):
            await ws.send_bytes(MESSAGE)
        while time.monotonic() < until:
            message = await ws.receive(timeout=30)
            if message.data != MESSAGE:
                raise RuntimeError(f"a bad echo: {message.type} {str(message.data)[:40]}")
            echoed += 1
            await ws.send_bytes(MESSAGE)
    return echoed


async def measure(url: str, seconds: float, connections: int, window: int) -> float:
    """Echoed messages per second."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        started = time.monotonic()
        counts = await asyncio.gather(*(_one(session, url, window, started + seconds) for _ in range(connections)))
        return sum(counts) / (time.monotonic() - started)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--serve-backend", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_backend:
        serve_backend(args.serve_backend)
        return
    port = free_port(servers.HOST)
    backend = subprocess.Popen([sys.executable, __file__, "--serve-backend", str(port)], start_new_session=True)
    director = None
    try:
        wait_port(servers.HOST, port)
        with tempfile.TemporaryDirectory(prefix="director-ws-bench-") as workdir:
            director = servers.director(Path(workdir), "director-ws", servers.director_config(f"http://{servers.HOST}:{port}"))
            figures = {}
            for label, base in (("direct", f"http://{servers.HOST}:{port}"), ("Director", f"http://{servers.HOST}:{director.port}")):
                asyncio.run(measure(base + "/ws", 2.0, args.connections, args.window))  # warm-up
                cpu = cpu_seconds(director.pid)
                figures[label] = asyncio.run(measure(base + "/ws", args.seconds, args.connections, args.window))
                cpu = cpu_seconds(director.pid) - cpu
                print(f"{label:>8}: {figures[label]:9.0f} messages/s (1 KiB echo, {args.connections} connections, "
                      f"window {args.window})")
            print(f"Director / direct: {figures['Director'] / figures['direct']:.0%}; Director CPU "
                  f"{cpu / (figures['Director'] * args.seconds) * 1e6:.1f} µs per echoed message")
    finally:
        if director is not None:
            director.stop()
        backend.terminate()
        backend.wait(10)


if __name__ == "__main__":
    main()
