"""One active health check of one backend, spoken through the live-traffic upstream clients.

The request (SPEC §8) is built once per backend configuration; each check sends it, reads
and discards a bounded part of the body, and judges the status. HTTP checks reuse the
monitor's kept-alive connection to the backend (SPEC §14: a new TCP connection per check was
a third of the monitor's CPU with 1,000 backends); FastCGI checks use a fresh connection
(with php-fpm an idle kept-alive one may hold the very worker the check would wait for). The
whole check is capped at connect + read + write timeout, so a hanging backend cannot stall
its monitor task for longer.
"""
from __future__ import annotations

import asyncio
import logging
from typing import NamedTuple

from proxy.errors import UpstreamError
from proxy.upstream import Timeouts, Upstream, UpstreamRequest

from .expected import ExpectedStatus

log = logging.getLogger("director.health")

HEALTH_CHECK_HEADER = b"x-director-health-check"
DIRECTOR_HEADER = b"x-director"
BACKEND_HEADER = b"x-director-backend"
HEALTH_CHECK_VALUE = b"yes"
KEEP_ALIVE = frozenset({"http"})  # protocols whose checks reuse a kept-alive connection
MAX_BODY = 64 * 1024  # bytes read and discarded; the rest is dropped with the connection
# A check comes from no listener. Like x0 (SERVER_PORT=0), still name one: FastCGI WSGI
# servers (flup) log an error per request without SERVER_PORT. HTTP checks ignore it.
NO_LISTENER = ("0.0.0.0", 0)


class ProbeResult(NamedTuple):
    ok: bool
    status: int | None
    error: str


def build_request(*, director: str, backend: str, host_header: str, request_path: str,
                  script_filename: str = "") -> UpstreamRequest:
    """`GET <path>` with the health-check headers; FastCGI gets SCRIPT_FILENAME when set."""
    headers = [
        (b"host", host_header.encode("latin-1")),
        (HEALTH_CHECK_HEADER, HEALTH_CHECK_VALUE),
        (DIRECTOR_HEADER, director.encode("latin-1")),
        (BACKEND_HEADER, backend.encode("latin-1")),
    ]
    return UpstreamRequest(method="GET", target=request_path.encode("latin-1"), headers=headers,
                           host=host_header, server=NO_LISTENER, script_filename=script_filename or None)


def check_budget(timeouts: Timeouts) -> float:
    """Longest a check may take: the sum of the director's idle timeouts."""
    return timeouts.connect + timeouts.read + timeouts.write


async def probe(upstream: Upstream, request: UpstreamRequest, timeouts: Timeouts,
                expected: ExpectedStatus) -> ProbeResult:
    """Check the backend once. Never raises except on cancellation; failures are results."""
    budget = check_budget(timeouts)
    try:
        async with asyncio.timeout(budget):
            response = await upstream.send(request, timeouts, fresh=upstream.address.protocol not in KEEP_ALIVE)
            try:
                status = response.status
                await _discard_body(response)
            finally:
                response.release()
    except UpstreamError as exc:
        return ProbeResult(False, None, exc.reason)
    except TimeoutError:
        return ProbeResult(False, None, f"health check timed out after {budget:g}s")
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a bug in a client must not kill the monitor task
        log.exception("health check of %s failed unexpectedly", upstream.address)
        return ProbeResult(False, None, f"health check error: {type(exc).__name__}: {exc}")
    if status not in expected:
        return ProbeResult(False, status, f"unexpected status {status}")
    return ProbeResult(True, status, "")


async def _discard_body(response) -> None:
    received = 0
    while received < MAX_BODY:
        chunk = await response.read()
        if not chunk:
            return
        received += len(chunk)
