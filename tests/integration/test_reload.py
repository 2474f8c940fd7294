"""Reload without losing a request (SPEC §11): SIGHUP or `manage.py reloadproxy` while wrk
keeps 16 connections busy and a probe opens a new connection every 20 ms.

The reload adds a static backend and a route; the assertions are what a client sees: no
response other than 2xx, no socket error, no refused probe, and the new route answering
within 2 s of the signal. A broken file changes nothing and says why.
"""
from __future__ import annotations

import os
import signal
import time

from tests.support.backends import http_backend
from tests.support.config_files import app_config
from tests.support.director import Director
from tests.support.load import probing, wrk_through
from tests.support.shared_services import postgres_database, redis_url
from tests.support.waiting import port_open, wait_for
from tests.support.workers import every_worker_sees

LOAD_SECONDS = 30
RELOAD_AFTER = 8

def before(one: int) -> str:
    return app_config(proxy={"shutdown_timeout": 10}, one=one)


def after(one: int, two: int) -> str:
    """One more backend, and a route to it ahead of the catch-all."""
    return app_config(proxy={"shutdown_timeout": 10}, first_routes=({"path": "/added/", "http": f"127.0.0.1:{two}"},),
                      one=one, two=two)


# A reload under wrk load on two shared cores: validate, store, apply, one full collection
# (proxy.gc_tuning). Normally well under a second; generous, as a bound, not a benchmark.
ROUTE_DEADLINE = 5.0


def pid_of(director: Director) -> int:
    return int((director.dir / "runproxy.pid").read_text())


def reload_under_load(director: Director, one, two, reload, workers: int = 0) -> None:
    wait_for(lambda: director.get("/")[2] == b"one", 20, what="the backend online")
    if workers:
        wait_for(lambda: every_worker_sees(director, workers, {"one": "online"}), 20,
                 what="every worker to see the backend online")
    with wrk_through(director.url + "/", 16, LOAD_SECONDS) as wrk, probing(director.port) as probe:
        time.sleep(RELOAD_AFTER)  # load before the reload, measured by wrk
        director.config_path.write_text(after(one.port, two.port))
        signalled = time.monotonic()
        reload(director)
        wait_for(lambda: answered_by(director, "/added/x") == "two", ROUTE_DEADLINE, what="the new route to answer")
        route_after = time.monotonic() - signalled
        wait_for(lambda: any(r.target == "/" for r in two.requests_seen), 10, what="the new static backend in use")
        result = wrk.result()
        failures = probe.stop()
    assert result.errors == 0, result.describe_errors()
    assert result.requests > 1000, result
    assert failures == [], f"{len(failures)} of {probe.attempts} new connections failed: {failures[:5]}"
    assert route_after < ROUTE_DEADLINE
    assert "applied" in director.output()


def answered_by(director: Director, path: str) -> str | None:
    status, headers, _ = director.get(path)
    return headers.get("x-backend") if status == 200 else None


def sighup(director: Director) -> None:
    os.kill(pid_of(director), signal.SIGHUP)


def reloadproxy(director: Director) -> None:
    done = director.manage("reloadproxy")
    assert done.returncode == 0, done.stderr


def test_reload_of_one_process_loses_no_request(tmp_path):
    with http_backend("one") as one, http_backend("two") as two:
        director = Director(tmp_path, before(one.port)).start()
        try:
            reload_under_load(director, one, two, reloadproxy)
        finally:
            director.stop()


def test_reload_of_two_workers_replaces_them_one_at_a_time_losing_no_request(tmp_path):
    with postgres_database() as database, http_backend("one") as one, http_backend("two") as two:
        director = Director(tmp_path, before(one.port), database_url=database,
                            env={"REDIS_URL": redis_url()}, extra_args=["--workers", "2"])
        assert director.manage("migrate", "--noinput", "-v", "0", timeout=120).returncode == 0
        director.start()
        try:
            old_workers = workers_of(director)
            reload_under_load(director, one, two, sighup, workers=2)
            wait_for(lambda: not workers_of(director) & old_workers, 20, what="the old workers to exit")
            assert len(workers_of(director)) == 2
        finally:
            director.stop()


