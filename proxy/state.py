"""The data plane's view of configuration: directors, backends, routes, upstream clients.

`DataPlane.apply_rows()` reconciles configuration rows (read off the event loop by the
config source balancer hands the data plane: `proxy.config_source`)
into the long-lived runtime objects and swaps the lookup tables in single assignments, so a
request always sees one consistent view. Routes come from the database too (the config
file's are stored there by the config sync), so a route change reaches every process with
the version. Upstream clients (and their keep-alive pools) are shared per address and
survive reloads.
"""
from __future__ import annotations

import logging
from typing import Any, NamedTuple

from proxy.addresses import BackendAddress, backend_address, parse_target
from proxy.director import DirectorRuntime
from proxy.routes import Route
from proxy.runtime import NOT_LOADED, BackendRuntime, DirectorSettings
from proxy.upstream import Timeouts, Upstream, make_upstream
from proxy.upstream.fastcgi import FastCGIUpstream

log = logging.getLogger("director.proxy")

# SPEC §15 settings, taken as they are (a snapshot written before they existed has defaults)
LATER_FEATURES = (
    "cache_enabled", "cache_deliver_active", "cache_deliver_shadow", "cache_default_ttl", "cache_key",
    "cache_max_size", "allow_x_sendfile", "x_sendfile_root", "sticky_cookie", "slow_start",
)
DIRECTOR_FIELDS = (
    "id", "name", "dynamic", "enabled", "scheduler", "queue_limit", "queue_timeout", "retry_after",
    "max_retry_count", "passive_failure_threshold", "connect_timeout", "read_timeout", "write_timeout", "on_client_abort",
    "enqueue_on_unavailable",
    *LATER_FEATURES,
    # not used on the request path: they let a health monitor start from a snapshot
    "health_check_host_header", "health_check_request_path", "health_check_fcgi_script_filename",
    "health_check_success_threshold", "health_check_failure_threshold", "health_check_expected_status",
)
BACKEND_FIELDS = (
    "id", "director_id", "name", "url", "role", "capacity", "enabled", "terminating", "position",
    "health_state", "health_changed_at", "health_check_mode", "health_check_interval",
    "tls_verify", "tls_ca_file", "tls_server_name",
)

BUCKET_FIELDS = ("id", "director_id", "name", "parent", "rate", "ceil")  # a director row's "buckets"

ROUTE_FIELDS = ("id", "host", "path", "director", "backend_from", "http", "fcgi", "document_root", "script_filename",
                "bucket", "bucket_from")


class ConfigRows(NamedTuple):
    """One consistent read of the configuration; `DataPlane.apply_rows(*rows)` takes it."""

    version: int
    directors: list[dict]  # each with "buckets": its BUCKET_FIELDS rows
    backends: list[dict]
    routes: list[dict]  # in match order


def settings_from_row(row: dict) -> DirectorSettings:
    return DirectorSettings(
        enabled=row["enabled"],
        scheduler=row["scheduler"],
        queue_limit=row["queue_limit"],
        queue_timeout=float(row["queue_timeout"]),
        retry_after=float(row["retry_after"]),
        max_retry_count=row["max_retry_count"],
        passive_failure_threshold=row["passive_failure_threshold"],
        timeouts=Timeouts(float(row["connect_timeout"]), float(row["read_timeout"]), float(row["write_timeout"])),
        on_client_abort=row["on_client_abort"],
        enqueue_on_unavailable=row["enqueue_on_unavailable"],
        **{name: row[name] for name in LATER_FEATURES if name in row},
    )


def route_from_row(row: dict, index: int) -> Route:
    """A Route from a route row (`balancer.models.Route` values: "" where nothing is set).
    ValueError when a stored value cannot be used (the services never store one)."""
    host = row["host"] if row["host"] not in ("", "*") else None
    target = None
    if row["http"]:
        target = parse_target(row["http"], "http")
    elif row["fcgi"]:
        target = parse_target(row["fcgi"], "fastcgi")
    elif not row["director"]:
        raise ValueError("route has no action")
    backend_from = _client_source(row["backend_from"])
    return Route(
        host=host.lower().encode("idna") if host else None,
        path=(row["path"] or "/").encode("utf-8"),
        director=row["director"] or None,
        backend_from=backend_from,
        target=target,
        document_root=row["document_root"] or None,
        script_filename=row["script_filename"] or None,
        bucket=row.get("bucket") or None,  # rows of a snapshot from before buckets have none
        bucket_from=_client_source(row.get("bucket_from")),
        index=index,
    )


