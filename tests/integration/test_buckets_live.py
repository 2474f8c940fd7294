"""Buckets through a real runproxy (SPEC §15): shares under saturating load, borrowing up to
ceil, choosing the bucket by header or cookie, unknown -> root, X-Director-Bucket, the queue
timeout on bucket queues, and the node-wide share under two workers. A real backend counts
the requests of each bucket it has at once (the client's X-Tier reaches it unchanged)."""
from __future__ import annotations

import contextlib
import http.client
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from tests.support.counting_backend import CountingBackend
from tests.support.director import Director
from tests.support.live_api import LiveApi
from tests.support.shared_services import postgres_database, redis_url
from tests.support.waiting import wait_for
from tests.support.workers import every_worker_sees

CONFIG = """
    [directors.app]
    health_check_success_threshold = 1
    queue_timeout = {queue_timeout}
    backends = {{ only = {{ url = "http://127.0.0.1:{port}", capacity = 4, health_check_interval = 0.5 }} }}

    [directors.app.buckets]
    gold = {{ rate = 0.75 }}
    bronze = {{ rate = 0.25, ceil = {bronze_ceil} }}

    [[routes]]
    path = "/cookie/"
    pass = "app"
    bucket_from = "cookie:tier"
    bucket = "gold"

    [[routes]]
    path = "/"
    pass = "app"
    bucket_from = "header:X-Tier"
"""


def get(port: int, path: str, headers=None, timeout: float = 60):
    """(status, X-Director-Bucket, seconds) of one request."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("X-Director-Bucket"), time.monotonic() - started
    finally:
        conn.close()


def config(backend: CountingBackend, *, bronze_ceil: float = 0.25, queue_timeout: float = 60) -> str:
    return CONFIG.format(port=backend.port, bronze_ceil=bronze_ceil, queue_timeout=queue_timeout)


@contextlib.contextmanager
def running(tmp_path, text: str, **kwargs):
    director = Director(tmp_path, text, **kwargs).start()
    try:
        wait_for(lambda: get(director.port, "/?delay=0")[0] == 200, 20, what="the backend online")
        yield director
    finally:
        director.stop()


def saturate(port: int, tiers: dict[str, int], seconds: float, delay: float = 0.1) -> Counter:
    """`tiers[t]` clients each sending X-Tier t requests back to back for `seconds`: statuses."""
    statuses: Counter = Counter()
    deadline = time.monotonic() + seconds

    def client(tier: str) -> None:
        while time.monotonic() < deadline:
            status, bucket, _ = get(port, f"/?delay={delay}", {"X-Tier": tier})
            statuses[(tier, status, bucket)] += 1

    with ThreadPoolExecutor(sum(tiers.values())) as pool:
        for future in [pool.submit(client, t) for t, n in tiers.items() for _ in range(n)]:
            future.result()
    return statuses


def test_shares_hold_under_saturating_load_from_both_buckets(tmp_path):
    with CountingBackend() as backend, running(tmp_path, config(backend)) as director:
        # more clients than slots in both; few enough that the requests still queued when
        # the clients stop (they finish afterwards) hardly move the ratio
        statuses = saturate(director.port, {"gold": 6, "bronze": 3}, seconds=4)
    assert set(statuses) == {("gold", 200, "gold"), ("bronze", 200, "bronze")}, statuses
    assert backend.most["bronze"] == 1  # bronze: ceil 0.25 of 4 = 1 token
    assert backend.most["gold"] == 3
    # 3 slots against 1: gold gets (about) three times bronze's throughput
    assert backend.done["gold"] >= 2.4 * backend.done["bronze"] > 0, backend.done


def test_bronze_borrows_up_to_its_ceil_while_gold_is_idle(tmp_path):
    with CountingBackend() as backend, running(tmp_path, config(backend, bronze_ceil=1.0)) as director:
        statuses = saturate(director.port, {"bronze": 8}, seconds=2)
    assert set(statuses) == {("bronze", 200, "bronze")}
    assert backend.most["bronze"] == 4


def test_bucket_by_header_or_cookie_unknown_is_root(tmp_path):
    with CountingBackend() as backend, running(tmp_path, config(backend)) as director:
        assert get(director.port, "/?delay=0", {"X-Tier": "bronze"})[:2] == (200, "bronze")
        assert get(director.port, "/cookie/?delay=0", {"Cookie": "a=1; tier=bronze"})[:2] == (200, "bronze")
        assert get(director.port, "/cookie/?delay=0")[:2] == (200, "gold")  # no cookie: the route's bucket
        for _ in range(3):
            assert get(director.port, "/?delay=0", {"X-Tier": "platinum"})[:2] == (200, "root")
        assert get(director.port, "/?delay=0")[:2] == (200, "root")
        log = director.output()
    assert log.count("no bucket 'platinum'") == 1  # once a minute, not once a request


def test_the_queue_timeout_applies_to_bucket_queues(tmp_path):
    with CountingBackend() as backend, running(tmp_path, config(backend, queue_timeout=0.5)) as director:
        with ThreadPoolExecutor(1) as pool:
            holder = pool.submit(get, director.port, "/?delay=4", {"X-Tier": "bronze"})
            wait_for(lambda: backend.current["bronze"] == 1, 10, what="bronze's only token in use")
            status, bucket, took = get(director.port, "/?delay=0", {"X-Tier": "bronze"})
            assert (status, bucket) == (503, "bronze")
            assert 0.4 < took < 3.5
            assert get(director.port, "/?delay=0", {"X-Tier": "gold"})[:2] == (200, "gold")  # gold unaffected
            assert holder.result(10)[:2] == (200, "bronze")
        figures = director_buckets(director)
    assert figures["bronze"]["dropped"] == 1 and figures["bronze"]["tokens"] == {"assured": 1, "ceiling": 1, "used": 0}
    assert figures["gold"]["tokens"]["assured"] == 3


def director_buckets(director: Director) -> dict:
    """The live bucket objects of director app, from the runproxy's own management API."""
    body = LiveApi(director).call("GET", "/api/v1/directors/app/buckets/", expect=200)[1]
    return {b["name"]: b for b in body}


