"""HealthMonitor against real HTTP backends on loopback and the real database.

Intervals are 0.1 s so a whole state walk takes a fraction of a second. Where a test must
show that something does NOT happen (lazy mode, terminated backends) it waits until a
paranoid reference backend has been checked several times instead of sleeping.
"""
from __future__ import annotations

import asyncio
import logging
import time

import pytest
from aiohttp import web
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection

from balancer import services
from balancer.health.monitor import HealthMonitor
from balancer.health.worker import HEALTH_CHANNEL, serve
from balancer.models import Backend, Director
from proxy.channel_names import HEALTH_GROUP
from tests.support.waiting import async_wait_for, free_port

pytestmark = pytest.mark.django_db(transaction=True)

FAST = {"health_check_success_threshold": 2, "health_check_failure_threshold": 1,
        "connect_timeout": 0.5, "read_timeout": 0.5, "write_timeout": 0.5}
INTERVAL = 0.1



@pytest.fixture(autouse=True)
async def close_test_thread_connection():
    """sync_to_async calls of this test share one thread whose connection pytest-django does
    not know about; close it so the test database can be dropped."""
    yield
    await sync_to_async(lambda: connection.close())()  # resolved in that thread

class HealthBackend:
    """An HTTP server that answers `status` and records every request it gets."""

    def __init__(self):
        self.port = free_port()
        self.status = 200
        self.requests: list[web.Request] = []
        self.bodies: list[bytes] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        self.bodies.append(await request.read())
        return web.Response(status=self.status, text="health\n")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest.fixture
async def servers():
    started: list[HealthBackend] = []

    async def start() -> HealthBackend:
        server = HealthBackend()
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
def health_log(caplog):
    """Records of logger director.health (the `director` logger does not propagate)."""
    logger = logging.getLogger("director.health")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


def lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "director.health"]


@pytest.fixture
async def monitors():
    """Factory of started monitors recording their transitions; all stopped afterwards."""
    started: list[HealthMonitor] = []

    async def start(**kwargs) -> HealthMonitor:
        transitions: list[tuple] = []
        monitor = HealthMonitor(on_transition=lambda *t: transitions.append(t), **kwargs)
        monitor.transitions = transitions
        await monitor.start()
        started.append(monitor)
        return monitor

    yield start
    for monitor in started:
        await monitor.stop()


@sync_to_async
def make_director(name="app", **settings) -> Director:
    return services.create_director(name, {**FAST, **settings}, actor="test")


@sync_to_async
def make_backend(director: Director, name: str, url: str, **fields) -> Backend:
    data = {"name": name, "url": url, "health_check_interval": INTERVAL, **fields}
    return services.create_backend(director, data, actor="test")


@sync_to_async
def stored(backend: Backend) -> Backend:
    return Backend.objects.get(pk=backend.pk)


async def wait_state(backend: Backend, state: str, timeout: float = 3.0) -> Backend:
    async def check():
        row = await stored(backend)
        return row if row.health_state == state else None
    return await async_wait_for(check, timeout, what=f"backend {backend.name} stored as {state}")


async def test_goes_online_after_two_good_checks_logged_stored_and_published(servers, monitors, health_log):
    server = await servers()
    director = await make_director()
    backend = await make_backend(director, "app1", server.url)
    layer = get_channel_layer()
    listener = await layer.new_channel()
    await layer.group_add(HEALTH_GROUP, listener)
    began = time.monotonic()
    monitor = await monitors()
    row = await wait_state(backend, "online")
    elapsed = time.monotonic() - began
    assert elapsed < 1.0, f"online after {elapsed:.2f}s with a 0.1 s interval"
    assert len(server.requests) >= 2
    assert row.health_changed_at is not None and row.last_checked is not None
    assert "director app: backend app1 is now online" in lines(health_log)
    assert monitor.transitions[0] == (backend.pk, "online", "")
    message = await asyncio.wait_for(layer.receive(listener), 2)
    assert message == {"type": "health.changed", "backend": backend.pk, "director": "app",
                       "backend_name": "app1", "state": "online", "error": "", "sticky_disabled": False,
                       "changed_at": row.health_changed_at.isoformat()}
    await layer.group_discard(HEALTH_GROUP, listener)


async def test_offline_on_bad_status_and_when_not_listening(servers, monitors, health_log):
    server = await servers()
    director = await make_director()
    backend = await make_backend(director, "app1", server.url)
    monitor = await monitors()
    await wait_state(backend, "online")
    server.status = 500
    row = await wait_state(backend, "offline")
    assert row.last_error == "unexpected status 500"
    assert "director app: backend app1 is now offline: unexpected status 500" in lines(health_log)
    server.status = 200
    await wait_state(backend, "online")
    await server.stop()
    row = await wait_state(backend, "offline")
    refused = f"connection refused by {server.url}"
    assert row.last_error == refused
    assert f"director app: backend app1 is now offline: {refused}" in lines(health_log)
    assert [t[1] for t in monitor.transitions] == ["online", "offline", "online", "offline"]


