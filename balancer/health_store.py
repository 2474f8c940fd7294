"""Health check results in the database (SPEC §8): the state, when it last changed, the last
check (result, HTTP status, duration) and its error, the time spent offline, and the last
transitions (`HealthTransition`, TRANSITIONS_KEPT per backend). Not configuration: nothing
here bumps the config version, except sticky offline mode disabling a backend, which goes
through balancer.services."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from django.db import transaction
from django.db.models import F, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from . import services
from .choices import HealthState
from .health.session import comes_back
from .models import TRANSITIONS_KEPT, Backend, HealthTransition


class CheckFacts(NamedTuple):
    """One active check: passed or not, the HTTP status (None: no answer), seconds taken."""

    ok: bool
    status: int | None
    duration: float | None


@dataclass(frozen=True)
class HealthRecord:
    """What `store_health` did: whether the state changed, the stored state's timestamp
    (`health_changed_at`, what processes compare to order health news), and whether sticky
    offline mode disabled the backend."""

    changed: bool
    changed_at: datetime | None
    disabled: bool = False


def record_health(backend_id: int, state: str, *, error: str = "", checked_at: datetime | None = None) -> bool:
    """Store a check result; True when the state changed."""
    record = store_health(backend_id, state, error=error, checked_at=checked_at)
    return record is not None and record.changed


def store_health(backend_id: int, state: str, *, error: str = "", checked_at: datetime | None = None,
                 check: CheckFacts | None = None, reason: str | None = None) -> HealthRecord | None:
    """Store one check result (None when the backend is gone); see `store_health_many`."""
    return store_health_many([(backend_id, state, error, checked_at, check, reason)]).get(backend_id)


def store_health_many(results) -> dict[int, HealthRecord]:
    """Store results `(backend id, state, error, checked_at or None[, check, reason])` in one
    transaction (a mass outage is hundreds of them: one commit, not hundreds); records by
    backend id, backends gone meanwhile left out. `check` (CheckFacts) is the active check
    that decided, None for a live request's failure; `reason` is what the transition record
    says (default: the error).

    A health transition is not a configuration change: the version is not bumped; the
    monitor broadcasts it as a health message and proxies poll `health_changed_at` for the
    ones they miss. `health_changed_at` only moves forward for one backend (a monitor whose
    clock is behind the previous writer's stamps just after it), so "newer" means "later".
    Sticky offline mode (SPEC §8) is applied here, atomically with the transition: a backend
    going offline -> online on such a director is disabled until an operator enables it,
    which is a configuration change and bumps the version.
    """
    results = [(*item, None, None)[:6] for item in results]
    for _, state, *_ in results:
        if state not in HealthState.values:
            raise ValueError(f"unknown health state {state!r}")
    now = timezone.now()
    records = {}
    transitions: list[HealthTransition] = []
    with transaction.atomic():
        rows = Backend.objects.select_for_update(of=("self",)).select_related("director")
        locked = {b.pk: b for b in rows.filter(pk__in=[r[0] for r in results]).order_by("pk")}
        for backend_id, state, error, checked_at, check, reason in results:
            if backend_id in locked:
                records[backend_id] = _store_health_locked(locked[backend_id], state, error, checked_at or now,
                                                           check, error if reason is None else reason, transitions)
        _add_transitions(transitions)
    return records


def _add_transitions(transitions: list[HealthTransition]) -> None:
    """Insert the batch's transitions and drop what is beyond TRANSITIONS_KEPT for those
    backends: three statements per batch, whatever its size (a mass outage is hundreds)."""
    if not transitions:
        return
    HealthTransition.objects.bulk_create(transitions)
    ranked = HealthTransition.objects.filter(backend_id__in={t.backend_id for t in transitions}).annotate(
        rank=Window(RowNumber(), partition_by=[F("backend_id")], order_by=[F("at").desc(), F("id").desc()]))
    stale = list(ranked.filter(rank__gt=TRANSITIONS_KEPT).values_list("pk", flat=True))
    if stale:
        HealthTransition.objects.filter(pk__in=stale).delete()


def _store_health_locked(locked: Backend, state: str, error: str, checked_at: datetime,
                         check: CheckFacts | None, reason: str, transitions: list) -> HealthRecord:
    previous = locked.health_state
    changed = previous != state
    locked.last_checked, locked.last_error = checked_at, error
    fields = ["last_checked", "last_error"]
    if check is not None:
        locked.last_check_ok, locked.last_check_status, locked.last_check_duration = check
        fields += ["last_check_ok", "last_check_status", "last_check_duration"]
    if changed:
        fields += _transition(locked, previous, state, checked_at)
        transitions.append(HealthTransition(backend=locked, at=locked.health_changed_at, old_state=previous,
                                            new_state=state, reason=reason))
    locked.save(update_fields=fields)
    disabled = False
    if changed and comes_back(previous, state):
        if locked.director.sticky_offline_mode and locked.enabled:
            services.set_enabled_locked(locked, False, "health-monitor")  # bumps the version itself
            disabled = True
    return HealthRecord(changed, locked.health_changed_at, disabled)


def _transition(locked: Backend, previous: str, state: str, checked_at: datetime) -> list[str]:
    """Move the locked row to `state`: stamp and downtime. Returns the fields changed."""
    stamp = checked_at
    if locked.health_changed_at is not None and stamp <= locked.health_changed_at:
        stamp = locked.health_changed_at + timedelta(microseconds=1)
    fields = ["health_state", "health_changed_at"]
    if previous == HealthState.OFFLINE and locked.health_changed_at is not None:
        locked.downtime += (stamp - locked.health_changed_at).total_seconds()
        fields.append("downtime")
    locked.health_state, locked.health_changed_at = state, stamp
    return fields
