"""The response cache over HTTP/2 on a TLS listener (curl --http2): hits and HEADs are
answered on the stream like any response, and `%s` puts the scheme in the key, so the
same URL over plain HTTP/1.1 is another object."""
from __future__ import annotations

import subprocess

import pytest

from tests.support.cache_backend import cache_backend
from tests.support.certs import make_certs
from tests.support.config_files import toml_value
from tests.support.director import Director
from tests.support.processes import require_binary
from tests.support.waiting import free_port, wait_for


@pytest.fixture(scope="module")
def backend():
    with cache_backend("h") as b:
        yield b


@pytest.fixture(scope="module")
def director(backend, tmp_path_factory):
    work = tmp_path_factory.mktemp("cache-http2")
    cert, key = make_certs(work / "certs").localhost
    tls_port = free_port()
    config = f"""
        [proxy]
        tls_certificates = {toml_value([{"cert": cert, "key": key}])}

        [directors.app]
        cache_enabled = true
        cache_key = "%s://%h%r?%q"
        health_check_success_threshold = 1
        health_check_request_path = "/health"
        backends = {{ h = {{ url = "{backend.url}", health_check_interval = 0.5 }} }}

        [[routes]]
        path = "/"
        pass = "app"
    """
    d = Director(work / "proxy", config, extra_args=["--listen", f"tls://127.0.0.1:{tls_port}"]).start()
    d.tls_port = tls_port
    try:
        wait_for(lambda: d.get("/ready?cc=no-store", headers={"Host": "app"})[0] == 200, 15, what="backend online")
        yield d
    finally:
        d.stop()


def h2(director, path: str, *args: str) -> tuple[str, int, dict[str, str], bytes]:
    """(HTTP version, status, headers, body) of one curl --http2 request to the TLS listener."""
    result = subprocess.run([require_binary("curl", "curl"), "--http2", "-k", "-sS", "-i", "-H", "Host: app", *args,
                             f"https://127.0.0.1:{director.tls_port}{path}"], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    status_line, *fields = head.decode("latin-1").split("\r\n")
    version, status = status_line.split()[:2]
    headers = {name.strip().lower(): value.strip() for name, _, value in (f.partition(":") for f in fields)}
    return version, int(status), headers, body


def test_hits_and_heads_over_http2_and_the_scheme_in_the_key(director, backend):
    version, status, headers, body = h2(director, "/page")
    assert (version, status, headers["x-cache-lookup"], body) == ("HTTP/2", 200, "miss", b"h /page #1")
    version, status, headers, again = h2(director, "/page")
    assert (version, status, headers["x-cache-lookup"], again) == ("HTTP/2", 200, "hit", body)
    assert "age" in headers
    _, status, headers, empty = h2(director, "/page", "-I")
    assert (status, headers["x-cache-lookup"], headers["content-length"], empty) == (200, "hit", str(len(body)), b"")
    # the same URL over plain HTTP: another scheme, another object
    status, headers, plain = director.get("/page", headers={"Host": "app"})
    assert (status, headers["x-cache-lookup"], plain) == (200, "miss", b"h /page #2")
    assert backend.count("/page") == 2
