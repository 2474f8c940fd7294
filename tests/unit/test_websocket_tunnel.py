"""The tunnel's own decisions, on recording transports: when it is done (the backend's slot
free), where its close frames may go, back-pressure wiring, the idle timer. Real sockets:
tests/integration/test_websocket_*.py."""
from __future__ import annotations

import asyncio

from proxy.websocket_tunnel import Tunnel, WebSocketLimits

CLOSE_1001_TO_CLIENT = b"\x88\x10\x03\xe9server closing"


class ClientTransport:
    """What the tunnel uses of a Twisted transport."""

    def __init__(self):
        self.written, self.calls = bytearray(), []

    def write(self, data):
        self.written += data

    def __getattr__(self, name):  # loseWriteConnection, abortConnection, pauseProducing, ...
        return lambda: self.calls.append(name)


class BackendTransport:
    """What the tunnel uses of an asyncio transport."""

    def __init__(self):
        self.written, self.calls = bytearray(), []

    def write(self, data):
        self.written += data

    def is_closing(self):
        return "close" in self.calls

    def __getattr__(self, name):  # close, abort, pause_reading, resume_reading
        return lambda: self.calls.append(name)


def open_tunnel(**limits) -> tuple[Tunnel, ClientTransport, BackendTransport]:
    tunnel = Tunnel(WebSocketLimits(**limits), "test")
    client, backend = ClientTransport(), BackendTransport()
    tunnel.client.makeConnection(client)
    tunnel.start(backend, b"", b"")
    return tunnel, client, backend


async def test_bytes_pass_both_ways_unchanged():
    tunnel, client, backend = open_tunnel()
    tunnel.from_client(b"\x82\x83abcd" + b"xyz")  # a masked 3-byte binary frame
    tunnel.from_backend(b"\x81\x02hi")
    assert (bytes(backend.written), bytes(client.written)) == (b"\x82\x83abcdxyz", b"\x81\x02hi")


async def test_done_once_the_backend_is_gone_even_if_the_client_lingers():
    tunnel, client, _ = open_tunnel()
    tunnel.backend.connection_lost(None)
    assert tunnel.done.done() and client.calls == ["loseWriteConnection"]
    tunnel.from_client(b"\x81\x80abcd")  # a late frame from the client goes nowhere
    tunnel.client.connectionLost(None)


async def test_not_done_while_the_backend_is_still_closing():
    tunnel, _, backend = open_tunnel()
    tunnel.client.connectionLost(None)
    assert backend.calls == ["close"] and not tunnel.done.done()
    tunnel.backend.connection_lost(None)
    assert tunnel.done.done()


async def test_a_close_frame_only_between_frames():
    tunnel, client, backend = open_tunnel()
    tunnel.from_backend(b"\x82\x7e\x01\x00" + b"x" * 10)  # 10 of a 256-byte frame's payload so far
    tunnel.close(1001, "server closing")
    assert bytes(client.written) == b"\x82\x7e\x01\x00" + b"x" * 10  # no frame cut in two
    assert client.calls == ["loseWriteConnection"]
    assert backend.written[:2] == b"\x88\x90" and backend.calls == ["close"]  # masked, at a boundary


async def test_a_close_frame_to_a_client_at_a_boundary():
    tunnel, client, _ = open_tunnel()
    tunnel.from_backend(b"\x81\x02hi")
    tunnel.close(1001, "server closing")
    assert bytes(client.written) == b"\x81\x02hi" + CLOSE_1001_TO_CLIENT


async def test_an_oversized_client_message_closes_with_1009():
    tunnel, client, backend = open_tunnel(max_message=4)
    tunnel.from_client(b"\x82\x84abcd1234" + b"\x82\x85abcd12345")
    assert bytes(backend.written[:10]) == b"\x82\x84abcd1234" and backend.written[10:12] == b"\x88\x91"
    assert client.written[:4] == b"\x88\x11\x03\xf1"  # 1009 "message too big"


async def test_back_pressure_is_wired_both_ways():
    tunnel, client, backend = open_tunnel()
    tunnel.client.pauseProducing()  # the client's send buffer is full
    tunnel.client.resumeProducing()
    tunnel.backend.pause_writing()  # the backend's is
    tunnel.backend.resume_writing()
    assert backend.calls == ["pause_reading", "resume_reading"]
    assert client.calls == ["pauseProducing", "resumeProducing"]


async def test_silence_closes_and_traffic_postpones():
    tunnel, client, _ = open_tunnel(idle_timeout=0.2)
    for _ in range(3):
        await asyncio.sleep(0.1)  # the clock the idle timer runs on
        tunnel.from_backend(b"\x89\x00")  # a ping is traffic
    assert "loseWriteConnection" not in client.calls
    await asyncio.wait_for(_closed(client), 5)
    assert client.written.endswith(b"\x88\x0e\x03\xe9idle timeout")


async def _closed(client: ClientTransport) -> None:
    while "loseWriteConnection" not in client.calls:
        await asyncio.sleep(0.01)
