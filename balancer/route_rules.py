"""Value rules of a route (SPEC §3 `[[routes]]`, §11 routes at runtime): one action, its
options, and every key's text checked, the same for the config file, the API and the admin.
The field rules they build on are in balancer.validation."""
from __future__ import annotations

import re
from typing import Any

from proxy.addresses import parse_target

from .validation import (
    ABSOLUTE_PATH_PATTERN,
    NAME_PATTERN,
    TOKEN_CHARACTERS,
    UNKNOWN_FIELD,
    Rule,
    check_name,
    check_request_path,
    check_text,
)

ROUTE_ACTIONS = ("pass", "http", "fcgi")
# Text keys of a route and their longest allowed value (the database columns' max_length).
ROUTE_TEXT_LIMITS = {"host": 255, "path": 1024, "pass": 64, "backend_from": 200, "http": 1024, "fcgi": 1024,
                     "document_root": 4096, "script_filename": 4096, "bucket": 64, "bucket_from": 200}
PASS_OPTIONS = ("backend_from", "bucket", "bucket_from")  # route keys that only go with pass
ROUTE_KEYS = (*ROUTE_TEXT_LIMITS, "priority")
# OpenAPI patterns of route keys (TEXT_PATTERN for the others): see TEXT_PATTERN.
ROUTE_PATTERNS = {"path": "^/[^ \\u0000-\\u001f\\u007f]*$", "document_root": ABSOLUTE_PATH_PATTERN,
                  "script_filename": ABSOLUTE_PATH_PATTERN,
                  "backend_from": f"^(cookie|header):{TOKEN_CHARACTERS}+$",
                  "bucket_from": f"^(cookie|header):{TOKEN_CHARACTERS}+$",
                  "bucket": f"^{NAME_PATTERN.pattern}$"}
PRIORITY_RULE = Rule("int", None, minimum=-1_000_000, maximum=1_000_000)
ROUTE_ITSELF = "non_field_errors"  # errors about the route as a whole (the TOML loader names the table)
BACKEND_SOURCES = ("cookie", "header")
_HEADER_NAME = re.compile(TOKEN_CHARACTERS + "+")
ANY_HOST = "*"


def _check_route_host(host: str) -> None:
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"{host!r} is not a host name (use \"*\" or leave it out for any host)")
    try:
        host.lower().encode("idna")
    except UnicodeError:
        raise ValueError(f"{host!r} is not a host name") from None


def parse_backend_from(text: str) -> tuple[str, str]:
    """`"cookie:NAME"` -> ("cookie", "NAME"); ValueError unless cookie/header and a token name."""
    source, _, name = text.partition(":")
    if source not in BACKEND_SOURCES or not _HEADER_NAME.fullmatch(name):
        raise ValueError(f"{text!r} must be \"cookie:NAME\" or \"header:NAME\"")
    return source, name


def _check_route_value(key: str, value: str) -> None:
    if key == "host" and value != ANY_HOST:
        _check_route_host(value)
    elif key == "path":
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must start with '/'")
        check_request_path(value)
    elif key in ("http", "fcgi"):
        parse_target(value, "http" if key == "http" else "fastcgi")
    elif key in ("document_root", "script_filename") and not value.startswith("/"):
        raise ValueError(f"{value!r} must be an absolute path")
    elif key in ("backend_from", "bucket_from"):
        parse_backend_from(value)
    elif key == "bucket":
        check_name(value)


def clean_route(table: dict, director_names) -> tuple[dict, dict[str, list[str]]]:
    """Check one route (`table`: the keys of ROUTE_KEYS that are set) against the rules.

    Returns (values, errors): values has every key of ROUTE_KEYS, host lower-cased and None
    for any host, path "/" when absent, None for what is not set; errors maps each offending
    key (ROUTE_ITSELF for the route as a whole, UNKNOWN_FIELD for unknown keys) to messages.
    A `pass` naming no director in `director_names` is an error.
    """
    errors: dict[str, list[str]] = {}

    def add(key: str, message: str) -> None:
        errors.setdefault(key, []).append(message)

    for key in table:
        if key not in ROUTE_KEYS:
            add(str(key), UNKNOWN_FIELD)
    values: dict[str, Any] = dict.fromkeys(ROUTE_KEYS)
    for key, limit in ROUTE_TEXT_LIMITS.items():
        value = table.get(key)
        if key not in table:
            continue
        if not isinstance(value, str) or not _encodable(value):
            add(key, "must be a string")
        elif len(value) > limit:
            add(key, f"must be at most {limit} characters")
        else:
            try:
                _check_route_value(key, check_text(value))
                values[key] = value
            except ValueError as exc:
                add(key, str(exc))
    if "priority" in table:
        try:
            values["priority"] = PRIORITY_RULE.clean(table["priority"])
        except ValueError as exc:
            add("priority", str(exc))
    actions = [key for key in ROUTE_ACTIONS if key in table]
    if len(actions) != 1:
        add(ROUTE_ITSELF, "needs exactly one of pass, http, fcgi" + (f" (has {', '.join(actions)})" if actions else ""))
    if values["pass"] is not None and values["pass"] not in director_names:
        add("pass", f"unknown director {values['pass']!r}")
        values["pass"] = None
    for key in PASS_OPTIONS:
        if key in table and "pass" not in table:
            add(key, "only allowed together with pass")
    values["host"] = None if values["host"] in (None, ANY_HOST) else values["host"].lower()
    values["path"] = values["path"] or "/"
    return values, errors


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from JSON "\ud800"
        return False
    return True
