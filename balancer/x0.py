"""x0 director files (SPEC §10): read, import as a dynamic director, export, keep in sync.

The INI layout is x0's: a `[director]` section with the SPEC §5 settings spelled with `-`,
a `[cache]` section with the cache settings (SPEC §15; `CACHE_KEYS`), one `[bucket=NAME]`
section per bucket (`balancer.x0_buckets`), and one `[backend=NAME]` section per backend
with `role`, `capacity`, `enabled`, `protocol`, `health-check-mode`,
`health-check-interval`, and `host` + `port` or `path`.
HTTPS backends (which x0 did not have) say `protocol=https` and may carry `tls-verify`,
`tls-ca-file` and `tls-server-name`.
Errors name the section and key; an import either creates everything or nothing.
"""
from __future__ import annotations

import configparser
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction

from proxy.addresses import format_host

from . import bucket_services, services, validation, x0_buckets
from .models import Director

log = logging.getLogger("director.x0")

FIELD_KEYS = ("role", "capacity", "enabled", "health-check-mode", "health-check-interval", "terminate-protection",
              "tls-verify", "tls-ca-file", "tls-server-name")  # backend fields, spelled with -
BACKEND_KEYS = (*FIELD_KEYS, "protocol", "host", "port", "path", "transport")
PROTOCOLS = ("http", "https", "fastcgi")
# `[cache]` keys and the director settings they hold: x0's, then Director's own.
CACHE_KEYS = {"enabled": "cache_enabled", "deliver-active": "cache_deliver_active",
              "deliver-shadow": "cache_deliver_shadow", "default-ttl": "cache_default_ttl",
              "key": "cache_key", "max-size": "cache_max_size"}
CACHE_PLACES = {name: f"[cache] {key}" for key, name in CACHE_KEYS.items()}
# x0 keys we read and drop, with the reason.
DROPPED_CACHE_KEYS = {"default-shadow-ttl": "Director keeps a shadow copy until it is evicted"}
HEADER = "# Director x0-format director file, rewritten on every change. Edit through the admin or API.\n"


class X0Error(Exception):
    """The file is malformed; `errors` lists `[section] key: message` lines."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass
class X0Director:
    settings: dict = field(default_factory=dict)
    backends: list[tuple[str, dict]] = field(default_factory=list)
    buckets: list[tuple[str, dict]] = field(default_factory=list)  # (name, cleaned fields), file order
    warnings: list[str] = field(default_factory=list)


def _typed(rule: validation.Rule, text: str):
    """An INI string as the rule's type (x0 wrote booleans as true/false or 1/0)."""
    if rule.kind == "bool":
        lowered = text.strip().lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise ValueError("must be true, false, 1 or 0")
    if rule.kind == "int":
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError(rule.describe()) from None
    if rule.kind in ("seconds", "number"):
        try:
            return float(text.strip())
        except ValueError:
            raise ValueError(rule.describe()) from None
    return text.strip()


def _convert(section: str, key: str, rule: validation.Rule, text: str, errors: list) -> object:
    try:
        return rule.clean(_typed(rule, text))
    except ValueError as exc:
        errors.append(f"[{section}] {key}: {exc}")
        return None


def parse_x0(text: str, source: str = "<string>") -> X0Director:
    """Parse an x0 director file; X0Error lists every problem."""
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",), comment_prefixes=("#", ";"),
                                       inline_comment_prefixes=None, strict=True, empty_lines_in_values=False)
    parser.optionxform = str
    try:
        parser.read_string(text, source)
    except configparser.Error as exc:
        raise X0Error([_syntax_error(exc, source)]) from None
    result = X0Director()
    errors: list[str] = []
    if not parser.has_section("director"):
        errors.append("[director]: section missing")
    for section in parser.sections():
        if section == "director":
            _read_director(parser[section], result, errors)
        elif section == "cache":
            _read_cache(parser[section], result, errors)
        elif section.startswith("backend="):
            _read_backend(section, parser[section], result, errors)
        elif section.startswith(x0_buckets.PREFIX):
            bucket = x0_buckets.read_bucket(section, parser[section], _typed, errors)
            if bucket is not None:
                result.buckets.append(bucket)
        else:
            errors.append(f"[{section}]: unknown section")
    if not errors:
        errors += x0_buckets.tree_errors(result.buckets)
    if errors:
        raise X0Error(errors)
    return result


