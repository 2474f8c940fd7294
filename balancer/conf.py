"""Proxy-level settings (SPEC §3 `[proxy]`) read through one object, like DRF's api_settings.

Precedence, lowest first: DEFAULTS, the Django setting `DIRECTOR` (a dict), the config file's
`[proxy]` table, command-line flags. Unknown keys are errors everywhere. `ProxySettings` is
the parsed, frozen result runproxy works with.
"""
from __future__ import annotations

import ipaddress
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Callable

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from proxy.addresses import ListenAddress, parse_listen
from proxy.tls import CertificateFiles, CertificateSet, load_certificates

from .admin_hosts import parse_admin_hosts
from .validation import parse_size

DEFAULTS: dict[str, Any] = {
    "listen": ["127.0.0.1:8080"],
    "admin_listen": "127.0.0.1:8081",
    "pseudonym": "director",
    "trusted_proxies": [],
    "max_request_body": "64MiB",
    "header_timeout": 10,
    "workers": 1,
    "health_monitor": True,
    "shutdown_timeout": 30,
    "websocket_idle_timeout": 3600,
    "websocket_max_message": "16MiB",
    "tls_certificates": [],
    "admin_hosts": None,  # None: the admin listen address, localhost and 127.0.0.1
    "access_log": "",
    "access_log_format": "combined",
}
ACCESS_LOG_FORMATS = ("combined", "json")

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")


def _parse_listen_list(value: Any) -> tuple[ListenAddress, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError("must be a non-empty list of addresses like \"127.0.0.1:8080\"")
    addresses = tuple(parse_listen(item) for item in value)
    seen: set = set()
    for address in addresses:
        where = address.path or (address.host, address.port)
        if where in seen:
            raise ValueError(f"{address} is listed twice (plain and tls:// cannot share a port)")
        seen.add(where)
    return addresses


def _parse_tls_certificates(value: Any) -> tuple[CertificateFiles, ...]:
    """Every entry is read and checked now (files readable, PEM, key matching the
    certificate), so checkconfig and a reload report a bad one before anything changes."""
    if not isinstance(value, (list, tuple)):
        raise ValueError('must be a list of tables like { cert = "PATH", key = "PATH" }')
    entries = []
    for index, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != {"cert", "key"}:
            raise ValueError(f'[{index}]: must be a table with exactly cert = "PATH" and key = "PATH"')
        for name in ("cert", "key"):
            if not isinstance(item[name], str) or not item[name]:
                raise ValueError(f"[{index}].{name}: must be a file path")
        entries.append(CertificateFiles(item["cert"], item["key"]))
    if entries:
        load_certificates(entries)
    return tuple(entries)


def _parse_networks(value: Any) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise ValueError("must be a list of IP addresses or CIDR networks")
    networks = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"{item!r} is not an IP address or network")
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
    return tuple(networks)


def _parse_pseudonym(value: Any) -> str:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise ValueError("must be a token of 1-64 letters, digits or !#$%&'*+.^_`|~-")
    return value


def _parse_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError("must be a number of seconds > 0")
    return float(value)


def _parse_message_limit(value: Any) -> int:
    size = parse_size(value)
    if size < 1:
        raise ValueError("must be at least 1 byte")
    return size


