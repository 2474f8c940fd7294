"""What the data plane needs from the control plane, as an interface (DESIGN "The data plane
does not import the control plane").

`balancer.dataplane_source.DatabaseConfigSource` implements it over Django's ORM and hands it
to `proxy.service.ProxyService` at start; tests hand in fakes. Every method blocks: the data
plane calls them in one thread of their own (proxy.one_thread), never on the event loop, so
that what a call keeps per thread (a database connection) serves the next one.
"""
from __future__ import annotations

from datetime import datetime
from typing import Protocol

from proxy.state import ConfigRows


class ConfigSource(Protocol):
    def read_version(self) -> int:
        """The current config version (bumped by every configuration change)."""

    def read_rows(self) -> ConfigRows:
        """One consistent read of directors, backends and routes (shapes: proxy.state)."""

    def read_health(self, since: datetime, ids: list[int]) -> list[dict]:
        """Health rows (`HEALTH_FIELDS` of proxy.health_follow) stamped after `since`, plus
        those of `ids`."""

    def remove_backend(self, backend_id: int) -> None:
        """Remove a drained backend (terminating, no request in flight anywhere)."""

    def reaps_drained(self) -> bool:
        """Whether this process removes drained backends (one process per node does)."""

    def in_flight_elsewhere(self, backend_id: int) -> int:
        """Requests on the backend in this node's other processes (`--workers`)."""

    def close(self) -> None:
        """Let go of what the calls kept (the database connection): the data plane stops."""
