"""The response cache through a real runproxy (SPEC §15): hits and misses, coalescing, what is
never stored, Vary, 304s, Age, PURGE, HEAD, LRU eviction, deliver_active off, statistics.
Shadow delivery, which stops backends, is in test_cache_shadow.py.

Every backend counts the requests it gets (tests.support.cache_backend), so each test sees
whether the cache or a backend answered. One runproxy serves several directors, each
reached through its own Host.
"""
from __future__ import annotations

import concurrent.futures
import http.client
import json
from urllib.parse import urlencode

import pytest

from tests.support.cache_backend import LAST_MODIFIED, cache_backend
from tests.support.director import Director
from tests.support.waiting import wait_for

HEALTH = "health_check_interval = 0.2"


@pytest.fixture(scope="module")
def backend():
    with cache_backend("c1") as c1:
        yield c1


@pytest.fixture(scope="module")
def director(backend, tmp_path_factory):
    config = f"""
        [directors.cache]
        cache_enabled = true
        cache_default_ttl = 60
        health_check_success_threshold = 1
        health_check_request_path = "/health"
        backends = {{ c1 = {{ url = "{backend.url}", {HEALTH} }} }}

        [directors.small]
        cache_enabled = true
        cache_default_ttl = 60
        cache_max_size = "64KiB"
        health_check_success_threshold = 1
        health_check_request_path = "/health"
        backends = {{ c1 = {{ url = "{backend.url}", {HEALTH} }} }}

        [directors.passive]
        cache_enabled = true
        cache_deliver_active = false
        health_check_success_threshold = 1
        health_check_request_path = "/health"
        backends = {{ c1 = {{ url = "{backend.url}", {HEALTH} }} }}

        [directors.plain]
        health_check_success_threshold = 1
        health_check_request_path = "/health"
        backends = {{ c1 = {{ url = "{backend.url}", {HEALTH} }} }}

        [[routes]]
        host = "small"
        pass = "small"
        [[routes]]
        host = "passive"
        pass = "passive"
        [[routes]]
        host = "plain"
        pass = "plain"
        [[routes]]
        path = "/"
        pass = "cache"
    """
    d = Director(tmp_path_factory.mktemp("cache"), config).start()
    try:
        for host in ("cache", "small", "passive", "plain"):
            wait_for(lambda: d.get("/ready", headers={"Host": host})[0] == 200, 15, what=f"director {host} online")
        yield d
    finally:
        d.stop()


def get(director, path, host="cache", method="GET", **headers):
    return director.request(method, path, headers={"Host": host, **headers})


def test_a_miss_is_stored_and_the_next_request_is_a_hit_with_its_age(director, backend):
    status, headers, body = get(director, "/hit")
    assert (status, headers["x-cache-lookup"], body) == (200, "miss", b"c1 /hit #1")
    status, headers, again = get(director, "/hit")
    assert (status, headers["x-cache-lookup"], again) == (200, "hit", body)
    assert headers["age"].isdigit() and int(headers["age"]) < 30
    assert headers["content-length"] == str(len(body)) and headers["x-backend"] == "c1"
    assert backend.count("/hit") == 1


def test_the_key_has_the_query(director, backend):
    assert get(director, "/q?a=1")[2] == b"c1 /q #1"
    assert get(director, "/q?a=2")[2] == b"c1 /q #2"
    assert get(director, "/q?a=1")[2] == b"c1 /q #1"
    assert backend.count("/q") == 2


def test_a_hundred_concurrent_requests_for_a_cold_key_reach_the_backend_once(director, backend):
    def fetch(_):
        return get(director, "/cold?delay=1")

    with concurrent.futures.ThreadPoolExecutor(100) as pool:
        answers = list(pool.map(fetch, range(100)))
    assert {(status, body) for status, _, body in answers} == {(200, b"c1 /cold #1")}
    assert backend.count("/cold") == 1
    labels = [headers["x-cache-lookup"] for _, headers, _ in answers]
    assert labels.count("miss") == 1 and labels.count("hit") == 99


def test_waiters_get_the_stored_copy_even_when_it_is_stale_at_once(director, backend):
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: get(director, "/cold0?delay=1&cc=max-age%3D0"), range(20)))
    assert {(status, body) for status, _, body in answers} == {(200, b"c1 /cold0 #1")}
    assert backend.count("/cold0") == 1


def test_waiters_go_to_the_backend_themselves_when_the_response_cannot_be_stored(director, backend):
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: get(director, "/private?delay=0.5&cc=private"), range(10)))
    assert {status for status, _, _ in answers} == {200}
    bodies = {body for _, _, body in answers}
    assert len(bodies) == 10  # each its own backend answer, none answered twice
    assert backend.count("/private") == 10


def test_an_update_that_breaks_mid_body_sends_each_waiter_upstream_once(director, backend):
    def fetch(_):
        try:
            return get(director, "/dies?delay=0.5&die=1")[0]
        except (http.client.HTTPException, OSError):
            return "cut"  # the response was cut short: the connection closed mid-body

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(fetch, range(10)))
    # Each was answered (none left waiting): cut short by the backend, or 503 once the failure
    # had marked it offline. Each cut one reached the backend once; nothing was stored.
    assert set(answers) <= {"cut", 503} and "cut" in answers
    assert backend.count("/dies") == answers.count("cut")
    assert get(director, "/dies?delay=0.5&die=1", method="PURGE")[0] == 404
    wait_for(lambda: get(director, "/probe?cc=no-store")[0] == 200, 15, what="the backend online again")


