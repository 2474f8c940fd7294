"""The status page shows each backend's p50/p95 response time of the last minute and its body
bytes (SPEC §13), from the data plane's histograms, over a real runproxy."""
import asyncio

import aiohttp

from tests.integration.test_status_page import backend_of, next_frame
from tests.support.admin_session import admin_login
from tests.support.backends import http_backend
from tests.support.director import Director
from tests.support.waiting import wait_for

PASSWORD = "latency-pw-1234"


async def test_slow_requests_show_in_p50_p95_and_bytes(tmp_path):
    with http_backend("slow") as slow:
        config = f"""
            [directors.app]
            health_check_success_threshold = 1
            backends = {{ slow = {{ url = "{slow.url}", health_check_interval = 0.5 }} }}

            [[routes]]
            pass = "app"
        """
        director = Director(tmp_path, config).start()
        try:
            director.shell(f'from django.contrib.auth.models import User\n'
                           f'User.objects.create_superuser("admin", "a@x", {PASSWORD!r})')
            wait_for(lambda: director.get("/")[0] == 200, 20, what="the backend online")
            async with await admin_login(director, "admin", PASSWORD) as session, \
                    session.ws_connect("/ws/status/") as socket, aiohttp.ClientSession(director.url) as traffic:
                await next_frame(socket)  # the feed samples from now on

                async def slow_request():
                    async with traffic.post("/slow?delay=0.2", data=b"x" * 1000) as response:
                        assert response.status == 200
                        await response.read()
                await asyncio.gather(*(slow_request() for _ in range(10)))
                for _ in range(10):
                    backend = backend_of(await next_frame(socket), "app", "slow")
                    if backend["latency"] and backend["latency"]["requests"] >= 10:
                        break
        finally:
            director.stop()
    latency = backend["latency"]
    assert latency["requests"] == 10  # the slow requests of the last minute
    assert 0.1 < latency["p50"] <= 0.25 and latency["p50"] <= latency["p95"] <= 0.5
    assert backend["bytes"]["received"] == 10_000
