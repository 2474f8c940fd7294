"""`/api/v1/routes/` (SPEC §11 "Routes at runtime"): CRUD, match order, the route rules,
config-file routes refusing writes, roles and the audit log."""
from __future__ import annotations

import pytest

from balancer import route_services, services
from balancer.config import parse_config
from balancer.models import AuditRecord, Route
from balancer.sync import sync_config
from tests.support.api import ApiTestBase, make_director
from tests.support.config_files import with_routes

ROUTES = "/api/v1/routes/"
OBJECT_FIELDS = {"id", "priority", "host", "path", "pass", "backend_from", "http", "fcgi", "document_root",
                 "script_filename", "bucket", "bucket_from", "mutable"}
FILE = with_routes({"host": "files.example.com", "path": "/static/", "http": "127.0.0.1:3009"},
                   {"path": "/", "pass": "app"})


@pytest.fixture
def file_routes(db):
    """The FILE config synced: director app and two routes with mutable false."""
    sync_config(parse_config(FILE))
    return list(Route.objects.filter(mutable=False).order_by("file_index"))


@pytest.fixture
def pool(db):
    return make_director("pool")


def route(pk) -> str:
    return f"{ROUTES}{pk}/"


def api_route(data: dict) -> Route:
    return route_services.create_route(data, actor="test")


class TestRouteObjects(ApiTestBase):
    def test_create_answers_the_route_object_and_audits(self, pool):
        data = {"host": "Shop.Example.com", "path": "/shop/", "pass": "pool", "backend_from": "cookie:X-Backend"}
        response, record = self.write("POST", ROUTES, data, expect=201, action="route.create", director="pool")
        body = response.json()
        assert set(body) == OBJECT_FIELDS
        assert body == {"id": body["id"], "priority": 0, "host": "shop.example.com", "path": "/shop/",
                        "pass": "pool", "backend_from": "cookie:X-Backend", "http": None, "fcgi": None,
                        "document_root": None, "script_filename": None, "bucket": None, "bucket_from": None,
                        "mutable": True}
        assert record.before is None and record.after == body
        assert self.call("GET", route(body["id"]), expect=200, client=self.viewer).json() == body

    @pytest.mark.parametrize("data, stored", [
        ({"path": "/legacy/", "http": "127.0.0.1:3000"}, ("http", "127.0.0.1:3000")),
        ({"fcgi": "unix:/run/php.sock", "document_root": "/srv/www"}, ("fcgi", "unix:/run/php.sock")),
        ({"fcgi": "[::1]:9000", "script_filename": "/srv/www/index.php", "host": "*"}, ("fcgi", "[::1]:9000")),
    ])
    def test_road_warrior_routes(self, db, data, stored):
        response, record = self.write("POST", ROUTES, data, expect=201, action="route.create", director="")
        body = response.json()
        assert body[stored[0]] == stored[1] and body["pass"] is None and body["host"] is None
        assert body["path"] == data.get("path", "/")

    def test_list_is_in_match_order(self, file_routes, pool):
        late = api_route({"path": "/b/", "pass": "pool", "priority": 5})
        early = api_route({"path": "/a/", "pass": "pool", "priority": -5})
        default = api_route({"path": "/c/", "pass": "pool"})
        tie = api_route({"path": "/d/", "pass": "pool", "priority": 0})
        listed = self.call("GET", ROUTES, expect=200, client=self.viewer).json()
        # file routes without a priority first (file order), then by priority, then oldest first
        assert [r["id"] for r in listed] == [file_routes[0].pk, file_routes[1].pk, early.pk, default.pk, tie.pk, late.pk]
        assert [r["mutable"] for r in listed] == [False, False, True, True, True, True]

    def test_a_file_route_with_a_priority_sorts_among_the_database_routes(self, pool):
        api_route({"path": "/api-first/", "pass": "pool", "priority": 1})
        sync_config(parse_config(with_routes({"path": "/file/", "pass": "app", "priority": 1},
                                             {"path": "/", "pass": "app"})))
        listed = self.call("GET", ROUTES, expect=200).json()
        assert [(r["path"], r["priority"]) for r in listed] == [("/", None), ("/file/", 1), ("/api-first/", 1)]

    def test_unknown_route_is_404(self, pool):
        for method in ("GET", "PATCH", "DELETE"):
            self.call(method, route(999), {} if method == "PATCH" else None, expect=404)
        assert self.call("GET", route(2**70), expect=404).json() == {"detail": f"route '{2**70}' not found"}
        self.call("GET", f"{ROUTES}%0A1/", expect=404)
        self.call("GET", f"{ROUTES}abc/", expect=404)


