"""PURGE for the whole node (and cluster): each process keeps a cache of its own (SPEC §15
`cache_max_size` is per process), so the process that accepted a PURGE tells the others
over the channel layer, and each marks its copies of the key stale as well.

The PURGE's answer (200 / 404) says whether the accepting process had the object; the
others apply the purge within milliseconds of it."""
from __future__ import annotations

import asyncio
import logging
import os

from proxy.channel_names import CACHE_GROUP, CACHE_PURGE
from proxy.state import DataPlane

log = logging.getLogger("director.proxy")


class PurgeAnnouncer:
    """`announce(director, key)`: sent to every process on the layer, this one excepted."""

    def __init__(self, layer):
        self.layer = layer
        self._sending: set[asyncio.Task] = set()

    def announce(self, director_name: str, key: bytes) -> None:
        message = {"type": CACHE_PURGE, "director": director_name, "key": key.decode("latin-1"), "origin": os.getpid()}
        task = asyncio.get_running_loop().create_task(self._send(message))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, message: dict) -> None:
        try:
            await self.layer.group_send(CACHE_GROUP, message)
        except Exception as exc:  # noqa: BLE001 - the accepting process has purged; say the rest did not
            log.warning("cache purge of %r not sent to the other processes: %s", message["key"], exc)


def apply_purge_message(plane: DataPlane, message: dict) -> None:
    """Another process's PURGE: mark this process's copies of the key stale."""
    if message.get("origin") == os.getpid():
        return
    director = plane.directors.get(message.get("director"))
    if director is not None:
        director.cache_store.purge(message["key"].encode("latin-1"))
