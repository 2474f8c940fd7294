"""Live data-plane objects: one per backend and per director, kept across snapshot swaps.

Configuration fields are refreshed in place on every reload; counters (load, totals,
failures, dropped) live here and survive reloads. Nothing here touches the ORM.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from proxy.addresses import BackendAddress
from proxy.request_metrics import Traffic
from proxy.upstream import Timeouts, Upstream

if TYPE_CHECKING:
    from proxy.scheduler import RolePool


class Counter:
    """current / max / total, as in x0's JSON and SPEC §9 stats."""

    __slots__ = ("current", "max", "total")

    def __init__(self):
        self.current = 0
        self.max = 0
        self.total = 0

    def increment(self) -> None:
        self.current += 1
        self.total += 1
        if self.current > self.max:
            self.max = self.current

    def decrement(self) -> None:
        self.current -= 1

    def turn_over(self) -> None:
        """One left and another came in its place: only the total moves."""
        self.total += 1

    def as_dict(self) -> dict:
        return {"current": self.current, "max": self.max, "total": self.total}


@dataclass(frozen=True, slots=True)
class DirectorSettings:
    """The SPEC §5 settings the data plane uses, immutable per snapshot."""

    enabled: bool = True
    scheduler: str = "rr"
    queue_limit: int = 128
    queue_timeout: float = 60.0
    retry_after: float = 10.0
    max_retry_count: int = 6
    passive_failure_threshold: int = 1  # consecutive failed live requests before offline
    timeouts: Timeouts = Timeouts()
    on_client_abort: str = "close"
    enqueue_on_unavailable: bool = False
    # SPEC §15
    cache_enabled: bool = False
    cache_deliver_active: bool = True
    cache_deliver_shadow: bool = True
    cache_default_ttl: float = 20.0
    cache_key: str = "%h#%r#%q"
    cache_max_size: int = 64 * 1024 * 1024
    allow_x_sendfile: bool = False
    x_sendfile_root: str = ""
    sticky_cookie: str = ""
    slow_start: float = 0.0

    @property
    def retry_after_header(self) -> list[tuple[bytes, bytes]]:
        if not self.retry_after:
            return []
        value = self.retry_after
        text = str(int(value)) if float(value).is_integer() else str(int(value) + 1)
        return [(b"retry-after", text.encode())]


NOT_LOADED = object()  # BackendRuntime.health_stamp before any row was applied


class BackendRuntime:
    """One backend of one director as the data plane sees it."""

    __slots__ = (
        "id", "name", "director", "address", "upstream", "role", "capacity", "enabled",
        "health", "health_stamp", "terminating", "position", "index", "pool",
        "load", "load_counter", "failures", "failure_streak", "status_counts", "traffic",
        "ramp_start", "ramp_end",
    )

    def __init__(self, backend_id: int, name: str, director, address: BackendAddress, upstream: Upstream):
        self.id = backend_id
        self.name = name
        self.director = director
        self.address = address
        self.upstream = upstream
        self.role = "active"
        self.capacity = 0
        self.enabled = True
        self.health = "undefined"
        self.health_stamp = NOT_LOADED  # a new backend takes the state of its first row
        self.terminating = False
        self.position = 0
        self.index = 0  # slot in its RolePool, set by the pool
        self.pool: RolePool | None = None  # the RolePool holding it, None once removed
        self.load = 0
        self.load_counter = Counter()
        self.failures = 0
        self.failure_streak = 0  # failed live requests since the last success or health change
        self.status_counts = [0, 0, 0, 0, 0, 0]  # index = status // 100 (0 = failures)
        self.traffic = Traffic()  # durations, upstream times and bytes of the requests it answered
        self.ramp_start = 0.0  # slow start (proxy.slow_start): monotonic seconds; ramp_end 0.0 = no ramp
        self.ramp_end = 0.0

    @property
    def available(self) -> bool:
        return self.enabled and self.health == "online" and not self.terminating

    def __repr__(self) -> str:
        return f"<backend {self.director.name}/{self.name} {self.health}>"

    def stats(self) -> dict:
        return {"load": self.load_counter.as_dict(), "failures": self.failures}

