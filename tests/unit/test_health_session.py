"""The per-backend health state machine: thresholds, passive failures, modes, stickiness."""
import pytest

from balancer.health.session import LAZY, OFFLINE, ONLINE, OPPORTUNISTIC, PARANOID, UNDEFINED, HealthSession, Policy, Transition


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture
def clock():
    return Clock()


def session(clock, state=UNDEFINED, **policy):
    return HealthSession(Policy(**policy), state=state, clock=clock)


def test_undefined_goes_online_after_success_threshold(clock):
    s = session(clock, success_threshold=3)
    assert s.record(True) is None
    assert s.record(True) is None
    assert s.record(True) == Transition(UNDEFINED, ONLINE)
    assert s.state == ONLINE
    assert s.record(True) is None  # already online: no second transition


def test_a_failure_resets_the_success_count(clock):
    s = session(clock, success_threshold=2, failure_threshold=5)
    s.record(True)
    s.record(False, "boom")
    assert s.record(True) is None
    assert s.record(True) == Transition(UNDEFINED, ONLINE)


def test_online_goes_offline_after_failure_threshold_with_the_error(clock):
    s = session(clock, state=ONLINE, failure_threshold=2)
    assert s.record(False, "connection refused") is None
    assert s.record(False, "read timeout") == Transition(ONLINE, OFFLINE, "read timeout")
    assert s.record(False, "again") is None


def test_a_success_resets_the_failure_count(clock):
    s = session(clock, state=ONLINE, failure_threshold=2)
    s.record(False, "x")
    s.record(True)
    assert s.record(False, "y") is None
    assert s.state == ONLINE


def test_undefined_goes_offline_after_one_bad_check_by_default(clock):
    s = session(clock)
    assert s.record(False, "connection refused") == Transition(UNDEFINED, OFFLINE, "connection refused")


def test_offline_comes_back_after_success_threshold(clock):
    s = session(clock, state=OFFLINE, success_threshold=2)
    s.record(True)
    assert s.record(True) == Transition(OFFLINE, ONLINE)


def test_passive_failure_is_offline_at_once_whatever_the_threshold(clock):
    s = session(clock, state=ONLINE, failure_threshold=10)
    s.record(True)
    assert s.passive_failure("connection reset") == Transition(ONLINE, OFFLINE, "connection reset", passive=True)
    assert s.passive_failure("again") is None  # already offline


def test_passive_failure_resets_counters_so_recovery_needs_the_full_threshold(clock):
    s = session(clock, state=OFFLINE, success_threshold=2)
    s.record(True)
    s.passive_failure("x")
    assert s.record(True) is None
    assert s.record(True) == Transition(OFFLINE, ONLINE)


def test_first_check_is_due_at_once_then_every_interval(clock):
    s = session(clock, interval=2.0)
    assert s.should_check()
    s.record(True)
    assert not s.should_check()
    assert s.due_at() == clock.now + 2.0
    clock.advance(1.99)
    assert not s.should_check()
    clock.advance(0.01)
    assert s.should_check()


@pytest.mark.parametrize("state", [UNDEFINED, ONLINE, OFFLINE])
def test_paranoid_checks_in_every_state(clock, state):
    s = session(clock, state=state, mode=PARANOID, interval=1.0)
    s.record(True) if state != OFFLINE else s.record(False)
    clock.advance(1.0)
    assert s.should_check()


def test_lazy_checks_until_state_is_known_then_not_while_online(clock):
    s = session(clock, mode=LAZY, interval=1.0, success_threshold=2)
    assert s.should_check()
    s.record(True)
    clock.advance(1.0)
    assert s.should_check()  # still undefined
    s.record(True)
    assert s.state == ONLINE
    clock.advance(100.0)
    assert not s.should_check()
    assert s.due_at() is None


def test_lazy_checks_while_offline_starting_one_interval_after_a_passive_failure(clock):
    s = session(clock, state=ONLINE, mode=LAZY, interval=1.0)
    assert not s.should_check()
    s.passive_failure("refused")
    assert not s.should_check()
    clock.advance(1.0)
    assert s.should_check()


def test_opportunistic_checks_an_online_backend_only_when_idle_for_an_interval(clock):
    s = session(clock, state=ONLINE, mode=OPPORTUNISTIC, interval=1.0)
    s.record(True)
    clock.advance(0.5)
    s.activity()
    clock.advance(0.9)
    assert not s.should_check()  # traffic 0.9 s ago
    clock.advance(0.1)
    assert s.should_check()  # idle for one interval
    s.record(True)
    clock.advance(0.5)
    s.activity()
    clock.advance(0.6)
    assert not s.should_check()
    assert s.due_at() == pytest.approx(clock.now + 0.4)


def test_opportunistic_checks_offline_backends_like_lazy(clock):
    s = session(clock, state=OFFLINE, mode=OPPORTUNISTIC, interval=1.0)
    s.activity()
    assert s.should_check()


def test_reconfigure_keeps_state_and_follows_the_new_interval(clock):
    s = session(clock, interval=10.0, success_threshold=2)
    s.record(True)
    s.reconfigure(Policy(interval=1.0, success_threshold=1))
    assert s.state == UNDEFINED and s.consecutive_successes == 1
    clock.advance(1.0)
    assert s.should_check()
    assert s.record(True) == Transition(UNDEFINED, ONLINE)


def test_sticky_only_applies_to_offline_to_online():
    assert Transition(OFFLINE, ONLINE).sticky_disables(True)
    assert not Transition(UNDEFINED, ONLINE).sticky_disables(True)
    assert not Transition(ONLINE, OFFLINE).sticky_disables(True)
    assert not Transition(OFFLINE, ONLINE).sticky_disables(False)


@pytest.mark.parametrize("policy", [dict(mode="eager"), dict(interval=0), dict(success_threshold=0),
                                    dict(failure_threshold=0)])
def test_invalid_policy_is_rejected(policy):
    with pytest.raises(ValueError):
        Policy(**policy)


def test_invalid_state_is_rejected(clock):
    with pytest.raises(ValueError):
        HealthSession(state="up", clock=clock)


def test_take_over_continues_from_the_stored_state_with_a_check_at_once(clock):
    s = session(clock, state=UNDEFINED, success_threshold=2)
    s.record(True)
    clock.advance(0.5)
    s.take_over(OFFLINE)  # another monitor left it offline
    assert s.state == OFFLINE and s.consecutive_successes == 0
    assert s.should_check()
    s.record(True)
    assert s.record(True) == Transition(OFFLINE, ONLINE)
