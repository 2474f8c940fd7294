"""`POST /api/v1/directors/{d}/backends/` with a JSON list (SPEC §11): all or nothing, errors
under each bad item's index, one config change, one audit record per backend."""
from __future__ import annotations

import pytest

from balancer import services
from balancer.models import AuditRecord, Backend
from tests.support.api import ApiTestBase, last_audit_id, make_director

BACKENDS = "/api/v1/directors/pool/backends/"


@pytest.fixture
def pool(db):
    return make_director("pool", backends={"b1": "http://127.0.0.1:3001"})


def item(name: str, port: int, **fields) -> dict:
    return {"name": name, "url": f"http://127.0.0.1:{port}", **fields}


class TestBulkCreate(ApiTestBase):
    def test_a_list_creates_every_backend_in_one_config_change(self, pool):
        version, mark = services.current_version(), last_audit_id()
        items = [item("b2", 3002, capacity=4), item("b3", 3003, role="backup"), item("b4", 3004)]
        response = self.operator.post(BACKENDS, items, format="json")
        assert response.status_code == 201, response.content
        body = response.json()
        assert [(b["name"], b["port"], b["capacity"], b["role"]) for b in body] == [
            ("b2", 3002, 4, "active"), ("b3", 3003, 0, "backup"), ("b4", 3004, 0, "active")]
        assert services.current_version() == version + 1
        records = AuditRecord.objects.filter(pk__gt=mark).order_by("pk")
        assert [(r.actor, r.action, r.director_name, r.backend_name) for r in records] == [
            ("api:op", "backend.create", "pool", name) for name in ("b2", "b3", "b4")]
        stored = list(pool.backends.order_by("position").values_list("name", "position"))
        assert stored == [("b1", 0), ("b2", 1), ("b3", 2), ("b4", 3)]

    def test_bad_items_are_named_by_index_and_field_and_nothing_is_created(self, pool):
        items = [item("b2", 3002), {"name": "b3", "url": "ftp://x", "capacity": -1}, item("b 4", 3004),
                 item("b5", 3005, weight=2), "not an object"]
        body = self.call("POST", BACKENDS, items, expect=400).json()
        assert set(body) == {"1", "2", "3", "4"}
        assert set(body["1"]) == {"url", "capacity"} and set(body["2"]) == {"name"}
        assert set(body["3"]) == {"weight"} and set(body["4"]) == {"non_field_errors"}
        assert all(isinstance(m, str) and m for errors in body.values() for ms in errors.values() for m in ms)

    def test_duplicates_in_the_list_or_with_existing_backends_are_errors(self, pool):
        items = [item("b1", 3009), item("b2", 3002), item("b2", 3003), item("b3", 3004)]
        body = self.call("POST", BACKENDS, items, expect=400).json()
        assert set(body) == {"0", "2"}
        assert set(body["0"]) == {"name"} and "b1" in body["0"]["name"][0]
        assert set(body["2"]) == {"name"} and "b2" in body["2"]["name"][0]

    def test_an_empty_list_is_refused(self, pool):
        assert set(self.call("POST", BACKENDS, [], expect=400).json()) == {"non_field_errors"}

    def test_a_static_director_refuses_a_list(self, db):
        make_director("app", dynamic=False)
        self.call("POST", "/api/v1/directors/app/backends/", [item("a1", 3001)], expect=403)

    def test_viewer_cannot_create(self, pool):
        self.call("POST", BACKENDS, [item("b2", 3002)], expect=403, client=self.viewer)
        assert not Backend.objects.filter(name="b2").exists()
