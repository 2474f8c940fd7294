"""The traffic app without sockets and without Django: routing, dispatch, retries, relay and
the director's own answers, over fake upstream clients (proxy.app, proxy.dispatch,
proxy.relay, proxy.state, proxy.routes)."""
from __future__ import annotations

import asyncio

import pytest

from proxy.addresses import BackendAddress
from proxy.app import ProxyApp
from proxy.dispatch import HealthSink
from proxy.errors import ConnectError, ReadTimeout
from proxy.headers import HeaderRules
from proxy.routes import Route, find_route
from proxy.state import DataPlane
from proxy.upstream import Upstream, UpstreamResponse
from tests.support.rows import route_row

DIRECTOR = {"id": 1, "name": "app", "dynamic": False, "enabled": True, "scheduler": "rr", "queue_limit": 4,
            "queue_timeout": 1, "retry_after": 7, "max_retry_count": 3, "passive_failure_threshold": 1,
            "connect_timeout": 1, "read_timeout": 1, "write_timeout": 1, "on_client_abort": "close",
            "enqueue_on_unavailable": False}


def backend(backend_id: int, name: str, port: int, state: str = "online") -> dict:
    return {"id": backend_id, "director_id": 1, "name": name, "url": f"http://127.0.0.1:{port}", "role": "active",
            "capacity": 0, "enabled": True, "terminating": False, "position": backend_id, "health_state": state,
            "health_changed_at": None}


class FakeResponse(UpstreamResponse):
    def __init__(self, status: int, body: bytes, name: str):
        self.status = status
        self.headers = [(b"content-length", b"%d" % len(body)), (b"x-backend", name.encode())]
        self._chunks = [body]
        self.released = False

    @property
    def body_complete(self) -> bool:
        return True

    async def read(self) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""

    def release(self) -> None:
        self.released = True

    async def abort(self, notify: bool = False) -> None:
        self.released = True


class FakeUpstream(Upstream):
    """Answers 200 with its name, or raises the next of `failures`; records what it got."""

    def __init__(self, address: BackendAddress, name: str, failures=()):
        super().__init__(address)
        self.name = name
        self.failures = list(failures)
        self.requests = []

    async def send(self, request, timeouts, *, fresh=False, notify_abort=False):
        self.requests.append(request)
        if self.failures:
            raise self.failures.pop(0)
        return FakeResponse(200, self.name.encode(), self.name)

    async def close(self) -> None:
        pass


class RecordingHealth(HealthSink):
    def __init__(self):
        self.failures = []

    def failed(self, backend_id: int, reason: str) -> None:
        self.failures.append(backend_id)

    def activity(self, backend_id: int) -> None:
        pass


def make_app(routes, backends, failures=None):
    failures = failures or {}
    upstreams = {}

    def factory(address):
        name = {3001: "one", 3002: "two", 3000: "warrior"}.get(address.port, str(address.port))
        upstreams[name] = FakeUpstream(address, name, failures.get(name, ()))
        return upstreams[name]

    plane = DataPlane(upstream_factory=factory)
    plane.apply_rows(1, [DIRECTOR], backends, list(routes))
    health = RecordingHealth()
    return ProxyApp(plane, HeaderRules("director"), health), plane, upstreams, health


async def call(app, method="GET", path=b"/", host=b"example.com", body=b"", headers=()):
    scope = {"type": "http", "method": method, "path": path.decode(), "raw_path": path, "query_string": b"",
             "http_version": "1.1", "scheme": "http", "headers": [(b"host", host), *headers], "client": ["10.0.0.1", 5000],
             "server": ["127.0.0.1", 8080], "extensions": {"director": {"body_file": None, "body_length": len(body)}}}
    sent = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), 5)
    start = next(m for m in sent if m["type"] == "http.response.start")
    data = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.lower(): v for k, v in start["headers"]}, data


PASS = route_row(director="app")


async def test_a_request_no_route_matches_gets_404():
    app, *_ = make_app([route_row(host="shop.example.com", director="app")], [backend(1, "one", 3001)])
    assert (await call(app, host=b"other.example.com"))[0] == 404


