"""`runproxy --workers 2` on PostgreSQL and Redis: both workers serve the listeners (a burst
of connections is spread over both), the API and /metrics count every worker's requests, a
killed worker is started again, and SIGTERM to the supervisor stops them all (without
Redis: test_runproxy_startup)."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import pytest

from balancer.worker_stats import STALE_AFTER
from tests.support.backends import http_backend
from tests.support.director import Director
from tests.support.live_api import api as api_on
from tests.support.rawhttp import RawHTTP
from tests.support.rawhttp import request as raw_request
from tests.support.shared_services import postgres_database, redis_url
from tests.support.waiting import wait_for
from tests.support.workers import every_worker_sees, published

CONFIG = """
    [directors.pool]
    health_check_success_threshold = 1
    backends = {{ one = {{ url = "http://127.0.0.1:{one}", health_check_interval = 0.2 }}, two = {{ url = "http://127.0.0.1:{two}", health_check_interval = 0.2 }} }}

    [[routes]]
    path = "/"
    pass = "pool"
"""
REQUESTS = 200
BURST = 40


def worker_pids(supervisor_pid: int) -> set[int]:
    found = subprocess.run(["pgrep", "-P", str(supervisor_pid)], capture_output=True, text=True).stdout
    return {int(pid) for pid in found.split()}


def served_by_workers(director: Director) -> dict[int, int]:
    """Requests each worker has published (worker index -> total dispatched)."""
    return {worker: sum(d["load"]["total"] for d in snapshot["directors"])
            for worker, snapshot in published(director).items()}


def every_worker_sees_both_online(director: Director) -> bool:
    return every_worker_sees(director, 2, {"one": "online", "two": "online"})


@pytest.fixture
def cluster(tmp_path):
    with postgres_database() as database, http_backend("one") as one, http_backend("two") as two:
        director = Director(tmp_path, CONFIG.format(one=one.port, two=two.port), database_url=database,
                            env={"REDIS_URL": redis_url()}, extra_args=["--workers", "2"])
        migrated = director.manage("migrate", "--noinput", "-v", "0", timeout=120)
        assert migrated.returncode == 0, migrated.stderr
        director.start()
        try:
            wait_for(lambda: len(worker_pids(director.process.proc.pid)) == 2, 20, what="two workers")
            director.key = director.manage("createapitoken", "viewer", "--viewer").stdout.strip()
            wait_for(lambda: stored_health(director) == {"one": "online", "two": "online"}, 20,
                     what="both backends stored online")
            wait_for(lambda: every_worker_sees_both_online(director), 20, what="both workers to see both backends online")
            wait_for(lambda: {director.get("/")[2] for _ in range(6)} == {b"one", b"two"}, 20,
                     what="both backends in use")
            yield director
        finally:
            director.stop()


def stored_health(director: Director) -> dict[str, str]:
    status, _, body = api_on(director, "GET", "/api/v1/directors/pool/backends/", director.key)
    assert status == 200, body
    return {b["name"]: b["health"]["state"] for b in body}


def test_both_workers_serve_and_every_request_is_counted(cluster):
    key = cluster.key
    before = wait_for(settled(lambda: director_total(cluster, key)), 10, what="the counts to settle")
    for _ in range(REQUESTS):  # a new connection each: the kernel spreads them over the workers
        assert cluster.get("/")[0] == 200
    wait_for(lambda: director_total(cluster, key) == before + REQUESTS, 5,
             what="the API to count the requests of both workers")
    served = served_by_workers(cluster)
    assert len(served) == 2 and all(served.values()), served
    # /metrics, from whichever worker answers, adds up both workers' responses too
    wait_for(lambda: answered_2xx(cluster) == before + REQUESTS, 5, what="/metrics to count both workers")


def test_a_burst_of_keepalive_connections_is_spread_over_the_workers(cluster):
    """Each worker has its own SO_REUSEPORT socket: a burst of connections (what wrk or a
    pool of app servers opens) lands on both, not all on whichever worker woke first."""
    supervisor = cluster.process.proc.pid
    conns = [RawHTTP.tcp("127.0.0.1", cluster.port) for _ in range(BURST)]
    try:
        for conn in conns:
            conn.send(raw_request("GET", "/", {"Host": "x"}))
        for conn in conns:
            assert conn.read_response().status == 200
        held = connections_per_worker(cluster.port, worker_pids(supervisor))
        # binomial(40, 1/2): fewer than 8 on one side happens about once in 100,000 runs
        assert len(held) == 2 and min(held.values()) >= 8 and sum(held.values()) == BURST, held
    finally:
        for conn in conns:
            conn.close()


def connections_per_worker(port: int, pids: set[int]) -> dict[int, int]:
    """Established connections on our listening port, by the worker process holding them."""
    established = established_inodes(port)
    return {pid: len(established & socket_inodes(pid)) for pid in pids}


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for entry in os.scandir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # a descriptor closed while we look
            target = os.readlink(entry.path)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def established_inodes(port: int) -> set[str]:
    """Socket inodes of established TCP connections whose local port is `port` (/proc/net/tcp)."""
    with open("/proc/net/tcp") as table:
        next(table)
        rows = [line.split() for line in table]
    # columns: sl, local address (hex ip:port), remote address, state (01: ESTABLISHED), ..., inode
    return {fields[9] for fields in rows if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01"}


def answered_2xx(director: Director) -> float:
    return counted(director)[0]


def counted(director: Director) -> tuple[float, float, float]:
    """(2xx answered by backends, response body bytes sent, requests in the duration histograms)"""
    lines = director.get("/metrics", port=director.admin_port)[2].decode().splitlines()

    def total(prefix: str, *having: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines
                   if line.startswith(prefix) and all(text in line for text in having))
    return (total("director_requests_total{backend=", 'class="2xx"'), total("director_bytes_sent_total{"),
            total("director_request_duration_seconds_count{"))


def settled(read, quiet: float = 1.5):
    """A wait_for predicate: the value of `read()` once it has not changed for `quiet` seconds
    (the workers publish their figures every second); None until then."""
    last = {"value": None, "since": time.monotonic()}

    def check():
        value = read()
        if value != last["value"]:
            last.update(value=value, since=time.monotonic())
            return None
        return value if time.monotonic() - last["since"] >= quiet else None
    return check


def director_total(director: Director, key: str) -> int:
    status, _, body = api_on(director, "GET", "/api/v1/directors/pool/", key)
    assert status == 200, body
    return body["stats"]["load"]["total"]


def test_a_killed_worker_is_started_again_and_no_request_fails(cluster):
    supervisor = cluster.process.proc.pid
    victim = min(worker_pids(supervisor))
    os.kill(victim, signal.SIGKILL)
    for _ in range(20):  # all answered: the kernel's share of the dead one waits for its successor
        status, headers, body = cluster.get("/")
        assert status == 200, (body, cluster.output()[-3000:])
    wait_for(lambda: len(worker_pids(supervisor) - {victim}) == 2, 10, what="a new worker")
    assert "exited with status -9" in cluster.output() and "started again" in cluster.output()


def test_metrics_counters_never_go_down_when_a_worker_dies(cluster):
    """A dead worker's counts are kept in the retired totals: a Prometheus counter that
    dropped would read as a reset and lose every rate computed across it."""
    for _ in range(40):  # new connections: the kernel spreads them over both workers
        assert cluster.get("/")[0] == 200
    before = wait_for(settled(lambda: counted(cluster)), 10, what="the counts to settle")
    assert all(served_by_workers(cluster).values()) and all(before)
    victim = min(worker_pids(cluster.process.proc.pid))
    os.kill(victim, signal.SIGKILL)
    seen = [before]
    deadline = time.monotonic() + 2 * STALE_AFTER
    while time.monotonic() < deadline:  # past the time a dead worker's file would go stale
        seen.append(counted(cluster))
        time.sleep(0.1)
    assert all(y >= x for a, b in zip(seen, seen[1:]) for x, y in zip(a, b)), seen
    assert all(y >= x for x, y in zip(before, seen[-1]))


def test_sigterm_to_the_supervisor_stops_every_worker(cluster):
    supervisor = cluster.process.proc
    workers = worker_pids(supervisor.pid)
    with RawHTTP.tcp("127.0.0.1", cluster.port) as conn:  # an idle keep-alive client
        conn.send(raw_request("GET", "/", {"Host": "x"}))
        assert conn.read_response().status == 200
        os.kill(supervisor.pid, signal.SIGTERM)
        assert supervisor.wait(30) == 0
        assert conn.at_eof(timeout=5)
    assert not [pid for pid in workers if _alive(pid)]
    assert not list((cluster.dir / "workers").glob("*/*.json"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
