"""Sticky cookie (SPEC §15) through a real runproxy: a client without the cookie gets one
naming the backend that answered, stays on that backend across many requests (rr over three
backends), waits for it when it is full rather than going elsewhere, and moves to another
backend with a new cookie once its backend is disabled through the API. A WebSocket
handshake goes to the cookie's backend too."""
from __future__ import annotations

import concurrent.futures
import json
import re

import aiohttp
import pytest

from tests.support.backends import http_backend
from tests.support.director import Director
from tests.support.waiting import wait_for
from tests.support.ws_backends import websocket_backend
from tests.support.ws_clients import connect

COOKIE = re.compile(r"^SRV=([A-Za-z0-9_.-]+); Path=/; HttpOnly$")


@pytest.fixture(scope="module")
def director(tmp_path_factory):
    w1, w2 = websocket_backend("w1"), websocket_backend("w2")
    with http_backend("s1") as s1, http_backend("s2") as s2, http_backend("s3") as s3, \
            http_backend("c1") as c1, http_backend("c2") as c2:
        def b(backend, extra=""):
            return f'{backend.name} = {{ url = "{backend.url}", health_check_interval = 0.5{extra} }}'
        config = f"""
            [directors.sticky]
            sticky_cookie = "SRV"
            health_check_success_threshold = 1
            backends = {{ {b(s1)}, {b(s2)}, {b(s3)} }}

            [directors.capped]
            sticky_cookie = "SRV"
            health_check_success_threshold = 1
            queue_timeout = 30
            backends = {{ {b(c1, ", capacity = 1")}, {b(c2, ", capacity = 1")} }}

            [directors.plain]
            health_check_success_threshold = 1
            backends = {{ {b(s1)} }}

            [directors.ws]
            sticky_cookie = "SRV"
            health_check_success_threshold = 1
            backends = {{ {b(w1)}, {b(w2)} }}

            [[routes]]
            host = "sticky"
            pass = "sticky"
            [[routes]]
            host = "capped"
            pass = "capped"
            [[routes]]
            host = "plain"
            pass = "plain"
            [[routes]]
            host = "ws"
            pass = "ws"
        """
        d = Director(tmp_path_factory.mktemp("sticky"), config).start()
        try:
            for host, count in (("sticky", 3), ("capped", 2), ("plain", 1)):
                wait_for(lambda: len({get(d, host)[1]["x-backend"] for _ in range(6)}) == count, 20,
                         what=f"every backend of {host} online")
            wait_for(lambda: len({get(d, "ws")[2] for _ in range(4)}) == 2, 20, what="both ws backends online")
            created = d.manage("createapitoken", "ops")
            assert created.returncode == 0, created.stderr
            d.token = created.stdout.strip()
            yield d
        finally:
            d.stop()
            w1.stop()
            w2.stop()


def get(director, host: str, cookie: str | None = None, path: str = "/"):
    headers = {"Host": host, **({"Cookie": cookie} if cookie else {})}
    return director.get(path, headers=headers)


def backend_action(director, name: str, action: str) -> None:
    status, _, body = director.request("POST", f"/api/v1/directors/sticky/backends/{name}/{action}",
                                       headers={"Authorization": f"Token {director.token}"},
                                       port=director.admin_port)
    assert status == 200, body
    assert json.loads(body)["enabled"] is (action == "enable")


def sticky_backend(headers) -> str:
    match = COOKIE.match(headers.get("set-cookie", ""))
    assert match, headers
    return match.group(1)


def test_a_new_client_gets_the_cookie_of_the_backend_that_answered(director):
    for _ in range(3):
        status, headers, body = get(director, "sticky")
        assert status == 200 and sticky_backend(headers) == headers["x-backend"] == body.decode()


def test_a_sticky_client_stays_until_its_backend_is_disabled_then_moves(director):
    _, headers, _ = get(director, "sticky")
    home = sticky_backend(headers)
    cookie = f"theme=dark; SRV={home}"
    for _ in range(30):
        status, headers, _ = get(director, "sticky", cookie)
        assert status == 200 and headers["x-backend"] == home
        assert "set-cookie" not in headers  # it has the right cookie already
    backend_action(director, home, "disable")
    try:
        moved = wait_for(lambda: (r := get(director, "sticky", cookie)) and r[1]["x-backend"] != home and r, 5,
                         what="the client to move off its disabled backend")
        new_home = sticky_backend(moved[1])
        assert new_home == moved[1]["x-backend"] != home
        for _ in range(20):
            status, headers, _ = get(director, "sticky", f"SRV={new_home}")
            assert status == 200 and headers["x-backend"] == new_home and "set-cookie" not in headers
    finally:
        backend_action(director, home, "enable")


def test_a_cookie_naming_no_backend_is_balanced_and_replaced(director):
    status, headers, _ = get(director, "sticky", "SRV=nosuch")
    assert status == 200 and sticky_backend(headers) == headers["x-backend"]


def test_a_sticky_client_waits_for_its_full_backend(director):
    """c1 has capacity 1 and is busy; c2 is free. The c1 client's next request waits for c1."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        busy = pool.submit(get, director, "capped", "SRV=c1", "/slow?delay=1.5")
        wait_for(lambda: _in_flight(director, "c1"), 10, what="the slow request on c1")
        status, headers, _ = get(director, "capped", "SRV=c1")
        assert status == 200 and headers["x-backend"] == "c1" and "set-cookie" not in headers
        assert busy.result()[1]["x-backend"] == "c1"


def _in_flight(director, backend: str) -> bool:
    status, _, body = director.request("GET", "/api/v1/directors/capped/backends/" + backend + "/",
                                       headers={"Authorization": f"Token {director.token}"}, port=director.admin_port)
    return status == 200 and json.loads(body)["stats"]["load"]["current"] == 1


def test_without_the_setting_no_cookie(director):
    status, headers, _ = get(director, "plain")
    assert status == 200 and "set-cookie" not in headers


async def test_a_websocket_handshake_goes_to_the_cookies_backend(director):
    async with aiohttp.ClientSession() as session:
        for wanted in ("w2", "w2", "w1", "w2", "w1"):
            async with connect(session, director, host="ws", headers={"Host": "ws", "Cookie": f"SRV={wanted}"}) as ws:
                await ws.send_str("name")
                assert (await ws.receive(timeout=10)).data == wanted
