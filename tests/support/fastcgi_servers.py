"""FastCGI servers for tests: real php-fpm, flup and fcgiwrap processes, and a fake server.

The real ones run as child processes (stopped by the fixtures that start them); the fake one
runs in the test's event loop and misbehaves on purpose, one `mode` per protocol fault.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from proxy.upstream import fastcgi_records as fr
from tests.support.processes import REPO, Process, python_args, require_binary
from tests.support.waiting import wait_for, wait_port

PHP_ROOT = REPO / "tests" / "fixtures" / "php"
CGI_ROOT = REPO / "tests" / "fixtures" / "cgi"

_FPM_CONF = """\
[global]
pid = {dir}/php-fpm.pid
error_log = {dir}/php-fpm.log
daemonize = no

[unix]
{user}listen = {dir}/php.sock
pm = static
pm.max_children = 4
{php_values}
[tcp]
{user}listen = 127.0.0.1:{port}
pm = static
pm.max_children = 2
{php_values}"""
_PHP_VALUES = """\
php_admin_value[post_max_size] = 0
php_admin_value[output_buffering] = 0
php_admin_value[log_errors] = 1
php_admin_value[display_errors] = 0
php_admin_value[memory_limit] = 64M
"""


@dataclass
class RealServer:
    process: Process
    socket_path: str | None = None
    port: int | None = None
    extra: dict = field(default_factory=dict)

    def stop(self) -> None:
        self.process.stop()


def unix_socket_accepts(path: str) -> bool:
    """A UNIX socket exists AND listens (servers create the file at bind(), before listen())."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        return probe.connect_ex(path) == 0


def start_php_fpm(workdir: Path, port: int) -> RealServer:
    """php-fpm8.2 in the foreground with a pool on `workdir/php.sock` and one on 127.0.0.1:port."""
    binary = require_binary("php-fpm8.2", "php8.2-fpm")
    root = os.geteuid() == 0
    conf = workdir / "php-fpm.conf"
    conf.write_text(_FPM_CONF.format(dir=workdir, port=port, php_values=_PHP_VALUES,
                                     user="user = root\ngroup = root\n" if root else ""))
    args = [binary, "-F", "-n", "-y", conf] + (["-R"] if root else [])
    server = RealServer(Process(args, workdir / "php-fpm.out"), socket_path=str(workdir / "php.sock"), port=port)
    try:
        wait_for(lambda: unix_socket_accepts(server.socket_path) or not server.process.alive(), what="php-fpm socket")
        if not server.process.alive():
            raise AssertionError(f"php-fpm exited: {server.process.output()}{(workdir / 'php-fpm.log').read_text()}")
        wait_port("127.0.0.1", port)
    except BaseException:
        server.stop()
        raise
    return server


def start_flup(host: str, port: int, workdir: Path) -> RealServer:
    """flup's threaded WSGIServer (tests/fixtures/cgi/flup_echo.py) on host:port."""
    process = Process(python_args(CGI_ROOT / "flup_echo.py", host, port), workdir / f"flup-{port}.out")
    try:
        wait_port(host, port)
    except BaseException:
        process.stop()
        raise
    return RealServer(process, port=port)


def start_fcgiwrap(workdir: Path) -> RealServer:
    """fcgiwrap on a UNIX socket, running CGI scripts named by SCRIPT_FILENAME (stderr sent)."""
    binary = require_binary("fcgiwrap", "fcgiwrap")
    path = str(workdir / "fcgiwrap.sock")
    process = Process([binary, "-f", "-c", "2", "-s", f"unix:{path}"], workdir / "fcgiwrap.out")
    try:
        wait_for(lambda: unix_socket_accepts(path), what="fcgiwrap socket")
    except BaseException:
        process.stop()
        raise
    return RealServer(process, socket_path=path)


@pytest.fixture
def fastcgi_log(caplog):
    """caplog with the records of director.fastcgi (the `director` logger does not propagate)."""
    logger = logging.getLogger("director.fastcgi")
    caplog.set_level(logging.INFO, "director.fastcgi")
    attach = not _reaches(logger, caplog.handler)
    if attach:
        logger.addHandler(caplog.handler)
    yield caplog
    if attach:
        logger.removeHandler(caplog.handler)


def _reaches(logger: logging.Logger, handler: logging.Handler) -> bool:
    """Whether records of `logger` already get to `handler` (following propagation)."""
    while logger is not None:
        if handler in logger.handlers:
            return True
        logger = logger.parent if logger.propagate else None
    return False


# -- the fake server ------------------------------------------------------------------------

OK_RESPONSE = b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhello"
MODES = ("ok", "overloaded", "cant-mpx", "unknown-role", "unknown-status", "unknown-type", "overlong", "wrong-version", "truncated",
         "no-blank-line", "bad-status", "huge-head", "close-before-end", "close-at-once", "other-request-id",
         "short-body", "stderr-flood", "abort", "abort-before-head", "stall",
         "early-answer", "rejected-after-output")


def _stdout(data: bytes, request_id: int = 1) -> bytes:
    return b"".join(fr.encode_stream(fr.STDOUT, request_id, data)) + fr.encode_record(fr.STDOUT, request_id)


def _complete(status: int = fr.REQUEST_COMPLETE) -> bytes:
    return fr.encode_end_request(1, 0, status)


