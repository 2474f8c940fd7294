"""Websocket routes of the management listener (mounted by director_site.asgi)."""
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from .consumers import StatusConsumer

websocket_application = AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter([
    path("ws/status/", StatusConsumer.as_asgi(), name="status-socket"),
])))
