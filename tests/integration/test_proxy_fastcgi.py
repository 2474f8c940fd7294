"""FastCGI through a real runproxy: php-fpm (UNIX and TCP), flup (IPv4 and IPv6) and
fcgiwrap behind directors and road-warrior `fcgi` routes; FastCGI health checks; faults from
a misbehaving FastCGI server; 100 MiB each way with bounded memory."""
import asyncio
import hashlib
import json
import os
import threading

import pytest

from proxy.upstream import fastcgi_records as fr
from tests.support.director import Director
from tests.support.fastcgi_servers import CGI_ROOT, PHP_ROOT, FakeFastCGIServer, start_fcgiwrap, start_flup, start_php_fpm
from tests.support.rawhttp import RawHTTP
from tests.support.rawhttp import request as raw_request
from tests.support.waiting import free_port, wait_for

MIB = 1024 * 1024


class FakeInThread:
    """FakeFastCGIServer on its own loop in a thread (runproxy is another process)."""

    def __init__(self, mode):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = self.run(FakeFastCGIServer(mode).start())

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    @property
    def url(self):
        return f"fastcgi://127.0.0.1:{self.server.port}"

    def stop(self):
        self.run(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    work = tmp_path_factory.mktemp("fcgi-servers")
    started = []
    try:
        php = start_php_fpm(work, free_port())
        started.append(php)
        flup4 = start_flup("127.0.0.1", free_port(), work)
        started.append(flup4)
        flup6 = start_flup("::1", free_port("::1"), work)
        started.append(flup6)
        wrap = start_fcgiwrap(work)
        started.append(wrap)
        fakes = {name: FakeInThread(mode) for name, mode in (
            ("over", "ok"), ("fine", "ok"), ("trunc", "ok"), ("short-body", "short-body"), ("abort", "ok"), ("late", "ok"), ("late2", "ok"))}
        yield dict(php=php, flup4=flup4, flup6=flup6, wrap=wrap, fakes=fakes)
        for fake in fakes.values():
            fake.stop()
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="module")
def director(servers, tmp_path_factory):
    php, flup4, flup6, wrap, fakes = (servers[k] for k in ("php", "flup4", "flup6", "wrap", "fakes"))
    hello = PHP_ROOT / "hello.php"
    health = f'health_check_request_path = "/hello.php"\nhealth_check_fcgi_script_filename = "{hello}"'
    config = f"""
        [proxy]
        max_request_body = "128MiB"

        [directors.php]
        {health}
        backends = {{ unix = {{ url = "fastcgi+unix://{php.socket_path}", health_check_interval = 0.3 }}, tcp = {{ url = "fastcgi://127.0.0.1:{php.port}", health_check_interval = 0.3 }} }}

        [directors.flup]
        backends = {{ v4 = {{ url = "fastcgi://127.0.0.1:{flup4.port}", health_check_interval = 0.3 }}, v6 = {{ url = "fastcgi://[::1]:{flup6.port}", health_check_interval = 0.3 }} }}

        [directors.busy]
        health_check_success_threshold = 1
        backends = {{ over = {{ url = "{fakes['over'].url}", health_check_interval = 60 }}, fine = {{ url = "{fakes['fine'].url}", health_check_interval = 60 }} }}

        [directors.faulty]
        health_check_success_threshold = 1
        max_retry_count = 0
        backends = {{ trunc = {{ url = "{fakes['trunc'].url}", health_check_interval = 60 }} }}

        [directors.late]
        health_check_success_threshold = 1
        backends = {{ late = {{ url = "{fakes['late'].url}", health_check_interval = 60 }}, late2 = {{ url = "{fakes['late2'].url}", health_check_interval = 60 }} }}

        [directors.notify]
        on_client_abort = "notify"
        health_check_success_threshold = 1
        backends = {{ ab = {{ url = "{fakes['abort'].url}", health_check_interval = 60 }} }}

        [[routes]]
        host = "php"
        pass = "php"
        document_root = "{PHP_ROOT}"
        [[routes]]
        host = "flup"
        pass = "flup"
        [[routes]]
        host = "busy"
        pass = "busy"
        [[routes]]
        host = "faulty"
        pass = "faulty"
        [[routes]]
        host = "late"
        pass = "late"
        [[routes]]
        host = "notify"
        pass = "notify"
        [[routes]]
        path = "/rw/"
        fcgi = "unix:{php.socket_path}"
        script_filename = "{PHP_ROOT / 'echo.php'}"
        [[routes]]
        path = "/cgi/"
        fcgi = "unix:{wrap.socket_path}"
        document_root = "{CGI_ROOT.parent}"
        [[routes]]
        path = "/short"
        fcgi = "127.0.0.1:{fakes['short-body'].server.port}"
    """
    d = Director(tmp_path_factory.mktemp("proxy-fcgi"), config).start()
    try:
        for host, path in (("php", "/hello.php"), ("flup", "/"), ("busy", "/"), ("faulty", "/"), ("late", "/"), ("notify", "/")):
            wait_for(lambda: d.get(path, headers={"Host": host})[0] == 200, 20, what=f"{host} online")
        yield d
    finally:
        d.stop()