@pytest.mark.parametrize("name,value", [("cookie", "1"), ("cc", "no-store"), ("cc", "no-cache"),
                                        ("cc", "private, max-age=60"), ("pragma", "no-cache"), ("status", "500"),
                                        ("status", "302"), ("vary", "*")])
def test_responses_that_are_never_stored(director, backend, name, value):
    path = "/never-" + urlencode({name: value}).replace("%", "")
    target = f"{path}?{urlencode({name: value})}"
    first, second = get(director, target), get(director, target)
    assert (first[1]["x-cache-lookup"], second[1]["x-cache-lookup"]) == ("miss", "miss")
    assert backend.count(path) == 2


@pytest.mark.parametrize("status", [203, 204, 301, 404])
def test_other_storable_statuses(director, backend, status):
    path = f"/stored-{status}"
    first = get(director, f"{path}?status={status}")
    second = get(director, f"{path}?status={status}")
    assert (first[0], second[0]) == (status, status)
    assert second[1]["x-cache-lookup"] == "hit" and second[2] == first[2]
    assert backend.count(path) == 1


def test_max_age_zero_is_stale_at_once(director, backend):
    get(director, "/zero?cc=max-age%3D0")
    status, headers, body = get(director, "/zero?cc=max-age%3D0")
    assert (status, headers["x-cache-lookup"], body) == (200, "stale", b"c1 /zero #2")


def test_s_maxage_wins_over_max_age(director, backend):
    get(director, "/smax?cc=max-age%3D0%2C%20s-maxage%3D60")
    assert get(director, "/smax?cc=max-age%3D0%2C%20s-maxage%3D60")[1]["x-cache-lookup"] == "hit"
    assert backend.count("/smax") == 1


def test_one_object_per_vary_combination(director, backend):
    target = "/vary?vary=Accept-Language&echo=Accept-Language"
    assert get(director, target, **{"Accept-Language": "en"})[2] == b"en"
    assert get(director, target, **{"Accept-Language": "de"})[2] == b"de"
    en = get(director, target, **{"Accept-Language": "en"})
    de = get(director, target, **{"Accept-Language": "de"})
    assert (en[1]["x-cache-lookup"], en[2], de[1]["x-cache-lookup"], de[2]) == ("hit", b"en", "hit", b"de")
    assert backend.count("/vary") == 2


def test_hits_answer_conditional_requests_with_304(director, backend):
    target = "/cond?etag=v1&lm=1"
    # The updater's own validators are not sent up: its response must be storable.
    status, headers, body = get(director, target, **{"If-None-Match": '"v1"'})
    assert (status, headers["x-cache-lookup"], body) == (200, "miss", b"c1 /cond #1")
    assert "if-none-match" not in backend.requests("/cond")[0][2]
    status, headers, body = get(director, target, **{"If-None-Match": '"v1"'})
    assert (status, headers["x-cache-lookup"], body) == (304, "hit", b"")
    assert headers["etag"] == '"v1"' and headers["last-modified"] == LAST_MODIFIED and "age" in headers
    assert get(director, target, **{"If-Modified-Since": LAST_MODIFIED})[0] == 304
    assert get(director, target, **{"If-Modified-Since": "Sat, 05 Nov 1994 08:49:37 GMT"})[0] == 200
    assert get(director, target, **{"If-None-Match": '"v2"', "If-Modified-Since": LAST_MODIFIED})[0] == 200
    assert backend.count("/cond") == 1


def test_the_updater_asks_for_the_whole_object_and_later_ranges_get_it_whole(director, backend):
    status, _, body = get(director, "/ranged", Range="bytes=0-1", **{"If-Range": '"old"'})
    assert (status, body) == (200, b"c1 /ranged #1")
    assert "range" not in backend.requests("/ranged")[0][2] and "if-range" not in backend.requests("/ranged")[0][2]
    status, headers, body = get(director, "/ranged", Range="bytes=0-1")
    assert (status, headers["x-cache-lookup"], body) == (200, "hit", b"c1 /ranged #1")


def test_purge_from_loopback_makes_the_next_request_the_updater(director, backend):
    assert get(director, "/purged")[2] == b"c1 /purged #1"
    assert get(director, "/purged")[1]["x-cache-lookup"] == "hit"
    assert get(director, "/purged", method="PURGE")[0] == 200
    status, headers, body = get(director, "/purged")
    assert (status, headers["x-cache-lookup"], body) == (200, "stale", b"c1 /purged #2")
    assert get(director, "/purged")[1]["x-cache-lookup"] == "hit"
    assert get(director, "/never-stored-here", method="PURGE")[0] == 404
    assert backend.count("/purged") == 2 and backend.count("/never-stored-here") == 0


