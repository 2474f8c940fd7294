"""The request path makes no reference cycles (what proxy.gc_tuning relies on).

Objects of a request must be freed by reference counting when it ends: the collector runs
rarely (proxy.gc_tuning.THRESHOLDS) and walks none of the start-up heap, so cyclic garbage
made per request would pile up between collections. A probe in the runproxy process
(tests.support.gc_probe) runs a full collection on SIGUSR2 and records what it found.
"""
import http.client
import signal

import pytest

from proxy.gc_tuning import THRESHOLDS
from tests.support.backends import http_backend
from tests.support.config_files import with_routes
from tests.support.director import Director
from tests.support.gc_probe import FILE_NAME
from tests.support.waiting import wait_for

REQUESTS = 1500
CHECK_INTERVAL = 60  # health checks out of the way
# Django's ORM makes a few cyclic objects per poll of the database (about one a second), whatever
# the traffic: the bound allows for them and is still far below one object per request.
ALLOWED = REQUESTS // 20


class ProbedDirector(Director):
    entry = ["-m", "tests.support.gc_probe"]


def probe(director: ProbedDirector) -> list[int]:
    """Ask for a full collection: [cyclic objects found, objects frozen, gen-0 threshold]."""
    path = director.dir / FILE_NAME
    before = path.read_text().splitlines() if path.exists() else []
    director.process.proc.send_signal(signal.SIGUSR2)
    wait_for(lambda: path.exists() and len(path.read_text().splitlines()) > len(before), 10,
             what="the gc probe's answer")
    return [int(n) for n in path.read_text().splitlines()[-1].split()]


def collect(director: ProbedDirector) -> int:
    """Ask for a full collection; the number of cyclic objects it found."""
    return probe(director)[0]


def keep_alive_requests(port: int, paths: list[str]) -> list[int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    statuses = []
    try:
        for path in paths:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
    finally:
        conn.close()
    return statuses


@pytest.fixture
def director(tmp_path):
    with http_backend("b1") as backend:
        config = with_routes({"path": "/nowhere/", "pass": "empty"}, {"path": "/", "pass": "app"}, directors=f"""
            [directors.empty]
            backends = {{}}
            [directors.app]
            health_check_success_threshold = 1
            backends = {{ b1 = {{ url = "http://127.0.0.1:{backend.port}", health_check_interval = {CHECK_INTERVAL} }} }}
            """)
        proxy = ProbedDirector(tmp_path, config).start()
        try:
            wait_for(lambda: proxy.get("/")[0] == 200, 30, what="the backend online")
            yield proxy
        finally:
            proxy.stop()


def test_start_up_heap_is_frozen_and_thresholds_raised(director):
    _, frozen, threshold = probe(director)
    assert frozen > 50_000  # Django, Twisted and the rest of start-up: never walked again
    assert threshold == THRESHOLDS[0]


def test_proxied_requests_make_no_reference_cycles(director):
    keep_alive_requests(director.port, ["/"] * 50)  # warm-up: pools, caches
    collect(director)
    statuses = keep_alive_requests(director.port, ["/"] * REQUESTS)
    assert statuses == [200] * REQUESTS
    assert collect(director) <= ALLOWED


def test_refused_and_unrouted_requests_make_no_reference_cycles(director):
    paths = ["/nowhere/"] * 10 + ["/"] * 10
    keep_alive_requests(director.port, paths)
    collect(director)
    for _ in range(REQUESTS // 100):  # a director with no backend answers 503 and closes nothing
        statuses = keep_alive_requests(director.port, ["/nowhere/", "/"] * 50)
        assert set(statuses) == {503, 200}
    assert collect(director) <= ALLOWED