def php_echo(director, target="/echo.php", **kwargs):
    status, headers, body = director.request(kwargs.pop("method", "GET"), target, headers={"Host": "php", **kwargs.pop("headers", {})}, **kwargs)
    assert status == 200, body[:500]
    return json.loads(body)


def test_php_cgi_parameters(director):
    seen = php_echo(director, "/echo.php/extra/info?a=1&b=%20x", headers={"Proxy": "http://evil", "X-Custom": "yes", "Cookie": "c=1"})
    server = seen["server"]
    assert server["SCRIPT_FILENAME"] == str(PHP_ROOT / "echo.php")
    assert server["SCRIPT_NAME"] == "/echo.php" and server["PATH_INFO"] == "/extra/info"
    assert server["DOCUMENT_ROOT"] == str(PHP_ROOT)
    assert server["REQUEST_URI"] == "/echo.php/extra/info?a=1&b=%20x"
    assert server["QUERY_STRING"] == "a=1&b=%20x"
    assert server["REQUEST_METHOD"] == "GET" and server["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert server["SERVER_PROTOCOL"] == "HTTP/1.1" and server["REDIRECT_STATUS"] == "200"
    assert server["REMOTE_ADDR"] == "127.0.0.1" and server["REMOTE_PORT"].isdigit()
    assert server["SERVER_PORT"] == str(director.port) and server["SERVER_NAME"] == "php"
    assert server["HTTP_X_CUSTOM"] == "yes" and server["HTTP_COOKIE"] == "c=1"
    assert server["HTTP_X_FORWARDED_FOR"] == "127.0.0.1" and server["HTTP_VIA"] == "1.1 director"
    assert "HTTP_PROXY" not in server  # httpoxy
    assert "HTTPS" not in server


def test_both_php_pools_serve_and_upload_checksum(director):
    body = os.urandom(3 * MIB)
    for _ in range(4):  # rr over the UNIX and the TCP pool
        seen = php_echo(director, method="POST", body=body, headers={"Content-Type": "application/octet-stream"})
        assert seen["body_length"] == len(body)
        assert seen["body_sha256"] == hashlib.sha256(body).hexdigest()
        assert seen["server"]["CONTENT_LENGTH"] == str(len(body))
        assert seen["server"]["CONTENT_TYPE"] == "application/octet-stream"


@pytest.mark.parametrize("mode, status, body", [
    ("not-found", 404, b"missing\n"), ("bare", 203, b"bare\n"), ("code", 418, b"teapot\n"), ("", 200, b"plain\n"),
])
def test_php_status_codes(director, mode, status, body):
    got = director.get(f"/status.php?mode={mode}", headers={"Host": "php"})
    assert (got[0], got[2]) == (status, body)


def test_body_already_complete_gets_content_length_streamed_one_stays_chunked(director):
    """php-fpm sends no Content-Length: a body that arrived whole with the head goes out
    with one; a body still being produced is streamed, chunked, both on one connection."""
    with RawHTTP.tcp("127.0.0.1", director.port) as conn:
        conn.send(raw_request("GET", "/status.php", {"Host": "php"}))
        small = conn.read_response()
        assert small.status == 200 and small.body == b"plain\n"
        assert small.header("content-length") == "6" and not small.is_chunked
        conn.send(raw_request("GET", "/large.php?mib=2", {"Host": "php"}))
        large = conn.read_response(timeout=20)
        assert large.is_chunked and large.header("content-length") is None
        assert large.body == b"0123456789abcdef" * (2 * MIB // 16)


def test_php_location_without_status_is_302(director):
    status, headers, _ = director.get("/status.php?mode=redirect", headers={"Host": "php"})
    assert status == 302 and headers["location"] == "/elsewhere"


def test_missing_script_is_php_fpm_404(director):
    assert director.get("/nope.php", headers={"Host": "php"})[0] == 404


@pytest.mark.parametrize("target", ["/echo.php%0d%0aX:1", "/echo.php%00.png", "/a%0a/echo.php"])
def test_cr_lf_nul_in_path_refused_with_400(director, target):
    assert director.get(target, headers={"Host": "php"})[0] == 400


def test_php_stderr_logged_with_names(director):
    status, _, _ = director.get("/stderr.php", headers={"Host": "php"})
    assert status == 200
    wait_for(lambda: "director php backend" in director.output(), 5, what="stderr logged with director and backend")


def test_flup_over_ipv4_and_ipv6(director):
    for _ in range(4):  # rr over the IPv4 and the IPv6 backend
        status, _, body = director.request("POST", "/x?y=1", body=b"abc", headers={"Host": "flup"})
        assert status == 200
        seen = json.loads(body)
        assert seen["environ"]["QUERY_STRING"] == "y=1" and seen["body_length"] == 3
    output = director.output()
    assert "director flup: backend v4 is now online" in output
    assert "director flup: backend v6 is now online" in output


def test_road_warrior_fcgi_front_controller(director):
    status, _, body = director.get("/rw/any/path?q=1", headers={"Host": "x"})
    assert status == 200
    server = json.loads(body)["server"]
    assert server["SCRIPT_FILENAME"] == str(PHP_ROOT / "echo.php")
    assert server["PATH_INFO"] == "/rw/any/path" and server["QUERY_STRING"] == "q=1"


def test_fcgiwrap_cgi_script(director):
    status, _, body = director.request("POST", "/cgi/echo.sh/more?x=1", body=b"hello body", headers={"Host": "x"})
    assert status == 200
    assert b"script=/cgi/echo.sh path_info=/more method=POST query=x=1 length=10" in body
    assert body.endswith(b"hello body")
    status, headers, _ = director.get("/cgi/echo.sh?redirect", headers={"Host": "x"})
    assert status == 302 and headers["location"] == "/elsewhere"


def test_overloaded_backend_request_goes_elsewhere(director, servers):
    wait_for(lambda: {director.get("/", headers={"Host": "busy"})[0] for _ in range(2)} == {200}, 10, what="both online")
    servers["fakes"]["over"].server.mode = "overloaded"  # php-fpm's answer when its pool is exhausted
    for _ in range(3):
        status, _, body = director.request("POST", "/", body=b"data", headers={"Host": "busy"})
        assert (status, body) == (200, b"hello")  # POST re-sent: overloaded = not processed
    assert "director busy: backend over is now offline" in director.output()


def test_broken_backend_gives_502_and_goes_offline(director, servers):
    servers["fakes"]["trunc"].server.mode = "truncated"
    status, _, _ = director.get("/", headers={"Host": "faulty"})
    assert status == 502
    wait_for(lambda: "director faulty: backend trunc is now offline" in director.output(), 5, what="offline")
    assert director.get("/", headers={"Host": "faulty"})[0] == 503  # nothing online now


def test_rejection_after_a_whole_answer_is_retried_on_another_backend(director, servers):
    """Output, then END_REQUEST refusing the request: the body is read to its end before the
    head goes out, so no byte reached the client and the request goes to the other backend
    (SPEC §7.5), while the refusing one goes offline."""
    wait_for(lambda: all(f"director late: backend {name} is now online" in director.output() for name in ("late", "late2")),
             10, what="both backends online")
    servers["fakes"]["late"].server.mode = "rejected-after-output"
    for _ in range(2):  # round robin: one of the two requests is sent to `late` first
        status, _, body = director.get("/", headers={"Host": "late"})
        assert (status, body) == (200, b"hello")
    assert "director late: backend late is now offline" in director.output()


def test_mid_response_failure_closes_client_connection(director):
    with RawHTTP.tcp("127.0.0.1", director.port) as conn:
        conn.send(raw_request("GET", "/short", {"Host": "x"}) + raw_request("GET", "/short", {"Host": "x"}))
        head = conn.read_head()
        assert head.status == 200
        data = conn.read_until_eof()
        assert data == b"short" and b"HTTP/1.1" not in data  # stopped short, then closed


def test_notify_sends_abort_request(director, servers):
    fake = servers["fakes"]["abort"]
    fake.server.mode = "abort"  # answers a head, then waits for ABORT_REQUEST
    fake.server.received.clear()
    with RawHTTP.tcp("127.0.0.1", director.port) as conn:
        conn.send(raw_request("GET", "/", {"Host": "notify"}))
        assert conn.read_head().status == 200
        assert fr.ABORT_REQUEST not in fake.server.received
    # client gone: the proxy sends FCGI_ABORT_REQUEST (type 2) and reads to END_REQUEST
    wait_for(lambda: fr.ABORT_REQUEST in fake.server.received, 10, what="ABORT_REQUEST at the backend")


def test_notify_reaches_an_application_that_has_not_answered_yet(director, servers):
    """A client leaving while the script still runs (no head yet) is notified at once,
    not when the script finally prints; the slot comes back for the next request."""
    fake = servers["fakes"]["abort"]
    fake.server.mode = "abort-before-head"
    fake.server.received.clear()
    try:
        with RawHTTP.tcp("127.0.0.1", director.port) as conn:
            conn.send(raw_request("GET", "/", {"Host": "notify"}))
            wait_for(lambda: fr.STDIN in fake.server.received, 10, what="the request at the backend")
        wait_for(lambda: fr.ABORT_REQUEST in fake.server.received, 10, what="ABORT_REQUEST at the backend")
    finally:
        fake.server.mode = "abort"
    with RawHTTP.tcp("127.0.0.1", director.port) as conn:
        conn.send(raw_request("GET", "/", {"Host": "notify"}))
        assert conn.read_head().status == 200


def test_fastcgi_health_checks_bring_php_online(director):
    output = director.output()
    assert "director php: backend unix is now online" in output
    assert "director php: backend tcp is now online" in output


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_100_mib_each_way_with_bounded_memory(director):
    pid = director.process.pid
    before = _rss_kib(pid)
    size = 100 * MIB
    body = os.urandom(MIB) * 100
    seen = php_echo(director, method="POST", body=body, timeout=120)
    assert seen["body_length"] == size and seen["body_sha256"] == hashlib.sha256(body).hexdigest()
    status, _, data = director.get("/large.php?mib=100", headers={"Host": "php"}, timeout=120)
    assert status == 200 and len(data) == size
    assert hashlib.sha256(data).digest() == hashlib.sha256(b"0123456789abcdef" * (size // 16)).digest()
    assert _rss_kib(pid) - before < 64 * 1024
