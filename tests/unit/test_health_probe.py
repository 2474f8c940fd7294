"""probe() with clients that misbehave: the check is bounded and never raises."""
import asyncio
import logging
import time

from balancer.health.expected import ExpectedStatus
from balancer.health.probe import ProbeResult, build_request, probe
from proxy.addresses import parse_backend_url
from proxy.upstream import Timeouts, Upstream

REQUEST = build_request(director="app", backend="app1", host_header="h", request_path="/")
ADDRESS = parse_backend_url("http://127.0.0.1:9")


class HangingUpstream(Upstream):
    """Never answers and ignores its own timeouts: only probe()'s cap ends the check."""

    async def send(self, request, timeouts, *, fresh=False):
        await asyncio.Event().wait()

    async def close(self):
        pass


class BrokenUpstream(Upstream):
    """A client with a bug."""

    async def send(self, request, timeouts, *, fresh=False):
        raise RuntimeError("bug in the client")

    async def close(self):
        pass


async def test_check_is_capped_at_the_sum_of_the_timeouts():
    began = time.monotonic()
    result = await probe(HangingUpstream(ADDRESS), REQUEST, Timeouts(connect=0.05, read=0.1, write=0.05),
                         ExpectedStatus("200"))
    assert result == ProbeResult(False, None, "health check timed out after 0.2s")
    assert 0.2 <= time.monotonic() - began < 5  # never before the budget; the upper bound only catches a hang


async def test_unexpected_exception_is_logged_and_counted_as_failure(caplog):
    logger = logging.getLogger("director.health")
    logger.addHandler(caplog.handler)
    try:
        result = await probe(BrokenUpstream(ADDRESS), REQUEST, Timeouts(), ExpectedStatus("200"))
    finally:
        logger.removeHandler(caplog.handler)
    assert result == ProbeResult(False, None, "health check error: RuntimeError: bug in the client")
    assert any(r.exc_info and "health check of http://127.0.0.1:9" in r.getMessage() for r in caplog.records)


def test_request_carries_the_spec_headers_and_fastcgi_script_filename():
    request = build_request(director="app", backend="php1", host_header="hc", request_path="/ping",
                            script_filename="/srv/www/health.php")
    assert (request.method, request.target, request.host) == ("GET", b"/ping", "hc")
    assert request.headers == [(b"host", b"hc"), (b"x-director-health-check", b"yes"),
                               (b"x-director", b"app"), (b"x-director-backend", b"php1")]
    assert request.script_filename == "/srv/www/health.php"
    assert request.body.length == 0
    assert build_request(director="a", backend="b", host_header="h", request_path="/").script_filename is None
