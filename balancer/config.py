"""The TOML config file (SPEC §3): parse, validate every value, return a frozen tree.

Validation collects every error with its key path (`directors.app.queue_limit: …`,
`routes[1].pass: …`) and raises one ConfigError with all of them. Director and backend values
are checked by `balancer.validation`, the same rules the services apply.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import bucket_rules, route_rules, validation
from .conf import parse_proxy_values

TOP_LEVEL_KEYS = ("proxy", "directors", "routes")
DIRECTOR_META_KEYS = ("dynamic", "load", "backends", "buckets")
# Backend fields a config file may set: everything but the name (the table key) and position (file order).
FILE_BACKEND_FIELDS = {k: v for k, v in validation.BACKEND_FIELDS.items() if k not in ("name", "position")}


class ConfigError(Exception):
    """The config file is invalid; `errors` lists every problem with its key path."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class DirectorConfig:
    name: str
    dynamic: bool = False
    load: str | None = None  # absolute path of the x0 file (relative ones resolve against the config's directory)
    settings: dict = field(default_factory=dict)  # every SPEC §5 setting, defaults filled in
    backends: tuple[tuple[str, dict], ...] = ()  # (name, fields) in file order, defaults filled in
    buckets: tuple[tuple[str, dict], ...] = ()  # (name, {parent, rate, ceil}) in file order (SPEC §15)


@dataclass(frozen=True)
class RouteConfig:
    host: str | None = None  # lower case; None = any host
    path: str = "/"
    pass_: str | None = None
    backend_from: tuple[str, str] | None = None  # ("cookie" | "header", name)
    http: str | None = None
    fcgi: str | None = None
    document_root: str | None = None
    script_filename: str | None = None
    priority: int | None = None  # None: file order, before every route that has a priority
    bucket: str | None = None
    bucket_from: str | None = None  # "cookie:NAME" | "header:NAME"

    def table(self) -> dict:
        """The route as `route_rules.clean_route` takes it (only the keys that are set)."""
        values = {"host": self.host, "path": self.path, "pass": self.pass_,
                  "backend_from": ":".join(self.backend_from) if self.backend_from else None,
                  "http": self.http, "fcgi": self.fcgi, "document_root": self.document_root,
                  "script_filename": self.script_filename, "priority": self.priority,
                  "bucket": self.bucket, "bucket_from": self.bucket_from}
        return {key: value for key, value in values.items() if value is not None}


@dataclass(frozen=True)
class Config:
    proxy: dict = field(default_factory=dict)  # raw, validated [proxy] values
    directors: dict[str, DirectorConfig] = field(default_factory=dict)
    routes: tuple[RouteConfig, ...] = ()
    source: str = "<string>"


class _Errors(list):
    def add(self, path: str, message: str) -> None:
        self.append(f"{path}: {message}")

    def unknown_keys(self, path: str, table: dict, known) -> None:
        for key in table:
            if key not in known:
                self.add(f"{path}.{key}" if path else str(key), "unknown key")


