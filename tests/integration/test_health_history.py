"""Health history in the database (balancer.health_store): the last check's result, status
and duration; time spent offline; the last transitions (time, from -> to, reason), at most
TRANSITIONS_KEPT per backend; the monitor's transition reasons."""
from datetime import datetime, timedelta, timezone

import pytest

from balancer import health_store, services
from balancer.health.monitor import transition_reason
from balancer.health.session import Transition
from balancer.health_store import CheckFacts
from balancer.models import TRANSITIONS_KEPT, Backend, HealthTransition

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 12, 6, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def backend():
    director = services.create_director("pool", {}, actor="test")
    return services.create_backend(director, {"name": "b1", "url": "http://127.0.0.1:3001"}, actor="test")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_last_check_and_transition_are_stored(backend):
    health_store.store_health(backend.pk, "online", checked_at=at(0), check=CheckFacts(True, 200, 0.004),
                              reason="health check passed (HTTP 200)")
    health_store.store_health(backend.pk, "offline", error="unexpected status 503", checked_at=at(5),
                              check=CheckFacts(False, 503, 0.012))
    row = Backend.objects.get(pk=backend.pk)
    assert (row.last_check_ok, row.last_check_status, row.last_check_duration) == (False, 503, 0.012)
    assert row.health_changed_at == at(5) and row.last_checked == at(5)
    history = [(t.at, t.old_state, t.new_state, t.reason) for t in row.transitions.all()]
    assert history == [(at(5), "online", "offline", "unexpected status 503"),
                       (at(0), "undefined", "online", "health check passed (HTTP 200)")]


def test_a_check_without_a_change_writes_no_transition(backend):
    health_store.store_health(backend.pk, "online", checked_at=at(0), check=CheckFacts(True, 200, 0.01))
    health_store.store_health(backend.pk, "online", checked_at=at(1), check=CheckFacts(True, 204, 0.02))
    row = Backend.objects.get(pk=backend.pk)
    assert row.transitions.count() == 1 and row.last_check_status == 204 and row.health_changed_at == at(0)


def test_downtime_adds_up_offline_periods(backend):
    for seconds, state in ((0, "online"), (10, "offline"), (25, "online"), (30, "offline"), (31, "undefined")):
        health_store.store_health(backend.pk, state, checked_at=at(seconds))
    assert Backend.objects.get(pk=backend.pk).downtime == pytest.approx(15 + 1)


def test_only_the_last_transitions_are_kept(backend):
    for i in range(TRANSITIONS_KEPT + 5):
        health_store.store_health(backend.pk, "offline" if i % 2 else "online", checked_at=at(i))
    kept = list(HealthTransition.objects.filter(backend=backend))
    assert len(kept) == TRANSITIONS_KEPT
    assert kept[0].at == at(TRANSITIONS_KEPT + 4) and kept[-1].at == at(5)


def test_a_batch_keeps_the_last_transitions_of_each_backend(backend):
    other = services.create_backend(backend.director, {"name": "b2", "url": "http://127.0.0.1:3002"}, actor="test")
    health_store.store_health(other.pk, "online", checked_at=at(0))
    for i in range(1, TRANSITIONS_KEPT + 3):
        state = "offline" if i % 2 else "online"
        health_store.store_health_many([(backend.pk, state, "", at(i)), (other.pk, state, "", at(i))])
    for b in (backend, other):  # each had more than TRANSITIONS_KEPT; the newest are kept
        ats = list(HealthTransition.objects.filter(backend=b).values_list("at", flat=True))
        assert ats == [at(i) for i in range(TRANSITIONS_KEPT + 2, 2, -1)]


def test_a_removed_backend_takes_its_history_along(backend):
    health_store.store_health(backend.pk, "online", checked_at=at(0))
    services.remove_backend(backend.pk, actor="test")
    assert HealthTransition.objects.count() == 0


@pytest.mark.parametrize("transition, check, reason", [
    (Transition("online", "offline", "connection refused", passive=True), None, "live request failed: connection refused"),
    (Transition("online", "offline", "unexpected status 500"), CheckFacts(False, 500, 0.1), "unexpected status 500"),
    (Transition("offline", "online"), CheckFacts(True, 204, 0.1), "health check passed (HTTP 204)"),
])
def test_transition_reasons(transition, check, reason):
    assert transition_reason(transition, check) == reason
