"""Sticky sessions by cookie (SPEC §15 `sticky_cookie`), like HAProxy's `cookie NAME insert`.

A request whose cookie names a backend of the director goes to that backend while it can
serve (online, enabled, its role in use): it waits in the director's queue for that backend's
slot when the backend is full, and is refused only as any queued request is (queue limit,
queue timeout). Otherwise it is balanced as usual. A response from a backend other than the
one the cookie named (or to a request without the cookie) carries
`Set-Cookie: NAME=<backend>; Path=/; HttpOnly`, so the client sticks to it from then on.
The director's own answers (503, 502, 504) set no cookie.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.headers import cookie_value
from proxy.responses import with_header
from proxy.runtime import BackendRuntime, DirectorSettings

if TYPE_CHECKING:
    from proxy.director import DirectorRuntime

class StickyCookie:
    """A director's sticky cookie: its name and the Set-Cookie value for each backend."""

    __slots__ = ("name", "_key")

    def __init__(self, name: str):
        self.name = name
        self._key = name.encode("ascii")

    def session(self, headers) -> StickySession:
        """This request's side of it: the backend name its Cookie header carries, if any."""
        return StickySession(self, cookie_value(headers, self._key))

    def set_cookie(self, backend: BackendRuntime) -> tuple[bytes, bytes]:
        return b"set-cookie", b"%s=%s; Path=/; HttpOnly" % (self._key, backend.name.encode("ascii"))


class StickySession:
    """One request of a director with a sticky cookie."""

    __slots__ = ("cookie", "wanted")

    def __init__(self, cookie: StickyCookie, wanted: bytes | None):
        self.cookie = cookie
        self.wanted = wanted  # the cookie's value: a backend name, or None

    def preferred(self, director: DirectorRuntime) -> BackendRuntime | None:
        """The backend the cookie names, when the director has it (it may be unable to serve)."""
        if self.wanted is None:
            return None
        return director.by_name.get(self.wanted.decode("latin-1"))

    def sender(self, backend: BackendRuntime, send):
        """`send` for the response `backend` gives: it adds Set-Cookie unless the request's
        cookie already names `backend`."""
        if self.wanted is not None and self.wanted == backend.name.encode("ascii"):
            return send
        return with_header(send, self.cookie.set_cookie(backend))


def sticky_cookie(settings: DirectorSettings, previous: StickyCookie | None) -> StickyCookie | None:
    """The director's StickyCookie, None when `sticky_cookie` is empty (`previous` is kept
    while the name stays the same)."""
    name = settings.sticky_cookie
    if not name:
        return None
    if previous is not None and previous.name == name:
        return previous
    return StickyCookie(name)
