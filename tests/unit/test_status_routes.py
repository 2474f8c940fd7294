"""Which directors no route reaches (balancer.status_routes), and the overview's choice of the
newer last check (monitor or stored)."""
from datetime import datetime, timezone

from balancer import overview, status_routes


def route(route_id, director="", path="/", host=""):
    return {"id": route_id, "director": director, "path": path, "host": host}


def test_director_without_a_route_is_unreached():
    routes = [route(1, "app", "/app/"), route(2, "", "/legacy/")]
    assert status_routes.unreached(routes, ["app", "spare"]) == {"spare": status_routes.NO_ROUTE}


def test_director_behind_a_catch_all_route_is_unreached():
    routes = [route(1, "app", "/"), route(2, "late", "/late/"), route(3, "other", "/x", host="Shop")]
    reasons = status_routes.unreached(routes, ["app", "late", "other"])
    assert set(reasons) == {"late", "other"}
    assert "after route 1 (*/)" in reasons["late"]


def test_a_narrower_earlier_route_does_not_shadow():
    routes = [route(1, "app", "/app/"), route(2, "web", "/", host="shop"), route(3, "rest", "/"),
              route(4, "rest2", "/api/", host="api")]
    assert set(status_routes.unreached(routes, ["app", "web", "rest", "rest2"])) == {"rest2"}
    assert status_routes.unreached(routes[:3], ["web", "rest"]) == {}


def test_one_reachable_route_is_enough():
    routes = [route(1, "app", "/"), route(2, "web", "/w/"), route(3, "web", "/", host="web")]
    assert set(status_routes.unreached(routes, ["web"])) == {"web"}  # both of its routes come after route 1
    assert status_routes.unreached([route(1, "web", "/w/"), route(2, "app", "/")], ["web"]) == {}


def live_backend():
    counter = {"current": 0, "max": 0, "total": 0}
    return {"id": 1, "name": "b1", "role": "active", "enabled": True, "health": "online", "terminating": False,
            "capacity": 0, "load": counter, "failures": 0, "responses": {}}


def merged_check(stored_at: float, monitor_at: float | None) -> dict:
    counter = {"current": 0, "max": 0, "total": 0}
    snapshot = {"directors": [{"id": 7, "name": "app", "enabled": True, "load": counter, "queued": counter,
                               "dropped": 0, "responses": {}, "backends": [live_backend()]}]}
    row = {"id": 1, "last_checked": datetime.fromtimestamp(stored_at, timezone.utc), "last_check_ok": False,
           "last_check_status": 503, "last_check_duration": 0.5, "last_error": "unexpected status 503"}
    checks = {1: {"last_checked": monitor_at, "last_ok": True, "last_status": 200, "last_duration": 0.002,
                  "last_error": ""}} if monitor_at else None
    view = overview.merge(snapshot, overview.Facts(({"id": 7, "name": "app", "enabled": True, "dynamic": True},),
                                                   (row,), 0.0), checks)
    return view["directors"][0]["backends"][0]


def test_the_monitors_newer_check_wins_over_the_batched_stored_one():
    backend = merged_check(100.0, 104.0)
    assert backend["last_check"] == {"at": 104.0, "ok": True, "status": 200, "duration": 0.002}
    assert backend["last_error"] == ""
    older = merged_check(100.0, 90.0)  # a monitor that no longer holds the backend
    assert older["last_check"]["status"] == 503 and older["last_error"] == "unexpected status 503"
    assert merged_check(100.0, None)["last_check"]["at"] == 100.0
