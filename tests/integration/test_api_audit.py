"""`GET /api/v1/audit/`: the audit log, read-only, newest first, paginated, filtered by actor,
director, backend, action and time; bad query parameters are 400s naming them."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from balancer import services
from balancer.models import AuditRecord, Backend
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
        assert set(self.call("GET", AUDIT + "?director=a%00b", expect=400).json()) == {"director"}

    def test_filter_by_actor_backend_and_action(self):
        director = make_director("pool", backends={"b1": "http://127.0.0.1:1", "b2": "http://127.0.0.1:2"})
        for name in ("b1", "b2"):
            services.set_backend_enabled(Backend.objects.get(director=director, name=name), False, actor="api:ops")
        services.set_backend_enabled(Backend.objects.get(director=director, name="b1"), True, actor="admin:root")

        def picked(query: str) -> list:
            return [(r["actor"], r["action"], r["backend_name"])
                    for r in self.call("GET", AUDIT + query, expect=200).json()["results"]]

        assert picked("?actor=api:ops") == [("api:ops", "backend.disable", "b2"), ("api:ops", "backend.disable", "b1")]
        assert picked("?backend=b1&action=backend.enable") == [("admin:root", "backend.enable", "b1")]
        assert picked("?director=pool&backend=b2&actor=api:ops") == [("api:ops", "backend.disable", "b2")]
        assert picked("?actor=nobody") == []

    def test_filter_by_time_window(self):
        make_director("old")
        AuditRecord.objects.update(at=datetime(2026, 1, 1, 12, tzinfo=timezone.utc))
        make_director("new")
        names = lambda query: [r["director_name"] for r in self.call("GET", AUDIT + query, expect=200).json()["results"]]  # noqa: E731
        assert names("?since=2026-01-02") == ["new"]
        assert names("?until=2026-01-01T12:00:01Z") == ["old"]
        assert names("?since=2026-01-01T12:00:00%2B00:00&until=2026-01-01T13:00:00") == ["old"]
        assert names("?since=2026-01-01t11:00:00z&until=2099-01-01") == ["new", "old"]

    @pytest.mark.parametrize("query, field", [
        ("?since=yesterday", "since"), ("?until=2026-13-01", "until"), ("?colour=red", "colour"),
        ("?limit=text", "limit"), ("?offset=null", "offset"), ("?limit=0", "limit"), ("?limit=501", "limit"),
        ("?offset=-1", "offset"), ("?actor=" + "a" * 201, "actor"), ("?action=a%0Db", "action"),
    ])
    def test_bad_query_parameters_are_400_naming_them(self, query, field):
        body = self.call("GET", AUDIT + query, expect=400, client=self.viewer).json()
        assert list(body) == [field] and body[field][0], body

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
