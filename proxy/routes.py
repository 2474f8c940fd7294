"""Routes (SPEC §3, §7.1): first match by host and path prefix decides the action."""
from __future__ import annotations

from dataclasses import dataclass, field

from proxy.addresses import BackendAddress


@dataclass(frozen=True, slots=True)
class Route:
    """One `[[routes]]` entry. Exactly one of `director`, `target` is set."""

    host: bytes | None  # lower-case, no port; None = any host
    path: bytes  # raw prefix, matched against the raw path, never stripped
    director: str | None = None  # pass = NAME
    backend_from: tuple[str, bytes] | None = None  # ("cookie"|"header", lower-case name)
    target: BackendAddress | None = None  # road warrior http / fcgi
    document_root: str | None = None
    script_filename: str | None = None
    bucket: str | None = None  # with pass: the director's bucket (proxy.buckets)
    bucket_from: tuple[str, bytes] | None = None  # ("cookie"|"header", lower-case name) naming the bucket
    index: int = field(default=0, compare=False)

    def matches(self, host: bytes, path: bytes) -> bool:
        return (self.host is None or self.host == host) and path.startswith(self.path)


def host_without_port(host: bytes) -> bytes:
    """`Example.com:8080` → `example.com`; `[::1]:80` → `[::1]`."""
    if host.startswith(b"["):
        end = host.find(b"]")
        return host[: end + 1].lower() if end > 0 else host.lower()
    return host.split(b":", 1)[0].lower()


def find_route(routes: tuple[Route, ...], host: bytes, path: bytes) -> Route | None:
    host = host_without_port(host)
    for route in routes:
        if route.matches(host, path):
            return route
    return None
