"""The backend list's "Drain" action with Django's intermediate confirmation page.

Draining is what removing a backend means in Director (SPEC §9, DELETE of a backend; x0's
"terminate"): from now on it takes no new requests, and the data plane removes it for good
once its requests in flight have finished. The page lists each selected backend with its
requests in flight, or why it cannot be drained (a static director, terminate_protection,
already draining); nothing changes until the operator confirms. Each drained backend gets
one audit record (`backend.delete` by the operator); the removal itself is recorded when it
happens (`backend.remove` by `proxy:drained`).
"""
from __future__ import annotations

from django.contrib import messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse

from . import livestats, services
from .models import Backend

ACTION = "drain_backends"


def refusal(backend: Backend) -> str | None:
    if backend.terminating:
        return "already draining"
    try:
        services.check_backend_deletable(backend)
    except services.ServiceError as exc:
        return exc.detail
    return None


def in_flight(backend: Backend) -> int | None:
    stats = livestats.get_backend_stats(backend.pk)
    return None if not stats else (stats.get("load") or {}).get("current")


def drain_action(model_admin, request, queryset, actor: str):
    """First call: the confirmation page. Confirmed (`post=yes`): drain what may be drained."""
    backends = list(queryset.select_related("director"))
    if request.POST.get("post") != "yes":
        rows = [(b, in_flight(b), refusal(b)) for b in backends]
        context = {
            **model_admin.admin_site.each_context(request), "title": "Drain backends?", "subtitle": None,
            "opts": model_admin.opts, "rows": rows, "drainable": [b for b, _, why in rows if why is None],
            "action": ACTION, "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        request.current_app = model_admin.admin_site.name
        return TemplateResponse(request, "admin/balancer/drain_confirmation.html", context)
    drained = 0
    for backend in backends:
        try:
            services.delete_backend(backend, actor=actor)
            drained += 1
        except services.ServiceError as exc:
            messages.error(request, f"{backend}: {exc}")
    if drained:
        messages.success(request, f"draining {drained} backend(s): they take no new requests and are removed "
                                  "once their requests in flight have finished")
    return None