def workers_of(director: Director) -> set[int]:
    import subprocess

    found = subprocess.run(["pgrep", "-P", str(director.process.pid)], capture_output=True, text=True).stdout
    return {int(pid) for pid in found.split()}


def test_a_broken_file_changes_nothing_and_says_why(tmp_path):
    with http_backend("one") as one:
        director = Director(tmp_path, before(one.port)).start()
        try:
            wait_for(lambda: director.get("/")[2] == b"one", 20, what="the backend online")
            director.config_path.write_text(director.config_path.read_text() + "\n[[routes]]\npath = \"/x\"\npass = \"nowhere\"\n")
            sighup(director)
            wait_for(lambda: "nothing changed" in director.output(), 10, what="the reload to be refused")
            assert "routes[1].pass" in director.output() and "nowhere" in director.output()
            assert director.get("/")[2] == b"one"
            assert director.process.alive()
        finally:
            director.stop()


def test_reloadproxy_without_a_running_proxy_says_so(tmp_path):
    director = Director(tmp_path, before(1))
    done = director.manage("reloadproxy")
    assert done.returncode == 1
    assert "no pid file" in done.stderr and str(tmp_path) in done.stderr


def test_the_pid_file_names_the_process_and_goes_with_it(tmp_path):
    director = Director(tmp_path, before(1)).start()
    assert pid_of(director) == director.process.pid
    assert director.stop() == 0
    assert not (director.dir / "runproxy.pid").exists()


def listeners(one: int, admin: int, *ports: int) -> str:
    return app_config(proxy={"listen": [f"127.0.0.1:{p}" for p in ports], "admin_listen": f"127.0.0.1:{admin}"}, one=one)


def listeners_follow_the_file(director: Director, one) -> None:
    from tests.support.waiting import free_port, port_open

    first, second = director.port, free_port()
    admin = director.admin_port
    director.config_path.write_text(listeners(one.port, admin, first, second))
    sighup(director)
    wait_for(lambda: director.get("/", port=second)[2] == b"one", 10, what="the added listener to serve")
    director.config_path.write_text(listeners(one.port, admin, second))
    sighup(director)
    wait_for(lambda: not port_open("127.0.0.1", first), 15, what="the removed listener to close")
    assert director.get("/", port=second)[2] == b"one"


def listening_director(tmp_path, one, **kwargs) -> Director:
    director = Director(tmp_path, "", **kwargs)
    director.config_path.write_text(listeners(one.port, director.admin_port, director.port))
    director.listen_flags = False
    return director


def test_a_reload_adds_and_removes_listeners(tmp_path):
    with http_backend("one") as one:
        director = listening_director(tmp_path, one).start()
        try:
            wait_for(lambda: director.get("/")[2] == b"one", 20, what="the backend online")
            listeners_follow_the_file(director, one)
        finally:
            director.stop()


def test_workers_reload_adds_and_removes_listeners(tmp_path):
    with postgres_database() as database, http_backend("one") as one:
        director = listening_director(tmp_path, one, database_url=database, env={"REDIS_URL": redis_url()},
                                      extra_args=["--workers", "2"])
        assert director.manage("migrate", "--noinput", "-v", "0", timeout=120).returncode == 0
        director.start()
        try:
            wait_for(lambda: every_worker_sees(director, 2, {"one": "online"}), 20, what="both workers ready")
            listeners_follow_the_file(director, one)
        finally:
            director.stop()


def test_a_stop_signal_as_soon_as_the_port_answers_stops_gracefully(tmp_path):
    """Between the first bound port and the reactor's own signal handlers, SIGTERM used to
    kill runproxy outright (exit -15, pid file left behind); now it is the same graceful stop."""
    director = Director(tmp_path, before(1)).start(wait=False)
    wait_for(lambda: port_open("127.0.0.1", director.port), 30, interval=0.001, what="the traffic port")
    os.kill(director.process.pid, signal.SIGTERM)
    assert director.stop() == 0
    assert not (director.dir / "runproxy.pid").exists()
