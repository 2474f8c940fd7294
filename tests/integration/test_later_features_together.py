"""SPEC §15's features on one director, through a real runproxy: a bucket that cannot take a
request is a director-generated 503 that shadow delivery answers from the cache, and a
sticky session still gets its cookie on a response that went through the cache."""
from __future__ import annotations

import threading

import pytest

from tests.support.cache_backend import cache_backend
from tests.support.director import Director
from tests.support.waiting import wait_for

STALE_AT_ONCE = "cc=max-age%3D0"


@pytest.fixture(scope="module")
def backend():
    with cache_backend("b") as b:
        yield b


@pytest.fixture(scope="module")
def director(backend, tmp_path_factory):
    config = f"""
        [directors.shaped]
        cache_enabled = true
        queue_limit = 0
        health_check_success_threshold = 1
        health_check_request_path = "/health"
        backends = {{ b = {{ url = "{backend.url}", capacity = 1, health_check_interval = 0.5 }} }}

        [directors.shaped.buckets]
        gold = {{ rate = 1.0, ceil = 1.0 }}

        [directors.sticky]
        cache_enabled = true
        sticky_cookie = "srv"
        health_check_success_threshold = 1
        health_check_request_path = "/health"
        backends = {{ b = {{ url = "{backend.url}", health_check_interval = 0.5 }} }}

        [[routes]]
        host = "sticky"
        pass = "sticky"
        [[routes]]
        path = "/"
        pass = "shaped"
        bucket = "gold"
    """
    d = Director(tmp_path_factory.mktemp("later-features"), config).start()
    try:
        for host in ("shaped", "sticky"):
            wait_for(lambda: d.get("/ready", headers={"Host": host})[0] == 200, 15, what=f"director {host} online")
        yield d
    finally:
        d.stop()


def test_a_full_bucket_is_answered_from_the_cache(director, backend):
    status, headers, stored = director.get(f"/page?{STALE_AT_ONCE}", headers={"Host": "shaped"})
    assert status == 200 and headers["x-director-bucket"] == "gold"
    holder = threading.Thread(target=director.get, args=("/slow?delay=3",), kwargs={"headers": {"Host": "shaped"}})
    holder.start()
    try:
        wait_for(lambda: backend.count("/slow") == 1, 10, what="the bucket's only token taken")
        status, headers, body = director.get(f"/page?{STALE_AT_ONCE}", headers={"Host": "shaped"})
        assert (status, body) == (200, stored)
        assert headers["x-director-cache"] == "shadow"
        status, headers, _ = director.get("/never-stored", headers={"Host": "shaped"})
        assert status == 503 and "x-director-cache" not in headers
    finally:
        holder.join(10)
    assert backend.count("/page") == 1


def test_a_sticky_session_gets_its_cookie_on_a_cached_director(director, backend):
    status, headers, _ = director.get("/sticky-page", headers={"Host": "sticky"})
    assert status == 200
    assert headers["set-cookie"] == "srv=b; Path=/; HttpOnly"
    assert headers["x-cache-lookup"] == "miss"
    status, headers, _ = director.get("/sticky-page", headers={"Host": "sticky", "Cookie": "srv=b"})
    assert (status, headers["x-cache-lookup"]) == (200, "hit")
    assert "set-cookie" not in headers
