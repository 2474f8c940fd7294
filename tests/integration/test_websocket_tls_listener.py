"""WebSockets from a browser on an https page (`wss://`): the handshake arrives on a TLS
listener, the backend sees `X-Forwarded-Proto: https`, and messages and close codes pass
through the tunnel over the TLS connection both ways; the 101 carries the request id and the
handshake has its access log line (SPEC §12)."""
import json

import aiohttp
import pytest

from tests.integration.test_access_log import line_with
from tests.support.certs import make_certs
from tests.support.config_files import with_routes
from tests.support.director import Director
from tests.support.waiting import async_wait_for, free_port, wait_for
from tests.support.ws_backends import websocket_backend
from tests.support.ws_clients import echo_round


@pytest.fixture(scope="module")
def backend():
    server = websocket_backend("plain")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def director(backend, tmp_path_factory):
    certs = make_certs(tmp_path_factory.mktemp("certs"))
    cert, key = certs.localhost
    directors = f"""[proxy]
tls_certificates = [{{ cert = "{cert}", key = "{key}" }}]
access_log = "{{log}}"
access_log_format = "json"

[directors.echo]
health_check_success_threshold = 1
backends = {{ ws1 = "{backend.url}" }}
"""
    log = tmp_path_factory.mktemp("log") / "access.log"
    directors = directors.replace("{log}", str(log))
    tls_port = free_port()
    d = Director(tmp_path_factory.mktemp("wss"), with_routes({"path": "/", "pass": "echo"}, directors=directors),
                 extra_args=["--listen", f"tls://127.0.0.1:{tls_port}"]).start()
    d.wss_url, d.access_log = f"wss://127.0.0.1:{tls_port}/ws", log
    try:
        wait_for(lambda: d.get("/")[0] == 200, 20, what="the backend online")
        yield d
    finally:
        d.stop()


def connect_wss(session: aiohttp.ClientSession, director):
    return session.ws_connect(director.wss_url, ssl=False, protocols=("chat",), max_msg_size=64 * 2**20,
                              timeout=aiohttp.ClientWSTimeout(ws_close=10))


async def test_wss_echo_through_a_tls_listener(director):
    async with aiohttp.ClientSession() as session, connect_wss(session, director) as ws:
        assert ws.protocol == "chat"
        await echo_round(ws)
        await ws.send_str("headers")
        seen = json.loads((await ws.receive(timeout=10)).data)
    assert seen["x-forwarded-proto"] == "https"


async def test_close_codes_pass_both_ways_over_tls(director, backend):
    async with aiohttp.ClientSession() as session:
        async with connect_wss(session, director) as ws:
            await ws.send_str("close-4001")
            message = await ws.receive(timeout=10)
            assert (message.type, message.data) == (aiohttp.WSMsgType.CLOSE, 4001)
        async with connect_wss(session, director) as ws:
            await ws.send_str("hi")
            await ws.receive(timeout=10)
            await ws.close(code=4001)
    await async_wait_for(lambda: 4001 in backend.closes, 10, what="the backend to see close code 4001")


async def test_the_handshake_carries_a_request_id_and_is_logged_with_101(director):
    async with aiohttp.ClientSession() as session, connect_wss(session, director) as ws:
        request_id = ws._response.headers["X-Request-ID"]
        await ws.send_str("hi")
        await ws.receive(timeout=10)
    assert len(request_id) == 32
    logged = json.loads(line_with(director.access_log, request_id))
    assert (logged["status"], logged["director"], logged["backend"], logged["protocol"]) == (101, "echo", "ws1", "HTTP/1.1")
