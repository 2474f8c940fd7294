"""Django admin for directors, backends and the audit log (routes: `balancer.route_admin`).

Every save goes through `balancer.services`; the forms run the services' validation so its
errors appear on the fields. Static directors are read-only except each backend's `enabled`.
History buttons show the audit log (`balancer.admin_history`); the backend list's Drain
asks first (`balancer.admin_drain`). Times are shown to the second.
"""
from __future__ import annotations

import contextlib
import json
from datetime import datetime, timezone

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q
from django.forms.models import BaseInlineFormSet, construct_instance
from django.utils.html import format_html

from . import livestats, overview, services, validation
from .admin_buckets import BucketInline, save_bucket_formset
from .admin_drain import drain_action
from .admin_history import AuditHistoryMixin
from .choices import HealthState
from .models import AuditRecord, Backend, Bucket, Director
from .services import Conflict, ServiceError, ValidationFailed

SETTINGS = list(validation.DIRECTOR_SETTINGS)
BACKEND_EDITABLE = ["role", "capacity", "enabled", "health_check_mode", "health_check_interval", "terminate_protection",
                    *validation.TLS_FIELDS]
BACKEND_FIELDS = ["name", "url", *BACKEND_EDITABLE]
BACKEND_STATUS = ["state", "last_checked_at", "last_error", "load", "terminating"]
STATIC_NOTE = "static: defined in the config file; only the backends' enabled flag can be changed here"
DYNAMIC_NOTE = "dynamic: managed here and through the API"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# Background and text colour of each state (the status page's, balancer/static/balancer/status.css).
STATE_COLOURS = {"online": ("#c8f0c0", "#1d5e12"), "offline": ("#f6c4c0", "#8a1b12"),
                 "undefined": ("#e4e4e4", "#555"), overview.STATE_DISABLED: ("#c8d8f4", "#1f3f7a"),
                 overview.STATE_DRAINING: ("#f8e3a8", "#6b4d00")}

admin.site.site_header = "Director"
admin.site.site_title = "Director"
admin.site.index_title = "Directors, backends, routes and the audit log"
admin.site.site_url = None  # no "View site": the header links to the live status page instead
admin.site.enable_nav_sidebar = False  # the backend list needs the width for its live columns


def actor(request) -> str:
    return f"admin:{request.user.get_username()}"


@contextlib.contextmanager
def errors_as_messages(request, prefix: str = ""):
    """A refused service call becomes an error message on the admin page."""
    try:
        yield
    except ServiceError as exc:
        messages.error(request, f"{prefix}{exc}")


def is_static(director: Director | None) -> bool:
    return director is not None and director.pk is not None and not director.dynamic


class ServiceForm(forms.ModelForm):
    """A model form validated by the services (not by a second copy of the rules)."""

    error_fields: dict[str, str] = {}  # the services' name of a field -> the form's, where they differ

    def add_service_error(self, exc: ServiceError) -> None:
        if isinstance(exc, ValidationFailed):
            for field, messages_ in exc.errors.items():
                field = self.error_fields.get(field, field)
                for message in messages_:
                    self.add_error(field if field in self.fields else None, message)
        elif isinstance(exc, Conflict) and exc.field in self.fields:
            self.add_error(exc.field, str(exc))
        else:
            self.add_error(None, str(exc))

    def editable_values(self, names) -> dict:
        return {n: self.cleaned_data[n] for n in names
                if n in self.cleaned_data and n in self.fields and not self.fields[n].disabled}

    def _post_clean(self):
        # Values were validated by the services in clean(); only copy them onto the instance.
        self.instance = construct_instance(self, self.instance, self._meta.fields, self._meta.exclude)


class DirectorForm(ServiceForm):
    class Meta:
        model = Director
        fields = ["name", *SETTINGS]

    def clean(self):
        cleaned = super().clean()
        if self.errors or is_static(self.instance):
            return cleaned
        adding = self.instance.pk is None
        try:
            services.clean_director(cleaned.get("name") if adding else None, self.editable_values(SETTINGS))
            if adding:
                services.ensure_director_name_free(cleaned["name"])
        except ServiceError as exc:
            self.add_service_error(exc)
        return cleaned


class BackendForm(ServiceForm):
    class Meta:
        model = Backend
        fields = BACKEND_FIELDS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            for name in ("name", "url"):
                if name in self.fields:
                    self.fields[name].disabled = True
                    self.fields[name].help_text = "cannot be changed after creation"

    def clean(self):
        cleaned = super().clean()
        director = getattr(self.instance, "director", None) if self.instance.director_id else None
        if self.errors or is_static(director) or cleaned.get("DELETE"):
            return cleaned
        try:
            if self.instance.pk is None:
                services.clean_backend(self.editable_values(BACKEND_FIELDS))
                if director is not None and director.pk is not None:
                    services.ensure_backend_name_free(director, cleaned["name"])
            else:
                services.clean_backend(self.editable_values(BACKEND_EDITABLE), instance=self.instance)
        except ServiceError as exc:
            self.add_service_error(exc)
        return cleaned


