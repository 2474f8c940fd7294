"""`header_timeout` on raw sockets: slow heads get 408, idle connections close silently.

The timer starts at a request's first byte and is not restarted by further bytes (that is
what a slowloris client relies on); between body chunks the same timeout applies. The
server sweeps every header_timeout/4, so answers land within [timeout, timeout + 0.25 s +
scheduling slack].
"""
import time

import pytest

from tests.support.rawhttp import request
from tests.support.server_harness import server_fixture

HEADER_TIMEOUT = 1.0
LATEST = HEADER_TIMEOUT + 2.0  # generous upper bound for a loaded 2-core CI machine
DRIP_INTERVAL = 0.2  # a slowloris client: one header byte per interval, forever

server = server_fixture("--header-timeout", str(HEADER_TIMEOUT))

REQUEST_LINE = b"GET /hello HTTP/1.1\r\n"
GET_HELLO = b"GET /hello HTTP/1.1\r\nHost: test\r\n\r\n"


def assert_408(response):
    assert response.status == 408
    assert response.header("connection") == "close"
    assert response.body == b"408 Request Timeout\n"


def test_head_dripping_bytes_gets_408_counted_from_its_first_byte(server):
    with server.connect() as conn:
        started = time.monotonic()
        conn.send(REQUEST_LINE)
        drip = iter(b"X-Slow: " + b"a" * 1000)
        while True:
            try:
                response = conn.read_head(timeout=DRIP_INTERVAL)
                break
            except TimeoutError:
                assert time.monotonic() - started < LATEST + 1, "no 408 for a head that never ends"
                conn.send(bytes([next(drip)]))
        elapsed = time.monotonic() - started
        conn.read_body(response)
        assert_408(response)
        assert HEADER_TIMEOUT <= elapsed <= LATEST
        assert conn.at_eof(timeout=2)


def test_fresh_idle_connection_closes_silently(server):
    with server.connect() as conn:
        started = time.monotonic()
        assert conn.at_eof(timeout=LATEST + 1)
        assert HEADER_TIMEOUT <= time.monotonic() - started <= LATEST


def test_keep_alive_connection_closes_silently_after_header_timeout(server):
    with server.connect() as conn:
        conn.send(GET_HELLO)
        assert conn.read_response().status == 200
        started = time.monotonic()
        assert conn.at_eof(timeout=LATEST + 1)
        assert HEADER_TIMEOUT <= time.monotonic() - started <= LATEST


def test_body_that_stops_arriving_gets_408(server):
    with server.connect() as conn:
        conn.send(request("POST", "/echo", {"Host": "test", "Content-Length": 10}, b"abc"))
        started = time.monotonic()
        response = conn.read_response(timeout=LATEST + 1)
        assert_408(response)
        assert HEADER_TIMEOUT <= time.monotonic() - started <= LATEST


def test_body_arriving_steadily_is_not_cut_off(server):
    """Each body chunk earns another header_timeout, so a slow but live upload completes."""
    pieces = [b"p" * 10] * 4
    with server.connect() as conn:
        conn.send(request("POST", "/echo", {"Host": "test", "Content-Length": 40}))
        for piece in pieces:
            with pytest.raises(TimeoutError):  # nothing comes back while the body is incomplete
                conn.read_head(timeout=HEADER_TIMEOUT / 2)
            conn.send(piece)
        assert conn.read_response().status == 200
