"""One dedicated thread for ORM work started from async code (health monitor, operator views),
and the kept-connection rule every such thread follows.

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
        return super().run(on_kept_connection, func, *args)

    async def close(self) -> None:
        """Close the thread's connection, then the thread."""
        if self._executor is None:
            return
        try:
            await self.run(close_connection)
        finally:
            self.shutdown()


def on_kept_connection(func, *args, retry_reused: bool = False):
    """`func(*args)` on the calling thread's connection, kept between calls; a failure drops
    it, so the next call reconnects. `retry_reused` (reads only): a database error on a
    connection an earlier call opened (the server closed it meanwhile: a restart, an idle
    timeout, a terminated session) makes the call once more on a new one, so that only a
    database that does not answer now counts as away."""
    from django import db

    retry = retry_reused and db.connection.connection is not None
    while True:
        try:
            return func(*args)
        except Exception as exc:
            db.connection.close()
            if not (retry and isinstance(exc, db.Error)):
                raise
            retry = False


def close_connection() -> None:
    """Close the calling thread's connection (resolved per thread: that thread's own)."""
    from django.db import connection

    connection.close()
