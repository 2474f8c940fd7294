"""Assembles one runproxy process: data plane, traffic app, health monitor, watcher, server.

Start-up order matters: everything that can fail (config, database, listeners) fails before
anything is served, with one line naming the cause (`StartupError`).
"""
from __future__ import annotations

import asyncio
import logging
import signal

from proxy.access_log import AccessLog, open_access_log
from proxy.cache_purge import PurgeAnnouncer
from proxy.channel_names import BACKEND_ACTIVITY, BACKEND_FAILED, REPORTS_GROUP
from proxy.config_source import ConfigSource
from proxy.dispatch import HealthSink
from proxy.headers import HeaderRules, TrustedProxies
from proxy.health_follow import HealthFollower
from proxy.node_slots import NodeSlots
from proxy.one_thread import OneThread
from proxy.state import DataPlane
from proxy.supervisor import workers_directory
from proxy.watcher import ConfigWatcher
from proxy.websocket_tunnel import WebSocketLimits

log = logging.getLogger("director.proxy")

ACTIVITY_FLUSH = 1.0  # seconds between live-traffic reports to the health monitor


class StartupError(Exception):
    """One clear line for the operator; runproxy exits 1."""


class MonitorLink(HealthSink):
    """Passive health facts to the monitor that checks the backend: the in-process
    HealthMonitor when it holds the backend's lease, else every monitor over the channel
    layer (the holder acts). Failures are also noted by the HealthFollower, which lifts the
    local offline mark if no monitor confirms it."""

    def __init__(self, monitor=None, channel_layer=None, follower: HealthFollower | None = None):
        self.monitor = monitor
        self.layer = channel_layer
        self.follower = follower
        self._active: set[int] = set()

    def failed(self, backend_id: int, reason: str) -> None:
        if self.follower is not None:
            self.follower.mark(backend_id)
        if self.monitor is not None and self.monitor.holds(backend_id):
            self.monitor.report_failure(backend_id, reason)
        elif self.layer is not None:
            message = {"type": BACKEND_FAILED, "backend": backend_id, "error": reason}
            asyncio.get_running_loop().create_task(_send_quietly(self.layer, message))

    def activity(self, backend_id: int) -> None:
        self._active.add(backend_id)

    async def flush_activity(self) -> None:
        while True:
            await asyncio.sleep(ACTIVITY_FLUSH)
            if not self._active:
                continue
            ids, self._active = sorted(self._active), set()
            if self.monitor is not None:
                self.monitor.report_activity(ids)
                ids = [i for i in ids if not self.monitor.holds(i)]
            if ids and self.layer is not None:
                await _send_quietly(self.layer, {"type": BACKEND_ACTIVITY, "backends": ids})


async def _send_quietly(layer, message) -> None:
    try:
        await layer.group_send(REPORTS_GROUP, message)
    except Exception as exc:  # noqa: BLE001 - the monitor's own checks will still find the failure
        log.debug("cannot reach the health monitors: %s", exc)


def websocket_limits(settings) -> WebSocketLimits:
    """The `[proxy] websocket_*` settings of a ProxySettings."""
    return WebSocketLimits(settings.websocket_idle_timeout, settings.websocket_max_message)


