"""Operator actions on the live status page (SPEC §13): enable, disable and remove a backend.

Staff with operator rights (`balancer.permissions.is_operator`) only; anyone else gets 403
and nothing changes. Writes go through `balancer.services` like the API's, so they are
validated, audited (actor `status:<username>`), bump the config version and reach every
process within a second. Enable and disable are small POSTs from the page's script (JSON
answers); remove first shows a confirmation page naming what it deletes and what removing
means (no new requests, removed once its requests in flight finish), or why it is refused.
"""
from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpResponseForbidden, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from . import livestats, services
from .models import Backend
from .permissions import is_operator
from .status_feed import FEED

NOT_OPERATOR = "Changing backends needs operator rights."


def actor(request) -> str:
    return f"status:{request.user.get_username()}"


def _backend(pk: int) -> Backend:
    return get_object_or_404(Backend.objects.select_related("director"), pk=pk)


def _set_enabled(request, pk: int, enabled: bool) -> JsonResponse:
    if not is_operator(request.user):
        return JsonResponse({"detail": NOT_OPERATOR}, status=403)
    backend = _backend(pk)
    try:
        services.set_backend_enabled(backend, enabled, actor=actor(request))
    except services.ServiceError as exc:
        return JsonResponse({"detail": exc.detail}, status=exc.status)
    FEED.poke()
    verb = "enabled" if enabled else "disabled"
    return JsonResponse({"detail": f"backend {backend.director.name}/{backend.name} {verb}", "enabled": enabled})


@staff_member_required
@require_POST
def enable_backend(request, pk: int):
    return _set_enabled(request, pk, True)


@staff_member_required
@require_POST
def disable_backend(request, pk: int):
    return _set_enabled(request, pk, False)


def removal_refusal(backend: Backend) -> str | None:
    """Why the backend cannot be removed (a static director, terminate_protection), or None."""
    try:
        services.check_backend_deletable(backend)
    except services.ServiceError as exc:
        return exc.detail
    return None


@staff_member_required
@require_http_methods(["GET", "POST"])
def remove_backend(request, pk: int):
    """GET: the confirmation page. POST: drain and remove (services.delete_backend)."""
    if not is_operator(request.user):
        return HttpResponseForbidden(NOT_OPERATOR)
    backend = _backend(pk)
    refusal = removal_refusal(backend)
    if request.method == "POST" and refusal is None:
        try:
            services.delete_backend(backend, actor=actor(request))
        except services.ServiceError as exc:
            refusal = exc.detail
        else:
            messages.success(request, f"Backend {backend.director.name}/{backend.name} is being removed: it takes no "
                                      "new requests and goes once its requests in flight have finished.")
            FEED.poke()
            return redirect("status")
    stats = livestats.get_backend_stats(backend.pk) or {}
    context = {"backend": backend, "refusal": refusal, "in_flight": (stats.get("load") or {}).get("current")}
    return render(request, "balancer/status_remove.html", context, status=403 if refusal and request.method == "POST" else 200)
