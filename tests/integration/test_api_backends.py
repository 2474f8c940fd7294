"""`/api/v1/directors/{d}/backends/...` (SPEC §9 rows 6-11, §6 fields, static rules)."""
from __future__ import annotations

import pytest

from balancer import health_store, services, validation
from balancer.models import Backend
from tests.support.api import ApiTestBase, make_director

BACKEND_FIELDS = set(validation.BACKEND_FIELDS) - {"position"}
OBJECT_FIELDS = BACKEND_FIELDS | {"protocol", "host", "port", "path", "terminating", "health", "stats"}


def backends(director: str) -> str:
    return f"/api/v1/directors/{director}/backends/"


def backend(director: str, name: str) -> str:
    return f"{backends(director)}{name}/"


@pytest.fixture
def pool(db):
    return make_director("pool", backends={"b1": "http://127.0.0.1:3001"})


@pytest.fixture
def static(db):
    return make_director("app", dynamic=False, backends={"a1": "http://127.0.0.1:3001"})


class TestBackendObjects(ApiTestBase):
    @pytest.mark.parametrize("url, address", [
        ("http://127.0.0.1:3002", ("http", "127.0.0.1", 3002, None)),
        ("fastcgi://[::1]:9000", ("fastcgi", "::1", 9000, None)),
        ("http+unix:///run/app.sock", ("http", None, None, "/run/app.sock")),
        ("fastcgi+unix:///run/php/fpm.sock", ("fastcgi", None, None, "/run/php/fpm.sock")),
    ])
    def test_create_answers_the_full_backend_object(self, pool, url, address):
        data = {"name": "b2", "url": url, "capacity": 4, "role": "backup", "health_check_interval": 0.5}
        response, record = self.write("POST", backends("pool"), data, expect=201, action="backend.create",
                                      director="pool", backend="b2")
        body = response.json()
        assert set(body) == OBJECT_FIELDS
        assert (body["protocol"], body["host"], body["port"], body["path"]) == address
        assert {k: body[k] for k in data} == data
        assert (body["enabled"], body["terminating"], body["terminate_protection"]) == (True, False, False)
        assert body["health"] == {"state": "undefined", "mode": "paranoid", "interval": 0.5,
                                  "last_checked": None, "last_error": ""}
        assert body["stats"] == {"load": {"current": 0, "max": 0, "total": 0}, "failures": 0}
        assert record.after["url"] == url

    def test_health_reports_the_last_check(self, pool):
        health_store.record_health(pool.backends.get().pk, "offline", error="connection refused")
        health = self.call("GET", backend("pool", "b1"), expect=200, client=self.viewer).json()["health"]
        assert (health["state"], health["last_error"]) == ("offline", "connection refused")
        assert health["last_checked"].endswith("Z") or "+00:00" in health["last_checked"]

    def test_list_and_get(self, pool):
        listed = self.call("GET", backends("pool"), expect=200, client=self.viewer).json()
        assert [b["name"] for b in listed] == ["b1"]
        assert self.call("GET", backend("pool", "b1"), expect=200).json() == listed[0]

    def test_unknown_director_or_backend_is_404(self, pool):
        for method, url in [("GET", backends("nope")), ("GET", backend("pool", "nope")),
                            ("PATCH", backend("pool", "nope")), ("DELETE", backend("pool", "nope")),
                            ("POST", backend("pool", "nope") + "enable"), ("GET", backend("nope", "b1"))]:
            self.call(method, url, {} if method == "PATCH" else None, expect=404)
        self.call("POST", backends("nope"), {"name": "b2", "url": "http://127.0.0.1:1"}, expect=404)
        assert self.call("GET", backend("nope", "b1"), expect=404).json() == {"detail": "director 'nope' not found"}
        self.call("GET", backend("pool", "b%001"), expect=404)
        self.call("GET", backend("po%00ol", "b1"), expect=404)
        assert "backend 'zz' not found" in self.call("GET", backend("pool", "zz"), expect=404).json()["detail"]


