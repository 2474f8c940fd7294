"""Draining and runtime changes through the API on a real runproxy with real backends (SPEC §9):
a deleted backend finishes its in-flight request, takes no new ones and disappears once idle;
adding, disabling, enabling and draining backends under load fails not a single request;
terminate_protection refuses the DELETE and the backend keeps serving."""
from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from tests.support.backends import http_backend
from tests.support.director import Director
from tests.support.live_api import (
    BACKENDS,
    EFFECTIVE_WITHIN_S,
    live,  # noqa: F401 - the fixture
)
from tests.support.waiting import wait_for

SLOW_DELAY_S = 2
LOAD_THREADS = 4
LOAD_MAX_REQUESTS = 20_000  # per thread; the loop normally stops well before
LOAD_MAX_SECONDS = 45
QUIET_SPAN_REQUESTS = 60  # requests served by the others while a left-out backend gets none


def proxied(director: Director, path: str = "/") -> tuple[int, str | None]:
    status, headers, _ = director.get(path)
    return status, headers.get("x-backend")


def served(backend, path: str = "/") -> int:
    return sum(1 for seen in list(backend.requests_seen) if seen.target.startswith(path))


def wait_proxied_by(live, *names: str) -> None:
    """Stored online (wait_online) is applied by the proxy up to a second later: wait for it."""
    expected = {(200, name) for name in names}
    wait_for(lambda: {proxied(live.director) for _ in names} == expected, EFFECTIVE_WITHIN_S * 3,
             what=f"the proxy to use {', '.join(names)}")


def test_deleted_backend_finishes_its_request_and_is_removed_once_idle(live):
    with http_backend("a") as a, http_backend("b") as b, ThreadPoolExecutor(2) as pool:
        for backend in (a, b):
            live.add_backend(backend)
            live.wait_online(backend.name)
        wait_proxied_by(live, "a", "b")
        slow = []
        while not served(b, "/slow"):  # round robin: at most two tries land one on b
            assert len(slow) < 2, "no slow request reached b"
            slow.append(pool.submit(proxied, live.director, f"/slow?delay={SLOW_DELAY_S}"))
            wait_for(lambda: served(a, "/slow") + served(b, "/slow") == len(slow), 5, what="the slow request to arrive")

        status, body = live.call("DELETE", f"{BACKENDS}b/")
        assert status == 202 and body["terminating"] is True and body["name"] == "b"
        # Round robin over a and b: two answers in a row from a mean b takes no new requests.
        wait_for(lambda: [proxied(live.director) for _ in range(2)] == [(200, "a")] * 2, EFFECTIVE_WITHIN_S,
                 interval=0.01, what="the proxy to stop sending new requests to b")
        meanwhile = [proxied(live.director) for _ in range(10)]
        assert meanwhile == [(200, "a")] * 10
        assert not slow[-1].done(), "the slow request ended before draining could be observed"
        status, body = live.backend("b")
        assert status == 200 and body["terminating"] is True  # still there: a request is in flight

        assert slow[-1].result(timeout=SLOW_DELAY_S + 10) == (200, "b")
        live.wait_removed("b", timeout=5)
        assert live.backend("b")[0] == 404
        assert proxied(live.director) == (200, "a")

    _, audit = live.call("GET", "/api/v1/audit/?director=pool", expect=200)
    records = {(r["action"], r["backend_name"]): r for r in audit["results"]}
    assert records[("backend.delete", "b")]["actor"] == "api:ops"
    assert records[("backend.delete", "b")]["after"]["terminating"] is True
    assert records[("backend.remove", "b")]["actor"] == "proxy:drained"


class LoadLoop:
    """Threads sending keep-alive GETs through the proxy, counting every outcome."""

    def __init__(self, port: int):
        self.port = port
        self.statuses: Counter[int] = Counter()
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(LOAD_THREADS)]

    def __enter__(self) -> "LoadLoop":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        assert not any(t.is_alive() for t in self._threads), "load threads did not stop"

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.statuses.values()) + len(self.errors)

    def _run(self) -> None:
        deadline = time.monotonic() + LOAD_MAX_SECONDS
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            for _ in range(LOAD_MAX_REQUESTS):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                try:
                    conn.request("GET", "/")
                    response = conn.getresponse()
                    response.read()
                    with self._lock:
                        self.statuses[response.status] += 1
                except (OSError, http.client.HTTPException) as exc:
                    with self._lock:
                        self.errors.append(exc)
                    conn.close()  # http.client reconnects on the next request
        finally:
            conn.close()


def wait_gets_traffic(backend, load: LoadLoop) -> None:
    start = served(backend)
    wait_for(lambda: served(backend) > start, 10, what=f"backend {backend.name} to get traffic")
    assert load.total, "the load loop is not running"


def wait_left_out(backend, load: LoadLoop) -> None:
    """Until the others have served QUIET_SPAN_REQUESTS in a row while `backend` got none."""
    mark = {"seen": served(backend), "total": load.total}

    def quiet() -> bool:
        seen, total = served(backend), load.total
        if seen != mark["seen"]:
            mark.update(seen=seen, total=total)
            return False
        return total - mark["total"] >= QUIET_SPAN_REQUESTS

    wait_for(quiet, 10, what=f"backend {backend.name} to be left out")


def test_changes_under_load_fail_no_request(live):
    with http_backend("a") as a, http_backend("b") as b, http_backend("c") as c:
        for backend in (a, b):
            live.add_backend(backend)
            live.wait_online(backend.name)
        wait_proxied_by(live, "a", "b")
        with LoadLoop(live.director.port) as load:
            wait_gets_traffic(a, load)
            live.add_backend(c, capacity=0)
            live.wait_online("c")
            wait_gets_traffic(c, load)
            live.call("POST", f"{BACKENDS}c/disable", expect=200)
            wait_left_out(c, load)
            live.call("POST", f"{BACKENDS}c/enable", expect=200)
            wait_gets_traffic(c, load)
            assert live.call("DELETE", f"{BACKENDS}b/", expect=202)[1]["terminating"] is True
            live.wait_removed("b")
            wait_left_out(b, load)
            wait_gets_traffic(a, load)
            wait_gets_traffic(c, load)
        print(f"\nrequests under changes: {dict(load.statuses)}, errors: {len(load.errors)}")
        assert load.errors == [], load.errors[:5]
        assert set(load.statuses) == {200}, load.statuses
        assert load.statuses[200] >= 100, load.statuses  # the changes happened under real load


def test_terminate_protection_refuses_delete_and_keeps_serving(live):
    with http_backend("p") as p:
        live.add_backend(p, terminate_protection=True)
        live.wait_online("p")
        wait_proxied_by(live, "p")
        status, body = live.call("DELETE", f"{BACKENDS}p/")
        assert status == 403 and "terminate_protection" in body["detail"]
        status, body = live.backend("p")
        assert status == 200 and body["terminating"] is False
        assert [proxied(live.director) for _ in range(5)] == [(200, "p")] * 5
        assert live.director.shell(
            "from balancer.models import AuditRecord; print(AuditRecord.objects.filter(action='backend.delete').count())"
        ).strip() == "0"
