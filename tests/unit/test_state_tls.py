"""proxy.state with https backend rows: TLS fields reach the backend's address, backends that
differ only in TLS settings never share a client (pool), and changed settings swap it."""
from __future__ import annotations

from proxy.addresses import BackendTLS
from proxy.state import DataPlane
from tests.unit.test_health_follow import DIRECTOR, backend_row

URL = "https://127.0.0.1:8443"


def https_row(backend_id=5, **tls):
    return {**backend_row(backend_id=backend_id), "url": URL, "name": f"b{backend_id}",
            "tls_verify": True, "tls_ca_file": "", "tls_server_name": "", **tls}


def test_tls_fields_are_part_of_the_address_and_the_pool_key():
    plane = DataPlane()
    plane.apply_rows(1, [DIRECTOR], [https_row(5), https_row(6, tls_server_name="backend.test"), https_row(7)], [])
    b5, b6, b7 = (plane.backends[i] for i in (5, 6, 7))
    assert b5.address.tls == BackendTLS() and b6.address.tls == BackendTLS(True, "", "backend.test")
    assert b5.upstream is b7.upstream  # same URL, same settings: one pool
    assert b5.upstream is not b6.upstream


def test_changed_tls_settings_swap_the_client_and_keep_the_backend():
    plane = DataPlane()
    plane.apply_rows(1, [DIRECTOR], [https_row(5)], [])
    backend, before = plane.backends[5], plane.backends[5].upstream
    plane.apply_rows(2, [DIRECTOR], [https_row(5)], [])
    assert plane.backends[5].upstream is before  # nothing changed: nothing swapped
    plane.apply_rows(3, [DIRECTOR], [https_row(5, tls_verify=False)], [])
    assert plane.backends[5] is backend and backend.upstream is not before
    assert backend.upstream.address.tls == BackendTLS(verify=False)
    assert before.address not in plane._upstreams  # the old client is closed


def test_rows_without_tls_fields_still_load():
    plane = DataPlane()
    row = https_row(5)
    for name in ("tls_verify", "tls_ca_file", "tls_server_name"):
        del row[name]  # a snapshot written before the fields existed
    plane.apply_rows(1, [DIRECTOR], [row, backend_row(backend_id=6)], [])
    assert plane.backends[5].address.tls == BackendTLS() and plane.backends[6].address.tls is None
