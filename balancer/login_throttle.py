"""Throttling of failed Django admin logins, per client IP and per username.

Rule: every login attempt that reaches authentication is counted, per client IP and per
username, *before* the password is checked, with one atomic increment in the cache; an
attempt that makes either count over the last `WINDOW_S` seconds exceed `MAX_FAILURES` is
refused with 429, `Retry-After` and the login form saying "Too many failed login attempts;
try again in N s", without the password being checked. Counting first and atomically is what
makes the limit hold under parallel attempts: of any number of simultaneous guesses at most
`MAX_FAILURES` are checked.

The count over the last `WINDOW_S` seconds slides: attempts are counted per window of
`WINDOW_S` seconds (aligned to the epoch), and the count of the previous window is added in
proportion to the part of it still within the last `WINDOW_S` seconds. With counts that
simply started from zero in each window, a burst of guesses across a window's end had the
limit checked twice over, once on each side. N is when the next attempt would be allowed
if no other came. A successful login clears the counts of its IP and its username. A form
without username or password does not count. Counts live in Django's default cache: Redis when `REDIS_URL` is
set, shared by every runproxy process (`director_site.environment.caches`), else each
process counts on its own; both increment atomically.

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
    """Attempt counts per key and fixed time window in a cache."""

    def __init__(self, limit: int = MAX_FAILURES, window: float = WINDOW_S, *, clock=time.time, store=None):
        self.limit, self.window, self.clock = limit, window, clock
        self.store = store if store is not None else cache

    @staticmethod
    def keys(ip: str, username: str) -> list[str]:
        """Cache keys of one IP and one username (hashed: any text makes a valid key)."""
        def key(kind, value):
            return CACHE_PREFIX + kind + ":" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
        return [key("ip", ip), key("user", username.casefold())]

    def _window(self, now: float) -> tuple[int, float]:
        """(number of the counting window holding `now`, seconds of it gone by)."""
        number = math.floor(now / self.window)
        return number, now - number * self.window

    def _count(self, key: str) -> int:
        """Add one to `key`'s count atomically; the new count. A count is read for two
        windows: as the current one, then as the previous one."""
        for _ in range(2):  # the entry may expire between add and incr: add it again
            self.store.add(key, 0, timeout=2 * math.ceil(self.window) + 1)
            try:
                return self.store.incr(key)
            except ValueError:
                continue
        return 1

    def _sliding(self, current: int, previous: int, elapsed: float) -> float:
        """The count over the last `window` seconds: this window's, and the previous one's
        share of that span."""
        return current + previous * (self.window - elapsed) / self.window

    def _wait(self, current: int, previous: int, elapsed: float) -> float:
        """Seconds until one more attempt keeps the sliding count within the limit, if no
        other attempt comes meanwhile."""
        following = current + 1
        if self._sliding(following, previous, elapsed) <= self.limit:
            return 0.0
        # (written so that whole counts give whole seconds: no float rounding up by one)
        if following <= self.limit:  # in this window, once the previous one's share is small enough
            return self.window * (previous - (self.limit - following)) / previous - elapsed
        # in the next window, where this window's count is the previous one
        return self.window - elapsed + self.window * (current - (self.limit - 1)) / current

    @_unless_the_store_fails(0)
    def attempt(self, ip: str, username: str) -> int:
        """Count an attempt for (ip, username): seconds to wait if it is one too many, else 0."""
        number, elapsed = self._window(self.clock())
        refused, wait = False, 0.0
        for key in self.keys(ip, username):
            current = self._count(f"{key}:{number}")
            previous = self.store.get(f"{key}:{number - 1}", 0)
            refused |= self._sliding(current, previous, elapsed) > self.limit
            wait = max(wait, self._wait(current, previous, elapsed))
        return max(1, math.ceil(wait)) if refused else 0

    @_unless_the_store_fails(None)
    def succeeded(self, ip: str, username: str) -> None:
        number, _ = self._window(self.clock())
        self.store.delete_many([f"{key}:{n}" for key in self.keys(ip, username) for n in (number, number - 1)])


THROTTLE = LoginThrottle()


def client_ip(request) -> str:
    return request.META.get("REMOTE_ADDR") or "unknown"


class ThrottledAdminAuthenticationForm(AdminAuthenticationForm):
    """The admin login form; counts every attempt and refuses those over the limit before authenticating."""

    throttle = THROTTLE

    def clean(self):
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is None or password is None:
            return super().clean()  # a field error already; nothing is authenticated
        ip = client_ip(self.request)
        wait = self.throttle.attempt(ip, username)  # counted before the password is looked at
        if wait:
            setattr(self.request, BLOCKED_ATTRIBUTE, wait)
            raise ValidationError(TOO_MANY_MESSAGE, code="throttled", params={"seconds": wait})
        cleaned = super().clean()
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
