"""Make the database match the config file's directors and routes (through the services,
audited as `config:<hostname>`).

Static directors follow the file exactly, except each backend's `enabled` flag, which
operators toggle at runtime: it is taken from the file only when a backend is new or its url
changed. Dynamic directors are created when missing (seeded from their x0 `load` file when it exists)
and otherwise belong to the database. The file's routes are stored as routes with `mutable`
false, position by position: a node whose file differs replaces them, and every node
follows (SPEC §11); routes made through the API or the admin are left alone.
Running the sync twice changes nothing the second time.

Several nodes may start at once against one database: on PostgreSQL the sync holds a
transaction-scoped advisory lock, so they run one after the other and the later one finds
the work done (SQLite transactions are IMMEDIATE, one writer at a time already).
"""
from __future__ import annotations

import logging
import socket
from pathlib import Path

from django.db import connection, transaction

from . import bucket_services, route_services, services, x0
from .config import Config, ConfigError, DirectorConfig, RouteConfig
from .models import Director, Route

log = logging.getLogger("director.config")
SYNC_LOCK_KEY = 0x64697265_63746F72  # "director": the advisory lock of the config sync


def config_actor() -> str:
    """Audit actor of changes made from this node's config file."""
    return f"config:{socket.gethostname()}"


def sync_config(config: Config, *, actor: str | None = None) -> None:
    """Apply `config` in one transaction (the data plane sees all of it or none)."""
    actor = actor or config_actor()
    try:
        _sync(config, actor)
    except services.Conflict as exc:  # a writer outside the sync got in between: once more
        log.info("config sync: %s; retrying", exc)
        _sync(config, actor)


def _sync(config: Config, actor: str) -> None:
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SYNC_LOCK_KEY])
        existing = {d.name: d for d in Director.objects.select_for_update()}
        for name, wanted in config.directors.items():
            if wanted.dynamic:
                _sync_dynamic(wanted, existing.get(name), actor)
            else:
                _sync_static(wanted, existing.get(name), actor)
        for name, director in existing.items():
            if name not in config.directors and not director.dynamic:
                log.info("director %s: no longer in the config file, deleting it", name)
                services.delete_director(director, actor=actor, allow_static=True)
        _sync_routes(config.routes, actor)


def _sync_routes(wanted: tuple[RouteConfig, ...], actor: str) -> None:
    """The stored file routes become the file's, position by position (unchanged ones untouched)."""
    stored = list(Route.objects.select_for_update().filter(mutable=False).order_by("file_index", "id"))
    for index, route in enumerate(wanted):
        table = route.table()
        if index >= len(stored):
            route_services.create_route(table, actor=actor, file_index=index)
            continue
        changes = {key: table.get(key) for key in route_services.MODEL_FIELDS}  # None clears a key
        route_services.update_route(stored[index], changes, actor=actor, allow_file=True)
    for extra in stored[len(wanted):]:
        route_services.delete_route(extra, actor=actor, allow_file=True)


def _sync_static(wanted: DirectorConfig, director: Director | None, actor: str) -> None:
    if director is None:
        director = services.create_director(wanted.name, wanted.settings, actor=actor, dynamic=False)
    else:
        if director.dynamic:
            log.warning("director %s: was dynamic, now static as the config file says", wanted.name)
        changes = {**wanted.settings, "dynamic": False, "load_path": ""}
        director = services.update_director(director, changes, actor=actor, allow_static=True)
    _sync_backends(director, wanted.backends, actor)
    bucket_services.replace_buckets(director, dict(wanted.buckets), actor=actor)


def _sync_backends(director: Director, wanted: tuple[tuple[str, dict], ...], actor: str) -> None:
    stored = {b.name: b for b in director.backends.all()}
    for position, (name, fields) in enumerate(wanted):
        backend = stored.pop(name, None)
        if backend is not None and (backend.url != fields["url"] or backend.terminating):
            services.remove_backend(backend.pk, actor=actor)  # url is immutable: replace the backend
            backend = None
        if backend is None:
            services.create_backend(director, {"name": name, **fields, "position": position},
                                    actor=actor, allow_static=True)
            continue
        changes = {k: v for k, v in fields.items() if k not in ("url", "enabled")}
        services.update_backend(backend, {**changes, "position": position}, actor=actor, allow_static=True)
    for backend in stored.values():
        if backend.terminating:
            continue
        if backend.terminate_protection:  # removing it from the file is the operator's decision
            backend = services.update_backend(backend, {"terminate_protection": False}, actor=actor, allow_static=True)
        services.delete_backend(backend, actor=actor, allow_static=True)


def _sync_dynamic(wanted: DirectorConfig, director: Director | None, actor: str) -> None:
    load_path = wanted.load or ""
    if director is None:
        if load_path and Path(load_path).exists():
            _seed_from_load_file(wanted, actor)
        else:
            services.create_director(wanted.name, wanted.settings, actor=actor, dynamic=True, load_path=load_path)
        return
    if not director.dynamic or director.load_path != load_path:
        services.update_director(director, {"dynamic": True, "load_path": load_path}, actor=actor, allow_static=True)


def _seed_from_load_file(wanted: DirectorConfig, actor: str) -> None:
    """First start with an existing x0 file: the file's settings and backends win."""
    try:
        x0.import_x0(wanted.name, wanted.load, actor=actor, load_path=wanted.load)
    except x0.X0Error as exc:
        raise ConfigError([f"directors.{wanted.name}.load: {error}" for error in exc.errors]) from None
    log.info("director %s: seeded from load file %s", wanted.name, wanted.load)
