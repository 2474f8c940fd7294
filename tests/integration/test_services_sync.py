"""sync_config: static directors follow the file, dynamic ones are only created, twice = no-op."""
import socket

import pytest

from balancer import services
from balancer.config import ConfigError, parse_config
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
    assert set(AuditRecord.objects.values_list("actor", flat=True)) == {f"config:{socket.gethostname()}"}
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


X0_FILE = """[director]
queue-limit=7

[backend=b1]
protocol=http
host=127.0.0.1
port=3001
capacity=2
"""


def test_dynamic_director_seeded_from_existing_load_file(tmp_path, django_capture_on_commit_callbacks):
    load = tmp_path / "pool.db"
    load.write_text(X0_FILE)
    with django_capture_on_commit_callbacks(execute=True):
        sync_config(parse_config(f'[directors.pool]\ndynamic = true\nqueue_limit = 3\nload = "{load}"'))
    pool = Director.objects.get(name="pool")
    assert (pool.dynamic, pool.load_path, pool.queue_limit) == (True, str(load), 7)  # the file wins
    assert [(b.name, b.url, b.capacity) for b in pool.backends.all()] == [("b1", "http://127.0.0.1:3001", 2)]
    with django_capture_on_commit_callbacks(execute=True):
        services.set_backend_enabled(pool.backends.get(), False, actor="api:ops")
    assert "enabled=false" in load.read_text().replace(" ", "").lower()  # kept in sync on every change


def test_missing_load_file_creates_it_and_bad_one_is_a_config_error(tmp_path, django_capture_on_commit_callbacks):
    load = tmp_path / "new.db"
    with django_capture_on_commit_callbacks(execute=True):
        sync_config(parse_config(f'[directors.pool]\ndynamic = true\nload = "{load}"'))
    assert Director.objects.get(name="pool").backends.count() == 0
    assert "[director]" in load.read_text()
    broken = tmp_path / "broken.db"
    broken.write_text("[director]\nqueue-limit=many\n")
    with pytest.raises(ConfigError) as info:
        sync_config(parse_config(f'[directors.other]\ndynamic = true\nload = "{broken}"'))
    assert info.value.errors[0].startswith("directors.other.load: [director] queue-limit")
    assert not Director.objects.filter(name="other").exists()
