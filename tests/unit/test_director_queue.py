"""DirectorRuntime: slots, FIFO queue, queue limit/timeout, backup role, enqueue_on_unavailable."""
import asyncio

import pytest

from proxy.addresses import BackendAddress
from proxy.director import DirectorRuntime, Refused
from proxy.runtime import BackendRuntime, DirectorSettings

ADDRESS = BackendAddress("http", "127.0.0.1", 9)


def make(settings=None, *specs):
    director = DirectorRuntime(1, "app")
    backends = []
    for i, (name, capacity, role, health) in enumerate(specs):
        b = BackendRuntime(i + 1, name, director, ADDRESS, upstream=None)
        b.capacity, b.role, b.health, b.position = capacity, role, health, i
        backends.append(b)
    director.rebuild(settings or DirectorSettings(), backends)
    return director, backends


async def test_takes_slot_and_queues_when_full_then_fifo():
    director, (a,) = make(DirectorSettings(queue_timeout=5), ("a", 1, "active", "online"))
    first = await director.acquire()
    assert first.backend is a and a.load == 1
    w1 = asyncio.ensure_future(director.acquire())
    w2 = asyncio.ensure_future(director.acquire())
    await asyncio.sleep(0)
    assert director.queued.current == 2
    first.release()
    second = await w1
    assert second.backend is a
    assert not w2.done()
    second.release()
    assert (await w2).backend is a
    assert director.queued.total == 2 and director.queued.current == 0


async def test_queue_limit_refuses():
    director, _ = make(DirectorSettings(queue_limit=1, queue_timeout=5), ("a", 1, "active", "online"))
    await director.acquire()
    waiter = asyncio.ensure_future(director.acquire())
    await asyncio.sleep(0)
    with pytest.raises(Refused, match="queue full"):
        await director.acquire()
    waiter.cancel()


async def test_queue_timeout_refuses_and_cleans_up():
    director, _ = make(DirectorSettings(queue_timeout=0.05), ("a", 1, "active", "online"))
    await director.acquire()
    with pytest.raises(Refused, match="queue timeout"):
        await director.acquire()
    assert director.queued.current == 0 and not director.queue


async def test_each_waiter_times_out_at_its_own_deadline_even_after_a_shorter_timeout_is_set():
    """One timer per director: waiters expire in turn, and a reload that shortens
    queue_timeout makes a later waiter expire before the earlier, longer ones."""
    loop = asyncio.get_running_loop()
    director, (a,) = make(DirectorSettings(queue_timeout=0.3), ("a", 1, "active", "online"))
    await director.acquire()
    started = loop.time()
    ended = {}

    async def wait(name):
        try:
            await director.acquire()
        except Refused:
            ended[name] = loop.time() - started

    first = asyncio.ensure_future(wait("first"))
    await asyncio.sleep(0.1)
    second = asyncio.ensure_future(wait("second"))
    await asyncio.sleep(0)
    director.rebuild(DirectorSettings(queue_timeout=0.05), [a])
    third = asyncio.ensure_future(wait("third"))
    await asyncio.gather(first, second, third)
    assert list(ended) == ["third", "first", "second"]
    assert ended["third"] >= 0.14 and ended["first"] >= 0.3 and ended["second"] >= 0.4  # never early
    assert ended["second"] < 2  # and not forgotten
    assert director.queued.current == 0 and not director.queue


async def test_nothing_online_refuses_at_once_or_queues_when_asked():
    director, (a,) = make(DirectorSettings(), ("a", 0, "active", "offline"))
    with pytest.raises(Refused, match="no backend online"):
        await director.acquire()
    director, (a,) = make(DirectorSettings(enqueue_on_unavailable=True, queue_timeout=5), ("a", 0, "active", "offline"))
    waiter = asyncio.ensure_future(director.acquire())
    await asyncio.sleep(0)
    assert not waiter.done()
    director.set_health(a, "online")
    assert (await waiter).backend is a


