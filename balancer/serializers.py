"""JSON shapes of directors, backends and audit records (SPEC §9).

Writes are checked by the same `balancer.validation` rules the models and services use, so a
value is rejected with the same message everywhere; unknown fields are errors, not ignored.
Reads are built from prefetched rows plus the data plane's live figures (`balancer.livestats`).
"""
from __future__ import annotations

import re

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers

from . import livestats, validation
from .bucket_figures import buckets_json
from .bucket_serializers import BucketSerializer
from .choices import HealthCheckMode, HealthState, Protocol
from .models import AuditRecord, Backend, Director
from .services import IMMUTABLE_MESSAGE


class RuleField(serializers.Field):
    """A field typed and checked by one `validation.Rule` (strict: no string-to-number coercion)."""

    def __init__(self, rule: validation.Rule, **kwargs):
        self.rule = rule
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        try:
            return self.rule.clean(data)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value):
        return value


class RuleFieldSchema(OpenApiSerializerFieldExtension):
    """OpenAPI types, bounds, enums and patterns of RuleField, from its rule."""

    target_class = RuleField

    def map_serializer_field(self, auto_schema, direction):
        rule = self.target.rule
        if rule.kind == "bool":
            return {"type": "boolean"}
        if rule.kind == "choice":
            return {"type": "string", "enum": list(rule.choices)}
        if rule.kind == "str":
            pattern = rule.pattern or validation.TEXT_PATTERN
            schema = {"type": "string", "maxLength": rule.max_length, "pattern": pattern}
            if not re.search(pattern, ""):  # the pattern needs a character: say so plainly too
                schema["minLength"] = 1
            return schema
        if rule.kind == "size":
            return {"oneOf": [{"type": "integer", "minimum": rule.minimum, "maximum": rule.maximum},
                              {"type": "string", "pattern": validation.SIZE_PATTERN}]}
        return {"type": "integer" if rule.kind == "int" else "number",
                "minimum": rule.minimum, "maximum": rule.maximum}


def rule_fields(rules: dict[str, validation.Rule], *, read_only: bool = False, required=()) -> dict:
    """One RuleField per rule; writable ones optional unless named in `required`."""
    return {
        name: RuleField(rule, read_only=read_only, required=name in required and not read_only)
        for name, rule in rules.items()
    }


class StrictSerializer(serializers.Serializer):
    """A write serializer that names unknown (or unchangeable) fields instead of ignoring them."""

    #: field name -> message for fields that exist but may not be sent to this serializer.
    refused_fields: dict[str, str] = {}

    def to_internal_value(self, data):
        if isinstance(data, dict):
            errors = {
                str(key): [self.refused_fields.get(key, validation.UNKNOWN_FIELD)]
                for key in data if key not in self.fields or self.fields[key].read_only
            }
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


def _strict_serializer(name: str, rules: dict, *, required=(), refused=None, doc: str = ""):
    attrs = {**rule_fields(rules, required=required), "refused_fields": refused or {}, "__doc__": doc,
             "__module__": __name__}
    return type(name, (StrictSerializer,), attrs)


_BACKEND_SETTABLE = {k: v for k, v in validation.BACKEND_FIELDS.items() if k != "position"}
_BACKEND_CHANGEABLE = {k: v for k, v in _BACKEND_SETTABLE.items() if k not in validation.BACKEND_IMMUTABLE}
_IMMUTABLE = {name: IMMUTABLE_MESSAGE for name in validation.BACKEND_IMMUTABLE}

DirectorCreateSerializer = _strict_serializer(
    "DirectorCreate", {"name": validation.NAME_RULE, **validation.DIRECTOR_SETTINGS},
    required=("name",), doc="A new dynamic director: its name and any settings (SPEC §5).")
DirectorUpdateSerializer = _strict_serializer(
    "DirectorUpdate", validation.DIRECTOR_SETTINGS, refused={"name": IMMUTABLE_MESSAGE},
    doc="Settings to change (SPEC §5).")
BackendCreateSerializer = _strict_serializer(
    "BackendCreate", _BACKEND_SETTABLE, required=validation.BACKEND_REQUIRED,
    doc="A new backend (SPEC §6).")
BackendUpdateSerializer = _strict_serializer(
    "BackendUpdate", _BACKEND_CHANGEABLE, refused=_IMMUTABLE,
    doc="Backend fields to change; name, url and protocol are fixed at creation.")


# ---- read side -----------------------------------------------------------------------------

class LoadSerializer(serializers.Serializer):
    current = serializers.IntegerField()
    max = serializers.IntegerField()
    total = serializers.IntegerField()


class BackendStatsSerializer(serializers.Serializer):
    load = LoadSerializer()
    failures = serializers.IntegerField()


class DirectorStatsSerializer(serializers.Serializer):
    load = LoadSerializer()
    queued = LoadSerializer()
    dropped = serializers.IntegerField()


