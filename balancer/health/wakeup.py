"""A flag one task waits on, with an optional deadline: what a health check task sleeps on
between checks.

`asyncio.wait_for(event.wait(), delay)` does this at a price paid once per check and
backend: on Python 3.11 it wraps the wait in a second task, and when the delay passes (the
usual case between two checks) it cancels that task and waits for the cancellation to go
through. With 1,000 backends checked every 2 s, that was a tenth of the health monitor's CPU
(py-spy, bench/health.py). Here a wait is one future and one timer, and an expired wait is a
plain result, not an exception.
"""
from __future__ import annotations

import asyncio


class Wakeup:
    """Like asyncio.Event for one waiting task at a time, with `wait(timeout)`."""

    __slots__ = ("_flag", "_waiter")

    def __init__(self):
        self._flag = False
        self._waiter: asyncio.Future | None = None

    def set(self) -> None:
        self._flag = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def clear(self) -> None:
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    async def wait(self, timeout: float | None = None) -> bool:
        """True once the flag is set (at once if it is), False when `timeout` seconds passed
        first. Cancelling the waiting task leaves nothing behind."""
        if self._flag:
            return True
        if self._waiter is not None:
            raise RuntimeError("Wakeup.wait: another task is already waiting")
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
        try:
            return await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(False)
