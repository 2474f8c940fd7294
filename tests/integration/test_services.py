"""balancer.services against a real database: validation, static rules, audit, version."""
from datetime import timedelta

import pytest
from django.db import transaction

from balancer import health_store, services
from balancer.models import AuditRecord, Backend, Director
from balancer.services import Conflict, Forbidden, NotFound, ValidationFailed

pytestmark = pytest.mark.django_db
ACTOR = "api:alice"
URL1, URL2 = "http://127.0.0.1:3001", "http://[::1]:3002"


@pytest.fixture
def director():
    return services.create_director("pool", {"scheduler": "chance"}, actor=ACTOR)


@pytest.fixture
def static():
    director = services.create_director("app", {}, actor="config", dynamic=False)
    services.create_backend(director, {"name": "app1", "url": URL1}, actor="config", allow_static=True)
    return director


def audits(action=None):
    records = AuditRecord.objects.order_by("id")
    return list(records.filter(action=action) if action else records)


def test_create_director_defaults_and_audit(director):
    assert (director.scheduler, director.queue_limit, director.dynamic, director.mutable) == ("chance", 128, True, True)
    (record,) = audits()
    assert (record.actor, record.action, record.director_name, record.before) == (ACTOR, "director.create", "pool", None)
    assert record.after["scheduler"] == "chance" and record.after["dynamic"] is True


def test_director_validation_names_every_field():
    with pytest.raises(ValidationFailed) as info:
        services.create_director("bad name", {"queue_limit": -1, "scheduler": "x", "read_timeout": 0,
                                              "health_check_expected_status": "abc", "colour": "red"}, actor=ACTOR)
    errors = info.value.errors
    assert info.value.status == 400
    assert set(errors) == {"name", "queue_limit", "scheduler", "read_timeout", "health_check_expected_status", "colour"}
    assert errors["colour"] == ["unknown field"] and errors["queue_limit"] == ["must be an integer from 0 to 1000000"]
    assert not Director.objects.exists() and not audits()


def test_duplicate_names_conflict(director):
    with pytest.raises(Conflict) as info:
        services.create_director("pool", {}, actor=ACTOR)
    assert info.value.status == 409 and info.value.field == "name"
    services.create_backend(director, {"name": "b1", "url": URL1}, actor=ACTOR)
    with pytest.raises(Conflict):
        services.create_backend(director, {"name": "b1", "url": URL2}, actor=ACTOR)
    assert director.backends.count() == 1


def test_create_backend_derives_address_and_orders(director):
    b1 = services.create_backend(director, {"name": "b1", "url": URL2, "capacity": 4}, actor=ACTOR)
    b2 = services.create_backend(director, {"name": "b2", "url": "fastcgi+unix:///run/php.sock"}, actor=ACTOR)
    assert (b1.protocol, b1.host, b1.port, b1.path, b1.capacity) == ("http", "::1", 3002, None, 4)
    assert (b2.protocol, b2.host, b2.port, b2.path) == ("fastcgi", None, None, "/run/php.sock")
    assert (b1.position, b2.position) == (0, 1)
    assert b1.health_state == "undefined" and b1.enabled and not b1.terminating
    record = audits("backend.create")[0]
    assert record.backend_name == "b1" and record.after["url"] == URL2


def test_backend_validation(director):
    with pytest.raises(ValidationFailed) as info:
        services.create_backend(director, {"role": "primary", "capacity": "4", "health_check_interval": 0,
                                           "enabled": 1, "extra": True}, actor=ACTOR)
    errors = info.value.errors
    assert set(errors) == {"name", "url", "role", "capacity", "health_check_interval", "enabled", "extra"}
    assert errors["name"] == ["this field is required"]
    with pytest.raises(ValidationFailed) as info:
        services.create_backend(director, {"name": "b", "url": "ftp://x"}, actor=ACTOR)
    assert list(info.value.errors) == ["url"] and "'ftp://x'" in info.value.errors["url"][0]


def test_update_backend_immutable_fields(director):
    backend = services.create_backend(director, {"name": "b1", "url": URL1}, actor=ACTOR)
    with pytest.raises(ValidationFailed) as info:
        services.update_backend(backend, {"name": "b2", "url": URL2, "protocol": "fastcgi", "capacity": 3}, actor=ACTOR)
    assert set(info.value.errors) == {"name", "url", "protocol"}
    same = services.update_backend(backend, {"name": "b1", "url": URL1, "capacity": 3}, actor=ACTOR)
    assert same.capacity == 3
    record = audits("backend.update")[-1]
    assert (record.before["capacity"], record.after["capacity"]) == (0, 3)


def test_director_name_cannot_change(director):
    with pytest.raises(ValidationFailed) as info:
        services.update_director(director, {"name": "other"}, actor=ACTOR)
    assert info.value.errors == {"name": ["cannot be changed after creation"]}


def test_update_without_change_writes_nothing(director):
    version = services.current_version()
    services.update_director(director, {"scheduler": "chance"}, actor=ACTOR)
    assert services.current_version() == version and len(audits()) == 1


def test_static_director_rules(static):
    backend = static.backends.get()
    with pytest.raises(Forbidden) as info:
        services.update_director(static, {"queue_limit": 1}, actor=ACTOR)
    assert info.value.status == 403 and "config file" in str(info.value)
    for call in (lambda: services.delete_director(static, actor=ACTOR),
                 lambda: services.create_backend(static, {"name": "x", "url": URL2}, actor=ACTOR),
                 lambda: services.update_backend(backend, {"capacity": 2}, actor=ACTOR),
                 lambda: services.delete_backend(backend, actor=ACTOR)):
        with pytest.raises(Forbidden):
            call()
    assert services.update_backend(backend, {"enabled": False}, actor=ACTOR).enabled is False
    assert services.set_backend_enabled(backend, True, actor=ACTOR).enabled is True
    assert [r.action for r in audits()][-2:] == ["backend.update", "backend.enable"]
    assert services.update_director(static, {"queue_limit": 1}, actor="config", allow_static=True).queue_limit == 1


