"""How Director itself ends a WebSocket (SPEC §12): `websocket_idle_timeout` closes a silent
one on both sides (1001), a client message over `websocket_max_message` closes it with 1009
before the backend gets any of it, and SIGTERM waits for an open one up to `shutdown_timeout`,
then closes it with 1001 and exits."""
import asyncio
import os
import signal
import time

import aiohttp
import pytest

from tests.support.config_files import app_config
from tests.support.director import Director
from tests.support.waiting import async_wait_for, port_open, wait_for
from tests.support.ws_backends import websocket_backend
from tests.support.ws_clients import connect, echo_round

IDLE = 1.0
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def backend():
    server = websocket_backend("plain")
    yield server
    server.stop()


def start_director(path, backend, **proxy) -> Director:
    director = Director(path, app_config(proxy=proxy, ws1=backend.port)).start()
    wait_for(lambda: director.get("/")[0] == 200, 20, what="the backend online")
    return director


@pytest.fixture(scope="module")
def director(backend, tmp_path_factory):
    d = start_director(tmp_path_factory.mktemp("ws-closing"), backend, websocket_idle_timeout=IDLE,
                       websocket_max_message="64KiB")
    yield d
    d.stop()


async def test_a_silent_websocket_is_closed_on_both_sides(director, backend):
    async with aiohttp.ClientSession() as session, connect(session, director, host="any") as ws:
        await ws.send_str("hi")
        assert (await ws.receive(timeout=10)).data == "hi"
        silent_since = time.monotonic()
        message = await ws.receive(timeout=IDLE + 10)
        waited = time.monotonic() - silent_since
    assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 1001
    assert IDLE * 0.9 <= waited < IDLE + 5
    await async_wait_for(lambda: 1001 in backend.closes, 10, what="the backend to get the 1001 close")


async def test_a_websocket_with_traffic_outlives_the_idle_timeout(director):
    async with aiohttp.ClientSession() as session, connect(session, director, host="any") as ws:
        for number in range(int(IDLE * 3 / 0.25)):
            await ws.send_str(f"m{number}")
            assert (await ws.receive(timeout=10)).data == f"m{number}"
            await asyncio.sleep(0.25)  # pacing the traffic, not waiting for a condition


async def test_a_message_over_the_limit_closes_with_1009_before_the_backend_sees_it(director, backend):
    async with aiohttp.ClientSession() as session, connect(session, director, host="any") as ws:
        await echo_round(ws, LIMIT)  # exactly the limit passes
        await ws.send_bytes(os.urandom(LIMIT + 1))
        message = await ws.receive(timeout=10)
    assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 1009  # not the echo
    await async_wait_for(lambda: 1009 in backend.closes, 10, what="the backend to get the 1009 close")


async def test_sigterm_waits_for_an_open_websocket_then_closes_it_with_1001(backend, tmp_path):
    director = start_director(tmp_path, backend, shutdown_timeout=2)
    try:
        async with aiohttp.ClientSession() as session, connect(session, director, host="any") as ws:
            await ws.send_str("before")
            assert (await ws.receive(timeout=10)).data == "before"
            stopped = time.monotonic()
            os.kill(director.process.pid, signal.SIGTERM)
            await async_wait_for(lambda: not port_open("127.0.0.1", director.port), 5, what="the listener closed")
            await ws.send_str("draining")
            assert (await ws.receive(timeout=10)).data == "draining"
            message = await ws.receive(timeout=15)
            closed_after = time.monotonic() - stopped
        assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 1001
        assert 1.5 <= closed_after < 8
        assert await asyncio.to_thread(director.process.proc.wait, 15) == 0
        assert time.monotonic() - stopped < 10
    finally:
        director.stop()


async def test_a_reload_applies_the_websocket_settings_to_new_websockets(backend, tmp_path):
    director = start_director(tmp_path, backend)  # idle timeout 3600 s
    try:
        async with aiohttp.ClientSession() as session, connect(session, director, host="any") as before:
            director.config_path.write_text(app_config(proxy={"websocket_idle_timeout": IDLE}, ws1=backend.port))
            os.kill(director.process.pid, signal.SIGHUP)
            await async_wait_for(lambda: "applied" in director.output(), 20, what="the reload applied")
            async with connect(session, director, host="any") as after:
                message = await after.receive(timeout=IDLE + 10)
                assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 1001
            await before.send_str("still here")  # opened under the old settings: not closed
            assert (await before.receive(timeout=10)).data == "still here"
    finally:
        director.stop()
