"""Micro-benchmark: Director's HTTPUpstream vs aiohttp's client against the same local server.

Runs the test backend (tests/support/backends.py) in a child process, or uses --url, then
measures sequential and concurrent GET rates over keep-alive connections. Besides the wall
rate (bounded by the server too) it prints the client's own CPU time per request, which is
what the proxy pays.

    /tmp/venv/bin/python bench/upstream_client.py [--requests 5000] [--concurrency 32] [--url http://127.0.0.1:8080]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402

from proxy.addresses import parse_backend_url  # noqa: E402
from proxy.upstream.base import Timeouts, UpstreamRequest  # noqa: E402
from proxy.upstream.http import HTTPUpstream  # noqa: E402
from tests.support.waiting import free_port, wait_port  # noqa: E402

TIMEOUTS = Timeouts(connect=5, read=30, write=30)
PATH = "/"


class Director:
    name = "HTTPUpstream"

    def __init__(self, url: str, concurrency: int):
        self.upstream = HTTPUpstream(parse_backend_url(url), max_idle=concurrency)
        self.request = UpstreamRequest("GET", PATH.encode(), [(b"host", b"bench")])

    async def get(self) -> int:
        response = await self.upstream.send(self.request, TIMEOUTS)
        while await response.read():
            pass
        response.release()
        return response.status

    async def close(self):
        await self.upstream.close()


class AioHTTP:
    name = "aiohttp"

    def __init__(self, url: str, concurrency: int):
        connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=30)
        self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        self.url = url + PATH

    async def get(self) -> int:
        async with self.session.get(self.url, headers={"host": "bench"}) as response:
            await response.read()
            return response.status

    async def close(self):
        await self.session.close()


async def measure(client_class, url: str, requests: int, concurrency: int) -> tuple[float, float]:
    """(requests per second, client CPU microseconds per request)."""
    client = client_class(url, concurrency)
    try:
        for _ in range(min(200, requests)):  # warm up connections and caches
            await client.get()
        per_worker = requests // concurrency

        async def worker():
            for _ in range(per_worker):
                if await client.get() != 200:
                    raise RuntimeError("unexpected status")
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        done = per_worker * concurrency
        return done / wall, cpu / done * 1e6
    finally:
        await client.close()


def start_server() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.backends", "--port", str(port)],
                            cwd=REPO, stdout=subprocess.DEVNULL, start_new_session=True)
    wait_port("127.0.0.1", port)
    return proc, f"http://127.0.0.1:{port}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--url", help="an existing server instead of the test backend")
    args = parser.parse_args()
    proc, url = (None, args.url) if args.url else start_server()
    try:
        print(f"server {url}{PATH}, {args.requests} requests per run, client pid {os.getpid()}")
        print(f"{'client':<14}{'mode':<14}{'req/s':>10}{'client CPU µs/req':>20}")
        for concurrency in (1, args.concurrency):
            for client_class in (Director, AioHTTP):
                rate, cpu = asyncio.run(measure(client_class, url, args.requests, concurrency))
                mode = "sequential" if concurrency == 1 else f"{concurrency} concurrent"
                print(f"{client_class.name:<14}{mode:<14}{rate:>10.0f}{cpu:>20.1f}")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
