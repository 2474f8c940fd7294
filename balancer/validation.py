"""The one set of value rules for director settings, backend fields and routes (SPEC §3, §5,
§6, §11).

Models (`clean()`), services (API, admin, x0 import) and the TOML loader all validate through
these rules, so a value is accepted or rejected with the same message everywhere. Types are
strict: `"16"` is not an integer and `1` is not a boolean.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any, Callable

from proxy.addresses import TLS_SCHEMES, parse_backend_url, parse_host
from proxy.upstream.tls import load_ca_file

from .choices import ClientAbort, HealthCheckMode, Role, Scheduler

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
UNKNOWN_FIELD = "unknown field"
DAY_S = 86400.0  # the longest duration of any setting
MAX_COUNT = 1_000_000  # the largest queue or capacity
MAX_THRESHOLD = 1000  # the most consecutive checks or failures a threshold may ask for
MAX_RETRIES = 100
MIN_TIMEOUT_S = 0.001
MIN_INTERVAL_S = 0.1  # health checks more often than ten times a second are a load test


def check_name(value: str) -> str:
    if not NAME_PATTERN.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid name: use 1-64 of A-Z a-z 0-9 _ . -")
    return value


def check_url(value: str) -> str:
    parse_backend_url(value)
    return value


def check_ca_file(value: str) -> str:
    """Empty (the system store) or an absolute path of a readable PEM CA file: every process
    (API, proxy workers, health worker) must read the same file, whatever its directory."""
    if value:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must be an absolute path (or empty for the system store)")
        load_ca_file(value)
    return value


def check_server_name(value: str) -> str:
    """Empty (the URL's host) or a host name or IP address."""
    if value:
        parse_host(value, f"server name {value!r}")
    return value


CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
# OpenAPI patterns of text fields: what their checks require syntactically. A value outside
# is always refused; one inside may still be refused for what a pattern cannot say (a port
# above 65535, a CA file that does not exist).
TEXT_PATTERN = "^[^\\u0000-\\u001f\\u007f]*$"
_STATUS_PART = r"\s*[0-9]+\s*(-\s*[0-9]+\s*)?"
EXPECTED_STATUS_PATTERN = f"^{_STATUS_PART}(,{_STATUS_PART})*$"
_NOT_IN_URL = "/?@\\s\\u0000-\\u001f\\u007f"
URL_PATTERN = (f"^(https?|fastcgi)://[^{_NOT_IN_URL}]+:[0-9]+/*$"
               "|^(http|fastcgi)\\+unix:///[^\\u0000-\\u001f\\u007f]+$")
ABSOLUTE_PATH_PATTERN = "^/[^\\u0000-\\u001f\\u007f]*$"
# What goes on the wire of a health check as is: visible ASCII, nothing to escape or encode.
VISIBLE_ASCII = "!-~"
HOST_HEADER_PATTERN = re.compile(f"[{VISIBLE_ASCII}]{{1,255}}")
REQUEST_PATH_PATTERN = re.compile(f"/[{VISIBLE_ASCII}]{{0,1023}}")


TOKEN_CHARACTERS = "[!#$%&'*+.^_`|~0-9A-Za-z-]"  # an RFC 9110 token's (header and cookie names)
COOKIE_NAME_PATTERN = f"^{TOKEN_CHARACTERS}*$"


def check_cookie_name(value: str) -> str:
    """A cookie name (an RFC 9110 token) or "" for none."""
    if not re.fullmatch(COOKIE_NAME_PATTERN, value):
        raise ValueError(f"{value!r} is not a cookie name: use letters, digits and !#$%&'*+.^_`|~-")
    return value


def check_cache_key(value: str) -> str:
    """A cache key pattern (SPEC §15: %s %h %r %q %%; any other %x is kept literally)."""
    if not value:
        raise ValueError("must not be empty: use %h#%r#%q for host, path and query")
    return value


def check_sendfile_root(value: str) -> str:
    """An absolute path of an existing directory, or "" (X-Sendfile not allowed anywhere).
    Like a CA file, every proxy process reads the same path, whatever its directory."""
    if value:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must be an absolute path")
        if not os.path.isdir(value):
            raise ValueError(f"{value!r} is not an existing directory")
    return value


def sendfile_errors(settings: dict) -> dict[str, list[str]]:
    """Director settings that only make sense together (SPEC §15): X-Sendfile allowed
    needs the directory its paths must stay inside. `settings` holds both keys."""
    if settings.get("allow_x_sendfile") and not settings.get("x_sendfile_root"):
        return {"x_sendfile_root": ["required when allow_x_sendfile is true: the directory X-Sendfile paths "
                                    "must resolve inside"]}
    return {}


def check_text(value: str) -> str:
    """Every text value: no control characters (they would split a header or a request line)
    and nothing that is not UTF-8 (a lone surrogate from JSON "\\ud800")."""
    if CONTROL_CHARACTERS.search(value):
        raise ValueError(f"{value!r} must not contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{value!r} is not valid text") from None
    return value


def check_request_path(value: str) -> str:
    """A path sent in a request line: starts with '/', no spaces or control characters."""
    check_text(value)
    if not value.startswith("/") or " " in value:
        raise ValueError(f"{value!r} must start with '/' and contain no spaces or control characters")
    return value


def check_health_path(value: str) -> str:
    """The health-check path goes on the wire as is: '/' and visible ASCII (percent-encode the rest)."""
    check_request_path(value)
    if not REQUEST_PATH_PATTERN.fullmatch(value):
        raise ValueError(f"{value!r} must be '/' followed by at most 1023 visible ASCII characters "
                         "(percent-encode others)")
    return value


def check_host_header(value: str) -> str:
    """The health-check Host header: 1-255 visible ASCII characters (an IDN in its xn-- form)."""
    check_text(value)
    if not HOST_HEADER_PATTERN.fullmatch(value):
        raise ValueError(f"{value!r} must be 1-255 visible ASCII characters (no spaces; an IDN as xn--)")
    return value


def parse_expected_status(text: str) -> tuple[tuple[int, int], ...]:
    """`"200-399,404"` -> ((200, 399), (404, 404)); ValueError naming the bad part."""
    ranges = []
    for part in str(text).split(","):
        part = part.strip()
        low_text, sep, high_text = part.partition("-")
        if not _ascii_digits(low_text.strip()) or (sep and not _ascii_digits(high_text.strip())):
            raise ValueError(f"{part!r} is not a status code or range like 200-399")
        low = int(low_text)
        high = int(high_text) if sep else low
        if not (100 <= low <= high <= 599):
            raise ValueError(f"{part!r}: status codes must be 100-599, low to high")
        ranges.append((low, high))
    return tuple(ranges)


def _ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def check_expected_status(value: str) -> str:
    parse_expected_status(value)
    return value


@dataclass(frozen=True)
class Rule:
    """How one field is typed, bounded and checked; `clean()` returns the normalised value.

    Every number has both bounds and every text a longest length (SPEC §5: absurd values such
    as a 1e308 s interval are refused, not obeyed); text never holds control characters."""

    kind: str  # "bool" | "int" | "seconds" | "number" | "size" | "str" | "choice"
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    check: Callable[[str], str] | None = None
    coerce_int_to_str: bool = False  # TOML `200` for a status list
    max_length: int = 4096
    pattern: str | None = None  # the regular expression `check` enforces, for the OpenAPI schema

    def describe(self) -> str:
        if self.kind == "bool":
            return "must be true or false"
        if self.kind == "choice":
            return "must be one of " + ", ".join(self.choices)
        if self.kind == "str":
            return f"must be a string of at most {self.max_length} characters"
        if self.kind == "size":
            return f"must be a size from {_number(self.minimum)} to {_number(self.maximum)} bytes (bytes, or like \"64MiB\")"
        what = {"int": "an integer", "number": "a number"}.get(self.kind, "a number of seconds")
        return f"must be {what} from {_number(self.minimum)} to {_number(self.maximum)}"

    def clean(self, value: Any) -> Any:
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(self.describe())
            return value
        if self.kind in ("str", "choice"):
            return self._clean_text(value)
        if self.kind == "size" and isinstance(value, str):
            try:
                value = parse_size(value)
            except ValueError:
                raise ValueError(self.describe()) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(self.describe())
        if self.kind == "int" and not isinstance(value, int):
            raise ValueError(self.describe())
        if self.kind in ("seconds", "number"):
            if not math.isfinite(value):
                raise ValueError(self.describe())
            value = float(value)
        if not self.minimum <= value <= self.maximum:  # type: ignore[operator]
            raise ValueError(self.describe())
        return value

    def _clean_text(self, value: Any) -> str:
        if self.coerce_int_to_str and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or len(value) > self.max_length:
            raise ValueError(self.describe())
        if self.kind == "choice" and value not in self.choices:
            raise ValueError(f"{value!r}: {self.describe()}")
        check_text(value)
        return self.check(value) if self.check else value


SIZE_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3,
              "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")
