"""`capacity` and `queue_limit` hold for the node, whatever `--workers` is (SPEC §11):
requests spread over two workers never put more than `capacity` requests on a backend at
once, and never more than `queue_limit` wait."""
from __future__ import annotations

import contextlib
import json
import os
import signal
from concurrent.futures import ThreadPoolExecutor

from tests.integration.test_shutdown import slow_get
from tests.support.counting_backend import CountingBackend
from tests.support.director import Director
from tests.support.shared_services import postgres_database, redis_url
from tests.support.waiting import wait_for
from tests.support.workers import every_worker_sees

CONFIG = """
    [directors.app]
    health_check_success_threshold = 1
    queue_limit = {queue_limit}
    backends = {{ slow = {{ url = "http://127.0.0.1:{port}", capacity = {capacity}, health_check_interval = 0.5 }} }}

    [[routes]]
    path = "/"
    pass = "app"
"""


@contextlib.contextmanager
def two_workers(tmp_path, backend, capacity: int, queue_limit: int):
    with postgres_database() as database:
        director = Director(tmp_path, CONFIG.format(port=backend.port, capacity=capacity, queue_limit=queue_limit),
                            database_url=database, env={"REDIS_URL": redis_url()}, extra_args=["--workers", "2"])
        assert director.manage("migrate", "--noinput", "-v", "0", timeout=120).returncode == 0
        director.start()
        try:
            wait_for(lambda: every_worker_sees(director, 2, {"slow": "online"}), 20, what="both workers ready")
            yield director
        finally:
            director.stop()


def test_capacity_2_with_two_workers_never_puts_3_requests_on_the_backend(tmp_path):
    with CountingBackend() as backend, two_workers(tmp_path, backend, capacity=2, queue_limit=64) as director:
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda _: slow_get(director.port, 0.3), range(16)))
    assert statuses == [200] * 16
    assert backend.most["none"] == 2


def test_queue_limit_holds_for_the_node(tmp_path):
    with CountingBackend() as backend, two_workers(tmp_path, backend, capacity=1, queue_limit=2) as director:
        with ThreadPoolExecutor(8) as pool:
            statuses = sorted(pool.map(lambda _: slow_get(director.port, 1.5), range(8)))
    # one at the backend, two waiting in the whole node: the other five are refused at once
    assert statuses == [200] * 3 + [503] * 5
    assert backend.most["none"] == 1


def test_a_dead_workers_slots_are_freed(tmp_path):
    """SIGKILL of the worker holding the backend's only slot: the supervisor frees it, and
    the other worker can use the backend at once."""
    with CountingBackend() as backend, two_workers(tmp_path, backend, capacity=1, queue_limit=8) as director:
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(slow_get, director.port, 30)
            wait_for(lambda: backend.current["none"] == 1, 10, what="the slot taken")
            holder = wait_for(lambda: holding_pid(director), 5, what="the holder to publish its load")
            os.kill(holder, signal.SIGKILL)
            held.result(10)
        assert [slow_get(director.port, 0.01) for _ in range(4)] == [200] * 4


def holding_pid(director: Director) -> int | None:
    for path in (director.dir / "workers").glob("*/*.json"):
        payload = json.loads(path.read_text())
        if any(b["load"]["current"] for d in payload["snapshot"]["directors"] for b in d["backends"]):
            return payload["pid"]
    return None
