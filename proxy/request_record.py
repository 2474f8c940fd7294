"""One record per traffic request, filled as the request goes through the data plane, read
by the request metrics and the access log once it is finished (SPEC §12, §13).

`proxy.server_protocol.TrafficRequest` makes it (start time, the client's X-Request-ID) and
puts it in `scope["extensions"]["director"]["record"]`; `proxy.app` and `proxy.dispatch` fill
in the request id, director, backend, attempts and upstream time; the server finishes it
(status, body bytes each way) when the response is finished or the client is lost, then
hands it to the application's `request_done`. Plain attributes only: it is on the hot path.
"""
from __future__ import annotations

import os
import re
from time import monotonic
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.addresses import BackendAddress
    from proxy.buckets import Bucket
    from proxy.director import DirectorRuntime
    from proxy.runtime import BackendRuntime

CLIENT_GONE = 499  # nginx's status for a client that left before the response started

# SPEC §12: a client's X-Request-ID is kept (from a trusted proxy) when it is 1-200 visible
# ASCII characters.
VALID_REQUEST_ID = re.compile(rb"[\x21-\x7e]{1,200}")
_IDS_PER_DRAW = 128
_random_hex = b""
_random_pos = 0


def new_request_id() -> bytes:
    """A random 128-bit id in hex (32 characters). Random bytes are drawn for 128 ids at a
    time: one getrandom() call instead of one per request."""
    global _random_hex, _random_pos
    pos = _random_pos
    if pos >= len(_random_hex):
        _random_hex, pos = os.urandom(16 * _IDS_PER_DRAW).hex().encode("ascii"), 0
    _random_pos = pos + 32
    return _random_hex[pos:pos + 32]


def _forget_drawn_ids() -> None:
    """A forked child must not hand out the ids its parent will."""
    global _random_hex, _random_pos
    _random_hex, _random_pos = b"", 0


os.register_at_fork(after_in_child=_forget_drawn_ids)


def choose_request_id(client_value: bytes | None, trusted: bool) -> bytes:
    """The client's id when it comes from a trusted proxy and is valid, else a new one."""
    if trusted and client_value is not None and VALID_REQUEST_ID.fullmatch(client_value):
        return client_value
    return new_request_id()


class RequestRecord:
    """What one request did. Times are `time.monotonic()` seconds; `upstream_time` is the
    seconds from sending the request to the chosen backend until its response (head and
    first body bytes) was ready, None when no backend answered."""

    __slots__ = (
        "scope", "started", "request_id", "director", "backend", "upstream_name",
        "attempts", "upstream_time", "status", "bytes_received", "bytes_sent", "duration", "done", "bucket",
    )

    def __init__(self, scope: dict | None, started: float | None = None):
        self.scope = scope
        self.started = monotonic() if started is None else started
        self.request_id: bytes | None = None
        self.director: DirectorRuntime | None = None  # of a `pass` route
        self.backend: BackendRuntime | None = None  # that answered (or was tried last)
        self.upstream_name: BackendAddress | None = None  # road warrior: the address it went to
        self.attempts = 0
        self.upstream_time: float | None = None
        self.done = False
        self.bucket: Bucket | None = None  # of a director with buckets
        # status, bytes_received, bytes_sent and duration are set by finish()

    def ensure_request_id(self) -> bytes:
        """The request id, a new one if nothing chose it yet (server-side refusals)."""
        rid = self.request_id
        if rid is None:
            rid = self.request_id = new_request_id()
        return rid

    def finish(self, status: int, bytes_received: int, bytes_sent: int) -> bool:
        """Stamp the outcome once; False when it was finished already."""
        if self.done:
            return False
        self.done = True
        self.status = status
        self.bytes_received = bytes_received
        self.bytes_sent = bytes_sent
        self.duration = monotonic() - self.started
        return True

    @property
    def director_name(self) -> str | None:
        director = self.director
        return director.name if director is not None else None

    @property
    def backend_name(self) -> str | None:
        backend = self.backend
        if backend is not None:
            return backend.name
        return str(self.upstream_name) if self.upstream_name is not None else None
