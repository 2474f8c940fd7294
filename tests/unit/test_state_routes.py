"""proxy.state: Routes from route rows, and DataPlane.apply_rows rebuilding routes and the
road-warrior upstreams on every version (pure: no sockets are opened)."""
from __future__ import annotations

from proxy.addresses import BackendAddress
from proxy.routes import find_route
from proxy.state import DataPlane, route_from_row, routes_from_rows
from tests.support.rows import route_row as row


def test_route_from_row_converts_every_field():
    route = route_from_row(row(1, host="Shop.Example.com", path="/shop/", director="app",
                               backend_from="cookie:X-Backend"), 0)
    assert (route.host, route.path, route.director, route.backend_from, route.target) == (
        b"shop.example.com", b"/shop/", "app", ("cookie", b"x-backend"), None)
    php = route_from_row(row(2, fcgi="unix:/run/php.sock", script_filename="/srv/index.php"), 1)
    assert php.host is None and php.target == BackendAddress("fastcgi", path="/run/php.sock")
    assert (php.director, php.document_root, php.script_filename, php.index) == (None, None, "/srv/index.php", 1)


def test_a_row_that_cannot_be_used_is_left_out():
    routes = routes_from_rows([row(1, http="127.0.0.1:99999"), row(2), row(3, director="app")])
    assert [r.director for r in routes] == ["app"] and routes[0].index == 0


def test_apply_rows_swaps_routes_and_road_warriors_with_each_version():
    plane = DataPlane()
    legacy = row(1, path="/legacy/", http="127.0.0.1:3000")
    plane.apply_rows(1, [], [], [legacy, row(2, director="gone")])
    target = BackendAddress("http", host="127.0.0.1", port=3000)
    assert find_route(plane.routes, b"x", b"/legacy/a").target == target
    assert set(plane.road_warriors) == {target} and plane.upstream_for(target) is plane.road_warriors[target]
    assert find_route(plane.routes, b"x", b"/other").director == "gone"  # unknown director: the app answers 503

    plane.apply_rows(2, [], [], [row(3, path="/new/", http="127.0.0.1:3001")])
    assert find_route(plane.routes, b"x", b"/legacy/a") is None
    assert set(plane.road_warriors) == {BackendAddress("http", host="127.0.0.1", port=3001)}
    assert plane.version == 2
