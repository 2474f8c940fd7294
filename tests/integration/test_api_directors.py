"""`/api/v1/directors/` and `/api/v1/directors/{d}/` (SPEC §9 rows 1-5, §5 settings)."""
from __future__ import annotations

import pytest

from balancer import livestats, validation
from balancer.models import Director
from tests.support.api import ApiTestBase, make_director

LIST = "/api/v1/directors/"
SETTINGS = set(validation.DIRECTOR_SETTINGS)
ZERO_LOAD = {"current": 0, "max": 0, "total": 0}


def detail(name: str) -> str:
    return f"{LIST}{name}/"


class FakeStats:
    """A data plane's statistics provider, as runproxy registers it."""

    def director_stats(self, director_id):
        return {"load": {"current": 2, "max": 5, "total": 40}, "queued": {"current": 1, "max": 3, "total": 7},
                "dropped": 4}

    def backend_stats(self, backend_id):
        return {"load": {"current": 1, "max": 2, "total": 20}, "failures": 3}


class TestDirectors(ApiTestBase):
    def test_list_shows_every_director_with_settings_stats_and_backends(self):
        make_director("app", dynamic=False, backends={"a1": "http://127.0.0.1:3001"})
        make_director("pool", queue_limit=5)
        body = self.call("GET", LIST, expect=200, client=self.viewer).json()
        assert [d["name"] for d in body] == ["app", "pool"]
        app, pool = body
        assert set(app) == SETTINGS | {"name", "mutable", "stats", "cache", "backends", "buckets"}
        assert app["cache"] == {"objects": 0, "bytes": 0, "hits": 0, "misses": 0, "shadow": 0}
        assert (app["mutable"], pool["mutable"]) == (False, True)
        assert pool["queue_limit"] == 5 and pool["scheduler"] == "rr"
        assert app["stats"] == {"load": ZERO_LOAD, "queued": ZERO_LOAD, "dropped": 0}
        assert [b["name"] for b in app["backends"]] == ["a1"] and pool["backends"] == []

    def test_stats_come_from_the_data_plane_when_it_runs_in_this_process(self):
        make_director("pool", backends={"b1": "http://127.0.0.1:3001"})
        livestats.register(FakeStats())
        try:
            body = self.call("GET", detail("pool"), expect=200).json()
        finally:
            livestats.register(None)
        assert body["stats"] == FakeStats().director_stats(0)
        assert body["backends"][0]["stats"] == FakeStats().backend_stats(0)

    def test_create_makes_a_dynamic_director_with_defaults(self):
        response, record = self.write("POST", LIST, {"name": "pool", "scheduler": "least_load", "queue_timeout": 0.5},
                                      expect=201, action="director.create", director="pool")
        body = response.json()
        defaults = validation.defaults(validation.DIRECTOR_SETTINGS)
        assert body == {**defaults, "scheduler": "least_load", "queue_timeout": 0.5, "name": "pool",
                        "mutable": True, "stats": {"load": ZERO_LOAD, "queued": ZERO_LOAD, "dropped": 0},
                        "cache": {"objects": 0, "bytes": 0, "hits": 0, "misses": 0, "shadow": 0},
                        "backends": [], "buckets": []}
        assert Director.objects.get(name="pool").dynamic
        assert record.before is None and record.after["scheduler"] == "least_load"

    def test_create_with_a_taken_name_is_a_conflict(self):
        make_director("pool")
        assert "pool" in self.call("POST", LIST, {"name": "pool"}, expect=409).json()["detail"]

    @pytest.mark.parametrize("data, fields", [
        ({"name": "has space"}, {"name"}),
        ({}, {"name"}),
        ({"name": "p", "colour": "red"}, {"colour"}),
        ({"name": "p", "mutable": False}, {"mutable"}),
        ({"name": "p", "queue_limit": "16"}, {"queue_limit"}),
        ({"name": "p", "queue_limit": -1, "connect_timeout": 0}, {"queue_limit", "connect_timeout"}),
        ({"name": "p", "enabled": 1}, {"enabled"}),
        ({"name": "p", "scheduler": "random"}, {"scheduler"}),
        ({"name": "p", "health_check_expected_status": "2xx"}, {"health_check_expected_status"}),
        ({"name": "p", "health_check_request_path": "no-slash"}, {"health_check_request_path"}),
        ({"name": "p", "health_check_host_header": "a\x00b"}, {"health_check_host_header"}),
        ({"name": "p", "health_check_host_header": "h" * 300}, {"health_check_host_header"}),
        ({"name": "p", "queue_limit": 10**20}, {"queue_limit"}),
        ({"name": "p", "passive_failure_threshold": 0}, {"passive_failure_threshold"}),
        ({"name": "p" * 65}, {"name"}),
    ])
    def test_create_rejects_bad_values_naming_the_fields(self, data, fields):
        self.rejected("POST", LIST, data, fields=fields)

    def test_non_object_bodies_and_malformed_json_are_refused(self):
        assert "non_field_errors" in self.call("POST", LIST, ["pool"], expect=400).json()
        response = self.operator.generic("POST", LIST, b"{not json", content_type="application/json")
        assert response.status_code == 400 and "detail" in response.json()

    def test_get_unknown_is_404(self):
        assert "detail" in self.call("GET", detail("nope"), expect=404).json()

    def test_patch_changes_settings_and_audits_before_and_after(self):
        make_director("pool")
        response, record = self.write("PATCH", detail("pool"), {"queue_limit": 3, "enabled": False},
                                      expect=200, action="director.update", director="pool")
        assert (response.json()["queue_limit"], response.json()["enabled"]) == (3, False)
        assert (record.before["queue_limit"], record.after["queue_limit"]) == (128, 3)
        assert Director.objects.get(name="pool").queue_limit == 3

    def test_passive_failure_threshold_defaults_to_1_and_can_be_set(self):
        make_director("pool")
        assert self.call("GET", detail("pool"), expect=200).json()["passive_failure_threshold"] == 1
        response, record = self.write("PATCH", detail("pool"), {"passive_failure_threshold": 3},
                                      expect=200, action="director.update", director="pool")
        assert response.json()["passive_failure_threshold"] == 3 and record.after["passive_failure_threshold"] == 3
        assert Director.objects.get(name="pool").passive_failure_threshold == 3

    def test_patch_without_changes_answers_the_director_and_records_nothing(self):
        make_director("pool", queue_limit=3)
        assert self.call("PATCH", detail("pool"), {}, expect=200).json()["queue_limit"] == 3
        assert self.call("PATCH", detail("pool"), {"queue_limit": 3}, expect=200).json()["queue_limit"] == 3

    @pytest.mark.parametrize("data, fields", [
        ({"name": "other"}, {"name"}),
        ({"read_timeout": -2}, {"read_timeout"}),
        ({"backends": []}, {"backends"}),
    ])
    def test_patch_rejects_bad_values(self, data, fields):
        make_director("pool")
        self.rejected("PATCH", detail("pool"), data, fields=fields)

    def test_patch_of_a_static_director_is_forbidden_even_with_bad_values(self):
        make_director("app", dynamic=False)
        self.call("PATCH", detail("app"), {"queue_limit": 3}, expect=403)
        self.call("PATCH", detail("app"), {"queue_limit": "x"}, expect=403)

    def test_patch_and_delete_of_unknown_are_404(self):
        self.call("PATCH", detail("nope"), {"queue_limit": 3}, expect=404)
        self.call("DELETE", detail("nope"), expect=404)

    def test_delete_removes_a_dynamic_director_with_its_backends(self):
        make_director("pool", backends={"b1": "http://127.0.0.1:3001"})
        response, record = self.write("DELETE", detail("pool"), expect=204, action="director.delete", director="pool")
        assert response.content == b""
        assert not Director.objects.filter(name="pool").exists()
        assert [b["name"] for b in record.before["backends"]] == ["b1"]
        self.call("GET", detail("pool"), expect=404)

    def test_delete_of_a_static_director_is_forbidden(self):
        make_director("app", dynamic=False)
        assert "config file" in self.call("DELETE", detail("app"), expect=403).json()["detail"]
