"""Health monitors in a cluster (SPEC §11 "Health in a cluster"): real runproxy and
healthworker processes sharing PostgreSQL and Redis. Together they check each backend once
per interval; when the holder of a backend is killed another takes over within two
intervals plus one second; a backend failed by live traffic on a node without a monitor
comes back there once the checks pass; health transitions never bump the config version."""
from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from tests.support.backends import http_backend
from tests.support.director import Director
from tests.support.live_api import CONFIG, LiveApi
from tests.support.processes import REPO, Process, python_args
from tests.support.shared_services import postgres_database, redis_url
from tests.support.waiting import wait_for

INTERVAL = 0.5  # seconds between checks of the backends of these tests
SUCCESS_THRESHOLD = 1  # CONFIG's


class Cluster:
    """runproxy A (with a monitor), runproxy B (--no-health-monitor), healthworkers."""

    def __init__(self, tmp_path, database: str, redis: str):
        self.tmp_path = tmp_path
        self.prefix = f"test-{uuid.uuid4().hex[:8]}"
        self.redis = redis
        self.env = {"REDIS_URL": redis, "DIRECTOR_CHANNEL_PREFIX": self.prefix}
        self.a = Director(tmp_path / "a", CONFIG, database_url=database, env=self.env)
        migrated = self.a.manage("migrate", "--noinput", "-v", "0", timeout=120)
        assert migrated.returncode == 0, migrated.stderr
        self.a.start()
        self.b = Director(tmp_path / "b", CONFIG, database_url=database, env=self.env,
                          extra_args=["--no-health-monitor"]).start()
        self.api = LiveApi(self.a)
        self.workers: list[Process] = []

    def healthworker(self) -> Process:
        worker = Process(python_args(REPO / "manage.py", "healthworker"), self.tmp_path / f"hw{len(self.workers)}.log",
                         env=self.a.env)
        self.workers.append(worker)
        wait_for(lambda: "healthworker: checking" in worker.output(), 30, what="the healthworker to start")
        return worker

    def holder_pid(self, backend_id: int) -> int | None:
        import redis

        client = redis.Redis.from_url(self.redis)
        try:
            owner = client.get(f"{self.prefix}:health:lease:{backend_id}")
        finally:
            client.close()
        return int(owner.decode().split(":")[1]) if owner else None

    def version(self) -> int:
        return int(self.a.shell("from balancer.services import current_version; print(current_version())"))

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.b.stop()
        self.a.stop()
        import redis

        client = redis.Redis.from_url(self.redis)
        keys = list(client.scan_iter(f"{self.prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def cluster(tmp_path):
    redis = redis_url()
    with postgres_database() as database:
        cluster = Cluster(tmp_path, database, redis)
        try:
            yield cluster
        finally:
            cluster.stop()


def checks(backend) -> int:
    return sum(1 for r in backend.requests_seen if r.headers.get("x-director-health-check") == ["yes"])


def add(cluster: Cluster, backend, **fields) -> int:
    created = cluster.api.add_backend(backend, health_check_interval=INTERVAL, **fields)
    cluster.api.wait_online(backend.name)
    return created["id"] if "id" in created else int(cluster.a.shell(
        f"from balancer.models import Backend; print(Backend.objects.get(name={backend.name!r}).pk)"))


def test_two_monitors_check_a_backend_once_per_interval_and_a_killed_holder_is_replaced(cluster):
    worker = cluster.healthworker()  # two monitors now: runproxy A's and this one
    with http_backend("one") as one:
        backend_id = add(cluster, one)
        wait_for(lambda: cluster.holder_pid(backend_id), 5, what="a lease on the backend")
        window = 6.0
        first = checks(one)
        time.sleep(window)  # a measurement window, not synchronisation
        counted = checks(one) - first
        assert counted <= window / INTERVAL + 2, f"{counted} checks in {window} s: the monitors both check"
        assert counted >= window / INTERVAL - 3, f"only {counted} checks in {window} s"

        holder = cluster.holder_pid(backend_id)
        assert holder in (worker.pid, cluster.a.process.pid)
        survivor = cluster.a.process.pid if holder == worker.pid else worker.pid
        before = checks(one)
        os.kill(holder, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: checks(one) > before, 2 * INTERVAL + 3, interval=0.01, what="another monitor to check")
        took = time.monotonic() - killed
        assert took <= 2 * INTERVAL + 1 + 0.3, f"next check {took:.2f} s after the holder was killed"
        wait_for(lambda: cluster.holder_pid(backend_id) == survivor, 2, what="the survivor to hold the lease")


def test_a_live_failure_on_a_node_without_monitor_recovers_there(cluster):
    """Backend one is lazy: no monitor checks it while online, so only B's live failure
    can take it offline; the monitor holding it (in A or the healthworker) must hear of it,
    check it, and bring it back on B once it answers again."""
    cluster.healthworker()
    with http_backend("two") as two:
        add(cluster, two)
        with http_backend("one") as one:
            port = one.port
            add(cluster, one, health_check_mode="lazy")
            wait_for(lambda: {cluster.b.get("/")[2] for _ in range(4)} == {b"one", b"two"}, 5, what="B using both")
        version = cluster.version()  # one is down now; the monitors do not know (lazy)
        wait_for(lambda: cluster.b.get("/")[2] == b"two" and metric_state(cluster.b, "one", "offline"), 5,
                 interval=0.05, what="a request on B to fail over from one")
        wait_for(lambda: cluster.api.backend("one")[1]["health"]["state"] == "offline", 3,
                 what="the monitor holding one to store B's report")
        with http_backend("one", port=port):
            recovered = time.monotonic()
            wait_for(lambda: metric_state(cluster.b, "one", "online"), INTERVAL * SUCCESS_THRESHOLD + 3,
                     interval=0.02, what="one to be online again on B")
            took = time.monotonic() - recovered
            assert took <= INTERVAL * SUCCESS_THRESHOLD + 1, f"online on B {took:.2f} s after recovering"
            wait_for(lambda: b"one" in {cluster.b.get("/")[2] for _ in range(4)}, 3, what="B to use one again")
        assert cluster.version() == version, "a health transition bumped the config version"


def metric_state(director: Director, backend: str, state: str) -> bool:
    text = director.get("/metrics", port=director.admin_port)[2].decode()
    value = "1.0" if state == "online" else "0.0"
    return f'director_backend_up{{backend="{backend}",director="pool",state="{state}"}} {value}' in text
