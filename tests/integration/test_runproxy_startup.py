"""`manage.py runproxy` start-up (SPEC §2): every start-up failure is exit status 1 with one
line on stderr naming the cause and leaves nothing behind; a good start serves every listener
kind at once, from flags or from the config file's `[proxy]` table."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support.adapter_shim import without
from tests.support.backends import http_backend
from tests.support.director import Director
from tests.support.processes import REPO, Process
from tests.support.rawhttp import RawHTTP, request
from tests.support.shared_services import redis_url
from tests.support.waiting import free_port, ipv6_loopback, port_open, wait_for

START_TIMEOUT = 60
UNREACHABLE_POSTGRES = "postgres://postgres@127.0.0.1:1/x"
ROUTED = "[[routes]]\npath = \"/\"\nhttp = \"{address}\"\n"


def runproxy_args(director: Director, *args) -> list:
    return [sys.executable, "manage.py", "runproxy", "--config", str(director.config_path), *map(str, args)]


def run_to_exit(director: Director, *args) -> subprocess.CompletedProcess:
    """Run runproxy (the director's own listeners unless `args` name others) until it exits;
    afterwards no process of its session may be left and none of its ports may accept."""
    if not any(str(a).startswith("--listen") for a in args):
        args = ("--listen", f"127.0.0.1:{director.port}", *args)
    args = ("--admin-listen", f"127.0.0.1:{director.admin_port}", *args)
    proc = subprocess.Popen(runproxy_args(director, *args), cwd=REPO, env=director.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=START_TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # no child of runproxy outlives it
    assert not port_open("127.0.0.1", director.admin_port) and not port_open("127.0.0.1", director.port)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def assert_fails_with_one_line(result: subprocess.CompletedProcess, *fragments: str) -> str:
    lines = result.stderr.splitlines()
    assert result.returncode == 1, result
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert result.stdout == "", result.stdout  # never "serving": nothing started
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def short_dir():
    """A directory with a short path: AF_UNIX socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="rp-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("config, fragments", [
    ("[proxy]\nbogus = 1\n", ["invalid config", "proxy.bogus"]),
    ("[directors.app]\nbackends = { a1 = \"ftp://127.0.0.1:1\" }\n",
     ["invalid config", "directors.app.backends.a1.url", "ftp://127.0.0.1:1"]),
    ("[[routes]]\npath = \"/\"\npass = \"nowhere\"\n", ["invalid config", "routes[0].pass", "nowhere"]),
], ids=["unknown-key", "bad-backend-url", "unknown-director"])
def test_invalid_config_file(tmp_path, config, fragments):
    director = Director(tmp_path, config)
    line = assert_fails_with_one_line(run_to_exit(director), *fragments)
    assert str(director.config_path) in line


def test_missing_config_file(tmp_path):
    director = Director(tmp_path, "")
    missing = tmp_path / "nowhere.toml"
    director.config_path = missing
    assert_fails_with_one_line(run_to_exit(director), str(missing), "not found")


def test_traffic_port_in_use(tmp_path):
    director = Director(tmp_path, "")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_to_exit(director, "--listen", f"127.0.0.1:{port}")
    assert_fails_with_one_line(result, f"cannot listen on 127.0.0.1:{port}", "address already in use")


def test_failed_listener_leaves_no_unix_socket_file(tmp_path, short_dir):
    """A UNIX listener bound before a later one failed is closed and its file removed."""
    director = Director(tmp_path, "")
    path = short_dir / "traffic.sock"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_to_exit(director, "--listen", f"unix:{path}", "--listen", f"127.0.0.1:{port}")
    assert_fails_with_one_line(result, f"cannot listen on 127.0.0.1:{port}")
    assert not path.exists()


def test_supervisor_listen_failure_is_one_line_and_leaves_no_unix_socket_file(tmp_path, short_dir):
    """`--workers 2` binds in the supervisor: same one line, same cleanup, no worker started."""
    director = Director(tmp_path, "", env={"REDIS_URL": redis_url()})
    path = short_dir / "traffic.sock"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_to_exit(director, "--workers", "2", "--listen", f"unix:{path}", "--listen", f"127.0.0.1:{port}")
    assert_fails_with_one_line(result, f"cannot listen on 127.0.0.1:{port}", "address already in use")
    assert not path.exists()


