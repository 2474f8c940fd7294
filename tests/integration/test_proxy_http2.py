"""HTTP/2 clients (ALPN `h2` on a TLS listener, real curl with nghttp2) through a real
runproxy (SPEC §12): the same routing, limits, headers and statuses as HTTP/1.1, backends
still spoken to in HTTP/1.1 or FastCGI; several streams at once on one connection; a large
response streamed whole. And HTTP/2 with prior knowledge on a plain listener gets 400."""
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import time

import h2.events
import pytest

from tests.integration.test_proxy_faults import live_only
from tests.support.backends import http_backend, misbehaving_backend, pattern_bytes
from tests.support.certs import make_certs
from tests.support.config_files import app_config, toml_value
from tests.support.director import Director
from tests.support.fastcgi_servers import start_flup
from tests.support.h2client import H2Client
from tests.support.processes import require_binary
from tests.support.waiting import free_port, wait_for

BIG = 6 * 1024 * 1024 + 123  # several MiB, not a multiple of any frame or chunk size


@pytest.fixture(scope="module")
def backend():
    with http_backend("b1") as b:
        yield b


@pytest.fixture(scope="module")
def flup(tmp_path_factory):
    server = start_flup("127.0.0.1", free_port(), tmp_path_factory.mktemp("flup"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def resetting():
    """Answers health checks, resets every live request."""
    with live_only("reset") as b:
        yield b


@pytest.fixture(scope="module")
def truncating():
    """Announces 100 body bytes, sends 10, closes."""
    with misbehaving_backend("short-content-length") as b:
        yield b


HOP_BY_HOP_RESPONSE = (b"HTTP/1.1 200 OK\r\nConnection: x-private, close\r\nKeep-Alive: timeout=5\r\n"
                       b"TE: trailers\r\nTrailer: X-Sum\r\nUpgrade: h2c\r\nProxy-Connection: keep-alive\r\n"
                       b"X-Private: secret\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok")


@pytest.fixture(scope="module")
def hop_by_hop():
    """Answers with every connection-specific field HTTP/2 forbids (RFC 9113 8.2.2)."""
    with misbehaving_backend(HOP_BY_HOP_RESPONSE, then="close") as b:
        yield b


@pytest.fixture(scope="module")
def director(backend, flup, resetting, truncating, hop_by_hop, tmp_path_factory):
    work = tmp_path_factory.mktemp("http2")
    cert, key = make_certs(work / "certs").localhost
    tls_port = free_port()
    config = f"""
        [proxy]
        max_request_body = "64KiB"
        header_timeout = 2
        tls_certificates = {toml_value([{"cert": cert, "key": key}])}

        [directors.app]
        health_check_success_threshold = 1
        backends = {{ b1 = {{ url = "http://127.0.0.1:{backend.port}", health_check_interval = 0.5 }} }}

        [directors.off]
        enabled = false
        retry_after = 7
        backends = {{ x = "http://127.0.0.1:{backend.port}" }}

        [directors.fcgi]
        health_check_success_threshold = 1
        backends = {{ f = {{ url = "fastcgi://127.0.0.1:{flup.port}", health_check_interval = 0.5 }} }}

        [directors.retry]
        scheduler = "chance"
        health_check_success_threshold = 1
        backends = {{ m = {{ url = "{resetting.url}", health_check_interval = 0.2 }}, good = "http://127.0.0.1:{backend.port}" }}

        [[routes]]
        host = "off"
        pass = "off"

        [[routes]]
        host = "retry"
        pass = "retry"

        [[routes]]
        host = "truncated"
        http = "127.0.0.1:{truncating.port}"

        [[routes]]
        host = "hops"
        http = "127.0.0.1:{hop_by_hop.port}"

        [[routes]]
        host = "fcgi"
        pass = "fcgi"

        [[routes]]
        host = "app"
        pass = "app"
    """
    d = Director(work / "proxy", config, extra_args=["--listen", f"tls://127.0.0.1:{tls_port}"]).start()
    d.tls_port = tls_port
    try:
        wait_for(lambda: d.get("/", headers={"Host": "app"})[0] == 200, 15, what="backend online")
        wait_for(lambda: d.get("/", headers={"Host": "fcgi"})[0] == 200, 15, what="flup online")
        wait_for(lambda: "director retry: backend m is now online" in d.output(), 15, what="retry/m online")
        yield d
    finally:
        d.stop()


def curl(director, *args, host="app", path="/", timeout=60) -> subprocess.CompletedProcess:
    """curl over HTTP/2 to the TLS listener; stdout ends with a line `<http_version> <status>`."""
    binary = require_binary("curl", "curl")
    url = f"https://127.0.0.1:{director.tls_port}{path}"
    return subprocess.run([binary, "--http2", "-k", "-sS", "-H", f"Host: {host}", "-w", r"\n%{http_version} %{http_code}",
                           *args, url], capture_output=True, timeout=timeout)


def answer(result) -> tuple[str, int, bytes]:
    """(HTTP version, status, body) of a `curl()` run."""
    body, _, tail = result.stdout.rpartition(b"\n")
    version, status = tail.decode().split()
    return version, int(status), body


def test_h2_request_reaches_an_http11_backend_with_forwarded_proto_https(director, backend):
    result = curl(director, path="/headers?via=h2")
    version, status, body = answer(result)
    assert (version, status) == ("2", 200), result.stderr
    seen = json.loads(body)
    assert seen["x-forwarded-proto"] == ["https"] and seen["host"] == ["app"]
    assert seen["via"] == ["2 director"]  # the protocol it was received with
    assert any(r.target == "/headers?via=h2" for r in backend.requests_seen)  # an HTTP/1.1 request


def test_a_whole_small_response_ends_its_stream_with_its_only_data_frame(director):
    """HEADERS, then one DATA frame carrying END_STREAM: not the body and then an empty
    DATA frame to end the stream a turn of the server's sending loop later."""
    with H2Client(director.tls_port) as client:
        stream = client.request("GET", "/", authority="hops")
        events = client.events_until(lambda e: isinstance(e, h2.events.StreamEnded), timeout=15)
    frames = [e for e in events if isinstance(e, h2.events.DataReceived) and e.stream_id == stream]
    assert [(e.data, e.stream_ended is not None) for e in frames] == [(b"ok", True)]
    head = next(e for e in events if isinstance(e, h2.events.ResponseReceived) and e.stream_id == stream)
    fields = dict(head.headers)  # the server's own fields are in the head too
    assert fields[b"server"] == b"director" and re.fullmatch(rb"[0-9a-f]{32}", fields[b"x-request-id"])
    assert fields[b"content-length"] == b"2"


def test_connection_specific_fields_of_a_backend_never_reach_an_h2_client(director):
    """The h2 client validates what it receives: one forbidden field and the response
    would be a protocol error. The server does not re-check its own output (a tenth of an
    HTTP/2 request's CPU): the header rules must have removed them all."""
    with H2Client(director.tls_port) as client:
        stream = client.request("GET", "/", authority="hops")
        events = client.events_until(lambda e: isinstance(e, h2.events.StreamEnded), timeout=15)
    response = next(e for e in events if isinstance(e, h2.events.ResponseReceived) and e.stream_id == stream)
    fields = dict(response.headers)
    assert fields[b":status"] == b"200" and fields[b"x-kept"] == b"yes"
    forbidden = {b"connection", b"keep-alive", b"te", b"trailer", b"upgrade", b"proxy-connection",
                 b"transfer-encoding", b"x-private"}
    assert not forbidden & set(fields)
    assert b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived)) == b"ok"


