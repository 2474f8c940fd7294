"""HTTPUpstream against real backends on loopback (TCP v4/v6, UNIX): bodies, keep-alive,
framing, timeouts, misbehaving backends, back-pressure and stale connections."""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import tempfile
import time

import pytest

from proxy.addresses import BackendAddress
from proxy.errors import ConnectError, ConnectionClosed, ConnectTimeout, ProtocolError, ReadTimeout, StaleConnection, WriteTimeout
from proxy.upstream.base import RequestBody, Timeouts, UpstreamRequest
from proxy.upstream.http import HTTPUpstream
from tests.support.backends import http_backend, misbehaving_backend, pattern_bytes
from tests.support.waiting import async_wait_for, free_port, wait_for

FAST = Timeouts(connect=2.0, read=2.0, write=2.0)
SHORT = Timeouts(connect=0.3, read=0.3, write=0.3)
MiB = 1024 * 1024


@contextlib.asynccontextmanager
async def upstream_for(address: BackendAddress):
    upstream = HTTPUpstream(address)
    try:
        yield upstream
    finally:
        await upstream.close()


@pytest.fixture
def backend():
    with http_backend("b1") as b:
        yield b


@pytest.fixture
async def upstream(backend):
    async with upstream_for(backend.address) as up:
        yield up


def request(method="GET", target=b"/", body=b"", headers=()):
    body = body if isinstance(body, RequestBody) else RequestBody(body)
    return UpstreamRequest(method, target, [(b"host", b"test"), *headers], body)


async def read_all(response) -> bytes:
    chunks = []
    while chunk := await response.read():
        chunks.append(chunk)
    return b"".join(chunks)


async def fetch(up, method="GET", target=b"/", body=b"", timeouts=FAST, **kw):
    response = await up.send(request(method, target, body, **kw), timeouts)
    try:
        return response, await read_all(response)
    finally:
        response.release()


def header(response, name: bytes) -> bytes | None:
    return next((v for k, v in response.headers if k == name), None)


async def test_get_returns_status_headers_and_body(upstream):
    response, body = await fetch(upstream)
    assert (response.status, body) == (200, b"b1")
    assert header(response, b"x-backend") == b"b1"
    assert header(response, b"content-length") == b"2"


async def test_request_framing_and_fields_reach_the_backend(upstream, backend):
    await fetch(upstream, "GET", b"/a?x=%20y", headers=[(b"x-custom", b"1")])
    await fetch(upstream, "POST", b"/p")
    await fetch(upstream, "DELETE", b"/d", body=b"abc")
    get, post, delete = backend.requests_seen
    assert (get.method, get.target, get.headers["x-custom"]) == ("GET", "/a?x=%20y", ["1"])
    assert "content-length" not in get.headers
    assert post.headers["content-length"] == ["0"]
    assert (delete.headers["content-length"], delete.body_length) == (["3"], 3)


async def test_large_upload_and_download_are_intact(upstream):
    data = os.urandom(20 * MiB)
    with tempfile.TemporaryFile() as spool:
        spool.write(data)
        response, body = await fetch(upstream, "POST", b"/echo", RequestBody(spool))
    digest = hashlib.sha256(data).hexdigest().encode()
    assert header(response, b"x-body-sha256") == digest
    assert hashlib.sha256(body).hexdigest().encode() == digest


async def test_keep_alive_uses_one_connection_for_sequential_requests(upstream, backend):
    for _ in range(100):
        response, _ = await fetch(upstream)
        assert response.status == 200
    assert backend.connections_accepted == 1
    assert upstream.stats() == {"idle": 1, "in_use": 0, "opened": 1}


async def test_ipv6_loopback():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 support")
    with http_backend("v6", host="::1") as b:
        async with upstream_for(b.address) as up:
            assert (await fetch(up))[1] == b"v6"


async def test_unix_socket_backend(tmp_path):
    with http_backend("unix", path=str(tmp_path / "b.sock")) as b:
        async with upstream_for(b.address) as up:
            assert (await fetch(up))[1] == b"unix"
            assert (await fetch(up))[1] == b"unix"
            assert b.connections_accepted == 1


