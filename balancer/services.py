"""The only writer of directors and backends.

Admin, config sync, API, x0 import and health monitoring all call these functions. Each
write: validate -> lock and save in one transaction -> audit record (before/after JSON) ->
bump the config version -> announce it on commit (health results are not configuration:
balancer.health_store stores them without a version bump). Errors carry an HTTP status (DRF style)
so every caller maps them the same way.
"""
from __future__ import annotations

import logging
from functools import partial

from django.db import IntegrityError, transaction
from django.db.models import F, Max
from django.utils import timezone

from . import models, validation
from .models import AuditRecord, Backend, ConfigVersion, Director
from .notify import announce_config_changed

log = logging.getLogger("director.services")
STATIC_REASON = "is defined in the config file; only its backends' enabled flag can change at runtime"
IMMUTABLE_MESSAGE = "cannot be changed after creation"
REQUIRED_MESSAGE = "this field is required"
# Director fields only the config file may change (unknown to API and admin callers).
CONFIG_ONLY_DIRECTOR_FIELDS = {"dynamic": validation.Rule("bool"), "load_path": validation.Rule("str")}


class ServiceError(Exception):
    status = 500
    default_message = "service error"

    def __init__(self, message: str | None = None):
        self.detail = message or self.default_message
        super().__init__(self.detail)


class ValidationFailed(ServiceError):
    """Bad input; `errors` maps each offending field (unknown ones too) to its messages."""

    status = 400
    default_message = "invalid values"

    def __init__(self, errors: dict[str, list[str]], message: str | None = None):
        self.errors = errors
        super().__init__(message or "; ".join(f"{k}: {', '.join(v)}" for k, v in errors.items()))


class NotFound(ServiceError):
    status = 404
    default_message = "not found"


class Forbidden(ServiceError):
    status = 403
    default_message = "not allowed"


class Conflict(ServiceError):
    """Duplicate name; `field` names the clashing field."""

    status = 409
    default_message = "already exists"

    def __init__(self, message: str | None = None, field: str = "name"):
        self.field = field
        super().__init__(message)


# --- helpers -----------------------------------------------------------------------------

def director_json(director: Director) -> dict:
    return {"name": director.name, "dynamic": director.dynamic, "load_path": director.load_path,
            **director.settings()}


BACKEND_JSON_FIELDS = ("name", "url", "protocol", "role", "capacity", "enabled", "health_check_mode",
                       "health_check_interval", "terminate_protection", "terminating", "position",
                       "tls_verify", "tls_ca_file", "tls_server_name")


def backend_json(backend: Backend) -> dict:
    return {name: getattr(backend, name) for name in BACKEND_JSON_FIELDS}


def current_version() -> int:
    return models.current_version()


def _bump_version(changed: Director | None = None) -> None:
    """Raise the version inside the caller's transaction; announce it once committed.

    `changed`: the director whose definition changed; its x0 `load` file is rewritten on commit.
    """
    if not ConfigVersion.objects.filter(pk=1).update(version=F("version") + 1):
        _, created = ConfigVersion.objects.get_or_create(pk=1, defaults={"version": 1})
        if not created:
            ConfigVersion.objects.filter(pk=1).update(version=F("version") + 1)
    version = models.current_version()
    transaction.on_commit(partial(announce_config_changed, version), robust=True)
    if changed is not None and changed.load_path:
        from .x0 import sync_load_file  # x0 builds on the services

        transaction.on_commit(partial(sync_load_file, changed.pk), robust=True)


def apply_changes(locked, cleaned: dict, as_json) -> tuple[dict, dict] | None:
    """Set `cleaned` on a locked row: (before, after) as `as_json` shows it, the row saved,
    when that changed it; None (nothing saved) when not. Every update service's core."""
    before = as_json(locked)
    for field, value in cleaned.items():
        setattr(locked, field, value)
    after = as_json(locked)
    if after == before:
        return None
    locked.save()
    return before, after


def _audit(actor: str, action: str, director_name: str, backend_name: str = "", *, before=None, after=None):
    AuditRecord.objects.create(at=timezone.now(), actor=actor, action=action, director_name=director_name,
                               backend_name=backend_name, before=before, after=after)


def record_reload(actor: str, source: str) -> None:
    """Audit a config-file reload (the changes it made have records of their own)."""
    _audit(actor, "reload", "", after={"config": source})


def _clean(rules: dict, data: dict) -> dict:
    cleaned, errors = validation.clean_values(rules, data)
    if errors:
        raise ValidationFailed(errors)
    return cleaned


def _locked_director(pk: int) -> Director:
    try:
        return Director.objects.select_for_update().get(pk=pk)
    except Director.DoesNotExist:
        raise NotFound("director not found") from None


def _locked_backend(pk: int) -> Backend:
    try:
        return Backend.objects.select_for_update(of=("self",)).select_related("director").get(pk=pk)
    except Backend.DoesNotExist:
        raise NotFound("backend not found") from None


def _require_mutable(director: Director, allow_static: bool) -> None:
    if not director.dynamic and not allow_static:
        raise Forbidden(f"director {director.name!r} {STATIC_REASON}")


