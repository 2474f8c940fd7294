"""The admin's History button shows Director's audit log for the object.

Django's own history reads `LogEntry`, which nothing here writes: every change goes through
`balancer.services` and is recorded as an `AuditRecord` (API, admin, status page, config
file, health monitor alike). A director's history holds its own records and its backends';
a backend's, the records naming it in its director; a route's, the records of its id.
"""
from __future__ import annotations

from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.template.response import TemplateResponse

from .models import AuditRecord, Backend, Director, Route

HISTORY_LIMIT = 500  # newest records shown


def audit_filter(obj) -> Q:
    """The audit records about `obj` (a Director, Backend or Route)."""
    if isinstance(obj, Director):
        return Q(director_name=obj.name)
    if isinstance(obj, Backend):
        return Q(director_name=obj.director.name, backend_name=obj.name)
    if isinstance(obj, Route):
        return Q(action__startswith="route.") & (Q(before__id=obj.pk) | Q(after__id=obj.pk))
    raise TypeError(f"no audit history for {type(obj).__name__}")


def changes(record: AuditRecord) -> str:
    """One line saying what the record changed."""
    before, after = record.before or {}, record.after or {}
    if before and after:
        keys = [k for k in after if before.get(k) != after.get(k)]
        return ", ".join(f"{k}: {before.get(k)!r} → {after.get(k)!r}" for k in keys) or "no field changed"
    if after:
        return "created" if record.action.endswith(".create") else ", ".join(f"{k}: {v!r}" for k, v in after.items())
    return "deleted" if before else ""


class AuditHistoryMixin:
    """ModelAdmin mixin: History lists the object's audit records, newest first."""

    def history_view(self, request, object_id, extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_or_change_permission(request, obj):
            raise PermissionDenied
        records = AuditRecord.objects.filter(audit_filter(obj))[:HISTORY_LIMIT]
        context = {
            **self.admin_site.each_context(request),
            "title": f"History: {obj}", "subtitle": None, "object": obj, "opts": self.opts,
            "app_label": self.opts.app_label, "rows": [(record, changes(record)) for record in records],
            "limit": HISTORY_LIMIT, **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/balancer/audit_history.html", context)
