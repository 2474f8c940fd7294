"""Websocket routes of the management listener (mounted by director_site.asgi)."""
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from django.urls import path

from .admin_hosts import websocket_guard
from .consumers import StatusConsumer

websocket_application = websocket_guard(AuthMiddlewareStack(URLRouter([
    path("ws/status/", StatusConsumer.as_asgi(), name="status-socket"),
])))
