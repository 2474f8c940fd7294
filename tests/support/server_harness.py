"""A real DirectorServer in a subprocess, serving small ASGI apps that misbehave on request.

Run as `python -m tests.support.server_harness OPTIONS`: it binds port 0 (or the given
addresses), then prints one line `READY {json}` with the bound addresses. Tests use
`start_server(tmp_path, ...)`, which waits for that line and stops the process after.

Traffic routes (path -> behaviour) are in TRAFFIC_ROUTES; `/stats` reports counters the
apps keep (cancellations, disconnect messages, bytes streamed) as JSON.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from proxy.addresses import ListenAddress
from tests.support.processes import Process, python_args
from tests.support.rawhttp import RawHTTP, request
from tests.support.waiting import wait_for

STATS = {"hanging": 0, "cancelled": 0, "disconnect_messages": 0, "streamed": 0, "stream_done": 0,
         "stream_cancelled": 0}
WATCHERS = set()  # strong references to hang()'s side tasks
STREAM_CHUNK = b"x" * 65536


async def respond(send, status: int, body: bytes, headers=(), content_type=b"text/plain"):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body)), *headers]})
    await send({"type": "http.response.body", "body": body})


async def respond_json(send, data):
    await respond(send, 200, json.dumps(data).encode(), content_type=b"application/json")


async def hello(scope, receive, send):
    await respond(send, 200, b"hello")


async def raise_before(scope, receive, send):
    raise RuntimeError("failing before the response")


async def return_without_response(scope, receive, send):
    return


async def start_then_raise(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"set-cookie", b"leak=1")]})
    raise RuntimeError("failing before any body")


async def chunked_then_raise(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise RuntimeError("failing mid-response")


async def length_then_raise(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
    await send({"type": "http.response.body", "body": b"0123456789", "more_body": True})
    raise RuntimeError("failing mid-response")


async def short_body(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
    await send({"type": "http.response.body", "body": b"0123456789"})


async def long_body(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"0123456789"})


async def stream(scope, receive, send):
    """`?mib=N`: N MiB in 64 KiB chunks, chunked encoding; counts bytes whose send() returned."""
    mib = int(parse_qs(scope["query_string"].decode()).get("mib", ["1"])[0])
    await send({"type": "http.response.start", "status": 200, "headers": []})
    try:
        for _ in range(mib * 16):
            await send({"type": "http.response.body", "body": STREAM_CHUNK, "more_body": True})
            STATS["streamed"] += len(STREAM_CHUNK)
    except asyncio.CancelledError:
        STATS["stream_cancelled"] += 1
        raise
    await send({"type": "http.response.body", "body": b""})
    STATS["stream_done"] += 1


async def echo(scope, receive, send):
    """Digest of the body as receive() yields it and as the body_file extension holds it."""
    digest, length, chunks, largest = hashlib.sha256(), 0, 0, 0
    while True:
        message = await receive()
        digest.update(message["body"])
        length += len(message["body"])
        chunks += 1
        largest = max(largest, len(message["body"]))
        if not message.get("more_body"):
            break
    extension = scope["extensions"]["director"]
    body_file = extension["body_file"]
    body_file.seek(0)
    file_digest = hashlib.sha256()
    while block := body_file.read(1 << 20):
        file_digest.update(block)
    await respond_json(send, {
        "length": length, "sha256": digest.hexdigest(), "chunks": chunks, "largest_chunk": largest,
        "file_sha256": file_digest.hexdigest(), "body_length": extension["body_length"],
    })


async def show_scope(scope, receive, send):
    await respond_json(send, {
        "root_path": scope["root_path"], "path": scope["path"], "raw_path": scope["raw_path"].decode(),
        "query_string": scope["query_string"].decode(), "http_version": scope["http_version"],
        "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
        "client": scope["client"], "server": scope["server"],
    })


async def hang(scope, receive, send):
    """Never answers; counts its cancellation. A side task (outliving it) counts the
    http.disconnect message receive() yields once the client has gone."""
    async def watch():
        while (await receive())["type"] != "http.disconnect":
            pass
        STATS["disconnect_messages"] += 1

    watcher = asyncio.ensure_future(watch())
    WATCHERS.add(watcher)
    watcher.add_done_callback(WATCHERS.discard)
    STATS["hanging"] += 1
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        STATS["cancelled"] += 1
        raise


async def stats(scope, receive, send):
    await respond_json(send, STATS)


TRAFFIC_ROUTES = {
    "/hello": hello, "/raise-before": raise_before, "/return-without-response": return_without_response,
    "/start-then-raise": start_then_raise, "/chunked-then-raise": chunked_then_raise, "/length-then-raise": length_then_raise,
    "/short": short_body, "/long": long_body, "/stream": stream, "/echo": echo, "/scope": show_scope,
    "/hang": hang, "/stats": stats,
}


async def traffic_app(scope, receive, send):
    handler = TRAFFIC_ROUTES.get(scope["path"])
    if handler is None:
        await respond(send, 404, b"no such route")
    else:
        await handler(scope, receive, send)


async def management_app(scope, receive, send):
    """Management plane: `/hello`, `/scope`, the failure routes, and a websocket echo."""
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": "management:" + message.get("text", "")})
    if scope["path"] == "/hello":
        await respond(send, 200, b"management")
    elif scope["path"] == "/scope":
        await respond_json(send, {"root_path": scope["root_path"]})
    else:
        handler = TRAFFIC_ROUTES.get(scope["path"])
        await (handler or hello)(scope, receive, send)


def parse_args(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-request-body", type=int, default=1 << 20)
    parser.add_argument("--header-timeout", type=float, default=10.0)
    parser.add_argument("--send-timeout", type=float, default=60.0)
    parser.add_argument("--shutdown-timeout", type=float, default=30.0)
    parser.add_argument("--unix", help="also serve traffic on this UNIX socket")
    parser.add_argument("--traffic-port", type=int, default=0)
    parser.add_argument("--ipv6", action="store_true", help="also serve traffic on [::1]:0")
    parser.add_argument("--inherit-fd", type=int, action="append", default=[],
                        help="also serve traffic on this inherited listening socket")
    parser.add_argument("--clock-offset-file", type=Path,
                        help="the server's clock runs this file's number of seconds ahead (tests move time)")
    return parser.parse_args(argv)


def offset_clock(path: Path):
    """time.monotonic() plus the number of seconds in `path` (0 while it is missing or empty)."""
    def clock() -> float:
        try:
            offset = float(path.read_text() or 0)
        except (OSError, ValueError):
            offset = 0.0
        return time.monotonic() + offset
    return clock


def main(argv=None):
    import proxy.server  # here, not at module level: only the server process needs a reactor

    args = parse_args(argv)
    traffic = [ListenAddress(host="127.0.0.1", port=args.traffic_port)]
    if args.ipv6:
        traffic.append(ListenAddress(host="::1", port=0))
    if args.unix:
        traffic.append(ListenAddress(path=args.unix))
    sockets = {}
    for fd in args.inherit_fd:
        sock = socket.socket(fileno=fd)
        name = sock.getsockname()
        address = ListenAddress(path=name) if sock.family == socket.AF_UNIX else ListenAddress(*name[:2])
        traffic.append(address)
        sockets[address] = sock

    def ready(server):
        asyncio.get_running_loop()  # the callback runs on the running loop (raises otherwise)
        bound = {"traffic": server.bound("traffic"), "management": server.bound("management")}
        print("READY " + json.dumps(bound), flush=True)

    server = proxy.server.build_server(
        traffic_app=traffic_app, management_app=management_app, traffic_listen=traffic,
        management_listen=[ListenAddress(host="127.0.0.1", port=0)],
        max_request_body=args.max_request_body, header_timeout=args.header_timeout, ready_callback=ready,
        send_timeout=args.send_timeout, sockets=sockets, shutdown_timeout=args.shutdown_timeout,
        **({"clock": offset_clock(args.clock_offset_file)} if args.clock_offset_file else {}),
    )
    try:
        server.run()
    except proxy.server.ListenError as exc:
        print(f"error: {exc}", flush=True)
        return 1
    print("STOPPED", flush=True)
    return 0


@dataclass
class ServerHandle:
    process: Process
    traffic: list  # [host, port] pairs or UNIX paths, in listen order
    management: tuple

    @property
    def address(self) -> tuple:
        """The first traffic listener: (host, port)."""
        return tuple(self.traffic[0])

    def connect(self, timeout: float = 5.0) -> RawHTTP:
        return RawHTTP.tcp(*self.address, timeout=timeout)

    def connect_management(self, timeout: float = 5.0) -> RawHTTP:
        return RawHTTP.tcp(*self.management, timeout=timeout)

    def stats(self) -> dict:
        """The apps' counters, fetched over a fresh traffic connection."""
        with self.connect() as conn:
            conn.send(request("GET", "/stats", {"Host": "test"}))
            return json.loads(conn.read_response().body)

    def rss_kib(self) -> int:
        """Resident memory of the server process (VmRSS), in KiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS in /proc status")


@contextlib.contextmanager
def start_server(log_dir: Path, *options: str):
    """Run the harness with `options`; yield a ServerHandle once every listener is bound."""
    process = Process(python_args("-m", "tests.support.server_harness", *options), Path(log_dir) / "server.log")
    try:
        line = wait_for(lambda: _ready_line(process), timeout=20, what="the test server to be ready")
        bound = json.loads(line[len("READY "):])
        yield ServerHandle(process, bound["traffic"], tuple(bound["management"][0]))
    finally:
        process.stop()


def server_fixture(*options: str):
    """A module-scoped pytest fixture running the harness with `options`."""
    @pytest.fixture(scope="module")
    def server(tmp_path_factory):
        with start_server(tmp_path_factory.mktemp("server"), *options) as handle:
            yield handle
    return server


def _ready_line(process: Process):
    for line in process.output().splitlines():
        if line.startswith("READY "):
            return line
    if not process.alive():
        raise AssertionError("test server exited:\n" + process.output())
    return None


if __name__ == "__main__":
    sys.exit(main())
