"""The generic connection pool with fake connections and a fake clock."""
from __future__ import annotations

import pytest

from proxy.errors import ConnectError
from proxy.upstream.pool import ConnectionPool


class FakeConnection:
    def __init__(self, number: int):
        self.number = number
        self.reusable = True
        self.closed = False
        self.peer_closed = False

    def is_closing(self) -> bool:
        return self.closed or self.peer_closed

    def close(self) -> None:
        self.closed = True

    def __repr__(self):
        return f"conn{self.number}"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Factory:
    """The pool's connect callable: records timeouts, makes numbered connections."""

    def __init__(self):
        self.made: list[FakeConnection] = []
        self.timeouts: list[float] = []
        self.fail: Exception | None = None

    async def __call__(self, timeout: float) -> FakeConnection:
        self.timeouts.append(timeout)
        if self.fail is not None:
            raise self.fail
        conn = FakeConnection(len(self.made) + 1)
        self.made.append(conn)
        return conn


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def factory():
    return Factory()


@pytest.fixture
def pool(factory, clock):
    return ConnectionPool(factory, max_idle=3, idle_timeout=30.0, clock=clock)


async def test_new_connection_then_reuse(pool, factory):
    conn, reused = await pool.acquire(2.5)
    assert (reused, factory.timeouts) == (False, [2.5])
    assert pool.stats() == {"idle": 0, "in_use": 1, "opened": 1}
    pool.release(conn)
    assert pool.stats() == {"idle": 1, "in_use": 0, "opened": 1}
    again, reused = await pool.acquire(2.5)
    assert (again, reused) == (conn, True)
    assert len(factory.made) == 1


async def test_idle_reuse_is_lifo(pool):
    a, _ = await pool.acquire(1)
    b, _ = await pool.acquire(1)
    pool.release(a)
    pool.release(b)
    assert (await pool.acquire(1))[0] is b
    assert (await pool.acquire(1))[0] is a


async def test_unreusable_or_closing_connections_are_closed_on_release(pool):
    a, _ = await pool.acquire(1)
    b, _ = await pool.acquire(1)
    a.reusable = False
    b.peer_closed = True
    pool.release(a)
    pool.release(b)
    assert a.closed and b.closed
    assert pool.stats() == {"idle": 0, "in_use": 0, "opened": 2}


async def test_peer_closed_while_idle_is_never_handed_out(pool, factory):
    a, _ = await pool.acquire(1)
    b, _ = await pool.acquire(1)
    pool.release(a)
    pool.release(b)
    b.peer_closed = True
    conn, reused = await pool.acquire(1)
    assert (conn, reused) == (a, True)
    assert b.closed
    a.peer_closed = True
    pool.release(a)
    conn, reused = await pool.acquire(1)
    assert (conn.number, reused) == (3, False)


async def test_stats_do_not_count_idle_connections_whose_peer_closed(pool):
    a, _ = await pool.acquire(1)
    pool.release(a)
    a.peer_closed = True
    assert pool.stats()["idle"] == 0
    assert a.closed


async def test_idle_timeout_closes_lazily_on_acquire(pool, clock):
    a, _ = await pool.acquire(1)
    b, _ = await pool.acquire(1)
    pool.release(a)
    clock.now += 20
    pool.release(b)
    clock.now += 15  # a idle 35 s (expired), b idle 15 s
    assert not a.closed  # no timer: nothing happens until the next acquire
    conn, reused = await pool.acquire(1)
    assert (conn, reused) == (b, True)
    assert a.closed
    assert pool.stats()["idle"] == 0


async def test_max_idle_closes_the_oldest(pool):
    conns = [(await pool.acquire(1))[0] for _ in range(4)]
    for conn in conns:
        pool.release(conn)
    assert conns[0].closed and not any(c.closed for c in conns[1:])
    assert pool.stats()["idle"] == 3


async def test_fresh_connection_is_new_and_closed_after_use(pool, factory):
    a, _ = await pool.acquire(1)
    pool.release(a)
    fresh, reused = await pool.acquire(1, fresh=True)
    assert fresh is not a and not reused
    pool.release(fresh)
    assert fresh.closed
    assert pool.stats() == {"idle": 1, "in_use": 0, "opened": 2}


async def test_reuse_false_connects_but_pools_afterwards(pool):
    a, _ = await pool.acquire(1)
    pool.release(a)
    new, reused = await pool.acquire(1, reuse=False)
    assert new is not a and not reused
    pool.release(new)
    assert not new.closed
    assert pool.stats()["idle"] == 2


async def test_discard_closes_and_release_is_idempotent(pool):
    a, _ = await pool.acquire(1)
    pool.discard(a)
    assert a.closed
    pool.release(a)
    pool.release(a)
    assert pool.stats() == {"idle": 0, "in_use": 0, "opened": 1}


async def test_connect_failure_propagates_and_counts_nothing(pool, factory):
    factory.fail = ConnectError("connection refused")
    with pytest.raises(ConnectError):
        await pool.acquire(1)
    assert pool.stats() == {"idle": 0, "in_use": 0, "opened": 0}


async def test_close_closes_idle_and_later_released(pool):
    a, _ = await pool.acquire(1)
    b, _ = await pool.acquire(1)
    pool.release(a)
    await pool.close()
    assert a.closed and not b.closed
    pool.release(b)
    assert b.closed
    assert pool.stats() == {"idle": 0, "in_use": 0, "opened": 2}


class _Rings:
    """Stands in for a worker's doorbells: records which columns were rung."""

    def __init__(self):
        self.rung: list[int] = []

    def ring(self, column: int) -> None:
        self.rung.append(column)


async def test_a_budget_keeps_the_nodes_connections_within_the_limit(tmp_path):
    """Two workers (columns 0 and 1 of one node table) share a backend of capacity 2: a
    connection beyond it rings the other holder, which closes its idle one (trim); a
    released connection is closed rather than kept while the node is over."""
    from proxy import node_slots
    from proxy.upstream.connection_budget import ConnectionBudget

    table = node_slots.create(tmp_path)
    nodes = [node_slots.NodeSlots(table, column) for column in (0, 1)]
    rings = [_Rings(), _Rings()]
    for node, bell in zip(nodes, rings, strict=True):
        node.doorbells = bell  # type: ignore[assignment]
    factories = [Factory(), Factory()]
    pools = [ConnectionPool(factory, clock=Clock()) for factory in factories]
    for pool, node in zip(pools, nodes, strict=True):
        pool.budget = ConnectionBudget(node, "fastcgi://127.0.0.1:9000", 2)
    first, second = pools

    a1, _ = await first.acquire(1.0)
    a2, _ = await first.acquire(1.0)
    first.release(a1)
    first.release(a2)  # worker 0 keeps both idle: the node holds 2, its limit
    assert first.stats()["idle"] == 2 and rings[0].rung == rings[1].rung == []

    b1, _ = await second.acquire(1.0)  # a third connection: worker 1 rings worker 0
    assert rings[1].rung == [0]
    first.trim()  # what worker 0 does when rung
    assert a1.closed and not a2.closed and first.stats()["idle"] == 1
    assert nodes[0].total(node_slots.connections_key("fastcgi://127.0.0.1:9000")) == 2

    b2, _ = await second.acquire(1.0)  # over again; this time worker 1 releases first
    second.release(b2)
    assert b2.closed, "a released connection is not kept while the node is over its limit"
    second.release(b1)
    assert not b1.closed and second.stats()["idle"] == 1
    for node in nodes:
        node.doorbells = None
        node.close()
