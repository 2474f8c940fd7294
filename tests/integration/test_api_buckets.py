"""`/api/v1/directors/{d}/buckets/` (SPEC §15 "Buckets"): CRUD, the bucket object with its
tokens, the rules naming the field, static directors read-only, audit and config version,
and routes choosing a bucket."""
from __future__ import annotations

import pytest

from balancer import bucket_services, services
from balancer.config import parse_config
from balancer.models import Backend, Bucket
from balancer.sync import sync_config
from tests.support.api import ApiTestBase, make_director

BUCKETS = "/api/v1/directors/pool/buckets/"
OBJECT_FIELDS = {"name", "parent", "rate", "ceil", "tokens", "queued", "dropped"}


@pytest.fixture
def pool(db):
    """Dynamic director pool: two online active backends of capacity 4 and 6 (10 tokens) and a
    backup that does not count."""
    director = make_director("pool", backends={
        "a": {"url": "http://127.0.0.1:3001", "capacity": 4}, "b": {"url": "http://127.0.0.1:3002", "capacity": 6},
        "spare": {"url": "http://127.0.0.1:3003", "capacity": 50, "role": "backup"}})
    Backend.objects.update(health_state="online")
    return director


def bucket(name: str) -> str:
    return f"{BUCKETS}{name}/"


def add(director, name, rate, **fields):
    return bucket_services.create_bucket(director, {"name": name, "rate": rate, **fields}, actor="test")