async def test_probe_request_is_exactly_the_spec_one(servers, monitors):
    server = await servers()
    director = await make_director(health_check_host_header="hc.example", health_check_request_path="/ping?deep=1")
    await make_backend(director, "app1", server.url)
    await monitors()
    await async_wait_for(lambda: server.requests, 3, what="a health check")
    request = server.requests[0]
    assert (request.method, request.raw_path, request.version) == ("GET", "/ping?deep=1", (1, 1))
    assert request.headers["Host"] == "hc.example"
    assert request.headers["X-Director-Health-Check"] == "yes"
    assert request.headers["X-Director"] == "app"
    assert request.headers["X-Director-Backend"] == "app1"
    assert server.bodies[0] == b""


async def test_expected_status_ranges(servers, monitors):
    server = await servers()
    server.status = 302
    director = await make_director(health_check_expected_status="200-399,418")
    backend = await make_backend(director, "app1", server.url)
    monitor = await monitors()
    await wait_state(backend, "online")
    server.status = 418
    seen = len(server.requests)
    await async_wait_for(lambda: len(server.requests) >= seen + 2, 3, what="two checks answered 418")
    assert monitor.stats()[backend.pk]["state"] == "online"
    server.status = 404
    assert (await wait_state(backend, "offline")).last_error == "unexpected status 404"


async def test_lazy_mode_leaves_an_online_backend_alone_until_a_live_failure(servers, monitors, health_log):
    lazy_server, reference_server = await servers(), await servers()
    director = await make_director()
    lazy = await make_backend(director, "lazy1", lazy_server.url, health_check_mode="lazy")
    await make_backend(director, "ref", reference_server.url)
    monitor = await monitors()
    await wait_state(lazy, "online")
    probes = len(lazy_server.requests)
    seen = len(reference_server.requests)
    await async_wait_for(lambda: len(reference_server.requests) >= seen + 5, 3, what="5 reference checks")
    assert len(lazy_server.requests) == probes
    monitor.report_failure(lazy.pk, "connection reset by backend")
    row = await wait_state(lazy, "offline")
    assert row.last_error == "connection reset by backend"
    assert "director app: backend lazy1 is now offline: connection reset by backend" in lines(health_log)
    await wait_state(lazy, "online")  # checks resumed and brought it back
    assert len(lazy_server.requests) >= probes + 2


async def test_opportunistic_mode_checks_only_when_idle(servers, monitors):
    server, reference_server = await servers(), await servers()
    director = await make_director()
    backend = await make_backend(director, "opp1", server.url, health_check_mode="opportunistic")
    await make_backend(director, "ref", reference_server.url)
    monitor = await monitors()
    await wait_state(backend, "online")
    probes = len(server.requests)
    seen = len(reference_server.requests)
    while len(reference_server.requests) < seen + 5:  # busy: live traffic every 20 ms
        monitor.report_activity([backend.pk])
        await asyncio.sleep(0.02)
    assert len(server.requests) == probes
    began = time.monotonic()
    await async_wait_for(lambda: len(server.requests) > probes, 2, what="a check of the idle backend")
    assert time.monotonic() - began < 1.0  # about one interval after the last live request


async def test_sticky_offline_disables_a_returning_backend_and_keeps_checking(servers, monitors, health_log):
    server = await servers()
    director = await make_director(sticky_offline_mode=True)
    backend = await make_backend(director, "app1", server.url)
    layer = get_channel_layer()
    listener = await layer.new_channel()
    await layer.group_add(HEALTH_GROUP, listener)
    monitor = await monitors()
    assert (await wait_state(backend, "online")).enabled  # undefined -> online is not sticky
    server.status = 503
    await wait_state(backend, "offline")
    server.status = 200
    await wait_state(backend, "online")
    await async_wait_for(lambda: "director app: backend app1 disabled due to sticky offline mode" in lines(health_log),
                         2, what="the sticky log line")
    row = await stored(backend)
    assert row.enabled is False and row.health_state == "online"
    messages = [await asyncio.wait_for(layer.receive(listener), 2) for _ in range(3)]
    assert [(m["state"], m["sticky_disabled"]) for m in messages] == [("online", False), ("offline", False),
                                                                     ("online", True)]
    # the data plane learns online + disabled together from its snapshot, never "online" alone
    assert [t[1] for t in monitor.transitions] == ["online", "offline"]
    seen = len(server.requests)
    await async_wait_for(lambda: len(server.requests) >= seen + 2, 2, what="checks to continue")
    await layer.group_discard(HEALTH_GROUP, listener)