def test_config_only_fields_unknown_to_api(director):
    with pytest.raises(ValidationFailed) as info:
        services.update_director(director, {"dynamic": False, "load_path": "/x"}, actor=ACTOR)
    assert info.value.errors == {"dynamic": ["unknown field"], "load_path": ["unknown field"]}


def test_enable_disable_audit_and_noop(director):
    backend = services.create_backend(director, {"name": "b1", "url": URL1}, actor=ACTOR)
    services.set_backend_enabled(backend, False, actor="admin:bob")
    services.set_backend_enabled(backend, False, actor="admin:bob")
    record = audits("backend.disable")
    assert len(record) == 1 and record[0].actor == "admin:bob"
    assert (record[0].before["enabled"], record[0].after["enabled"]) == (True, False)
    with pytest.raises(ValidationFailed):
        services.set_backend_enabled(backend, "yes", actor=ACTOR)


def test_drain_then_remove(director):
    backend = services.create_backend(director, {"name": "b1", "url": URL1}, actor=ACTOR)
    protected = services.create_backend(director, {"name": "b2", "url": URL2, "terminate_protection": True}, actor=ACTOR)
    with pytest.raises(Forbidden):
        services.delete_backend(protected, actor=ACTOR)
    drained = services.delete_backend(backend, actor=ACTOR)
    assert drained.terminating and Backend.objects.get(pk=backend.pk).terminating
    services.remove_backend(backend.pk, actor="proxy")
    services.remove_backend(backend.pk, actor="proxy")  # second call: already gone
    assert not Backend.objects.filter(pk=backend.pk).exists()
    assert [r.action for r in audits()][-2:] == ["backend.delete", "backend.remove"]
    assert audits("backend.remove")[0].before["name"] == "b1"


def test_delete_director_records_backends(director):
    services.create_backend(director, {"name": "b1", "url": URL1}, actor=ACTOR)
    services.delete_director(director, actor=ACTOR)
    assert not Director.objects.exists() and not Backend.objects.exists()
    record = audits("director.delete")[0]
    assert record.after is None and record.before["backends"][0]["name"] == "b1"
    with pytest.raises(NotFound):
        services.update_director(director, {"queue_limit": 3}, actor=ACTOR)


def test_version_rises_with_every_change(director):
    version = services.current_version()
    backend = services.create_backend(director, {"name": "b1", "url": URL1}, actor=ACTOR)
    services.update_backend(backend, {"capacity": 2}, actor=ACTOR)
    assert services.current_version() == version + 2


def test_record_health_stores_without_a_config_version(director):
    """Health is not configuration (SPEC §11): no version bump, so no process reloads."""
    backend = services.create_backend(director, {"name": "b1", "url": URL1}, actor=ACTOR)
    version = services.current_version()
    assert health_store.record_health(backend.pk, "online") is True
    assert health_store.record_health(backend.pk, "online") is False
    assert health_store.record_health(backend.pk, "offline", error="connection refused") is True
    assert services.current_version() == version
    stored = Backend.objects.get(pk=backend.pk)
    assert (stored.health_state, stored.last_error) == ("offline", "connection refused")
    assert stored.last_checked and stored.health_changed_at == stored.last_checked
    assert health_store.record_health(10**9, "online") is False
    with pytest.raises(ValueError):
        health_store.record_health(backend.pk, "sleepy")


def test_sticky_offline_disables_on_recovery():
    director = services.create_director("s", {"sticky_offline_mode": True}, actor=ACTOR)
    backend = services.create_backend(director, {"name": "b1", "url": URL1}, actor=ACTOR)
    health_store.record_health(backend.pk, "online")  # undefined -> online: stays enabled
    assert Backend.objects.get(pk=backend.pk).enabled
    health_store.record_health(backend.pk, "offline", error="refused")
    version = services.current_version()
    record = health_store.store_health(backend.pk, "online")
    assert record.changed and record.disabled
    assert not Backend.objects.get(pk=backend.pk).enabled
    assert audits("backend.disable")[0].actor == "health-monitor"
    assert services.current_version() == version + 1  # disabling is a configuration change


def test_health_stamps_only_move_forward(director):
    """A monitor whose clock is behind the previous writer's still stores a later stamp, so
    processes ordering health news by stamp take the newest."""
    backend = services.create_backend(director, {"name": "b1", "url": URL1}, actor=ACTOR)
    first = health_store.store_health(backend.pk, "online").changed_at
    behind = first - timedelta(seconds=30)
    second = health_store.store_health(backend.pk, "offline", checked_at=behind).changed_at
    assert second > first
    assert Backend.objects.get(pk=backend.pk).health_changed_at == second


@pytest.mark.django_db(transaction=True)
def test_announce_only_on_commit(monkeypatch):
    announced = []
    monkeypatch.setattr(services, "announce_config_changed", announced.append)
    with transaction.atomic():
        services.create_director("one", {}, actor=ACTOR)
        assert announced == []
    assert announced == [services.current_version()]
    version = services.current_version()
    with pytest.raises(RuntimeError), transaction.atomic():
        services.create_director("two", {}, actor=ACTOR)
        raise RuntimeError("roll back")
    assert announced == [version] and services.current_version() == version
    assert not Director.objects.filter(name="two").exists() and len(audits()) == 1
