"""TLS listeners through a real runproxy (SPEC §12): the certificate chosen by SNI (exact
names, wildcards, the first as default), TLS 1.2 and 1.3 only, `X-Forwarded-Proto: https`
to the backend, certificates reloaded on SIGHUP (new connections only)."""
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import time

import pytest
from cryptography import x509

from tests.support.backends import http_backend
from tests.support.certs import make_certs, make_leaf
from tests.support.config_files import app_config
from tests.support.director import Director
from tests.support.waiting import free_port, port_open, wait_for


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("certs")
    made = make_certs(directory)
    return dict(made=made, wild=make_leaf(directory, "wild", ["*.example.test"]),
                other=make_leaf(directory, "other", ["other.test"]))


def tls_config(certificates, backend_port: int) -> str:
    entries = [{"cert": cert, "key": key} for cert, key in certificates]
    return app_config(proxy={"tls_certificates": entries}, b1=backend_port)


@pytest.fixture(scope="module")
def backend():
    with http_backend("b1") as b:
        yield b


@pytest.fixture(scope="module")
def director(certs, backend, tmp_path_factory):
    tls_port, tls6_port = free_port(), free_port("::1")
    made = certs["made"]
    config = tls_config([made.localhost, made.backend_test, certs["wild"]], backend.port)
    d = Director(tmp_path_factory.mktemp("tls-listener"), config,
                 extra_args=["--listen", f"tls://127.0.0.1:{tls_port}", "--listen", f"tls://[::1]:{tls6_port}"]).start()
    d.tls_port, d.tls6_port = tls_port, tls6_port
    try:
        wait_for(lambda: d.get("/")[0] == 200, 15, what="backend online")
        yield d
    finally:
        d.stop()