def test_h2_post_body_reaches_the_backend(director):
    payload = pattern_bytes(50_000)
    version, status, body = answer(_post(director, payload))
    assert (version, status, body) == ("2", 200, payload)


def _post(director, payload: bytes):
    binary = require_binary("curl", "curl")
    return subprocess.run([binary, "--http2", "-k", "-sS", "-H", "Host: app", "--data-binary", "@-",
                           "-w", r"\n%{http_version} %{http_code}", f"https://127.0.0.1:{director.tls_port}/echo"],
                          input=payload, capture_output=True, timeout=60)


def test_h2_oversized_body_is_413(director):
    result = _post(director, b"x" * (65 * 1024))
    assert answer(result)[:2] == ("2", 413), result.stderr


def test_h2_statuses_no_route_404_and_disabled_director_503_with_retry_after(director):
    assert answer(curl(director, host="nowhere"))[:2] == ("2", 404)
    result = curl(director, "-D", "-", host="off")
    assert answer(result)[:2] == ("2", 503)
    assert b"\nretry-after: 7\r\n" in result.stdout


def test_h2_request_is_retried_on_another_backend(director, resetting):
    version, status, body = answer(curl(director, host="retry"))
    assert (version, status, body) == ("2", 200, b"b1")
    assert resetting.live_requests == 1  # "chance" tried m first; it reset, the retry went to good