class TestBucketObjects(ApiTestBase):
    def test_create_answers_the_bucket_with_its_tokens_audits_and_bumps_the_version(self, pool):
        version = services.current_version()
        response, record = self.write("POST", BUCKETS, {"name": "main", "rate": 0.5, "ceil": 0.7},
                                      expect=201, action="bucket.create", director="pool")
        body = response.json()
        assert body == {"name": "main", "parent": "", "rate": 0.5, "ceil": 0.7, "queued": 0, "dropped": 0,
                        "tokens": {"assured": 5, "ceiling": 7, "used": 0}}
        assert record.after == {"name": "main", "parent": "", "rate": 0.5, "ceil": 0.7}
        assert services.current_version() > version
        child, _ = self.write("POST", BUCKETS, {"name": "child", "parent": "main", "rate": 0.5},
                              expect=201, action="bucket.create", director="pool")
        assert child.json()["tokens"] == {"assured": 2, "ceiling": 3, "used": 0}  # x0's example: 10 -> 5/7 -> 2/3
        assert child.json()["ceil"] == 0.5  # ceil defaults to rate
        listed = self.call("GET", BUCKETS, expect=200, client=self.viewer).json()
        assert [b["name"] for b in listed] == ["main", "child"] and set(listed[0]) == OBJECT_FIELDS
        director = self.call("GET", "/api/v1/directors/pool/", expect=200, client=self.viewer).json()
        assert director["buckets"] == listed

    def test_tokens_follow_the_backends_state(self, pool):
        add(pool, "main", 0.5)
        Backend.objects.filter(name="b").update(health_state="offline")
        assert self.call("GET", bucket("main"), expect=200).json()["tokens"]["assured"] == 2
        Backend.objects.filter(role="active").update(enabled=False)
        assert self.call("GET", bucket("main"), expect=200).json()["tokens"]["assured"] == 25  # the backup serves

    def test_patch_and_delete(self, pool):
        add(pool, "main", 0.5)
        add(pool, "child", 0.5, parent="main")
        response, record = self.write("PATCH", bucket("main"), {"rate": 0.2, "ceil": 1.0},
                                      expect=200, action="bucket.update", director="pool")
        assert (response.json()["rate"], response.json()["tokens"]) == (0.2, {"assured": 2, "ceiling": 10, "used": 0})
        assert record.before["rate"] == 0.5 and record.after["ceil"] == 1.0
        self.call("DELETE", bucket("main"), expect=409)  # it has a child
        self.write("DELETE", bucket("child"), expect=204, action="bucket.delete", director="pool")
        self.write("DELETE", bucket("main"), expect=204, action="bucket.delete", director="pool")
        assert not Bucket.objects.exists()
        self.call("GET", bucket("main"), expect=404)
        self.call("GET", "/api/v1/directors/nope/buckets/", expect=404)

    @pytest.mark.parametrize("data, fields", [
        ({"name": "x", "rate": 1.5}, {"rate"}),
        ({"name": "x", "rate": -0.1, "ceil": 2}, {"rate", "ceil"}),
        ({"name": "x", "rate": "0.5"}, {"rate"}),
        ({"name": "x", "rate": 0.6, "ceil": 0.5}, {"rate"}),
        ({"name": "x", "rate": 0.6}, {"rate"}),  # with main's 0.5: siblings over 1
        ({"name": "x", "rate": 0.1, "parent": "nope"}, {"parent"}),
        ({"name": "root", "rate": 0.1}, {"name"}),
        ({"name": "bad name", "rate": 0.1}, {"name"}),
        ({"rate": 0.1}, {"name"}),
        ({"name": "x", "rate": 0.1, "colour": "red"}, {"colour"}),
    ])
    def test_bad_values_are_refused_naming_the_field(self, pool, data, fields):
        add(pool, "main", 0.5)
        self.rejected("POST", BUCKETS, data, fields=fields)
        assert list(Bucket.objects.values_list("name", flat=True)) == ["main"]

    def test_patch_refuses_a_cycle_a_rename_and_a_sum_over_one(self, pool):
        add(pool, "a", 0.5)
        add(pool, "b", 0.5, parent="a")
        assert "cycle" in self.rejected("PATCH", bucket("a"), {"parent": "b"}, fields={"parent"})["parent"][0]
        self.rejected("PATCH", bucket("a"), {"name": "c"}, fields={"name"})
        add(pool, "c", 0.4)
        assert "add up to" in self.rejected("PATCH", bucket("c"), {"rate": 0.6, "ceil": 0.6}, fields={"rate"})["rate"][0]

    def test_static_directors_buckets_are_read_only(self, db):
        sync_config(parse_config("""
            [directors.app.backends]
            a = { url = "http://127.0.0.1:3001", capacity = 8 }
            [directors.app.buckets]
            gold = { rate = 0.75 }
        """))
        body = self.call("GET", "/api/v1/directors/app/buckets/", expect=200).json()
        assert [(b["name"], b["rate"], b["ceil"]) for b in body] == [("gold", 0.75, 0.75)]
        self.call("POST", "/api/v1/directors/app/buckets/", {"name": "x", "rate": 0.1}, expect=403)
        self.call("PATCH", "/api/v1/directors/app/buckets/gold/", {"rate": 0.1}, expect=403)
        self.call("DELETE", "/api/v1/directors/app/buckets/gold/", expect=403)

    def test_routes_name_a_bucket_or_where_to_read_it(self, pool):
        response, _ = self.write("POST", "/api/v1/routes/", {"pass": "pool", "bucket": "main", "bucket_from": "cookie:tier"},
                                 expect=201, action="route.create", director="pool")
        assert (response.json()["bucket"], response.json()["bucket_from"]) == ("main", "cookie:tier")
        self.rejected("POST", "/api/v1/routes/", {"pass": "pool", "bucket_from": "query:tier"}, fields={"bucket_from"})
        self.rejected("POST", "/api/v1/routes/", {"http": "127.0.0.1:1", "bucket": "main"}, fields={"bucket"})


def test_config_sync_follows_the_file_buckets(db):
    def sync(buckets: str):
        sync_config(parse_config(f"""
            [directors.app.backends]
            a = "http://127.0.0.1:3001"
            [directors.app.buckets]
            {buckets}
        """))
        return {b.name: (b.parent, b.rate, b.ceil) for b in Bucket.objects.all()}

    assert sync('gold = { rate = 0.6, ceil = 1.0 }\nsilver = { rate = 0.5, parent = "gold" }') == {
        "gold": ("", 0.6, 1.0), "silver": ("gold", 0.5, 0.5)}
    version = services.current_version()
    sync('gold = { rate = 0.6, ceil = 1.0 }\nsilver = { rate = 0.5, parent = "gold" }')
    assert services.current_version() == version  # unchanged file: nothing written
    assert sync('silver = { rate = 0.9 }') == {"silver": ("", 0.9, 0.9)}
