"""Doorbells between workers (proxy.node_wake): a slot one process frees wakes the processes
with requests waiting for the director, over real sockets, and nobody else."""
import asyncio

import pytest

from proxy import node_slots
from proxy.node_slots import NodeSlots
from proxy.node_wake import Doorbells

DIRECTOR, BACKEND, CAPACITY = 7, 11, 2


@pytest.fixture
def table(tmp_path):
    return node_slots.create(tmp_path)


def worker(table, column: int) -> NodeSlots:
    slots = NodeSlots(table, column)
    slots.doorbells = Doorbells(table, column)
    return slots


async def rung(slots: NodeSlots, freeing: NodeSlots) -> bool:
    """Whether `freeing.offer()` rings `slots` (within a generous second)."""
    event = asyncio.Event()
    slots.doorbells.listen(event.set)
    freeing.offer(DIRECTOR, BACKEND, CAPACITY)
    try:
        await asyncio.wait_for(event.wait(), 1.0)
    except TimeoutError:
        return False
    return True


def test_a_freed_slot_rings_the_worker_with_waiting_requests(table):
    first, second = worker(table, 1), worker(table, 2)
    try:
        second.set_waiting(DIRECTOR, 3)
        assert asyncio.run(rung(second, first))
    finally:
        first.close()
        second.close()


def test_nobody_is_rung_when_only_the_freeing_worker_waits_or_the_backend_is_full(table):
    first, second = worker(table, 1), worker(table, 2)
    try:
        first.set_waiting(DIRECTOR, 2)  # its own queue already had its chance
        assert not asyncio.run(rung(second, first))
        second.set_waiting(DIRECTOR, 1)
        for _ in range(CAPACITY):
            assert first.try_take(BACKEND, CAPACITY)  # taken again before the ring
        assert not asyncio.run(rung(second, first))
    finally:
        first.close()
        second.close()


def test_the_supervisors_table_has_no_doorbell_and_rings_nobody(table):
    supervisor = NodeSlots(table, 0)
    second = worker(table, 2)
    try:
        second.set_waiting(DIRECTOR, 1)
        assert supervisor.doorbells is None
        assert not asyncio.run(rung(second, supervisor))
    finally:
        supervisor.close()
        second.close()
