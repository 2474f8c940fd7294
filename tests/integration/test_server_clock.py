"""Connection deadlines follow the server's clock (`build_server(clock=...)`), not the wall:
moving that clock past `header_timeout` times a half-sent head out at the next sweep."""
import time

import pytest

from tests.support.rawhttp import request
from tests.support.server_harness import start_server

HEADER_TIMEOUT = 600.0  # never reached in real time during the test


@pytest.fixture
def server(tmp_path):
    offset = tmp_path / "clock-offset"
    with start_server(tmp_path, "--header-timeout", str(HEADER_TIMEOUT), "--clock-offset-file", str(offset)) as handle:
        yield handle, offset


def test_a_head_times_out_when_the_servers_clock_passes_its_deadline(server):
    server, offset = server
    with server.connect() as conn:
        conn.send(b"GET /hello HTTP/1.1\r\nHost: test\r\n")  # the head never ends
        with pytest.raises(TimeoutError):
            conn.read_head(timeout=1.5)  # the real clock alone does nothing
        offset.write_text(str(HEADER_TIMEOUT + 1))
        started = time.monotonic()
        response = conn.read_head(timeout=10)
        assert response.status == 408
        assert time.monotonic() - started < 10


def test_requests_are_served_as_usual_on_a_moved_clock(server):
    server, offset = server
    offset.write_text("12345")
    with server.connect() as conn:
        conn.send(request("GET", "/hello", {"Host": "test"}))
        assert conn.read_response().status == 200