def test_a_backend_failing_mid_response_resets_the_stream_not_the_connection(director):
    with H2Client(director.tls_port) as client:
        broken = client.request("GET", "/", authority="truncated")
        events = client.events_until(lambda e: isinstance(e, (h2.events.StreamReset, h2.events.StreamEnded))
                                     and e.stream_id == broken, 15)
        assert isinstance(events[-1], h2.events.StreamReset)  # never an answer that looks complete
        assert client.status_of(client.request("GET", "/")) == 200  # the connection goes on


def test_h2_large_response_streams_completely(director):
    result = curl(director, path=f"/bytes?size={BIG}&framing=chunked", timeout=120)
    version, status, body = answer(result)
    assert (version, status, len(body)) == ("2", 200, BIG)
    assert hashlib.sha256(body).digest() == hashlib.sha256(pattern_bytes(BIG)).digest()


def test_h2_streams_run_concurrently_on_one_connection(director):
    urls = [f"https://127.0.0.1:{director.tls_port}/slow?delay=1&n={n}" for n in range(6)]
    binary = require_binary("curl", "curl")
    started = time.monotonic()
    result = subprocess.run([binary, "--http2", "-k", "-sS", "-Z", "-H", "Host: app",
                             "-w", r"\n%{http_version} %{http_code} %{num_connects}\n", *urls],
                            capture_output=True, timeout=60)
    elapsed = time.monotonic() - started
    lines = [line.split() for line in result.stdout.decode().splitlines() if line.count(" ") == 2]
    assert [(v, s) for v, s, _ in lines] == [("2", "200")] * 6, result.stdout
    assert sum(int(c) for _, _, c in lines) == 1  # one connection carried all six
    assert elapsed < 5.5  # six 1 s answers one after the other would take 6 s


def test_h2_head_limits_and_methods_match_http11(director):
    with H2Client(director.tls_port) as client:
        assert client.status_of(client.request("CONNECT", None, authority="example.test:443")) == 405
        assert client.status_of(client.request("TRACE", "/")) == 405
        big = [("x-big-%d" % n, "v" * 4000) for n in range(5)]  # 20 KB of head: over 16 KiB
        assert client.status_of(client.request("GET", "/", extra=big)) == 431
        assert client.status_of(client.request("GET", "/")) == 200  # the connection goes on


def test_the_servers_own_answers_carry_lower_case_fields_and_no_connection_field(director):
    """A refused target is answered by the server itself with `Connection: close` on
    HTTP/1.1. Over HTTP/2 that field is malformed (RFC 9113 8.2.2) and h2 no longer
    normalises what the server sends, so the server must leave it out and send its field
    names in lower case: the client validates both."""
    with H2Client(director.tls_port) as client:
        stream = client.request("GET", "/caf\u00e9")  # a non-ASCII target: 400, like HTTP/1.1
        events = client.events_until(lambda e: isinstance(e, h2.events.StreamEnded), timeout=15)
        head = next(e for e in events if isinstance(e, h2.events.ResponseReceived) and e.stream_id == stream)
        fields = dict(head.headers)
        assert fields[b":status"] == b"400" and b"connection" not in fields
        assert fields[b"content-type"].startswith(b"text/plain") and re.fullmatch(rb"[0-9a-f]{32}", fields[b"x-request-id"])
        assert client.status_of(client.request("GET", "/")) == 200  # the connection goes on


