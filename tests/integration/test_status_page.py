"""The live status page and its websocket through a real runproxy: staff-only access, one
frame a second per socket with live figures and rates, several sockets at once, a health
change pushed within one second of the monitor's decision, and /-/ready."""
from __future__ import annotations

import asyncio
import os
import re
import time
from datetime import datetime

import aiohttp
import pytest
from yarl import URL

from tests.support.admin_session import admin_login
from tests.support.backends import http_backend
from tests.support.director import Director
from tests.support.waiting import free_port, port_open, wait_for

PASSWORD = "status-pw"
OFFLINE_LINE = re.compile(r"^(\S+ \S+) WARNING director\.health: director app: backend gone is now offline", re.M)
LOG_TIME = "%Y-%m-%d %H:%M:%S,%f"
PG_HOST, PG_PORT = "127.0.0.1", 5432


@pytest.fixture(scope="module")
def backends():
    with http_backend("b1") as b1, http_backend("gone") as gone:
        yield {"b1": b1, "gone": gone}


@pytest.fixture(scope="module")
def director(backends, tmp_path_factory):
    config = f"""
        [directors.app]
        health_check_success_threshold = 1
        backends = {{ b1 = {{ url = "{backends['b1'].url}", health_check_interval = 0.2 }}, \
gone = {{ url = "{backends['gone'].url}", health_check_interval = 0.2 }} }}

        [[routes]]
        pass = "app"
    """
    d = Director(tmp_path_factory.mktemp("status-page"), config).start()
    try:
        d.shell(f"""
            from django.contrib.auth.models import User
            User.objects.create_superuser("admin", "a@x", {PASSWORD!r})
            User.objects.create_user("visitor", "v@x", {PASSWORD!r})
        """)
        wait_for(lambda: {d.get("/")[2] for _ in range(4)} == {b"b1", b"gone"}, 15, what="both backends online")
        yield d
    finally:
        d.stop()


async def login(d: Director, user: str) -> aiohttp.ClientSession:
    return await admin_login(d, user, PASSWORD)


async def session_without_login_form(d: Director, user: str) -> aiohttp.ClientSession:
    """A session cookie for `user` made in the database (the admin login form only admits
    staff, but other logins could exist)."""
    out = d.shell(f"""
        from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
        from django.contrib.auth.models import User
        from django.contrib.sessions.backends.db import SessionStore
        user = User.objects.get(username={user!r})
        store = SessionStore()
        store.update({{SESSION_KEY: str(user.pk), BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
                      HASH_SESSION_KEY: user.get_session_auth_hash()}})
        store.create()
        print("session", store.session_key)
    """)
    key = re.search(r"^session (\S+)$", out, re.M).group(1)
    jar = aiohttp.CookieJar(unsafe=True)
    jar.update_cookies({"sessionid": key}, response_url=URL(d.admin_url))
    return aiohttp.ClientSession(d.admin_url, cookie_jar=jar)


async def next_frame(socket, kind: str = "status", timeout: float = 5.0) -> dict:
    while True:
        frame = await asyncio.wait_for(socket.receive_json(), timeout)
        if frame["type"] == kind:
            return frame


def backend_of(frame: dict, director: str, name: str) -> dict:
    group = next(d for d in frame["directors"] if d["name"] == director)
    return next(b for b in group["backends"] if b["name"] == name)


def test_page_is_staff_only(director):
    status, headers, _ = director.get("/status/", port=director.admin_port)
    assert status == 302 and headers["location"].startswith("/admin/login/")

    async def as_user(user):
        async with await login(director, user) as session:
            async with session.get("/status/", allow_redirects=False) as response:
                return response.status, await response.text()

    async def visitor():
        async with await session_without_login_form(director, "visitor") as session:
            async with session.get("/status/", allow_redirects=False) as response:
                return response.status

    assert asyncio.run(visitor()) == 302
    status, page = asyncio.run(as_user("admin"))
    assert status == 200
    assert "/static/balancer/status.js" in page and "/static/balancer/status.css" in page
    for asset, kind in (("status.js", "javascript"), ("status.css", "css")):
        status, headers, body = director.get(f"/static/balancer/{asset}", port=director.admin_port)
        assert status == 200 and kind in headers["content-type"] and body


def test_admin_links_to_status_page(director):
    async def admin_index():
        async with await login(director, "admin") as session:
            async with session.get("/admin/") as response:
                return await response.text()

    assert 'href="/status/"' in asyncio.run(admin_index())


async def test_socket_refuses_anonymous_and_non_staff(director):
    async with aiohttp.ClientSession(director.admin_url) as anonymous:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await anonymous.ws_connect("/ws/status/")
        assert refused.value.status == 403
    async with await session_without_login_form(director, "visitor") as visitor:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await visitor.ws_connect("/ws/status/")
        assert refused.value.status == 403
    async with await session_without_login_form(director, "admin") as admin:  # the forged session works
        async with admin.ws_connect("/ws/status/") as socket:
            assert (await next_frame(socket, "history"))["type"] == "history"