async def test_pass_goes_to_the_director_and_adds_via():
    app, _, upstreams, _ = make_app([PASS], [backend(1, "one", 3001)])
    status, headers, body = await call(app)
    assert (status, body) == (200, b"one")
    assert headers[b"via"] == b"1.1 director"
    sent = dict(upstreams["one"].requests[0].headers)
    assert sent[b"x-forwarded-for"] == b"10.0.0.1" and sent[b"via"] == b"1.1 director"


async def test_a_failed_connect_is_retried_on_the_other_backend_and_reported():
    app, plane, _, health = make_app([PASS], [backend(1, "one", 3001), backend(2, "two", 3002)],
                                     failures={"one": [ConnectError("refused")]})
    answers = {(await call(app))[2] for _ in range(2)}
    assert answers == {b"two"}
    assert health.failures == [1] and plane.backends[1].health == "offline"


async def test_a_post_that_reached_the_backend_is_not_sent_again():
    app, _, upstreams, _ = make_app([PASS], [backend(1, "one", 3001), backend(2, "two", 3002)],
                                    failures={"one": [ReadTimeout("read")], "two": [ReadTimeout("read")]})
    statuses = [(await call(app, method="POST", body=b"x"))[0] for _ in range(2)]
    assert statuses == [504, 504]
    assert len(upstreams["one"].requests) == len(upstreams["two"].requests) == 1


async def test_nothing_online_is_503_with_retry_after_and_counted_as_dropped():
    app, plane, _, _ = make_app([PASS], [backend(1, "one", 3001, state="offline")])
    status, headers, _ = await call(app)
    assert status == 503 and headers[b"retry-after"] == b"7"
    assert plane.directors["app"].dropped == 1


async def test_a_road_warrior_goes_straight_to_its_address():
    warrior = route_row(path="/legacy/", http="127.0.0.1:3000")
    app, _, upstreams, _ = make_app([warrior, PASS], [backend(1, "one", 3001)])
    assert (await call(app, path=b"/legacy/x"))[2] == b"warrior"
    assert upstreams["warrior"].requests[0].target == b"/legacy/x"  # never stripped


@pytest.mark.parametrize("host, path, expected", [
    (b"Shop.Example.com:8080", b"/cart", "shop"),
    (b"other", b"/apple", "prefix"),
    (b"other", b"/x", None),
])
def test_routes_match_host_without_port_and_plain_prefixes_first_wins(host, path, expected):
    routes = (Route(host=b"shop.example.com", path=b"/", director="shop"), Route(host=None, path=b"/app", director="prefix"),
              Route(host=None, path=b"/", director="never", index=2))
    found = find_route(routes[:2], host, path)
    assert (found.director if found else None) == expected


def test_the_data_plane_imports_no_control_plane():
    """proxy/ runs without Django: balancer hands it what it needs at start."""
    import subprocess
    import sys

    code = ("import sys, proxy.app, proxy.state, proxy.dispatch, proxy.relay, proxy.supervisor, proxy.snapshot; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'balancer', 'channels', 'rest_framework'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


def test_a_fastcgi_client_shared_by_two_directors_names_both_in_its_log_lines():
    """One client per address: its stderr lines name every backend behind it, not only the
    first one the data plane met."""
    plane = DataPlane()
    other = {**DIRECTOR, "id": 2, "name": "shop"}
    php = {"url": "fastcgi://127.0.0.1:9000"}
    plane.apply_rows(1, [DIRECTOR, other], [{**backend(1, "php1", 9000), **php},
                                             {**backend(2, "fpm", 9000), "director_id": 2, **php}], [])
    upstream = plane.backends[1].upstream
    assert upstream is plane.backends[2].upstream
    assert upstream.log_context == "director app backend php1, director shop backend fpm"


async def test_a_websocket_handshake_on_a_connection_that_cannot_be_handed_over_is_400():
    """As on HTTP/2: the server offers no `take_over` extension."""
    app, _, upstreams, _ = make_app([PASS], [backend(1, "one", 3001)])
    handshake = [(b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
                 (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="), (b"sec-websocket-version", b"13")]
    assert (await call(app, headers=handshake))[0] == 400
    assert upstreams["one"].requests == []
    assert (await call(app, headers=[(b"upgrade", b"h2c"), (b"connection", b"Upgrade")]))[2] == b"one"  # not ours
