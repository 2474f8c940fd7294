"""What the monitor checks, read from the database (runs in the monitor's DB thread).

A `Target` is an immutable view of one backend and its director's health settings. Invalid
stored values (which validation should have refused) fall back to SPEC defaults with a log
line instead of stopping the checks of every other backend.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace

from django.db import connection, transaction

from balancer import services
from balancer.health_store import CheckFacts
from balancer.models import Backend
from proxy.addresses import BackendAddress, backend_address
from proxy.upstream import Timeouts, UpstreamRequest

from .expected import DEFAULT_EXPECTED, ExpectedStatus
from .probe import build_request
from .session import Policy

log = logging.getLogger("director.health")


@dataclass(frozen=True)
class Target:
    backend_id: int
    director: str
    backend: str
    url: str
    state: str  # stored state when loaded: the starting state of a new session only
    policy: Policy = field(default_factory=Policy)
    timeouts: Timeouts = field(default_factory=Timeouts)
    expected: ExpectedStatus = DEFAULT_EXPECTED
    host_header: str = "backend-healthcheck"
    request_path: str = "/"
    script_filename: str = ""
    tls_verify: bool = True  # https backends: checked with the same TLS settings as traffic
    tls_ca_file: str = ""
    tls_server_name: str = ""

    def address(self) -> BackendAddress:
        return backend_address(self.url, self.tls_verify, self.tls_ca_file, self.tls_server_name)

    def request(self) -> UpstreamRequest:
        return build_request(director=self.director, backend=self.backend, host_header=self.host_header,
                             request_path=self.request_path, script_filename=self.script_filename)

    def same_address(self, other: "Target") -> bool:
        """True when `other` reaches the backend the same way (same client and pool)."""
        return _same(self, other, _ADDRESS_FIELDS)

    def same_checks(self, other: "Target") -> bool:
        """True when `other` checks the same way (the stored state does not matter)."""
        return _same(self, other, _CHECK_FIELDS)


def _same(one: Target, other: Target, names) -> bool:
    return all(getattr(one, name) == getattr(other, name) for name in names)


_ADDRESS_FIELDS = ("url", "tls_verify", "tls_ca_file", "tls_server_name")
_CHECK_FIELDS = ("director", "backend", "policy", "timeouts", "expected", "host_header",
                 "request_path", "script_filename", *_ADDRESS_FIELDS)


def _policy(backend: Backend) -> Policy:
    director = backend.director
    try:
        return Policy(mode=backend.health_check_mode, interval=float(backend.health_check_interval),
                      success_threshold=director.health_check_success_threshold,
                      failure_threshold=director.health_check_failure_threshold)
    except (TypeError, ValueError) as exc:
        log.error("director %s: backend %s: %s; using default health settings", director.name, backend.name, exc)
        return Policy()


def _expected(backend: Backend) -> ExpectedStatus:
    text = backend.director.health_check_expected_status
    try:
        return ExpectedStatus(text)
    except ValueError as exc:
        log.error("director %s: health_check_expected_status %s; expecting 200", backend.director.name, exc)
        return DEFAULT_EXPECTED


def target_of(backend: Backend) -> Target:
    director = backend.director
    return Target(
        backend_id=backend.pk, director=director.name, backend=backend.name, url=backend.url,
        state=backend.health_state, policy=_policy(backend),
        timeouts=Timeouts(connect=director.connect_timeout, read=director.read_timeout, write=director.write_timeout),
        expected=_expected(backend), host_header=director.health_check_host_header,
        request_path=director.health_check_request_path,
        script_filename=director.health_check_fcgi_script_filename,
        # getattr: rows of a snapshot written before the TLS fields existed
        tls_verify=getattr(backend, "tls_verify", True), tls_ca_file=getattr(backend, "tls_ca_file", ""),
        tls_server_name=getattr(backend, "tls_server_name", ""),
    )


def targets_from_rows(version: int, director_rows: list[dict], backend_rows: list[dict], *_rest) -> tuple[int, dict[int, Target]]:
    """What `load_targets` returns, from the data plane's rows (its local snapshot when the
    database is away): the monitor of a process started without the database checks too."""
    directors = {row["id"]: SimpleNamespace(**row) for row in director_rows}
    targets = {}
    for row in backend_rows:
        director = directors.get(row["director_id"])
        if director is None or row["terminating"]:
            continue
        targets[row["id"]] = target_of(SimpleNamespace(**row, pk=row["id"], director=director))
    return version, targets


def load_targets() -> tuple[int, dict[int, Target]]:
    """(config version, targets by backend id). Terminating backends are not checked."""
    with transaction.atomic():
        version = services.current_version()
        backends = Backend.objects.select_related("director").filter(terminating=False)
        return version, {backend.pk: target_of(backend) for backend in backends}


CHECK_COLUMNS = ("last_checked", "last_error", "last_check_ok", "last_check_status", "last_check_duration")


def store_checks(results: dict[int, tuple[datetime, str, CheckFacts]]) -> None:
    """The last check (time, error, result, status, duration) of many backends in one
    transaction (no version bump: nothing a proxy routes on changed). One prepared UPDATE run
    for every row: Django's bulk_update builds a CASE per field and row in Python, which cost
    a third of the monitor's CPU with 1,000 backends. Backends removed meanwhile are simply
    not matched."""
    if not results:
        return
    table = connection.ops.quote_name(Backend._meta.db_table)
    columns = ", ".join(f"{connection.ops.quote_name(Backend._meta.get_field(f).column)} = %s" for f in CHECK_COLUMNS)
    pk = connection.ops.quote_name(Backend._meta.pk.column)
    sql = f"UPDATE {table} SET {columns} WHERE {pk} = %s"
    field = Backend._meta.get_field("last_checked")
    rows = [(field.get_db_prep_value(checked, connection), err, *check, backend_id)
            for backend_id, (checked, err, check) in sorted(results.items())]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def stored_states(ids) -> dict[int, str]:
    """Stored health state of these backends (what a monitor taking them over starts from)."""
    return dict(Backend.objects.filter(pk__in=list(ids)).values_list("pk", "health_state"))
