"""FastCGIUpstream against a misbehaving FastCGI server (real sockets, fake application)."""
from __future__ import annotations

import asyncio

import pytest

from balancer.health.probe import build_request
from proxy.addresses import BackendAddress
from proxy.errors import BackendOverloaded, ConnectError, ConnectionClosed, ProtocolError, RequestRejected, WriteTimeout
from proxy.upstream import fastcgi_records as fr
from proxy.upstream.base import RequestBody, Timeouts, UpstreamRequest
from proxy.upstream.cgi import BadRequestPath
from proxy.upstream.fastcgi import STDERR_LOG_LIMIT, FastCGIUpstream
from tests.support.fastcgi_servers import EARLY_BODY_SIZE, FakeFastCGIServer, fastcgi_log  # noqa: F401
from tests.support.waiting import async_wait_for, free_port

TIMEOUTS = Timeouts(connect=5, read=5, write=5)


def get(target: bytes = b"/x") -> UpstreamRequest:
    return UpstreamRequest(method="GET", target=target, headers=[(b"host", b"fake")])


async def serve(mode: str):
    server = await FakeFastCGIServer(mode).start()
    return server, FastCGIUpstream(BackendAddress("fastcgi", host="127.0.0.1", port=server.port))


@pytest.fixture
async def fake(request):
    server, upstream = await serve(request.param)
    yield server, upstream
    await upstream.close()
    await server.stop()


async def assert_discarded(server, upstream):
    await async_wait_for(lambda: server.closed == server.opened, what="the server to see the connection close")
    assert upstream.stats()["idle"] == 0 and upstream.stats()["in_use"] == 0


@pytest.mark.parametrize("fake, error, match", [
    ("overloaded", BackendOverloaded, "FCGI_OVERLOADED"),
    ("cant-mpx", RequestRejected, "FCGI_CANT_MPX_CONN"),
    ("unknown-role", RequestRejected, "FCGI_UNKNOWN_ROLE"),
    ("unknown-status", RequestRejected, "protocol status 7"),
    ("unknown-type", ProtocolError, "type 42"),
    ("overlong", ProtocolError, "version 103"),
    ("wrong-version", ProtocolError, "version 2"),
    ("truncated", ConnectionClosed, "truncated record"),
    ("no-blank-line", ProtocolError, "blank line"),
    ("bad-status", ProtocolError, "Status"),
    ("huge-head", ProtocolError, "64 KiB"),
    ("close-at-once", ConnectionClosed, "before END_REQUEST"),
    ("other-request-id", ProtocolError, "request 2"),
], indirect=["fake"])
async def test_faults_before_the_head_raise_from_send(fake, error, match):
    server, upstream = fake
    with pytest.raises(error, match=match):
        await upstream.send(get(), TIMEOUTS)
    await assert_discarded(server, upstream)


@pytest.mark.parametrize("fake", ["overloaded"], indirect=True)
async def test_overloaded_is_safe_to_resend_with_503(fake):
    _, upstream = fake
    with pytest.raises(BackendOverloaded) as caught:
        await upstream.send(UpstreamRequest(method="POST", target=b"/", headers=[], body=RequestBody(b"x")), TIMEOUTS)
    assert caught.value.safe_to_resend and caught.value.status == 503


@pytest.mark.parametrize("fake", ["close-before-end"], indirect=True)
async def test_close_before_end_request_fails_the_body(fake):
    server, upstream = fake
    response = await upstream.send(get(), TIMEOUTS)
    assert (response.status, await response.read()) == (200, b"hello")
    with pytest.raises(ConnectionClosed):
        await response.read()
    await assert_discarded(server, upstream)


@pytest.mark.parametrize("fake", ["short-body"], indirect=True)
async def test_body_shorter_than_content_length_raises(fake):
    server, upstream = fake
    response = await upstream.send(get(), TIMEOUTS)
    assert (b"content-length", b"100") in response.headers
    assert await response.read() == b"short"
    with pytest.raises(ConnectionClosed, match="95 bytes short"):
        await response.read()
    await assert_discarded(server, upstream)


