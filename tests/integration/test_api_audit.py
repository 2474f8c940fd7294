"""`GET /api/v1/audit/`: the audit log, read-only, newest first, paginated, by director."""
from __future__ import annotations

from balancer import services
from balancer.models import Backend
from tests.support.api import ApiTestBase, make_director

AUDIT = "/api/v1/audit/"


class TestAuditLog(ApiTestBase):
    def test_api_writes_appear_newest_first_with_actor_and_diff(self):
        self.write("POST", "/api/v1/directors/", {"name": "pool"}, expect=201, action="director.create",
                   director="pool")
        self.write("PATCH", "/api/v1/directors/pool/", {"retry_after": 2}, expect=200, action="director.update",
                   director="pool")
        body = self.call("GET", AUDIT, expect=200, client=self.viewer).json()
        assert body["count"] == 2
        newest, oldest = body["results"]
        assert (newest["action"], oldest["action"]) == ("director.update", "director.create")
        assert newest["actor"] == "api:op" and newest["director_name"] == "pool"
        assert (newest["before"]["retry_after"], newest["after"]["retry_after"]) == (10, 2)
        assert newest["at"] >= oldest["at"]

    def test_filter_by_director(self):
        make_director("a")
        make_director("b", backends={"b1": "http://127.0.0.1:1"})
        body = self.call("GET", AUDIT + "?director=b", expect=200).json()
        assert [(r["action"], r["backend_name"]) for r in body["results"]] == [
            ("backend.create", "b1"), ("director.create", "")]
        assert self.call("GET", AUDIT + "?director=nope", expect=200).json()["count"] == 0
        assert self.call("GET", AUDIT + "?director=a%00b", expect=200).json()["count"] == 0

    def test_paginated_by_limit_and_offset(self):
        director = make_director("pool", backends={"b1": "http://127.0.0.1:1"})
        backend = Backend.objects.get(director=director)
        for i in range(5):
            services.set_backend_enabled(backend, i % 2 == 1, actor="test")  # five real changes
        first = self.call("GET", AUDIT + "?limit=4", expect=200).json()
        second = self.call("GET", first["next"], expect=200).json()
        assert first["count"] == second["count"] == 7
        ids = [r["id"] for r in first["results"] + second["results"]]
        assert len(ids) == 7 and ids == sorted(ids, reverse=True)
        assert second["next"] is None and second["previous"]

    def test_read_only(self):
        self.call("POST", AUDIT, {"action": "x"}, expect=405)
        self.call("DELETE", AUDIT, expect=405)
        self.call("POST", AUDIT, {"action": "x"}, expect=403, client=self.viewer)
