"""ASGI applications of the management listener.

The traffic listeners are served by proxy.app.ProxyApp, built by `manage.py runproxy`
(it needs the data plane); this module gives the management side: Django over HTTP,
channels websockets (status page), and the channel-name router for background workers.
"""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "director_site.settings")

from django.core.asgi import get_asgi_application

django_application = get_asgi_application()

from channels.routing import ChannelNameRouter, ProtocolTypeRouter  # noqa: E402

from balancer.health.worker import channel_routes  # noqa: E402
from balancer.routing import websocket_application  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_application,
    "websocket": websocket_application,
    "channel": ChannelNameRouter(channel_routes),
})
