"""Shadow delivery through a real runproxy (SPEC §15): where a director would answer 502/503/504
itself, a stored object for the key (fresh or stale) answers instead, marked
`X-Cache-Lookup: shadow` and `X-Director-Cache: shadow`; keys with nothing stored still get
the error. A disabled director gets no shadow answers. Each test stops its own backend.
"""
from __future__ import annotations

import json

import pytest

from tests.support.cache_backend import cache_backend
from tests.support.director import Director
from tests.support.waiting import wait_for

STALE_AT_ONCE = "cc=max-age%3D0"  # stored, but every request goes to a backend


@pytest.fixture(scope="module")
def backends():
    with cache_backend("down") as down, cache_backend("gone") as gone, cache_backend("passive") as passive, \
            cache_backend("dyn") as dyn:
        yield {"down": down, "gone": gone, "passive": passive, "dyn": dyn}


@pytest.fixture(scope="module")
def director(backends, tmp_path_factory):
    k = backends
    config = f"""
        [directors.down]
        cache_enabled = true
        retry_after = 3
        health_check_success_threshold = 1
        health_check_request_path = "/health"
        backends = {{ down = {{ url = "{k['down'].url}", health_check_interval = 0.2 }} }}

        [directors.gone]
        cache_enabled = true
        health_check_success_threshold = 1
        health_check_request_path = "/health"
        backends = {{ gone = {{ url = "{k['gone'].url}", health_check_interval = 60 }} }}

        [directors.passive]
        cache_enabled = true
        cache_deliver_active = false
        health_check_success_threshold = 1
        health_check_request_path = "/health"
        backends = {{ passive = {{ url = "{k['passive'].url}", health_check_interval = 0.2 }} }}

        [directors.noshadow]
        cache_enabled = true
        cache_deliver_shadow = false
        health_check_success_threshold = 1
        health_check_request_path = "/health"
        backends = {{ passive = {{ url = "{k['passive'].url}", health_check_interval = 0.2 }} }}

        [directors.dyn]
        dynamic = true
        cache_enabled = true
        health_check_success_threshold = 1
        health_check_request_path = "/health"

        [[routes]]
        host = "gone"
        pass = "gone"
        [[routes]]
        host = "passive"
        pass = "passive"
        [[routes]]
        host = "noshadow"
        pass = "noshadow"
        [[routes]]
        host = "dyn"
        pass = "dyn"
        [[routes]]
        path = "/"
        pass = "down"
    """
    d = Director(tmp_path_factory.mktemp("cache-shadow"), config).start()
    try:
        for host in ("down", "gone", "passive", "noshadow"):
            wait_for(lambda: get(d, "/ready", host)[0] == 200, 15, what=f"director {host} online")
        yield d
    finally:
        d.stop()


def get(director, path, host="down", method="GET", **headers):
    return director.request(method, path, headers={"Host": host, **headers})


def assert_shadow(answer, body: bytes, status: int = 200):
    got_status, headers, got_body = answer
    assert (got_status, got_body) == (status, body)
    assert headers["x-cache-lookup"] == "shadow" and headers["x-director-cache"] == "shadow"
    assert headers["age"].isdigit()


def test_nothing_online_answers_stored_objects_and_503_for_the_rest(director, backends):
    stale = get(director, f"/stale?{STALE_AT_ONCE}")[2]
    fresh = get(director, "/fresh")[2]
    purged = get(director, "/purged")[2]
    missing = get(director, f"/missing?status=404&{STALE_AT_ONCE}")
    assert get(director, "/purged", method="PURGE")[0] == 200
    backends["down"].stop()
    wait_for(lambda: get(director, "/never-stored")[0] == 503, 15, what="the backend to be offline")

    assert_shadow(get(director, f"/stale?{STALE_AT_ONCE}"), stale)
    assert_shadow(get(director, "/purged"), purged)
    assert_shadow(get(director, f"/missing?status=404&{STALE_AT_ONCE}"), missing[2], 404)
    status, headers, body = get(director, "/fresh")  # fresh objects are plain hits
    assert (status, headers["x-cache-lookup"], body) == (200, "hit", fresh)
    status, headers, _ = get(director, "/never-stored")
    assert status == 503 and headers["retry-after"] == "3" and "x-director-cache" not in headers
    status, headers, _ = get(director, "/stale?other-query")
    assert status == 503 and "x-director-cache" not in headers


def test_out_of_retries_answers_stored_objects_instead_of_502(director, backends):
    stored = get(director, f"/kept?{STALE_AT_ONCE}", "gone")[2]
    backends["gone"].stop()  # health checks every 60 s: the request itself finds it gone
    assert_shadow(get(director, f"/kept?{STALE_AT_ONCE}", "gone"), stored)
    assert get(director, "/not-kept", "gone")[0] in (502, 503)


def test_shadow_delivery_with_deliver_active_off(director, backends):
    first = get(director, "/p", "passive")
    assert get(director, "/p", "passive")[2] != first[2]  # never answered from the cache while a backend can
    assert get(director, f"/q?{STALE_AT_ONCE}", "noshadow")[0] == 200
    backends["passive"].stop()
    wait_for(lambda: get(director, "/never-stored", "passive")[0] == 503, 15, what="the backend to be offline")
    wait_for(lambda: get(director, "/never-stored", "noshadow")[0] == 503, 15, what="the backend to be offline")
    assert_shadow(get(director, "/p", "passive"), b"passive /p #2")  # the last response stored
    status, headers, _ = get(director, f"/q?{STALE_AT_ONCE}", "noshadow")  # cache_deliver_shadow = false
    assert status == 503 and "x-director-cache" not in headers


def test_a_disabled_director_answers_503_not_from_the_cache(director, backends):
    key = director.manage("createapitoken", "shadow-operator").stdout.strip()

    def api(method, path, data):
        return director.request(method, path, body=json.dumps(data).encode(), port=director.admin_port,
                                headers={"Authorization": f"Token {key}", "Content-Type": "application/json"})[0]

    backend = {"name": "dyn", "url": backends["dyn"].url, "health_check_interval": 0.2}
    assert api("POST", "/api/v1/directors/dyn/backends/", backend) == 201
    wait_for(lambda: get(director, "/ready", "dyn")[0] == 200, 15, what="the new backend online")
    assert get(director, f"/dyn?{STALE_AT_ONCE}", "dyn")[0] == 200
    assert get(director, "/fresh", "dyn")[0] == 200
    assert get(director, "/fresh", "dyn")[1]["x-cache-lookup"] == "hit"
    assert api("PATCH", "/api/v1/directors/dyn/", {"enabled": False}) == 200
    wait_for(lambda: get(director, "/other", "dyn")[0] == 503, 10, what="the director to be disabled")
    for path in (f"/dyn?{STALE_AT_ONCE}", "/fresh"):  # neither shadow nor hits: disabled means 503
        status, headers, _ = get(director, path, "dyn")
        assert status == 503 and "x-director-cache" not in headers and "x-cache-lookup" not in headers