def _client_source(text: str | None) -> tuple[str, bytes] | None:
    """`"cookie:NAME"` / `"header:NAME"` -> (kind, lower-case name); None for ""."""
    if not text:
        return None
    kind, _, name = text.partition(":")
    return kind, name.lower().encode("latin-1")


def routes_from_rows(rows: list[dict]) -> tuple[Route, ...]:
    """Routes in the rows' order; a row that cannot be used is logged and left out, so one
    bad row never stops the rest of the configuration from loading."""
    routes: list[Route] = []
    for row in rows:
        try:
            routes.append(route_from_row(row, len(routes)))
        except (ValueError, UnicodeError) as exc:
            log.error("route %s left out: %s", row.get("id"), exc)
    return tuple(routes)


class DataPlane:
    """Everything the request path reads. Mutated only on the event loop."""

    def __init__(self, node_slots=None, upstream_factory=make_upstream):
        """`node_slots`: a proxy.node_slots.NodeSlots under --workers (limits per node);
        `upstream_factory(address)`: the client of one backend address (tests give fakes)."""
        self.node_slots = node_slots
        self._make_upstream = upstream_factory
        self.version = -1
        self.directors: dict[str, DirectorRuntime] = {}
        self._directors_by_id: dict[int, DirectorRuntime] = {}
        self.backends: dict[int, BackendRuntime] = {}
        self._upstreams: dict[BackendAddress, Upstream] = {}
        self.routes: tuple[Route, ...] = ()
        self.road_warriors: dict[BackendAddress, Upstream] = {}
        self._rows = ConfigRows(self.version, [], [], [])
        self._backend_rows: dict[int, dict] = {}
        self.rows_changed = False
        self._counted_upstreams: list[FastCGIUpstream] = []  # connections counted in the node

    def wake_waiters(self) -> None:
        """Another worker freed a slot or needs a php-fpm child (proxy.node_wake): queued
        requests look again, and idle FastCGI connections beyond the node's budget close."""
        for director in self.directors.values():
            if director.queue:
                director.dispatch_waiters()
        for upstream in self._counted_upstreams:
            upstream.trim_idle()

    def upstream_for(self, address: BackendAddress) -> Upstream:
        upstream = self._upstreams.get(address)
        if upstream is None:
            upstream = self._upstreams[address] = self._make_upstream(address)
        return upstream

    @property
    def rows(self) -> ConfigRows:
        """The rows last applied, with health changes applied since."""
        return self._rows

    def applied_rows(self) -> ConfigRows:
        """`rows`, for a snapshot: clears `rows_changed`."""
        self.rows_changed = False
        return self._rows

    def apply_rows(self, version: int, director_rows: list[dict], backend_rows: list[dict],
                   route_rows: list[dict]) -> None:
        """Reconcile database rows (a ConfigRows) into runtime objects and swap the lookup tables."""
        self._rows = ConfigRows(version, director_rows, backend_rows, route_rows)
        self._backend_rows = {row["id"]: row for row in backend_rows}
        self.rows_changed = True
        by_id: dict[int, DirectorRuntime] = {}
        for row in director_rows:
            director = self._directors_by_id.get(row["id"])
            if director is None:
                director = DirectorRuntime(row["id"], row["name"])
                director.node = self.node_slots
            director.dynamic = row["dynamic"]
            by_id[row["id"]] = director
        members: dict[int, list[BackendRuntime]] = {d: [] for d in by_id}
        backends: dict[int, BackendRuntime] = {}
        for row in backend_rows:
            director = by_id.get(row["director_id"])
            if director is None:
                continue
            backend = self.backends.get(row["id"])
            if backend is None:
                address = row_address(row)
                backend = BackendRuntime(row["id"], row["name"], director, address, self.upstream_for(address))
            elif backend.address.tls is not None:  # TLS fields may change: another client and pool
                address = row_address(row)
                if address != backend.address:
                    backend.address, backend.upstream = address, self.upstream_for(address)
            self._update_backend(backend, row)
            backends[row["id"]] = backend
            members[row["director_id"]].append(backend)
        for row in director_rows:
            by_id[row["id"]].set_buckets(row.get("buckets") or [])  # BUCKET_FIELDS rows (proxy.buckets)
            by_id[row["id"]].rebuild(settings_from_row(row), members[row["id"]])
        _name_upstreams(backends.values())
        self._count_connections(backends.values())
        routes = routes_from_rows(route_rows)
        # Road-warrior upstreams first: a request that finds a new route finds its upstream.
        self.road_warriors = {r.target: self.upstream_for(r.target) for r in routes if r.target is not None}
        self._directors_by_id = by_id
        self.directors = {d.name: d for d in by_id.values()}
        self.backends = backends
        self.routes = routes
        self.version = version
        self._close_unused_upstreams()

    @staticmethod
    def _update_backend(backend: BackendRuntime, row: dict) -> None:
        backend.name = row["name"]
        backend.role = row["role"]
        backend.capacity = row["capacity"]
        backend.enabled = row["enabled"]
        backend.terminating = row["terminating"]
        backend.position = row["position"]
        if backend.health_stamp is NOT_LOADED or newer_health(row["health_changed_at"], backend.health_stamp):
            # Only a state the database changed since we last looked wins over a local
            # passive mark that the monitor has not persisted yet.
            backend.health_stamp = row["health_changed_at"]
            backend.health = row["health_state"]

    def _count_connections(self, backends) -> None:
        """Under --workers, a FastCGI backend's open connections count in the node, within
        its capacity (php-fpm's children: proxy.upstream.connection_budget). An address
        shared by backends gets the largest capacity, none when one of them has none."""
        node = self.node_slots
        if node is None or node.doorbells is None:
            return
        limits: dict[FastCGIUpstream, int] = {}
        for backend in backends:
            upstream = backend.upstream
            if isinstance(upstream, FastCGIUpstream):
                known = limits.get(upstream)
                limits[upstream] = 0 if known == 0 or not backend.capacity else max(known or 0, backend.capacity)
        for upstream, limit in limits.items():
            upstream.count_connections(node, limit)
        self._counted_upstreams = list(limits)

    def _close_unused_upstreams(self) -> None:
        used = {b.address for b in self.backends.values()} | set(self.road_warriors)
        for address in [a for a in self._upstreams if a not in used]:
            upstream = self._upstreams.pop(address)
            _close_later(upstream)

    def apply_health(self, backend_id: int, state: str, error: str = "", changed_at=None, *,
                     force: bool = False) -> None:
        """A health transition decided by the monitor (this or another process). With the
        stored `changed_at`, news older than what this process already applied is ignored
        (pushes and polls may arrive in any order); `force` applies it anyway (see
        proxy.health_follow: a passive mark that no news confirmed)."""
        backend = self.backends.get(backend_id)
        if backend is None or backend.pool is None:
            return
        if changed_at is not None:
            if not (force or newer_health(changed_at, backend.health_stamp)):
                return
            backend.health_stamp = changed_at
        backend.director.set_health(backend, state)
        row = self._backend_rows.get(backend_id)
        if row is not None and row["health_state"] != state:
            row["health_state"] = state
            if changed_at is not None:
                row["health_changed_at"] = changed_at
            self.rows_changed = True

    def director_by_id(self, director_id: int) -> DirectorRuntime | None:
        return self._directors_by_id.get(director_id)

    async def close(self) -> None:
        for upstream in list(self._upstreams.values()):
            await upstream.close()


def row_address(row: dict) -> BackendAddress:
    """A backend row's address (rows of a snapshot written before TLS fields get defaults)."""
    return backend_address(row["url"], row.get("tls_verify", True), row.get("tls_ca_file", ""),
                           row.get("tls_server_name", ""))


def _name_upstreams(backends) -> None:
    """FastCGI stderr lines name the backends behind the client that received them: every
    backend sharing the address, not only the first one seen."""
    labels: dict[Any, list[str]] = {}  # FastCGI clients, by identity
    for backend in backends:
        if hasattr(backend.upstream, "log_context"):
            labels.setdefault(backend.upstream, []).append(f"director {backend.director.name} backend {backend.name}")
    for upstream, names in labels.items():
        upstream.log_context = ", ".join(sorted(names))


def newer_health(stamp, than) -> bool:
    """True when stored health stamp `stamp` is later than `than` (None: never changed)."""
    return stamp is not None and (than is None or than is NOT_LOADED or stamp > than)


def _close_later(upstream: Upstream) -> None:
    import asyncio

    try:
        asyncio.get_running_loop().create_task(upstream.close())
    except RuntimeError:
        pass