def _parse_workers(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be an integer ≥ 1")
    return value


def _parse_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _parse_access_log(value: Any) -> str:
    """"" (off), "-" (standard output) or a file path whose directory exists."""
    if not isinstance(value, str):
        raise ValueError('must be "" (off), "-" (standard output) or a file path')
    if value in ("", "-"):
        return value
    if os.path.isdir(value):
        raise ValueError(f"{value!r} is a directory; name a file in it")
    directory = os.path.dirname(os.path.abspath(value))
    if not os.path.isdir(directory):
        raise ValueError(f"directory {directory!r} does not exist")
    return value


def _parse_access_log_format(value: Any) -> str:
    if value not in ACCESS_LOG_FORMATS:
        raise ValueError(f"must be one of {', '.join(repr(f) for f in ACCESS_LOG_FORMATS)}, not {value!r}")
    return value


def _parse_admin_listen(value: Any) -> ListenAddress:
    if not isinstance(value, str):
        raise ValueError("must be one address like \"127.0.0.1:8081\"")
    address = parse_listen(value)
    if address.tls:
        raise ValueError("the management listener speaks plain HTTP: tls:// is for traffic listeners")
    return address


PARSERS: dict[str, Callable[[Any], Any]] = {
    "listen": _parse_listen_list,
    "admin_listen": _parse_admin_listen,
    "pseudonym": _parse_pseudonym,
    "trusted_proxies": _parse_networks,
    "max_request_body": parse_size,
    "header_timeout": _parse_seconds,
    "workers": _parse_workers,
    "health_monitor": _parse_bool,
    "shutdown_timeout": _parse_seconds,
    "websocket_idle_timeout": _parse_seconds,
    "websocket_max_message": _parse_message_limit,
    "tls_certificates": _parse_tls_certificates,
    "admin_hosts": parse_admin_hosts,
    "access_log": _parse_access_log,
    "access_log_format": _parse_access_log_format,
}


def parse_proxy_values(values: dict) -> tuple[dict, dict[str, str]]:
    """(parsed values, {key: message}) for the given raw `[proxy]`-style values."""
    parsed, errors = {}, {}
    for key, value in values.items():
        parser = PARSERS.get(key)
        if parser is None:
            errors[key] = "unknown setting"
            continue
        try:
            parsed[key] = parser(value)
        except ValueError as exc:
            errors[key] = str(exc)
    tls_listeners = [str(a) for a in parsed.get("listen", ()) if a.tls]
    if tls_listeners and not parsed.get("tls_certificates") and "tls_certificates" not in errors:
        errors["listen"] = f"{', '.join(tls_listeners)} needs [proxy] tls_certificates (none are configured)"
    return parsed, errors


class DjangoDirectorSetting:
    """Attribute access to the Django setting `DIRECTOR` over DEFAULTS; values are parsed."""

    def __init__(self, user_settings: dict | None = None, defaults: dict | None = None):
        self._user_settings = user_settings
        self.defaults = defaults or DEFAULTS
        self._cache: dict[str, Any] = {}

    @property
    def user_settings(self) -> dict:
        if self._user_settings is None:
            self._user_settings = getattr(django_settings, "DIRECTOR", None) or {}
            unknown = sorted(set(self._user_settings) - set(self.defaults))
            if unknown:
                raise ImproperlyConfigured(f"DIRECTOR setting: unknown keys {', '.join(unknown)}")
        return self._user_settings

    def raw(self) -> dict:
        """Unparsed values: defaults overlaid with the Django setting."""
        return {**self.defaults, **self.user_settings}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self.defaults:
            raise AttributeError(f"invalid Director setting: {name!r}")
        if name not in self._cache:
            try:
                self._cache[name] = PARSERS[name](self.raw()[name])
            except ValueError as exc:
                raise ImproperlyConfigured(f"DIRECTOR[{name!r}]: {exc}") from None
        return self._cache[name]

    def reload(self) -> None:
        self._cache.clear()
        self._user_settings = None


director_settings = DjangoDirectorSetting()


def _reload(*, setting, **kwargs) -> None:
    if setting == "DIRECTOR":
        director_settings.reload()


setting_changed.connect(_reload)


@dataclass(frozen=True)
class ProxySettings:
    listen: tuple[ListenAddress, ...]
    admin_listen: ListenAddress
    pseudonym: str
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    max_request_body: int
    header_timeout: float
    workers: int
    health_monitor: bool
    shutdown_timeout: float
    websocket_idle_timeout: float
    websocket_max_message: int
    tls_certificates: tuple[CertificateFiles, ...]
    admin_hosts: tuple[str, ...] | None = None
    access_log: str = ""
    access_log_format: str = "combined"

    @classmethod
    def build(cls, file_values: dict | None = None, overrides: dict | None = None) -> "ProxySettings":
        """Defaults < DIRECTOR setting < `[proxy]` (file_values) < CLI flags (None = not given).

        Raises ImproperlyConfigured naming every bad key.
        """
        values = {**director_settings.raw(), **(file_values or {}),
                  **{k: v for k, v in (overrides or {}).items() if v is not None}}
        parsed, errors = parse_proxy_values(values)
        if errors:
            raise ImproperlyConfigured("; ".join(f"proxy.{k}: {msg}" for k, msg in errors.items()))
        return cls(**parsed)

    def load_tls(self) -> CertificateSet | None:
        """The certificates of the `tls://` listeners, read now (ValueError naming the
        entry and file when one has become unreadable since it was checked)."""
        return load_certificates(self.tls_certificates) if self.tls_certificates else None
