"""The database goes away (SPEC §11): traffic and restarts go on from the local snapshot,
the API answers JSON 503, and everything resumes by itself when the database returns.

The PostgreSQL server here is the test's own (`private_postgres`), stopped and started at
will; the machine's is never touched.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time

from tests.support.backends import http_backend
from tests.support.config_files import app_config
from tests.support.director import Director
from tests.support.live_api import api
from tests.support.load import probing
from tests.support.private_postgres import private_postgres
from tests.support.shared_services import redis_url
from tests.support.waiting import wait_for
from tests.support.workers import every_worker_sees


def start_on(tmp_path, database, backend, *args, env=None) -> Director:
    director = Director(tmp_path, app_config(one=backend.port), database_url=database.url,
                        extra_args=list(args), env=env)
    migrated = director.manage("migrate", "--noinput", "-v", "0", timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    director.start()
    director.key = director.manage("createapitoken", "ops").stdout.strip()
    wait_for(lambda: director.get("/")[2] == b"one", 20, what="the backend online")
    if "--workers" in args:
        wait_for(lambda: every_worker_sees(director, 2, {"one": "online"}), 20, what="both workers to see it")
    wait_for(lambda: (director.dir / "config-snapshot.json").exists(), 10, what="the snapshot")
    return director


def test_one_process_serves_restarts_and_recovers_without_the_database(tmp_path):
    with private_postgres() as database, http_backend("one") as backend:
        director = start_on(tmp_path, database, backend)
        try:
            database.stop()
            assert [director.get("/")[2] for _ in range(5)] == [b"one"] * 5
            status, _, body = api(director, "GET", "/api/v1/directors/", director.key)
            assert (status, body) == (503, {"detail": "database unavailable"})
            assert director.get("/-/ready", port=director.admin_port)[0] == 503

            director.stop()  # a restart while the database is away: served from the snapshot
            director.start()
            assert [director.get("/")[2] for _ in range(5)] == [b"one"] * 5
            assert "serving the configuration saved at" in director.output()
            checks = health_checks(backend)  # and its health monitor checks what the snapshot holds
            wait_for(lambda: health_checks(backend) >= checks + 2, 5, what="health checks from the snapshot")

            database.start()
            wait_for(lambda: api(director, "GET", "/api/v1/directors/app/", director.key)[0] == 200, 15,
                     what="the API back with the database")
            status, _, _ = api(director, "POST", "/api/v1/directors/app/backends/one/disable", director.key)
            assert status == 200
            wait_for(lambda: director.get("/")[0] == 503, 5, what="a change after the outage to reach the proxy")
        finally:
            director.stop()


def test_a_worker_killed_while_the_database_is_away_is_back_within_3_s(tmp_path):
    with private_postgres() as database, http_backend("one") as backend:
        director = start_on(tmp_path, database, backend, "--workers", "2", env={"REDIS_URL": redis_url()})
        try:
            database.stop()
            with probing(director.port) as probe:
                victim = worker_pid(director, 1)
                serving_before = director.output().count("Director worker 1 serving")
                killed = time.monotonic()
                os.kill(victim, signal.SIGKILL)
                wait_for(lambda: director.output().count("Director worker 1 serving") > serving_before, 3,
                         what="worker 1 serving again")
                back_after = time.monotonic() - killed
                time.sleep(1)  # a second of probes served by the new worker
                probe.stop()
            # Only a connection the killed worker had already accepted may fail; the kernel's
            # share of the dead worker's socket waits for its successor.
            assert len(probe.failures) <= 1 and probe.failures_except_around(killed) == [], probe.failures[:5]
            assert probe.attempts > 20  # the probe ran all along (fewer on a loaded machine)
            assert back_after < 3
            database.start()
            wait_for(lambda: api(director, "GET", "/api/v1/directors/app/", director.key)[0] == 200, 15,
                     what="the API back with the database")
        finally:
            director.stop()


def test_polls_keep_one_connection_and_replace_one_the_server_dropped(tmp_path):
    """The config and health polls (twice a second each) reuse one connection: on
    PostgreSQL a connection per poll is a server process per poll. When the server drops
    that connection (terminated session, idle timeout, failover), the next poll makes a new
    one without counting the database as away."""
    with private_postgres() as database, http_backend("one") as backend:
        sql(database, "ALTER SYSTEM SET log_connections = on", "SELECT pg_reload_conf()")
        director = start_on(tmp_path, database, backend)
        try:
            opened = connections_logged(database)
            time.sleep(4)  # eight config polls and eight health polls
            assert connections_logged(database) - opened <= 1

            sql(database, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
            status, _, _ = api(director, "POST", "/api/v1/directors/app/backends/one/disable", director.key)
            assert status == 200
            wait_for(lambda: director.get("/")[0] == 503, 5, what="the change to reach the proxy")
            assert "unreachable" not in director.output() and "poll failed" not in director.output()
        finally:
            director.stop()


def sql(database, *statements: str) -> None:
    import psycopg

    with psycopg.connect(f"host=127.0.0.1 port={database.port} user=postgres dbname=postgres",
                         autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def connections_logged(database) -> int:
    return (database.directory / "postgres.log").read_text().count("connection authorized")


def health_checks(backend) -> int:
    return sum(1 for r in backend.requests_seen if r.headers.get("x-director-health-check") == ["yes"])


def worker_pid(director: Director, index: int) -> int:
    for pid in subprocess.run(["pgrep", "-P", str(director.process.pid)], capture_output=True, text=True).stdout.split():
        environ = open(f"/proc/{pid}/environ", "rb").read()
        if re.search(rb"(^|\0)DIRECTOR_WORKER_INDEX=%d\0" % index, environ):
            return int(pid)
    raise AssertionError(f"no worker {index}")
