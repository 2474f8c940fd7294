"""proxy.health_follow: health news ordered by stamp, the poll safety net, and passive marks
that expire when no monitor confirms them. A DataPlane from rows; no database, fake clock."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from proxy.health_follow import LOOKBACK, MARK_GRACE, HealthFollower, apply_health_message
from proxy.state import DataPlane

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
DIRECTOR = {"id": 1, "name": "app", "dynamic": True, "enabled": True, "scheduler": "rr", "queue_limit": 10,
            "queue_timeout": 1, "retry_after": 1, "max_retry_count": 1, "connect_timeout": 1, "read_timeout": 1,
            "write_timeout": 1, "on_client_abort": "close", "enqueue_on_unavailable": False,
            "passive_failure_threshold": 1}


def backend_row(state="online", stamp=T0, enabled=True, backend_id=5):
    return {"id": backend_id, "director_id": 1, "name": "b1", "url": "http://127.0.0.1:9", "role": "active",
            "capacity": 0, "enabled": enabled, "terminating": False, "position": 0, "health_state": state,
            "health_changed_at": stamp}


def health_row(state, stamp, enabled=True):
    return {"id": 5, "health_state": state, "health_changed_at": stamp, "enabled": enabled}


class Rows:
    """The database as the follower reads it; records what was asked."""

    def __init__(self):
        self.rows: list[dict] = []
        self.asked: list[tuple] = []

    def __call__(self, since, ids):
        self.asked.append((since, ids))
        return [r for r in self.rows if (r["health_changed_at"] and r["health_changed_at"] > since) or r["id"] in ids]


@pytest.fixture
def plane():
    plane = DataPlane()
    plane.apply_rows(1, [DIRECTOR], [backend_row()], [])
    return plane


@pytest.fixture
def clock():
    return [100.0]


@pytest.fixture
def rows():
    return Rows()


@pytest.fixture
def follower(plane, rows, clock):
    return HealthFollower(plane, read=rows, clock=lambda: clock[0], wall_clock=lambda: T0 + timedelta(seconds=60))


def health(plane) -> str:
    return plane.backends[5].health


def message(state, stamp, **extra):
    return {"type": "health.changed", "backend": 5, "state": state, "changed_at": stamp.isoformat(), **extra}


def test_pushes_apply_in_stamp_order_whatever_order_they_arrive(plane):
    apply_health_message(plane, message("online", T0 + timedelta(seconds=2)))
    apply_health_message(plane, message("offline", T0 + timedelta(seconds=1)))  # late, older news
    assert health(plane) == "online"
    apply_health_message(plane, message("offline", T0 + timedelta(seconds=3)))
    assert health(plane) == "offline"


def test_a_sticky_comeback_waits_for_the_config_reload(plane):
    apply_health_message(plane, message("offline", T0 + timedelta(seconds=1)))
    apply_health_message(plane, message("online", T0 + timedelta(seconds=2), sticky_disabled=True))
    assert health(plane) == "offline"


async def test_the_poll_applies_missed_news_but_never_older_news(plane, follower, rows):
    rows.rows = [health_row("offline", T0 + timedelta(seconds=58))]
    await follower.poll()
    assert health(plane) == "offline"
    assert rows.asked[-1][0] == T0 + timedelta(seconds=60 - LOOKBACK)
    apply_health_message(plane, message("online", T0 + timedelta(seconds=59)))
    await follower.poll()  # the same, now older, row again
    assert health(plane) == "online"


async def test_the_poll_leaves_a_backend_whose_enabled_changed_to_the_config_reload(plane, follower, rows):
    rows.rows = [health_row("offline", T0 + timedelta(seconds=58), enabled=False)]
    await follower.poll()
    assert health(plane) == "online"


async def test_a_passive_mark_stays_until_news_or_its_grace_ends(plane, follower, rows, clock):
    """The monitor never heard of the failure: the stored state (online, same stamp) wins
    after MARK_GRACE, so the backend is not offline here for good."""
    rows.rows = [health_row("online", T0)]
    plane.backends[5].director.set_health(plane.backends[5], "offline")  # what dispatch does
    follower.mark(5)
    clock[0] += MARK_GRACE - 0.1
    await follower.poll()
    assert health(plane) == "offline" and rows.asked[-1][1] == []
    clock[0] += 0.2
    await follower.poll()
    assert rows.asked[-1][1] == [5] and health(plane) == "online"
    await follower.poll()
    assert rows.asked[-1][1] == []  # the mark is gone


async def test_a_passive_mark_confirmed_by_the_monitor_follows_the_monitor(plane, follower, rows, clock):
    plane.backends[5].director.set_health(plane.backends[5], "offline")
    follower.mark(5)
    apply_health_message(plane, message("offline", T0 + timedelta(seconds=1)))  # the holder stored it
    clock[0] += MARK_GRACE + 1
    rows.rows = [health_row("offline", T0 + timedelta(seconds=1))]
    await follower.poll()
    assert rows.asked[-1][1] == [] and health(plane) == "offline"
    apply_health_message(plane, message("online", T0 + timedelta(seconds=4)))  # checks passed
    assert health(plane) == "online"


def test_a_config_reload_keeps_a_local_mark_unless_the_database_has_news(plane):
    plane.backends[5].director.set_health(plane.backends[5], "offline")
    plane.apply_rows(2, [DIRECTOR], [backend_row("online", T0)], [])
    assert health(plane) == "offline"
    plane.apply_rows(3, [DIRECTOR], [backend_row("online", T0 + timedelta(seconds=1))], [])
    assert health(plane) == "online"
