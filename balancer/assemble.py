"""One runproxy process's data plane, wired to the control plane (what runproxy serves).

The data plane (`proxy.service.ProxyService`) imports nothing of Django: this is where it
gets the database as its config source, the channel layer, and the health monitor, and
where its live figures are registered for the admin, the API and /metrics.
"""
from __future__ import annotations

from channels.layers import get_channel_layer

from proxy.service import ProxyService, StartupError

from . import livestats
from .dataplane_source import DatabaseConfigSource, PlaneStats


def proxy_service(settings, *, health_monitor: bool, snapshot, on_database_back=None) -> ProxyService:
    """A ProxyService with its initial state loaded (from the database, else `snapshot`)."""
    try:
        layer = get_channel_layer()
    except Exception as exc:  # noqa: BLE001 - a broken CHANNEL_LAYERS setting or backend
        raise StartupError(f"channel layer: {exc}") from None
    service = ProxyService(settings, DatabaseConfigSource(), channel_layer=layer,
                           monitor_factory=_monitor if health_monitor else None, serve_monitor=_serve_monitor,
                           snapshot=snapshot, on_database_back=on_database_back)
    service.load_initial_state()
    livestats.register(PlaneStats(service.plane))
    livestats.register_health(service.monitor)
    return service


def _monitor(plane, layer):
    from .health.monitor import HealthMonitor

    return HealthMonitor(on_transition=plane.apply_health, channel_layer=layer, fallback_rows=lambda: plane.rows)


async def _serve_monitor(monitor) -> None:
    from .health.worker import serve

    await serve(monitor)
