"""Throttling of failed Django admin logins, per client IP and per username.

Rule: when a client IP or a username has `MAX_FAILURES` failed logins within the last
`WINDOW_S` seconds, further login attempts from that IP, or for that username from
anywhere, are refused with 429, `Retry-After` and the login form saying "Too many failed
login attempts; try again in N s" — without the password being checked. A failure falls out
of the count `WINDOW_S` after it happened. A successful login clears the counts of its IP and
its username. Only attempts that reach authentication count (a form without username or
password does not). Counts live in Django's default cache: Redis when `REDIS_URL` is set,
shared by every runproxy process (`director_site.environment.caches`), else each process
counts on its own.

`install(admin.site)` wires it in; it must run before `admin.site.urls` is read.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import math
import time

from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError

log = logging.getLogger("director.admin")
MAX_FAILURES = 5
WINDOW_S = 300
TOO_MANY_MESSAGE = "Too many failed login attempts; try again in %(seconds)d s"
CACHE_PREFIX = "director:login-failures:"
BLOCKED_ATTRIBUTE = "director_login_blocked_for"  # set on the request by a refused form


def _unless_the_store_fails(default):
    """The shared cache (Redis) is unreachable: logins go on, unthrottled, and say so."""
    def decorate(method):
        @functools.wraps(method)
        def guarded(*args, **kwargs):
            try:
                return method(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - any cache backend error
                log.warning("login throttling is off while its cache fails: %s", exc)
                return default
        return guarded
    return decorate


class LoginThrottle:
    """Failure timestamps per key in a cache, with a sliding window."""

    def __init__(self, limit: int = MAX_FAILURES, window: float = WINDOW_S, *, clock=time.time, store=None):
        self.limit, self.window, self.clock = limit, window, clock
        self.store = store if store is not None else cache

    @staticmethod
    def keys(ip: str, username: str) -> list[str]:
        """Cache keys of one IP and one username (hashed: any text makes a valid key)."""
        def key(kind, value):
            return CACHE_PREFIX + kind + ":" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
        return [key("ip", ip), key("user", username.casefold())]

    def _recent(self, key: str, now: float) -> list[float]:
        return [at for at in self.store.get(key, []) if now - at < self.window]

    @_unless_the_store_fails(0)
    def blocked_for(self, ip: str, username: str) -> int:
        """Seconds until an attempt for (ip, username) is allowed again; 0: allowed now."""
        now = self.clock()
        wait = 0.0
        for key in self.keys(ip, username):
            recent = self._recent(key, now)
            if len(recent) >= self.limit:
                wait = max(wait, recent[-self.limit] + self.window - now)
        return math.ceil(wait) if wait > 0 else 0

    @_unless_the_store_fails(None)
    def failed(self, ip: str, username: str) -> None:
        now = self.clock()
        for key in self.keys(ip, username):
            recent = self._recent(key, now)[-(self.limit - 1):] if self.limit > 1 else []
            self.store.set(key, [*recent, now], timeout=math.ceil(self.window))

    @_unless_the_store_fails(None)
    def succeeded(self, ip: str, username: str) -> None:
        self.store.delete_many(self.keys(ip, username))


THROTTLE = LoginThrottle()


def client_ip(request) -> str:
    return request.META.get("REMOTE_ADDR") or "unknown"


class ThrottledAdminAuthenticationForm(AdminAuthenticationForm):
    """The admin login form; refuses blocked attempts before authenticating, counts failures."""

    throttle = THROTTLE

    def clean(self):
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is None or password is None:
            return super().clean()  # a field error already; nothing is authenticated
        ip = client_ip(self.request)
        wait = self.throttle.blocked_for(ip, username)
        if wait:
            setattr(self.request, BLOCKED_ATTRIBUTE, wait)
            raise ValidationError(TOO_MANY_MESSAGE, code="throttled", params={"seconds": wait})
        try:
            cleaned = super().clean()
        except ValidationError:
            self.throttle.failed(ip, username)
            raise
        self.throttle.succeeded(ip, username)
        return cleaned


def throttled(login_view):
    """Wrap an admin login view: a refused attempt is answered 429 with Retry-After."""
    @functools.wraps(login_view)
    def view(request, extra_context=None):
        response = login_view(request, extra_context)
        wait = getattr(request, BLOCKED_ATTRIBUTE, 0)
        if wait:
            response.status_code = 429
            response["Retry-After"] = str(wait)
        return response
    return view


def install(site) -> None:
    """Throttle `site`'s login (an AdminSite); call before its `urls` are read."""
    site.login_form = ThrottledAdminAuthenticationForm
    site.login = throttled(site.login)
