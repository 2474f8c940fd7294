"""sync_config and the file's routes (SPEC §11 "Config files in a cluster"): stored as
mutable=false routes, replaced when the file differs, untouched when it does not, audited
with this node's hostname; database routes are left alone."""
import socket

import pytest

from balancer import route_services, services
from balancer.config import parse_config
from balancer.models import AuditRecord, Route
from balancer.sync import sync_config
from tests.support.config_files import with_routes

pytestmark = pytest.mark.django_db

SHOP = {"host": "Shop.Example.com", "pass": "app", "backend_from": "cookie:X-Backend"}
FIRST = with_routes(SHOP, {"path": "/legacy/", "http": "127.0.0.1:3000"},
                    {"path": "/php/", "fcgi": "unix:/run/php/php-fpm.sock", "document_root": "/srv/www"})
SECOND = with_routes({**SHOP, "host": "shop.example.com"},
                     {"path": "/old/", "fcgi": "127.0.0.1:9000", "script_filename": "/srv/www/index.php", "priority": 7})


def file_routes() -> list[tuple]:
    return [(r.file_index, r.priority, r.host, r.path, r.director, r.backend_from, r.http, r.fcgi,
             r.document_root, r.script_filename)
            for r in Route.objects.filter(mutable=False).order_by("file_index")]


def route_audits() -> list[tuple]:
    return list(AuditRecord.objects.filter(action__startswith="route.").order_by("pk")
                .values_list("actor", "action"))


def test_file_routes_are_stored_in_file_order_and_audited_with_the_hostname():
    sync_config(parse_config(FIRST))
    assert file_routes() == [
        (0, None, "shop.example.com", "/", "app", "cookie:X-Backend", "", "", "", ""),
        (1, None, "", "/legacy/", "", "", "127.0.0.1:3000", "", "", ""),
        (2, None, "", "/php/", "", "", "", "unix:/run/php/php-fpm.sock", "/srv/www", ""),
    ]
    actor = f"config:{socket.gethostname()}"
    assert route_audits() == [(actor, "route.create")] * 3
    assert set(AuditRecord.objects.values_list("actor", flat=True)) == {actor}  # directors and backends too


def test_a_second_identical_sync_changes_nothing():
    sync_config(parse_config(FIRST))
    rows = list(Route.objects.values())
    audits, version = AuditRecord.objects.count(), services.current_version()
    sync_config(parse_config(FIRST))
    assert list(Route.objects.values()) == rows
    assert AuditRecord.objects.count() == audits and services.current_version() == version


def test_a_different_file_replaces_the_stored_file_routes_but_not_database_routes():
    sync_config(parse_config(FIRST))
    mine = route_services.create_route({"path": "/mine/", "pass": "app"}, actor="api:ops")
    first_ids = list(Route.objects.filter(mutable=False).order_by("file_index").values_list("pk", flat=True))
    mark = AuditRecord.objects.order_by("-pk").values_list("pk", flat=True).first()

    sync_config(parse_config(SECOND))
    assert file_routes() == [
        (0, None, "shop.example.com", "/", "app", "cookie:X-Backend", "", "", "", ""),
        (1, 7, "", "/old/", "", "", "", "127.0.0.1:9000", "", "/srv/www/index.php"),
    ]
    assert Route.objects.filter(mutable=False).order_by("file_index").first().pk == first_ids[0]  # unchanged: kept
    changes = list(AuditRecord.objects.filter(pk__gt=mark).order_by("pk").values_list("action", flat=True))
    assert changes == ["route.update", "route.delete"]
    assert Route.objects.get(pk=mine.pk).mutable  # the API's route stays
    assert [r.path for r in Route.objects.all()] == ["/", "/mine/", "/old/"]  # match order: priority 7 after 0

    sync_config(parse_config(with_routes()))
    assert file_routes() == [] and Route.objects.filter(pk=mine.pk).exists()


def test_the_data_plane_reads_the_routes_in_match_order(monkeypatch):
    from balancer.dataplane_source import DatabaseConfigSource

    monkeypatch.setattr("django.db.close_old_connections", lambda: None)  # keep the test's transaction open
    sync_config(parse_config(SECOND))
    late = route_services.create_route({"path": "/late/", "pass": "app", "priority": 9}, actor="test")
    early = route_services.create_route({"path": "/early/", "pass": "app", "priority": -1}, actor="test")
    rows = DatabaseConfigSource().read_rows()
    assert rows.version == services.current_version()
    assert [r["path"] for r in rows.routes] == ["/", "/early/", "/old/", "/late/"]
    assert [r["id"] for r in rows.routes][1::2] == [early.pk, late.pk]