async def test_frames_every_second_with_live_figures_and_rates(director):
    async with await login(director, "admin") as session, session.ws_connect("/ws/status/") as socket:
        history = await next_frame(socket, "history")
        assert history["interval"] == 1.0 and history["window"] == 300
        first = await next_frame(socket)
        assert first["live"] is True and first["error"] is None
        b1 = backend_of(first, "app", "b1")
        assert b1["state"] == "online" and b1["role"] == "active" and b1["last_checked"] is not None
        before = b1["responses"]["2xx"]

        stop = asyncio.Event()

        async def load():
            async with aiohttp.ClientSession(director.url) as traffic:
                while not stop.is_set():
                    async with traffic.get("/") as response:
                        await response.read()

        loader = asyncio.ensure_future(load())
        try:
            started = time.monotonic()
            frames = [await next_frame(socket) for _ in range(3)]
            assert time.monotonic() - started < 4.5  # about one a second
            latest = frames[-1]
            assert backend_of(latest, "app", "b1")["responses"]["2xx"] > before
            for _ in range(5):  # a rate is from the last two samples: a stalled second may read 0
                if backend_of(latest, "app", "b1")["rate"]:
                    break
                latest = await next_frame(socket)
            assert backend_of(latest, "app", "b1")["rate"] > 0
            app = next(d for d in latest["directors"] if d["name"] == "app")
            assert app["rate"] > 0 and app["load"]["total"] > 0
        finally:
            stop.set()
            await loader


async def test_last_check_is_exact_to_the_second_with_code_and_duration(director):
    """Checks every 0.2 s: the frame's last check is at most about a second old (the stored
    one is written every 5 s), with its HTTP status and duration; "since" is the stored
    transition time and the transition itself is listed."""
    async with await login(director, "admin") as session, session.ws_connect("/ws/status/") as socket:
        for _ in range(3):
            frame = await next_frame(socket)
            b1 = backend_of(frame, "app", "b1")
            assert frame["time"] - b1["last_check"]["at"] < 1.2
            assert (b1["last_check"]["ok"], b1["last_check"]["status"]) == (True, 200)
            assert 0 < b1["last_check"]["duration"] < 1
        assert b1["health_changed"] is not None and b1["health_changed"] <= frame["time"]
        assert b1["transitions"][0]["to"] == "online" and b1["transitions"][0]["reason"] == "health check passed (HTTP 200)"
        assert b1["transitions"][0]["at"] == b1["health_changed"]
        app = next(d for d in frame["directors"] if d["name"] == "app")
        assert app["unreached"] is None and app["mutable"] is False


async def test_several_sockets_each_get_frames(director):
    async with await login(director, "admin") as session:
        sockets = [await session.ws_connect("/ws/status/") for _ in range(3)]
        try:
            frames = await asyncio.gather(*(next_frame(s) for s in sockets))
            frames = await asyncio.gather(*(next_frame(s) for s in sockets))  # the regular ticks too
            assert all(f["directors"] for f in frames)
        finally:
            for socket in sockets:
                await socket.close()


async def test_offline_reaches_the_socket_within_one_second(director, backends):
    async with await login(director, "admin") as session, session.ws_connect("/ws/status/") as socket:
        assert backend_of(await next_frame(socket), "app", "gone")["state"] == "online"
        backends["gone"].stop()
        while True:
            frame = await next_frame(socket)
            if backend_of(frame, "app", "gone")["state"] == "offline":
                seen = time.time()
                break
        decided = wait_for(lambda: OFFLINE_LINE.search(director.output()), 5, what="the monitor's offline line")
        latency = seen - datetime.strptime(decided.group(1), LOG_TIME).timestamp()
        print(f"status socket showed the backend offline {latency * 1000:.0f} ms after the monitor's decision")
        assert -0.05 < latency < 1.0
        gone = backend_of(frame, "app", "gone")
        assert gone["health"] == "offline"
        frame = await next_frame(socket)  # the stored transition follows the broadcast
        gone = backend_of(frame, "app", "gone")
        assert gone["transitions"][0]["from"] == "online" and gone["transitions"][0]["to"] == "offline"
        assert "refused" in gone["transitions"][0]["reason"] and gone["last_check"]["status"] is None


def test_ready_when_serving(director):
    status, headers, body = director.get("/-/ready", port=director.admin_port)
    assert (status, body) == (200, b"ready\n")
    assert headers["content-type"].startswith("text/plain")


def test_not_ready_without_a_data_plane(client):
    """This test process has no data plane: the probe must say so."""
    response = client.get("/-/ready")
    assert response.status_code == 503
    assert b"no data plane" in response.content


def postgres_admin():
    """An autocommit connection to PostgreSQL's maintenance database (skip/fail as usual)."""
    if not port_open(PG_HOST, PG_PORT):
        message = f"PostgreSQL not reachable on {PG_HOST}:{PG_PORT}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    import psycopg

    return psycopg.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres", autocommit=True)


def test_not_ready_when_the_database_goes_away(tmp_path):
    name = f"director_ready_{os.getpid()}"
    with postgres_admin() as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
        try:
            config = f"""
                [directors.app]
                backends = {{ b = "http://127.0.0.1:{free_port()}" }}
            """
            d = Director(tmp_path, config, database_url=f"postgres://postgres@{PG_HOST}:{PG_PORT}/{name}")
            assert d.manage("migrate", "--noinput", "-v", "0").returncode == 0
            d.start()
            try:
                assert d.get("/-/ready", port=d.admin_port)[0] == 200
                admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
                wait_for(lambda: d.get("/-/ready", port=d.admin_port)[0] == 503, 10, what="/-/ready to answer 503")
                status, _, body = d.get("/-/ready", port=d.admin_port)
                assert status == 503 and body.startswith(b"not ready: database unreachable")
            finally:
                d.stop()
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
