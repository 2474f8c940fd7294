"""The JSON API of a real runproxy, for integration tests: a dynamic director "pool" and
an operator token made by `manage.py createapitoken`."""
from __future__ import annotations

import contextlib
import json

import pytest

from tests.support.director import Director
from tests.support.waiting import wait_for

CONFIG = """
    [directors.pool]
    dynamic = true
    health_check_success_threshold = 1

    [[routes]]
    path = "/"
    pass = "pool"
"""
BACKENDS = "/api/v1/directors/pool/backends/"
EFFECTIVE_WITHIN_S = 1.0  # SPEC §9: every change is effective in the proxy within one second
CHECK_INTERVAL_S = 0.2  # health-check interval of backends added through LiveApi


def api(live: Director, method: str, path: str, key: str | None, data=None):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Token {key}"
    body = json.dumps(data).encode() if data is not None else None
    status, response_headers, payload = live.request(method, path, body=body, headers=headers, port=live.admin_port)
    return status, response_headers, json.loads(payload) if payload else None


class LiveApi:
    """A runproxy with the test_api_live CONFIG (dynamic director "pool") and an operator token."""

    def __init__(self, director: Director):
        self.director = director
        created = director.manage("createapitoken", "ops")
        assert created.returncode == 0, created.stderr
        self.key = created.stdout.strip()

    def call(self, method: str, path: str, data=None, *, expect: int | None = None):
        status, _, body = api(self.director, method, path, self.key, data)
        if expect is not None:
            assert status == expect, (method, path, status, body)
        return status, body

    def add_backend(self, backend, **fields) -> dict:
        data = {"name": backend.name, "url": backend.url, "health_check_interval": CHECK_INTERVAL_S, **fields}
        return self.call("POST", BACKENDS, data, expect=201)[1]

    def backend(self, name: str) -> tuple[int, dict | None]:
        return self.call("GET", f"{BACKENDS}{name}/")

    def backend_names(self) -> list[str]:
        return [b["name"] for b in self.call("GET", BACKENDS, expect=200)[1]]

    def wait_online(self, name: str, timeout: float = 10) -> None:
        wait_for(lambda: self.backend(name)[1]["health"]["state"] == "online", timeout, interval=0.05,
                 what=f"backend {name} to be online")

    def wait_removed(self, name: str, timeout: float = 10) -> None:
        wait_for(lambda: name not in self.backend_names(), timeout, interval=0.05, what=f"backend {name} to be removed")


@contextlib.contextmanager
def live_api(tmp_path, config: str = CONFIG):
    """A started runproxy with `config` and an operator token; stopped afterwards."""
    director = Director(tmp_path, config).start()
    try:
        yield LiveApi(director)
    finally:
        director.stop()


@pytest.fixture
def live(tmp_path):
    """A runproxy with CONFIG and an operator token: import this fixture where needed."""
    with live_api(tmp_path) as api_:
        yield api_