def load_config(path: str | Path) -> Config:
    """Read and validate the config file at `path`; ConfigError lists every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc}"]) from None
    return parse_config(text, source=str(path), base_dir=path.resolve().parent)


def parse_config(text: str, *, source: str = "<string>", base_dir: Path | None = None) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: invalid TOML: {exc}"]) from None
    errors = _Errors()
    errors.unknown_keys("", data, TOP_LEVEL_KEYS)
    proxy = _table(data, "proxy", errors)
    _, proxy_errors = parse_proxy_values(proxy)
    for key, message in proxy_errors.items():
        errors.add(f"proxy.{key}", message)
    directors = {}
    for name, table in _table(data, "directors", errors).items():
        director = _director(name, table, errors, base_dir or Path.cwd())
        if director is not None:
            directors[name] = director
    routes = _routes(data.get("routes", []), errors, set(_table(data, "directors", _Errors())))
    if errors:
        raise ConfigError(errors)
    return Config(proxy=proxy, directors=directors, routes=routes, source=source)


def _table(data: dict, key: str, errors: _Errors, path: str | None = None) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        errors.add(path or key, "must be a table")
        return {}
    return value


def _director(name: str, table: Any, errors: _Errors, base_dir: Path) -> DirectorConfig | None:
    path = f"directors.{name}"
    try:
        validation.NAME_RULE.clean(name)
    except ValueError as exc:
        errors.add(path, str(exc))
    if not isinstance(table, dict):
        errors.add(path, "must be a table")
        return None
    settings_in = {k: v for k, v in table.items() if k not in DIRECTOR_META_KEYS}
    settings, setting_errors = validation.clean_values(validation.DIRECTOR_SETTINGS, settings_in)
    for key, messages in setting_errors.items():
        for message in messages:
            errors.add(f"{path}.{key}", "unknown key" if message == validation.UNKNOWN_FIELD else message)
    for key, messages in validation.sendfile_errors(settings).items():
        for message in messages if key not in setting_errors else ():
            errors.add(f"{path}.{key}", message)
    dynamic = table.get("dynamic", False)
    if not isinstance(dynamic, bool):
        errors.add(f"{path}.dynamic", "must be true or false")
        dynamic = False
    load = table.get("load")
    if load is not None:
        if not isinstance(load, str) or not load:
            errors.add(f"{path}.load", "must be a file path")
            load = None
        elif not dynamic:
            errors.add(f"{path}.load", "only a dynamic director (dynamic = true) has a load file")
        else:
            load = str(base_dir / load)
    backends = ()
    if "backends" in table:
        if dynamic:
            errors.add(f"{path}.backends", "a dynamic director's backends live in the database (or its load file), not in the config file")
        else:
            backends = _backends(_table(table, "backends", errors, f"{path}.backends"), errors, f"{path}.backends",
                                 base_dir)
    buckets = ()
    if "buckets" in table:
        if dynamic:
            errors.add(f"{path}.buckets", "a dynamic director's buckets live in the database (API, admin), "
                                          "not in the config file")
        else:
            buckets = _buckets(_table(table, "buckets", errors, f"{path}.buckets"), errors, f"{path}.buckets")
    return DirectorConfig(name=name, dynamic=dynamic, load=load,
                          settings={**validation.defaults(validation.DIRECTOR_SETTINGS), **settings},
                          backends=backends, buckets=buckets)


def _buckets(table: dict, errors: _Errors, path: str) -> tuple[tuple[str, dict], ...]:
    """`gold = { rate = 0.6, ceil = 1.0 }`, children with `parent = "gold"` (SPEC §15)."""
    result: dict[str, dict] = {}
    complete = True
    for name, value in table.items():
        bpath = f"{path}.{name}"
        if not isinstance(value, dict):
            errors.add(bpath, "must be an inline table like { rate = 0.5, ceil = 1.0 }")
            complete = False
            continue
        fields, field_errors = bucket_rules.clean_bucket({**value, "name": name}, creating=True)
        for key, messages in field_errors.items():
            for message in messages:
                errors.add(bpath if key == "name" else f"{bpath}.{key}",
                           "unknown key" if message == validation.UNKNOWN_FIELD else message)
        if field_errors:
            complete = False
            continue
        result[name] = {key: fields[key] for key in ("parent", "rate", "ceil")}
    if complete:
        for name, field_errors in bucket_rules.tree_errors(result).items():
            for key, messages in field_errors.items():
                for message in messages:
                    errors.add(f"{path}.{name}.{key}", message)
    return tuple(result.items())


def _backends(table: dict, errors: _Errors, path: str, base_dir: Path) -> tuple[tuple[str, dict], ...]:
    result = []
    backend_defaults = validation.defaults(FILE_BACKEND_FIELDS)
    for name, value in table.items():
        bpath = f"{path}.{name}"
        try:
            validation.NAME_RULE.clean(name)
        except ValueError as exc:
            errors.add(bpath, str(exc))
        if isinstance(value, str):
            value = {"url": value}
        elif not isinstance(value, dict):
            errors.add(bpath, "must be a backend URL or an inline table with url")
            continue
        elif "url" not in value:
            errors.add(f"{bpath}.url", "missing: every backend needs a url")
        ca_file = value.get("tls_ca_file")
        if isinstance(ca_file, str) and ca_file and not ca_file.startswith("/"):
            value = {**value, "tls_ca_file": str(base_dir / ca_file)}  # like `load`: next to the file
        fields, field_errors = validation.clean_values(FILE_BACKEND_FIELDS, value)
        field_errors.update(validation.tls_errors(fields.get("url"), fields))
        for key, messages in field_errors.items():
            for message in messages:
                errors.add(f"{bpath}.{key}", "unknown key" if message == validation.UNKNOWN_FIELD else message)
        result.append((name, {**backend_defaults, **fields}))
    return tuple(result)


def _routes(routes: Any, errors: _Errors, director_names: set[str]) -> tuple[RouteConfig, ...]:
    if not isinstance(routes, list):
        errors.add("routes", "must be an array of tables ([[routes]])")
        return ()
    result = []
    for index, table in enumerate(routes):
        path = f"routes[{index}]"
        if not isinstance(table, dict):
            errors.add(path, "must be a table")
            continue
        route = _route(table, path, errors, director_names)
        if route is not None:
            result.append(route)
    return tuple(result)


def _route(table: dict, path: str, errors: _Errors, director_names: set[str]) -> RouteConfig | None:
    values, route_errors = route_rules.clean_route(table, director_names)
    for key, messages in route_errors.items():
        where = path if key == route_rules.ROUTE_ITSELF else f"{path}.{key}"
        for message in messages:
            errors.add(where, "unknown key" if message == validation.UNKNOWN_FIELD else message)
    if route_errors:
        return None
    backend_from = values["backend_from"]
    return RouteConfig(host=values["host"], path=values["path"], pass_=values["pass"],
                       backend_from=route_rules.parse_backend_from(backend_from) if backend_from else None,
                       http=values["http"], fcgi=values["fcgi"], document_root=values["document_root"],
                       script_filename=values["script_filename"], priority=values["priority"],
                       bucket=values["bucket"], bucket_from=values["bucket_from"])