_CANNED = {
    "ok": _stdout(OK_RESPONSE) + _complete(),
    "overloaded": _complete(fr.OVERLOADED),
    "cant-mpx": _complete(fr.CANT_MPX_CONN),
    "unknown-role": _complete(fr.UNKNOWN_ROLE),
    "unknown-status": _complete(7),
    "unknown-type": fr.encode_record(42, 1, b"?") + _complete(),
    "overlong": fr.encode_record(fr.STDOUT, 1, OK_RESPONSE) + b"garbage!" + _complete(),
    "wrong-version": b"\x02" + fr.encode_record(fr.STDOUT, 1, OK_RESPONSE)[1:] + _complete(),
    "truncated": fr.encode_record(fr.STDOUT, 1, OK_RESPONSE)[:20],
    "no-blank-line": _stdout(b"Content-Type: text/plain\r\n") + _complete(),
    "bad-status": _stdout(b"Status: 999 Nope\r\n\r\n") + _complete(),
    "huge-head": _stdout(b"".join(b"X-Filler-%d: %s\r\n" % (i, b"a" * 1000) for i in range(70)) + b"\r\n") + _complete(),
    "close-before-end": _stdout(OK_RESPONSE)[:-fr.HEADER_LEN],
    "close-at-once": b"",
    "other-request-id": _stdout(OK_RESPONSE, request_id=2) + _complete(),
    "short-body": _stdout(b"Content-Length: 100\r\n\r\nshort"),  # END_REQUEST follows late: see _LATE_END
    "rejected-after-output": _stdout(OK_RESPONSE) + _complete(fr.CANT_MPX_CONN),
    "stderr-flood": b"".join(fr.encode_stream(fr.STDERR, 1, b"e" * 20_000)) + _stdout(OK_RESPONSE) + _complete(),
}
EARLY_BODY_SIZE = 32 * 1024 * 1024  # more than loopback socket buffers hold
_KEEPS_CONNECTION = {"ok", "stderr-flood", "short-body"}
# Modes whose END_REQUEST comes this long after their output, so that a proxy has sent the
# response head by then: the failure it carries is one after the response started.
_LATE_END = {"short-body": 0.2}


class FakeFastCGIServer:
    """Reads whole requests and answers each with the canned bytes of `mode` (see MODES).

    `received` lists every record type received, `params` the last request's params;
    `opened`/`closed` count connections. In "abort" mode it sends a response head and waits
    for ABORT_REQUEST before END_REQUEST ("abort-before-head": sends nothing before it, like a
    long-running script); "short-body" ends its output late (_LATE_END); in "stall" mode it never reads nor answers; in
    "early-answer" mode it sends EARLY_BODY_SIZE bytes of STDOUT and END_REQUEST right after
    the params, and reads STDIN only once all of that was taken (deadlocks a client that
    does not read while it writes).
    """

    def __init__(self, mode: str = "ok"):
        assert mode in MODES, mode
        self.mode = mode
        self.received: list[int] = []
        self.params: dict[bytes, bytes] = {}
        self.stdin = b""
        self.opened = 0
        self.closed = 0
        self._server: asyncio.base_events.Server | None = None
        self._stopping = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> "FakeFastCGIServer":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def drop_connections(self) -> None:
        """Close every open connection now, as a backend restarting its workers does."""
        for writer in self._writers:
            writer.close()

    async def stop(self) -> None:
        self._stopping.set()
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened += 1
        self._writers.add(writer)
        stream = _RecordReader(reader, self.received)
        try:
            if self.mode == "stall":
                await self._stopping.wait()
                return
            while await self._read_request(stream, writer):
                if self.mode == "early-answer":
                    pass
                elif self.mode == "abort":
                    writer.write(_stdout(OK_RESPONSE)[:-fr.HEADER_LEN])
                    await stream.next(fr.ABORT_REQUEST)
                    writer.write(_complete())
                elif self.mode == "abort-before-head":
                    await stream.next(fr.ABORT_REQUEST)
                    writer.write(_complete())
                else:
                    writer.write(_CANNED[self.mode])
                if self.mode in _LATE_END:
                    await writer.drain()
                    await asyncio.sleep(_LATE_END[self.mode])
                    writer.write(_complete())
                await writer.drain()
                if self.mode not in _KEEPS_CONNECTION:
                    break
        except (ConnectionError, EOFError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            self.closed += 1

    async def _read_request(self, stream: "_RecordReader", writer: asyncio.StreamWriter) -> bool:
        try:
            begin = await stream.next()
        except EOFError:
            return False
        assert begin.type == fr.BEGIN_REQUEST and fr.decode_begin_request(begin.content) == (fr.RESPONDER, fr.KEEP_CONN)
        params = b""
        while (record := await stream.next(fr.PARAMS)).content:
            params += record.content
        self.params = dict(fr.decode_name_values(params))
        if self.mode == "early-answer":
            writer.write(_stdout(b"Status: 200 OK\r\n\r\n" + b"o" * EARLY_BODY_SIZE) + _complete())
            await writer.drain()
        stdin = bytearray()
        while (record := await stream.next(fr.STDIN)).content:
            stdin += record.content
        self.stdin = bytes(stdin)
        return True


class _RecordReader:
    """Records from one connection of the fake server, each type noted in `log`."""

    def __init__(self, reader: asyncio.StreamReader, log: list[int]):
        self._reader, self._log = reader, log
        self._parser = fr.RecordParser()
        self._pending: list[fr.Record] = []

    async def next(self, wanted: int | None = None) -> fr.Record:
        """The next record (of type `wanted`, skipping others); EOFError at end of stream."""
        while True:
            while not self._pending:
                data = await self._reader.read(65536)
                if not data:
                    raise EOFError
                self._pending.extend(self._parser.feed(data))
            record = self._pending.pop(0)
            self._log.append(record.type)
            if wanted is None or record.type == wanted:
                return record