def test_h2_authority_and_host_field_reach_the_backend_as_one_host(director):
    """(h2 refuses a Host that differs from :authority, RFC 9113 8.3.1; an equal one is allowed.)"""
    with H2Client(director.tls_port) as client:
        stream = client.request("GET", "/headers", authority="app", extra=[("host", "app")])
        events = client.events_until(lambda e: isinstance(e, h2.events.StreamEnded) and e.stream_id == stream, 15)
    body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived) and e.stream_id == stream)
    assert json.loads(body)["host"] == ["app"]


def test_h2_stalled_request_body_gets_408_and_the_connection_goes_on(director):
    with H2Client(director.tls_port) as client:
        started = time.monotonic()
        stalled = client.request("POST", "/echo", end=False, extra=[("content-length", "10")])
        assert client.status_of(stalled) == 408
        assert 1.5 < time.monotonic() - started < 10  # header_timeout = 2
        assert client.status_of(client.request("GET", "/")) == 200


def test_idle_h2_connection_gets_goaway_after_header_timeout(director):
    with H2Client(director.tls_port) as client:
        started = time.monotonic()
        events = client.events_until(lambda e: isinstance(e, h2.events.ConnectionTerminated), timeout=15)
        assert any(isinstance(e, h2.events.ConnectionTerminated) and e.error_code == 0 for e in events)
        assert 1.5 < time.monotonic() - started < 10  # header_timeout = 2


def test_a_client_that_stops_reading_holds_the_backend_back(director, backend):
    """Back-pressure: the client never reopens its 64 KiB flow-control window, so Director
    stops reading the backend's 64 MiB answer (a few socket buffers' worth go through)."""
    before = backend.bytes_sent
    with H2Client(director.tls_port) as client:
        stream = client.request("GET", f"/bytes?size={64 * 1024 * 1024}&n=pressure")
        client.events_until(lambda e: isinstance(e, h2.events.ResponseReceived) and e.stream_id == stream, 15)
        client.events_until(lambda e: False, timeout=3)
        held = backend.bytes_sent - before
        assert 0 < held < 16 * 1024 * 1024, held
        client.events_until(lambda e: False, timeout=1)
        assert backend.bytes_sent - before < 16 * 1024 * 1024  # and it stays held


def test_fastcgi_backend_sees_https_on_over_h2(director):
    version, status, body = answer(curl(director, host="fcgi", path="/x?y=1"))
    assert (version, status) == ("2", 200)
    environ = json.loads(body)["environ"]
    assert environ["HTTPS"] == "on" and environ["REQUEST_URI"] == "/x?y=1"


def test_h2_prior_knowledge_on_a_plain_listener_gets_400_without_hanging(director):
    with socket.create_connection(("127.0.0.1", director.port), timeout=10) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    assert received.startswith(b"HTTP/1.1 400 ")
    binary = require_binary("curl", "curl")
    started = time.monotonic()
    result = subprocess.run([binary, "--http2-prior-knowledge", "-sS", "-o", "/dev/null", director.url + "/"],
                            capture_output=True, timeout=30)
    assert result.returncode != 0 and time.monotonic() - started < 10  # refused, promptly


def test_shutdown_lets_h2_streams_in_flight_finish_then_closes(backend, tmp_path):
    cert, key = make_certs(tmp_path / "certs").localhost
    tls_port = free_port()
    config = app_config(proxy={"tls_certificates": [{"cert": cert, "key": key}]}, b1=backend.port)
    d = Director(tmp_path / "proxy", config, extra_args=["--listen", f"tls://127.0.0.1:{tls_port}"]).start()
    d.tls_port = tls_port
    try:
        wait_for(lambda: d.get("/")[0] == 200, 15, what="backend online")
        binary = require_binary("curl", "curl")
        slow = subprocess.Popen([binary, "--http2", "-k", "-sS", "-w", r"\n%{http_version} %{http_code}",
                                 f"https://127.0.0.1:{tls_port}/slow?delay=2"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        wait_for(lambda: any(r.target == "/slow?delay=2" for r in backend.requests_seen), 15, what="request in flight")
        os.kill(d.process.pid, signal.SIGTERM)
        out, err = slow.communicate(timeout=30)
        assert out == b"b1\n2 200", err  # finished on its HTTP/2 connection, then GOAWAY and close
        assert d.process.proc.wait(30) == 0
        assert "waiting up to 30s for 1 connections" in d.output()
    finally:
        d.stop()
