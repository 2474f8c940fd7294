"""The status page's feed: one ticker per process that samples request rates every second
and pushes one frame to every open status websocket.

Rates are requests finished per second (every response class and failures), from
consecutive totals of the live snapshot. The ticker starts with the first subscriber and
then keeps sampling (cheaply: no database) so a newly opened page gets the last WINDOW
seconds of history for its charts. `poke()` pushes a frame at once with freshly read facts:
the consumers call it on every `health.changed` message, so a state change reaches the
pages within milliseconds instead of at the next tick.

Frames (JSON):
  {"type": "history", "interval": s, "window": s, "backends": {id: [[t, rate], ...]},
   "directors": {id: [[t, rate], ...]}}                               once, on connect
  {"type": "status", "time": t, "live": bool, "error": text | null,
   "directors": [...overview directors and backends, each with "rate" and "latency"
   (p50/p95 of the last minute, balancer.latency)]}                   every tick
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Awaitable, Callable

from . import livestats, overview
from .latency import LatencyTracker

log = logging.getLogger("director.views")

INTERVAL = 1.0  # seconds between frames
WINDOW = 300  # seconds of rate history kept for the charts
GAP = 3.0  # a sample older than this many intervals starts a new rate series

Subscriber = Callable[[dict], Awaitable[None]]


class RateTracker:
    """Requests per second per director and backend id, with a bounded history."""

    def __init__(self, interval: float = INTERVAL, window: int = WINDOW):
        self.interval = interval
        self.samples = max(1, int(window / interval))
        self._last: dict[tuple[str, int], tuple[float, int]] = {}
        self.rates: dict[tuple[str, int], float] = {}
        self.history: dict[tuple[str, int], deque] = {}

    def sample(self, directors: list[dict], now: float) -> None:
        seen = set()
        for director in directors:
            self._observe(("d", director["id"]), overview.total_responses(director), now)
            seen.add(("d", director["id"]))
            for backend in director["backends"]:
                self._observe(("b", backend["id"]), overview.total_responses(backend), now)
                seen.add(("b", backend["id"]))
        for key in [k for k in self._last if k not in seen]:
            del self._last[key]
            self.rates.pop(key, None)
            self.history.pop(key, None)

    def _observe(self, key, total: int, now: float) -> None:
        previous = self._last.get(key)
        self._last[key] = (now, total)
        if previous is None or not 0 < now - previous[0] <= GAP * self.interval:
            self.rates.pop(key, None)  # no made-up average over a gap
            return
        rate = max(0.0, (total - previous[1]) / (now - previous[0]))
        self.rates[key] = rate
        series = self.history.get(key)
        if series is None:
            series = self.history[key] = deque(maxlen=self.samples)
        series.append((round(now, 3), round(rate, 3)))

    def rate(self, kind: str, item_id: int) -> float | None:
        return self.rates.get((kind, item_id))

    def series(self, kind: str) -> dict[str, list]:
        return {str(key[1]): [list(p) for p in points] for key, points in self.history.items() if key[0] == kind}


class StatusFeed:
    """Per-process source of status frames; see the module docstring."""

    def __init__(self, *, interval: float = INTERVAL, window: int = WINDOW, facts: overview.FactsCache | None = None,
                 snapshot=livestats.get_snapshot, checks=livestats.get_health_stats, clock=time.time):
        self.interval = interval
        self.window = window
        self.rates = RateTracker(interval, window)
        self.latency = LatencyTracker()
        self._facts = facts or overview.FACTS
        self._snapshot = snapshot
        self._checks = checks
        self._clock = clock
        self._subscribers: list[Subscriber] = []
        self._task: asyncio.Task | None = None
        self._poked: asyncio.Event | None = None

    # -- subscribers -----------------------------------------------------------------------

    def subscribe(self, send: Subscriber) -> None:
        """`send(frame)` gets every status frame from now on; starts the ticker if needed."""
        self._subscribers.append(send)
        self._ensure_running()

    def unsubscribe(self, send: Subscriber) -> None:
        if send in self._subscribers:
            self._subscribers.remove(send)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def poke(self) -> None:
        """Something changed (health): re-read the stored facts and push a frame now."""
        self._facts.invalidate()
        if self._poked is not None:
            self._poked.set()

    # -- frames ----------------------------------------------------------------------------

    def history(self) -> dict:
        return {"type": "history", "interval": self.interval, "window": self.window,
                "backends": self.rates.series("b"), "directors": self.rates.series("d")}

    async def frame(self) -> dict:
        """The current status frame."""
        stored = await self._facts.get()
        merged = overview.merge(self._snapshot(), stored, self._checks())
        for director in merged["directors"]:
            director["rate"] = self.rates.rate("d", director["id"])
            director["latency"] = self.latency.percentiles("d", director["id"])
            for backend in director["backends"]:
                backend["rate"] = self.rates.rate("b", backend["id"])
                backend["latency"] = self.latency.percentiles("b", backend["id"])
        return {"type": "status", "time": round(self._clock(), 3), "error": self._facts.error, **merged}

    # -- ticker ----------------------------------------------------------------------------

    def _ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is not None and not self._task.done() and self._task.get_loop() is loop:
            return
        self._poked = asyncio.Event()
        self._task = loop.create_task(self._run())

    async def stop(self) -> None:
        """Stop the ticker (subscribers stay; the next subscribe starts it again)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        next_tick = time.monotonic()
        while True:
            delay = next_tick - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(self._poked.wait(), delay)
                except TimeoutError:
                    pass
            if time.monotonic() >= next_tick:
                self._sample()
                next_tick = max(next_tick + self.interval, time.monotonic())
            self._poked.clear()
            if self._subscribers:
                await self._push()

    def _sample(self) -> None:
        try:
            snapshot = self._snapshot()
            if snapshot is not None:
                now = self._clock()
                self.rates.sample(snapshot["directors"], now)
                self.latency.sample(snapshot["directors"], now)
        except Exception:
            log.exception("status feed could not sample request rates")

    async def _push(self) -> None:
        try:
            frame = await self.frame()
        except Exception:
            log.exception("status feed could not build a frame")
            return
        for send in list(self._subscribers):
            try:
                await send(frame)
            except Exception as exc:  # noqa: BLE001 - one closed socket must not starve the others
                log.debug("status frame not delivered: %s", exc)


FEED = StatusFeed()
