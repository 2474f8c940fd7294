"""FastCGIUpstream against real servers: php-fpm (UNIX and TCP), flup (IPv4, IPv6), fcgiwrap."""
from __future__ import annotations

import asyncio
import hashlib
import json
import tempfile

import pytest

from balancer.health.probe import build_request
from proxy.addresses import BackendAddress
from proxy.errors import ReadTimeout
from proxy.upstream.base import RequestBody, Timeouts, UpstreamRequest
from proxy.upstream.fastcgi import FastCGIUpstream
from proxy.upstream.fastcgi_connection import HIGH_WATER
from tests.support.fastcgi_servers import CGI_ROOT, PHP_ROOT, fastcgi_log, start_fcgiwrap, start_flup, start_php_fpm  # noqa: F401
from tests.support.waiting import async_wait_for, free_port

MIB = 1024 * 1024
RSS_GROWTH_LIMIT = 64 * MIB
LARGE_BLOCK = b"0123456789abcdef" * 4096  # what large.php repeats


@pytest.fixture(scope="module")
def php_fpm(tmp_path_factory):
    server = start_php_fpm(tmp_path_factory.mktemp("php-fpm"), free_port())
    yield server
    server.stop()


@pytest.fixture(params=["unix", "tcp"])
def php_address(request, php_fpm) -> BackendAddress:
    if request.param == "unix":
        return BackendAddress("fastcgi", path=php_fpm.socket_path)
    return BackendAddress("fastcgi", host="127.0.0.1", port=php_fpm.port)


@pytest.fixture
async def php(php_address):
    upstream = FastCGIUpstream(php_address, log_context="director app backend php1")
    yield upstream
    await upstream.close()


def php_request(target: bytes, method: str = "GET", body: RequestBody = RequestBody.EMPTY, **kwargs) -> UpstreamRequest:
    kwargs.setdefault("headers", [(b"host", b"app.example:8080")])
    return UpstreamRequest(method=method, target=target, body=body, document_root=str(PHP_ROOT), **kwargs)


async def fetch(upstream, request, timeouts=Timeouts()):
    response = await upstream.send(request, timeouts)
    chunks = []
    while chunk := await response.read():
        chunks.append(chunk)
    response.release()
    return response, b"".join(chunks)


def rss() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


class PeakRSS:
    """Samples this process's RSS while a transfer runs; `growth` is peak minus start."""

    async def __aenter__(self):
        self.start = self.peak = rss()
        self._task = asyncio.create_task(self._sample())
        return self

    async def _sample(self):
        while True:
            self.peak = max(self.peak, rss())
            await asyncio.sleep(0.01)

    async def __aexit__(self, *exc):
        self._task.cancel()
        self.peak = max(self.peak, rss())
        self.growth = self.peak - self.start


