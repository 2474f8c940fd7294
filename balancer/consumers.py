"""The status page's websocket: staff only, one JSON frame per second from the status feed,
and one at once whenever the health monitor announces a state change.

The session user comes from channels' AuthMiddlewareStack (the admin login). Anyone else is
refused at the handshake (HTTP 403). The consumer joins group `director.health` (the
monitor's `health.changed` broadcasts); without a working channel layer the page still
updates every second.
"""
from __future__ import annotations

import logging

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from proxy.channel_names import HEALTH_GROUP

from .status_feed import FEED

log = logging.getLogger("director.views")


def is_staff(user) -> bool:
    return bool(user is not None and user.is_active and user.is_staff)


class StatusConsumer(AsyncJsonWebsocketConsumer):
    feed = FEED
    joined = False

    async def connect(self):
        if not is_staff(self.scope.get("user")):
            await self.close()
            return
        await self.accept()
        await self._join()
        await self.send_json(self.feed.history())
        await self.send_json(await self.feed.frame())
        self.feed.subscribe(self.push)

    async def disconnect(self, code):
        self.feed.unsubscribe(self.push)
        if self.joined:
            try:
                await self.channel_layer.group_discard(HEALTH_GROUP, self.channel_name)
            except Exception as exc:  # noqa: BLE001 - the layer forgets the channel anyway
                log.debug("status socket could not leave %s: %s", HEALTH_GROUP, exc)

    async def _join(self) -> None:
        if self.channel_layer is None:
            return
        try:
            await self.channel_layer.group_add(HEALTH_GROUP, self.channel_name)
            self.joined = True
        except Exception as exc:  # noqa: BLE001 - frames still come every second
            log.warning("status socket cannot follow health changes (channel layer: %s)", exc)

    async def receive_json(self, content, **kwargs):
        """The page sends nothing; anything received is ignored."""

    async def push(self, frame: dict) -> None:
        await self.send_json(frame)

    async def health_changed(self, message: dict) -> None:
        """`health.changed` from the monitor (this or another process): push a frame now."""
        self.feed.poke()