@pytest.mark.parametrize("fake", ["ok"], indirect=True)
async def test_request_records_and_connection_reuse(fake):
    server, upstream = fake
    body = b"b" * 200_000
    for _ in range(3):
        response = await upstream.send(UpstreamRequest(method="PUT", target=b"/p?q", headers=[], body=RequestBody(body)),
                                       TIMEOUTS)
        assert await response.read() == b"hello" and await response.read() == b""
        response.release()
    assert server.stdin == body and server.params[b"CONTENT_LENGTH"] == b"200000"
    assert server.received[:3] == [fr.BEGIN_REQUEST, fr.PARAMS, fr.PARAMS]
    assert server.received.count(fr.STDIN) == 3 * (len(body) // fr.MAX_STREAM_CHUNK + 2)
    assert upstream.stats() == {"idle": 1, "in_use": 0, "opened": 1}


@pytest.mark.parametrize("fake", ["ok"], indirect=True)
async def test_stale_pooled_connection_is_replaced_transparently(fake):
    server, upstream = fake
    await (await upstream.send(get(), TIMEOUTS)).drain()
    server.drop_connections()  # the client has not seen the close yet when it reuses the connection
    response = await upstream.send(get(), TIMEOUTS)
    assert await response.read() == b"hello"
    await response.drain()
    assert server.opened == 2 and upstream.stats() == {"idle": 1, "in_use": 0, "opened": 2}


async def test_idle_connection_is_closed_after_idle_timeout():
    server = await FakeFastCGIServer("ok").start()
    upstream = FastCGIUpstream(BackendAddress("fastcgi", host="127.0.0.1", port=server.port), idle_timeout=0.2)
    await (await upstream.send(get(), TIMEOUTS)).drain()
    assert upstream.stats()["idle"] == 1
    await assert_discarded(server, upstream)
    await upstream.close()
    await server.stop()


@pytest.mark.parametrize("fake", ["ok"], indirect=True)
async def test_fresh_request_closes_an_idle_connection_first(fake):
    server, upstream = fake
    await (await upstream.send(get(), TIMEOUTS)).drain()
    check = build_request(request_path="/health", host_header="app.example", director="app", backend="fake1", script_filename="/srv/www/index.php")
    await (await upstream.send(check, TIMEOUTS, fresh=True)).drain()
    assert server.opened == 2
    assert (server.params[b"SCRIPT_NAME"], server.params[b"SCRIPT_FILENAME"]) == (b"/health", b"/srv/www/index.php")
    await assert_discarded(server, upstream)


@pytest.mark.parametrize("fake", ["ok"], indirect=True)
async def test_empty_stdin_record_is_always_sent(fake):
    server, upstream = fake
    response = await upstream.send(get(), TIMEOUTS)
    await response.drain()
    assert server.received == [fr.BEGIN_REQUEST, fr.PARAMS, fr.PARAMS, fr.STDIN]
    assert b"CONTENT_LENGTH" not in server.params


@pytest.mark.parametrize("fake", ["early-answer"], indirect=True)
async def test_answer_before_the_body_is_read_does_not_deadlock(fake):
    """The backend writes its whole answer before reading STDIN: STDOUT must be read meanwhile."""
    server, upstream = fake
    request = UpstreamRequest(method="POST", target=b"/", headers=[], body=RequestBody(b"u" * (16 * 1024 * 1024)))
    response = await upstream.send(request, Timeouts(connect=5, read=5, write=2))
    received = 0
    while chunk := await response.read():
        received += len(chunk)
    response.release()
    assert (response.status, received) == (200, EARLY_BODY_SIZE)
    assert upstream.stats()["in_use"] == 0


@pytest.mark.parametrize("fake", ["abort"], indirect=True)
async def test_abort_with_notify_sends_abort_request_and_reads_to_end(fake):
    server, upstream = fake
    response = await upstream.send(get(), TIMEOUTS)
    await response.abort(notify=True)
    assert fr.ABORT_REQUEST in server.received
    assert response._done  # END_REQUEST was read (white-box: nothing else records it)
    await assert_discarded(server, upstream)


@pytest.mark.parametrize("fake", ["abort"], indirect=True)
async def test_abort_without_notify_just_closes(fake):
    server, upstream = fake
    response = await upstream.send(get(), TIMEOUTS)
    await response.abort()
    await assert_discarded(server, upstream)
    assert fr.ABORT_REQUEST not in server.received


@pytest.mark.parametrize("fake", ["abort-before-head"], indirect=True)
@pytest.mark.parametrize("notify", [True, False])
async def test_send_cancelled_before_the_head(fake, notify):
    """The client leaves while the application still works: notify tells it at once."""
    server, upstream = fake
    send = asyncio.get_running_loop().create_task(upstream.send(get(), TIMEOUTS, notify_abort=notify))
    await async_wait_for(lambda: fr.STDIN in server.received, what="the request at the backend")
    send.cancel()
    with pytest.raises(asyncio.CancelledError):
        await send
    assert (fr.ABORT_REQUEST in server.received) == notify
    await assert_discarded(server, upstream)


@pytest.mark.parametrize("fake", ["stderr-flood"], indirect=True)
async def test_stderr_logging_is_bounded(fake, fastcgi_log):
    _, upstream = fake
    upstream.log_context = "director d backend fake"
    response = await upstream.send(get(), TIMEOUTS)
    await response.drain()
    messages = [r.getMessage() for r in fastcgi_log.records]
    assert sum(m.count("e") for m in messages if "more bytes" not in m) <= STDERR_LOG_LIMIT + 100
    assert any(f"{20_000 - STDERR_LOG_LIMIT} more bytes not logged" in m for m in messages)
    assert all(m.startswith("director d backend fake (fastcgi://127.0.0.1:") for m in messages)


@pytest.mark.parametrize("fake", ["stall"], indirect=True)
async def test_backend_not_reading_stdin_hits_write_timeout(fake):
    server, upstream = fake
    body = RequestBody(b"z" * (16 * 1024 * 1024))
    request = UpstreamRequest(method="POST", target=b"/", headers=[], body=body)
    with pytest.raises(WriteTimeout):
        await upstream.send(request, Timeouts(connect=5, read=60, write=0.3))
    assert upstream.stats()["in_use"] == 0 and upstream.stats()["idle"] == 0


async def test_bad_path_is_rejected_before_connecting():
    upstream = FastCGIUpstream(BackendAddress("fastcgi", host="127.0.0.1", port=free_port()))
    with pytest.raises(BadRequestPath):
        await upstream.send(get(b"/a%0d%0aX-Injected:1"), TIMEOUTS)
    with pytest.raises(ConnectError):
        await upstream.send(get(), TIMEOUTS)
    assert upstream.stats()["opened"] == 0
