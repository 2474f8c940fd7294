"""Lease logic of balancer.health.leases over a fake store with a fake clock: what the Redis
script does (renew own keys, claim free ones, keys expire after their TTL), without Redis."""
from __future__ import annotations

import pytest

from balancer.health.leases import MAX_TICK, LeaseKeeper, lease_ttl, tick_interval
from tests.unit.test_health_session import Clock


class FakeStore:
    """The Lua scripts' semantics over a dict: key -> (owner, expiry)."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self.keys: dict[int, tuple[str, float]] = {}
        self.down = False

    def _live(self, backend_id):
        entry = self.keys.get(backend_id)
        if entry is not None and entry[1] <= self.clock():
            del self.keys[backend_id]
            return None
        return entry

    async def acquire(self, owner, ttls_ms):
        if self.down:
            raise ConnectionError("store down")
        held = set()
        for backend_id, ttl in ttls_ms.items():
            entry = self._live(backend_id)
            if entry is None or entry[0] == owner:
                self.keys[backend_id] = (owner, self.clock() + ttl / 1000)
                held.add(backend_id)
        return held

    async def release(self, owner, ids):
        for backend_id in ids:
            if (self._live(backend_id) or (None,))[0] == owner:
                del self.keys[backend_id]

    async def close(self):
        pass


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(clock):
    return FakeStore(clock)


def keeper(store, clock, name):
    return LeaseKeeper(store, owner=name, clock=clock)


INTERVAL = 2.0
TTLS = {i: lease_ttl(INTERVAL) for i in range(1, 11)}


def test_tick_and_ttl_bound_the_takeover_to_two_intervals_plus_one_second():
    for interval in (0.1, 0.5, 2.0, 2.5, 30.0):
        tick = tick_interval([interval, 60.0])
        assert tick <= MAX_TICK and tick <= interval / 2
        assert lease_ttl(interval) + tick <= 2 * interval + 1
        assert lease_ttl(interval) >= 4 * tick  # the holder renews several times per TTL
    assert tick_interval([]) == MAX_TICK


async def test_each_backend_is_held_by_exactly_one_of_several_monitors(store, clock):
    a, b, c = (keeper(store, clock, n) for n in "abc")
    for _ in range(5):
        for k in (a, b, c):
            await k.tick(TTLS)
        clock.now += tick_interval([INTERVAL])
        assert set().union(a.held, b.held, c.held) == set(TTLS)
        assert not (a.held & b.held or a.held & c.held or b.held & c.held)


async def test_a_dead_holder_is_taken_over_once_its_leases_expire(store, clock):
    a, b = keeper(store, clock, "a"), keeper(store, clock, "b")
    await a.tick(TTLS)
    assert (await b.tick(TTLS)).gained == set()
    killed = clock.now  # a stops renewing
    tick = tick_interval([INTERVAL])
    while True:
        clock.now += tick
        change = await b.tick(TTLS)
        if change.gained:
            break
    assert change.gained == set(TTLS) and b.held == set(TTLS)
    assert clock.now - killed <= 2 * INTERVAL + 1


async def test_a_clean_stop_hands_over_at_the_next_tick(store, clock):
    a, b = keeper(store, clock, "a"), keeper(store, clock, "b")
    await a.tick(TTLS)
    await b.tick(TTLS)
    await a.release()
    assert a.held == set()
    assert (await b.tick(TTLS)).gained == set(TTLS)


async def test_a_holder_that_lost_a_lease_is_told(store, clock):
    a, b = keeper(store, clock, "a"), keeper(store, clock, "b")
    await a.tick({1: 1.0})
    clock.now += 1.5  # a stalled past its TTL; b claims
    assert (await b.tick({1: 1.0})).gained == {1}
    change = await a.tick({1: 1.0})
    assert change.lost == {1} and a.held == set()


async def test_removed_backends_are_dropped_from_what_is_held(store, clock):
    a = keeper(store, clock, "a")
    await a.tick({1: 4.0, 2: 4.0})
    change = await a.tick({1: 4.0})
    assert change.lost == {2} and a.held == {1}


async def test_store_away_keeps_leases_then_checks_everything_then_gives_back(store, clock):
    a, b = keeper(store, clock, "a"), keeper(store, clock, "b")
    await a.tick({1: 4.0})
    await b.tick({1: 4.0, 2: 4.0})
    assert (a.held, b.held) == ({1}, {2})
    store.down = True
    clock.now += 1
    assert (await a.tick({1: 4.0, 2: 4.0})).gained == set() and a.held == {1}  # still its lease
    clock.now += 4
    change = await a.tick({1: 4.0, 2: 4.0})  # its leases would have expired: check everything
    assert change.gained == {2} and a.degraded
    store.down = False  # every lease expired meanwhile; b is first to claim
    await b.tick({1: 4.0, 2: 4.0})
    change = await a.tick({1: 4.0, 2: 4.0})
    assert not a.degraded and change.lost == {1, 2} and a.held == set()