def test_head_is_answered_from_a_stored_object_without_a_body(director, backend):
    get(director, "/head")
    conn = http.client.HTTPConnection("127.0.0.1", director.port, timeout=10)
    try:
        conn.request("HEAD", "/head", headers={"Host": "cache"})
        response = conn.getresponse()
        assert response.read() == b""
        assert (response.status, response.getheader("x-cache-lookup")) == (200, "hit")
        assert response.getheader("content-length") == str(len(b"c1 /head #1"))
        # the connection stays usable: no body bytes were left behind
        conn.request("GET", "/head", headers={"Host": "cache"})
        assert conn.getresponse().read() == b"c1 /head #1"
    finally:
        conn.close()
    assert backend.count("/head") == 1


def test_head_of_a_cold_key_goes_to_the_backend_and_stores_nothing(director, backend):
    status, headers, body = get(director, "/cold-head", method="HEAD")
    assert (status, headers["x-cache-lookup"], body) == (200, "miss", b"")
    assert get(director, "/cold-head")[1]["x-cache-lookup"] == "miss"
    assert [method for method, _, _ in backend.requests("/cold-head")] == ["HEAD", "GET"]


def test_other_methods_and_authorized_requests_bypass_the_cache(director, backend):
    get(director, "/bypass")
    status, headers, _ = director.request("POST", "/bypass", body=b"x", headers={"Host": "cache"})
    assert status == 200 and "x-cache-lookup" not in headers
    status, headers, body = get(director, "/bypass", Authorization="Basic dTpw")
    assert body == b"c1 /bypass #3" and "x-cache-lookup" not in headers
    assert backend.count("/bypass") == 3


def test_lru_eviction_keeps_the_cache_within_its_size(director, backend):
    # cache_max_size 64 KiB: bodies up to 8 KiB are stored, and about nine 6 KB objects fit.
    for n in range(12):
        assert get(director, f"/lru{n}?size=6000", host="small")[1]["x-cache-lookup"] == "miss"
    assert get(director, "/lru11?size=6000", host="small")[1]["x-cache-lookup"] == "hit"
    assert get(director, "/lru0?size=6000", host="small")[1]["x-cache-lookup"] == "miss"  # evicted first
    assert backend.count("/lru0") == 2 and backend.count("/lru11") == 1
    cache = director_cache(director, "small")
    assert 0 < cache["bytes"] <= 64 * 1024 and 8 <= cache["objects"] <= 10


@pytest.mark.parametrize("query", ["size=9000", "size=20000&chunked=1"])
def test_bodies_over_an_eighth_of_the_size_are_relayed_whole_and_not_stored(director, backend, query):
    path = "/big-chunked" if "chunked" in query else "/big"
    for _ in range(2):
        status, headers, body = get(director, f"{path}?{query}", host="small")
        assert (status, headers["x-cache-lookup"], len(body)) == (200, "miss", int(query.split("&")[0][5:]))
    assert backend.count(path) == 2


def test_deliver_active_off_always_asks_the_backend(director, backend):
    objects = director_cache(director, "passive")["objects"]
    first = get(director, "/passive", host="passive")
    second = get(director, "/passive", host="passive")
    assert (first[2], second[2]) == (b"c1 /passive #1", b"c1 /passive #2")
    assert second[1]["x-cache-lookup"] == "miss"
    assert director_cache(director, "passive")["objects"] == objects + 1  # stored all the same, for shadow delivery


def test_a_director_without_cache_adds_nothing(director, backend):
    get(director, "/plain", host="plain")
    status, headers, body = get(director, "/plain", host="plain")
    assert body == b"c1 /plain #2" and "x-cache-lookup" not in headers and "age" not in headers


def test_statistics_reach_the_api_and_metrics(director, backend):
    get(director, "/stats")
    get(director, "/stats")
    key = viewer_key(director)
    cache = wait_for(lambda: _hit_stats(director, key), 10, what="cache figures in the API")
    assert cache["objects"] >= 1 and cache["bytes"] > 0 and cache["misses"] >= 1
    status, _, text = director.get("/metrics", port=director.admin_port)
    lines = text.decode().splitlines()
    assert status == 200
    assert any(line.startswith('director_cache_hits_total{director="cache"}') for line in lines)
    assert any(line.startswith('director_cache_objects{director="cache"}') for line in lines)
    assert 'director_cache_shadow_total{director="plain"} 0.0' in lines


def _hit_stats(director, key):
    status, _, body = director.request("GET", "/api/v1/directors/cache/", headers={"Authorization": f"Token {key}"},
                                       port=director.admin_port)
    cache = json.loads(body)["cache"] if status == 200 else None
    return cache if cache and cache["hits"] >= 1 else None


def viewer_key(director) -> str:
    if not hasattr(director, "viewer_key"):
        director.viewer_key = director.manage("createapitoken", "cache-viewer", "--viewer").stdout.strip()
    return director.viewer_key


def director_cache(director, name):
    key = viewer_key(director)
    status, _, body = director.request("GET", f"/api/v1/directors/{name}/", headers={"Authorization": f"Token {key}"},
                                       port=director.admin_port)
    assert status == 200
    return json.loads(body)["cache"]
