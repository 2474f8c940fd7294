"""Routes at runtime on a real runproxy over real sockets (SPEC §11): a route created through
the API answers within the SPEC's second (2 s allowed here), a deleted one stops answering, a
route to a director that goes away answers 503, and the file's routes are stored as
read-only routes that come first."""
from __future__ import annotations

import time

import pytest

from tests.support.backends import http_backend
from tests.support.live_api import LiveApi, live_api
from tests.support.waiting import wait_for

CONFIG = """
    [directors.pool]
    dynamic = true
    health_check_success_threshold = 1

    [[routes]]
    host = "file.example"
    pass = "pool"
"""
ROUTES = "/api/v1/routes/"
LIVE_WITHIN_S = 2.0


@pytest.fixture
def live(tmp_path):
    with live_api(tmp_path, CONFIG) as api:
        yield api


def answered_by(live: LiveApi, path: str, name: str) -> bool:
    status, headers, _ = live.director.get(path)
    return status == 200 and headers.get("x-backend") == name


def test_file_routes_are_stored_and_read_only(live):
    status, routes = live.call("GET", ROUTES, expect=200)
    assert [(r["host"], r["path"], r["pass"], r["mutable"]) for r in routes] == [("file.example", "/", "pool", False)]
    live.call("DELETE", f"{ROUTES}{routes[0]['id']}/", expect=403)


def test_a_route_made_through_the_api_answers_within_two_seconds_and_stops_after_delete(live):
    with http_backend("warrior") as backend:
        assert live.director.get("/rw/x")[0] == 404  # no route yet
        _, created = live.call("POST", ROUTES, {"path": "/rw/", "http": f"127.0.0.1:{backend.port}"}, expect=201)
        made = time.monotonic()
        wait_for(lambda: answered_by(live, "/rw/x", "warrior"), LIVE_WITHIN_S, interval=0.02,
                 what="the new route to answer")
        assert time.monotonic() - made <= LIVE_WITHIN_S
        assert live.director.get("/other")[0] == 404  # only its prefix

        live.call("DELETE", f"{ROUTES}{created['id']}/", expect=204)
        wait_for(lambda: live.director.get("/rw/x")[0] == 404, LIVE_WITHIN_S, interval=0.02,
                 what="the deleted route to stop answering")


def test_a_pass_route_follows_its_director_and_a_missing_director_is_503(live):
    with http_backend("p1") as one, http_backend("p2") as two:
        live.call("POST", "/api/v1/directors/pool/backends/", [
            {"name": "p1", "url": one.url, "health_check_interval": 0.2},
            {"name": "p2", "url": two.url, "health_check_interval": 0.2}], expect=201)
        live.wait_online("p1")
        live.wait_online("p2")
        _, created = live.call("POST", ROUTES, {"path": "/app/", "pass": "pool", "backend_from": "header:X-Pick"},
                               expect=201)
        wait_for(lambda: live.director.get("/app/", headers={"X-Pick": "p2"})[1].get("x-backend") == "p2",
                 LIVE_WITHIN_S, interval=0.02, what="the pass route to answer")
        assert live.director.get("/app/", headers={"X-Pick": "p1"})[1].get("x-backend") == "p1"

        live.call("PATCH", f"{ROUTES}{created['id']}/", {"path": "/moved/"}, expect=200)
        wait_for(lambda: live.director.get("/app/")[0] == 404, LIVE_WITHIN_S, interval=0.02,
                 what="the changed route to leave its old prefix")
        assert live.director.get("/moved/")[0] == 200

        live.call("DELETE", "/api/v1/directors/pool/", expect=204)
        wait_for(lambda: live.director.get("/moved/")[0] == 503, LIVE_WITHIN_S, interval=0.02,
                 what="a route to a deleted director to answer 503")
        assert live.call("GET", f"{ROUTES}{created['id']}/", expect=200)[1]["pass"] == "pool"