def test_two_workers_keep_the_node_wide_share(tmp_path):
    with CountingBackend() as backend, postgres_database() as database:
        director = Director(tmp_path, config(backend), database_url=database, env={"REDIS_URL": redis_url()},
                            extra_args=["--workers", "2"])
        assert director.manage("migrate", "--noinput", "-v", "0", timeout=120).returncode == 0
        director.start()
        try:
            wait_for(lambda: every_worker_sees(director, 2, {"only": "online"}), 20, what="both workers ready")
            statuses = saturate(director.port, {"gold": 8, "bronze": 8}, seconds=4)
        finally:
            director.stop()
    assert set(statuses) == {("gold", 200, "gold"), ("bronze", 200, "bronze")}, statuses
    assert backend.most["bronze"] == 1
    assert backend.most["gold"] == 3


def test_buckets_made_through_the_api_reach_the_proxy(tmp_path):
    """A dynamic director: a bucket created through the API shapes requests within a second
    or so (the version bump reloads the data plane); deleting the bucket sends its
    requests to root."""
    from tests.support.live_api import live_api

    config = """
        [directors.pool]
        dynamic = true
        health_check_success_threshold = 1

        [[routes]]
        path = "/"
        pass = "pool"
        bucket_from = "header:X-Tier"
    """
    with CountingBackend() as backend, live_api(tmp_path, config) as api:
        api.call("POST", "/api/v1/directors/pool/backends/", {
            "name": "only", "url": f"http://127.0.0.1:{backend.port}", "capacity": 2,
            "health_check_interval": 0.2}, expect=201)
        api.wait_online("only")
        api.call("POST", "/api/v1/directors/pool/buckets/", {"name": "gold", "rate": 0.5}, expect=201)
        port = api.director.port
        wait_for(lambda: get(port, "/?delay=0", {"X-Tier": "gold"})[:2] == (200, "gold"), 10,
                 what="bucket gold in the proxy")
        assert api.call("GET", "/api/v1/directors/pool/", expect=200)[1]["buckets"][0]["tokens"] == {
            "assured": 1, "ceiling": 1, "used": 0}
        api.call("DELETE", "/api/v1/directors/pool/buckets/gold/", expect=204)
        wait_for(lambda: get(port, "/?delay=0", {"X-Tier": "gold"})[:2] == (200, None), 10,
                 what="no buckets any more: no header")
