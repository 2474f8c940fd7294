"""Health checks of HTTPS backends (SPEC §12): the same TLS settings as traffic, a certificate
that does not verify keeps the backend out with the reason in `last_error`, and changed TLS
fields take effect on the checks."""
from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from balancer import services
from tests.integration.test_health_monitor import close_test_thread_connection, make_backend, make_director, monitors, wait_state  # noqa: F401
from tests.support.backends import http_backend
from tests.support.certs import make_certs

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


@sync_to_async
def update(backend, **changes):
    return services.update_backend(backend, changes, actor="test")


async def test_checks_over_tls_bring_the_backend_online_and_follow_changed_settings(certs, monitors):
    with http_backend("hc", ssl=certs.server_context(certs.backend_test)) as server:
        director = await make_director()
        backend = await make_backend(director, "tls1", server.url, tls_ca_file=certs.ca,
                                     tls_server_name="backend.test")
        await monitors()
        row = await wait_state(backend, "online")
        assert row.last_error == ""
        checks = [r for r in server.requests_seen if r.headers.get("x-director-health-check") == ["yes"]]
        assert len(checks) >= 2 and {r.connection for r in checks} == {1}  # kept alive, over TLS
        await update(backend, tls_server_name="")  # now verified against 127.0.0.1: the name does not match
        row = await wait_state(backend, "offline")
        assert row.last_error.startswith("TLS: certificate verify failed: IP address mismatch")
        await update(backend, tls_server_name="backend.test")
        await wait_state(backend, "online")


async def test_unverifiable_certificate_keeps_the_backend_offline_with_the_reason(certs, monitors):
    with http_backend("self", ssl=certs.server_context(certs.self_signed)) as server:
        director = await make_director()
        checked = await make_backend(director, "strict", server.url, tls_ca_file=certs.ca)
        trusting = await make_backend(director, "trusting", server.url, tls_verify=False)
        await monitors()
        row = await wait_state(checked, "offline")
        assert row.last_error == "TLS: certificate verify failed: self-signed certificate"
        await wait_state(trusting, "online")