def _read_director(section, result: X0Director, errors: list) -> None:
    """The settings; cache ones too as `cache-enabled` etc. (files of older Directors)."""
    for key, text in section.items():
        name = key.replace("-", "_")
        rule = validation.DIRECTOR_SETTINGS.get(name)
        if rule is None:
            errors.append(f"[director] {key}: unknown key")
        else:
            _set(result, "director", key, name, _convert("director", key, rule, text, errors), errors)


def _read_cache(section, result: X0Director, errors: list) -> None:
    for key, text in section.items():
        name = CACHE_KEYS.get(key)
        if key in DROPPED_CACHE_KEYS:
            result.warnings.append(f"[cache] {key} ignored: {DROPPED_CACHE_KEYS[key]}")
        elif name is None:
            errors.append(f"[cache] {key}: unknown key")
        else:
            value = _convert("cache", key, validation.DIRECTOR_SETTINGS[name], text, errors)
            _set(result, "cache", key, name, value, errors)


def _set(result: X0Director, section: str, key: str, name: str, value, errors: list) -> None:
    """Keep a converted setting (None: it had an error). Only a cache setting can come twice:
    as `[director] cache-X` (older Director files) and as `[cache] X`."""
    if name in result.settings:
        other = _place(name) if section == "director" else f"[director] {name.replace('_', '-')}"
        errors.append(f"[{section}] {key}: also given as {other}; keep one")
    elif value is not None:
        result.settings[name] = value


def _place(name: str) -> str:
    """Where a director setting lives in an x0 file, as `[section] key`."""
    return CACHE_PLACES.get(name) or f"[director] {name.replace('_', '-')}"


def _x0_spelling(message: str) -> str:
    """A service message with the setting names it mentions spelled as x0 keys."""
    return re.sub(r"\b[a-z]+(?:_[a-z0-9]+)+\b",
                  lambda m: _place(m[0]).removeprefix("[director] ") if m[0] in validation.DIRECTOR_SETTINGS else m[0], message)


def _read_backend(section_name: str, section, result: X0Director, errors: list) -> None:
    name = section_name.partition("=")[2]
    try:
        validation.check_name(name)
    except ValueError as exc:
        errors.append(f"[{section_name}]: {exc}")
        return
    data: dict = {"name": name}
    for key in section:
        if key not in BACKEND_KEYS:
            errors.append(f"[{section_name}] {key}: unknown key")
    protocol = section.get("protocol", "").strip()
    if protocol not in PROTOCOLS:
        errors.append(f"[{section_name}] protocol: must be http, https or fastcgi")
    path = section.get("path", "").strip()
    host = section.get("host", "").strip()
    port = section.get("port", "").strip()
    if path:
        url = f"{protocol}+unix://{path}"
    elif host and port:
        url = f"{protocol}://{format_host(host)}:{port}"
    else:
        errors.append(f"[{section_name}] host: give host and port, or path")
        url = None
    if url and protocol in PROTOCOLS:
        try:
            validation.check_url(url)
            data["url"] = url
        except ValueError as exc:
            errors.append(f"[{section_name}] {'path' if path else 'port'}: {exc}")
    for key in FIELD_KEYS:
        if key in section:
            value = _convert(section_name, key, validation.BACKEND_FIELDS[key.replace("-", "_")], section[key], errors)
            if value is not None:
                data[key.replace("-", "_")] = value
    result.backends.append((name, data))


def _syntax_error(exc: configparser.Error, source: str) -> str:
    if isinstance(exc, configparser.DuplicateOptionError):
        return f"[{exc.section}] {exc.option}: duplicate key (line {exc.lineno})"
    if isinstance(exc, configparser.DuplicateSectionError):
        return f"[{exc.section}]: duplicate section (line {exc.lineno})"
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"{source} line {exc.lineno}: key outside of any [section]"
    if isinstance(exc, configparser.ParsingError):
        lines = ", ".join(str(line) for line, _ in exc.errors)
        return f"{source}: not key=value (line {lines})"
    return f"{source}: {exc}"


