"""Every answer under /api/ is JSON (SPEC §13): CSRF failures, unknown paths, a missing trailing
slash, wrong methods, malformed and oversized bodies, the docs page's errors and a database
outage; /api/v1/ lists the endpoints."""
from __future__ import annotations

import json

import pytest
from django.db import OperationalError, connection
from django.test import Client

from balancer.api_json import csrf_failure
from tests.integration.test_api_auth import session_client
from tests.support.api import OPERATOR, make_director, token_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(db):
    make_director("dyn", backends={"b1": "http://127.0.0.1:3001"})
    return token_client("op", OPERATOR)


def json_body(response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    return json.loads(response.content)


def test_a_missing_trailing_slash_is_a_json_404_naming_the_right_path(operator):
    for method in ("patch", "post", "get", "delete"):
        body = json_body(getattr(operator, method)("/api/v1/directors/dyn", {"queue_limit": 3}, format="json"), 404)
        assert "/api/v1/directors/dyn/" in body["detail"], body


def test_writes_to_unknown_paths_are_json_404_even_from_a_browser_session(operator):
    assert "No API endpoint" in json_body(operator.post("/api/v1/nope", {}, format="json"), 404)["detail"]
    browser = session_client(staff=True, role="operator")
    assert "detail" in json_body(browser.post("/api/v1/nope/", "{}", content_type="application/json"), 404)


def test_a_csrf_failure_is_json(operator, rf):
    browser = session_client(staff=True, role="operator")
    response = browser.post("/api/v1/directors/dyn/backends/b1/disable", "", content_type="application/json")
    assert "CSRF" in json_body(response, 403)["detail"]
    assert "CSRF" in json_body(csrf_failure(rf.post("/api/v1/directors/"), "no token"), 403)["detail"]
    assert csrf_failure(rf.post("/admin/login/"), "no token")["Content-Type"].startswith("text/html")


def test_wrong_methods_are_json_405_with_allow(operator):
    response = operator.put("/api/v1/directors/", {}, format="json")
    assert "PUT" in json_body(response, 405)["detail"] and "GET" in response["Allow"]


def test_the_docs_page_answers_options_and_errors_as_json(operator):
    assert json_body(operator.options("/api/v1/docs/"), 200)
    assert "detail" in json_body(Client().get("/api/v1/docs/", HTTP_ACCEPT="application/json"), 401)


def test_the_docs_page_sends_a_browser_to_the_login():
    response = Client().get("/api/v1/docs/", HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8")
    assert response.status_code == 302 and response["Location"] == "/admin/login/?next=/api/v1/docs/"


def test_the_schema_without_credentials_is_a_json_401():
    assert "detail" in json_body(Client().get("/api/v1/schema/"), 401)


def test_the_schema_is_json_by_default(operator):
    assert json_body(operator.get("/api/v1/schema/"), 200)["openapi"].startswith("3.")


def test_json_nested_too_deeply_is_a_json_400(operator):
    deep = "[" * 100_000 + "]" * 100_000
    for url in ("/api/v1/directors/", "/api/v1/directors/dyn/backends/", "/api/v1/routes/"):
        response = operator.generic("POST", url, deep, content_type="application/json")
        assert "nested" in json_body(response, 400)["detail"]


def test_a_body_over_the_upload_limit_is_a_json_413(operator, settings):
    body = json.dumps({"name": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)})
    response = operator.generic("POST", "/api/v1/directors/", body, content_type="application/json")
    assert "too large" in json_body(response, 413)["detail"]


def test_the_index_lists_every_endpoint():
    body = json_body(Client().get("/api/v1/"), 200)
    assert {"directors", "routes", "audit", "schema", "docs"} <= set(body)
    assert body["directors"] == "/api/v1/directors/"
    assert "listed at /api/v1/" in json_body(Client().get("/api/"), 404)["detail"]


@pytest.mark.parametrize("method, path, data", [
    ("get", "/api/v1/directors/", None),
    ("patch", "/api/v1/directors/dyn/", {"queue_limit": 3}),
    ("get", "/api/v1/audit/", None),
    ("get", "/api/v1/schema/", None),
    ("get", "/api/v1/docs/", None),
    ("options", "/api/v1/docs/", None),
    ("post", "/api/v1/directors/dyn/backends/b1/disable", None),
])
def test_a_database_outage_is_a_json_503_on_every_path(operator, method, path, data):
    def outage(execute, sql, params, many, context):
        raise OperationalError("could not connect to server: Connection refused")

    browser = session_client(staff=True, role="operator")
    with connection.execute_wrapper(outage):
        for client in (operator, browser):
            response = getattr(client, method)(path, data, content_type="application/json",
                                               HTTP_X_CSRFTOKEN=browser.cookies["csrftoken"].value)
            assert json_body(response, 503) == {"detail": "database unavailable"}
