"""SIGHUP in a single runproxy process: apply the config file without a restart (SPEC §11).

Nothing is closed that stays: new listeners are bound before the database is touched, the
data plane swaps its tables in single assignments, and requests in flight finish on the
objects they started with. A file that does not validate (or a listener that cannot be
bound) changes nothing; the errors are logged as `checkconfig` prints them.
Under `--workers` the supervisor replaces the workers instead (`proxy.supervisor`).
"""
from __future__ import annotations

import asyncio
import logging

from asgiref.sync import sync_to_async

from proxy.gc_tuning import settle_heap
from proxy.headers import HeaderRules, TrustedProxies
from proxy.listeners import ListenError
from proxy.service import StartupError, websocket_limits

from . import admin_hosts
from .reload import ReloadError, read_config, store_config

log = logging.getLogger("director.proxy")

RESTART_ONLY = ("workers", "health_monitor")  # settings a running process cannot take over


class InProcessReload:
    """Callable on the server's loop; concurrent signals coalesce into one more reload."""

    def __init__(self, path: str, overrides: dict, settings, service, server, app):
        self.path = path
        self.overrides = overrides
        self.settings = settings
        self.service = service
        self.server = server
        self.app = app
        self._lock = asyncio.Lock()

    def request(self) -> None:
        """Signal handler: start a reload on the loop."""
        asyncio.get_running_loop().create_task(self())

    async def __call__(self) -> bool:
        if self._lock.locked():
            log.info("reload: one is already running; this signal is folded into it")
        async with self._lock:
            try:
                return await self._reload()
            except Exception as exc:  # noqa: BLE001 - a failed reload must never stop serving
                log.error("reload failed, the running configuration stays: %s", exc)
                return False

    async def _reload(self) -> bool:
        log.info("reload: reading %s", self.path)
        try:
            config, settings = await sync_to_async(read_config, thread_sensitive=False)(self.path, self.overrides)
        except ReloadError as exc:
            for line in exc.lines():
                log.error("reload: %s", line)
            log.error("reload: nothing changed; the running configuration stays")
            return False
        for name in RESTART_ONLY:
            if getattr(settings, name) != getattr(self.settings, name):
                log.warning("reload: proxy.%s changes only with a restart", name)
        previous = self.server.traffic_listen, self.server.management_listen
        previous_tls = self.server.server_tls.certificates if self.server.server_tls is not None else None
        try:
            self._apply_server(settings, settings.load_tls())
        except (ListenError, ValueError) as exc:
            log.error("reload: %s; nothing changed", exc)
            return False
        try:
            await sync_to_async(store_config, thread_sensitive=False)(config, reload=True)
        except Exception as exc:  # noqa: BLE001 - database away: undo the listeners, keep the old config
            self._apply_server(self.settings, previous_tls, listen=previous)
            log.error("reload: cannot store the configuration (%s); nothing changed", exc)
            return False
        self.app.set_rules(HeaderRules(settings.pseudonym, TrustedProxies(settings.trusted_proxies)))
        self.app.set_websocket_limits(websocket_limits(settings))
        try:
            self.service.set_access_log(settings)
        except StartupError as exc:  # the file was valid; opening the new log failed: keep the old one
            log.error("reload: %s; the access log stays as it was", exc)
        await self.service.watcher.reload()  # the file's routes, now stored, come with the rows
        admin_hosts.apply(settings)
        self.settings = settings
        settle_heap()
        log.info("reload: %s applied: %d directors, %d routes", self.path, len(self.service.plane.directors),
                 len(self.service.plane.routes))
        return True

    def _apply_server(self, settings, certificates, listen=None) -> None:
        traffic, management = listen or (list(settings.listen), [settings.admin_listen])
        self.server.reconfigure(traffic_listen=traffic, management_listen=management,
                                max_request_body=settings.max_request_body, header_timeout=settings.header_timeout,
                                server_name=settings.pseudonym, shutdown_timeout=settings.shutdown_timeout,
                                tls_certificates=certificates)