def _immutable_errors(instance, changes: dict, names) -> dict[str, list[str]]:
    return {n: [IMMUTABLE_MESSAGE] for n in names if n in changes and changes[n] != getattr(instance, n)}


# --- validation without writing (admin forms use these too) ---------------------------------

def clean_director(name: str | None, settings: dict, *, allow_static: bool = False,
                   instance: Director | None = None) -> dict:
    """Validated settings (plus `name` when given); ValidationFailed names every bad field.
    Settings that depend on each other are checked together with the `instance`'s values
    (the defaults for a new director) where `settings` leaves them out."""
    rules = {**validation.DIRECTOR_SETTINGS, **(CONFIG_ONLY_DIRECTOR_FIELDS if allow_static else {})}
    cleaned, errors = validation.clean_values(rules, settings)
    current = validation.defaults(validation.DIRECTOR_SETTINGS) if instance is None else {
        key: getattr(instance, key) for key in validation.DIRECTOR_SETTINGS}
    errors.update({key: messages for key, messages in validation.sendfile_errors({**current, **cleaned}).items()
                   if key not in errors})
    if name is not None:
        try:
            cleaned["name"] = validation.NAME_RULE.clean(name)
        except ValueError as exc:
            errors["name"] = [str(exc)]
    if errors:
        raise ValidationFailed(errors)
    return cleaned


def clean_backend(data: dict, *, instance: Backend | None = None) -> dict:
    """Validated backend fields; for an existing backend name/url/protocol may not differ."""
    if instance is None:
        cleaned, errors = validation.clean_values(validation.BACKEND_FIELDS, data)
        errors.update({f: [REQUIRED_MESSAGE] for f in validation.BACKEND_REQUIRED if f not in data})
    else:
        immutable = _immutable_errors(instance, data, validation.BACKEND_IMMUTABLE)
        rest = {k: v for k, v in data.items() if k not in validation.BACKEND_IMMUTABLE}
        cleaned, errors = validation.clean_values(validation.BACKEND_FIELDS, rest)
        errors.update(immutable)
    errors.update(validation.tls_errors(data.get("url") if instance is None else instance.url, cleaned))
    if errors:
        raise ValidationFailed(errors)
    return cleaned


def ensure_director_name_free(name: str) -> None:
    if Director.objects.filter(name=name).exists():
        raise Conflict(f"director {name!r} already exists")


def ensure_backend_name_free(director: Director, name: str) -> None:
    if director.backends.filter(name=name).exists():
        raise Conflict(f"backend {name!r} already exists in director {director.name!r}")


def check_backend_deletable(backend: Backend, *, allow_static: bool = False) -> None:
    """Forbidden when the director is static (unless allow_static) or the backend is protected."""
    _require_mutable(backend.director, allow_static)
    if backend.terminate_protection:
        raise Forbidden(f"backend {backend.name!r} has terminate_protection set")


# --- directors --------------------------------------------------------------------------------

def create_director(name: str, settings: dict, *, actor: str, dynamic: bool = True, load_path: str = "") -> Director:
    cleaned = clean_director(name, settings)
    director = Director(dynamic=dynamic, load_path=load_path, **cleaned)
    with transaction.atomic():
        ensure_director_name_free(director.name)
        try:
            with transaction.atomic():
                director.save()
        except IntegrityError:
            raise Conflict(f"director {director.name!r} already exists") from None
        _audit(actor, "director.create", director.name, after=director_json(director))
        _bump_version(director)
    return director


def update_director(director: Director, changes: dict, *, actor: str, allow_static: bool = False) -> Director:
    """Change settings (`dynamic`/`load_path` too when allow_static: the config file's right)."""
    name_error = _immutable_errors(director, changes, ["name"])
    if name_error:
        raise ValidationFailed(name_error)
    changes = {k: v for k, v in changes.items() if k != "name"}
    with transaction.atomic():
        locked = _locked_director(director.pk)
        _require_mutable(locked, allow_static)
        cleaned = clean_director(None, changes, allow_static=allow_static, instance=locked)
        changed = apply_changes(locked, cleaned, director_json)
        if changed is not None:
            _audit(actor, "director.update", locked.name, before=changed[0], after=changed[1])
            _bump_version(locked)
    return locked


def delete_director(director: Director, *, actor: str, allow_static: bool = False) -> None:
    with transaction.atomic():
        locked = _locked_director(director.pk)
        _require_mutable(locked, allow_static)
        before = {**director_json(locked), "backends": [backend_json(b) for b in locked.backends.all()]}
        locked.delete()
        _audit(actor, "director.delete", before["name"], before=before)
        _bump_version()


# --- backends ---------------------------------------------------------------------------------

def create_backend(director: Director, data: dict, *, actor: str, allow_static: bool = False) -> Backend:
    cleaned = clean_backend(data)
    with transaction.atomic():
        locked = _locked_director(director.pk)
        _require_mutable(locked, allow_static)
        ensure_backend_name_free(locked, cleaned["name"])
        cleaned.setdefault("position", _next_position(locked))
        backend = _save_new_backend(_new_backend(locked, cleaned), actor)
        _bump_version(locked)
    return backend


