"""`manage.py healthworker` as a real process sharing the test database (and Redis).

The worker sees the rows this test commits (transaction=True), checks a real HTTP backend,
takes a passive failure sent over Redis like a proxy in another process would, logs both
transitions and exits 0 on SIGTERM.
"""
from __future__ import annotations

import asyncio
import os
from urllib.parse import quote, urlsplit

import pytest
from aiohttp import web
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.routing import ChannelNameRouter
from channels.worker import Worker
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.db import connection

from balancer import health_store, services
from balancer.health.worker import HEALTH_CHANNEL, channel_routes
from balancer.models import Backend
from proxy.channel_names import health_channel
from tests.support.processes import REPO, Process, python_args
from tests.support.waiting import async_wait_for, free_port, port_open

PREFIX = "healthworker-test"  # the worker process's, so the test can name its channel

pytestmark = pytest.mark.django_db(transaction=True)
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"



@pytest.fixture(autouse=True)
async def close_test_thread_connection():
    """sync_to_async calls of this test share one thread whose connection pytest-django does
    not know about; close it so the test database can be dropped."""
    yield
    await sync_to_async(lambda: connection.close())()  # resolved in that thread

def database_url() -> str:
    """The test database as a DATABASE_URL for a child process."""
    settings = connection.settings_dict
    if settings["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings['NAME']}"
    credentials = quote(settings["USER"] or "") + (f":{quote(settings['PASSWORD'])}" if settings["PASSWORD"] else "")
    return (f"postgres://{credentials}@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}/"
            f"{settings['NAME']}")


def redis_url() -> str:
    url = os.environ.get("REDIS_URL") or DEFAULT_REDIS
    parts = urlsplit(url)
    if not port_open(parts.hostname or "127.0.0.1", parts.port or 6379):
        message = f"Redis not reachable at {url}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return url


async def start_backend(port: int) -> web.AppRunner:
    async def ok(request):
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


@sync_to_async
def health_state(backend_id: int) -> str:
    return Backend.objects.get(pk=backend_id).health_state


async def test_healthworker_checks_takes_redis_reports_and_stops_on_sigterm(tmp_path):
    redis = redis_url()
    port = free_port()
    runner = await start_backend(port)
    director = await sync_to_async(services.create_director)(
        "app", {"health_check_success_threshold": 2}, actor="test")
    backend = await sync_to_async(services.create_backend)(
        director, {"name": "app1", "url": f"http://127.0.0.1:{port}", "health_check_interval": 0.5}, actor="test")
    env = {**os.environ, "DATABASE_URL": database_url(), "REDIS_URL": redis, "DJANGO_SETTINGS_MODULE": "director_site.settings",
           "DIRECTOR_CHANNEL_PREFIX": PREFIX}
    log_path = tmp_path / "healthworker.log"
    worker = Process(python_args(REPO / "manage.py", "healthworker"), log_path, env=env)
    layer = RedisPubSubChannelLayer(hosts=[redis])
    try:
        async def online():
            return await health_state(backend.pk) == "online"

        await async_wait_for(online, 15, what="the worker to bring app1 online")

        async def failed_reported():
            # pub/sub drops messages nobody listens to yet: resend until the worker takes one
            await layer.send(health_channel(PREFIX), {"type": "backend.failed", "backend": backend.pk, "error": "read timeout"})
            return await health_state(backend.pk) == "offline"

        await async_wait_for(failed_reported, 5, interval=0.05, what="the passive failure to be stored")
        assert worker.alive()
    finally:
        returncode = await asyncio.to_thread(worker.stop)
        await layer.flush()
        await runner.cleanup()
    output = log_path.read_text()  # Process.output() cannot be read after stop()
    assert "director app: backend app1 is now online" in output
    assert "director app: backend app1 is now offline: read timeout" in output
    assert returncode == 0, output


async def test_runworker_route_starts_its_own_monitor_on_the_first_message(tmp_path):
    """What `manage.py runworker director-health` does with `channel_routes`, in-process."""
    port = free_port()
    runner = await start_backend(port)
    director = await sync_to_async(services.create_director)("app", {}, actor="test")
    backend = await sync_to_async(services.create_backend)(
        director, {"name": "app1", "url": f"http://127.0.0.1:{port}", "health_check_interval": 60.0}, actor="test")
    await sync_to_async(health_store.record_health)(backend.pk, "online")
    layer = get_channel_layer()
    worker = Worker(ChannelNameRouter(channel_routes), [HEALTH_CHANNEL], layer)
    serving = asyncio.ensure_future(worker.arun())
    try:
        await layer.send(HEALTH_CHANNEL, {"type": "backend.failed", "backend": backend.pk, "error": "from runworker"})

        async def offline():
            row = await sync_to_async(Backend.objects.get)(pk=backend.pk)
            return row.health_state == "offline" and row.last_error == "from runworker"

        await async_wait_for(offline, 5, what="the routed consumer to take the passive failure")
    finally:
        serving.cancel()
        instances = [d["future"] for d in worker.application_instances.values()]
        for future in instances:
            future.cancel()  # the consumer stops the monitor it started
        await asyncio.gather(serving, *instances, return_exceptions=True)
        await runner.cleanup()
