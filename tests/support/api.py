"""One generic base for JSON API tests (SPEC §9).

Resource tests derive from `ApiTestBase` and send every request through `call()` / `write()`:
a failed or read-only request must leave the database untouched and unaudited; a successful
write must leave exactly one audit record naming the API user, the action and the object.
"""
from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from balancer import services
from balancer.models import AuditRecord, Backend, Director, Route
from balancer.permissions import grant_role

OPERATOR = "operator"
VIEWER = "viewer"
TEST_ACTOR = "test"


def token_client(username: str, role: str | None = None) -> APIClient:
    """A client sending `Authorization: Token ...` for a new user with `role` (None: no role)."""
    user = get_user_model().objects.create_user(username)
    if role:
        grant_role(user, role)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    client.user = user
    return client


def make_director(name: str = "pool", *, dynamic: bool = True, backends: dict | None = None, **settings) -> Director:
    """A director (static when dynamic=False) with backends {name: url or field dict}, via services."""
    director = services.create_director(name, settings, actor=TEST_ACTOR, dynamic=dynamic)
    for backend_name, spec in (backends or {}).items():
        fields = {"url": spec} if isinstance(spec, str) else dict(spec)
        services.create_backend(director, {"name": backend_name, **fields}, actor=TEST_ACTOR, allow_static=True)
    return director


def db_state() -> tuple[list, list, list]:
    """Every director, backend and route row, to prove a request saved nothing."""
    return (list(Director.objects.order_by("pk").values()), list(Backend.objects.order_by("pk").values()),
            list(Route.objects.order_by("pk").values()))


def last_audit_id() -> int:
    return AuditRecord.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


class ApiTestBase:
    """Clients for an operator, a viewer and an anonymous caller, plus audited request helpers."""

    @pytest.fixture(autouse=True)
    def _api_clients(self, db):
        self.operator = token_client("op", OPERATOR)
        self.viewer = token_client("watcher", VIEWER)
        self.anonymous = APIClient()

    def call(self, method: str, url: str, data=None, *, expect: int, client: APIClient | None = None):
        """Send a request that must change nothing (a read, or a refused write)."""
        before, audit_mark = db_state(), last_audit_id()
        response = self._send(method, url, data, client)
        assert response.status_code == expect, (method, url, response.status_code, response.content)
        assert db_state() == before, f"{method} {url} -> {expect} changed the database"
        assert last_audit_id() == audit_mark, f"{method} {url} -> {expect} wrote an audit record"
        return response

    def write(self, method: str, url: str, data=None, *, expect: int, action: str, director: str,
              backend: str = "", client: APIClient | None = None):
        """Send a write that must succeed and be audited once; returns (response, audit record)."""
        client = client or self.operator
        audit_mark = last_audit_id()
        response = self._send(method, url, data, client)
        assert response.status_code == expect, (method, url, response.status_code, response.content)
        records = list(AuditRecord.objects.filter(pk__gt=audit_mark))
        assert len(records) == 1, f"{method} {url}: expected one audit record, got {records}"
        record = records[0]
        assert (record.actor, record.action, record.director_name, record.backend_name) == (
            f"api:{client.user.get_username()}", action, director, backend)
        return response, record

    def rejected(self, method: str, url: str, data, *, fields, expect: int = 400):
        """A write refused with per-field messages naming exactly `fields`; nothing saved."""
        response = self.call(method, url, data, expect=expect, client=self.operator)
        body = response.json()
        assert set(body) == set(fields), body
        assert all(isinstance(m, str) and m for messages in body.values() for m in messages), body
        return body

    def _send(self, method: str, url: str, data, client):
        """JSON request (empty body when `data` is None) from an APIClient or a browser-like Client."""
        send = getattr(client or self.operator, method.lower())
        if method.upper() == "GET":
            return send(url)
        return send(url, "" if data is None else json.dumps(data), content_type="application/json")
