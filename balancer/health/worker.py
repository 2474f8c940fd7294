"""The health monitor as a channels consumer on channel `director-health` and groups
`director.health.reports` (every monitor hears every passive report; the one holding the
backend's lease acts on it) and `director.config`.

Messages it takes (from the data plane of other processes, from services, from operators):
  {"type": "backend.failed", "backend": id, "error": text}   passive failure: offline at once
  {"type": "backend.activity", "backends": [id, ...]}        live traffic (opportunistic mode)
  {"type": "config.changed"}                                  reload (also via group director.config)

channels' `runworker` only creates an application instance when the first message arrives,
and has no timers; so `serve(monitor)` runs the consumer directly (used by `manage.py
healthworker`, and available to runproxy), joining `director.config` and starting at once.
Under plain `runworker director-health` the consumer starts its own monitor on its first
message.
"""
from __future__ import annotations

import functools
import logging

from channels.consumer import AsyncConsumer
from channels.layers import get_channel_layer

from proxy.channel_names import CONFIG_GROUP, REPORTS_GROUP, health_channel

from .monitor import HealthMonitor

log = logging.getLogger("director.health")

GROUPS = (CONFIG_GROUP, REPORTS_GROUP)
HEALTH_CHANNEL = health_channel()
SCOPE = {"type": "channel", "channel": HEALTH_CHANNEL}


class HealthWorker(AsyncConsumer):
    """Feeds channel messages into a HealthMonitor (its own one unless one is given)."""

    def __init__(self, monitor: HealthMonitor | None = None):
        self.monitor = monitor
        self._owns_monitor = monitor is None

    async def __call__(self, scope, receive, send):
        if self.monitor is None:
            self.monitor = HealthMonitor()
        if not self.monitor.running:
            await self.monitor.start()
        joined = False

        async def receive_after_joining():
            # AsyncConsumer creates channel_name just before it first awaits receive.
            nonlocal joined
            if not joined and self.channel_layer is not None:
                joined = True
                for group in GROUPS:
                    await self.channel_layer.group_add(group, self.channel_name)
            return await receive()

        try:
            await super().__call__(scope, receive_after_joining, send)
        finally:
            if joined:
                for group in GROUPS:
                    await self.channel_layer.group_discard(group, self.channel_name)
            if self._owns_monitor:
                await self.monitor.stop()

    async def dispatch(self, message):
        """A malformed or unknown message is logged and dropped; it must not end the worker."""
        try:
            await super().dispatch(message)
        except Exception as exc:  # noqa: BLE001
            log.warning("health worker dropped message %.200r: %s", message, exc)

    async def backend_failed(self, message: dict) -> None:
        self.monitor.report_failure(int(message["backend"]), str(message.get("error") or "live request failed"))

    async def backend_activity(self, message: dict) -> None:
        self.monitor.report_activity(int(i) for i in message.get("backends", ()))

    async def config_changed(self, message: dict) -> None:
        try:
            await self.monitor.reload()
        except Exception as exc:  # noqa: BLE001 - the version poll retries
            log.warning("health monitor reload failed: %s", exc)


channel_routes = {HEALTH_CHANNEL: HealthWorker.as_asgi()}


async def serve(monitor: HealthMonitor) -> None:
    """Consume `director-health` messages into `monitor` until cancelled; the monitor is
    started if it is not running (and then left running: the caller stops it)."""
    layer = get_channel_layer(HealthWorker.channel_layer_alias)
    if layer is None:
        raise RuntimeError("no channel layer configured (CHANNEL_LAYERS)")
    app = HealthWorker.as_asgi(monitor=monitor)
    await app(dict(SCOPE), functools.partial(layer.receive, HEALTH_CHANNEL), _no_send)


async def _no_send(message: dict) -> None:
    raise RuntimeError("the health worker sends nothing back on its channel")