def create_backends(director: Director, items: list, *, actor: str, check=None) -> list[Backend]:
    """Several backends at once, all or nothing: one config change, one audit record each.

    ValidationFailed maps the index (as a string) of every bad item to its field errors; a
    name used twice in `items` or already in the director is an error of that item's `name`.
    `check(item)`: the caller's own validation first (the API's request serializer), raising
    ValidationFailed.
    """
    if not isinstance(items, list) or not items:
        raise ValidationFailed({"non_field_errors": ["expected a non-empty list of backend objects"]})
    with transaction.atomic():
        locked = _locked_director(director.pk)
        _require_mutable(locked, False)
        taken = set(locked.backends.values_list("name", flat=True))
        position = _next_position(locked)
        backends, errors = [], {}
        for index, data in enumerate(items):
            try:
                cleaned = clean_backend(check(data) if check else data)
                if cleaned["name"] in taken:
                    raise ValidationFailed({"name": [f"backend {cleaned['name']!r} already exists in director "
                                                     f"{locked.name!r} or earlier in the list"]})
                taken.add(cleaned["name"])
                if "position" not in cleaned:
                    cleaned["position"], position = position, position + 1
                backends.append(_new_backend(locked, cleaned))
            except ValidationFailed as exc:
                errors[str(index)] = exc.errors
        if errors:
            raise ValidationFailed(errors, f"invalid backends at index {', '.join(errors)}")
        for backend in backends:
            _save_new_backend(backend, actor)
        _bump_version(locked)
    return backends


def _next_position(director: Director) -> int:
    last = director.backends.aggregate(last=Max("position"))["last"]
    return 0 if last is None else last + 1


def _new_backend(locked: Director, cleaned: dict) -> Backend:
    """An unsaved backend of the locked director from cleaned fields, its address derived."""
    backend = Backend(director=locked, **cleaned)
    backend.derive_address()
    return backend


def _save_new_backend(backend: Backend, actor: str) -> Backend:
    director = backend.director
    try:
        with transaction.atomic():
            backend.save()
    except IntegrityError:
        raise Conflict(f"backend {backend.name!r} already exists in director {director.name!r}") from None
    _audit(actor, "backend.create", director.name, backend.name, after=backend_json(backend))
    return backend


def update_backend(backend: Backend, changes: dict, *, actor: str, allow_static: bool = False) -> Backend:
    """Change backend fields; on a static director only `enabled` unless allow_static."""
    with transaction.atomic():
        locked = _locked_backend(backend.pk)
        cleaned = clean_backend(changes, instance=locked)
        differing = {k for k, v in cleaned.items() if getattr(locked, k) != v}
        if differing - {"enabled"}:
            _require_mutable(locked.director, allow_static)
        if not differing:
            return locked
        changed = apply_changes(locked, {key: cleaned[key] for key in differing}, backend_json)
        if changed is not None:
            _audit(actor, "backend.update", locked.director.name, locked.name, before=changed[0], after=changed[1])
            _bump_version(locked.director)
    return locked


def set_backend_enabled(backend: Backend, enabled: bool, *, actor: str) -> Backend:
    """x0 LOCK/UNLOCK: allowed on static directors too."""
    if not isinstance(enabled, bool):
        raise ValidationFailed({"enabled": [validation.BACKEND_FIELDS["enabled"].describe()]})
    with transaction.atomic():
        locked = _locked_backend(backend.pk)
        if locked.enabled != enabled:
            set_enabled_locked(locked, enabled, actor)
    return locked


def set_enabled_locked(locked: Backend, enabled: bool, actor: str) -> None:
    """Enable or disable a backend already locked in the caller's transaction (audited, version bumped)."""
    before = backend_json(locked)
    locked.enabled = enabled
    locked.save(update_fields=["enabled", "updated_at"])
    action = "backend.enable" if enabled else "backend.disable"
    _audit(actor, action, locked.director.name, locked.name, before=before, after=backend_json(locked))
    _bump_version(locked.director)


def delete_backend(backend: Backend, *, actor: str, allow_static: bool = False) -> Backend:
    """Drain: the backend takes no new requests; the data plane calls remove_backend when idle."""
    with transaction.atomic():
        locked = _locked_backend(backend.pk)
        check_backend_deletable(locked, allow_static=allow_static)
        if locked.terminating:
            return locked
        before = backend_json(locked)
        locked.terminating = True
        locked.save(update_fields=["terminating", "updated_at"])
        _audit(actor, "backend.delete", locked.director.name, locked.name, before=before, after=backend_json(locked))
        _bump_version(locked.director)
    return locked


def remove_backend(backend_id: int, *, actor: str) -> None:
    """Hard delete (after draining, or when the config file drops it). Gone already: no-op."""
    with transaction.atomic():
        try:
            locked = _locked_backend(backend_id)
        except NotFound:
            log.debug("backend %s already removed", backend_id)
            return
        before = backend_json(locked)
        locked.delete()
        _audit(actor, "backend.remove", locked.director.name, before["name"], before=before)
        _bump_version(locked.director)