async def test_php_sees_the_cgi_params_and_body(php):
    body = bytes(range(256)) * 4096  # 1 MiB
    request = php_request(b"/echo.php/users/7?q=%41&x", "POST", RequestBody(body), https=True,
                          client=("192.0.2.7", 40000), server=("127.0.0.1", 8080), headers=[
                              (b"host", b"app.example:8080"), (b"content-type", b"application/octet-stream"),
                              (b"proxy", b"http://evil.example"), (b"x-custom", b"yes")])
    response, raw = await fetch(php, request)
    assert response.status == 200 and (b"content-type", b"application/json") in response.headers
    echo = json.loads(raw)
    server = echo["server"]
    assert (echo["body_length"], echo["body_sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
    assert server["SCRIPT_NAME"] == "/echo.php" and server["PATH_INFO"] == "/users/7"
    assert server["SCRIPT_FILENAME"] == str(PHP_ROOT / "echo.php")
    assert server["QUERY_STRING"] == "q=%41&x" and server["REQUEST_URI"] == "/echo.php/users/7?q=%41&x"
    assert server["SERVER_NAME"] == "app.example" and server["HTTP_HOST"] == "app.example:8080"
    assert (server["REMOTE_ADDR"], server["REMOTE_PORT"]) == ("192.0.2.7", "40000")
    assert server["HTTPS"] == "on" and server["HTTP_X_CUSTOM"] == "yes"
    assert server["CONTENT_TYPE"] == "application/octet-stream" and server["CONTENT_LENGTH"] == str(len(body))
    assert "HTTP_PROXY" not in server


@pytest.mark.parametrize("mode, status", [("not-found", 404), ("bare", 203), ("code", 418), ("redirect", 302), ("", 200)])
async def test_php_statuses(php, mode, status):
    response, body = await fetch(php, php_request(b"/status.php?mode=" + mode.encode()))
    assert response.status == status
    assert all(name != b"status" for name, _ in response.headers)
    if mode == "redirect":
        assert (b"location", b"/elsewhere") in response.headers


async def test_php_missing_script_is_its_own_404(php):
    response, _ = await fetch(php, php_request(b"/nope.php"))
    assert response.status == 404


async def test_head_request_gets_no_body(php):
    response, body = await fetch(php, php_request(b"/hello.php", "HEAD"))
    assert (response.status, body) == (200, b"")


async def test_php_stderr_is_logged_with_context(php, fastcgi_log):
    response, body = await fetch(php, php_request(b"/stderr.php?tag=t42"))
    assert body == b"logged\n"
    (record,) = [r for r in fastcgi_log.records if "director-test-stderr t42" in r.getMessage()]
    assert "director app backend php1" in record.getMessage() and php.address.url in record.getMessage()


async def test_slow_script_hits_read_timeout_and_connection_is_dropped(php):
    with pytest.raises(ReadTimeout):
        await php.send(php_request(b"/slow.php?ms=3000"), Timeouts(read=0.3))
    assert php.stats()["idle"] == 0 and php.stats()["in_use"] == 0


async def test_keep_alive_reuses_one_connection(php):
    for _ in range(50):
        response, body = await fetch(php, php_request(b"/hello.php"))
        assert body == b"Hello, world!\n"
    assert php.stats() == {"idle": 1, "in_use": 0, "opened": 1}


async def test_health_check_request(php):
    request = build_request(request_path="/hello.php", host_header="app.example", director="app", backend="php1", script_filename=str(PHP_ROOT / "hello.php"))
    response = await php.send(request, Timeouts(), fresh=True)
    await response.drain()
    assert response.status == 200
    assert php.stats()["idle"] == 0  # fresh connections are not pooled


@pytest.fixture
def own_php_fpm(tmp_path):
    """A php-fpm no other test has left workers busy in."""
    server = start_php_fpm(tmp_path, free_port())
    yield server
    server.stop()


async def pin_both_workers(php_fpm, idle_timeout: float) -> FastCGIUpstream:
    """A client whose two idle KEEP_CONN connections hold both workers of the TCP pool."""
    upstream = FastCGIUpstream(BackendAddress("fastcgi", host="127.0.0.1", port=php_fpm.port), idle_timeout=idle_timeout)
    await asyncio.gather(*(fetch(upstream, php_request(b"/slow.php?ms=100")) for _ in range(2)))
    assert upstream.stats()["idle"] == 2
    return upstream


async def test_idle_connections_do_not_starve_other_clients(own_php_fpm):
    """Each open connection holds a php-fpm worker: idle ones of one client (one proxy
    process) are closed soon enough for another client to get a worker."""
    first = await pin_both_workers(own_php_fpm, idle_timeout=0.3)
    second = FastCGIUpstream(first.address)
    _, body = await fetch(second, php_request(b"/hello.php"), Timeouts(read=5))
    assert body == b"Hello, world!\n"
    await async_wait_for(lambda: first.stats()["idle"] == 0, what="the other idle connection to expire")
    await first.close()
    await second.close()


async def test_health_check_gets_a_worker_held_by_an_idle_connection(own_php_fpm):
    upstream = await pin_both_workers(own_php_fpm, idle_timeout=60)
    check = build_request(request_path="/hello.php", host_header="app.example", director="app", backend="php1", script_filename=str(PHP_ROOT / "hello.php"))
    response = await upstream.send(check, Timeouts(read=5), fresh=True)
    await response.drain()
    assert response.status == 200 and upstream.stats() == {"idle": 1, "in_use": 0, "opened": 3}
    await upstream.close()


async def test_100_mib_upload_streams_with_bounded_memory(php_fpm):
    upstream = FastCGIUpstream(BackendAddress("fastcgi", path=php_fpm.socket_path))
    digest = hashlib.sha256()
    with tempfile.TemporaryFile() as spool:
        block = bytes(range(256)) * 4096
        for _ in range(100):
            spool.write(block)
            digest.update(block)
        async with PeakRSS() as memory:
            _, raw = await fetch(upstream, php_request(b"/echo.php", "PUT", RequestBody(spool, 100 * MIB)))
    await upstream.close()
    echo = json.loads(raw)
    assert (echo["body_length"], echo["body_sha256"]) == (100 * MIB, digest.hexdigest())
    assert memory.growth <= RSS_GROWTH_LIMIT, f"RSS grew {memory.growth / MIB:.1f} MiB"


async def test_100_mib_download_streams_with_bounded_memory(php_fpm):
    upstream = FastCGIUpstream(BackendAddress("fastcgi", path=php_fpm.socket_path))
    digest, length = hashlib.sha256(), 0
    async with PeakRSS() as memory:
        response = await upstream.send(php_request(b"/large.php?mib=100"), Timeouts())
        while chunk := await response.read():
            digest.update(chunk)
            length += len(chunk)
        response.release()
    await upstream.close()
    expected = hashlib.sha256(LARGE_BLOCK * 1600).hexdigest()
    assert (length, digest.hexdigest()) == (100 * MIB, expected)
    assert memory.growth <= RSS_GROWTH_LIMIT, f"RSS grew {memory.growth / MIB:.1f} MiB"


async def test_unread_body_pauses_the_backend(php_fpm):
    """A caller that stops reading stops the transport reading: unread data stays bounded."""
    upstream = FastCGIUpstream(BackendAddress("fastcgi", path=php_fpm.socket_path))
    response = await upstream.send(php_request(b"/large.php?mib=50"), Timeouts())
    conn = response._conn  # white-box: the flow-control state of the connection
    await async_wait_for(lambda: conn._reading_paused, what="reading to pause")
    assert HIGH_WATER < conn._unread <= HIGH_WATER + 2 * MIB  # one socket read past the mark at most
    await response.abort()
    assert conn.is_closing()
    await upstream.close()


@pytest.fixture(params=["127.0.0.1", "::1"])
async def flup(request, tmp_path):
    server = start_flup(request.param, free_port(request.param), tmp_path)
    upstream = FastCGIUpstream(BackendAddress("fastcgi", host=request.param, port=server.port))
    yield upstream
    await upstream.close()
    server.stop()


async def test_flup_wsgi_app(flup, fastcgi_log):
    body = b"x" * 100_000
    request = UpstreamRequest(method="POST", target=b"/app/path?status=201+Created&stderr=flup-says-hi",
                              headers=[(b"host", b"flup.example")], body=RequestBody(body))
    response, raw = await fetch(flup, request)
    echo = json.loads(raw)
    assert response.status == 201 and response.reason == b"Created"
    assert (echo["body_length"], echo["body_sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
    assert echo["environ"]["SCRIPT_NAME"] == "/app/path" and echo["environ"]["HTTP_HOST"] == "flup.example"
    assert any("flup-says-hi" in r.getMessage() for r in fastcgi_log.records)
    for _ in range(3):
        await fetch(flup, UpstreamRequest(method="GET", target=b"/", headers=[]))
    assert flup.stats()["opened"] == 1


@pytest.fixture
async def fcgiwrap(tmp_path):
    server = start_fcgiwrap(tmp_path)
    upstream = FastCGIUpstream(BackendAddress("fastcgi", path=server.socket_path))
    yield upstream
    await upstream.close()
    server.stop()


async def test_fcgiwrap_runs_a_cgi_script(fcgiwrap, fastcgi_log):
    request = UpstreamRequest(method="POST", target=b"/echo.sh/extra?q=1", headers=[(b"host", b"cgi.example")],
                              body=RequestBody(b"body-bytes"), document_root=str(CGI_ROOT))
    response, body = await fetch(fcgiwrap, request)
    assert response.status == 200 and (b"content-type", b"text/plain") in response.headers
    assert body == b"script=/echo.sh path_info=/extra method=POST query=q=1 length=10\nbody-bytes"
    assert any("stderr from /echo.sh" in r.getMessage() for r in fastcgi_log.records)


async def test_fcgiwrap_location_without_status_is_302(fcgiwrap):
    request = UpstreamRequest(method="GET", target=b"/echo.sh?redirect", headers=[], document_root=str(CGI_ROOT))
    response, body = await fetch(fcgiwrap, request)
    assert response.status == 302 and response.headers == [(b"location", b"/elsewhere")]
