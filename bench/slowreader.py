"""Slow-reader check (`bench/run.py --slow-reader`): does a proxy stop reading a fast backend
when its client reads slowly, or does it buffer the response in memory?

An nginx backend serves a 1 GiB sparse file; a raw-socket client with a small receive buffer
reads it through the proxy at about 20 MB/s, stops after 256 MiB (or 60 s) and closes. The
proxy's RSS is sampled throughout: a proxy with back-pressure grows by a few MB, one without
grows towards the size of the body.
"""
from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bench import servers
from bench.hello_asgi import BODY
from bench.rss import PeakRss

BIG_FILE = "big.bin"
BIG_SIZE = 1 << 30
READ_LIMIT = 256 << 20
READ_RATE = 20_000_000  # bytes per second
READ_DEADLINE = 60.0
RECV_SIZE = 16 << 10
RECV_BUFFER = 64 << 10  # SO_RCVBUF: keep the kernel from absorbing the body for the proxy
HEAD_END = b"\r\n\r\n"
REQUEST = (f"GET /{BIG_FILE} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").encode("ascii")


@dataclass
class SlowRead:
    status_line: str
    body_bytes: int
    seconds: float

    @property
    def rate_mb(self) -> float:
        return self.body_bytes / 1e6 / self.seconds if self.seconds else 0.0


def slow_read(port: int, limit: int = READ_LIMIT, rate: float = READ_RATE,
              deadline: float = READ_DEADLINE) -> SlowRead:
    """GET the big file at `rate` bytes/s until `limit` body bytes, EOF or `deadline`; close."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
        sock.settimeout(30)
        sock.connect((servers.HOST, port))
        sock.sendall(REQUEST)
        head = b""
        while HEAD_END not in head:
            chunk = sock.recv(RECV_SIZE)
            if not chunk:
                break
            head += chunk
        head, _, body = head.partition(HEAD_END)
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        total, start = len(body), time.monotonic()
        while total < limit and time.monotonic() - start < deadline:
            chunk = sock.recv(RECV_SIZE)
            if not chunk:
                break
            total += len(chunk)
            ahead = total / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)  # pacing the reader, not waiting for an event
        return SlowRead(status_line, total, time.monotonic() - start)


def _big_file(directory: Path) -> None:
    """The backend's document root: index.html (for readiness checks) and a sparse 1 GiB file."""
    directory.mkdir()
    (directory / "index.html").write_bytes(BODY)
    with open(directory / BIG_FILE, "wb") as fh:
        fh.truncate(BIG_SIZE)


def check(label: str, start: Callable[[], servers.Server]) -> str:
    """One table line: how the proxy started by `start` fared with the slow reader."""
    print(f"-- {label}", flush=True)
    try:
        server = start()
    except servers.ServerError as exc:
        line = f"| {label} | unavailable: {exc} | | | | | |"
        print("   " + line, flush=True)
        return line
    try:
        with PeakRss(server.pid) as rss:
            read = slow_read(server.port)
        line = (f"| {label} | {read.status_line} | {read.body_bytes / 2**20:.0f} | {read.seconds:.1f} "
                f"| {read.rate_mb:.1f} | {rss.first / 2**20:.1f} | {rss.peak_mb:.1f} | {rss.growth_mb:.1f} |")
    except OSError as exc:
        line = f"| {label} | failed: {exc} | | | | | |"
    finally:
        server.stop()
    print("   " + line, flush=True)
    return line


def main(workdir: Path, stack: contextlib.ExitStack) -> int:
    root = workdir / "static"
    _big_file(root)
    backend = servers.nginx_backend(workdir, BODY, static_root=root)
    stack.callback(backend.stop)
    lines = [
        "| proxy | status | read MiB | seconds | MB/s | RSS start MB | RSS peak MB | growth MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        check("nginx proxy_pass (reference)", lambda: servers.nginx_proxy(workdir, backend.port)),
        check("Director (1 worker)", lambda: servers.director_http(workdir, backend.port)),
    ]
    report = (f"# Slow reader: {BIG_SIZE >> 20} MiB body, client reads {READ_LIMIT >> 20} MiB "
              f"at {READ_RATE / 1e6:g} MB/s (max {READ_DEADLINE:g} s) then closes\n\n" + "\n".join(lines) + "\n")
    print("\n" + report)
    out = servers.REPO / "bench" / "results" / "slow-reader.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print(f"written to {out.relative_to(servers.REPO)}")
    return 1 if any("| failed:" in line for line in lines) else 0
