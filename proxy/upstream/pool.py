"""A keep-alive pool of upstream connections for one backend, protocol-agnostic.

Idle connections are reused LIFO (the most recently used one is the most likely to be warm
and still open on the backend side). A connection whose peer closed while idle reports
`is_closing()` and is dropped instead of being handed out; ones idle longer than
`idle_timeout` are closed lazily on `acquire`, so there is no timer per connection.
One request at a time per connection: a connection is either idle or in use.

With a `budget` (proxy.upstream.connection_budget: FastCGI under `--workers`), every
connection opened and closed is counted in the node, a released one is kept idle only while
the node is within the budget, and `trim()` closes idle ones when another worker needs room.
"""
from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Awaitable, Callable, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from proxy.upstream.connection_budget import ConnectionBudget

# Seconds an idle upstream connection is kept: below the keep-alive timeouts of common
# servers (Apache, Node, uvicorn 5 s; nginx 75 s), so we close it before the backend does
# and never send a request into the backend's close (FastCGI keeps its own, shorter one).
IDLE_TIMEOUT = 4.0


class PooledConnection(Protocol):
    """What the pool needs from a connection object."""

    reusable: bool

    def is_closing(self) -> bool: ...

    def close(self) -> None: ...


C = TypeVar("C", bound=PooledConnection)


class ConnectionPool(Generic[C]):
    def __init__(
        self,
        connect: Callable[[float], Awaitable[C]],
        *,
        max_idle: int = 64,
        idle_timeout: float = IDLE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._connect = connect
        self._max_idle = max_idle
        self._idle_timeout = idle_timeout
        self._clock = clock
        self._idle: deque[tuple[C, float]] = deque()  # (conn, idle since), oldest left
        self._in_use: dict[C, bool] = {}  # conn -> fresh (close after use)
        self._opened = 0
        self._closed = False
        self.budget: ConnectionBudget | None = None  # None: no node-wide count

    async def acquire(self, connect_timeout: float, *, fresh: bool = False, reuse: bool = True) -> tuple[C, bool]:
        """A connection and whether it was reused from the idle pool.

        `fresh`: always a new connection, closed on release (health checks). `reuse=False`:
        a new connection that may be pooled afterwards (retry after a stale one).
        """
        if not fresh and reuse:
            conn = self.take_idle()
            if conn is not None:
                return conn, True
        conn = await self._connect(connect_timeout)
        self._opened += 1
        self._in_use[conn] = fresh
        if self.budget is not None:
            self.budget.opened()
        return conn, False

    def take_idle(self) -> C | None:
        """An idle connection, now in use, or None: acquire's usual case without a coroutine
        (a client on the request path tries this first)."""
        conn = self._take_idle()
        if conn is not None:
            self._in_use[conn] = False
        return conn

    def _take_idle(self) -> C | None:
        idle = self._idle
        if not idle:
            return None
        expired = self._clock() - self._idle_timeout
        while idle and idle[0][1] < expired:
            self._close(idle.popleft()[0])
        while idle:
            conn = idle.pop()[0]
            if not conn.is_closing():
                return conn
            self._close(conn)
        return None

    def _close(self, conn: C) -> None:
        """Close a connection this pool is done with (counted once, here)."""
        conn.close()
        if self.budget is not None:
            self.budget.closed()

    def release(self, conn: C) -> None:
        """Back to the idle pool when it can carry another request, else closed. Idempotent."""
        fresh = self._in_use.pop(conn, None)
        if fresh is None:
            return
        if fresh or self._closed or not conn.reusable or conn.is_closing() or (
                self.budget is not None and self.budget.over()):
            self._close(conn)
            return
        if len(self._idle) >= self._max_idle:
            self._close(self._idle.popleft()[0])
        self._idle.append((conn, self._clock()))

    def discard(self, conn: C) -> None:
        """Close it; it is never reused."""
        if self._in_use.pop(conn, None) is not None:
            self._close(conn)
        else:
            conn.close()

    @property
    def open_count(self) -> int:
        """Connections idle or in use."""
        return len(self._idle) + len(self._in_use)

    def trim(self) -> None:
        """Close idle connections, oldest first, while the node is over the budget."""
        budget = self.budget
        while self._idle and budget is not None and budget.over():
            self._close(self._idle.popleft()[0])

    async def close(self) -> None:
        """Close every idle connection; in-use ones are closed when released."""
        self._closed = True
        while self._idle:
            self._close(self._idle.popleft()[0])

    def stats(self) -> dict:
        self._prune_closed()
        return {"idle": len(self._idle), "in_use": len(self._in_use), "opened": self._opened}

    def _prune_closed(self) -> None:
        if any(conn.is_closing() for conn, _ in self._idle):
            alive = [(conn, since) for conn, since in self._idle if not conn.is_closing()]
            for conn, _ in self._idle:
                if conn.is_closing():
                    self._close(conn)
            self._idle = deque(alive)
