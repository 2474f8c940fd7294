"""Keeps this process's view of backend health in step with the monitors (SPEC §11).

Health transitions are not configuration: they never bump the config version. They reach
the data plane three ways, each ordered by the stored `health_changed_at` stamp so that late
news never overwrites newer news:

- push: `health.changed` on group `director.health` (`apply_health_message`, called by the
  watcher), within milliseconds;
- poll, the safety net for lost pushes: every `poll_interval` one indexed query for the
  backends whose stamp is less than `LOOKBACK` seconds old (a transaction stamped earlier
  may commit later; clocks of nodes may differ a little);
- passive marks: a live request that failed here took the backend offline locally at once
  (proxy.dispatch) and reported it to the monitors. Normally the monitor holding the
  backend stores "offline" (a newer stamp) and later "online". If no news about the backend
  arrives within `MARK_GRACE` (the report was lost, or no monitor held the backend just
  then), the mark expires and the stored state wins again. Were the backend still broken,
  the next live request fails over to another backend and marks and reports it again; a
  backend that recovered is not held offline here forever.

A backend whose stored `enabled` differs from ours is left to the config reload (sticky
offline mode disables a backend together with its comeback: both must apply at once).
"""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta
from typing import Callable

from proxy.outage_log import OutageLog
from proxy.state import DataPlane

log = logging.getLogger("director.proxy")

POLL_INTERVAL = 0.5  # seconds between health polls
LOOKBACK = 5.0  # seconds of stamps each poll reads again
MARK_GRACE = 5.0  # seconds a passive mark waits for news before the stored state wins again
HEALTH_FIELDS = ("id", "health_state", "health_changed_at", "enabled")


def apply_health_message(plane: DataPlane, message: dict) -> None:
    """A `health.changed` push. A sticky comeback arrives disabled with the next config
    reload instead, so it is not applied here."""
    if message.get("sticky_disabled"):
        return
    stamp = message.get("changed_at")
    plane.apply_health(message["backend"], message["state"], changed_at=datetime.fromisoformat(stamp) if stamp else None)


class HealthFollower:
    def __init__(self, plane: DataPlane, *, read: Callable, poll_interval: float = POLL_INTERVAL,
                 clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], datetime] | None = None,
                 run_blocking: Callable = asyncio.to_thread):
        """`read`: ConfigSource.read_health, run by `run_blocking(func, *args)`."""
        self.plane = plane
        self._run = run_blocking
        self.poll_interval = poll_interval
        self._read = read
        self._clock = clock
        self._wall_clock = wall_clock or _utc_now
        self._marks: dict[int, tuple[float, object]] = {}  # backend id -> (when, health stamp then)
        self._task: asyncio.Task | None = None

    def mark(self, backend_id: int) -> None:
        """A live request failed here and the data plane took the backend offline."""
        backend = self.plane.backends.get(backend_id)
        if backend is not None:
            self._marks[backend_id] = (self._clock(), backend.health_stamp)

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        outage = OutageLog(log, "health poll failed")
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.poll()
                outage.ok()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - database away: pushes still arrive
                outage.failed(exc)

    async def poll(self) -> None:
        """Apply stored health news this process missed; expire unconfirmed passive marks."""
        expired = self._expired_marks()
        since = self._wall_clock() - timedelta(seconds=LOOKBACK)
        rows = await self._run(self._read, since, sorted(expired))
        for row in rows:
            backend = self.plane.backends.get(row["id"])
            if backend is None or backend.enabled != row["enabled"]:
                continue  # not loaded yet, or a config change: the config reload applies it
            forced = row["id"] in expired and backend.health_stamp == expired[row["id"]]
            if forced and backend.health != row["health_state"]:
                log.info("director %s: backend %s: no health news since a live request failed here; "
                         "using the stored state %s", backend.director.name, backend.name, row["health_state"])
            self.plane.apply_health(row["id"], row["health_state"], changed_at=row["health_changed_at"], force=forced)

    def _expired_marks(self) -> dict[int, object]:
        """Marks past their grace, by backend id, with the stamp they were made at. Marks
        that news superseded (the stamp moved) are dropped."""
        now = self._clock()
        expired = {}
        for backend_id, (when, stamp) in list(self._marks.items()):
            backend = self.plane.backends.get(backend_id)
            if backend is None or backend.health_stamp != stamp:
                del self._marks[backend_id]
            elif now - when >= MARK_GRACE:
                del self._marks[backend_id]
                expired[backend_id] = stamp
        return expired


def _utc_now() -> datetime:
    from datetime import timezone

    return datetime.now(timezone.utc)
