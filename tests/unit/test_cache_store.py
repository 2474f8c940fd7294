"""The cache's store (proxy.cache): LRU within cache_max_size, Vary variants, purge, settings
changes, and the updates other requests wait for."""
from __future__ import annotations

import asyncio

from proxy.cache import CachedObject, ResponseCache
from proxy.runtime import DirectorSettings


def store(max_size: int = 10_000, **settings) -> ResponseCache:
    cache = ResponseCache()
    cache.configure(DirectorSettings(cache_enabled=True, cache_max_size=max_size, **settings))
    return cache


def obj(size: int, ttl: float = 60.0, now: float = 100.0, headers=None) -> CachedObject:
    return CachedObject(200, headers or [], b"x" * size, ttl, now=now)


def test_least_recently_used_objects_go_first_and_bytes_stay_within_the_size():
    a, b, c = obj(100), obj(100), obj(100)
    per_object = a.size
    cache = store(max_size=3 * per_object)  # three objects; bodies up to 133 bytes
    for name, o in ((b"a", a), (b"b", b), (b"c", c)):
        assert cache.store(name, (), (), o)
    assert cache.bytes == 3 * per_object
    assert cache.find(b"a", ()) is a  # now the most recently used
    assert cache.store(b"d", (), (), obj(100))
    assert cache.find(b"b", ()) is None  # the least recently used went
    assert {key for key, _ in cache.objects} == {b"a", b"c", b"d"}
    assert cache.stats()["objects"] == 3 and cache.bytes == 3 * per_object


def test_bodies_over_an_eighth_of_the_size_are_not_stored():
    cache = store(max_size=8000)
    assert not cache.store(b"k", (), (), obj(1001))
    assert cache.store(b"k", (), (), obj(1000))
    assert cache.stats()["objects"] == 1


def test_storing_a_key_again_replaces_its_object():
    cache = store()
    cache.store(b"k", (), (), obj(100))
    newer = obj(200)
    cache.store(b"k", (), (), newer)
    assert cache.find(b"k", ()) is newer and cache.bytes == newer.size


def test_variants_follow_the_vary_of_the_last_stored_response():
    cache = store()
    names = (b"accept-language",)
    en, de = obj(10), obj(10)
    cache.store(b"k", names, (b"en",), en)
    cache.store(b"k", names, (b"de",), de)
    assert cache.variant_for(b"k", [(b"accept-language", b"de")]) == (b"de",)
    assert cache.find(b"k", (b"de",)) is de and cache.find(b"k", (b"en",)) is en
    plain = obj(10)
    cache.store(b"k", (), (), plain)  # no Vary any more: the old variants go
    assert cache.stats()["objects"] == 1 and cache.bytes == plain.size
    assert cache.variant_for(b"k", [(b"accept-language", b"de")]) == ()


def test_purge_marks_every_variant_stale_and_keeps_them():
    cache = store()
    cache.store(b"k", (b"accept",), (b"a",), obj(10))
    cache.store(b"k", (b"accept",), (b"b",), obj(10))
    assert cache.purge(b"k") == 2
    assert not cache.find(b"k", (b"a",)).fresh(100.0) and not cache.find(b"k", (b"b",)).fresh(100.0)
    assert cache.stats()["objects"] == 2
    assert cache.purge(b"other") == 0


def test_freshness_and_age():
    o = CachedObject(200, [(b"etag", b'"e"')], b"", 10.0, age=3.0, now=100.0)
    assert o.fresh(109.9) and not o.fresh(110.0)
    assert o.age_at(105.5) == 8
    assert o.etag == b'"e"' and o.last_modified is None


def test_settings_changes():
    cache = store(cache_key="%r")
    cache.store(b"/a", (), (), obj(10))
    cache.hits = 5
    cache.configure(DirectorSettings(cache_enabled=True, cache_key="%r", cache_max_size=10_000))
    assert cache.stats()["objects"] == 1  # same key pattern: kept
    cache.configure(DirectorSettings(cache_enabled=True, cache_key="%h%r", cache_max_size=10_000))
    assert cache.stats()["objects"] == 0  # another key pattern: the old keys mean nothing
    assert cache.key(b"http", b"Example.ORG", b"/p?q") == b"example.org/p"
    cache.store(b"k", (), (), obj(100))
    cache.configure(DirectorSettings(cache_enabled=True, cache_key="%h%r", cache_max_size=100))
    assert cache.bytes == 0  # shrunk below the object: evicted
    cache.store(b"k", (), (), obj(1))
    cache.configure(DirectorSettings(cache_enabled=False))
    assert cache.stats() == {"objects": 0, "bytes": 0, "hits": 5, "misses": 0, "shadow": 0}  # counters stay


def test_waiters_are_woken_with_the_outcome_once():
    async def scenario():
        cache = store()
        update = cache.begin_update(b"k", ())
        assert cache.update_in_flight(b"k", ()) is update
        waiters = [asyncio.ensure_future(update.wait()) for _ in range(3)]
        await asyncio.sleep(0)
        assert not any(w.done() for w in waiters)
        cache.end_update(b"k", (), update, stored=True)
        cache.end_update(b"k", (), update, stored=False)  # the updater's final word changes nothing
        assert cache.update_in_flight(b"k", ()) is None
        return await asyncio.gather(*waiters)

    assert asyncio.run(scenario()) == [True, True, True]