@pytest.mark.parametrize("framing, reused", [("chunked", True), ("length", True), ("close", False)])
async def test_body_framings(upstream, backend, framing, reused):
    size = 3 * MiB + 17
    response, body = await fetch(upstream, target=b"/bytes?size=%d&framing=%s&chunk=50000" % (size, framing.encode()))
    assert body == pattern_bytes(size)
    assert header(response, b"transfer-encoding") is None
    assert (header(response, b"content-length") is not None) is (framing == "length")
    await fetch(upstream)
    assert backend.connections_accepted == (1 if reused else 2)


@pytest.mark.parametrize("method, target, status", [
    ("HEAD", b"/bytes?size=1000", 200), ("GET", b"/status/204", 204), ("GET", b"/status/304", 304),
    ("GET", b"/status/200?early=100", 200), ("GET", b"/status/200?early=103", 200)])
async def test_responses_without_body_or_with_interim_keep_the_connection(upstream, backend, method, target, status):
    response, body = await fetch(upstream, method, target)
    assert response.status == status
    assert body == (b"b1" if status == 200 and method == "GET" else b"")
    if method == "HEAD":
        assert header(response, b"content-length") == b"1000"
    await fetch(upstream)
    assert backend.connections_accepted == 1


async def test_connect_errors_are_mapped(tmp_path):
    cases = [(BackendAddress("http", host="127.0.0.1", port=free_port()), "connection refused"),
             (BackendAddress("http", path=str(tmp_path / "missing.sock")), "no such socket"),
             (BackendAddress("http", host="nonexistent.invalid", port=80), "cannot resolve host")]
    for address, message in cases:
        async with upstream_for(address) as up:
            with pytest.raises(ConnectError, match=message) as caught:
                await up.send(request(), FAST)
            assert type(caught.value) is ConnectError


@contextlib.contextmanager
def full_backlog(family, address):
    """A listener that never accepts, its backlog (0) filled: further connects hang."""
    listener = socket.socket(family, socket.SOCK_STREAM)
    fillers = []
    try:
        listener.bind(address)
        listener.listen(0)
        for _ in range(2):
            filler = socket.socket(family, socket.SOCK_STREAM)
            filler.setblocking(False)
            fillers.append(filler)
            with contextlib.suppress(BlockingIOError):
                filler.connect(listener.getsockname())
        yield listener
    finally:
        for sock in [*fillers, listener]:
            sock.close()


async def test_connect_timeout_tcp_full_backlog():
    with full_backlog(socket.AF_INET, ("127.0.0.1", 0)) as listener:
        async with upstream_for(BackendAddress("http", host="127.0.0.1", port=listener.getsockname()[1])) as up:
            with pytest.raises(ConnectTimeout):
                await up.send(request(), SHORT)


async def test_unix_connect_waits_for_backlog_room_then_times_out(tmp_path):
    path = str(tmp_path / "full.sock")
    with full_backlog(socket.AF_UNIX, path) as listener:
        async with upstream_for(BackendAddress("http", path=path)) as up:
            with pytest.raises(ConnectTimeout):
                await up.send(request(), SHORT)
            pending = asyncio.ensure_future(up.send(request(), FAST))
            await asyncio.sleep(0.05)  # let the connect start retrying against the full backlog
            assert not pending.done()
            accepted, _ = listener.accept()  # room in the backlog: the connect goes through
            with accepted:
                conn, _ = await async_wait_for(lambda: _try_accept(listener), what="second accept")
                with conn:
                    assert await _recv_head(conn)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    response = await pending
                    assert (response.status, await read_all(response)) == (200, b"ok")
                    response.release()


def _try_accept(listener):
    listener.setblocking(False)
    try:
        return listener.accept()
    except BlockingIOError:
        return None


async def _recv_head(conn) -> bytes:
    conn.setblocking(False)
    data = b""

    def more():
        nonlocal data
        with contextlib.suppress(BlockingIOError):
            data += conn.recv(65536)
        return b"\r\n\r\n" in data
    await async_wait_for(more, what="request head")
    return data


