"""Which Host and Origin the management listener accepts (SPEC §13): `[proxy] admin_hosts`.

Default: the admin listen address, `localhost` and `127.0.0.1`. runproxy puts the list into
Django's ALLOWED_HOSTS (a foreign Host is a 400, Django's own check); `OriginMiddleware`
refuses a request whose Origin names another host (403), and the status websocket refuses
both (`websocket_guard`). Entries are host names, IP addresses (IPv6 in brackets) or
`.example.com` for a domain and its subdomains, as in ALLOWED_HOSTS.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http import HttpResponseForbidden
from django.http.request import split_domain_port, validate_host

DEFAULT_NAMES = ("localhost", "127.0.0.1")
_HOST_NAME = re.compile(r"\.?[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*")


def _check_entry(entry: Any) -> str:
    if not isinstance(entry, str):
        raise ValueError(f"{entry!r} is not a host name")
    if entry.startswith("[") and entry.endswith("]"):
        ipaddress.IPv6Address(entry[1:-1])  # ValueError names the address
        return entry.lower()
    if len(entry) > 253 or not _HOST_NAME.fullmatch(entry):
        raise ValueError(f"{entry!r} is not a host name, an IP address, [IPv6] or .domain")
    return entry.lower()


def parse_admin_hosts(value: Any) -> tuple[str, ...] | None:
    """`[proxy] admin_hosts`: a non-empty list of host entries; None (unset): the default."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError('must be a non-empty list of host names like ["director.example.com", "127.0.0.1"]')
    return tuple(_check_entry(entry) for entry in value)


def accepted_hosts(admin_hosts: tuple[str, ...] | None, admin_listen) -> list[str]:
    """The configured entries, or the default for the admin listen address."""
    if admin_hosts is not None:
        return list(admin_hosts)
    listen_host = getattr(admin_listen, "host", None)
    names = list(DEFAULT_NAMES)
    if listen_host and listen_host not in names:
        names.append(f"[{listen_host}]" if ":" in listen_host else listen_host)
    return names


def apply(proxy_settings) -> None:
    """Make Django accept exactly the admin hosts of `proxy_settings` (a ProxySettings)."""
    settings.ALLOWED_HOSTS = accepted_hosts(proxy_settings.admin_hosts, proxy_settings.admin_listen)


def origin_allowed(origin: str) -> bool:
    """An Origin header value ("http://host:port") naming an accepted host."""
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    domain, _ = split_domain_port(parts.netloc)
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)


class OriginMiddleware:
    """A request carrying an Origin of another host (a page elsewhere scripting the browser
    of a logged-in operator) is refused with 403 before it reaches a view."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        origin = request.headers.get("Origin")
        if origin is not None and not origin_allowed(origin):
            return HttpResponseForbidden("Origin not allowed")
        return self.get_response(request)


class _WebsocketGuard:
    """ASGI websocket wrapper: a handshake with a Host not accepted, or an Origin naming
    another host, is refused (403). Without Origin (not a browser) it goes on, as in HTTP."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        headers = {name: value.decode("latin-1") for name, value in scope.get("headers") or []}
        domain, _ = split_domain_port(headers.get(b"host", ""))
        origin = headers.get(b"origin")
        if not (domain and validate_host(domain, settings.ALLOWED_HOSTS)) or (
                origin is not None and not origin_allowed(origin)):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)


def websocket_guard(application):
    """The websocket `application` behind the Host and Origin checks."""
    return _WebsocketGuard(application)
