"""sync_config: static directors follow the file, dynamic ones are only created, twice = no-op."""
import logging

import pytest

from balancer import services
from balancer.config import parse_config
from balancer.models import AuditRecord, Backend, Director
from balancer.sync import sync_config

pytestmark = pytest.mark.django_db

FIRST = """
[directors.app]
queue_limit = 16
backends = { app1 = "http://127.0.0.1:3001", app2 = { url = "http://127.0.0.1:3002", capacity = 2 }, app3 = "http://127.0.0.1:3003" }

[directors.old]
backends = { o1 = "http://127.0.0.1:4001" }

[directors.pool]
dynamic = true
scheduler = "least_load"
"""

SECOND = """
[directors.app]
backends = { app3 = { url = "http://127.0.0.1:3003", role = "backup", enabled = false }, app2 = "http://127.0.0.1:3999", app4 = "http://127.0.0.1:3004" }

[directors.pool]
dynamic = true
scheduler = "rr"
"""


def state():
    return {d.name: (d.dynamic, d.queue_limit, d.scheduler,
                     [(b.name, b.url, b.role, b.capacity, b.enabled, b.terminating, b.position) for b in d.backends.all()])
            for d in Director.objects.all()}


def test_first_sync_creates_everything_and_second_is_a_noop():
    sync_config(parse_config(FIRST))
    assert state() == {
        "app": (False, 16, "rr", [("app1", "http://127.0.0.1:3001", "active", 0, True, False, 0),
                                  ("app2", "http://127.0.0.1:3002", "active", 2, True, False, 1),
                                  ("app3", "http://127.0.0.1:3003", "active", 0, True, False, 2)]),
        "old": (False, 128, "rr", [("o1", "http://127.0.0.1:4001", "active", 0, True, False, 0)]),
        "pool": (True, 128, "least_load", []),
    }
    assert set(AuditRecord.objects.values_list("actor", flat=True)) == {"config"}
    audits, version = AuditRecord.objects.count(), services.current_version()
    sync_config(parse_config(FIRST))
    assert AuditRecord.objects.count() == audits and services.current_version() == version


def test_changes_follow_the_file_but_keep_runtime_enabled():
    sync_config(parse_config(FIRST))
    app = Director.objects.get(name="app")
    services.set_backend_enabled(app.backends.get(name="app3"), False, actor="admin:ops")
    services.set_backend_enabled(app.backends.get(name="app1"), False, actor="admin:ops")
    services.create_backend(Director.objects.get(name="pool"), {"name": "p1", "url": "http://127.0.0.1:5001"}, actor="api:x")
    old_app2 = app.backends.get(name="app2").pk

    sync_config(parse_config(SECOND))
    result = state()
    assert "old" not in result  # static director gone from the file: deleted
    assert result["pool"] == (True, 128, "least_load", [("p1", "http://127.0.0.1:5001", "active", 0, True, False, 0)])
    dynamic, queue_limit, _, backends = result["app"]
    assert (dynamic, queue_limit) == (False, 128)  # setting removed from the file: default again
    assert backends == [
        ("app1", "http://127.0.0.1:3001", "active", 0, False, True, 0),   # dropped from the file: draining
        ("app3", "http://127.0.0.1:3003", "backup", 0, False, False, 0),  # changed; runtime enabled kept
        ("app2", "http://127.0.0.1:3999", "active", 0, True, False, 1),   # new url: replaced
        ("app4", "http://127.0.0.1:3004", "active", 0, True, False, 2),
    ]
    assert not Backend.objects.filter(pk=old_app2).exists()
    audits = AuditRecord.objects.count()
    sync_config(parse_config(SECOND))
    assert AuditRecord.objects.count() == audits


def test_removed_protected_backend_is_drained():
    sync_config(parse_config('[directors.app]\nbackends = { a = { url = "http://127.0.0.1:1", terminate_protection = true } }'))
    sync_config(parse_config('[directors.app]\nbackends = {}'))
    backend = Backend.objects.get(name="a")
    assert backend.terminating and not backend.terminate_protection


def test_static_and_dynamic_switch():
    sync_config(parse_config(FIRST))
    sync_config(parse_config('[directors.app]\ndynamic = true\nload = "/tmp/app.db"\n[directors.pool]\nbackends = {}'))
    app, pool = Director.objects.get(name="app"), Director.objects.get(name="pool")
    assert app.dynamic and app.load_path == "/tmp/app.db" and app.backends.count() == 3
    assert not pool.dynamic


def test_existing_load_file_is_logged(tmp_path, caplog):
    load = tmp_path / "pool.db"
    load.write_text("[director]\n")
    with caplog.at_level(logging.WARNING, logger="director.config"):
        sync_config(parse_config(f'[directors.pool]\ndynamic = true\nload = "{load}"'))
    assert Director.objects.get(name="pool").load_path == str(load)
    assert str(load) in caplog.text