MISBEHAVIOUR_ERRORS = {  # mode -> (error, raised by send (head) or by read (body))
    "close": (ConnectionClosed, "send"), "reset": (ConnectionClosed, "send"), "stall": (ReadTimeout, "send"),
    "garbage": (ProtocolError, "send"), "partial-head": (ConnectionClosed, "send"),
    "obs-fold": (ProtocolError, "send"), "conflicting-content-length": (ProtocolError, "send"),
    "invalid-content-length": (ProtocolError, "send"), "switching-protocols": (ProtocolError, "send"),
    "bad-status": (ProtocolError, "send"), "huge-head": (ProtocolError, "send"),
    "short-content-length": (ConnectionClosed, "read"), "stall-mid-body": (ReadTimeout, "read"),
    "reset-mid-body": (ConnectionClosed, "read"), "die-mid-chunked": (ConnectionClosed, "read"),
    "bad-chunk-size": (ProtocolError, "read"),
}


@pytest.mark.parametrize("mode", sorted(MISBEHAVIOUR_ERRORS))
async def test_misbehaving_backends_raise_the_right_error(mode):
    error, where = MISBEHAVIOUR_ERRORS[mode]
    with misbehaving_backend(mode) as b:
        async with upstream_for(b.address) as up:
            if where == "send":
                with pytest.raises(error):
                    await up.send(request(), SHORT)
            else:
                response = await up.send(request(), SHORT)
                with pytest.raises(error):
                    await read_all(response)
                response.release()
            assert up.stats()["in_use"] == 0 and up.stats()["idle"] == 0


async def test_close_delimited_body_is_complete_but_not_reused():
    with misbehaving_backend("close-delimited") as b:
        async with upstream_for(b.address) as up:
            response, body = await fetch(up)
            assert body == b"until the end"
            assert up.stats()["idle"] == 0


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi",
    b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi and bytes that belong to no response",
], ids=["connection-close", "http10", "extra-bytes"])
async def test_connections_the_backend_keeps_open_are_still_not_reused_when_they_must_not_be(raw):
    with misbehaving_backend(raw, then="stall") as b:
        async with upstream_for(b.address) as up:
            response, body = await fetch(up)
            assert body == b"hi"
            assert up.stats() == {"idle": 0, "in_use": 0, "opened": 1}


async def test_write_timeout_when_the_backend_stops_reading():
    with misbehaving_backend("deaf") as b:
        async with upstream_for(b.address) as up:
            with pytest.raises(WriteTimeout):
                await up.send(request("POST", b"/", b"x" * (32 * MiB)), SHORT)


async def test_early_response_while_uploading_does_not_deadlock(upstream, backend):
    response, body = await fetch(upstream, "POST", b"/reject", b"x" * (32 * MiB))
    assert (response.status, body) == (413, b"too large")
    assert upstream.stats() == {"idle": 0, "in_use": 0, "opened": 1}


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_read_timeout_is_an_idle_timeout(upstream):
    response, body = await fetch(upstream, target=b"/bytes?size=8&chunk=1&interval=0.1", timeouts=SHORT)
    assert body == pattern_bytes(8)  # 0.7 s in all, never 0.3 s without a byte


async def test_a_shorter_read_timeout_holds_on_a_connection_used_with_a_longer_one(upstream, backend):
    """The connection's one timer outlives an exchange; the next exchange on it, with a
    shorter timeout (another director sharing the pool), must not wait for the old deadline."""
    long = Timeouts(connect=2.0, read=30.0, write=30.0)
    assert (await fetch(upstream, timeouts=long))[0].status == 200
    started = time.monotonic()
    with pytest.raises(ReadTimeout):
        await fetch(upstream, target=b"/slow?delay=5", timeouts=SHORT)
    assert time.monotonic() - started < 3.0  # 0.3 s, not 30
    assert backend.connections_accepted == 1  # the second request did reuse the first one's connection


async def test_back_pressure_bounds_memory_for_a_slow_reader(upstream, backend):
    size = 200 * MiB
    timeouts = Timeouts(connect=2.0, read=0.3, write=2.0)
    response = await upstream.send(request(target=b"/bytes?size=%d&framing=chunked" % size), timeouts)
    sent = []  # while we do not read, the backend must soon be unable to send more

    def stalled():
        sent.append(backend.bytes_sent)
        return len(sent) > 10 and sent[-1] == sent[-10]
    await async_wait_for(stalled, interval=0.02, what="backend blocked by back-pressure")
    assert sent[-1] < 32 * MiB
    await asyncio.sleep(2 * timeouts.read)  # a reader slower than the read timeout is not the backend's fault
    baseline, peak, total, digest = rss(), 0, 0, hashlib.sha256()
    while chunk := await response.read():
        total += len(chunk)
        digest.update(chunk)
        peak = max(peak, rss())
    response.release()
    assert total == size
    assert peak - baseline < 64 * MiB


