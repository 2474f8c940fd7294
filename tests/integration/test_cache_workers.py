"""Under `runproxy --workers 2` every worker has a cache of its own, the API's director
object adds their figures up like the other live counts (SPEC §15, balancer.worker_stats),
and a PURGE accepted by one worker marks the other's copy stale too (proxy.cache_purge)."""
from __future__ import annotations

import concurrent.futures
import json

from tests.support.cache_backend import cache_backend
from tests.support.director import Director
from tests.support.shared_services import postgres_database, redis_url
from tests.support.waiting import wait_for
from tests.support.workers import every_worker_sees, published

CONFIG = """
    [directors.app]
    cache_enabled = true
    cache_default_ttl = 600
    health_check_success_threshold = 1
    health_check_request_path = "/health"
    backends = {{ w1 = {{ url = "{url}", health_check_interval = 0.5 }} }}

    [[routes]]
    path = "/"
    pass = "app"
"""


def test_each_worker_caches_for_itself_and_the_api_adds_them_up(tmp_path):
    with cache_backend("w1") as backend, postgres_database() as database:
        director = Director(tmp_path, CONFIG.format(url=backend.url), database_url=database,
                            env={"REDIS_URL": redis_url()}, extra_args=["--workers", "2"])
        assert director.manage("migrate", "--noinput", "-v", "0", timeout=120).returncode == 0
        director.start()
        try:
            wait_for(lambda: every_worker_sees(director, 2, {"w1": "online"}), 30, what="both workers ready")
            sent = 0

            def round_of_requests() -> bool:
                nonlocal sent
                with concurrent.futures.ThreadPoolExecutor(8) as pool:
                    answers = list(pool.map(lambda _: director.get("/page")[0], range(8)))
                sent += len(answers)
                assert set(answers) == {200}
                return backend.count("/page") == 2  # the first request of each worker was its miss

            wait_for(round_of_requests, 60, interval=0.1, what="both workers to have served /page")
            key = director.manage("createapitoken", "viewer", "--viewer").stdout.strip()

            def summed():
                status, _, body = director.request("GET", "/api/v1/directors/app/", port=director.admin_port,
                                                   headers={"Authorization": f"Token {key}"})
                cache = json.loads(body)["cache"] if status == 200 else {}
                return cache if cache.get("hits", 0) + cache.get("misses", 0) == sent else None

            cache = wait_for(summed, 15, what="every worker's figures in the API")
            assert (cache["objects"], cache["misses"], cache["hits"]) == (2, 2, sent - 2)
            # The worker files are rewritten every second; the API's own worker counted live.
            def each_worker_holds_one() -> bool:
                each = [d["cache"]["objects"] for snapshot in published(director).values() for d in snapshot["directors"]]
                return each == [1, 1]

            wait_for(each_worker_holds_one, 10, what="each worker's file to show one cached object")

            assert director.request("PURGE", "/page")[0] == 200
            # Both copies are stale now: each worker's next GET goes to the backend once more.
            def refreshed_by_both() -> bool:
                round_of_requests()
                return backend.count("/page") == 4

            wait_for(refreshed_by_both, 60, interval=0.1, what="both workers to refresh their purged copy")
            assert backend.count("/page") == 4
        finally:
            director.stop()