class TestBackendWrites(ApiTestBase):
    def test_duplicate_name_is_a_conflict(self, pool):
        self.call("POST", backends("pool"), {"name": "b1", "url": "http://127.0.0.1:3009"}, expect=409)

    @pytest.mark.parametrize("data, fields", [
        ({"name": "b 2", "url": "http://127.0.0.1:1"}, {"name"}),
        ({"name": "b2"}, {"url"}),
        ({"name": "b2", "url": "ftp://127.0.0.1:1"}, {"url"}),
        ({"name": "b2", "url": "http://127.0.0.1:70000"}, {"url"}),
        ({"name": "b2", "url": "http://127.0.0.1:1", "capacity": -1}, {"capacity"}),
        ({"name": "b2", "url": "http://127.0.0.1:1", "capacity": 1.5}, {"capacity"}),
        ({"name": "b2", "url": "http://127.0.0.1:1", "capacity": 2**63}, {"capacity"}),
        ({"name": "b2", "url": "http+unix:///" + "s" * 5000}, {"url"}),
        ({"name": "b2", "url": "http://127.0.0.1:1", "role": "standby"}, {"role"}),
        ({"name": "b2", "url": "http://127.0.0.1:1", "health_check_interval": 0}, {"health_check_interval"}),
        ({"name": "b2", "url": "http://127.0.0.1:1", "weight": 3, "terminating": True}, {"weight", "terminating"}),
    ])
    def test_create_rejects_bad_values(self, pool, data, fields):
        self.rejected("POST", backends("pool"), data, fields=fields)

    def test_patch_changes_fields_and_audits(self, pool):
        response, record = self.write("PATCH", backend("pool", "b1"), {"capacity": 8, "health_check_mode": "lazy"},
                                      expect=200, action="backend.update", director="pool", backend="b1")
        assert (response.json()["capacity"], response.json()["health"]["mode"]) == (8, "lazy")
        assert (record.before["capacity"], record.after["capacity"]) == (0, 8)

    @pytest.mark.parametrize("data, fields", [
        ({"name": "b9"}, {"name"}),
        ({"url": "http://127.0.0.1:3009"}, {"url"}),
        ({"protocol": "fastcgi"}, {"protocol"}),
        ({"enabled": "no"}, {"enabled"}),
    ])
    def test_patch_rejects_bad_or_fixed_fields(self, pool, data, fields):
        self.rejected("PATCH", backend("pool", "b1"), data, fields=fields)

    @pytest.mark.parametrize("action, enabled", [("disable", False), ("enable", True)])
    @pytest.mark.parametrize("slash", ["", "/"])
    def test_enable_and_disable_answer_the_backend(self, pool, action, enabled, slash):
        services.set_backend_enabled(pool.backends.get(), not enabled, actor="test")
        response, _ = self.write("POST", backend("pool", "b1") + action + slash, expect=200,
                                 action=f"backend.{action}", director="pool", backend="b1")
        assert response.json()["enabled"] is enabled and response.json()["name"] == "b1"
        assert Backend.objects.get(name="b1").enabled is enabled

    def test_delete_drains_the_backend(self, pool):
        response, record = self.write("DELETE", backend("pool", "b1"), expect=202, action="backend.delete",
                                      director="pool", backend="b1")
        assert response.json()["terminating"] is True and response.json()["name"] == "b1"
        assert Backend.objects.get(name="b1").terminating
        assert (record.before["terminating"], record.after["terminating"]) == (False, True)

    def test_delete_of_a_protected_backend_is_forbidden(self, pool):
        services.update_backend(pool.backends.get(), {"terminate_protection": True}, actor="test")
        assert "terminate_protection" in self.call("DELETE", backend("pool", "b1"), expect=403).json()["detail"]


class TestStaticDirectorBackends(ApiTestBase):
    def test_enabled_can_change_through_patch_and_switches(self, static):
        self.write("PATCH", backend("app", "a1"), {"enabled": False}, expect=200, action="backend.update",
                   director="app", backend="a1")
        self.write("POST", backend("app", "a1") + "enable", expect=200, action="backend.enable",
                   director="app", backend="a1")
        self.write("POST", backend("app", "a1") + "disable", expect=200, action="backend.disable",
                   director="app", backend="a1")

    @pytest.mark.parametrize("data", [{"capacity": 3}, {"enabled": True, "role": "backup"}, {"capacity": "x"}])
    def test_patch_of_other_fields_is_forbidden(self, static, data):
        self.call("PATCH", backend("app", "a1"), data, expect=403)

    def test_create_and_delete_are_forbidden(self, static):
        self.call("POST", backends("app"), {"name": "a2", "url": "http://127.0.0.1:3002"}, expect=403)
        self.call("DELETE", backend("app", "a1"), expect=403)
