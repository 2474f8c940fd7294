"""Back-pressure through a WebSocket tunnel, both ways (SPEC §12): while one side reads
nothing, Director stops reading the other, so the sender blocks after a bounded amount
(socket buffers, not Director's memory); once the reader reads, everything arrives intact."""
import asyncio
import time

import aiohttp
import pytest

from tests.support.config_files import app_config
from tests.support.director import Director
from tests.support.waiting import async_wait_for, wait_for
from tests.support.ws_backends import MiB, websocket_backend
from tests.support.ws_clients import connect

MESSAGES = 100  # 1 MiB each: far more than the kernel buffers on both sides hold
IN_FLIGHT_BOUND = 48  # MiB that may sit in socket buffers between a blocked sender and its reader


@pytest.fixture(scope="module")
def backend():
    server = websocket_backend("bulk")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def director(backend, tmp_path_factory):
    d = Director(tmp_path_factory.mktemp("ws-backpressure"), app_config(ws1=backend.port)).start()
    wait_for(lambda: d.get("/")[0] == 200, 20, what="the backend online")
    yield d
    d.stop()


async def stops_growing(count, what: str, timeout: float = 30.0) -> int:
    """The value of `count()` once it has not changed for a second."""
    deadline = time.monotonic() + timeout
    last = count()
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)  # the interval that defines "stopped", within the deadline
        now = count()
        if now == last:
            return now
        last = now
    raise AssertionError(f"{what} never stopped: {last} after {timeout}s")


async def test_a_client_that_reads_nothing_blocks_the_backend(director, backend):
    async with aiohttp.ClientSession() as session, connect(session, director, host="any") as ws:
        await ws.send_str(f"flood {MESSAGES}")
        blocked_at = await stops_growing(lambda: backend.flooded, "the backend's sending")
        assert blocked_at < IN_FLIGHT_BOUND
        for number in range(MESSAGES):
            message = await ws.receive(timeout=30)
            assert message.data == number.to_bytes(4, "big") * (MiB // 4), f"message {number}"
    assert backend.flooded == MESSAGES


async def test_a_backend_that_reads_nothing_blocks_the_client(director, backend):
    sent = 0

    async def flood(ws):
        nonlocal sent
        for number in range(MESSAGES):
            await ws.send_bytes(number.to_bytes(4, "big") * (MiB // 4))
            sent += 1

    async with aiohttp.ClientSession() as session, connect(session, director, host="any") as ws:
        await ws.send_str("sink")
        sending = asyncio.create_task(flood(ws))
        blocked_at = await stops_growing(lambda: sent, "the client's sending")
        assert blocked_at < IN_FLIGHT_BOUND and not sending.done()
        backend.release()
        await asyncio.wait_for(sending, 60)
        await async_wait_for(lambda: backend.sunk == MESSAGES, 30, what="every message at the backend")
