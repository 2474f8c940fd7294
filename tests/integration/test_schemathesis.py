"""Property-based API tests: schemathesis drives every operation of the served OpenAPI schema.

In-process over WSGI, authenticated as an operator, on a fresh database per operation holding a
dynamic director `pool` (backend `b1`), a static one `app` (backend `a1`), a database route and
a config-file route. Every check schemathesis has, on schema-valid and schema-violating data:
never a 5xx; every status, content type, header and body as documented; violating data
refused, valid data accepted (SEMANTIC fields excepted: their rules say more than a pattern
can, like a port above 65535 or a CA file that does not exist); unsupported methods 405.
"""
from __future__ import annotations

import copy
import json

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, transaction
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS as REGISTERED_CHECKS
from schemathesis.specs.openapi.checks import positive_data_acceptance

from balancer import bucket_services, route_services
from tests.support.api import OPERATOR, make_director, token_client

CHECKS = [check for check in REGISTERED_CHECKS.get_all() if check is not positive_data_acceptance]
# Fields whose rules a schema pattern cannot fully state; a 400 naming only these (or the
# body as a whole: a route needs exactly one action) is a fair answer to schema-valid data.
SEMANTIC = {"url", "tls_ca_file", "tls_server_name", "tls_verify", "health_check_expected_status", "host", "pass",
            "http", "fcgi", "backend_from", "since", "until", "non_field_errors",
            "cache_max_size",  # "99999GiB" fits the pattern, not the bound
            "x_sendfile_root",  # an existing directory, required when allow_x_sendfile is true
            "bucket", "bucket_from",  # only with pass (like backend_from)
            "rate", "parent"}  # buckets: rate <= ceil and siblings' rates <= 1; the parent must exist
KNOWN = {"director": ("pool", "app"), "backend": ("b1", "a1"), "bucket": ("gold", "gold")}
ROUTES: dict[str, tuple] = {}  # "route" -> (database route id, file route id), set per example
TOKEN: dict[str, str] = {}  # the operator's Authorization header, set per example
EXAMPLES = settings(max_examples=15, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.filter_too_much])


@pytest.fixture
def auth_headers(db) -> dict:
    pool = make_director("pool", backends={"b1": "http://127.0.0.1:3001"})
    app = make_director("app", dynamic=False, backends={"a1": "http://127.0.0.1:3002"})
    for director in (pool, app):
        bucket_services.create_bucket(director, {"name": "gold", "rate": 0.5}, actor="test", allow_static=True)
    api_route = route_services.create_route({"path": "/", "pass": "pool"}, actor="test")
    file_route = route_services.create_route({"path": "/app/", "pass": "app"}, actor="test", file_index=0)
    ROUTES["route"] = (str(api_route.pk), str(file_route.pk))
    client = token_client("fuzzer", OPERATOR)
    TOKEN["Authorization"] = client._credentials["HTTP_AUTHORIZATION"]
    return dict(TOKEN)


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
SERVED = json.loads(json.dumps(served_schema(), default=str))
schema = schemathesis.openapi.from_dict(copy.deepcopy(SERVED))  # schemathesis adds links it infers
schema.app = get_wsgi_application()
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


@schema.auth(refresh_interval=None)  # the token changes per example: never cached
class OperatorToken:
    """The operator's token as explicit authentication: the auth checks then try without it."""

    def get(self, case, ctx) -> str:
        return TOKEN.get("Authorization", "")

    def set(self, case, data: str, ctx) -> None:
        case.headers = {**(case.headers or {}), "Authorization": data}


def test_served_schema_is_the_tested_one(auth_headers):
    client = Client(HTTP_AUTHORIZATION=auth_headers["Authorization"])
    assert client.get("/api/v1/schema/?format=json").json() == SERVED


def positive(case) -> bool:
    return case.meta is None or case.meta.generation.mode == GenerationMode.POSITIVE


def aim_at_existing_objects(case) -> None:
    """For schema-valid cases, by the generated director name's (or route id's) length: aim at
    `pool`/`b1` (the database route), at `app`/`a1` (the file route), or keep the generated
    values (unknown objects: 404 paths)."""
    params = case.path_parameters or {}
    if not positive(case):
        return
    which = len(str(params.get("director", params.get("route", "")))) % 3
    for name, choices in {**KNOWN, **ROUTES}.items():
        if name in params and which < len(choices):
            params[name] = choices[which]


@schema.parametrize()
@EXAMPLES
def test_every_operation_conforms_and_never_fails(case, auth_headers):
    aim_at_existing_objects(case)
    check_semantic_refusals(case, case.call_and_validate(checks=CHECKS))


def check_semantic_refusals(case, response) -> None:
    """Schema-valid data answered 400 only for what the schema cannot state (SEMANTIC)."""
    if positive(case) and response.status_code == 400:
        assert refused_fields(response.json()) <= SEMANTIC, (case.body, response.json())


class StatefulApi(schema.as_state_machine()):  # type: ignore[misc]
    """Chains operations along the schema's links: create a director, then read, change and
    delete it and its backends; create a route, then read, change and delete it. Each scenario
    starts from the fixture's database (a savepoint), so a replayed scenario meets the same
    answers (hypothesis requires it)."""

    def setup(self) -> None:
        self.savepoint = transaction.savepoint()

    def teardown(self) -> None:
        transaction.savepoint_rollback(self.savepoint)

    def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:
        case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)
        check_semantic_refusals(case, response)


def test_create_read_update_delete_chains_conform(auth_headers):
    StatefulApi.run(settings=settings(EXAMPLES, max_examples=20, stateful_step_count=8))


def refused_fields(errors: dict) -> set[str]:
    """Field names of a 400 body; a bulk create's `{index: {field: [...]}}` by their fields."""
    return {name for key, value in errors.items()
            for name in (refused_fields(value) if isinstance(value, dict) else {key})}
