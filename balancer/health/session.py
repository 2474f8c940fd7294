"""One backend's health state machine (SPEC §8): pure logic, no I/O, injectable clock.

A session counts consecutive good and bad checks against the director's thresholds, takes
passive (live request) failures, remembers live traffic for opportunistic mode, and answers
when the next active check is due. Every method that can change the state returns the
`Transition` it caused, or None (Envoy's "changed / unchanged" report).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from balancer.choices import HealthCheckMode, HealthState

UNDEFINED, ONLINE, OFFLINE = HealthState.UNDEFINED.value, HealthState.ONLINE.value, HealthState.OFFLINE.value
PARANOID, OPPORTUNISTIC, LAZY = (HealthCheckMode.PARANOID.value, HealthCheckMode.OPPORTUNISTIC.value,
                                 HealthCheckMode.LAZY.value)
STATES = (UNDEFINED, ONLINE, OFFLINE)
MODES = (PARANOID, OPPORTUNISTIC, LAZY)


def comes_back(old: str, new: str) -> bool:
    """The transition sticky offline mode turns into "disabled" (SPEC §8): offline -> online
    only; a new backend's first undefined -> online does not count. The one home of the rule:
    the monitor, the stored state (balancer.services) and the sessions all ask here."""
    return old == OFFLINE and new == ONLINE


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of health state; `error` says why a backend went offline ("" otherwise)."""

    old: str
    new: str
    error: str = ""
    passive: bool = False  # caused by a live request, not by a check

    def sticky_disables(self, sticky_offline_mode: bool) -> bool:
        """Sticky offline mode disables a backend that comes back (see `comes_back`)."""
        return sticky_offline_mode and comes_back(self.old, self.new)


@dataclass(frozen=True, slots=True)
class Policy:
    """What the director and backend settings say about checking one backend."""

    mode: str = PARANOID
    interval: float = 2.0
    success_threshold: int = 2
    failure_threshold: int = 1

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"health check mode {self.mode!r} is not one of {', '.join(MODES)}")
        if not self.interval > 0:
            raise ValueError(f"health check interval {self.interval!r} must be above 0")
        if self.success_threshold < 1 or self.failure_threshold < 1:
            raise ValueError("health check thresholds must be at least 1")


class HealthSession:
    """Health bookkeeping of one backend. Times come from `clock` (monotonic seconds)."""

    def __init__(self, policy: Policy | None = None, *, state: str = UNDEFINED,
                 clock: Callable[[], float] = time.monotonic):
        if state not in STATES:
            raise ValueError(f"health state {state!r} is not one of {', '.join(STATES)}")
        self.policy = policy or Policy()
        self.state = state
        self.consecutive_successes = 0
        self.consecutive_failures = 0
        self._clock = clock
        now = clock()
        self._next_check = now  # the first check of a new backend runs at once
        self.last_activity = now  # opportunistic: idle time counts from creation
        self.last_checked: float | None = None

    def reconfigure(self, policy: Policy) -> None:
        """New settings; state and counters are kept, the schedule follows the new interval."""
        if self.last_checked is not None and policy.interval != self.policy.interval:
            self._next_check = self.last_checked + policy.interval
        self.policy = policy

    # --- inputs -------------------------------------------------------------------------

    def record(self, ok: bool, error: str = "") -> Transition | None:
        """Result of one active check, finished now."""
        now = self._clock()
        self.last_checked = now
        self._next_check = now + self.policy.interval
        if ok:
            self.consecutive_successes += 1
            self.consecutive_failures = 0
            if self.state != ONLINE and self.consecutive_successes >= self.policy.success_threshold:
                return self._move(ONLINE, "")
        else:
            self.consecutive_failures += 1
            self.consecutive_successes = 0
            if self.state != OFFLINE and self.consecutive_failures >= self.policy.failure_threshold:
                return self._move(OFFLINE, error)
        return None

    def passive_failure(self, error: str) -> Transition | None:
        """A live request failed: offline at once, whatever the threshold; checks bring it back,
        the first one interval from now."""
        self.consecutive_successes = 0
        self.consecutive_failures = 0
        if self.state == OFFLINE:
            return None
        self._next_check = self._clock() + self.policy.interval
        return self._move(OFFLINE, error, passive=True)

    def take_over(self, state: str) -> None:
        """This monitor starts checking the backend (a lease gained): continue from the stored
        state another monitor left, with fresh counters and a check at once."""
        if state in STATES:
            self.state = state
        self.consecutive_successes = 0
        self.consecutive_failures = 0
        self._next_check = self._clock()

    def activity(self) -> None:
        """The backend served live traffic just now (opportunistic mode)."""
        self.last_activity = self._clock()

    # --- schedule -----------------------------------------------------------------------

    def due_at(self) -> float | None:
        """Clock time of the next check, or None while the mode wants no checks at all
        (lazy and opportunistic trust an online backend; opportunistic only until it is idle)."""
        if self.policy.mode == PARANOID or self.state != ONLINE:
            return self._next_check
        if self.policy.mode == OPPORTUNISTIC:
            return max(self._next_check, self.last_activity + self.policy.interval)
        return None

    def should_check(self) -> bool:
        due = self.due_at()
        return due is not None and due <= self._clock()

    def _move(self, new: str, error: str, passive: bool = False) -> Transition:
        transition = Transition(self.state, new, error, passive)
        self.state = new
        return transition