SIZE_PATTERN = "^\\s*\\d+(\\.\\d+)?\\s*([Bb]|[KkMmGg][Ii]?[Bb])?\\s*$"  # what parse_size reads, for OpenAPI


def parse_size(value: Any) -> int:
    """Bytes from an int or `"64MiB"`, `"10 MB"`, `"512KiB"`, `"100B"` (KB = 1000, KiB = 1024)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("must be ≥ 0 bytes")
        return value
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    unit = match and SIZE_UNITS.get(match.group(2).upper())
    if not unit:
        raise ValueError(f"{value!r} is not a size: use bytes or a number with B, KiB, MiB, GiB, KB, MB, GB")
    return int(float(match.group(1)) * unit)


def _number(value) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _count(default: int | None, minimum: int, maximum: int) -> Rule:
    return Rule("int", default, minimum=minimum, maximum=maximum)


def _seconds(default: float, minimum: float, maximum: float = DAY_S) -> Rule:
    return Rule("seconds", default, minimum=minimum, maximum=maximum)


def _size(default: int, maximum: int) -> Rule:
    return Rule("size", default, minimum=0, maximum=maximum)


def _choice(enum, default) -> Rule:
    return Rule("choice", default, choices=tuple(enum.values))


DIRECTOR_SETTINGS: dict[str, Rule] = {
    "enabled": Rule("bool", True),
    "scheduler": _choice(Scheduler, Scheduler.RR.value),
    "queue_limit": _count(128, 0, MAX_COUNT),
    "queue_timeout": _seconds(60.0, 0),
    "retry_after": _seconds(10.0, 0),
    "max_retry_count": _count(6, 0, MAX_RETRIES),
    "passive_failure_threshold": _count(1, 1, MAX_THRESHOLD),
    "connect_timeout": _seconds(10.0, MIN_TIMEOUT_S),
    "read_timeout": _seconds(120.0, MIN_TIMEOUT_S),
    "write_timeout": _seconds(10.0, MIN_TIMEOUT_S),
    "on_client_abort": _choice(ClientAbort, ClientAbort.CLOSE.value),
    "sticky_offline_mode": Rule("bool", False),
    "enqueue_on_unavailable": Rule("bool", False),
    "health_check_host_header": Rule("str", "backend-healthcheck", check=check_host_header, max_length=255,
                                     pattern=f"^{HOST_HEADER_PATTERN.pattern}$"),
    "health_check_request_path": Rule("str", "/", check=check_health_path, max_length=1024,
                                      pattern=f"^{REQUEST_PATH_PATTERN.pattern}$"),
    "health_check_fcgi_script_filename": Rule("str", "", pattern=TEXT_PATTERN),
    "health_check_success_threshold": _count(2, 1, MAX_THRESHOLD),
    "health_check_failure_threshold": _count(1, 1, MAX_THRESHOLD),
    "health_check_expected_status": Rule("str", "200", check=check_expected_status, coerce_int_to_str=True,
                                         max_length=255, pattern=EXPECTED_STATUS_PATTERN),
    # SPEC §15: x0's later director features
    "cache_enabled": Rule("bool", False),
    "cache_deliver_active": Rule("bool", True),
    "cache_deliver_shadow": Rule("bool", True),
    "cache_default_ttl": _seconds(20.0, 0),
    "cache_key": Rule("str", "%h#%r#%q", check=check_cache_key, max_length=255, pattern="^[^\\u0000-\\u001f\\u007f]+$"),
    "cache_max_size": _size(64 * 1024**2, 64 * 1024**3),
    "allow_x_sendfile": Rule("bool", False),
    "x_sendfile_root": Rule("str", "", check=check_sendfile_root, pattern=f"^$|{ABSOLUTE_PATH_PATTERN}"),
    "sticky_cookie": Rule("str", "", check=check_cookie_name, max_length=64, pattern=COOKIE_NAME_PATTERN),
    "slow_start": _seconds(0.0, 0),
}

NAME_RULE = Rule("str", check=check_name, max_length=64, pattern=f"^{NAME_PATTERN.pattern}$")
URL_RULE = Rule("str", check=check_url, pattern=URL_PATTERN)

# Backend fields a client may set (SPEC §6); name and url only at creation.
BACKEND_FIELDS: dict[str, Rule] = {
    "name": NAME_RULE,
    "url": URL_RULE,
    "role": _choice(Role, Role.ACTIVE.value),
    "capacity": _count(0, 0, MAX_COUNT),
    "enabled": Rule("bool", True),
    "health_check_mode": _choice(HealthCheckMode, HealthCheckMode.PARANOID.value),
    "health_check_interval": _seconds(2.0, MIN_INTERVAL_S),
    "terminate_protection": Rule("bool", False),
    "position": _count(None, 0, MAX_COUNT),
    "tls_verify": Rule("bool", True),
    "tls_ca_file": Rule("str", "", check=check_ca_file, pattern=f"^$|{ABSOLUTE_PATH_PATTERN}"),
    "tls_server_name": Rule("str", "", check=check_server_name, max_length=255, pattern=TEXT_PATTERN),
}
TLS_FIELDS = ("tls_verify", "tls_ca_file", "tls_server_name")
BACKEND_IMMUTABLE = ("name", "url", "protocol")
BACKEND_REQUIRED = ("name", "url")


def tls_errors(url: Any, fields: dict) -> dict[str, list[str]]:
    """TLS fields with other than their default values on a backend whose URL is not https
    (they would do nothing, which is likely a mistake): {field: [message]}."""
    if not isinstance(url, str) or url.partition("://")[0] in TLS_SCHEMES:
        return {}
    return {name: [f"only for https:// backends, not {url!r}"] for name in TLS_FIELDS
            if name in fields and fields[name] != BACKEND_FIELDS[name].default}


def defaults(rules: dict[str, Rule]) -> dict[str, Any]:
    return {name: rule.default for name, rule in rules.items() if rule.default is not None}


def clean_values(rules: dict[str, Rule], data: dict) -> tuple[dict, dict[str, list[str]]]:
    """Check every key of `data` against `rules`: (cleaned values, {field: [messages]})."""
    cleaned: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    if not isinstance(data, dict):
        return cleaned, {"non_field_errors": ["expected an object of fields"]}
    for key, value in data.items():
        rule = rules.get(key)
        if rule is None:
            errors.setdefault(str(key), []).append(UNKNOWN_FIELD)
            continue
        try:
            cleaned[key] = rule.clean(value)
        except ValueError as exc:
            errors.setdefault(key, []).append(str(exc))
    return cleaned, errors
