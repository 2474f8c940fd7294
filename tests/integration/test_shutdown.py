"""SIGTERM drains (SPEC §11): in-flight requests finish, new connections are refused, and a
request that outlives `shutdown_timeout` is closed, never answered 503. A second runproxy on
the listeners of a running one exits 1 naming the address, whatever SO_REUSEPORT allows."""
from __future__ import annotations

import http.client
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.backends import http_backend
from tests.support.config_files import app_config
from tests.support.director import Director
from tests.support.shared_services import postgres_database, redis_url
from tests.support.waiting import wait_for


def config(port: int, timeout: float) -> str:
    return app_config(proxy={"shutdown_timeout": timeout}, one=port)


def slow_get(port: int, delay: float) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", f"/slow?delay={delay}")
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


def in_flight_at_backend(backend, count: int):
    return lambda: sum(1 for r in backend.requests_seen if r.target.startswith("/slow")) >= count


@pytest.fixture
def director(tmp_path):
    with http_backend("one") as backend:
        instance = Director(tmp_path, config(backend.port, 10)).start()
        instance.backend = backend
        try:
            wait_for(lambda: instance.get("/")[0] == 200, 20, what="the backend online")
            yield instance
        finally:
            instance.stop()


def test_sigterm_lets_sixteen_requests_in_flight_finish(director):
    with ThreadPoolExecutor(16) as pool:
        answers = [pool.submit(slow_get, director.port, 2) for _ in range(16)]
        wait_for(in_flight_at_backend(director.backend, 16), 10, what="16 requests at the backend")
        os.kill(director.process.pid, signal.SIGTERM)
        wait_for(lambda: not port_accepts(director.port), 3, what="the listener to stop accepting")
        statuses = [a.result(30) for a in answers]
    assert statuses == [200] * 16
    assert director.process.proc.wait(15) == 0


def port_accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_a_request_outliving_the_shutdown_timeout_is_closed_not_answered_503(tmp_path):
    with http_backend("one") as backend:
        director = Director(tmp_path, config(backend.port, 1)).start()
        try:
            wait_for(lambda: director.get("/")[0] == 200, 20, what="the backend online")
            with ThreadPoolExecutor(1) as pool:
                answer = pool.submit(slow_get, director.port, 10)
                wait_for(in_flight_at_backend(backend, 1), 10, what="the request at the backend")
                stopped = time.monotonic()
                os.kill(director.process.pid, signal.SIGTERM)
                result = answer.result(30)
            assert result != 503 and not isinstance(result, int), result
            assert director.process.proc.wait(15) == 0
            assert time.monotonic() - stopped < 8
        finally:
            director.stop()


def test_a_second_runproxy_on_the_listeners_of_a_running_one_exits_naming_the_address(tmp_path):
    with postgres_database() as database:
        first = Director(tmp_path / "a", config(1, 5), database_url=database,
                         env={"REDIS_URL": redis_url()}, extra_args=["--workers", "2"])
        assert first.manage("migrate", "--noinput", "-v", "0", timeout=120).returncode == 0
        first.start()
        try:
            second = Director(tmp_path / "b", config(1, 5), database_url=database,
                              env={"REDIS_URL": redis_url()}, extra_args=["--workers", "2"])
            second.port, second.admin_port = first.port, first.admin_port
            second.start(wait=False)
            assert second.process.proc.wait(60) == 1
            lines = [line for line in second.output().splitlines() if line.startswith("runproxy:")]
            assert lines == [f"runproxy: cannot listen on 127.0.0.1:{first.port}: address already in use "
                             "(another process serves it: a running runproxy?)"], second.output()
            assert first.get("/")[0] in (200, 503) and first.process.alive()
        finally:
            first.stop()
