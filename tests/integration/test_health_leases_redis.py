"""balancer.health.leases.RedisLeases against the real Redis: the scripts renew, claim,
expire and release as the lease logic (tests/unit/test_health_leases.py) assumes."""
from __future__ import annotations

import uuid

import pytest

from balancer.health.leases import RedisLeases
from tests.support.shared_services import redis_url
from tests.support.waiting import async_wait_for


@pytest.fixture
async def leases():
    store = RedisLeases(redis_url(), f"test-{uuid.uuid4().hex[:8]}")
    yield store
    keys = [key async for key in store._client.scan_iter(f"{store.prefix}:*")]
    if keys:
        await store._client.delete(*keys)
    await store.close()


async def test_one_owner_per_key_renewal_expiry_and_release(leases):
    assert await leases.acquire("a", {1: 60_000, 2: 300}) == {1, 2}
    assert await leases.acquire("b", {1: 60_000, 2: 300, 3: 60_000}) == {3}
    assert await leases.acquire("a", {1: 60_000}) == {1}  # renewed; 2 is left to expire
    assert await leases._client.pttl(leases.key(1)) > 50_000
    await async_wait_for(lambda: leases.acquire("b", {2: 60_000}), 3, what="b to claim 2 once a's lease expired")
    assert await leases._client.get(leases.key(2)) == b"b"
    await leases.release("b", [1, 2, 3])  # 1 is a's: kept
    assert await leases.acquire("c", {1: 1000, 2: 1000, 3: 1000}) == {2, 3}


async def test_a_thousand_leases_in_one_call(leases):
    ttls = {i: 4000 for i in range(1000)}
    assert await leases.acquire("a", ttls) == set(ttls)
    assert await leases.acquire("b", ttls) == set()


def test_prefixes_keep_two_directors_apart():
    first, second = RedisLeases("redis://127.0.0.1:1/0", "director:aaaa"), RedisLeases("redis://127.0.0.1:1/0", "director:bbbb")
    assert first.key(7) != second.key(7) and first.key(7).startswith("director:aaaa:")
