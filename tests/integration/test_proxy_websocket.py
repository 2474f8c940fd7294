"""WebSockets through a real runproxy (SPEC §12): the handshake reaches the backend with its
Sec-WebSocket-* headers, so a subprotocol and permessage-deflate are negotiated end to end;
text, 1 MiB binary messages, pings and close codes pass both ways; HTTPS and UNIX-socket
backends and road warriors too. Malformed handshakes and FastCGI routes get 400; a backend that does not
answer 101 has its answer relayed and the connection stays HTTP."""
import asyncio
import json
import textwrap

import aiohttp
import pytest

from tests.support.backends import misbehaving_backend
from tests.support.certs import make_certs
from tests.support.director import Director
from tests.support.rawhttp import RawHTTP, request
from tests.support.waiting import async_wait_for, wait_for
from tests.support.ws_backends import websocket_backend
from tests.support.ws_clients import connect, echo_round, handshake


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


# A backend that answers the handshake, says one thing and closes, all in one write.
GOODBYE = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Accept: x\r\n\r\n" b"\x81\x03bye" b"\x88\x02\x03\xe8")


@pytest.fixture(scope="module")
def backends(certs, tmp_path_factory):
    plain, other = websocket_backend("plain"), websocket_backend("other")
    tls = websocket_backend("tls", ssl=certs.server_context(certs.localhost))
    unix = websocket_backend("unix", path=str(tmp_path_factory.mktemp("ws-unix") / "ws.sock"))
    with misbehaving_backend(GOODBYE, then="close") as goodbye:
        yield {"plain": plain, "other": other, "tls": tls, "unix": unix, "goodbye": goodbye}
    for server in (plain, other, tls, unix):
        server.stop()


@pytest.fixture(scope="module")
def director(backends, certs, tmp_path_factory):
    config = f"""
        [directors.echo]
        health_check_success_threshold = 1
        backends = {{ ws1 = "{backends['plain'].url}" }}

        [directors.tls]
        health_check_success_threshold = 1
        backends = {{ ws2 = {{ url = "{backends['tls'].url}", tls_ca_file = "{certs.ca}" }} }}

        [directors.unix]
        health_check_success_threshold = 1
        backends = {{ ws3 = "{backends['unix'].url}" }}

        [directors.pick]
        health_check_success_threshold = 1
        backends = {{ plain = "{backends['plain'].url}", other = "{backends['other'].url}" }}

        [directors.fpm]
        backends = {{ fpm1 = "fastcgi://127.0.0.1:9" }}

        [directors.empty]
        dynamic = true

        [[routes]]
        host = "tls"
        pass = "tls"

        [[routes]]
        host = "fpm"
        pass = "fpm"

        [[routes]]
        host = "unix"
        pass = "unix"

        [[routes]]
        host = "empty"
        pass = "empty"

        [[routes]]
        host = "pick"
        pass = "pick"
        backend_from = "header:X-Backend"

        [[routes]]
        host = "rw"
        http = "{backends['plain'].url}"

        [[routes]]
        host = "rw-dead"
        http = "http://127.0.0.1:9"

        [[routes]]
        host = "goodbye"
        http = "{backends['goodbye'].url}"

        [[routes]]
        host = "fcgi-rw"
        fcgi = "127.0.0.1:9"
        script_filename = "/srv/index.php"

        [[routes]]
        path = "/"
        pass = "echo"
    """
    d = Director(tmp_path_factory.mktemp("proxy-ws"), textwrap.dedent(config)).start()
    try:
        for host in ("echo", "tls", "pick", "unix"):
            wait_for(lambda: d.get("/", headers={"Host": host})[0] == 200, 20, what=f"director {host} online")
        yield d
    finally:
        d.stop()


@pytest.mark.parametrize("host", ["echo", "tls", "unix", "rw"])
async def test_text_and_1mib_binary_both_ways(director, host):
    async with aiohttp.ClientSession() as session, connect(session, director, host, compress=15) as ws:
        assert ws.protocol == "chat"
        assert ws.compress == 15  # permessage-deflate accepted by the backend, through Director
        await echo_round(ws)
        await ws.send_str("headers")
        seen = json.loads((await ws.receive(timeout=10)).data)
    assert seen["upgrade"].lower() == "websocket" and "upgrade" in seen["connection"].lower()
    assert seen["sec-websocket-protocol"] == "chat" and "permessage-deflate" in seen["sec-websocket-extensions"]
    assert seen["sec-websocket-version"] == "13" and seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["via"] == "1.1 director"


async def test_uncompressed_when_the_client_offers_no_extension(director):
    async with aiohttp.ClientSession() as session, connect(session, director, compress=0) as ws:
        assert ws.compress == 0
        await echo_round(ws)


async def test_pings_pass_both_ways(director):
    async with aiohttp.ClientSession() as session, connect(session, director, autoping=False) as ws:
        await ws.ping(b"from-client")
        pong = await ws.receive(timeout=10)
        assert (pong.type, pong.data) == (aiohttp.WSMsgType.PONG, b"from-client")
        await ws.send_str("ping")
        ping = await ws.receive(timeout=10)
        assert (ping.type, ping.data) == (aiohttp.WSMsgType.PING, b"from-backend")


