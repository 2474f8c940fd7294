"""What the operator views show: the data plane's live figures of every director and backend
merged with the stored health facts (last check, last error, state change times).

Shared by the status feed, /metrics, /haproxy/stats.csv and /-/ready. Call `current()` on the
event loop that runs the data plane (async views and consumers do). Stored facts are read in
one private thread (never on the event loop, which carries live traffic) and cached for
FACTS_MAX_AGE, so any number of status tabs and scrapers cost about one query a second.
Without a data plane in this process (`livestats` gives None) every figure comes from the
database and the counters are zero; `live` says which.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from . import livestats
from .dbthread import DatabaseThread

log = logging.getLogger("director.views")

FACTS_MAX_AGE = 1.0  # seconds a read of the stored facts is reused
DB_TIMEOUT = 5.0  # seconds before a database read counts as failed
STATE_DISABLED = "disabled"
STATE_DRAINING = "draining"
RESPONSE_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "failed")

DIRECTOR_FACTS = ("id", "name", "enabled")
BACKEND_FACTS = ("id", "director_id", "name", "role", "enabled", "terminating", "capacity", "health_state",
                 "last_checked", "last_error", "health_changed_at")

_database = DatabaseThread("director-views-db")


async def run_in_db_thread(func, *args):
    """`func(*args)` in the views' database thread, bounded by DB_TIMEOUT."""
    return await asyncio.wait_for(_database.run(func, *args), DB_TIMEOUT)


def ping_database() -> None:
    """Raise unless the database answers a trivial query. Blocking: run in the db thread."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


@dataclass(frozen=True)
class Facts:
    """Rows of the stored state, as read at `read_at` (epoch seconds)."""

    directors: tuple[dict, ...]
    backends: tuple[dict, ...]
    read_at: float


EMPTY_FACTS = Facts((), (), 0.0)


def read_facts() -> Facts:
    """Blocking: run it in the db thread."""
    from django.db import transaction

    from .models import Backend, Director

    with transaction.atomic():
        directors = tuple(Director.objects.values(*DIRECTOR_FACTS))
        backends = tuple(Backend.objects.values(*BACKEND_FACTS))
    return Facts(directors, backends, time.time())


class FactsCache:
    """The stored facts, re-read when older than `max_age`; concurrent callers share one read.
    After a failed read the last good facts stay available (`error` says why)."""

    def __init__(self, max_age: float = FACTS_MAX_AGE, reader=read_facts, clock=time.monotonic):
        self.max_age = max_age
        self._reader = reader
        self._clock = clock
        self._facts = EMPTY_FACTS
        self._read_at: float | None = None
        self._pending: asyncio.Future | None = None
        self.error: str | None = None

    def invalidate(self) -> None:
        self._read_at = None

    async def get(self) -> Facts:
        if self._read_at is not None and self._clock() - self._read_at < self.max_age:
            return self._facts
        if self._pending is None or self._pending.done() or self._pending.get_loop() is not asyncio.get_running_loop():
            self._pending = asyncio.ensure_future(self._read())
        return await asyncio.shield(self._pending)

    async def _read(self) -> Facts:
        started = self._clock()
        try:
            self._facts = await run_in_db_thread(self._reader)
            self.error = None
        except Exception as exc:  # noqa: BLE001 - shown on the page; live figures still flow
            self.error = f"database unreachable: {type(exc).__name__}: {exc}".rstrip(": ")
            log.warning("status views: %s", self.error)
        self._read_at = started
        return self._facts


FACTS = FactsCache()


async def current(facts: FactsCache = FACTS) -> dict:
    """The merged overview now (see `merge`)."""
    stored = await facts.get()
    return merge(livestats.get_snapshot(), stored, livestats.get_health_stats())


def display_state(enabled: bool, terminating: bool, health: str) -> str:
    """One word for a backend: disabled and draining win over its health state."""
    if not enabled:
        return STATE_DISABLED
    if terminating:
        return STATE_DRAINING
    return health


def merge(snapshot: dict | None, facts: Facts, checks: dict | None = None) -> dict:
    """{"live": bool, "directors": [{id, name, enabled, load, queued, dropped, responses,
    backends: [{id, name, role, enabled, terminating, capacity, health, state, load, failures,
    responses, last_checked, last_error, health_changed}]}]} with times as epoch seconds or
    None. Live figures and membership come from the snapshot when there is one; `checks`
    (the health monitor's stats, when it runs here) adds checks and check_duration."""
    stored = {row["id"]: row for row in facts.backends}
    if snapshot is None:
        directors = _directors_from_facts(facts)
    else:
        checks = checks or {}
        directors = [_director(d, [_backend(b, stored.get(b["id"]), checks.get(b["id"])) for b in d["backends"]])
                     for d in snapshot["directors"]]
    return {"live": snapshot is not None, "directors": directors}


def _director(live: dict, backends: list[dict]) -> dict:
    return {"id": live["id"], "name": live["name"], "enabled": live["enabled"], "load": dict(live["load"]),
            "queued": dict(live["queued"]), "dropped": live["dropped"], "responses": _responses(live["responses"]),
            **_traffic(live, ("bytes", "durations")), "backends": backends}


def _backend(live: dict, row: dict | None, checks: dict | None = None) -> dict:
    row = row or {}
    checks = checks or {}
    return {
        "id": live["id"], "name": live["name"], "role": live["role"], "enabled": live["enabled"],
        "terminating": live["terminating"], "capacity": live["capacity"], "health": live["health"],
        "state": display_state(live["enabled"], live["terminating"], live["health"]),
        "load": dict(live["load"]), "failures": live["failures"], "responses": _responses(live["responses"]),
        "last_checked": _epoch(row.get("last_checked")), "last_error": row.get("last_error") or "",
        "health_changed": _epoch(row.get("health_changed_at")),
        "checks": checks.get("checks", 0), "check_duration": checks.get("last_duration"),
        **_traffic(live, ("bytes", "durations", "upstream")),
    }


def _traffic(live: dict, keys: tuple[str, ...]) -> dict:
    """Request figures of proxy.request_metrics (bytes {received, sent}, durations by status
    class and upstream times as {counts, sum}); empty ones without a data plane."""
    empty = {"bytes": {"received": 0, "sent": 0}, "durations": {}, "upstream": None}
    return {key: live.get(key, empty[key]) for key in keys}


def _directors_from_facts(facts: Facts) -> list[dict]:
    members: dict[int, list[dict]] = {d["id"]: [] for d in facts.directors}
    for row in facts.backends:
        if row["director_id"] in members:
            live = {**row, "health": row["health_state"], "load": _zero_counter(), "failures": 0, "responses": {}}
            members[row["director_id"]].append(_backend(live, row))
    live_director = {"load": _zero_counter(), "queued": _zero_counter(), "dropped": 0, "responses": {}}
    return [_director({**live_director, **d}, members[d["id"]]) for d in sorted(facts.directors, key=lambda d: d["name"])]


def _zero_counter() -> dict:
    return {"current": 0, "max": 0, "total": 0}


def _responses(counts: dict) -> dict:
    return {name: counts.get(name, 0) for name in RESPONSE_CLASSES}


def _epoch(value) -> float | None:
    return value.timestamp() if value is not None else None


def total_responses(entry: dict) -> int:
    """Requests finished by a director or backend (every response class and failures)."""
    return sum(entry["responses"].values())
