"""HTTPUpstream to HTTPS backends (SPEC §12) on real TLS sockets: verification against a CA
file, tls_verify = false, tls_server_name, keep-alive reuse, failures as connect failures,
and the handshake under the connect timeout; on asyncio's loop and on uvloop (runproxy's)."""
from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace

import pytest
import uvloop

from proxy.addresses import backend_address
from proxy.errors import ConnectError, ConnectTimeout
from proxy.upstream import make_upstream, tls
from proxy.upstream.base import Timeouts
from tests.integration.test_upstream_http import fetch, header
from tests.support.backends import http_backend, misbehaving_backend
from tests.support.certs import make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request):
    """Runs a coroutine to its end on a new loop of either kind (their TLS code differs)."""
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    def run(coroutine):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coroutine)
    return run


@contextlib.asynccontextmanager
async def https_upstream(backend, *, verify=True, ca_file="", server_name=""):
    upstream = make_upstream(backend_address(backend.url, verify, ca_file, server_name))
    try:
        yield upstream
    finally:
        await upstream.close()


def test_ca_file_verifies_and_connections_are_kept_alive(certs, run):
    async def scenario():
        with http_backend("tls1", ssl=certs.server_context(certs.localhost)) as backend:
            assert backend.url.startswith("https://127.0.0.1:")
            async with https_upstream(backend, ca_file=certs.ca) as up:
                for _ in range(5):
                    response, body = await fetch(up)
                    assert (response.status, body) == (200, b"tls1")
                    assert header(response, b"x-connection") == b"1"  # every request on the first connection
                response, body = await fetch(up, "POST", b"/echo", body=b"x" * 200_000)  # a large body too
                assert (response.status, len(body)) == (200, 200_000)
                assert up.stats()["opened"] == 1 and backend.connections_accepted == 1
    run(scenario())


def test_unverified_self_signed_backend_works(certs, run):
    async def scenario():
        with http_backend("self", ssl=certs.server_context(certs.self_signed)) as backend:
            async with https_upstream(backend, verify=False) as up:
                response, body = await fetch(up)
                assert (response.status, body) == (200, b"self")
    run(scenario())


def test_certificate_that_does_not_verify_is_a_connect_failure(certs, run):
    async def scenario():
        with http_backend("self", ssl=certs.server_context(certs.self_signed)) as backend:
            for ca_file in (certs.ca, ""):  # the test CA, then the system store: neither signed it
                async with https_upstream(backend, ca_file=ca_file) as up:
                    with pytest.raises(ConnectError) as info:
                        await fetch(up)
                    assert info.value.reason.startswith("TLS: certificate verify failed: ")
                    assert info.value.safe_to_resend and info.value.status == 502
            assert backend.requests_seen == []  # no request byte went out
    run(scenario())


def test_server_name_is_sent_and_verified(certs, run):
    async def scenario():
        with http_backend("named", ssl=certs.server_context(certs.backend_test)) as backend:
            async with https_upstream(backend, ca_file=certs.ca, server_name="backend.test") as up:
                response, body = await fetch(up)
                assert (response.status, body) == (200, b"named")
            async with https_upstream(backend, ca_file=certs.ca) as up:  # checked against 127.0.0.1
                with pytest.raises(ConnectError, match="TLS: certificate verify failed: IP address mismatch"):
                    await fetch(up)
            async with https_upstream(backend, ca_file=certs.ca, server_name="other.test") as up:
                with pytest.raises(ConnectError, match="TLS: certificate verify failed: Hostname mismatch"):
                    await fetch(up)
    run(scenario())


def test_sni_carries_the_server_name(certs, run):
    async def scenario():
        seen = []
        context = certs.server_context(certs.localhost)
        context.sni_callback = lambda sock, name, ctx: seen.append(name)
        with http_backend("sni", ssl=context) as backend:
            async with https_upstream(backend, ca_file=certs.ca, server_name="localhost") as up:
                assert (await fetch(up))[1] == b"sni"
        assert seen == ["localhost"]
    run(scenario())


def test_plain_http_answer_to_a_tls_hello_is_a_connect_failure(run):
    async def scenario():
        async def answer_400(reader, writer):  # as nginx does to bytes that are not HTTP
            writer.write(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()
        server = await asyncio.start_server(answer_400, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            async with https_upstream(_https(f"http://127.0.0.1:{port}"), verify=False) as up:
                with pytest.raises(ConnectError, match="^TLS: handshake failed: "):
                    await fetch(up)
    run(scenario())


def test_handshake_that_never_completes_is_a_connect_timeout(run):
    async def scenario():
        with misbehaving_backend("deaf") as backend:  # accepts TCP, never answers the ClientHello
            async with https_upstream(_https(backend.url), verify=False) as up:
                with pytest.raises(ConnectTimeout) as info:
                    await fetch(up, timeouts=Timeouts(connect=0.3, read=2.0, write=2.0))
                assert info.value.status == 504
    run(scenario())


def test_unreadable_ca_file_fails_the_connect_naming_it(tmp_path, certs, run):
    async def scenario():
        missing = str(tmp_path / "gone.pem")
        with http_backend("tls1", ssl=certs.server_context(certs.localhost)) as backend:
            async with https_upstream(backend, ca_file=missing) as up:
                with pytest.raises(ConnectError, match=f"TLS: cannot use tls_ca_file {missing}"):
                    await fetch(up)
    run(scenario())


def test_one_context_per_verify_and_ca_file(certs):
    a = backend_address("https://127.0.0.1:1", True, certs.ca, "a.test")
    b = backend_address("https://127.0.0.1:2", True, certs.ca, "b.test")
    c = backend_address("https://127.0.0.1:1", False, certs.ca, "a.test")
    assert tls.client_context(a.tls) is tls.client_context(b.tls)
    assert tls.client_context(a.tls) is not tls.client_context(c.tls)
    context = tls.client_context(a.tls)
    assert context.minimum_version == tls.ssl.TLSVersion.TLSv1_2 and context.check_hostname
    assert not tls.client_context(c.tls).check_hostname


def _https(url: str):
    """Something with the `url` https_upstream wants: a plain server's, spoken to with TLS."""
    return SimpleNamespace(url=url.replace("http://", "https://", 1))