async def test_backend_close_code_reaches_the_client(director):
    async with aiohttp.ClientSession() as session, connect(session, director) as ws:
        await ws.send_str("close-4001")
        message = await ws.receive(timeout=10)
        assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 4001
        assert message.extra == "backend says bye"


@pytest.mark.parametrize("name", ["plain", "other"])
async def test_the_client_chooses_the_backend(director, name):
    async with aiohttp.ClientSession() as session, \
            connect(session, director, host="pick", headers={"Host": "pick", "X-Backend": name}) as ws:
        await ws.send_str("name")
        assert (await ws.receive(timeout=10)).data == name


async def test_client_close_code_reaches_the_backend(director, backends):
    backend = backends["plain"]
    async with aiohttp.ClientSession() as session, connect(session, director) as ws:
        await ws.send_str("hi")
        await ws.receive(timeout=10)
        await ws.close(code=4001)
    await async_wait_for(lambda: 4001 in backend.closes, 10, what="the backend to see close code 4001")


@pytest.mark.parametrize("raw", [
    handshake(drop=("Sec-WebSocket-Key",)),
    handshake(**{"Sec-WebSocket-Key": "c2hvcnQ="}),  # decodes to 5 bytes, not 16
    handshake(**{"Sec-WebSocket-Version": "8"}),
    handshake(method="POST", **{"Content-Length": "0"}),
    handshake(version="HTTP/1.0"),
    handshake(Connection="keep-alive"),
], ids=["no-key", "short-key", "version-8", "post", "http-1.0", "no-connection-upgrade"])
def test_malformed_handshake_is_400(director, backends, raw):
    before = backends["plain"].paths.count("/ws")
    with RawHTTP.tcp("127.0.0.1", director.port) as conn:
        conn.send(raw)
        assert conn.read_response().status == 400
    assert backends["plain"].paths.count("/ws") == before  # refused by Director, not by the backend


@pytest.mark.parametrize("host", ["fpm", "fcgi-rw"])
def test_fastcgi_route_is_400(director, host):
    with RawHTTP.tcp("127.0.0.1", director.port) as conn:
        conn.send(handshake(host))
        assert conn.read_response().status == 400


def test_a_road_warrior_that_refuses_the_connection_is_502(director):
    with RawHTTP.tcp("127.0.0.1", director.port) as conn:
        conn.send(handshake("rw-dead"))
        assert conn.read_response().status == 502


def test_a_director_without_backends_is_503_like_any_request(director):
    with RawHTTP.tcp("127.0.0.1", director.port) as conn:
        conn.send(handshake("empty"))
        response = conn.read_response()
        assert response.status == 503 and response.header("retry-after") == "10"


@pytest.mark.parametrize("path, status, body", [("/plain", 200, b"plain"), ("/missing", 404, None)])
def test_an_answer_other_than_101_is_relayed_and_the_connection_stays_http(director, path, status, body):
    with RawHTTP.tcp("127.0.0.1", director.port) as conn:
        conn.send(handshake(path=path))
        response = conn.read_response()
        assert response.status == status and (body is None or response.body == body)
        conn.send(request("GET", "/", {"Host": "echo"}))
        second = conn.read_response()
        assert (second.status, second.body) == (200, b"plain")


def test_a_backend_that_closes_right_after_its_101_closes_the_client(director):
    with RawHTTP.tcp("127.0.0.1", director.port) as conn:
        conn.send(handshake("goodbye"))
        assert conn.read_head().status == 101
        assert conn.read_until_eof(timeout=10) == b"\x81\x03bye\x88\x02\x03\xe8"  # then EOF, not an idle wait


async def test_a_handshake_that_cannot_connect_is_retried_on_another_backend(tmp_path):
    gone, alive = websocket_backend("gone"), websocket_backend("alive")
    config = f"""
        [directors.pair]
        health_check_success_threshold = 1
        [directors.pair.backends]
        gone = {{ url = "{gone.url}", health_check_interval = 60 }}
        alive = {{ url = "{alive.url}", health_check_interval = 60 }}

        [[routes]]
        path = "/"
        pass = "pair"
    """
    director = Director(tmp_path, textwrap.dedent(config)).start()
    try:
        await asyncio.to_thread(wait_for, lambda: {director.get("/")[2] for _ in range(4)} == {b"gone", b"alive"}, 20,
                                what="both backends online")
        gone.stop()  # refuses connections now; the next health check is a minute away
        async with aiohttp.ClientSession() as session:
            for _ in range(4):  # rr: at least one handshake goes to "gone" first
                async with connect(session, director, host="pair") as ws:
                    await ws.send_str("name")
                    assert (await ws.receive(timeout=10)).data == "alive"
        assert "gone is now offline" in director.output()
    finally:
        director.stop()
        alive.stop()
