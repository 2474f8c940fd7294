"""One dedicated thread for ORM work started from async code (health monitor, operator views).

The event loop carries live traffic, so blocking database calls never run on it. A single
thread keeps writes in order and holds one connection; a failed call drops that connection
so the next call reconnects.
"""
from __future__ import annotations

import asyncio

from proxy.one_thread import OneThread


class DatabaseThread(OneThread):
    def run(self, func, *args) -> asyncio.Future:
        """`func(*args)` in the thread; an awaitable future."""
        return super().run(_guarded, func, args)

    async def close(self) -> None:
        """Close the thread's connection, then the thread."""
        if self._executor is None:
            return
        try:
            await self.run(_close_connection)
        finally:
            self.shutdown()


def _guarded(func, args):
    from django.db import connection

    try:
        return func(*args)
    except Exception:
        connection.close()
        raise


def _close_connection() -> None:
    from django.db import connection

    connection.close()  # resolved in the database thread: that thread's connection
