"""Operator pages of the management listener: the live status page (staff only; its data
comes over the websocket of balancer.consumers, its actions are balancer.status_actions) and
the readiness probe `/-/ready`."""
from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpResponse
from django.shortcuts import render

from . import livestats, overview
from .permissions import is_operator
from .status_feed import FEED

READY = "ready\n"


@staff_member_required
def status_page(request):
    """The page; with operator rights its rows carry enable / disable / remove (the CSRF token
    for their POSTs is in the page)."""
    context = {"interval": FEED.interval, "window": FEED.window, "operator": is_operator(request.user)}
    return render(request, "balancer/status.html", context)


async def ready(request):
    """200 "ready" when this process serves traffic (its data plane is loaded) and the
    database answers; 503 naming the first reason otherwise. Open, like a load balancer's
    health endpoint; the management listener binds loopback by default."""
    if livestats.get_snapshot() is None:
        return _not_ready("no data plane in this process")
    try:
        await overview.run_in_db_thread(overview.ping_database)
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return _not_ready(f"database unreachable: {type(exc).__name__}")
    return HttpResponse(READY, content_type="text/plain; charset=utf-8")


def _not_ready(reason: str) -> HttpResponse:
    return HttpResponse(f"not ready: {reason}\n", status=503, content_type="text/plain; charset=utf-8")
