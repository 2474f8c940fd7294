"""Django admin for routes (SPEC §11): list in match order, add, change, delete.

Saves go through `balancer.route_services` (actor `admin:<username>`), whose validation
errors appear on the form's fields. Routes from the config file are read-only here.
"""
from __future__ import annotations

from django.contrib import admin

from . import route_services
from .admin import ServiceForm, actor, errors_as_messages
from .admin_history import AuditHistoryMixin
from .models import Route
from .services import ServiceError

# Form fields in the order of the route object; the model calls `pass` "director".
ROUTE_FORM_FIELDS = list(route_services.MODEL_FIELDS.values())


class RouteForm(ServiceForm):
    error_fields = {"pass": "director"}

    class Meta:
        model = Route
        fields = ROUTE_FORM_FIELDS

    def route_values(self) -> dict:
        """The form as a route object (keys of the API; empty fields are null)."""
        return {key: (None if self.cleaned_data.get(field) in ("", None) else self.cleaned_data[field])
                for key, field in route_services.MODEL_FIELDS.items() if field in self.cleaned_data}

    def clean(self):
        cleaned = super().clean()
        if self.errors or not self.instance.mutable:
            return cleaned
        try:
            route_services.clean_route(self.route_values(), instance=self.instance if self.instance.pk else None)
        except ServiceError as exc:
            self.add_service_error(exc)
        return cleaned


@admin.register(Route)
class RouteAdmin(AuditHistoryMixin, admin.ModelAdmin):
    form = RouteForm
    list_display = ["__str__", "priority", "host", "path", "director", "http", "fcgi", "mutable", "source"]
    list_filter = ["mutable"]
    search_fields = ["host", "path", "director", "http", "fcgi"]

    def get_fields(self, request, obj=None):
        return [*ROUTE_FORM_FIELDS, "source"]

    readonly_fields = ["source"]

    def has_change_permission(self, request, obj=None):
        return (obj is None or obj.mutable) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return (obj is None or obj.mutable) and super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        with errors_as_messages(request):
            if not change:
                created = route_services.create_route(form.route_values(), actor=actor(request))
                obj.pk, obj._state.adding, obj._state.db = created.pk, False, created._state.db
            elif obj.mutable:
                route_services.update_route(obj, form.route_values(), actor=actor(request))

    def delete_model(self, request, obj):
        with errors_as_messages(request, f"route {obj.pk}: "):
            route_services.delete_route(obj, actor=actor(request))

    def delete_queryset(self, request, queryset):
        for route in queryset:
            self.delete_model(request, route)
