"""Reading the config file for runproxy, at start and on every reload (SPEC §11).

`read_config()` validates the whole file and the `[proxy]` settings with the command-line
flags on top; it raises `ReloadError` with every problem listed as `checkconfig` prints
them, so a broken file changes nothing. `store_config()` makes the database match the file
(static directors, their backends, the file's routes) and audits the reload with the actor
`config:<hostname>`, so a cluster's records say which node's file won.
"""
from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from .conf import ProxySettings
from .config import Config, ConfigError, load_config

DEFAULT_CONFIG = "director.toml"


class ReloadError(Exception):
    """The file (or the flags over it) is not usable; `errors` lists every problem."""

    def __init__(self, path: str, errors: list[str]):
        self.path = path
        self.errors = list(errors)
        count = len(self.errors)
        super().__init__(f"{path}: {count} error{'s' if count != 1 else ''}")

    def lines(self) -> list[str]:
        """What checkconfig prints: a count, then one line per error."""
        return [str(self), *self.errors]


def config_path(given: str | None) -> str:
    return given or os.environ.get("DIRECTOR_CONFIG") or DEFAULT_CONFIG


def read_config(path: str, overrides: dict) -> tuple[Config, ProxySettings]:
    """(config, settings) from the file at `path` and the command-line `overrides`."""
    if not Path(path).exists():
        raise ReloadError(path, [f"{path}: config file not found (copy director.example.toml)"])
    try:
        config = load_config(path)
        settings = ProxySettings.build(config.proxy, overrides)
    except ConfigError as exc:
        raise ReloadError(path, exc.errors) from None
    except ImproperlyConfigured as exc:
        raise ReloadError(path, str(exc).split("; ")) from None
    return config, settings


def store_config(config: Config, *, reload: bool = False) -> None:
    """Make the database match the file; a reload also gets an audit record of its own."""
    from . import services
    from .sync import config_actor, sync_config

    actor = config_actor()
    sync_config(config, actor=actor)
    if reload:
        services.record_reload(actor, config.source)