async def test_config_push_adds_a_new_backend_within_a_second(servers, monitors):
    server = await servers()
    director = await make_director()
    monitor = await monitors(config_poll=30.0)  # only the config.changed push can be fast
    worker = asyncio.ensure_future(serve(monitor))
    try:
        await asyncio.sleep(0)  # let the worker join director.config
        began = time.monotonic()
        await make_backend(director, "new1", server.url)
        await async_wait_for(lambda: server.requests, 2, what="the new backend's first check")
        assert time.monotonic() - began < 1.0
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


async def test_version_poll_picks_up_changes_without_a_push(servers, monitors):
    server = await servers()
    director = await make_director()
    await monitors(config_poll=0.2)
    began = time.monotonic()
    await make_backend(director, "new1", server.url)
    await async_wait_for(lambda: server.requests, 2, what="the new backend's first check")
    assert time.monotonic() - began < 1.0


async def test_terminating_backend_is_no_longer_checked(servers, monitors):
    gone_server, reference_server = await servers(), await servers()
    director = await make_director()
    gone = await make_backend(director, "gone", gone_server.url)
    await make_backend(director, "ref", reference_server.url)
    monitor = await monitors(config_poll=0.1)
    await wait_state(gone, "online")
    await sync_to_async(services.delete_backend)(gone, actor="test")
    await async_wait_for(lambda: gone.pk not in monitor.stats(), 2, what="the monitor to drop the backend")
    probes = len(gone_server.requests)
    seen = len(reference_server.requests)
    await async_wait_for(lambda: len(reference_server.requests) >= seen + 5, 3, what="5 reference checks")
    assert len(gone_server.requests) == probes


async def test_passive_failure_message_on_the_health_channel(servers, monitors, health_log):
    server = await servers()
    director = await make_director()
    backend = await make_backend(director, "app1", server.url)
    monitor = await monitors()
    worker = asyncio.ensure_future(serve(monitor))
    try:
        await wait_state(backend, "online")
        layer = get_channel_layer()
        await layer.send(HEALTH_CHANNEL, {"type": "backend.failed", "backend": backend.pk, "error": "read timeout"})
        await layer.send(HEALTH_CHANNEL, {"type": "no.such.message"})  # dropped, worker lives on
        row = await wait_state(backend, "offline", timeout=1.0)
        assert row.last_error == "read timeout"
        assert "director app: backend app1 is now offline: read timeout" in lines(health_log)
        await wait_state(backend, "online")
        assert not worker.done()
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


async def test_a_hanging_backend_fails_within_the_timeouts(monitors):
    accepted = []

    async def never_answer(reader, writer):
        accepted.append(writer)
        await reader.read()  # hold the connection open without a response

    silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        director = await make_director(connect_timeout=0.2, read_timeout=0.3, write_timeout=0.2)
        backend = await make_backend(director, "slow", f"http://127.0.0.1:{port}")
        began = time.monotonic()
        await monitors()
        row = await wait_state(backend, "offline")
        assert time.monotonic() - began < 0.7 + 0.5
        assert row.last_error  # the client's read-timeout message
    finally:
        for writer in accepted:
            writer.close()
        silent.close()
        await silent.wait_closed()


async def test_restart_keeps_stored_state_and_stop_cancels_everything(servers, monitors):
    server = await servers()
    director = await make_director()
    backend = await make_backend(director, "app1", server.url)
    monitor = await monitors()
    await wait_state(backend, "online")
    await monitor.stop()
    assert monitor.stats() == {}
    assert not [t for t in asyncio.all_tasks() if "HealthMonitor" in repr(t.get_coro())]
    restarted = await monitors()
    assert restarted.stats()[backend.pk]["state"] == "online"
    seen = len(server.requests)
    await async_wait_for(lambda: len(server.requests) > seen, 2, what="a check after restart")
    assert restarted.transitions == []  # online stays online: no transition, no log line


async def test_last_checked_is_stored_periodically_without_transitions(servers, monitors):
    server = await servers()
    director = await make_director()
    backend = await make_backend(director, "app1", server.url)
    await monitors(flush_interval=0.2)
    first = (await wait_state(backend, "online")).last_checked

    async def advanced():
        row = await stored(backend)
        return row.last_checked > first and row.health_state == "online"

    await async_wait_for(advanced, 2, what="last_checked to advance while online")