class HealthSerializer(serializers.Serializer):
    state = serializers.ChoiceField(HealthState.choices)
    mode = serializers.ChoiceField(HealthCheckMode.choices)
    interval = serializers.FloatField()
    last_checked = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField()


def _zero_load() -> dict:
    return {"current": 0, "max": 0, "total": 0}


def backend_stats(backend_id: int) -> dict:
    """Live figures of one backend; zeros when no data plane runs in this process."""
    stats = livestats.get_backend_stats(backend_id)
    if not stats:
        return {"load": _zero_load(), "failures": 0}
    return {"load": {**_zero_load(), **stats.get("load", {})}, "failures": stats.get("failures", 0)}


CACHE_FIGURES = ("objects", "bytes", "hits", "misses", "shadow")


class CacheStatsSerializer(serializers.Serializer):
    """The response cache of a director (SPEC §15), summed over the processes serving it."""

    objects = serializers.IntegerField()
    bytes = serializers.IntegerField()
    hits = serializers.IntegerField()
    misses = serializers.IntegerField()
    shadow = serializers.IntegerField()


def cache_stats(stats: dict | None) -> dict:
    """{objects, bytes, hits, misses, shadow} of a director's live figures (livestats);
    zeros when no data plane runs in this process."""
    figures = (stats or {}).get("cache") or {}
    return {name: figures.get(name, 0) for name in CACHE_FIGURES}


def director_stats(director_id: int, stats: dict | None = None) -> dict:
    """Live figures of one director (`stats`: livestats' figures when already fetched);
    zeros when no data plane runs in this process."""
    if stats is None:
        stats = livestats.get_director_stats(director_id)
    if not stats:
        return {"load": _zero_load(), "queued": _zero_load(), "dropped": 0}
    return {"load": {**_zero_load(), **stats.get("load", {})},
            "queued": {**_zero_load(), **stats.get("queued", {})},
            "dropped": stats.get("dropped", 0)}


_BACKEND_OUT = tuple(_BACKEND_SETTABLE)
_DATETIME = serializers.DateTimeField()


_BackendFields = type("_BackendFields", (serializers.Serializer,),
                      {**rule_fields(_BACKEND_SETTABLE, read_only=True), "__module__": __name__})
_DirectorSettings = type("_DirectorSettings", (serializers.Serializer,),
                         {**rule_fields(validation.DIRECTOR_SETTINGS, read_only=True), "__module__": __name__})


class BackendSerializer(_BackendFields):
    """A backend as the API shows it (SPEC §9 backend object)."""

    protocol = serializers.ChoiceField(Protocol.choices, read_only=True)
    host = serializers.CharField(read_only=True, allow_null=True)
    port = serializers.IntegerField(read_only=True, allow_null=True)
    path = serializers.CharField(read_only=True, allow_null=True, help_text="UNIX socket path, else null")
    terminating = serializers.BooleanField(read_only=True)
    health = HealthSerializer(read_only=True)
    stats = BackendStatsSerializer(read_only=True)

    def to_representation(self, backend: Backend) -> dict:
        # Hand-built: a director with 1,000 backends is rendered in one request.
        data = {name: getattr(backend, name) for name in _BACKEND_OUT}
        data.update(
            protocol=backend.protocol, host=backend.host, port=backend.port, path=backend.path,
            terminating=backend.terminating,
            health={
                "state": backend.health_state, "mode": backend.health_check_mode,
                "interval": backend.health_check_interval,
                "last_checked": _DATETIME.to_representation(backend.last_checked) if backend.last_checked else None,
                "last_error": backend.last_error,
            },
            stats=backend_stats(backend.pk),
        )
        return data


class DirectorSerializer(_DirectorSettings):
    """A director as the API shows it (SPEC §9 director object); backends must be prefetched."""

    name = RuleField(validation.NAME_RULE, read_only=True)
    mutable = serializers.BooleanField(read_only=True, help_text="dynamic director: backends can be managed")
    stats = DirectorStatsSerializer(read_only=True)
    cache = CacheStatsSerializer(read_only=True)
    backends = BackendSerializer(many=True, read_only=True)
    buckets = BucketSerializer(many=True, read_only=True)

    def to_representation(self, director: Director) -> dict:
        backend = BackendSerializer()
        live = livestats.get_director_stats(director.pk)
        return {
            "name": director.name,
            "mutable": director.dynamic,
            **director.settings(),
            "stats": director_stats(director.pk, live),
            "cache": cache_stats(live),
            "backends": [backend.to_representation(b) for b in director.backends.all()],
            "buckets": buckets_json(director),
        }


class AuditRecordSerializer(serializers.ModelSerializer):
    """One audit log entry: who changed what, when, before and after."""

    before = serializers.JSONField(read_only=True, allow_null=True)
    after = serializers.JSONField(read_only=True, allow_null=True)

    class Meta:
        model = AuditRecord
        fields = ["id", "at", "actor", "action", "director_name", "backend_name", "before", "after"]
        read_only_fields = fields