class TestRouteRules(ApiTestBase):
    def test_unknown_director_is_a_400_naming_pass(self, pool):
        body = self.rejected("POST", ROUTES, {"path": "/", "pass": "nowhere"}, fields={"pass"})
        assert "nowhere" in body["pass"][0]

    @pytest.mark.parametrize("data, fields", [
        ({"path": "/"}, {"non_field_errors"}),
        ({"pass": "pool", "http": "127.0.0.1:1"}, {"non_field_errors"}),
        ({"pass": "pool", "path": "relative"}, {"path"}),
        ({"pass": "pool", "path": "/a b"}, {"path"}),
        ({"pass": "pool", "host": "a b"}, {"host"}),
        ({"pass": "pool", "backend_from": "query:x"}, {"backend_from"}),
        ({"http": "127.0.0.1:1", "backend_from": "cookie:x"}, {"backend_from"}),
        ({"http": "127.0.0.1:99999"}, {"http"}),
        ({"fcgi": "http://127.0.0.1:1"}, {"fcgi"}),
        ({"fcgi": "127.0.0.1:9000", "document_root": "srv"}, {"document_root"}),
        ({"pass": "pool", "priority": "1"}, {"priority"}),
        ({"pass": "pool", "priority": 10**9}, {"priority"}),
        ({"pass": "pool", "priority": None}, {"priority"}),
        ({"pass": 1}, {"pass"}),
        ({"pass": "pool", "path": "/" + "x" * 2000}, {"path"}),
        ({"pass": "pool", "mutable": False, "id": 3}, {"mutable", "id"}),
    ])
    def test_bad_values_name_the_field(self, pool, data, fields):
        self.rejected("POST", ROUTES, data, fields=fields)

    def test_body_must_be_an_object(self, pool):
        self.call("POST", ROUTES, ["x"], expect=400)

    def test_patch_changes_fields_and_audits_before_and_after(self, pool):
        created = api_route({"path": "/x/", "pass": "pool"})
        response, record = self.write("PATCH", route(created.pk), {"path": "/y/", "priority": 3}, expect=200,
                                      action="route.update", director="pool")
        assert (response.json()["path"], response.json()["priority"]) == ("/y/", 3)
        assert (record.before["path"], record.after["path"]) == ("/x/", "/y/")

    def test_patch_to_another_action_drops_the_old_one_and_its_options(self, pool):
        created = api_route({"path": "/x/", "pass": "pool", "backend_from": "header:X-B"})
        response, _ = self.write("PATCH", route(created.pk), {"http": "127.0.0.1:3000"}, expect=200,
                                 action="route.update", director="pool")
        body = response.json()
        assert (body["pass"], body["backend_from"], body["http"]) == (None, None, "127.0.0.1:3000")
        self.write("PATCH", route(created.pk), {"host": "a.example"}, expect=200, action="route.update", director="")
        response, _ = self.write("PATCH", route(created.pk), {"host": None}, expect=200, action="route.update",
                                 director="")
        assert response.json()["host"] is None

    def test_patch_is_checked_as_a_whole(self, pool):
        created = api_route({"path": "/x/", "http": "127.0.0.1:3000"})
        self.rejected("PATCH", route(created.pk), {"backend_from": "cookie:b"}, fields={"backend_from"})
        self.rejected("PATCH", route(created.pk), {"pass": "nowhere"}, fields={"pass"})
        self.rejected("PATCH", route(created.pk), {"http": None}, fields={"non_field_errors"})

    def test_patch_without_a_change_is_not_audited(self, pool):
        created = api_route({"path": "/x/", "pass": "pool"})
        self.call("PATCH", route(created.pk), {"path": "/x/"}, expect=200)

    def test_delete_answers_204_and_audits(self, pool):
        created = api_route({"path": "/x/", "pass": "pool"})
        response, record = self.write("DELETE", route(created.pk), expect=204, action="route.delete", director="pool")
        assert not Route.objects.filter(pk=created.pk).exists()
        assert record.before["id"] == created.pk and record.after is None

    def test_every_write_bumps_the_config_version(self, pool):
        version = services.current_version()
        created = self.write("POST", ROUTES, {"pass": "pool"}, expect=201, action="route.create",
                             director="pool")[0].json()
        assert services.current_version() == version + 1
        self.write("DELETE", route(created["id"]), expect=204, action="route.delete", director="pool")
        assert services.current_version() == version + 2

    def test_a_route_survives_its_director(self, pool):
        created = api_route({"path": "/x/", "pass": "pool"})
        services.delete_director(pool, actor="test")
        assert self.call("GET", route(created.pk), expect=200).json()["pass"] == "pool"


class TestFileRoutesAndRoles(ApiTestBase):
    def test_file_routes_are_listed_but_refuse_writes(self, file_routes):
        listed = self.call("GET", ROUTES, expect=200).json()
        assert [(r["host"], r["path"], r["mutable"]) for r in listed] == [
            ("files.example.com", "/static/", False), (None, "/", False)]
        target = route(file_routes[1].pk)
        assert "config file" in self.call("PATCH", target, {"path": "/x/"}, expect=403).json()["detail"]
        self.call("PATCH", target, {"path": 3}, expect=403)  # refused before the values are looked at
        self.call("DELETE", target, expect=403)

    def test_viewer_reads_but_cannot_write(self, pool):
        created = api_route({"path": "/x/", "pass": "pool"})
        self.call("GET", ROUTES, expect=200, client=self.viewer)
        self.call("POST", ROUTES, {"pass": "pool"}, expect=403, client=self.viewer)
        self.call("PATCH", route(created.pk), {"path": "/y/"}, expect=403, client=self.viewer)
        self.call("DELETE", route(created.pk), expect=403, client=self.viewer)
        self.call("GET", ROUTES, expect=401, client=self.anonymous)

    def test_audit_log_lists_route_changes_by_director(self, pool):
        self.write("POST", ROUTES, {"pass": "pool"}, expect=201, action="route.create", director="pool")
        records = self.call("GET", "/api/v1/audit/?director=pool", expect=200).json()["results"]
        assert records[0]["action"] == "route.create" and records[0]["actor"] == "api:op"
        assert AuditRecord.objects.filter(action__startswith="route.").count() == 1
