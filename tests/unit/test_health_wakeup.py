"""The flag health check tasks sleep on: set, deadline, cancellation."""
import asyncio
import time

import pytest

from balancer.health.wakeup import Wakeup


async def test_a_set_flag_returns_at_once():
    wakeup = Wakeup()
    wakeup.set()
    assert wakeup.is_set()
    assert await asyncio.wait_for(wakeup.wait(60), 1) is True


async def test_set_wakes_the_waiting_task_long_before_its_deadline():
    wakeup = Wakeup()
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, wakeup.set)
    started = time.monotonic()
    assert await wakeup.wait(30) is True
    assert time.monotonic() - started < 5


async def test_the_deadline_ends_the_wait_with_false():
    wakeup = Wakeup()
    started = time.monotonic()
    assert await wakeup.wait(0.1) is False
    assert 0.09 <= time.monotonic() - started < 5
    assert not wakeup.is_set()


async def test_clear_makes_the_next_wait_block_again():
    wakeup = Wakeup()
    wakeup.set()
    wakeup.clear()
    assert await wakeup.wait(0.05) is False


async def test_without_timeout_it_waits_until_set():
    wakeup = Wakeup()
    task = asyncio.ensure_future(wakeup.wait())
    await asyncio.sleep(0.1)
    assert not task.done()
    wakeup.set()
    assert await asyncio.wait_for(task, 5) is True


async def test_a_cancelled_wait_leaves_no_waiter_behind():
    wakeup = Wakeup()
    task = asyncio.ensure_future(wakeup.wait(30))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wakeup.wait(0.05) is False  # a new wait is not refused as a second waiter
    wakeup.set()
    assert await wakeup.wait(30) is True


async def test_a_second_waiter_is_refused():
    wakeup = Wakeup()
    first = asyncio.ensure_future(wakeup.wait(30))
    await asyncio.sleep(0.01)
    with pytest.raises(RuntimeError, match="already waiting"):
        await wakeup.wait(1)
    wakeup.set()
    assert await first is True
