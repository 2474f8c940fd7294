"""Slow start units: the ramp's weight, `admit` with a fixed draw, the share a ramping backend
gets under each scheduler, and DirectorRuntime.set_health starting a ramp."""
import random
from time import monotonic

import pytest

from proxy.runtime import DirectorSettings
from proxy.slow_start import admit, ramp_weight, start_ramp
from tests.unit.test_director_queue import make

TWO = (("a", 0, "active", "online"), ("b", 0, "active", "online"))


def test_weight_grows_linearly_and_ends_at_one():
    _, (a, _) = make(DirectorSettings(), *TWO)
    start_ramp(a, 10, now=100.0)
    assert [ramp_weight(a, t) for t in (100.0, 102.5, 105.0, 110.0, 200.0)] == [0.0, 0.25, 0.5, 1.0, 1.0]


def test_admit_keeps_the_pick_with_the_probability_of_its_weight():
    director, (a, b) = make(DirectorSettings(), *TWO)
    start_ramp(a, 10, now=100.0)
    assert admit(director.active, a, frozenset(), now=103.0, draw=lambda: 0.29) is a
    assert admit(director.active, a, frozenset(), now=103.0, draw=lambda: 0.31) is b


def test_admit_falls_back_to_the_first_pick_when_every_candidate_declines():
    director, (a, b) = make(DirectorSettings(), *TWO)
    start_ramp(a, 10, now=100.0)
    start_ramp(b, 10, now=100.0)
    assert admit(director.active, a, frozenset(), now=100.5, draw=lambda: 0.99) is a
    assert admit(director.active, a, {b}, now=100.5, draw=lambda: 0.99) is a


def test_a_finished_ramp_is_cleared():
    director, (a, _) = make(DirectorSettings(), *TWO)
    start_ramp(a, 10, now=100.0)
    assert admit(director.active, a, frozenset(), now=111.0, draw=lambda: 0.99) is a
    assert a.ramp_end == 0.0


@pytest.mark.parametrize("scheduler, ramping, expected", [
    ("rr", "b", 0.25 / 1.25),  # weight / (N - 1 + weight)
    ("chance", "a", 0.25),  # chance sends everything to the first: it keeps `weight` of it
    ("least_load", "a", 0.25),  # equal loads: the lowest index first, like chance
])
def test_share_under_each_scheduler(scheduler, ramping, expected):
    director, backends = make(DirectorSettings(scheduler=scheduler), *TWO)
    target = {b.name: b for b in backends}[ramping]
    now = monotonic()
    start_ramp(target, 1000, now=now - 250)  # a quarter into its ramp for the whole test
    random.seed(7)
    picks = [director._pick(frozenset()) for _ in range(20000)]
    share = sum(p is target for p in picks) / len(picks)
    assert abs(share - expected) < 0.02, share


def test_set_health_online_starts_a_ramp_only_with_slow_start():
    director, (a, b) = make(DirectorSettings(slow_start=10), *TWO)
    director.set_health(a, "offline")
    assert a.ramp_end == 0.0
    before = monotonic()
    director.set_health(a, "online")
    assert before + 10 <= a.ramp_end <= monotonic() + 10
    director.set_health(b, "online")  # no transition: no ramp
    assert b.ramp_end == 0.0
    b.health = "undefined"
    director.set_health(b, "online")  # a first verdict: no ramp
    assert b.ramp_end == 0.0
    plain, (c, _) = make(DirectorSettings(), *TWO)
    plain.set_health(c, "offline")
    plain.set_health(c, "online")
    assert c.ramp_end == 0.0