async def test_server_closing_idle_connection_drops_it_from_the_pool(upstream, backend):
    await fetch(upstream)
    assert backend.close_idle_connections() == 1
    await async_wait_for(lambda: upstream.stats()["idle"] == 0, what="pool to notice the idle close")
    response, body = await fetch(upstream)
    assert (response.status, body, backend.connections_accepted) == (200, b"b1", 2)


@pytest.mark.parametrize("drop", ["close", "reset"])
async def test_stale_reused_connection_is_retried_for_idempotent_methods(drop):
    with http_backend("b1", requests_per_connection=1, drop=drop) as b:
        async with upstream_for(b.address) as up:
            await fetch(up)
            response, body = await fetch(up, "PUT", b"/echo", b"again")
            assert (response.status, body, header(response, b"x-connection")) == (200, b"again", b"2")
            with pytest.raises(ConnectionClosed):
                await fetch(up, "POST", b"/echo", b"once")
            assert [r.method for r in b.requests_seen] == ["GET", "PUT"]


async def test_stale_post_is_not_resent_and_not_held_against_the_backend():
    """The backend read the POST on a reused connection and closed it: it may have run it,
    so it is not sent again, but the failure is a StaleConnection, not a sign of ill health."""
    with http_backend("b1", requests_per_connection=1) as b:
        async with upstream_for(b.address) as up:
            await fetch(up)
            with pytest.raises(StaleConnection) as failed:
                await fetch(up, "POST", b"/echo", b"once")
            assert not failed.value.marks_offline
            assert [r.method for r in b.requests_seen] == ["GET"]  # read, dropped, never answered


async def test_post_does_not_reuse_a_connection_the_backend_closed_a_moment_ago(upstream, backend):
    await fetch(upstream)
    assert backend.close_idle_connections() == 1
    # A blocking wait: the backend's FIN is sent, but this loop has not run to see it yet.
    wait_for(lambda: backend.open_connections == 0, 5, what="the backend to close the idle connection")
    response, body = await fetch(upstream, "POST", b"/echo", b"once")
    assert (response.status, body, backend.connections_accepted) == (200, b"once", 2)


def test_idle_connections_are_dropped_before_common_backend_keep_alive_timeouts():
    assert HTTPUpstream(BackendAddress("http", "127.0.0.1", 1))._pool._idle_timeout < 5  # Apache, Node, uvicorn


async def test_fresh_connection_is_closed_after_the_response(upstream, backend):
    await fetch(upstream)
    response = await upstream.send(request(), FAST, fresh=True)
    assert await read_all(response) == b"b1"
    response.release()
    assert backend.requests_seen[-1].headers["connection"] == ["close"]
    assert backend.connections_accepted == 2
    assert upstream.stats() == {"idle": 1, "in_use": 0, "opened": 2}


async def test_unfinished_or_aborted_responses_close_their_connection(upstream, backend):
    response = await upstream.send(request(target=b"/bytes?size=%d" % (8 * MiB)), FAST)
    assert await response.read()
    response.release()
    response = await upstream.send(request(target=b"/bytes?size=%d" % (8 * MiB)), FAST)
    await response.abort()
    assert await response.read() == b""
    assert upstream.stats() == {"idle": 0, "in_use": 0, "opened": 2}
    await async_wait_for(lambda: backend.open_connections == 0, what="backend to see both closes")


async def test_cancelled_send_discards_its_connection():
    with misbehaving_backend("stall") as b:
        async with upstream_for(b.address) as up:
            task = asyncio.ensure_future(up.send(request(), FAST))
            await async_wait_for(lambda: b.connections_accepted == 1, what="connection")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert up.stats() == {"idle": 0, "in_use": 0, "opened": 1}
            await async_wait_for(lambda: b.open_connections == 0, what="backend to see the close")
