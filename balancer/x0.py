"""x0 director files (SPEC §10): read, import as a dynamic director, export, keep in sync.

The INI layout is x0's: a `[director]` section with the SPEC §5 settings spelled with `-`,
and one `[backend=NAME]` section per backend with `role`, `capacity`, `enabled`,
`protocol`, `health-check-mode`, `health-check-interval`, and `host` + `port` or `path`.
HTTPS backends (which x0 did not have) say `protocol=https` and may carry `tls-verify`,
`tls-ca-file` and `tls-server-name`.
Errors name the section and key; an import either creates everything or nothing.
"""
from __future__ import annotations

import configparser
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction

from proxy.addresses import format_host

from . import services, validation
from .models import Director

log = logging.getLogger("director.x0")

FIELD_KEYS = ("role", "capacity", "enabled", "health-check-mode", "health-check-interval", "terminate-protection",
              "tls-verify", "tls-ca-file", "tls-server-name")  # backend fields, spelled with -
BACKEND_KEYS = (*FIELD_KEYS, "protocol", "host", "port", "path", "transport")
PROTOCOLS = ("http", "https", "fastcgi")
# x0 keys we read and drop: features Director does not have.
IGNORED_DIRECTOR_KEYS = ("allow-x-sendfile",)
IGNORED_SECTIONS = ("cache",)
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
    if rule.kind == "seconds":
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
        elif section.startswith("backend="):
            _read_backend(section, parser[section], result, errors)
        elif section in IGNORED_SECTIONS or section.startswith("bucket="):
            result.warnings.append(f"[{section}] ignored: Director has no x0 cache or buckets")
        else:
            errors.append(f"[{section}]: unknown section")
    if errors:
        raise X0Error(errors)
    return result


def _read_director(section, result: X0Director, errors: list) -> None:
    for key, text in section.items():
        name = key.replace("-", "_")
        rule = validation.DIRECTOR_SETTINGS.get(name)
        if key in IGNORED_DIRECTOR_KEYS:
            result.warnings.append(f"[director] {key} ignored")
        elif rule is None:
            errors.append(f"[director] {key}: unknown key")
        else:
            value = _convert("director", key, rule, text, errors)
            if value is not None:
                result.settings[name] = value


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
        director = services.create_director(name, parsed.settings, actor=actor, load_path=load_path)
        for position, (backend_name, data) in enumerate(parsed.backends):
            try:
                services.create_backend(director, {**data, "position": position}, actor=actor)
            except services.ValidationFailed as exc:
                raise X0Error([f"[backend={backend_name}] {field.replace('_', '-')}: {'; '.join(msgs)}"
                               for field, msgs in exc.errors.items()]) from None
    return director


def render_x0(director: Director) -> str:
    lines = [HEADER, "[director]"]
    for name in validation.DIRECTOR_SETTINGS:
        lines.append(f"{name.replace('_', '-')}={_text(getattr(director, name))}")
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
