"""Parsing of backend URLs (SPEC §4), road-warrior targets and listen addresses (SPEC §2).

Every parser raises ValueError with a message that names the offending text.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

PROTOCOLS = {"http": "http", "https": "http", "http+unix": "http", "fastcgi": "fastcgi", "fastcgi+unix": "fastcgi"}
TLS_SCHEMES = frozenset({"https"})
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


@dataclass(frozen=True, slots=True)
class BackendTLS:
    """How an `https://` backend is spoken to (SPEC §12): part of the address, so two
    backends that differ only here never share a connection pool."""

    verify: bool = True
    ca_file: str = ""  # PEM file of trusted CAs; empty: the system store
    server_name: str = ""  # SNI and the name to verify; empty: the URL's host


@dataclass(frozen=True, slots=True)
class BackendAddress:
    """Where a backend listens: TCP host+port, or a UNIX socket path; `tls` for https."""

    protocol: str  # "http" | "fastcgi"
    host: str | None = None  # IP literal (no brackets) or host name
    port: int | None = None
    path: str | None = None  # absolute UNIX socket path
    tls: BackendTLS | None = None  # None: plain TCP

    def with_tls(self, verify: bool = True, ca_file: str = "", server_name: str = "") -> "BackendAddress":
        """This address with these TLS settings; a plain address is returned unchanged."""
        if self.tls is None:
            return self
        tls = BackendTLS(verify, ca_file or "", server_name or "")
        return self if tls == self.tls else replace(self, tls=tls)

    @property
    def url(self) -> str:
        if self.path is not None:
            return f"{self.protocol}+unix://{self.path}"
        scheme = "https" if self.tls is not None else self.protocol
        return f"{scheme}://{format_host(self.host)}:{self.port}"

    def __str__(self) -> str:
        return self.url


def format_host(host: str | None) -> str:
    """Host for use in `host:port`: IPv6 literals get brackets."""
    if host and ":" in host:
        return f"[{host}]"
    return host or ""


def _host_port(text: str, what: str) -> tuple[str, int]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1:end + 2] != ":":
            raise ValueError(f"{what}: expected [IPv6]:PORT in {text!r}")
        host, port_text = text[1:end], text[end + 2:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{what}: {host!r} is not an IPv6 address in {text!r}") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{what}: expected HOST:PORT in {text!r}")
        if ":" in host:
            raise ValueError(f"{what}: IPv6 addresses need brackets, [V6]:PORT, in {text!r}")
        if not _is_ipv4(host) and not _HOSTNAME.match(host):
            raise ValueError(f"{what}: {host!r} is not a valid host in {text!r}")
    if not port_text.isdigit():
        raise ValueError(f"{what}: port {port_text!r} is not a number in {text!r}")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"{what}: port {port} out of range 1-65535 in {text!r}")
    return host, port


def parse_host(host: str, what: str) -> str:
    """A host name, IPv4 or IPv6 literal (no brackets, no port); ValueError naming `what`."""
    if _is_ipv4(host) or _HOSTNAME.match(host):
        return host
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise ValueError(f"{what}: not a host name or IP address") from None
    return host


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        return False


def parse_backend_url(url: str) -> BackendAddress:
    """`http://H:P`, `http://[V6]:P`, `http+unix:///abs.sock`, the `fastcgi` forms, and
    `https://H:P`, `https://[V6]:P` (HTTP over TLS with default settings: see `with_tls`)."""
    if not isinstance(url, str):
        raise ValueError(f"backend URL must be a string, not {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in PROTOCOLS:
        raise ValueError(
            f"backend URL {url!r}: scheme must be one of http, https, http+unix, fastcgi, fastcgi+unix"
        )
    protocol = PROTOCOLS[scheme]
    if scheme.endswith("+unix"):
        if not rest.startswith("/") or len(rest) < 2 or "\x00" in rest:
            raise ValueError(f"backend URL {url!r}: expected an absolute socket path after {scheme}://")
        return BackendAddress(protocol, path=rest)
    rest = rest.rstrip("/")
    if "/" in rest or "?" in rest or "@" in rest:
        raise ValueError(f"backend URL {url!r}: only {scheme}://HOST:PORT is allowed (no path, query or user)")
    host, port = _host_port(rest, f"backend URL {url!r}")
    return BackendAddress(protocol, host=host, port=port, tls=BackendTLS() if scheme in TLS_SCHEMES else None)


def backend_address(url: str, tls_verify: bool = True, tls_ca_file: str = "", tls_server_name: str = "") -> BackendAddress:
    """The address of a backend from its stored fields (url and the TLS fields)."""
    return parse_backend_url(url).with_tls(tls_verify, tls_ca_file, tls_server_name)


def parse_target(text: str, protocol: str) -> BackendAddress:
    """Road-warrior target: `HOST:PORT`, `[V6]:PORT`, `unix:/abs/path` (or a full backend URL)."""
    if not isinstance(text, str):
        raise ValueError(f"target must be a string, not {type(text).__name__}")
    if "://" in text:
        address = parse_backend_url(text)
        if address.protocol != protocol:
            raise ValueError(f"target {text!r}: expected a {protocol} URL")
        return address
    if text.startswith("unix:"):
        path = text[5:]
        if not path.startswith("/"):
            raise ValueError(f"target {text!r}: expected unix:/absolute/path")
        return BackendAddress(protocol, path=path)
    host, port = _host_port(text, f"target {text!r}")
    return BackendAddress(protocol, host=host, port=port)


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """A listener: TCP host+port (host an IP literal) or a UNIX socket path; `tls` for
    `tls://HOST:PORT` (SPEC §12: TLS with the `[proxy] tls_certificates`)."""

    host: str | None = None
    port: int | None = None
    path: str | None = None
    tls: bool = False

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        return f"{'tls://' if self.tls else ''}{format_host(self.host)}:{self.port}"


def parse_listen(text: str) -> ListenAddress:
    """`HOST:PORT` (IPv4 literal or localhost), `[V6]:PORT`, `unix:/path`, or a TCP form
    after `tls://`."""
    if not isinstance(text, str):
        raise ValueError(f"listen address must be a string, not {type(text).__name__}")
    if text.startswith("tls://"):
        plain = parse_listen(text[6:])
        if plain.path is not None or plain.tls:
            raise ValueError(f"listen address {text!r}: expected tls://HOST:PORT or tls://[V6]:PORT")
        return replace(plain, tls=True)
    if text.startswith("unix:"):
        path = text[5:]
        if not path.startswith("/"):
            raise ValueError(f"listen address {text!r}: expected unix:/absolute/path")
        return ListenAddress(path=path)
    host, port = _host_port(text, f"listen address {text!r}")
    if host == "localhost":
        host = "127.0.0.1"
    if ":" not in host and not _is_ipv4(host):
        raise ValueError(f"listen address {text!r}: host must be an IP address")
    return ListenAddress(host=host, port=port)
