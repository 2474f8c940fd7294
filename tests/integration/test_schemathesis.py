"""Property-based API tests: schemathesis drives every operation of the served OpenAPI schema.

In-process over WSGI, authenticated as an operator, on a fresh database per operation holding a
dynamic director `pool` (backend `b1`), a static one `app` (backend `a1`), a database route and
a config-file route. Checks: never a
5xx, every status, content type, header and body as the schema documents.
"""
from __future__ import annotations

import json

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from balancer import route_services
from tests.support.api import OPERATOR, make_director, token_client

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
KNOWN = {"director": ("pool", "app"), "backend": ("b1", "a1")}
ROUTES: dict[str, tuple] = {}  # "route" -> (database route id, file route id), set per example
EXAMPLES = settings(max_examples=15, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.filter_too_much])


@pytest.fixture
def auth_headers(db) -> dict:
    make_director("pool", backends={"b1": "http://127.0.0.1:3001"})
    make_director("app", dynamic=False, backends={"a1": "http://127.0.0.1:3002"})
    api_route = route_services.create_route({"path": "/", "pass": "pool"}, actor="test")
    file_route = route_services.create_route({"path": "/app/", "pass": "app"}, actor="test", file_index=0)
    ROUTES["route"] = (str(api_route.pk), str(file_route.pk))
    client = token_client("fuzzer", OPERATOR)
    return {"Authorization": client._credentials["HTTP_AUTHORIZATION"]}


@pytest.fixture(autouse=True)
def keep_test_connection_open(db):
    """Django's WSGI app closes the database connection after each request; in a test
    transaction it must not (Django's own test client does the same)."""
    for signal in (signals.request_started, signals.request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (signals.request_started, signals.request_finished):
        signal.connect(close_old_connections)


def served_schema() -> dict:
    """The document /api/v1/schema/ serves (test_served_schema_is_the_tested_one checks that)."""
    return SchemaGenerator().get_schema(request=None, public=True)


# Loaded at import: schemathesis' fixture-based loader does not run under pytest 9.
schema = schemathesis.openapi.from_dict(json.loads(json.dumps(served_schema(), default=str)))
schema.app = get_wsgi_application()


def test_served_schema_is_the_tested_one(auth_headers):
    client = Client(HTTP_AUTHORIZATION=auth_headers["Authorization"])
    assert client.get("/api/v1/schema/?format=json").json() == schema.raw_schema


def aim_at_existing_objects(case) -> None:
    """By the generated director name's (or route id's) length: aim at `pool`/`b1` (the
    database route), at `app`/`a1` (the file route), or keep the generated values (unknown
    objects: 404 paths)."""
    params = case.path_parameters or {}
    which = len(str(params.get("director", params.get("route", "")))) % 3
    for name, choices in {**KNOWN, **ROUTES}.items():
        if name in params and which < len(choices):
            params[name] = choices[which]


@schema.parametrize()
@EXAMPLES
def test_every_operation_conforms_and_never_fails(case, auth_headers):
    aim_at_existing_objects(case)
    case.call_and_validate(headers=auth_headers, checks=CHECKS)
