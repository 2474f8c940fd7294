"""The one set of value rules for director settings and backend fields (SPEC §5, §6).

Models (`clean()`), services (API, admin, x0 import) and the TOML loader all validate through
these rules, so a value is accepted or rejected with the same message everywhere. Types are
strict: `"16"` is not an integer and `1` is not a boolean.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from proxy.addresses import parse_backend_url

from .choices import ClientAbort, HealthCheckMode, Role, Scheduler

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
UNKNOWN_FIELD = "unknown field"


def check_name(value: str) -> str:
    if not NAME_PATTERN.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid name: use 1-64 of A-Z a-z 0-9 _ . -")
    return value


def check_url(value: str) -> str:
    parse_backend_url(value)
    return value


def check_request_path(value: str) -> str:
    if not value.startswith("/") or any(c in value for c in " \r\n\x00"):
        raise ValueError(f"{value!r} must start with '/' and contain no spaces or control characters")
    return value


def parse_expected_status(text: str) -> tuple[tuple[int, int], ...]:
    """`"200-399,404"` -> ((200, 399), (404, 404)); ValueError naming the bad part."""
    ranges = []
    for part in str(text).split(","):
        part = part.strip()
        low_text, sep, high_text = part.partition("-")
        if not low_text.strip().isdigit() or (sep and not high_text.strip().isdigit()):
            raise ValueError(f"{part!r} is not a status code or range like 200-399")
        low = int(low_text)
        high = int(high_text) if sep else low
        if not (100 <= low <= high <= 599):
            raise ValueError(f"{part!r}: status codes must be 100-599, low to high")
        ranges.append((low, high))
    return tuple(ranges)


def check_expected_status(value: str) -> str:
    parse_expected_status(value)
    return value


@dataclass(frozen=True)
class Rule:
    """How one field is typed, bounded and checked; `clean()` returns the normalised value."""

    kind: str  # "bool" | "int" | "seconds" | "str" | "choice"
    default: Any = None
    minimum: float | None = None
    exclusive: bool = False  # minimum itself not allowed
    choices: tuple[str, ...] = ()
    check: Callable[[str], str] | None = None
    coerce_int_to_str: bool = False  # TOML `200` for a status list

    def describe(self) -> str:
        if self.kind == "bool":
            return "must be true or false"
        if self.kind == "choice":
            return "must be one of " + ", ".join(self.choices)
        if self.kind == "str":
            return "must be a string"
        what = "an integer" if self.kind == "int" else "a number of seconds"
        if self.minimum is None:
            return f"must be {what}"
        bound = ">" if self.exclusive else "≥"
        minimum = int(self.minimum) if float(self.minimum).is_integer() else self.minimum
        return f"must be {what} {bound} {minimum}"

    def clean(self, value: Any) -> Any:
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(self.describe())
            return value
        if self.kind in ("str", "choice"):
            if self.coerce_int_to_str and isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str):
                raise ValueError(self.describe())
            if self.kind == "choice" and value not in self.choices:
                raise ValueError(f"{value!r}: {self.describe()}")
            return self.check(value) if self.check else value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(self.describe())
        if self.kind == "int":
            if not isinstance(value, int):
                raise ValueError(self.describe())
        elif not math.isfinite(value):
            raise ValueError(self.describe())
        else:
            value = float(value)
        if self.minimum is not None and (value < self.minimum or (self.exclusive and value == self.minimum)):
            raise ValueError(self.describe())
        return value


def _choice(enum, default) -> Rule:
    return Rule("choice", default, choices=tuple(enum.values))


DIRECTOR_SETTINGS: dict[str, Rule] = {
    "enabled": Rule("bool", True),
    "scheduler": _choice(Scheduler, Scheduler.RR.value),
    "queue_limit": Rule("int", 128, minimum=0),
    "queue_timeout": Rule("seconds", 60.0, minimum=0),
    "retry_after": Rule("seconds", 10.0, minimum=0),
    "max_retry_count": Rule("int", 6, minimum=0),
    "passive_failure_threshold": Rule("int", 1, minimum=1),
    "connect_timeout": Rule("seconds", 10.0, minimum=0, exclusive=True),
    "read_timeout": Rule("seconds", 120.0, minimum=0, exclusive=True),
    "write_timeout": Rule("seconds", 10.0, minimum=0, exclusive=True),
    "on_client_abort": _choice(ClientAbort, ClientAbort.CLOSE.value),
    "sticky_offline_mode": Rule("bool", False),
    "enqueue_on_unavailable": Rule("bool", False),
    "health_check_host_header": Rule("str", "backend-healthcheck"),
    "health_check_request_path": Rule("str", "/", check=check_request_path),
    "health_check_fcgi_script_filename": Rule("str", ""),
    "health_check_success_threshold": Rule("int", 2, minimum=1),
    "health_check_failure_threshold": Rule("int", 1, minimum=1),
    "health_check_expected_status": Rule("str", "200", check=check_expected_status, coerce_int_to_str=True),
}

NAME_RULE = Rule("str", check=check_name)
URL_RULE = Rule("str", check=check_url)

# Backend fields a client may set (SPEC §6); name and url only at creation.
BACKEND_FIELDS: dict[str, Rule] = {
    "name": NAME_RULE,
    "url": URL_RULE,
    "role": _choice(Role, Role.ACTIVE.value),
    "capacity": Rule("int", 0, minimum=0),
    "enabled": Rule("bool", True),
    "health_check_mode": _choice(HealthCheckMode, HealthCheckMode.PARANOID.value),
    "health_check_interval": Rule("seconds", 2.0, minimum=0, exclusive=True),
    "terminate_protection": Rule("bool", False),
    "position": Rule("int", minimum=0),
}
BACKEND_IMMUTABLE = ("name", "url", "protocol")
BACKEND_REQUIRED = ("name", "url")


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
