"""X-Request-ID through a real runproxy (SPEC §12): a new random 128-bit id in hex unless a
trusted proxy sent a valid one; the backend sees it (HTTP header; FastCGI HTTP_X_REQUEST_ID
from flup); the client gets it back on every response, Director's own 404/502/503/504 too.

Trusted and untrusted clients are both on loopback: the trusted proxy is 127.0.0.2, which a
client socket can bind to on Linux."""
from __future__ import annotations

import http.client
import json
import re

import pytest

from tests.support.backends import http_backend
from tests.support.director import Director
from tests.support.fastcgi_servers import start_flup
from tests.support.waiting import free_port, wait_for

TRUSTED = "127.0.0.2"
GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module")
def director(tmp_path_factory):
    work = tmp_path_factory.mktemp("request-ids")
    flup = start_flup("127.0.0.1", free_port(), work)
    try:
        with http_backend("b1") as b1:
            yield _start(work, b1.url, flup.port)
    finally:
        flup.stop()


def _start(work, backend_url: str, flup_port: int):
    check = "health_check_interval = 0.3"
    config = f"""
        [proxy]
        trusted_proxies = ["{TRUSTED}"]

        [directors.app]
        health_check_success_threshold = 1
        backends = {{ b1 = {{ url = "{backend_url}", {check} }} }}

        [directors.fcgi]
        health_check_success_threshold = 1
        backends = {{ f1 = {{ url = "fastcgi://127.0.0.1:{flup_port}", {check} }} }}

        [directors.off]
        enabled = false
        backends = {{ x = {{ url = "{backend_url}", {check} }} }}

        [directors.slowpoke]
        health_check_success_threshold = 1
        read_timeout = 0.3
        max_retry_count = 0
        backends = {{ s1 = {{ url = "{backend_url}", {check} }} }}

        [[routes]]
        host = "fcgi"
        pass = "fcgi"

        [[routes]]
        host = "off"
        pass = "off"

        [[routes]]
        host = "slowpoke"
        pass = "slowpoke"

        [[routes]]
        host = "gone"
        http = "127.0.0.1:{free_port()}"

        [[routes]]
        host = "app"
        pass = "app"
    """
    d = Director(work / "director", config).start()
    for host in ("app", "fcgi", "slowpoke"):
        wait_for(lambda: d.get("/", headers={"Host": host})[0] == 200, 20, what=f"director {host} online")
    return d


@pytest.fixture(scope="module", autouse=True)
def stop_director(director):
    yield
    director.stop()


def request(d: Director, path: str, headers: dict, source: str = "127.0.0.1"):
    """(status, response headers, body) of one request from the `source` address."""
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30, source_address=(source, 0))
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def seen_by_backend(d: Director, request_id: str | None = None, source: str = "127.0.0.1") -> tuple[str, list[str]]:
    """(id returned to the client, X-Request-ID values the HTTP backend received)."""
    headers = {"Host": "app"} if request_id is None else {"Host": "app", "X-Request-ID": request_id}
    status, response_headers, body = request(d, "/headers", headers, source)
    assert status == 200, body
    return response_headers["x-request-id"], json.loads(body)["x-request-id"]


def test_a_new_id_is_generated_sent_upstream_and_returned(director):
    returned, seen = seen_by_backend(director)
    assert GENERATED.fullmatch(returned), returned
    assert seen == [returned]
    assert seen_by_backend(director)[0] != returned  # a new one per request


def test_a_trusted_proxys_id_is_kept(director):
    returned, seen = seen_by_backend(director, "edge-42/abc", source=TRUSTED)
    assert returned == "edge-42/abc" and seen == ["edge-42/abc"]
    longest = "x" * 200
    assert seen_by_backend(director, longest, source=TRUSTED)[0] == longest


def test_an_untrusted_clients_id_is_replaced(director):
    returned, seen = seen_by_backend(director, "client-chosen")
    assert GENERATED.fullmatch(returned) and seen == [returned]


@pytest.mark.parametrize("invalid", ["y" * 201, "has space", "tab\there", "caf\u00e9"])
def test_an_invalid_id_from_a_trusted_proxy_is_replaced(director, invalid):
    returned, seen = seen_by_backend(director, invalid.encode("utf-8").decode("latin-1"), source=TRUSTED)
    assert GENERATED.fullmatch(returned), returned
    assert seen == [returned]


def test_fastcgi_backends_get_http_x_request_id(director):
    status, headers, body = request(director, "/", {"Host": "fcgi", "X-Request-ID": "from-edge"}, TRUSTED)
    assert status == 200, body
    assert json.loads(body)["environ"]["HTTP_X_REQUEST_ID"] == "from-edge" == headers["x-request-id"]
    status, headers, body = request(director, "/", {"Host": "fcgi"})
    assert GENERATED.fullmatch(headers["x-request-id"])
    assert json.loads(body)["environ"]["HTTP_X_REQUEST_ID"] == headers["x-request-id"]


@pytest.mark.parametrize(("host", "path", "status"), [
    ("nowhere", "/", 404),  # no route
    ("off", "/", 503),  # director disabled
    ("gone", "/", 502),  # road warrior to a closed port
    ("slowpoke", "/slow?delay=2", 504),  # read_timeout 0.3 s, no retry
])
def test_directors_own_error_responses_carry_the_id(director, host, path, status):
    def online():  # a timeout takes the backend offline until its next good check
        if host == "slowpoke":
            wait_for(lambda: director.get("/", headers={"Host": host})[0] == 200, 20, what="slowpoke online again")

    online()
    got, headers, _ = request(director, path, {"Host": host})
    assert got == status
    assert GENERATED.fullmatch(headers["x-request-id"])
    online()
    got, headers, _ = request(director, path, {"Host": host, "X-Request-ID": "err-trace-1"}, TRUSTED)
    assert got == status and headers["x-request-id"] == "err-trace-1"


def test_requests_refused_by_the_server_carry_an_id(director):
    conn = http.client.HTTPConnection("127.0.0.1", director.port, timeout=30)
    try:
        conn.request("TRACE", "/", headers={"Host": "app"})
        response = conn.getresponse()
        response.read()
        assert response.status == 405
        assert GENERATED.fullmatch(response.getheader("x-request-id") or "")
    finally:
        conn.close()
