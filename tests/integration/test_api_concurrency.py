"""Concurrent API writes to one backend are all applied and all audited (real transactions)."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from rest_framework.test import APIClient

from balancer.models import AuditRecord, Backend
from tests.support.api import ApiTestBase, make_director

URL = "/api/v1/directors/pool/backends/b1/"
CHANGES = [{"capacity": 7}, {"health_check_mode": "lazy"}, {"role": "backup"}, {"health_check_interval": 5}]


@pytest.mark.django_db(transaction=True)
class TestConcurrentPatches(ApiTestBase):
    def test_simultaneous_patches_of_one_backend_all_land(self):
        make_director("pool", backends={"b1": "http://127.0.0.1:3001"})
        start = threading.Barrier(len(CHANGES))

        def patch(change: dict) -> int:
            try:
                client = APIClient()  # one client per thread: test clients keep per-request state
                client.credentials(**self.operator._credentials)
                start.wait(timeout=10)
                return client.patch(URL, change, format="json").status_code
            finally:
                connection.close()  # each thread has its own connection; give it back

        with ThreadPoolExecutor(len(CHANGES)) as pool:
            statuses = list(pool.map(patch, CHANGES))

        assert statuses == [200] * len(CHANGES)
        backend = Backend.objects.get(name="b1")
        assert (backend.capacity, backend.health_check_mode, backend.role, backend.health_check_interval) == (
            7, "lazy", "backup", 5.0)
        updates = AuditRecord.objects.filter(action="backend.update", backend_name="b1", actor="api:op")
        changed = sorted(next(k for k in r.after if r.after[k] != r.before[k]) for r in updates)
        assert changed == sorted(k for c in CHANGES for k in c)