def client_context(minimum=None, maximum=None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if minimum:
        context.minimum_version = minimum
    if maximum:
        context.maximum_version = maximum
    return context


def peer_names(port: int, server_name: str | None, context=None) -> tuple[str, ...]:
    """The DNS names of the certificate the listener presents for `server_name` (None: no SNI)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            (context or client_context()).wrap_socket(raw, server_hostname=server_name) as tls:
        cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
    return tuple(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                 .get_values_for_type(x509.DNSName))


def https_get(port: int, path: str = "/", server_name: str = "localhost", context=None, host="127.0.0.1"):
    conn = http.client.HTTPSConnection(host, port, timeout=15, context=context or client_context())
    try:
        conn.request("GET", path, headers={"Host": server_name})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_sni_picks_the_certificate_and_the_first_is_the_default(director):
    port = director.tls_port
    assert peer_names(port, "backend.test") == ("backend.test",)
    assert peer_names(port, "BACKEND.test") == ("backend.test",)
    assert peer_names(port, "a.example.test") == ("*.example.test",)
    assert peer_names(port, "localhost") == ("localhost",)
    assert peer_names(port, None) == ("localhost",)  # no SNI: the first certificate
    assert peer_names(port, "unknown.test") == ("localhost",)
    assert peer_names(port, "b.a.example.test") == ("localhost",)  # a wildcard covers one label


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_1_2_and_1_3_are_served(director, version):
    context = client_context(version, version)
    with socket.create_connection(("127.0.0.1", director.tls_port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
    status, _, body = https_get(director.tls_port, context=context)
    assert (status, body) == (200, b"b1")


def test_tls_1_1_is_refused(director):
    context = client_context(ssl.TLSVersion.MINIMUM_SUPPORTED, ssl.TLSVersion.TLSv1_1)
    context.set_ciphers("ALL:@SECLEVEL=0")  # the client would refuse TLS 1.1 itself otherwise
    with socket.create_connection(("127.0.0.1", director.tls_port), timeout=10) as raw:
        with pytest.raises(ssl.SSLError):
            context.wrap_socket(raw, server_hostname="localhost")


def test_ipv6_tls_listener(director):
    status, _, body = https_get(director.tls6_port, "/headers", host="::1")
    assert status == 200
    assert json.loads(body)["x-forwarded-proto"] == ["https"]


def test_backend_sees_https_and_plain_listener_stays_http(director):
    status, _, body = https_get(director.tls_port, "/headers")
    assert status == 200
    assert json.loads(body)["x-forwarded-proto"] == ["https"]
    status, _, body = director.get("/headers")
    assert json.loads(body)["x-forwarded-proto"] == ["http"]


def test_a_client_that_never_handshakes_is_closed_after_header_timeout(certs, backend, tmp_path):
    tls_port = free_port()
    config = app_config(proxy={"header_timeout": 1, "tls_certificates": [dict(zip(("cert", "key"),
                                                                                 certs["made"].localhost))]},
                        b1=backend.port)
    d = Director(tmp_path, config, extra_args=["--listen", f"tls://127.0.0.1:{tls_port}"]).start()
    try:
        with socket.create_connection(("127.0.0.1", tls_port), timeout=10) as silent:
            started = time.monotonic()
            try:
                assert silent.recv(1) == b""
            except ConnectionResetError:
                pass  # a connection that never finished its handshake is aborted: also closed
            assert time.monotonic() - started < 8  # header_timeout 1 s, with room for a loaded machine
    finally:
        d.stop()


def test_certificates_reload_on_sighup_for_new_connections_only(certs, backend, tmp_path):
    made = certs["made"]
    cert_path, key_path = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(made.localhost[0], cert_path)
    shutil.copy(made.localhost[1], key_path)
    tls_port = free_port()
    config = tls_config([(str(cert_path), str(key_path))], backend.port)
    d = Director(tmp_path / "proxy", config, extra_args=["--listen", f"tls://127.0.0.1:{tls_port}"]).start()
    try:
        wait_for(lambda: d.get("/")[0] == 200, 15, what="backend online")
        old = http.client.HTTPSConnection("127.0.0.1", tls_port, timeout=15, context=client_context())
        old.request("GET", "/", headers={"Host": "localhost"})
        assert old.getresponse().read() == b"b1"
        shutil.copy(certs["other"][0], cert_path)
        shutil.copy(certs["other"][1], key_path)
        os.kill(d.process.pid, signal.SIGHUP)
        wait_for(lambda: peer_names(tls_port, "localhost") == ("other.test",), 15, what="the new certificate")
        old.request("GET", "/", headers={"Host": "localhost"})  # the old connection goes on
        assert old.getresponse().read() == b"b1"
        old.close()
    finally:
        d.stop()


def test_a_reload_adds_a_tls_listener_and_a_broken_certificate_changes_nothing(certs, backend, tmp_path):
    made = certs["made"]
    cert_path, key_path = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(made.localhost[0], cert_path)
    shutil.copy(made.localhost[1], key_path)
    d = Director(tmp_path / "proxy", "")
    tls_port = free_port()
    plain = {"listen": [f"127.0.0.1:{d.port}"], "admin_listen": f"127.0.0.1:{d.admin_port}"}
    d.config_path.write_text(app_config(proxy=plain, b1=backend.port))
    d.listen_flags = False
    d.start()
    try:
        wait_for(lambda: d.get("/")[0] == 200, 15, what="backend online")
        with_tls = {**plain, "listen": [*plain["listen"], f"tls://127.0.0.1:{tls_port}"],
                    "tls_certificates": [{"cert": str(cert_path), "key": str(key_path)}]}
        d.config_path.write_text(app_config(proxy=with_tls, b1=backend.port))
        os.kill(d.process.pid, signal.SIGHUP)
        wait_for(lambda: port_open("127.0.0.1", tls_port), 15, what="the new TLS listener")
        assert https_get(tls_port)[2] == b"b1"
        key_path.write_text("not a key")  # a renewal gone wrong
        os.kill(d.process.pid, signal.SIGHUP)
        wait_for(lambda: "nothing changed" in d.output(), 15, what="the reload to be refused")
        assert f"proxy.tls_certificates: [0].key {key_path}: not a PEM private key" in d.output()
        assert peer_names(tls_port, "localhost") == ("localhost",)  # the running certificate stays
        assert https_get(tls_port)[2] == b"b1"
    finally:
        d.stop()
