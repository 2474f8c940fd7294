"""An open WebSocket holds one slot on its backend for its whole life (SPEC §12): a capacity-1
backend refuses (queue_limit 0) or queues (queue_limit 1) other requests until it ends, however
it ends, and the slot comes back exactly once. 100 WebSockets at once exchange messages for
10 s without losing one."""
import asyncio
import socket
import struct
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import pytest

from tests.support.director import Director
from tests.support.rawhttp import RawHTTP
from tests.support.waiting import wait_for
from tests.support.ws_backends import websocket_backend
from tests.support.ws_clients import connect, handshake


@pytest.fixture(scope="module")
def backend():
    server = websocket_backend("solo")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def director(backend, tmp_path_factory):
    config = f"""
        [directors.refuse]
        health_check_success_threshold = 1
        queue_limit = 0
        backends = {{ r1 = {{ url = "{backend.url}", capacity = 1 }} }}

        [directors.queue]
        health_check_success_threshold = 1
        queue_limit = 1
        queue_timeout = 30
        backends = {{ q1 = {{ url = "{backend.url}", capacity = 1 }} }}

        [directors.many]
        health_check_success_threshold = 1
        backends = {{ m1 = "{backend.url}" }}

        [[routes]]
        host = "refuse"
        pass = "refuse"

        [[routes]]
        host = "queue"
        pass = "queue"

        [[routes]]
        host = "many"
        pass = "many"
    """
    d = Director(tmp_path_factory.mktemp("ws-slots"), textwrap.dedent(config)).start()
    try:
        for host in ("refuse", "queue", "many"):
            wait_for(lambda: d.get("/", headers={"Host": host})[0] == 200, 20, what=f"director {host} online")
        yield d
    finally:
        d.stop()


def status(director: Director, host: str) -> int:
    return director.get("/", headers={"Host": host})[0]


async def end_by_client_close(ws):
    await ws.close(code=1000)


async def end_by_backend_close(ws):
    await ws.send_str("close-4001")
    assert (await ws.receive(timeout=10)).data == 4001


@pytest.mark.parametrize("end", [end_by_client_close, end_by_backend_close])
async def test_an_open_websocket_holds_the_only_slot_until_it_ends(director, end):
    async with aiohttp.ClientSession() as session, connect(session, director, host="refuse") as ws:
        assert await asyncio.to_thread(status, director, "refuse") == 503  # capacity 1, no queue
        await ws.send_str("still open")
        assert (await ws.receive(timeout=10)).data == "still open"
        await end(ws)
        await asyncio.to_thread(wait_for, lambda: status(director, "refuse") == 200, 10, what="the slot back")


def test_a_client_vanishing_gives_the_slot_back(director):
    with RawHTTP.tcp("127.0.0.1", director.port) as conn:
        conn.send(handshake("refuse"))
        assert conn.read_head().status == 101
        assert status(director, "refuse") == 503
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = reset
    wait_for(lambda: status(director, "refuse") == 200, 10, what="the slot back")


async def test_the_slot_comes_back_exactly_once(director):
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with connect(session, director, host="refuse") as ws:
                await ws.close()
            await asyncio.to_thread(wait_for, lambda: status(director, "refuse") == 200, 10, what="the slot back")
        async with connect(session, director, host="refuse"):
            # Released twice, the load would be below zero and this request would get in.
            assert await asyncio.to_thread(status, director, "refuse") == 503


async def test_a_queued_request_gets_the_slot_when_the_websocket_closes(director):
    async with aiohttp.ClientSession() as session, connect(session, director, host="queue") as ws:
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(status, director, "queue")
            await ws.send_str("meanwhile")
            assert (await ws.receive(timeout=10)).data == "meanwhile"
            assert not waiting.done()  # queued behind the WebSocket
            closed = time.monotonic()
            await ws.close()
            assert await asyncio.to_thread(waiting.result, 20) == 200
            assert time.monotonic() - closed < 10


async def chat(session, director, number: int, until: float) -> int:
    """Send numbered messages until `until`, each checked in its echo; returns how many."""
    sent = 0
    async with connect(session, director, host="many") as ws:
        while time.monotonic() < until:
            text = f"{number}:{sent}"
            await ws.send_str(text)
            message = await ws.receive(timeout=30)
            assert message.data == text, (text, message)
            sent += 1
    return sent


async def test_100_websockets_for_10_seconds_lose_nothing(director, backend):
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        until = time.monotonic() + 10
        counts = await asyncio.gather(*(chat(session, director, n, until) for n in range(100)))
    assert all(count > 0 for count in counts)
    print(f"100 websockets, 10 s: {sum(counts)} echoed messages")
    await asyncio.to_thread(wait_for, lambda: backend.open_sockets == 0, 10, what="all closed at the backend")
