"""The API on a real runproxy over real sockets: a token from `createapitoken`, changes that
reach the proxy within a second and survive a restart, Swagger UI assets served locally."""
from __future__ import annotations

import time

import pytest

from tests.support.backends import http_backend
from tests.support.director import Director
from tests.support.live_api import BACKENDS, CONFIG, EFFECTIVE_WITHIN_S, api
from tests.support.waiting import wait_for

SWAGGER_BUNDLE = "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"


@pytest.fixture
def live(tmp_path):
    director = Director(tmp_path, CONFIG).start()
    try:
        yield director
    finally:
        director.stop()


def proxied_by(live: Director, name: str) -> bool:
    status, headers, _ = live.get("/")
    return status == 200 and headers.get("x-backend") == name


def test_api_changes_reach_the_proxy_and_survive_a_restart(live):
    created = live.manage("createapitoken", "ops")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert api(live, "GET", BACKENDS, None)[0] == 401

    with http_backend("b1") as backend:
        status, _, body = api(live, "POST", BACKENDS, key,
                              {"name": "b1", "url": backend.url, "health_check_interval": 0.2})
        assert status == 201 and body["port"] == backend.port
        wait_for(lambda: proxied_by(live, "b1"), 10, what="the new backend to take traffic")
        status, _, body = api(live, "GET", "/api/v1/directors/pool/", key)
        assert status == 200 and body["stats"]["load"]["total"] >= 1  # live figures from the data plane
        assert body["backends"][0]["stats"]["load"]["total"] >= 1
        assert body["backends"][0]["health"]["state"] == "online"

        status, _, body = api(live, "POST", BACKENDS + "b1/disable", key)
        assert status == 200 and body["enabled"] is False
        disabled_at = time.monotonic()
        wait_for(lambda: live.get("/")[0] == 503, 5, interval=0.02, what="the disabled backend to be left out")
        assert time.monotonic() - disabled_at <= EFFECTIVE_WITHIN_S

        live.stop()
        live.start()
        status, _, body = api(live, "GET", BACKENDS + "b1/", key)
        assert status == 200 and body["enabled"] is False and body["url"] == backend.url
        assert live.get("/")[0] == 503


def test_swagger_ui_assets_are_served_without_a_cdn(live):
    key = live.manage("createapitoken", "reader", "--viewer").stdout.strip()
    status, _, html = live.request("GET", "/api/v1/docs/", headers={"Authorization": f"Token {key}"},
                                   port=live.admin_port)
    assert status == 200 and SWAGGER_BUNDLE.encode() in html
    status, headers, script = live.get(SWAGGER_BUNDLE, port=live.admin_port)
    assert status == 200 and "javascript" in headers.get("content-type", "") and len(script) > 100_000
