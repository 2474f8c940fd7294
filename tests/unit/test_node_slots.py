"""The node-wide table (proxy.node_slots): a director's queue_limit holds across processes
that queue at the same moment."""
import multiprocessing

import pytest

from proxy import node_slots
from proxy.node_slots import NodeSlots

DIRECTOR = 7


@pytest.fixture
def table(tmp_path):
    return node_slots.create(tmp_path)


def test_the_last_place_in_the_queue_goes_to_one_process(table):
    first, second = NodeSlots(table, 0), NodeSlots(table, 1)
    assert first.try_wait(DIRECTOR, 2)
    assert second.try_wait(DIRECTOR, 2)
    assert not first.try_wait(DIRECTOR, 2)
    assert not second.try_wait(DIRECTOR, 2)
    assert first.waiting(DIRECTOR) == (2, 2)
    second.set_waiting(DIRECTOR, 0)  # its waiter left
    assert first.try_wait(DIRECTOR, 2)
    assert second.waiting(DIRECTOR) == (2, 1)


def _queue_and_leave(table, column: int, rounds: int, overruns, go) -> None:
    slots = NodeSlots(table, column)
    go.wait(30)  # all start racing together
    for _ in range(rounds):
        if slots.try_wait(DIRECTOR, 1):
            if slots.waiting(DIRECTOR)[0] > 1:
                with overruns.get_lock():
                    overruns.value += 1
            slots.set_waiting(DIRECTOR, 0)


def test_processes_racing_for_one_place_never_both_get_it(table):
    context = multiprocessing.get_context("spawn")  # fork in a threaded test process may deadlock
    overruns, go = context.Value("i", 0), context.Event()
    processes = [context.Process(target=_queue_and_leave, args=(table, column, 20000, overruns, go))
                 for column in range(3)]
    for process in processes:
        process.start()
    go.set()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    assert overruns.value == 0
