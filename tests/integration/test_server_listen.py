"""Listeners: every kind binds before ready, a failing one stops start-up with one line,
UNIX socket files are cleaned up, and the management plane keeps daphne's websockets."""
import os
import socket
import stat

import aiohttp
import pytest

from tests.support.processes import Process, python_args
from tests.support.rawhttp import RawHTTP, request
from tests.support.server_harness import start_server
from tests.support.waiting import wait_for

GET_HELLO = request("GET", "/hello", {"Host": "test"})


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def hello(conn: RawHTTP) -> bytes:
    with conn:
        conn.send(GET_HELLO)
        return conn.read_response().body


def run_to_exit(tmp_path, *options) -> Process:
    process = Process(python_args("-m", "tests.support.server_harness", *options), tmp_path / "server.log")
    try:
        process.proc.wait(20)
    finally:
        process.stop()
    return process


def test_taken_port_fails_start_with_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = run_to_exit(tmp_path, "--traffic-port", str(port))
    assert process.proc.returncode == 1
    output = process.log_path.read_text()
    assert f"error: cannot listen on 127.0.0.1:{port}: address already in use" in output
    assert "READY" not in output


def test_unix_listener_replaces_a_stale_socket_and_removes_it_on_stop(tmp_path):
    path = tmp_path / "traffic.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # bound, never listening, closed: what a killed process leaves
    stale.close()
    with start_server(tmp_path, "--unix", str(path)) as server:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
        assert hello(RawHTTP.unix(str(path))) == b"hello"
        assert server.process.stop() == 0
        assert "STOPPED" in server.process.log_path.read_text()
    assert not path.exists()


def test_unix_path_that_is_not_a_socket_is_refused(tmp_path):
    path = tmp_path / "traffic.sock"
    path.write_text("data")
    process = run_to_exit(tmp_path, "--unix", str(path))
    assert process.proc.returncode == 1
    assert f"error: cannot listen on unix:{path}: file exists and is not a socket" in process.log_path.read_text()
    assert path.read_text() == "data"


def test_unix_socket_in_use_is_refused(tmp_path):
    path = tmp_path / "traffic.sock"
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(path))
        live.listen()
        process = run_to_exit(tmp_path, "--unix", str(path))
    assert process.proc.returncode == 1
    assert f"error: cannot listen on unix:{path}: address already in use" in process.log_path.read_text()


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv4_and_ipv6_traffic_listeners(tmp_path):
    with start_server(tmp_path, "--ipv6") as server:
        (v4_host, v4_port), (v6_host, v6_port) = server.traffic
        assert v6_host == "::1"
        assert hello(RawHTTP.tcp(v4_host, v4_port)) == b"hello"
        assert hello(RawHTTP.tcp(v6_host, v6_port)) == b"hello"
        assert hello(RawHTTP.tcp(*server.management)) == b"management"


async def test_management_websocket_upgrade_still_works(tmp_path):
    with start_server(tmp_path) as server:
        host, port = server.management
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://{host}:{port}/ws") as ws:
                await ws.send_str("ping")
                assert await ws.receive_str() == "management:ping"
        assert hello(server.connect_management()) == b"management"


def test_traffic_plane_does_not_upgrade_websockets(tmp_path):
    upgrade = request("GET", "/hello", {"Host": "test", "Upgrade": "websocket", "Connection": "Upgrade",
                                        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"})
    with start_server(tmp_path) as server:
        with server.connect() as conn:
            conn.send(upgrade)
            response = conn.read_response()
    assert (response.status, response.body) == (200, b"hello")


def test_sigterm_stops_with_status_zero(tmp_path):
    with start_server(tmp_path) as server:
        with server.connect() as conn:
            conn.send(request("GET", "/hang", {"Host": "test"}))
            wait_for(lambda: server.stats()["hanging"] >= 1, timeout=5, what="a request in flight")
            assert server.process.stop() == 0
            assert conn.at_eof(timeout=2)
        assert "STOPPED" in server.process.log_path.read_text()
