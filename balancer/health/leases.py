"""Per-backend health-check leases, so that any number of monitors check each backend once
per interval cluster-wide (SPEC §11 "Health in a cluster", DESIGN "Health is coordinated").

A lease is a Redis key `<prefix>:health:lease:<backend id>` whose value is the holding
monitor's id and whose TTL is `lease_ttl(interval)` (two intervals). Every `tick_interval`
seconds a monitor makes ONE script call for all the backends it knows: the script renews
(PEXPIRE) the keys that hold its id and claims (SET NX PX) the free ones, and answers which
it holds. A monitor that dies stops renewing; its keys expire after at most two intervals
and the next tick of another monitor claims them, so a backend goes unchecked for at most
2 × interval + tick ≤ 2 × interval + 1 s. A monitor that stops cleanly deletes its keys.

`LeaseKeeper` is the logic (what was gained and lost at each tick, what to do while the
store is unreachable) over a `store` with one method, `acquire(owner, ttls_ms) -> held ids`
(`RedisLeases` in production, a fake with a fake clock in the unit tests).

Without Redis there is only one process to coordinate, and the monitor holds every backend
without any lease (`keeper_from_settings()` returns None).
"""
from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Protocol

log = logging.getLogger("director.health")

MAX_TICK = 1.0  # seconds: a takeover is late by at most one tick beyond the TTL
TTL_INTERVALS = 2  # a lease lives this many check intervals unless renewed

_ACQUIRE = """
local held = {}
for i, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if owner == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[i + 1])
    held[#held + 1] = i
  elseif not owner then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[i + 1])
    held[#held + 1] = i
  end
end
return held
"""

_RELEASE = """
local released = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    released = released + 1
  end
end
return released
"""


def lease_ttl(interval: float) -> float:
    """Seconds a lease lasts without renewal."""
    return TTL_INTERVALS * interval


def tick_interval(intervals) -> float:
    """Seconds between lease ticks: at most half the shortest interval and at most 1 s, so
    the holder renews several times per TTL and a takeover is at most one tick late."""
    return min([MAX_TICK, *(i / 2 for i in intervals)])


def new_owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaseStore(Protocol):
    async def acquire(self, owner: str, ttls_ms: dict[int, int]) -> set[int]:
        """Renew the leases `owner` holds among `ttls_ms`, claim the free ones; the held ids."""

    async def release(self, owner: str, ids) -> None:
        """Give up the leases of `ids` that `owner` holds."""

    async def close(self) -> None: ...


class RedisLeases:
    """Leases as Redis keys; one script call per tick whatever the number of backends."""

    def __init__(self, url: str, prefix: str):
        import redis.asyncio

        self.prefix = prefix
        self._client = redis.asyncio.Redis.from_url(url, socket_timeout=MAX_TICK, socket_connect_timeout=MAX_TICK)
        self._acquire = self._client.register_script(_ACQUIRE)
        self._release = self._client.register_script(_RELEASE)

    def key(self, backend_id: int) -> str:
        return f"{self.prefix}:health:lease:{backend_id}"

    async def acquire(self, owner: str, ttls_ms: dict[int, int]) -> set[int]:
        if not ttls_ms:
            return set()
        ids = list(ttls_ms)
        held = await self._acquire(keys=[self.key(i) for i in ids], args=[owner, *(ttls_ms[i] for i in ids)])
        return {ids[index - 1] for index in held}

    async def release(self, owner: str, ids) -> None:
        keys = [self.key(i) for i in ids]
        if keys:
            await self._release(keys=keys, args=[owner])

    async def close(self) -> None:
        await self._client.aclose()


@dataclass
class LeaseChange:
    gained: set[int] = field(default_factory=set)
    lost: set[int] = field(default_factory=set)


class LeaseKeeper:
    """One monitor's leases: `tick()` renews and claims, and says what changed hands.

    While the store cannot be reached, the leases held stay held until they would have
    expired anyway; after that the keeper holds every backend (`degraded`): checks may then
    be duplicated across monitors, which is better than no checks at all. It gives them back
    as soon as the store answers again.
    """

    def __init__(self, store: LeaseStore, *, owner: str | None = None, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.owner = owner or new_owner_id()
        self.held: set[int] = set()
        self.degraded = False
        self._clock = clock
        self._last_ok = clock()

    async def tick(self, ttls: dict[int, float]) -> LeaseChange:
        """`ttls`: lease seconds per backend this monitor checks (its whole configuration)."""
        try:
            held = await self.store.acquire(self.owner, {i: max(1, round(t * 1000)) for i, t in ttls.items()})
        except Exception as exc:  # noqa: BLE001 - Redis away: see the class docstring
            held = self._unreachable(ttls, exc)
        else:
            if self.degraded:
                log.warning("health leases: Redis answers again; checking only the backends this monitor holds")
            self.degraded = False
            self._last_ok = self._clock()
        change = LeaseChange(gained=held - self.held, lost=self.held - held)
        self.held = held
        return change

    def _unreachable(self, ttls: dict[int, float], exc: Exception) -> set[int]:
        if self.degraded:
            return set(ttls)
        if self._clock() - self._last_ok <= max(ttls.values(), default=0):
            log.debug("health leases: store unreachable (%s); keeping the leases held", exc)
            return self.held & set(ttls)
        log.warning("health leases: store unreachable (%s); checking every backend until it returns", exc)
        self.degraded = True
        return set(ttls)

    async def release(self) -> None:
        """Give every lease back (a clean stop): another monitor takes over at its next tick."""
        held, self.held = self.held, set()
        try:
            await self.store.release(self.owner, held)
        except Exception as exc:  # noqa: BLE001 - they expire by themselves
            log.warning("health leases: could not release %d leases: %s", len(held), exc)

    async def close(self) -> None:
        await self.store.close()


def keeper_from_settings() -> LeaseKeeper | None:
    """A Redis lease keeper when the channel layer is shared (REDIS_URL), else None: a monitor
    whose messages cannot leave its process has nobody to share backends with."""
    from django.conf import settings

    from director_site import environment

    url = environment.redis_url()
    layer = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", "")
    if url is None or "InMemory" in layer:
        return None
    return LeaseKeeper(RedisLeases(url, environment.channel_prefix()))
