"""HTTPS backends through the API (SPEC §6, §9, §12): the TLS fields, their validation, and
protocol `http` with the scheme in `url`."""
from __future__ import annotations

import os

import pytest

from balancer import services
from tests.integration.test_api_backends import backend, backends, pool  # noqa: F401
from tests.support.api import ApiTestBase
from tests.support.certs import make_certs


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs")).ca


def https(**fields) -> dict:
    return {"name": "s1", "url": "https://[::1]:8443", **fields}


class TestHttpsBackends(ApiTestBase):
    def test_create_shows_http_over_tls_and_the_tls_fields(self, pool, ca):
        data = https(tls_ca_file=ca, tls_server_name="backend.test")
        response, record = self.write("POST", backends("pool"), data, expect=201, action="backend.create",
                                      director="pool", backend="s1")
        body = response.json()
        assert (body["url"], body["protocol"], body["host"], body["port"]) == ("https://[::1]:8443", "http", "::1", 8443)
        assert (body["tls_verify"], body["tls_ca_file"], body["tls_server_name"]) == (True, ca, "backend.test")
        assert (record.after["tls_ca_file"], record.after["tls_server_name"]) == (ca, "backend.test")

    def test_defaults_and_plain_backends(self, pool):
        body, _ = self.write("POST", backends("pool"), https(), expect=201, action="backend.create",
                             director="pool", backend="s1")
        body = body.json()
        assert (body["tls_verify"], body["tls_ca_file"], body["tls_server_name"]) == (True, "", "")
        plain = self.call("GET", backend("pool", "b1"), expect=200).json()
        assert (plain["tls_verify"], plain["tls_ca_file"], plain["tls_server_name"]) == (True, "", "")
        # the defaults may be sent for a plain backend (a client echoing an object back)
        self.call("PATCH", backend("pool", "b1"), {"tls_verify": True, "tls_ca_file": ""}, expect=200)

    def test_patch_changes_tls_fields(self, pool, ca):
        services.create_backend(pool, https(), actor="test")
        response, record = self.write("PATCH", backend("pool", "s1"), {"tls_verify": False, "tls_ca_file": ca},
                                      expect=200, action="backend.update", director="pool", backend="s1")
        assert (response.json()["tls_verify"], response.json()["tls_ca_file"]) == (False, ca)
        assert (record.before["tls_verify"], record.after["tls_verify"]) == (True, False)

    @pytest.mark.parametrize("fields, bad", [
        ({"tls_ca_file": "/nonexistent/ca.pem"}, "tls_ca_file"),
        ({"tls_ca_file": "relative/ca.pem"}, "tls_ca_file"),
        ({"tls_ca_file": "/"}, "tls_ca_file"),
        ({"tls_ca_file": "/dev/zero"}, "tls_ca_file"),
        ({"tls_ca_file": 5}, "tls_ca_file"),
        ({"tls_verify": "no"}, "tls_verify"),
        ({"tls_server_name": "bad name"}, "tls_server_name"),
        ({"tls_server_name": "backend.test:443"}, "tls_server_name"),
    ])
    def test_bad_tls_values_are_400_naming_the_field(self, pool, fields, bad):
        body = self.rejected("POST", backends("pool"), https(**fields), fields={bad})
        if bad == "tls_ca_file" and isinstance(fields[bad], str) and fields[bad].startswith("/nonexistent"):
            assert body[bad] == ["'/nonexistent/ca.pem': no such file"]

    def test_ca_file_that_is_not_pem_or_unreadable(self, pool, tmp_path):
        junk = tmp_path / "junk.pem"
        junk.write_text("not a certificate\n")
        body = self.rejected("POST", backends("pool"), https(tls_ca_file=str(junk)), fields={"tls_ca_file"})
        assert "holds no PEM CA certificate" in body["tls_ca_file"][0]
        if os.geteuid() != 0:  # root reads any file
            junk.chmod(0)
            self.rejected("POST", backends("pool"), https(tls_ca_file=str(junk)), fields={"tls_ca_file"})

    @pytest.mark.parametrize("fields", [{"tls_verify": False}, {"tls_server_name": "backend.test"}])
    def test_tls_fields_on_a_plain_backend_are_refused(self, pool, fields):
        (name,) = fields
        body = self.rejected("POST", backends("pool"), {"name": "p2", "url": "http://127.0.0.1:1", **fields},
                             fields={name})
        assert body[name] == ["only for https:// backends, not 'http://127.0.0.1:1'"]
        self.rejected("PATCH", backend("pool", "b1"), fields, fields={name})

    def test_ca_file_on_a_plain_backend_is_refused(self, pool, ca):
        self.rejected("PATCH", backend("pool", "b1"), {"tls_ca_file": ca}, fields={"tls_ca_file"})
