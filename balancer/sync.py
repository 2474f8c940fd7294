"""Make the database match the config file's directors (through the services, audited).

Static directors follow the file exactly, except each backend's `enabled` flag, which
operators toggle at runtime: it is taken from the file only when a backend is new or its url
changed. Dynamic directors are created when missing (seeded from their x0 `load` file when it exists)
and otherwise belong to the database.
Running the sync twice changes nothing the second time.
"""
from __future__ import annotations

import logging
from pathlib import Path

from django.db import transaction

from . import services, x0
from .config import Config, ConfigError, DirectorConfig
from .models import Director

log = logging.getLogger("director.config")


def sync_config(config: Config, *, actor: str = "config") -> None:
    """Apply `config` in one transaction (the data plane sees all of it or none)."""
    with transaction.atomic():
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


def _sync_static(wanted: DirectorConfig, director: Director | None, actor: str) -> None:
    if director is None:
        director = services.create_director(wanted.name, wanted.settings, actor=actor, dynamic=False)
    else:
        if director.dynamic:
            log.warning("director %s: was dynamic, now static as the config file says", wanted.name)
        changes = {**wanted.settings, "dynamic": False, "load_path": ""}
        director = services.update_director(director, changes, actor=actor, allow_static=True)
    _sync_backends(director, wanted.backends, actor)


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