class BackendFormSet(BaseInlineFormSet):
    def clean(self):
        super().clean()
        refusals = []
        for form in self.deleted_forms:
            if form.instance.pk is not None:
                try:
                    services.check_backend_deletable(form.instance)
                except ServiceError as exc:
                    refusals.append(str(exc))
        if refusals:  # errors of forms marked for deletion are ignored: report them on the formset
            raise forms.ValidationError(refusals)


def seconds(value) -> str:
    """A stored time to the second (UTC, the site's time zone), or "–"."""
    return value.strftime(TIME_FORMAT) if value is not None else "–"


class StatusColumns:
    """Read-only health and live-load columns shared by the inline and the backend list. Live
    figures come from the data plane of this process (runproxy), "–" without one."""

    def _stats(self, backend: Backend) -> dict:
        return (livestats.get_backend_stats(backend.pk) if backend.pk else None) or {}

    @admin.display(description="load")
    def load(self, backend: Backend) -> str:
        stats = self._stats(backend)
        if not stats:
            return "–"
        current = (stats.get("load") or {}).get("current", "?")
        return f"{current} / {backend.capacity or '∞'}"

    @admin.display(description="requests")
    def requests(self, backend: Backend) -> str:
        stats = self._stats(backend)
        return str((stats.get("load") or {}).get("total", "–")) if stats else "–"

    @admin.display(description="errors")
    def errors(self, backend: Backend) -> str:
        stats = self._stats(backend)
        return str(stats.get("failures", "–")) if stats else "–"

    @admin.display(description="state", ordering="health_state")
    def state(self, backend: Backend) -> str:
        word = overview.display_state(backend.enabled, backend.terminating, backend.health_state)
        background, colour = STATE_COLOURS.get(word, STATE_COLOURS["undefined"])
        return format_html('<span class="director-state state-{}" style="background:{};color:{};padding:0 .5em;'
                           'border-radius:3px;font-weight:600">{}</span>', word, background, colour, word)

    @admin.display(description="last checked", ordering="last_checked")
    def last_checked_at(self, backend: Backend) -> str:
        """The monitor's own time when it runs here and is newer (stored times come in batches)."""
        stored = backend.last_checked
        monitor = ((livestats.get_health_stats() or {}).get(backend.pk) or {}).get("last_checked")
        if monitor is not None and (stored is None or monitor > stored.timestamp()):
            stored = datetime.fromtimestamp(monitor, timezone.utc)
        return seconds(stored)


class BackendInline(StatusColumns, admin.TabularInline):
    model = Backend
    form = BackendForm
    formset = BackendFormSet
    fields = [*BACKEND_FIELDS, *BACKEND_STATUS]
    extra = 0

    def get_readonly_fields(self, request, obj=None):
        if is_static(obj):
            return [f for f in self.fields if f != "enabled"]
        return BACKEND_STATUS

    def has_add_permission(self, request, obj=None):
        return not is_static(obj) and super().has_add_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return not is_static(obj) and super().has_delete_permission(request, obj)


@admin.register(Director)
class DirectorAdmin(AuditHistoryMixin, admin.ModelAdmin):
    form = DirectorForm
    inlines = [BackendInline, BucketInline]
    list_display = ["name", "mutable_column", "enabled", "scheduler", "backends_online"]
    list_filter = ["dynamic", "enabled", "scheduler"]
    search_fields = ["name"]

    def get_fieldsets(self, request, obj=None):
        return [(None, {"fields": ["mutability", "name", "load_path", *SETTINGS]})]

    def get_readonly_fields(self, request, obj=None):
        if is_static(obj):
            return ["mutability", "name", "load_path", *SETTINGS]
        return ["mutability", "load_path"] if obj is None else ["mutability", "name", "load_path"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            online_count=Count("backends", filter=Q(backends__health_state=HealthState.ONLINE)),
            backend_count=Count("backends"))

    @admin.display(description="mutability")
    def mutability(self, director: Director) -> str:
        return STATIC_NOTE if is_static(director) else DYNAMIC_NOTE

    @admin.display(description="mutable", boolean=True, ordering="dynamic")
    def mutable_column(self, director: Director) -> bool:
        return director.dynamic

    @admin.display(description="online / total backends")
    def backends_online(self, director: Director) -> str:
        return f"{director.online_count} / {director.backend_count}"

    def has_delete_permission(self, request, obj=None):
        return not is_static(obj) and super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        try:
            if not change:
                created = services.create_director(form.cleaned_data["name"], form.editable_values(SETTINGS),
                                                   actor=actor(request))
                obj.pk, obj._state.adding, obj._state.db = created.pk, False, created._state.db
            elif obj.dynamic:
                changes = {k: form.cleaned_data[k] for k in form.changed_data if k in SETTINGS}
                if changes:
                    services.update_director(obj, changes, actor=actor(request))
        except ServiceError as exc:
            messages.error(request, str(exc))

    def save_formset(self, request, form, formset, change):
        director = form.instance
        if formset.model is Bucket:
            save_bucket_formset(request, director, formset, actor(request))
            return
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for backend_form in formset.forms:
            backend = backend_form.instance
            try:
                if backend_form in formset.deleted_forms:
                    if backend.pk is not None:
                        services.delete_backend(backend, actor=actor(request))
                        formset.deleted_objects.append(backend)
                elif not backend_form.has_changed():
                    continue
                elif backend.pk is None:
                    data = backend_form.editable_values(BACKEND_FIELDS)
                    formset.new_objects.append(services.create_backend(director, data, actor=actor(request)))
                else:
                    changes = {k: backend_form.cleaned_data[k] for k in backend_form.changed_data if k in BACKEND_EDITABLE}
                    formset.changed_objects.append((_save_backend(backend, changes, request), list(changes)))
            except ServiceError as exc:
                messages.error(request, f"backend {backend.name}: {exc}")

    def delete_model(self, request, obj):
        services.delete_director(obj, actor=actor(request))

    def delete_queryset(self, request, queryset):
        for director in queryset:
            try:
                services.delete_director(director, actor=actor(request))
            except ServiceError as exc:
                messages.error(request, f"director {director.name}: {exc}")


