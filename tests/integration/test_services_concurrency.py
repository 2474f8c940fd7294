"""Concurrent writers through the services lose nothing (row lock inside the transaction)."""
import threading

import pytest
from django.db import connection

from balancer import health_store, services
from balancer.models import AuditRecord, Backend

ROUNDS = 15


def _in_thread(barrier, errors, work):
    def run():
        try:
            barrier.wait(timeout=10)
            work()
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()
    return threading.Thread(target=run)


@pytest.mark.django_db(transaction=True)
def test_concurrent_updates_of_one_backend_are_all_applied():
    director = services.create_director("pool", {}, actor="setup")
    backend = services.create_backend(director, {"name": "b1", "url": "http://127.0.0.1:3001"}, actor="setup")
    stale_a = Backend.objects.get(pk=backend.pk)
    stale_b = Backend.objects.get(pk=backend.pk)
    barrier, errors = threading.Barrier(2), []

    def capacities():
        for i in range(1, ROUNDS + 1):
            services.update_backend(stale_a, {"capacity": i}, actor="api:a")

    def intervals():
        for i in range(1, ROUNDS + 1):
            services.update_backend(stale_b, {"health_check_interval": float(i)}, actor="api:b")

    threads = [_in_thread(barrier, errors, capacities), _in_thread(barrier, errors, intervals)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    stored = Backend.objects.get(pk=backend.pk)
    assert (stored.capacity, stored.health_check_interval) == (ROUNDS, float(ROUNDS))
    updates = AuditRecord.objects.filter(action="backend.update")
    assert updates.filter(actor="api:a").count() == ROUNDS and updates.filter(actor="api:b").count() == ROUNDS
    # Each audit record saw the other writer's latest value: before/after differ in one field only.
    for record in updates:
        changed = {k for k in record.after if record.after[k] != record.before[k]}
        assert changed == ({"capacity"} if record.actor == "api:a" else {"health_check_interval"})


@pytest.mark.django_db(transaction=True)
def test_concurrent_health_reports_store_one_transition_and_no_version():
    director = services.create_director("pool", {}, actor="setup")
    backend = services.create_backend(director, {"name": "b1", "url": "http://127.0.0.1:3001"}, actor="setup")
    version = services.current_version()
    barrier, errors, results = threading.Barrier(4), [], []

    def report():
        results.append(health_store.record_health(backend.pk, "online"))

    threads = [_in_thread(barrier, errors, report) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert sorted(results) == [False, False, False, True]
    assert services.current_version() == version  # health is not configuration (SPEC §11)