async def test_backup_only_when_no_active_online():
    director, (a, b) = make(DirectorSettings(queue_timeout=5), ("a", 1, "active", "online"), ("b", 0, "backup", "online"))
    held = await director.acquire()
    assert held.backend is a
    # active merely full: wait in the queue, backup is not used
    waiter = asyncio.ensure_future(director.acquire())
    await asyncio.sleep(0)
    assert not waiter.done()
    director.set_health(a, "offline")
    held.release()
    assert (await waiter).backend is b


async def test_cancelled_waiter_leaves_queue_and_frees_nothing():
    director, (a,) = make(DirectorSettings(queue_timeout=5), ("a", 1, "active", "online"))
    held = await director.acquire()
    waiter = asyncio.ensure_future(director.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert director.queued.current == 0
    held.release()
    assert a.load == 0


async def test_disabled_director_refuses():
    director, _ = make(DirectorSettings(enabled=False), ("a", 0, "active", "online"))
    with pytest.raises(Refused, match="disabled"):
        await director.acquire()


async def test_retry_with_every_candidate_tried_refuses():
    director, (a, b) = make(DirectorSettings(), ("a", 0, "active", "online"), ("b", 0, "active", "online"))
    with pytest.raises(Refused, match="no other backend"):
        await director.acquire({a, b}, retrying=True)


async def test_reload_keeps_round_robin_rotation():
    director, (a, b_, c) = make(DirectorSettings(), ("a", 0, "active", "online"), ("b", 0, "active", "online"),
                                ("c", 0, "active", "online"))
    first = await director.acquire()
    first.release()
    director.rebuild(DirectorSettings(), [a, b_, c])  # e.g. another director's backend changed health
    second = await director.acquire()
    assert (first.backend.name, second.backend.name) == ("a", "b")


async def test_a_slot_is_a_lease_released_once_and_transferable():
    director, (a,) = make(DirectorSettings(queue_timeout=5), ("a", 1, "active", "online"))
    slot = await director.acquire()
    finisher = slot.transfer()  # the client left; a background finisher holds the slot now
    slot.release()  # the request's own exit path: a no-op
    assert a.load == 1 and finisher.held and not slot.held
    with pytest.raises(RuntimeError):
        slot.transfer()
    finisher.release()
    finisher.release()
    assert a.load == 0 and director.load.current == 0
    assert (director.load.total, director.load.max, a.load_counter.total) == (1, 1, 1)


async def test_a_freed_slot_goes_to_the_oldest_waiter_that_may_take_it():
    """Every backend full: the slot one frees goes to the first waiter in line that neither
    excludes it (a retry) nor waits for another backend (a sticky cookie's), and the load
    figures count each lease once."""
    director, (a, b) = make(DirectorSettings(queue_timeout=5), ("a", 1, "active", "online"),
                            ("b", 1, "active", "online"))
    on_a, on_b = await director.acquire(), await director.acquire()
    assert {on_a.backend, on_b.backend} == {a, b}
    if on_a.backend is b:
        on_a, on_b = on_b, on_a
    retry = asyncio.ensure_future(director.acquire({a}, retrying=True))
    sticky = asyncio.ensure_future(director.acquire(prefer=b))
    plain = asyncio.ensure_future(director.acquire())
    await asyncio.sleep(0)
    assert director.queued.current == 3

    on_a.release()
    await asyncio.sleep(0)
    assert plain.done() and plain.result().backend is a
    assert not retry.done() and not sticky.done()
    on_b.release()
    await asyncio.sleep(0)
    assert retry.done() and retry.result().backend is b and not sticky.done()

    assert (a.load, b.load, director.load.current) == (1, 1, 2)
    assert (a.load_counter.total, b.load_counter.total, director.load.total) == (2, 2, 4)
    retry.result().release()
    assert (await sticky).backend is b
    plain.result().release()
    sticky.result().release()
    assert (a.load, b.load, director.load.current, director.queued.current) == (0, 0, 0, 0)