class ProxyService:
    def __init__(self, settings, source: ConfigSource, *, channel_layer=None, monitor_factory=None,
                 serve_monitor=None, snapshot=None, on_database_back=None):
        """`source`: the control plane's side (proxy.config_source). `monitor_factory(plane,
        layer)`: this process's health monitor (None: no monitor here); `serve_monitor(monitor)`:
        the coroutine feeding it channel-layer messages. `snapshot`: a proxy.snapshot.SnapshotStore
        (the last rows applied, for starting without the database); `on_database_back()`:
        blocking, run once the database answers again after this process started without it."""
        self.snapshot = snapshot
        self.settings = settings
        self.source = source
        # Routes too come from the database (the config sync stored the file's).
        self.plane = DataPlane(node_slots=NodeSlots.from_environment(workers_directory()))
        self.rules = HeaderRules(settings.pseudonym, TrustedProxies(settings.trusted_proxies))
        self.layer = channel_layer
        self.monitor = monitor_factory(self.plane, self.layer) if monitor_factory is not None else None
        self.serve_monitor = serve_monitor
        self.source_thread = OneThread("director-config")  # every source call: one kept connection
        run = self.source_thread.run
        self.follower = HealthFollower(self.plane, read=source.read_health, run_blocking=run)
        self.link = MonitorLink(self.monitor, self.layer, self.follower)
        self.watcher = ConfigWatcher(self.plane, source, channel_layer=self.layer, snapshot=snapshot,
                                     on_database_back=on_database_back, run_blocking=run)
        self._tasks: list[asyncio.Task] = []
        self.access_log = access_log_for(settings)
        self._app = None

    def load_initial_state(self) -> None:
        """Read the database once before serving (blocking; before the loop runs); when it
        does not answer, the last snapshot, else StartupError."""
        try:
            rows = self.source_thread.call(self.source.read_rows)
        except Exception as exc:  # noqa: BLE001 - whatever the driver raises: the database is away
            rows = self.snapshot.load() if self.snapshot is not None else None
            if rows is None:
                raise StartupError(f"database unreachable and no configuration snapshot to serve from: {exc}") from None
            log.warning("database unreachable (%s): serving the configuration saved at %s in %s until it answers",
                        " ".join(str(exc).split()), self.snapshot.saved_at(), self.snapshot.path)
            self.watcher.outage.failing = True  # its callback runs once the database answers
        else:
            if self.snapshot is not None:
                self.snapshot.save(rows)
        self.plane.apply_rows(*rows)

    def traffic_app(self):
        from proxy.app import ProxyApp

        self._app = ProxyApp(self.plane, self.rules, self.link, websocket_limits(self.settings), self.access_log)
        if self.layer is not None:
            self._app.cache_flow.announce_purge = PurgeAnnouncer(self.layer).announce
        return self._app

    def set_access_log(self, settings) -> None:
        """Reloaded `[proxy] access_log` / `access_log_format`: a changed one is opened (an
        error keeps the running one and raises StartupError), the old one closes after its lines."""
        current = self.access_log
        if current is None and not settings.access_log:
            return
        if current is not None and (current.target_setting, current.format_name) == (
                settings.access_log, settings.access_log_format):
            return
        new = access_log_for(settings)
        self.access_log = new
        if self._app is not None:
            self._app.access_log = new
        if current is not None:
            current.close(wait=None)

    def reopen_access_log(self) -> None:
        """SIGUSR1: open the access log file again (logrotate)."""
        if self.access_log is not None:
            self.access_log.reopen()

    def hear_reopen(self, loop: asyncio.AbstractEventLoop) -> None:
        """Handle SIGUSR1 from now on, and catch up with a rotation that came before (the
        process ignored the signal while it started)."""
        loop.add_signal_handler(signal.SIGUSR1, self.reopen_access_log)
        if self.access_log is not None:
            self.access_log.reopen_if_moved()

    async def start_background(self) -> None:
        """Called on daphne's loop once every listener is bound."""
        loop = asyncio.get_running_loop()
        node = self.plane.node_slots
        if node is not None and node.doorbells is not None:
            node.doorbells.listen(self.plane.wake_waiters)
        await self.watcher.start()
        await self.follower.start()
        if self.monitor is not None:
            await self.monitor.start()
            if self.serve_monitor is not None:
                # Config pushes and passive facts from other processes reach the monitor at once.
                self._tasks.append(loop.create_task(self.serve_monitor(self.monitor)))
        self._tasks.append(loop.create_task(self.link.flush_activity()))

    async def stop_background(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.monitor is not None:
            await self.monitor.stop()
        await self.follower.stop()
        await self.watcher.stop()
        try:
            await self.source_thread.run(self.source.close)
        except Exception as exc:  # noqa: BLE001 - a connection the database already dropped
            log.debug("closing the config source: %s", exc)
        self.source_thread.shutdown()
        await self.plane.close()
        if self.access_log is not None:
            self.access_log.close()


def access_log_for(settings) -> AccessLog | None:
    """The access log `settings` ask for (None: off); StartupError naming the key when it
    cannot be opened."""
    try:
        return open_access_log(settings.access_log, settings.access_log_format)
    except OSError as exc:
        raise StartupError(f"proxy.access_log: cannot open {settings.access_log!r}: {exc.strerror or exc}") from None
