"""Listeners: every kind binds before ready, a failing one stops start-up with one line,
UNIX socket files are cleaned up, and the management plane keeps daphne's websockets."""
import contextlib
import os
import signal
import socket
import stat
import subprocess

import aiohttp
import pytest

from tests.support.processes import REPO, Process, python_args
from tests.support.rawhttp import RawHTTP, request
from tests.support.server_harness import start_server
from tests.support.waiting import ipv6_loopback, wait_for

GET_HELLO = request("GET", "/hello", {"Host": "test"})


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
    """A request still in the application when shutdown_timeout ends is closed without an
    answer (it may have reached a backend: never a 503 of ours), and the process exits 0."""
    with start_server(tmp_path, "--shutdown-timeout", "1") as server:
        with server.connect() as conn:
            conn.send(request("GET", "/hang", {"Host": "test"}))
            wait_for(lambda: server.stats()["hanging"] >= 1, timeout=5, what="a request in flight")
            assert server.process.stop() == 0
            assert conn.at_eof(timeout=2)
        assert "STOPPED" in server.process.log_path.read_text()


@contextlib.contextmanager
def worker(log_path, *sockets):
    """A harness process serving listening sockets it inherits (what --workers does)."""
    fds = [sock.fileno() for sock in sockets]
    options = [arg for fd in fds for arg in ("--inherit-fd", str(fd))]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(python_args("-m", "tests.support.server_harness", *options), pass_fds=fds,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
                                start_new_session=True)
    try:
        wait_for(lambda: "READY" in log_path.read_text(), timeout=20, what="the worker to be ready")
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def test_workers_share_inherited_listening_sockets(tmp_path):
    path = tmp_path / "shared.sock"
    with socket.create_server(("127.0.0.1", 0)) as tcp, socket.socket(socket.AF_UNIX) as unix:
        unix.bind(str(path))
        unix.listen()
        port = tcp.getsockname()[1]
        with worker(tmp_path / "w1.log", tcp, unix) as first, worker(tmp_path / "w2.log", tcp, unix):
            tcp.close()  # only the workers accept now
            for _ in range(4):
                assert hello(RawHTTP.tcp("127.0.0.1", port)) == b"hello"
                assert hello(RawHTTP.unix(str(path))) == b"hello"
            os.killpg(first.pid, signal.SIGTERM)
            assert first.wait(10) == 0
            assert path.exists(), "a stopping worker removed the shared socket file"
            assert hello(RawHTTP.tcp("127.0.0.1", port)) == b"hello"
            assert hello(RawHTTP.unix(str(path))) == b"hello"
