"""The only writer of routes (SPEC §11 "Routes at runtime").

The same path as every other write (`balancer.services`): validate with the rules the config
loader uses (`route_rules.clean_route`), lock, save, audit (actor, before/after JSON, the
route's director as `director_name`), bump the config version and announce it on commit.

Routes from the config file (`mutable` false) are written only by the config sync
(`allow_file=True`); the API and the admin get 403. A route's `pass` must name an existing
director when it is written; a director deleted later leaves its routes answering 503.
"""
from __future__ import annotations

from django.db import IntegrityError, transaction

from . import route_rules
from .models import Director, Route
from .services import Conflict, Forbidden, NotFound, ValidationFailed, _audit, _bump_version, apply_changes

DEFAULT_PRIORITY = 0  # routes made through the API or the admin without a priority
FILE_ROUTE_REASON = "comes from the config file; change it there"
OPTIONS_OF_ACTION = {"pass": route_rules.PASS_OPTIONS, "http": (), "fcgi": ("document_root", "script_filename")}
# Route object keys (SPEC §11) -> model fields; None values are stored as "".
MODEL_FIELDS = {"priority": "priority", "host": "host", "path": "path", "pass": "director",
                "backend_from": "backend_from", "http": "http", "fcgi": "fcgi",
                "document_root": "document_root", "script_filename": "script_filename",
                "bucket": "bucket", "bucket_from": "bucket_from"}


def route_json(route: Route) -> dict:
    """The route object of the API and the audit log; null for what the route does not set."""
    data = {"id": route.pk}
    for key, field in MODEL_FIELDS.items():
        value = getattr(route, field)
        data[key] = None if value == "" else value
    data["mutable"] = route.mutable
    return data


def _table(route: Route) -> dict:
    """A stored route as `route_rules.clean_route` takes it: the keys it sets."""
    data = route_json(route)
    return {key: data[key] for key in MODEL_FIELDS if data[key] is not None}


def _merged(table: dict, changes: dict) -> dict:
    """`table` with `changes` applied: null clears a key (host "" or "*" means any host); a
    new action replaces the old one and the old one's options unless those are sent too."""
    table = dict(table)
    new_actions = [key for key in OPTIONS_OF_ACTION if changes.get(key) is not None]
    if new_actions:
        for action, options in OPTIONS_OF_ACTION.items():
            if action not in new_actions:
                for key in (action, *options):
                    if key not in changes:
                        table.pop(key, None)
    for key, value in changes.items():
        if key in MODEL_FIELDS and (value is None or (key == "host" and value in ("", route_rules.ANY_HOST))):
            table.pop(key, None)
        else:
            table[key] = value
    return table


def clean_route(changes: dict, *, instance: Route | None = None, mutable: bool = True) -> dict:
    """Validated model field values of a new route (`changes`) or of `instance` changed by
    `changes`; ValidationFailed names every bad field (`pass` for an unknown director).
    A mutable route without a priority gets DEFAULT_PRIORITY; a file route keeps None."""
    if not isinstance(changes, dict):
        raise ValidationFailed({route_rules.ROUTE_ITSELF: ["expected an object of fields"]})
    table = _merged(_table(instance) if instance is not None else {}, changes)
    directors = set(Director.objects.values_list("name", flat=True))
    values, errors = route_rules.clean_route(table, directors)
    if errors:
        raise ValidationFailed(errors)
    if (instance.mutable if instance is not None else mutable) and values["priority"] is None:
        values["priority"] = DEFAULT_PRIORITY
    return {field: ("" if values[key] is None and key != "priority" else values[key])
            for key, field in MODEL_FIELDS.items()}


def _locked_route(pk) -> Route:
    try:
        return Route.objects.select_for_update().get(pk=pk)
    except (Route.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"route {pk!r} not found") from None


def check_route_writable(route: Route, *, allow_file: bool = False) -> None:
    if not route.mutable and not allow_file:
        raise Forbidden(f"route {route.pk} {FILE_ROUTE_REASON}")


def create_route(data: dict, *, actor: str, file_index: int | None = None) -> Route:
    """A database route, or with `file_index` a config-file route (mutable false)."""
    with transaction.atomic():
        mutable = file_index is None
        route = Route(mutable=mutable, file_index=file_index, **clean_route(data, mutable=mutable))
        try:
            with transaction.atomic():
                route.save()
        except IntegrityError:  # another node's sync stored this file position first
            raise Conflict(f"a file route at position {file_index} already exists", field="file_index") from None
        _audit(actor, "route.create", route.director, after=route_json(route))
        _bump_version()
    return route


def update_route(route: Route, changes: dict, *, actor: str, allow_file: bool = False) -> Route:
    with transaction.atomic():
        locked = _locked_route(route.pk)
        check_route_writable(locked, allow_file=allow_file)
        changed = apply_changes(locked, clean_route(changes, instance=locked), route_json)
        if changed is not None:
            before, after = changed
            _audit(actor, "route.update", locked.director or before["pass"] or "", before=before, after=after)
            _bump_version()
    return locked


def delete_route(route: Route, *, actor: str, allow_file: bool = False) -> None:
    with transaction.atomic():
        locked = _locked_route(route.pk)
        check_route_writable(locked, allow_file=allow_file)
        before = route_json(locked)
        locked.delete()
        _audit(actor, "route.delete", before["pass"] or "", before=before)
        _bump_version()
