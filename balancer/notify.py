"""Tell every process that the configuration changed (called from `transaction.on_commit`).

The push goes to channel-layer group `director.config`. It is best effort: the data plane
also polls `ConfigVersion`, so a missing or unreachable layer only logs.
"""
from __future__ import annotations

import asyncio
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from proxy.channel_names import CONFIG_CHANGED, CONFIG_GROUP

GROUP = CONFIG_GROUP
MESSAGE_TYPE = CONFIG_CHANGED
log = logging.getLogger("director.notify")
_pending: set[asyncio.Task] = set()  # strong references until scheduled sends finish


def config_changed_message(version: int) -> dict:
    return {"type": MESSAGE_TYPE, "version": version}


async def _send(layer, message: dict) -> None:
    try:
        await layer.group_send(GROUP, message)
    except Exception as exc:  # noqa: BLE001 - the version poll is the fallback
        log.warning("could not announce config version %s: %s", message["version"], exc)


def announce_config_changed(version: int) -> None:
    """Send `config.changed` with `version`; never raises."""
    try:
        layer = get_channel_layer()
    except Exception as exc:  # noqa: BLE001 - misconfigured layer: polling still works
        log.warning("channel layer unavailable, config version %s not pushed: %s", version, exc)
        return
    if layer is None:
        return
    message = config_changed_message(version)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:
        # async_to_sync refuses to run inside a loop's thread: schedule the send instead.
        task = loop.create_task(_send(layer, message))
        _pending.add(task)
        task.add_done_callback(_pending.discard)
        return
    async_to_sync(_send)(layer, message)
