"""Keeps the data plane in step with the database: push plus poll (DESIGN "two planes").

A change committed anywhere (admin, API, `manage.py shell`, another runproxy) bumps the
config version and is announced on the channel layer group "director.config"; the watcher
reloads on that push at once and, as a safety net for lost pushes, compares the version
every `poll_interval` seconds. Health transitions announced on "director.health" are applied
straight away (proxy.health_follow polls for the ones missed; they never bump the version).
Drained backends (terminating, no request in flight) are removed here (under `--workers`, by
worker 0 once no worker has a request on them).
"""
from __future__ import annotations

import asyncio
import logging

from proxy.cache_purge import apply_purge_message
from proxy.channel_names import CACHE_GROUP, CACHE_PURGE, CONFIG_CHANGED, CONFIG_GROUP, HEALTH_CHANGED, HEALTH_GROUP
from proxy.config_source import ConfigSource
from proxy.health_follow import apply_health_message
from proxy.outage_log import OutageLog
from proxy.state import DataPlane

log = logging.getLogger("director.proxy")



class ConfigWatcher:
    def __init__(self, plane: DataPlane, source: ConfigSource, *, poll_interval: float = 0.5, channel_layer=None,
                 snapshot=None, on_database_back=None, run_blocking=asyncio.to_thread):
        """`run_blocking(func, *args)`: where the source's (blocking) calls run."""
        self.plane = plane
        self.source = source
        self._run = run_blocking
        self.poll_interval = poll_interval
        self.layer = channel_layer
        self.snapshot = snapshot
        self.on_database_back = on_database_back
        self.outage = OutageLog(log, "database unreachable, serving the last configuration")
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._removing: set[int] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._poll_loop()))
        if self.layer is not None:
            self._tasks.append(loop.create_task(self._listen()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def reload(self) -> None:
        rows = await self._run(self.source.read_rows)
        if rows[0] != self.plane.version:
            self.plane.apply_rows(*rows)
            log.debug("config version %d loaded", rows[0])
        await self._save_snapshot()

    async def _save_snapshot(self) -> None:
        """Keep the local snapshot as current as the data plane (health changes included)."""
        if self.snapshot is not None and self.plane.rows_changed:
            rows = self.plane.applied_rows()
            await asyncio.get_running_loop().run_in_executor(None, self.snapshot.save, rows)

    async def _poll_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            await self._save_snapshot()
            try:
                version = await self._run(self.source.read_version)
                if self.outage.failing and self.on_database_back is not None:
                    await asyncio.to_thread(self.on_database_back)
                self.outage.ok()
                if version != self.plane.version:
                    await self.reload()
                await self._reap_drained()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - database away: keep serving the last view
                self.outage.failed(exc)

    async def _listen(self) -> None:
        while True:
            try:
                channel = await self.layer.new_channel()
                await self.layer.group_add(CONFIG_GROUP, channel)
                await self.layer.group_add(HEALTH_GROUP, channel)
                await self.layer.group_add(CACHE_GROUP, channel)
                while True:
                    message = await self.layer.receive(channel)
                    kind = message.get("type")
                    if kind == CONFIG_CHANGED:
                        self._wake.set()
                    elif kind == HEALTH_CHANGED:
                        apply_health_message(self.plane, message)
                    elif kind == CACHE_PURGE:
                        apply_purge_message(self.plane, message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - layer unreachable: the version poll still works
                log.warning("channel layer: %s; retrying in 1 s", exc)
                await asyncio.sleep(1)

    async def _reap_drained(self) -> None:
        if not self.source.reaps_drained():
            return
        for backend in list(self.plane.backends.values()):
            if (backend.terminating and backend.load == 0 and backend.id not in self._removing
                    and not self.source.in_flight_elsewhere(backend.id)):
                self._removing.add(backend.id)
                try:
                    await self._run(self.source.remove_backend, backend.id)
                    log.info("director %s: backend %s drained and removed", backend.director.name, backend.name)
                except Exception as exc:  # noqa: BLE001 - tried again at the next poll
                    log.warning("removing drained backend %s failed: %s", backend.name, exc)
                finally:
                    self._removing.discard(backend.id)
