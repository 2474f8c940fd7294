"""`manage.py demobackends`: tiny HTTP/1.1 servers for `make run` to balance between.

Each answers every request with 200 and "demo backend <name>\\n" (names app1, app2, … in
listen order), with keep-alive and Content-Length. Plain asyncio streams: no extra packages.
"""
import asyncio
import signal

from django.core.management.base import BaseCommand

from proxy.addresses import ListenAddress, parse_listen

DEFAULT_LISTEN = ["127.0.0.1:3001", "127.0.0.1:3002"]
HEAD_END = b"\r\n\r\n"
CRLF = b"\r\n"
MAX_HEAD = 64 * 1024
RESPONSE_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                 b"Content-Length: %d\r\n%s\r\n")
CLOSE_HEADER = b"Connection: close\r\n"
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class BadRequest(Exception):
    pass


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """(method, version, lower-cased headers) of a request head without its final CRLFCRLF."""
    request_line, *lines = head.decode("latin-1").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(request_line)
    headers = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest(line)
        headers[name.strip().lower()] = value.strip()
    return parts[0], parts[2], headers


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> None:
    """Consume (and drop) the request body: chunked or Content-Length."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size = int((await reader.readuntil(CRLF)).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                return
    length = headers.get("content-length", "0")
    if not length.isdigit():
        raise BadRequest(length)
    await reader.readexactly(int(length))


def wants_close(version: str, headers: dict[str, str]) -> bool:
    connection = headers.get("connection", "").lower()
    return "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)


async def serve_connection(name: str, reader, writer) -> None:
    body = f"demo backend {name}\n".encode()
    try:
        while True:
            try:
                head = await reader.readuntil(HEAD_END)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            try:
                method, version, headers = parse_head(head[:-4])
                await read_body(reader, headers)
            except (BadRequest, ValueError):
                writer.write(BAD_REQUEST)
                await writer.drain()
                return
            close = wants_close(version, headers)
            writer.write(RESPONSE_HEAD % (len(body), CLOSE_HEADER if close else b""))
            if method != "HEAD":
                writer.write(body)
            await writer.drain()
            if close:
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def start(name: str, address: ListenAddress, connections: set) -> asyncio.AbstractServer:
    async def handle(reader, writer):
        connections.add(writer)
        try:
            await serve_connection(name, reader, writer)
        except asyncio.CancelledError:
            pass  # stopping with kept-alive connections open (Python 3.11 would log the cancel)
        finally:
            connections.discard(writer)
    if address.path is not None:
        return await asyncio.start_unix_server(handle, address.path, limit=MAX_HEAD)
    return await asyncio.start_server(handle, address.host, address.port, limit=MAX_HEAD, reuse_address=True)


async def run(addresses: list[ListenAddress], report) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    servers, connections = [], set()
    try:
        for index, address in enumerate(addresses, 1):
            servers.append(await start(f"app{index}", address, connections))
            report(f"demo backend app{index} listening on {address}")
        await stop.wait()
    finally:
        for server in servers:
            server.close()
        for writer in list(connections):  # kept-alive clients (runproxy's pool): since
            writer.close()                # Python 3.12 wait_closed() waits for them
        for server in servers:
            await server.wait_closed()


class Command(BaseCommand):
    help = "Run small HTTP/1.1 demo backends (app1, app2, …) until SIGTERM/SIGINT."
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--listen", action="append", metavar="ADDR",
                            help="HOST:PORT, [V6]:PORT or unix:/path; repeatable (default 127.0.0.1:3001 and :3002)")

    def handle(self, *args, listen=None, **options):
        addresses = [parse_listen(text) for text in (listen or DEFAULT_LISTEN)]
        asyncio.run(run(addresses, lambda line: (self.stdout.write(line), self.stdout.flush())))
