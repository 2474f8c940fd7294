"""HTTPS backends through a real runproxy (SPEC §12): verified against a CA file, unverified,
verified under tls_server_name, kept alive; a certificate that fails verification is a failed
attempt (502, offline, the reason in the log and in last_error)."""
import json
import textwrap

import pytest

from tests.support.backends import http_backend
from tests.support.certs import make_certs
from tests.support.director import Director
from tests.support.waiting import wait_for

HEALTH = "health_check_interval = 60"  # one check at start (threshold 1), then none in the test


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def backends(certs):
    with http_backend("ca", ssl=certs.server_context(certs.localhost)) as ca, \
            http_backend("self", ssl=certs.server_context(certs.self_signed)) as self_signed, \
            http_backend("named", ssl=certs.server_context(certs.backend_test)) as named, \
            http_backend("swap", ssl=certs.server_context(certs.localhost)) as swap:
        yield dict(ca=ca, self=self_signed, named=named, swap=swap)


@pytest.fixture(scope="module")
def director(backends, certs, tmp_path_factory):
    k = backends
    config = f"""
        [directors.ca]
        health_check_success_threshold = 1
        backends = {{ ca = {{ url = "{k['ca'].url}", tls_ca_file = "{certs.ca}", {HEALTH} }} }}

        [directors.self]
        health_check_success_threshold = 1
        backends = {{ self = {{ url = "{k['self'].url}", tls_verify = false, {HEALTH} }} }}

        [directors.named]
        health_check_success_threshold = 1
        backends = {{ named = {{ url = "{k['named'].url}", tls_ca_file = "{certs.ca}", tls_server_name = "backend.test", {HEALTH} }} }}

        [directors.swap]
        health_check_success_threshold = 1
        max_retry_count = 2
        backends = {{ swap = {{ url = "{k['swap'].url}", tls_ca_file = "{certs.ca}", {HEALTH} }} }}

        [[routes]]
        path = "/rw/"
        http = "{k['self'].url}"
    """
    config = textwrap.dedent(config) + "".join(f'\n[[routes]]\nhost = "{name}"\npass = "{name}"\n' for name in k)
    d = Director(tmp_path_factory.mktemp("proxy-https"), config).start()
    try:
        for host in k:
            wait_for(lambda: d.get("/", headers={"Host": host})[0] == 200, 15, what=f"director {host} online")
        yield d
    finally:
        d.stop()


def traffic(backend):
    return [r for r in backend.requests_seen if "x-director-health-check" not in r.headers]


def test_verified_against_a_ca_file_and_kept_alive(director, backends):
    answers = [director.get("/", headers={"Host": "ca"}) for _ in range(5)]
    assert {(status, body) for status, _, body in answers} == {(200, b"ca")}
    connections = {headers["x-connection"] for _, headers, _ in answers}
    assert len(connections) == 1  # five requests from five clients, one upstream TLS connection
    status, _, body = director.get("/headers", headers={"Host": "ca"})
    assert status == 200 and json.loads(body)["x-forwarded-proto"] == ["http"]


def test_unverified_self_signed_backend(director):
    assert director.get("/", headers={"Host": "self"})[::2] == (200, b"self")


def test_server_name_is_the_name_verified(director):
    assert director.get("/", headers={"Host": "named"})[::2] == (200, b"named")


def test_road_warrior_https_verifies_with_the_system_store(director, backends):
    status, _, _ = director.get("/rw/x")  # self-signed: no system CA signed it
    assert status == 502
    assert not [r for r in traffic(backends["self"]) if r.target == "/rw/x"]


def test_certificate_failing_verification_is_a_502_offline_with_the_reason(director, backends, certs):
    swap = backends["swap"]
    assert director.get("/", headers={"Host": "swap"})[0] == 200
    swap.close_idle_connections()  # the next request needs a new connection, so a new handshake
    wait_for(lambda: swap.open_connections <= 1, 5, what="idle connections closed")  # the monitor's stays
    swap.ssl.load_cert_chain(*certs.self_signed)  # from now on the backend shows a certificate nobody signed
    status, _, _ = director.get("/after-swap", headers={"Host": "swap"})
    assert status == 502
    assert not [r for r in traffic(swap) if r.target == "/after-swap"]
    reason = "TLS: certificate verify failed: self-signed certificate"
    wait_for(lambda: f"director swap: backend swap is now offline: {reason}" in director.output(), 5,
             what="offline log line with the TLS reason")
    wait_for(lambda: director.shell("""
        from balancer.models import Backend
        print(Backend.objects.get(name="swap").last_error)
    """).strip() == reason, 5, what="last_error stored")
    status, headers, _ = director.get("/", headers={"Host": "swap"})
    assert status == 503 and "retry-after" in headers  # offline: nothing left to try