def read_x0(path: str | Path) -> X0Director:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise X0Error([f"{path}: {exc.strerror or exc}"]) from None
    return parse_x0(text, str(path))


def import_x0(name: str, path: str | Path, *, actor: str, load_path: str = "") -> Director:
    """Create dynamic director `name` from an x0 file: all of it, or nothing."""
    parsed = read_x0(path)
    for warning in parsed.warnings:
        log.warning("%s: %s", path, warning)
    with transaction.atomic():
        try:
            director = services.create_director(name, parsed.settings, actor=actor, load_path=load_path)
        except services.ValidationFailed as exc:
            raise X0Error([f"{_place(field)}: {_x0_spelling('; '.join(msgs))}"
                           for field, msgs in exc.errors.items()]) from None
        for position, (backend_name, data) in enumerate(parsed.backends):
            try:
                services.create_backend(director, {**data, "position": position}, actor=actor)
            except services.ValidationFailed as exc:
                raise X0Error([f"[backend={backend_name}] {field.replace('_', '-')}: {'; '.join(msgs)}"
                               for field, msgs in exc.errors.items()]) from None
        _create_buckets(director, parsed.buckets, actor)
    return director


def _create_buckets(director: Director, buckets: list[tuple[str, dict]], actor: str) -> None:
    """Through the bucket services, parents first (the file may name a child first)."""
    for bucket_name, data in x0_buckets.parents_first(buckets, lambda b: b[0], lambda b: b[1]["parent"]):
        try:
            bucket_services.create_bucket(director, data, actor=actor)
        except services.ValidationFailed as exc:
            raise X0Error([line for field, msgs in exc.errors.items()
                           for line in x0_buckets.error_lines(bucket_name, field, msgs)]) from None


def render_x0(director: Director) -> str:
    lines = [HEADER, "[director]"]
    lines += [f"{name.replace('_', '-')}={_text(getattr(director, name))}"
              for name in validation.DIRECTOR_SETTINGS if name not in CACHE_PLACES]
    lines += ["", "[cache]"] + [f"{key}={_text(getattr(director, name))}" for key, name in CACHE_KEYS.items()]
    lines += x0_buckets.render_buckets(director)
    for backend in director.backends.filter(terminating=False).order_by("position", "id"):
        lines += ["", f"[backend={backend.name}]"]
        lines += [f"role={backend.role}", f"capacity={backend.capacity}", f"enabled={_text(backend.enabled)}",
                  f"transport={'local' if backend.path else 'tcp'}", f"protocol={_protocol(backend)}",
                  f"health-check-mode={backend.health_check_mode}",
                  f"health-check-interval={_text(backend.health_check_interval)}",
                  f"terminate-protection={_text(backend.terminate_protection)}"]
        lines += [f"path={backend.path}"] if backend.path else [f"host={backend.host}", f"port={backend.port}"]
        if _protocol(backend) == "https":
            lines += [f"{name.replace('_', '-')}={_text(getattr(backend, name))}" for name in validation.TLS_FIELDS]
    return "\n".join(lines) + "\n"


def _protocol(backend) -> str:
    """x0's protocol key: the backend's, or https for HTTP over TLS (the URL's scheme)."""
    scheme = backend.url.partition("://")[0]
    return scheme if scheme in PROTOCOLS else backend.protocol


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def write_x0(director: Director, path: str | Path) -> None:
    """Write atomically: a temp file in the same directory, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(render_x0(director))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    except BaseException:
        _unlink_quietly(temp)
        raise


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def sync_load_file(director_id: int) -> None:
    """Rewrite the `load` file of a director after a committed change (no-op without one)."""
    director = Director.objects.filter(pk=director_id).exclude(load_path="").first()
    if director is None:
        return
    try:
        write_x0(director, director.load_path)
    except OSError as exc:
        log.error("director %s: cannot write %s: %s", director.name, director.load_path, exc)