def _save_backend(backend: Backend, changes: dict, request) -> Backend:
    if is_static(backend.director):
        if "enabled" in changes:
            return services.set_backend_enabled(backend, changes["enabled"], actor=actor(request))
        return backend
    return services.update_backend(backend, changes, actor=actor(request))


@admin.register(Backend)
class BackendAdmin(AuditHistoryMixin, StatusColumns, admin.ModelAdmin):
    form = BackendForm
    list_display = ["name", "director", "url", "role", "state", "load", "requests", "errors", "last_checked_at",
                    "enabled"]
    list_filter = ["director", "health_state", "enabled", "role"]
    search_fields = ["name", "url", "director__name"]
    list_select_related = ["director"]
    actions = ["enable_backends", "disable_backends", "drain_backends"]

    def get_fields(self, request, obj=None):
        return [*BACKEND_FIELDS, *BACKEND_STATUS]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and is_static(obj.director):
            return [f for f in self.get_fields(request, obj) if f != "enabled"]
        return BACKEND_STATUS

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # drain replaces the bulk delete
        return actions

    def has_add_permission(self, request):
        return False  # backends are added on their director's page

    def has_delete_permission(self, request, obj=None):
        return obj is not None and not is_static(obj.director) and super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        changes = {k: form.cleaned_data[k] for k in form.changed_data if k in BACKEND_EDITABLE}
        with errors_as_messages(request):
            _save_backend(Backend.objects.select_related("director").get(pk=obj.pk), changes, request)

    def delete_model(self, request, obj):
        with errors_as_messages(request):
            services.delete_backend(obj, actor=actor(request))

    def _each(self, request, queryset, verb, call):
        done = 0
        for backend in queryset.select_related("director"):
            try:
                call(backend)
                done += 1
            except ServiceError as exc:
                messages.error(request, f"{backend}: {exc}")
        if done:
            messages.success(request, f"{verb} {done} backend(s)")

    @admin.action(description="Enable selected backends")
    def enable_backends(self, request, queryset):
        self._each(request, queryset, "enabled", lambda b: services.set_backend_enabled(b, True, actor=actor(request)))

    @admin.action(description="Disable selected backends")
    def disable_backends(self, request, queryset):
        self._each(request, queryset, "disabled", lambda b: services.set_backend_enabled(b, False, actor=actor(request)))

    @admin.action(description="Drain selected backends (remove once idle)…")
    def drain_backends(self, request, queryset):
        return drain_action(self, request, queryset, actor(request))


@admin.register(AuditRecord)
class AuditRecordAdmin(admin.ModelAdmin):
    list_display = ["time", "actor", "action", "director_name", "backend_name"]
    list_filter = ["action", "actor"]
    search_fields = ["director_name", "backend_name", "actor"]
    fields = ["time", "actor", "action", "director_name", "backend_name", "before_json", "after_json"]
    readonly_fields = fields

    @admin.display(description="time (UTC)", ordering="at")
    def time(self, record: AuditRecord) -> str:
        return seconds(record.at)

    @admin.display(description="before")
    def before_json(self, record: AuditRecord):
        return format_html("<pre>{}</pre>", json.dumps(record.before, indent=2, sort_keys=True))

    @admin.display(description="after")
    def after_json(self, record: AuditRecord):
        return format_html("<pre>{}</pre>", json.dumps(record.after, indent=2, sort_keys=True))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


from . import route_admin  # noqa: E402,F401  registers RouteAdmin (it builds on ServiceForm above)