def test_unreachable_database(tmp_path):
    director = Director(tmp_path, "", database_url=UNREACHABLE_POSTGRES)
    assert_fails_with_one_line(run_to_exit(director), "database unreachable", "127.0.0.1")


def test_unmigrated_database(tmp_path):
    director = Director(tmp_path, "", database_url=f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    assert_fails_with_one_line(run_to_exit(director), "not migrated", "manage.py migrate")


def test_workers_without_redis_are_refused(tmp_path):
    director = Director(tmp_path, "")  # the test environment has no REDIS_URL
    assert_fails_with_one_line(run_to_exit(director, "--workers", "2"), "workers = 2 needs REDIS_URL")


def proxied(conn: RawHTTP) -> tuple[int, bytes, str | None]:
    """(status, body, Via) of one request on `conn`, routed to the road-warrior backend."""
    with conn:
        conn.send(request("GET", "/hello", {"Host": "any"}))
        response = conn.read_response()
    return response.status, response.body, response.header("via")


def test_serves_every_listener_kind_at_once(tmp_path, short_dir):
    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback on this machine")
    v6_port, ignored_port = free_port("::1"), free_port()
    path = short_dir / "traffic.sock"
    with http_backend("kinds") as backend:
        config = f"[proxy]\nlisten = [\"127.0.0.1:{ignored_port}\"]\n" + ROUTED.format(address=f"127.0.0.1:{backend.port}")
        director = Director(tmp_path, config, extra_args=["--listen", f"[::1]:{v6_port}", "--listen", f"unix:{path}"])
        director.start()
        try:
            wait_for(lambda: path.exists() and port_open("::1", v6_port), 10, what="every listener bound")
            expected = (200, b"kinds", "1.1 director")
            assert proxied(RawHTTP.tcp("127.0.0.1", director.port)) == expected
            assert proxied(RawHTTP.tcp("::1", v6_port)) == expected
            assert proxied(RawHTTP.unix(str(path))) == expected
            assert not port_open("127.0.0.1", ignored_port)  # the flags win over the config file
            assert len(backend.requests_seen) == 3
        finally:
            assert director.stop() == 0
    assert not path.exists()  # removed on a clean stop


def test_listen_addresses_come_from_the_config_file_without_flags(tmp_path, short_dir):
    port, admin_port = free_port(), free_port()
    path = short_dir / "config.sock"
    with http_backend("fromconfig") as backend:
        config = (f"[proxy]\nlisten = [\"127.0.0.1:{port}\", \"unix:{path}\"]\nadmin_listen = \"127.0.0.1:{admin_port}\"\n"
                  + ROUTED.format(address=f"127.0.0.1:{backend.port}"))
        director = Director(tmp_path, config)
        process = Process(runproxy_args(director), tmp_path / "runproxy.log", env=director.env)
        try:
            try:
                wait_for(lambda: port_open("127.0.0.1", port) and path.exists() and port_open("127.0.0.1", admin_port),
                         30, what="listeners from the config file")
            except AssertionError:
                raise AssertionError(f"runproxy did not listen:\n{process.output()}") from None
            assert proxied(RawHTTP.tcp("127.0.0.1", port))[:2] == (200, b"fromconfig")
            assert proxied(RawHTTP.unix(str(path)))[:2] == (200, b"fromconfig")
            status, _, body = director.request("GET", "/-/ready", port=admin_port)
            assert status == 200, body
        finally:
            assert process.stop() == 0, process.output()


def test_daphne_or_twisted_without_an_internal_is_refused(tmp_path):
    """An upgrade that took away an internal Director relies on: one line, exit 1."""
    director = Director(tmp_path, "", env=without(tmp_path / "shim", "twisted.internet.abstract",
                                                  "FileDescriptor", "doWrite"))
    assert_fails_with_one_line(run_to_exit(director), "Director's adapter does not fit Twisted ",
                               "twisted.internet.abstract.FileDescriptor has no attribute doWrite")
